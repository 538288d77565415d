//! Debug mode (`PYMALLOC_DEBUG=1`): guard bytes around every block, fresh blocks filled
//! with 0xCD and freed ones with 0xDD, a quarantine that delays reuse, and a report (fault,
//! address, requested size, size class) followed by an abort for buffer underruns and
//! overruns, double frees, frees and reallocs of pointers never allocated or already freed,
//! writes to freed blocks, and API mismatches between CPython's MEM and OBJ domains.
//!
//! It costs the fast paths nothing: in debug mode no thread ever gets a heap, so every
//! allocation reaches the slow path, which hands it here; every free of a pool block then
//! takes the remote path (the block's pool is not the thread's), which checks here first.
//!
//! A debug block wraps an inner allocation (a pool block of the shared heap when it fits,
//! else a fallback block recorded in a registry with its size, so that no unknown pointer
//! is ever read; a pool-sized request that the shared heap served from the fallback, no
//! arena being available, is registered the same way). The stored size is checked against
//! the room of the inner allocation before anything is read through it, so a stored size
//! that a stray write made reach outside the block is reported rather than followed (a
//! change that stays within the block's room is not told apart from a real size; large
//! blocks' sizes are checked exactly against the registry):
//!
//! ```text
//! inner: [free-list word][magic][requested size][api][guard: 16 x 0xFD][data: n][guard: 16 x 0xFD]
//!        0               8      16              24   32                48        48 + n
//! ```

use crate::allocator::geometry::{class_of, class_size, is_small, PY_SSIZE_T_MAX};
use crate::allocator::heap::ThreadHeap;
use crate::allocator::pool::{in_header_page, is_block_start, pool_of};
use crate::allocator::sync::unmodeled::{AtomicBool, AtomicU64};
use crate::allocator::sync::{Locked, Ordering};
use crate::{allocator::fallback, allocator::fault::Report, allocator::heap, allocator::ownership};
use alloc::collections::VecDeque;
use alloc::string::String;
use core::ptr;
use hashbrown::HashMap;

/// Bytes before the data: free-list word, magic, size, api, leading guard.
const HEAD: usize = 48;
/// Bytes of the trailing guard.
const TAIL: usize = 16;
const GUARD: usize = 16;
const MAGIC_ALIVE: u64 = 0x5059_4d41_4c4c_4f43; // "PYMALLOC"
const MAGIC_FREED: u64 = 0x4652_4545_4445_4144; // "FREEDEAD"
const FORBIDDEN: u8 = 0xFD;
const CLEAN: u8 = 0xCD;
const DEAD: u8 = 0xDD;
/// Freed blocks held back from reuse, so double frees and writes after free are seen: at
/// most this many,
const QUARANTINE: usize = 1024;
/// and at most this many bytes of their inner allocations. Counting blocks alone let large
/// freed blocks, each poisoned and so resident, hold gigabytes (docs/decisions.md, "Debug
/// mode's quarantine is bounded in bytes"). A block bigger than this is not quarantined: it
/// goes back when freed, poisoned, as under CPython's `PYTHONMALLOC=debug`.
const QUARANTINE_BYTES: usize = 4 << 20;

static ENABLED: AtomicBool = AtomicBool::new(false);

/// Whether debug mode is on.
#[inline(always)]
pub fn enabled() -> bool {
    ENABLED.load(Ordering::Relaxed)
}

/// Turns debug mode on. Only before the first allocation (the library constructor): blocks
/// allocated before have no debug header.
pub fn enable() {
    ENABLED.store(true, Ordering::Relaxed);
    heap::divert(&DIVERT);
}

/// The heap's slow paths, diverted here in debug mode (see [`heap::Divert`]).
static DIVERT: heap::Divert = heap::Divert {
    malloc: |n| malloc(n, Api::Native),
    // SAFETY: as for `free`, which the heap's free path forwards.
    free: |p| unsafe { free(p, Api::Native) },
};

