//! Reading a running process's allocator state from outside: finding libpymalloc in
//! `/proc/PID/maps`, its descriptor (`src/allocator/layout.rs`) through the library file's
//! dynamic symbol table, and the arenas, pools and heaps it leads to, with
//! `process_vm_readv`. The target is neither stopped nor asked anything: every figure is a
//! snapshot, and every address and count read is checked before it is followed, so a torn
//! read gives a slightly wrong figure, never a crash
//! (docs/decisions.md#pymalloc-inspect-reads-a-running-process).

use crate::allocator::geometry::{
    blocks_per_pool, header_page_index, header_table, ARENA_SHIFT, NUM_CLASSES, POOLS_PER_ARENA,
    POOL_HEADER_SIZE, POOL_SIZE,
};
use crate::allocator::layout::{self, Descriptor, LAYOUT_VERSION, MAGIC, SINGLE};
use crate::introspect::figures::{large_count, HeapFigures, Stats};
use std::collections::HashSet;
use std::path::PathBuf;

/// The library version this command reads (the workspace's packages share a version).
pub const VERSION: &str = env!("CARGO_PKG_VERSION");

/// The most heaps followed on a list: far more than any process makes (one per thread
/// alive at once), so that a list torn into a cycle or garbage ends.
const MAX_HEAPS: usize = 1 << 20;

/// Remote reads per `process_vm_readv` call (the kernel's `IOV_MAX`).
const IOV_MAX: usize = 1024;

/// A process being read.
pub struct Target {
    pub pid: i32,
    /// The library's file as the process maps it.
    pub library: PathBuf,
    pub descriptor: Descriptor,
    /// The descriptor's address in the process.
    address: u64,
}

/// One heap: its role's name and what it holds (oldest heap first in a snapshot).
pub type HeapRow = (String, HeapFigures);

/// What one read of the process gives.
pub struct Snapshot {
    pub stats: Stats,
    pub heaps: Vec<HeapRow>,
    /// The process's resident set (`VmRSS`), in bytes.
    pub rss: u64,
    /// Arena headers that could not be read or did not check (an arena unmapped meanwhile).
    pub skipped_arenas: u64,
}

/// The permission error, as one line (what py-spy says, for our case).
fn permission(pid: i32) -> String {
    let scope = std::fs::read_to_string("/proc/sys/kernel/yama/ptrace_scope")
        .map(|s| s.trim().to_string())
        .unwrap_or_else(|_| "absent".into());
    format!(
        "permission denied reading process {pid}: reading another process's memory needs \
         the same user with /proc/sys/kernel/yama/ptrace_scope at 0 (it is {scope} here; 1 \
         lets only a parent read), or root or CAP_SYS_PTRACE (sudo pymalloc inspect {pid}, \
         or --cap-add=SYS_PTRACE for a container)"
    )
}

/// Maps an I/O error on `/proc/PID/...` or on the process's memory to the one-line error.
fn io_error(pid: i32, what: &str, e: &std::io::Error) -> String {
    match e.raw_os_error() {
        Some(libc::ESRCH) | Some(libc::ENOENT) => format!("no process with PID {pid}"),
        Some(libc::EPERM) | Some(libc::EACCES) => permission(pid),
        _ => format!("cannot read {what} of process {pid}: {e}"),
    }
}

