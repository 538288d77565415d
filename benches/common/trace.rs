//! The allocation-trace format for W6 (replay), shared by the recorder
//! (`examples/record_trace.rs`) and the replay (`benches/common/mod.rs`).
//!
//! A trace is `MAGIC`, the event count as a little-endian `u32`, then the events. Block ids
//! are not stored for allocations: both sides hand out ids the same way ([`Ids`]: the most
//! recently freed id first, else the next fresh one), so an allocation costs one varint
//! and ids stay small. Every varint is LEB128.
//!
//! | event | encoding |
//! |---|---|
//! | malloc(size) | `size << 2 \| 0` |
//! | free(id) | `id << 2 \| 1` |
//! | realloc(id, size) | `id << 2 \| 2`, then `size` |
//! | calloc(size) (zeroed) | `size << 2 \| 3` |

// The recorder uses only the encoding side, the benches only the decoding side.
#![allow(dead_code)]

pub const MAGIC: &[u8; 8] = b"PMTRACE1";

/// One allocation event; `usize` ids index the replay's slot table.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Event {
    Malloc { id: usize, size: usize },
    Calloc { id: usize, size: usize },
    Realloc { id: usize, size: usize },
    Free { id: usize },
}

/// Id assignment, identical when recording and replaying.
#[derive(Default)]
pub struct Ids {
    freed: Vec<usize>,
    next: usize,
}

impl Ids {
    pub fn take(&mut self) -> usize {
        self.freed.pop().unwrap_or_else(|| {
            self.next += 1;
            self.next - 1
        })
    }
    pub fn give_back(&mut self, id: usize) {
        self.freed.push(id);
    }
    /// How many distinct ids were ever handed out.
    pub fn high_water(&self) -> usize {
        self.next
    }
}

pub fn put_varint(out: &mut Vec<u8>, mut v: u64) {
    while v >= 0x80 {
        out.push(v as u8 | 0x80);
        v >>= 7;
    }
    out.push(v as u8);
}

fn get_varint(data: &[u8], pos: &mut usize) -> u64 {
    let (mut v, mut shift) = (0u64, 0);
    loop {
        let b = data[*pos];
        *pos += 1;
        v |= u64::from(b & 0x7f) << shift;
        if b < 0x80 {
            return v;
        }
        shift += 7;
    }
}

/// Appends events to a trace body; [`Writer::finish`] gives the whole file.
#[derive(Default)]
pub struct Writer {
    body: Vec<u8>,
    count: u32,
    pub ids: Ids,
}

impl Writer {
    /// A new block of `size` bytes (zeroed if `zeroed`); returns its id.
    pub fn alloc(&mut self, size: usize, zeroed: bool) -> usize {
        self.count += 1;
        put_varint(
            &mut self.body,
            (size as u64) << 2 | if zeroed { 3 } else { 0 },
        );
        self.ids.take()
    }
    pub fn realloc(&mut self, id: usize, size: usize) {
        self.count += 1;
        put_varint(&mut self.body, (id as u64) << 2 | 2);
        put_varint(&mut self.body, size as u64);
    }
    pub fn free(&mut self, id: usize) {
        self.count += 1;
        put_varint(&mut self.body, (id as u64) << 2 | 1);
        self.ids.give_back(id);
    }
    pub fn events(&self) -> u32 {
        self.count
    }
    pub fn finish(&self) -> Vec<u8> {
        let mut out = MAGIC.to_vec();
        out.extend_from_slice(&self.count.to_le_bytes());
        out.extend_from_slice(&self.body);
        out
    }
}

/// Decodes a whole trace into events with their ids resolved; also returns the number of
/// slots the replay needs.
pub fn decode(data: &[u8]) -> (Vec<Event>, usize) {
    assert_eq!(&data[..8], MAGIC, "not a pymalloc-rs trace");
    let count = u32::from_le_bytes(data[8..12].try_into().unwrap()) as usize;
    let (mut pos, mut ids, mut events) = (12, Ids::default(), Vec::with_capacity(count));
    for _ in 0..count {
        let v = get_varint(data, &mut pos);
        let x = (v >> 2) as usize;
        events.push(match v & 3 {
            0 => Event::Malloc {
                id: ids.take(),
                size: x,
            },
            3 => Event::Calloc {
                id: ids.take(),
                size: x,
            },
            2 => Event::Realloc {
                id: x,
                size: get_varint(data, &mut pos) as usize,
            },
            _ => {
                ids.give_back(x);
                Event::Free { id: x }
            }
        });
    }
    assert_eq!(pos, data.len(), "trailing bytes in trace");
    (events, ids.high_water())
}