/// Which API allocated a block; a block must be freed through the same one.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
#[repr(u8)]
pub enum Api {
    /// The C functions (`pymalloc_*`, `PyObject_*` outside CPython).
    Native = b'n',
    /// CPython's MEM domain (`PyMem_Malloc`).
    Mem = b'm',
    /// CPython's OBJ domain (`PyObject_Malloc`).
    Obj = b'o',
}

impl Api {
    fn name(byte: u8) -> &'static str {
        match byte {
            b'n' => "pymalloc_malloc",
            b'm' => "PyMem_Malloc",
            b'o' => "PyObject_Malloc",
            _ => "an unknown API",
        }
    }
}

/// Debug state under one lock.
///
/// Invariants: `large` maps the inner address of every fallback-backed debug block that is
/// live or quarantined, and nothing else, to the bytes its inner allocation holds
/// ([`room_for`] its stored size).
pub(crate) struct State {
    quarantine: Option<Quarantine>,
    large: Option<HashMap<usize, usize>>,
}

/// Freed debug blocks held back from reuse.
///
/// Invariants: `blocks` holds the data pointer and inner room of each quarantined block,
/// oldest first, each marked `MAGIC_FREED` and poisoned, none yet given back to its
/// allocator, in room for `QUARANTINE + 1` reserved when it was made (if that reservation
/// failed it has less, and nothing is quarantined); `bytes` is the sum of their rooms.
/// Between calls (under the lock) there are at most [`QUARANTINE`] blocks and
/// [`QUARANTINE_BYTES`] bytes, but for blocks [`Quarantine::admit`] just added, which the
/// freeing thread evicts ([`Quarantine::evict`]) before it returns.
struct Quarantine {
    blocks: VecDeque<(usize, usize)>,
    bytes: usize,
}

impl Quarantine {
    /// Quarantines the freed block at `p` with `room` bytes; false (nothing done) if it is
    /// too big for the quarantine or the quarantine has no room reserved.
    fn admit(&mut self, p: usize, room: usize) -> bool {
        if room > QUARANTINE_BYTES || self.blocks.capacity() <= QUARANTINE {
            return false;
        }
        // Never grows: at most QUARANTINE blocks were held, and QUARANTINE + 1 reserved.
        self.blocks.push_back((p, room));
        self.bytes += room;
        true
    }

    /// Takes out the oldest block while the quarantine holds too many blocks or bytes.
    fn evict(&mut self) -> Option<usize> {
        if self.blocks.len() <= QUARANTINE && self.bytes <= QUARANTINE_BYTES {
            return None;
        }
        let (p, room) = self.blocks.pop_front()?;
        self.bytes -= room;
        Some(p)
    }
}
crate::allocator::sync::global! {
    /// The state under its lock, innermost of the allocator's locks (see `fork`).
    pub(crate) static STATE: Locked<State> = Locked::new(State {
        quarantine: None,
        large: None,
    });
}

/// Runs `f` on the state under its lock. Nothing in it allocates unless it says so, and then
/// only fallibly: memory may be exhausted (an address-space limit), and debug mode must
/// answer NULL then, not abort.
fn with_state<R>(f: impl FnOnce(&mut Quarantine, &mut HashMap<usize, usize>) -> R) -> R {
    let mut guard = STATE.lock();
    let s = &mut *guard;
    f(
        s.quarantine.get_or_insert_with(|| {
            let mut blocks = VecDeque::new();
            let _ = blocks.try_reserve_exact(QUARANTINE + 1);
            Quarantine { blocks, bytes: 0 }
        }),
        s.large.get_or_insert_with(HashMap::new),
    )
}

/// The header fields of a debug block whose data starts at `p`.
struct Header {
    inner: usize,
    /// Bytes the inner allocation holds: its class size, or what the fallback gave.
    room: usize,
    magic: u64,
    size: usize,
    api: u8,
}

impl Header {
    /// Whether the stored size is one the inner allocation was made for (so guards and data
    /// lie inside it): only then may they be read.
    fn size_fits(&self) -> bool {
        self.size <= self.room - HEAD - TAIL && room_for(self.size) == self.room
    }
}