impl Target {
    /// Finds the library and its descriptor in process `pid`, or says why not, in one line.
    pub fn open(pid: i32) -> Result<Target, String> {
        if pid <= 0 || !std::path::Path::new(&format!("/proc/{pid}")).exists() {
            return Err(format!("no process with PID {pid}"));
        }
        let maps = std::fs::read_to_string(format!("/proc/{pid}/maps"))
            .map_err(|e| io_error(pid, "/proc/PID/maps", &e))?;
        // The library's first mapping (file offset 0), and its path.
        let (start, end, path) = maps
            .lines()
            .filter_map(|l| {
                let f: Vec<&str> = l.split_whitespace().collect();
                let path = *f.get(5)?;
                let name = path.rsplit('/').next()?;
                let (start, end) = f[0].split_once('-')?;
                (name.starts_with("libpymalloc") && name.contains(".so") && f[2] == "00000000")
                    .then(|| {
                        Some((
                            u64::from_str_radix(start, 16).ok()?,
                            u64::from_str_radix(end, 16).ok()?,
                            path.to_string(),
                        ))
                    })?
            })
            .next()
            .ok_or_else(|| {
                format!(
                    "process {pid} does not use pymalloc-rs (no libpymalloc in /proc/{pid}/maps)"
                )
            })?;
        // The file as the process maps it: through map_files (root), else through the
        // process's root directory (a process in a chroot), else the path itself.
        let candidates = [
            PathBuf::from(format!("/proc/{pid}/map_files/{start:x}-{end:x}")),
            PathBuf::from(format!("/proc/{pid}/root{path}")),
            PathBuf::from(&path),
        ];
        let mut last = String::new();
        for file in &candidates {
            let bytes = match std::fs::read(file) {
                Ok(b) => b,
                Err(e) => {
                    last = format!("{}: {e}", file.display());
                    continue;
                }
            };
            let Some((first_load, symbol)) = elf_symbol(&bytes, layout::SYMBOL) else {
                last = format!("{}: no {} symbol", file.display(), layout::SYMBOL);
                continue;
            };
            let address = start.wrapping_sub(first_load).wrapping_add(symbol);
            let mut raw = [0u8; std::mem::size_of::<Descriptor>()];
            read_exact(pid, address, &mut raw).map_err(|e| io_error(pid, "the memory", &e))?;
            // SAFETY: `raw` holds as many bytes as a Descriptor, which is plain data
            // (integers, byte arrays and raw pointers, never dereferenced here).
            let descriptor: Descriptor = unsafe { std::ptr::read_unaligned(raw.as_ptr().cast()) };
            if descriptor.magic != MAGIC {
                last = format!("{}: the descriptor's magic does not match", file.display());
                continue;
            }
            let version = text(&descriptor.version);
            if descriptor.layout != LAYOUT_VERSION || version != VERSION {
                return Err(format!(
                    "process {pid} runs libpymalloc {version} (layout {}), this pymalloc reads \
                     libpymalloc {VERSION} (layout {LAYOUT_VERSION}): use the pymalloc command \
                     of the library's version",
                    descriptor.layout
                ));
            }
            // The header fields read lie inside one 64-byte header entry: the snapshot
            // indexes a header page with these offsets.
            let p = &descriptor.pools;
            let inside =
                |offset: u64, size: u64| offset.saturating_add(size) <= POOL_HEADER_SIZE as u64;
            if !(inside(p.used, 4)
                && inside(p.class, 1)
                && inside(p.linked, 1)
                && inside(p.cached, 1)
                && inside(p.heap, 8)
                && inside(descriptor.arenas.free_pools, 8))
            {
                return Err(format!(
                    "process {pid}: the descriptor's header offsets lie outside a header"
                ));
            }
            return Ok(Target {
                pid,
                library: PathBuf::from(path),
                descriptor,
                address,
            });
        }
        Err(format!(
            "process {pid} maps {path} but its descriptor cannot be found ({last})"
        ))
    }

    /// Reads `n` bytes at `address`, `None` when the process does not map them (any more).
    fn bytes(&self, address: u64, n: usize) -> Option<Vec<u8>> {
        let mut buf = vec![0; n];
        read_exact(self.pid, address, &mut buf).ok()?;
        Some(buf)
    }

    fn word(&self, address: u64) -> Option<u64> {
        self.bytes(address, 8).map(|b| u64_at(&b, 0))
    }

    fn pointer(&self, p: *const u8) -> u64 {
        p as u64
    }

    /// The signal the process opted in to for a trim (`PYMALLOC_TRIM_SIGNAL`), 0 for none.
    pub fn trim_signal(&self) -> Result<i32, String> {
        self.bytes(self.pointer(self.descriptor.trim_signal), 4)
            .map(|b| i32::from_ne_bytes(b[..4].try_into().unwrap()))
            .ok_or_else(|| format!("process {} went away", self.pid))
    }

    /// Reads the allocator's state now: what `pymalloc_get_stats` and the report at exit
    /// give, and the process's RSS.
    pub fn snapshot(&self) -> Result<Snapshot, String> {
        let d = &self.descriptor;
        let gone = || format!("process {} went away", self.pid);
        // The descriptor itself must still be there: else the process exited.
        self.bytes(self.address, 8).ok_or_else(gone)?;
        let mut s = Stats::empty();
        let counts = self
            .bytes(self.pointer(d.arenas.counts), 7 * 8)
            .ok_or_else(gone)?;
        let count = |i: usize| u64_at(&counts, 8 * i);
        s.arenas_allocated_total = count(0);
        s.arenas_reclaimed = count(1);
        s.arenas_highwater = count(2);
        s.arenas_current = count(3);
        s.pools_in_use = count(4);
        s.pools_free = count(5);
        s.pools_returned = count(6);

        let heaps = self.heaps();
        let index: std::collections::HashMap<u64, usize> =
            heaps.iter().enumerate().map(|(i, h)| (h.0, i)).collect();
        let mut rows: Vec<HeapRow> = heaps
            .iter()
            .map(|h| {
                let kept = HeapFigures {
                    pools_kept: h.3,
                    ..HeapFigures::default()
                };
                (h.1.clone(), kept)
            })
            .collect();

        let tables = self.arena_tables();
        let pages = read_many(self.pid, &tables, POOL_SIZE);
        let mut skipped = 0;
        let p = &d.pools;
        for (&table, page) in tables.iter().zip(&pages) {
            let Some(page) = page else {
                skipped += 1;
                continue;
            };
            let base = table & !((1u64 << ARENA_SHIFT) - 1);
            let h = header_page_index(base as usize);
            let free = u64_at(page, h * POOL_HEADER_SIZE + d.arenas.free_pools as usize);
            for i in (0..POOLS_PER_ARENA).filter(|&i| i != h && free >> i & 1 == 0) {
                let e = &page[i * POOL_HEADER_SIZE..(i + 1) * POOL_HEADER_SIZE];
                let class = e[p.class as usize] as usize;
                let linked = e[p.linked as usize] != 0;
                let cached = e[p.cached as usize] != 0;
                if cached {
                    s.pools_cached += 1;
                    continue;
                }
                // A parked pool (neither linked nor cached) is full; its stored count is
                // `PARKED` (src/allocator/pool.rs).
                let used = if !linked && class < NUM_CLASSES {
                    blocks_per_pool(class) as u64
                } else {
                    u64::from(u32::from_ne_bytes(
                        e[p.used as usize..p.used as usize + 4].try_into().unwrap(),
                    ))
                };
                let owner = u64_at(e, p.heap as usize);
                if let (Some(used), Some(&k)) = (s.add_pool(class, used), index.get(&owner)) {
                    rows[k].1.add_pool(class, used);
                }
            }
        }
        let global = self.word(self.pointer(d.large_global)).unwrap_or(0);
        s.large_in_use =
            large_count(heaps.iter().fold(global, |sum, h| sum.wrapping_add(h.2)) as usize);
        s.heaps = heaps.len() as u64;
        s.heaps_abandoned = heaps.iter().filter(|h| h.1 == "abandoned").count() as u64;
        s.finish();
        Ok(Snapshot {
            stats: s,
            heaps: rows,
            rss: rss(self.pid),
            skipped_arenas: skipped,
        })
    }

    /// The header tables of the mapped arenas, from the ownership map (checked: a word is
    /// its own arena's header table).
    fn arena_tables(&self) -> Vec<u64> {
        let o = &self.descriptor.ownership;
        let (root_slots, leaf_slots) = (o.root_slots as usize, o.leaf_slots as usize);
        let mut tables = Vec::new();
        // At most 2^20 root entries and leaf words: the map's real sizes are far below.
        if root_slots > 1 << 20 || leaf_slots > 1 << 20 {
            return tables;
        }
        let Some(root) = self.bytes(self.pointer(o.root), root_slots * 8) else {
            return tables;
        };
        for i in 0..root_slots {
            let entry = u64_at(&root, 8 * i);
            if entry == 0 {
                continue;
            }
            let first = (i * leaf_slots) as u64;
            let leaf = entry.wrapping_add(8 * first);
            let Some(words) = self.bytes(leaf, leaf_slots * 8) else {
                continue;
            };
            for j in 0..leaf_slots {
                let word = u64_at(&words, 8 * j);
                let base = (first + j as u64) << ARENA_SHIFT;
                if word != 0 && word == header_table(base as usize) as u64 {
                    tables.push(word);
                }
            }
        }
        tables
    }