/// Bytes of the inner allocation behind a debug block of `n` bytes: the class size of a
/// pool-sized one (served by a pool, or by the fallback when no arena can be had), else
/// exactly what the fallback was asked for. `n <= PY_SSIZE_T_MAX - HEAD - TAIL`.
fn room_for(n: usize) -> usize {
    let total = n + HEAD + TAIL;
    if is_small(total) {
        class_size(class_of(total))
    } else {
        total
    }
}

/// Reads the header of `p` if `p` can be a debug block's data pointer; `None` for a
/// pointer no debug block has (reading nothing that is not ours).
fn header(p: usize) -> Option<Header> {
    let inner = p.checked_sub(HEAD)?;
    let room = if ownership::owns_arena_of(p) {
        if !ownership::owns_arena_of(inner) || in_header_page(inner) {
            return None;
        }
        let pool = pool_of(inner as *const u8);
        // SAFETY: `pool` is a pool of a mapped arena of ours; its header is readable.
        let (heap, class) = unsafe { ((*pool).heap(), (*pool).class() as usize) };
        // Debug blocks are at least HEAD + TAIL bytes: a smaller class holds none, and
        // reading a header there could run past the pool (even past the arena).
        if heap.is_null() || class_size(class) < HEAD + TAIL || !is_block_start(pool, class, inner)
        {
            return None;
        }
        class_size(class)
    } else {
        with_state(|_, large| large.get(&inner).copied())?
    };
    // SAFETY: `inner` starts one of our pool blocks of at least HEAD + TAIL bytes, or a
    // registered fallback block of at least that size.
    Some(unsafe { read_header(inner, room) })
}

/// The header of the debug block whose inner allocation at `inner` holds `room` bytes.
///
/// # Safety
/// `inner` starts an inner allocation of ours of `room >= HEAD + TAIL` bytes.
unsafe fn read_header(inner: usize, room: usize) -> Header {
    // SAFETY: the header lies inside the inner allocation (per the caller).
    unsafe {
        let w = inner as *const u64;
        Header {
            inner,
            room,
            // Atomic: another thread's free may be claiming the block ([`claim`]).
            magic: (*w.add(1).cast::<AtomicU64>()).load(Ordering::Acquire),
            size: w.add(2).read() as usize,
            api: (inner as *const u8).add(24).read(),
        }
    }
}

/// The address line; with a header whose size fits, the block's size, API and class.
fn describe(r: &mut Report, p: usize, h: Option<&Header>) {
    r.text("    address ").hex(p);
    if let Some(h) = h.filter(|h| h.size_fits()) {
        r.text(": block of ")
            .dec(h.size)
            .text(" bytes requested through ")
            .text(Api::name(h.api));
        if h.size + HEAD + TAIL <= crate::allocator::geometry::SMALL_REQUEST_THRESHOLD {
            let class = class_of(h.size + HEAD + TAIL);
            r.text(", size class ")
                .dec(class)
                .text(" (")
                .dec(class_size(class))
                .text("-byte blocks)");
        } else {
            r.text(", from the system allocator (over 512 bytes with its guards)");
        }
    }
    r.text("\n");
}

fn fault(what: &str, p: usize, h: Option<&Header>, detail: &str) -> ! {
    let mut r = Report::new(what);
    describe(&mut r, p, h);
    if !detail.is_empty() {
        r.text("    ").text(detail).text("\n");
    }
    r.abort()
}