    /// Every heap: its address, its role's name, its count of large blocks and of the empty
    /// pools it keeps, oldest first.
    fn heaps(&self) -> Vec<(u64, String, u64, u64)> {
        let h = &self.descriptor.heaps;
        let all = self.list(self.pointer(h.all), h.next_all);
        let lists: Vec<(String, HashSet<u64>)> = h
            .roles
            .iter()
            .map(|r| {
                let head = self.pointer(r.head);
                let members = if r.link == SINGLE {
                    self.word(head).into_iter().filter(|&p| p != 0).collect()
                } else {
                    self.list(head, r.link).into_iter().collect()
                };
                (text(&r.name), members)
            })
            .collect();
        let default = text(&h.default_role);
        all.into_iter()
            .rev()
            .map(|heap| {
                let role = lists
                    .iter()
                    .find(|(_, m)| m.contains(&heap))
                    .map_or(default.clone(), |(name, _)| name.clone());
                let large = self.word(heap.wrapping_add(h.large)).unwrap_or(0);
                let kept = self
                    .bytes(heap.wrapping_add(h.cached), 4)
                    .map_or(0, |b| u32::from_ne_bytes(b[..4].try_into().unwrap()));
                (heap, role, large, u64::from(kept))
            })
            .collect()
    }

    /// The heaps of the list whose head pointer is at `head`, linked at offset `link`:
    /// unreadable links end it, and a heap met twice (a list torn into a cycle) too.
    fn list(&self, head: u64, link: u64) -> Vec<u64> {
        let mut seen = HashSet::new();
        let mut out = Vec::new();
        let mut next = self.word(head).unwrap_or(0);
        while next != 0 && next % 8 == 0 && out.len() < MAX_HEAPS && seen.insert(next) {
            out.push(next);
            next = self.word(next.wrapping_add(link)).unwrap_or(0);
        }
        out
    }
}

/// The process's resident set in bytes (`VmRSS` of `/proc/PID/status`), 0 if unknown.
pub fn rss(pid: i32) -> u64 {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .ok()
        .and_then(|s| {
            let line = s.lines().find(|l| l.starts_with("VmRSS:"))?;
            line.split_whitespace().nth(1)?.parse::<u64>().ok()
        })
        .map_or(0, |kib| kib * 1024)
}

/// A NUL-padded byte array as text.
fn text(bytes: &[u8]) -> String {
    let end = bytes.iter().position(|&b| b == 0).unwrap_or(bytes.len());
    String::from_utf8_lossy(&bytes[..end]).into_owned()
}

fn u64_at(b: &[u8], at: usize) -> u64 {
    u64::from_ne_bytes(b[at..at + 8].try_into().unwrap())
}

/// Reads `buf.len()` bytes at `address` of process `pid`.
fn read_exact(pid: i32, address: u64, buf: &mut [u8]) -> std::io::Result<()> {
    let local = libc::iovec {
        iov_base: buf.as_mut_ptr().cast(),
        iov_len: buf.len(),
    };
    let remote = libc::iovec {
        iov_base: address as *mut libc::c_void,
        iov_len: buf.len(),
    };
    // SAFETY: `local` describes `buf`, writable for its length; the remote address is
    // only read by the kernel, in the other process, and checked there.
    let n = unsafe { libc::process_vm_readv(pid, &local, 1, &remote, 1, 0) };
    if n < 0 {
        return Err(std::io::Error::last_os_error());
    }
    if n as usize != buf.len() {
        return Err(std::io::Error::from_raw_os_error(libc::EFAULT));
    }
    Ok(())
}