/// Allocates a debug block of `n` bytes for `api`; NULL above `PY_SSIZE_T_MAX` or when
/// memory is exhausted.
pub fn malloc(n: usize, api: Api) -> *mut u8 {
    if n > PY_SSIZE_T_MAX - HEAD - TAIL {
        return ptr::null_mut();
    }
    let total = n + HEAD + TAIL;
    let inner = if is_small(total) {
        // With no arena to be had the shared heap serves (and counts) a fallback block of
        // the class size.
        heap::alloc_shared(total)
    } else {
        let fb = fallback::get();
        // SAFETY: any size is accepted; in debug mode no thread has a heap, so the count
        // is the global one (the thread's heap has no contract anyway).
        unsafe {
            crate::allocator::heap::count_large::<ThreadHeap>((fb.malloc)(fb.ctx, total).cast())
        }
    };
    if inner.is_null() {
        return ptr::null_mut();
    }
    if !ownership::owns_arena_of(inner as usize) {
        let registered = with_state(|_, large| {
            large.try_reserve(1).is_ok() && large.insert(inner as usize, room_for(n)).is_none()
        });
        if !registered {
            // No memory for the registry: give the block back and fail the request.
            let fb = fallback::get();
            // SAFETY: the inner block came from the fallback and was never handed out; the
            // thread's heap has no contract.
            unsafe {
                crate::allocator::heap::uncount_large::<ThreadHeap>();
                (fb.free)(fb.ctx, inner.cast())
            };
            return ptr::null_mut();
        }
    }
    // SAFETY: `inner` holds `total` bytes, 16-aligned.
    unsafe {
        let w = inner.cast::<u64>();
        w.add(1).write(MAGIC_ALIVE);
        w.add(2).write(n as u64);
        inner.add(24).write(api as u8);
        ptr::write_bytes(inner.add(HEAD - GUARD), FORBIDDEN, GUARD);
        ptr::write_bytes(inner.add(HEAD), CLEAN, n);
        ptr::write_bytes(inner.add(HEAD + n), FORBIDDEN, TAIL);
        inner.add(HEAD)
    }
}

/// Reports a header whose stored size does not fit its block (a stray write overwrote it)
/// and aborts; returns if the size fits.
fn check_size(p: usize, h: &Header) {
    if h.size_fits() {
        return;
    }
    let mut r = Report::new("damaged block header: the stored size was overwritten");
    describe(&mut r, p, Some(h));
    r.text("    stored size ")
        .dec(h.size)
        .text(" (")
        .hex(h.size)
        .text(") does not fit the block: a ")
        .dec(h.room);
    let most = h.room - HEAD - TAIL;
    if is_small(h.room) {
        // The class below holds up to `h.room - 16` bytes with the header and guards.
        r.text("-byte block (size class ")
            .dec(class_of(h.room))
            .text(") holds ")
            .dec((h.room + 1).saturating_sub(16 + HEAD + TAIL))
            .text(" to ")
            .dec(most);
    } else {
        r.text("-byte system allocator block holds exactly ")
            .dec(most);
    }
    r.text(" bytes of data\n");
    r.abort()
}

/// Checks a live block's header and guards; reports and aborts on any fault.
fn check_live(p: usize, api: Api, verb: &str) -> Header {
    let Some(h) = header(p) else {
        let what = if verb == "realloc" {
            "realloc of a pointer that was never allocated"
        } else {
            "free of a pointer that was never allocated"
        };
        fault(
            what,
            p,
            None,
            "not the start of any block pymalloc handed out (a wild, interior or foreign pointer)",
        );
    };
    if h.magic != MAGIC_ALIVE && h.magic != MAGIC_FREED {
        fault(
            "free of a pointer that was never allocated",
            p,
            Some(&h),
            "no block header at this address",
        );
    }
    check_size(p, &h);
    if h.magic == MAGIC_FREED {
        let what = if verb == "realloc" {
            "realloc of a freed block"
        } else {
            "double free"
        };
        fault(what, p, Some(&h), "the block was already freed");
    }
    // SAFETY: a live debug block: guards and data lie inside its inner allocation.
    let (lead, trail) = unsafe {
        (
            core::slice::from_raw_parts((p - GUARD) as *const u8, GUARD),
            core::slice::from_raw_parts((p + h.size) as *const u8, TAIL),
        )
    };
    if let Some(i) = lead.iter().position(|&b| b != FORBIDDEN) {
        let mut r = Report::new("buffer underrun: bytes before the block were overwritten");
        describe(&mut r, p, Some(&h));
        r.text("    first damaged byte at offset -")
            .dec(GUARD - i)
            .text("\n")
            .abort();
    }
    if let Some(i) = trail.iter().position(|&b| b != FORBIDDEN) {
        let mut r = Report::new("buffer overrun: bytes past the end of the block were overwritten");
        describe(&mut r, p, Some(&h));
        r.text("    first damaged byte at offset ")
            .dec(h.size + i)
            .text("\n")
            .abort();
    }
    if h.api != api as u8 {
        let mut r = Report::new("API mismatch");
        describe(&mut r, p, Some(&h));
        r.text("    allocated through ")
            .text(Api::name(h.api))
            .text(", released through the ")
            .text(Api::name(api as u8))
            .text(" family\n")
            .abort();
    }
    h
}

/// Frees a debug block: checks it, poisons it, and quarantines it.
///
/// # Safety
/// `p` is a pointer the program hands to free. Wild, foreign, interior and freed pointers
/// are recognised (by address alone) and reported before anything is read through them.
pub unsafe fn free(p: *mut u8, api: Api) {
    if p.is_null() {
        return;
    }
    let h = check_live(p as usize, api, "free");
    if !claim(&h) {
        // Another thread freed it since the check above.
        fault(
            "double free",
            p as usize,
            Some(&h),
            "the block was already freed",
        );
    }
    // SAFETY: a live debug block of `h.size` bytes, now ours alone (claimed).
    unsafe { ptr::write_bytes(p, DEAD, h.size) };
    if !with_state(|q, _| q.admit(p as usize, h.room)) {
        give_back(&h);
        return;
    }
    while let Some(old) = with_state(|q, _| q.evict()) {
        release(old);
    }
}

/// Marks the block of a header that [`check_live`] passed as freed, atomically: of two
/// threads freeing the same block at once, both may pass the check, but only one claims
/// it. False if the block was no longer alive.
fn claim(h: &Header) -> bool {
    // SAFETY: the magic word is the second word of the block's inner allocation, 8-aligned,
    // and every access to it while the block is live or quarantined goes through an atomic
    // or happens in the thread that owns the block (its allocation).
    let magic = unsafe { &*((h.inner as *const u64).add(1) as *const AtomicU64) };
    magic
        .compare_exchange(
            MAGIC_ALIVE,
            MAGIC_FREED,
            Ordering::AcqRel,
            Ordering::Relaxed,
        )
        .is_ok()
}

/// The offset of the first byte of a freed block's data that is no longer poisoned (a write
/// after free), if any.
///
/// # Safety
/// `p` is the data pointer of a quarantined block of ours, `h` its header, and `h`'s size
/// fits the block ([`Header::size_fits`]).
unsafe fn first_written(p: usize, h: &Header) -> Option<usize> {
    // SAFETY: per the caller, `h.size` bytes of data lie inside the block.
    let data = unsafe { core::slice::from_raw_parts(p as *const u8, h.size) };
    data.iter().position(|&b| b != DEAD)
}

/// Really frees a quarantined block, after checking nobody wrote to it meanwhile.
fn release(p: usize) {
    let h = header(p).expect("quarantined blocks keep their header");
    check_size(p, &h);
    // SAFETY: a quarantined block whose size fits (checked).
    if let Some(i) = unsafe { first_written(p, &h) } {
        let mut r = Report::new("write to a freed block (use after free)");
        describe(&mut r, p, Some(&h));
        r.text("    byte at offset ")
            .dec(i)
            .text(" changed after the block was freed\n")
            .abort();
    }
    give_back(&h);
}

/// For the walker ([`crate::introspect::check::verify`]): checks that every quarantined
/// block still has its header and its poison; the first that does not is described.
pub(crate) fn check_quarantine() -> Result<(), String> {
    let found = with_state(|q, _| {
        q.blocks.iter().find_map(|&(p, room)| {
            // SAFETY: a quarantined block: its inner allocation of `room` bytes is ours.
            let h = unsafe { read_header(p - HEAD, room) };
            if h.magic != MAGIC_FREED || !h.size_fits() {
                return Some((p, None));
            }
            // SAFETY: as above, and its size fits.
            unsafe { first_written(p, &h) }.map(|i| (p, Some(i)))
        })
    });
    match found {
        None => Ok(()),
        Some((p, None)) => Err(format!(
            "quarantined debug block {p:#x}: its header was overwritten after it was freed"
        )),
        Some((p, Some(i))) => Err(format!(
            "write to a freed block (use after free): quarantined debug block {p:#x}, byte at offset {i} changed after it was freed"
        )),
    }
}