/// Reads `size` bytes at each of `addresses`, up to [`IOV_MAX`] per system call; `None`
/// where the process does not map them (an arena unmapped meanwhile).
fn read_many(pid: i32, addresses: &[u64], size: usize) -> Vec<Option<Vec<u8>>> {
    let mut out: Vec<Option<Vec<u8>>> = Vec::with_capacity(addresses.len());
    let mut buf = vec![0u8; IOV_MAX * size];
    let mut at = 0;
    while at < addresses.len() {
        let chunk = &addresses[at..(at + IOV_MAX).min(addresses.len())];
        let local: Vec<libc::iovec> = buf
            .chunks_mut(size)
            .take(chunk.len())
            .map(|b| libc::iovec {
                iov_base: b.as_mut_ptr().cast(),
                iov_len: size,
            })
            .collect();
        let remote: Vec<libc::iovec> = chunk
            .iter()
            .map(|&a| libc::iovec {
                iov_base: a as *mut libc::c_void,
                iov_len: size,
            })
            .collect();
        // SAFETY: each local iovec describes a distinct `size`-byte piece of `buf`; the
        // remote ones are only read by the kernel, in the other process.
        let n = unsafe {
            libc::process_vm_readv(
                pid,
                local.as_ptr(),
                local.len() as libc::c_ulong,
                remote.as_ptr(),
                remote.len() as libc::c_ulong,
                0,
            )
        };
        // The kernel stops at the first piece it cannot read: the pieces before it are
        // whole, that one is lost, and the reads go on after it.
        let whole = if n < 0 { 0 } else { n as usize / size };
        for piece in buf.chunks(size).take(whole) {
            out.push(Some(piece.to_vec()));
        }
        if whole < chunk.len() {
            out.push(None);
        }
        at += (whole + 1).min(chunk.len());
    }
    out
}

/// The value of the dynamic symbol `name` in the ELF64 file `elf`, with the virtual address
/// its first loadable segment starts at (page-aligned down): the symbol's address in a
/// process is that segment's mapping (file offset 0) plus `value - first`.
fn elf_symbol(elf: &[u8], name: &str) -> Option<(u64, u64)> {
    let u16_at = |at: usize| Some(u16::from_ne_bytes(elf.get(at..at + 2)?.try_into().ok()?));
    let u32_at = |at: usize| Some(u32::from_ne_bytes(elf.get(at..at + 4)?.try_into().ok()?));
    let u64_at = |at: usize| Some(u64::from_ne_bytes(elf.get(at..at + 8)?.try_into().ok()?));
    if elf.get(..5)? != b"\x7fELF\x02" {
        return None;
    }
    let (phoff, phnum) = (u64_at(0x20)? as usize, u16_at(0x38)? as usize);
    let first = (0..phnum)
        .map(|i| phoff + i * 56)
        .filter(|&ph| u32_at(ph) == Some(1)) // PT_LOAD
        .filter_map(|ph| Some(u64_at(ph + 16)? & !(POOL_SIZE as u64 - 1)))
        .min()?;
    let (shoff, shnum) = (u64_at(0x28)? as usize, u16_at(0x3c)? as usize);
    let section = |i: usize| shoff + i * 64;
    let dynsym = (0..shnum).find(|&i| u32_at(section(i) + 4) == Some(11))?; // SHT_DYNSYM
    let (off, size) = (
        u64_at(section(dynsym) + 24)? as usize,
        u64_at(section(dynsym) + 32)? as usize,
    );
    let strtab = u64_at(section(u32_at(section(dynsym) + 40)? as usize) + 24)? as usize;
    (0..size / 24).map(|k| off + k * 24).find_map(|sym| {
        let at = strtab + u32_at(sym)? as usize;
        let end = at + elf.get(at..)?.iter().position(|&b| b == 0)?;
        (&elf[at..end] == name.as_bytes()).then(|| Some((first, u64_at(sym + 8)?)))?
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_its_own_memory_in_pieces_and_skips_what_is_unmapped() {
        let data: Vec<u8> = (0..=255).cycle().take(3 * POOL_SIZE).collect();
        let a = data.as_ptr() as u64;
        let pieces = read_many(
            std::process::id() as i32,
            &[a, 8, a + 2 * POOL_SIZE as u64],
            POOL_SIZE,
        );
        assert_eq!(pieces.len(), 3);
        assert_eq!(pieces[0].as_deref(), Some(&data[..POOL_SIZE]));
        assert!(pieces[1].is_none(), "address 8 is not mapped");
        assert_eq!(pieces[2].as_deref(), Some(&data[2 * POOL_SIZE..]));
    }
}