/// Gives a freed debug block's inner allocation back to the allocator it came from.
fn give_back(h: &Header) {
    if ownership::owns_arena_of(h.inner) {
        // SAFETY: a pool block of the shared heap, not in use any more.
        unsafe {
            crate::allocator::pool::remote_free(h.inner as *mut _, pool_of(h.inner as *const u8))
        };
    } else {
        with_state(|_, large| large.remove(&h.inner));
        let fb = fallback::get();
        // SAFETY: the inner block came from the fallback; the thread's heap has no contract.
        unsafe {
            crate::allocator::heap::uncount_large::<ThreadHeap>();
            (fb.free)(fb.ctx, h.inner as *mut _)
        };
    }
}

/// `realloc` in debug mode: checks the block, then always moves it.
///
/// # Safety
/// As for [`free`].
pub unsafe fn realloc(p: *mut u8, n: usize, api: Api) -> *mut u8 {
    if p.is_null() {
        return malloc(n, api);
    }
    let old = check_live(p as usize, api, "realloc").size;
    let q = malloc(n, api);
    if !q.is_null() {
        // SAFETY: both blocks hold at least min(old, n) bytes.
        unsafe {
            ptr::copy_nonoverlapping(p, q, old.min(n));
            free(p, api);
        }
    }
    q
}

/// `calloc` in debug mode.
pub fn calloc(nelem: usize, elsize: usize, api: Api) -> *mut u8 {
    if elsize != 0 && nelem > PY_SSIZE_T_MAX / elsize {
        return ptr::null_mut();
    }
    let p = malloc(nelem * elsize, api);
    if !p.is_null() {
        // SAFETY: a fresh block of nelem * elsize bytes.
        unsafe { ptr::write_bytes(p, 0, nelem * elsize) };
    }
    p
}

/// The requested size of a live debug block, 0 for anything else.
pub fn usable_size(p: *const u8) -> usize {
    match header(p as usize) {
        Some(h) if h.magic == MAGIC_ALIVE && h.size_fits() => h.size,
        _ => 0,
    }
}

/// Debug mode's allocator for one CPython domain, `$api` its calls' [`Api`].
macro_rules! domain_allocator {
    ($(#[$m:meta])* $name:ident, $api:expr) => {
        crate::allocator::fallback::allocator_ex! {
            $(#[$m])*
            pub mod $name {
                malloc(n) {
                    super::malloc(n, $api).cast()
                }
                calloc(nelem, elsize) {
                    super::calloc(nelem, elsize, $api).cast()
                }
                realloc(p, n) {
                    // SAFETY: the caller passes a block of this domain it may reallocate.
                    unsafe { super::realloc(p.cast(), n, $api).cast() }
                }
                free(p) {
                    // SAFETY: the caller passes a block of this domain it may free.
                    unsafe { super::free(p.cast(), $api) }
                }
            }
        }
    };
}
domain_allocator!(
    /// The MEM domain's debug allocator.
    mem,
    Api::Mem
);
domain_allocator!(
    /// The OBJ domain's debug allocator.
    obj,
    Api::Obj
);

/// The debug allocator for CPython's MEM (`obj == false`) or OBJ domain.
pub fn allocator(obj: bool) -> fallback::AllocatorEx {
    if obj {
        obj::allocator()
    } else {
        mem::allocator()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Two frees of one block at once: both pass the liveness check before either marks
    /// the block, and only the first claim succeeds (the second is reported).
    #[test]
    fn of_two_simultaneous_frees_only_one_claims_the_block() {
        let p = malloc(40, Api::Native);
        assert!(!p.is_null());
        let first = check_live(p as usize, Api::Native, "free");
        let second = check_live(p as usize, Api::Native, "free");
        assert!(claim(&first));
        assert!(!claim(&second));
    }
}
