//! The C-level workloads of issue 5 (W1–W6) and the allocators they run against, shared by
//! `benches/workloads.rs` (criterion), `benches/compare.rs` (ratio table, RSS, callgrind)
//! and `benches/rss.rs`.
//!
//! Every allocator is reached through C function pointers, so each pays the same indirect
//! call: pymalloc-rs (this crate, linked in), CPython 3.11's pymalloc (`PyObject_Malloc`
//! from pyenv's libpython after `Py_InitializeEx(0)`), glibc, and mimalloc, jemalloc and
//! tcmalloc loaded with `dlopen`. A peer that cannot be loaded is reported by [`load`] and
//! skipped by the callers. Every block a workload allocates is touched ([`touch`]).

// Each bench uses a different part of this module.
#![allow(dead_code)]

pub mod dl;
pub mod smaps;
pub mod trace;

use std::ffi::c_void;
use std::hint::black_box;
use std::process::Command;
use std::time::Instant;

pub type Malloc = unsafe extern "C" fn(usize) -> *mut c_void;
pub type Free = unsafe extern "C" fn(*mut c_void);
pub type Realloc = unsafe extern "C" fn(*mut c_void, usize) -> *mut c_void;

/// A C allocator.
pub struct Alloc {
    pub name: &'static str,
    pub malloc: Malloc,
    pub free: Free,
    pub realloc: Realloc,
}

/// The allocators compared, CPython's pymalloc (the reference of every ratio) second.
pub const ALL: [&str; 6] = [
    "pymalloc-rs",
    "cpython-pymalloc",
    "glibc",
    "mimalloc",
    "jemalloc",
    "tcmalloc",
];

/// The reference allocator of every ratio.
pub const REFERENCE: &str = "cpython-pymalloc";

/// Shared libraries of the peers that are loaded with `dlopen`; jemalloc's Debian build
/// only loads when preloaded (static TLS), see [`preload_for`].
const JEMALLOC: &str = "libjemalloc.so.2";
const TCMALLOC: &str = "libtcmalloc_minimal.so.4";

/// What to put in `LD_PRELOAD` for `name` when a plain `dlopen` fails.
pub fn preload_for(name: &str) -> Option<&'static str> {
    match name {
        "jemalloc" => Some(JEMALLOC),
        "tcmalloc" => Some(TCMALLOC),
        _ => None,
    }
}

static mut EMPTY_BLOCK: [u8; 1 << 16] = [0; 1 << 16];
unsafe extern "C" fn empty_malloc(_: usize) -> *mut c_void {
    std::ptr::addr_of_mut!(EMPTY_BLOCK).cast()
}
unsafe extern "C" fn empty_free(_: *mut c_void) {}
unsafe extern "C" fn empty_realloc(p: *mut c_void, _: usize) -> *mut c_void {
    p
}

/// `libpymalloc.so` next to the bench executable (`target/<profile>/`).
pub fn our_cdylib() -> Result<String, String> {
    let exe = std::env::current_exe().map_err(|e| e.to_string())?;
    let lib = exe
        .parent()
        .and_then(|d| d.parent())
        .ok_or("no target directory")?;
    let lib = lib.join("libpymalloc.so");
    if !lib.is_file() {
        // `cargo bench` builds the rlib only: without this, a preload of a missing file
        // would only warn, and plain CPython would be measured under our name.
        return Err(format!(
            "{} is missing: run `cargo build --release` first",
            lib.display()
        ));
    }
    lib.to_str()
        .map(str::to_string)
        .ok_or("non-UTF-8 path".into())
}

/// The allocator named `name`, or why it cannot be had. Besides [`ALL`]: `pymalloc-rs.so`
/// (this crate's cdylib, `pymalloc_malloc`/`pymalloc_free`, as C programs see it) and
/// `empty` (a malloc that hands out one static buffer: the harness alone).
pub fn load(name: &str) -> Result<Alloc, String> {
    let fns = |h, m: &str, f: &str, r: &str| -> Result<Alloc, String> {
        let (m, f, r) = (
            dl::sym(h, m).ok_or(format!("no {m}"))?,
            dl::sym(h, f).ok_or(format!("no {f}"))?,
            dl::sym(h, r).ok_or(format!("no {r}"))?,
        );
        // SAFETY: the symbols are the C allocation functions they are named for.
        Ok(unsafe {
            Alloc {
                name: leak(name),
                malloc: std::mem::transmute::<*mut c_void, Malloc>(m),
                free: std::mem::transmute::<*mut c_void, Free>(f),
                realloc: std::mem::transmute::<*mut c_void, Realloc>(r),
            }
        })
    };
    match name {
        // The C entry points, linked in: the fast paths inlined as in the shared library
        // (`api::malloc`/`free` are out-of-line wrappers for Rust callers).
        "pymalloc-rs" => Ok(Alloc {
            name: "pymalloc-rs",
            malloc: pymalloc::internals::ffi::pymalloc_malloc,
            free: pymalloc::internals::ffi::pymalloc_free,
            realloc: pymalloc::internals::ffi::pymalloc_realloc,
        }),
        "glibc" => Ok(Alloc {
            name: "glibc",
            malloc: libc::malloc,
            free: libc::free,
            realloc: libc::realloc,
        }),
        "empty" => Ok(Alloc {
            name: "empty",
            malloc: empty_malloc,
            free: empty_free,
            realloc: empty_realloc,
        }),
        "cpython-pymalloc" => fns(
            dl::cpython()?,
            "PyObject_Malloc",
            "PyObject_Free",
            "PyObject_Realloc",
        ),
        "pymalloc-rs.so" => fns(
            dl::open(&our_cdylib()?)?,
            "pymalloc_malloc",
            "pymalloc_free",
            "pymalloc_realloc",
        ),
        "mimalloc" => fns(
            dl::open("libmimalloc.so.2")?,
            "mi_malloc",
            "mi_free",
            "mi_realloc",
        ),
        "jemalloc" => fns(dl::open(JEMALLOC)?, "malloc", "free", "realloc"),
        "tcmalloc" => fns(dl::open(TCMALLOC)?, "tc_malloc", "tc_free", "tc_realloc"),
        _ => Err(format!("unknown allocator {name}")),
    }
}

/// The standard output of a child, or its standard error when it fails.
pub fn output(mut c: Command) -> Result<String, String> {
    let out = c.output().map_err(|e| e.to_string())?;
    if !out.status.success() {
        return Err(String::from_utf8_lossy(&out.stderr).trim().to_string());
    }
    Ok(String::from_utf8_lossy(&out.stdout).into_owned())
}

/// The allocators among `names` that a child loads, each with the `LD_PRELOAD` it needs
/// ([`preload_for`]); prints why the others are skipped. `child(spec, preload)` makes the
/// bench's child command; the probe's spec is `probe:NAME`, and the child only loads NAME.
pub fn available(
    names: &[&'static str],
    child: impl Fn(&str, Option<&str>) -> Command,
) -> Vec<(&'static str, Option<&'static str>)> {
    let mut ok = Vec::new();
    for &name in names {
        let probe = |pre| output(child(&format!("probe:{name}"), pre));
        match probe(None) {
            Ok(_) => ok.push((name, None)),
            Err(e) => match preload_for(name).map(|lib| (lib, probe(Some(lib)))) {
                Some((lib, Ok(_))) => {
                    eprintln!("{name}: dlopen fails ({e}); measured with LD_PRELOAD={lib}");
                    ok.push((name, Some(lib)));
                }
                _ => eprintln!("{name}: skipped ({e})"),
            },
        }
    }
    ok
}

fn leak(s: &str) -> &'static str {
    Box::leak(s.to_string().into_boxed_str())
}

/// xorshift64, shared with the property tests: the same sequence for every allocator.
#[path = "../../tests/support/rng.rs"]
mod rng;
pub use rng::Rng;

/// Writes the first and last byte of a block of `n` bytes and one byte of every page.
///
/// # Safety
/// `p` points to at least `n` writable bytes.
#[inline(always)]
pub unsafe fn touch(p: *mut c_void, n: usize) {
    let p = p.cast::<u8>();
    let mut off = 0;
    while off < n {
        // SAFETY: `off < n`.
        unsafe { p.add(off).write_volatile(1) };
        off += 4096;
    }
    if n > 0 {
        // SAFETY: the last byte of the block.
        unsafe { p.add(n - 1).write_volatile(1) };
    }
}

/// Resident set size in KiB.
/// The process's peak resident set so far (`VmHWM`), KiB.
pub fn peak_rss_kib() -> u64 {
    let s = std::fs::read_to_string("/proc/self/status").unwrap();
    s.lines()
        .find_map(|l| l.strip_prefix("VmHWM:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .unwrap()
}

/// The process's resident set now, KiB.
pub fn rss_kib() -> u64 {
    let s = std::fs::read_to_string("/proc/self/statm").unwrap();
    s.split_whitespace().nth(1).unwrap().parse::<u64>().unwrap() * 4
}

impl Alloc {
    /// `malloc(n)`, touched.
    #[inline(always)]
    pub fn alloc(&self, n: usize) -> *mut c_void {
        // SAFETY: a C allocator accepts any size; the block holds `n` bytes.
        unsafe {
            let p = (self.malloc)(n);
            touch(p, n);
            p
        }
    }
    /// `free(p)`.
    ///
    /// # Safety
    /// `p` is NULL or a live block of this allocator, freed once.
    #[inline(always)]
    pub unsafe fn release(&self, p: *mut c_void) {
        // SAFETY: per the caller.
        unsafe { (self.free)(p) }
    }
    /// `realloc(p, n)`, the new block touched.
    ///
    /// # Safety
    /// As for [`Alloc::release`].
    #[inline(always)]
    pub unsafe fn grow(&self, p: *mut c_void, n: usize) -> *mut c_void {
        // SAFETY: per the caller; the block holds `n` bytes.
        unsafe {
            let q = (self.realloc)(p, n);
            touch(q, n);
            q
        }
    }
}

// ---- W1: hot pair ----------------------------------------------------------------------

pub const W1_SIZES: [usize; 4] = [16, 64, 256, 512];
pub const WARM_BLOCKS: usize = 10_000;

/// The warm heap of W1: 10,000 live blocks of 1..512 bytes.
pub struct Warm(Vec<*mut c_void>);

impl Warm {
    pub fn new(a: &Alloc) -> Warm {
        let mut rng = Rng(0x5eed_0001);
        Warm(
            (0..WARM_BLOCKS)
                .map(|_| a.alloc(1 + rng.below(512)))
                .collect(),
        )
    }
    pub fn free(self, a: &Alloc) {
        for p in self.0 {
            // SAFETY: each warm block is live and freed once.
            unsafe { a.release(p) };
        }
    }
}

/// W1: `pairs` times malloc(n), touch, free. Returns the operation count.
#[inline(never)]
pub fn w1(a: &Alloc, n: usize, pairs: u64) -> u64 {
    for _ in 0..pairs {
        let p = a.alloc(black_box(n));
        // SAFETY: freed once.
        unsafe { a.release(p) };
    }
    2 * pairs
}

// ---- W2: LIFO batch --------------------------------------------------------------------

pub const W2_BLOCKS: usize = 1_000_000;

/// W2, first half: 1,000,000 blocks of 1..512 bytes into `blocks`.
pub fn w2_fill(a: &Alloc, blocks: &mut Vec<*mut c_void>, rng: &mut Rng) {
    blocks.clear();
    for _ in 0..W2_BLOCKS {
        blocks.push(a.alloc(1 + rng.below(512)));
    }
}

/// W2, second half: free them in reverse order. Returns the operation count of W2.
pub fn w2_drain(a: &Alloc, blocks: &mut Vec<*mut c_void>) -> u64 {
    while let Some(p) = blocks.pop() {
        // SAFETY: each block is live and freed once.
        unsafe { a.release(p) };
    }
    2 * W2_BLOCKS as u64
}

/// W2: one batch.
pub fn w2(a: &Alloc, blocks: &mut Vec<*mut c_void>, rng: &mut Rng) -> u64 {
    w2_fill(a, blocks, rng);
    w2_drain(a, blocks)
}

// ---- W3 and W5: random lifetime ----------------------------------------------------------

pub const SLOTS: usize = 100_000;

/// W3 (sizes 1..512) and W5 (95 % 1..512, 5 % 513..64 KiB): 100,000 live slots.
pub struct Slots {
    v: Vec<*mut c_void>,
    rng: Rng,
    mixed: bool,
}

impl Slots {
    pub fn new(a: &Alloc, mixed: bool) -> Slots {
        let mut s = Slots {
            v: Vec::with_capacity(SLOTS),
            rng: Rng(0x9e37_79b9),
            mixed,
        };
        for _ in 0..SLOTS {
            let n = s.size();
            s.v.push(a.alloc(n));
        }
        s
    }

    #[inline(always)]
    fn size(&mut self) -> usize {
        if self.mixed && self.rng.below(100) < 5 {
            513 + self.rng.below(65536 - 512)
        } else {
            1 + self.rng.below(512)
        }
    }

    /// `k` steps: free a random slot, allocate a random size into it. Returns the
    /// operation count.
    #[inline(never)]
    pub fn steps(&mut self, a: &Alloc, k: u64) -> u64 {
        for _ in 0..k {
            let s = self.rng.below(SLOTS);
            let n = self.size();
            // SAFETY: the slot's block is live; it is replaced at once.
            unsafe { a.release(self.v[s]) };
            self.v[s] = a.alloc(n);
        }
        2 * k
    }

    pub fn free(self, a: &Alloc) {
        for p in self.v {
            // SAFETY: each slot's block is live and freed once.
            unsafe { a.release(p) };
        }
    }
}

// ---- W4: realloc growth ------------------------------------------------------------------

/// W4: `chains` blocks of 8 bytes grown together by ~1.125x + 8 up to 4 KiB, then freed.
/// Returns the operation count.
#[inline(never)]
pub fn w4(a: &Alloc, chains: usize, ptrs: &mut Vec<*mut c_void>) -> u64 {
    ptrs.clear();
    let mut n = 8;
    for _ in 0..chains {
        ptrs.push(a.alloc(n));
    }
    let mut ops = chains as u64;
    while n < 4096 {
        n = (n + n / 8 + 8).min(4096);
        for p in ptrs.iter_mut() {
            // SAFETY: `*p` is live; realloc replaces it.
            *p = unsafe { a.grow(*p, n) };
        }
        ops += chains as u64;
    }
    for p in ptrs.drain(..) {
        // SAFETY: each chain's block is live and freed once.
        unsafe { a.release(p) };
    }
    ops + chains as u64
}

// ---- W6: replay of a CPython trace -------------------------------------------------------

/// The recorded trace (`examples/record_trace.rs`): CPython 3.11 running json + dicts + gc.
pub const TRACE: &[u8] = include_bytes!("../data/cpython311-json-dict-gc.trace");

/// A decoded trace with its slot table.
pub struct Replay {
    events: Vec<trace::Event>,
    slots: Vec<*mut c_void>,
}

impl Replay {
    pub fn new() -> Replay {
        let (events, n) = trace::decode(TRACE);
        Replay {
            events,
            slots: vec![std::ptr::null_mut(); n],
        }
    }

    pub fn events(&self) -> usize {
        self.events.len()
    }

    /// W6: replays every event, then frees what the trace left live. Returns the
    /// operation count.
    #[inline(never)]
    pub fn run(&mut self, a: &Alloc) -> u64 {
        use trace::Event::*;
        for e in &self.events {
            match *e {
                Malloc { id, size } => self.slots[id] = a.alloc(size),
                Calloc { id, size } => {
                    // SAFETY: a C allocator; the block holds `size` bytes.
                    unsafe {
                        let p = (a.malloc)(size);
                        std::ptr::write_bytes(p.cast::<u8>(), 0, size);
                        self.slots[id] = p;
                    }
                }
                // SAFETY: the trace reallocs and frees only live blocks, once.
                Realloc { id, size } => self.slots[id] = unsafe { a.grow(self.slots[id], size) },
                Free { id } => {
                    // SAFETY: as above.
                    unsafe { a.release(self.slots[id]) };
                    self.slots[id] = std::ptr::null_mut();
                }
            }
        }
        let mut ops = self.events.len() as u64;
        for p in self.slots.iter_mut().filter(|p| !p.is_null()) {
            // SAFETY: a block the trace left live, freed once.
            unsafe { a.release(*p) };
            *p = std::ptr::null_mut();
            ops += 1;
        }
        ops
    }
}

/// One second of light activity: every 5 ms, 1,000 blocks of 1..512 bytes allocated and
/// freed (what a program that goes on working, more slowly, does).
pub fn light_activity(a: &Alloc, rng: &mut Rng) {
    let t = Instant::now();
    let mut batch = Vec::with_capacity(1000);
    while t.elapsed().as_secs_f64() < 1.0 {
        for _ in 0..1000 {
            // SAFETY: a C allocator; each block is freed once below.
            batch.push(unsafe { (a.malloc)(1 + rng.next() as usize % 512) });
        }
        for p in batch.drain(..) {
            // SAFETY: as above.
            unsafe { (a.free)(p) };
        }
        std::thread::sleep(std::time::Duration::from_millis(5));
    }
}

/// Child: 1M blocks of 1..512 bytes, free a random 90 %, then the rest. Prints RSS (KiB)
/// at start, peak, after the 90 % and after everything, each of the last two after one
/// second of [`light_activity`].
pub fn fragmentation(a: &Alloc) {
    const N: usize = 1_000_000;
    let mut blocks: Vec<*mut c_void> = Vec::with_capacity(N);
    let mut order: Vec<usize> = (0..N).collect();
    let mut rng = Rng(0x1234_5678);
    for i in (1..N).rev() {
        order.swap(i, rng.next() as usize % (i + 1));
    }
    blocks.resize(N, std::ptr::null_mut()); // touch the array before the baseline
    blocks.clear();
    let start = rss_kib();
    for _ in 0..N {
        let n = 1 + rng.next() as usize % 512;
        // SAFETY: a C allocator; every block is touched.
        let p = unsafe { (a.malloc)(n) };
        unsafe { std::ptr::write_bytes(p.cast::<u8>(), 0x5a, n) };
        blocks.push(p);
    }
    let peak = rss_kib();
    for &i in &order[..N * 9 / 10] {
        // SAFETY: each block is freed once.
        unsafe { (a.free)(blocks[i]) };
    }
    // First idle (no allocation at all), then busy: what each allocator gives back on
    // its own, and what it gives back once the program goes on allocating.
    std::thread::sleep(std::time::Duration::from_secs(1));
    let idle = rss_kib();
    light_activity(a, &mut rng);
    let held = rss_kib();
    for &i in &order[N * 9 / 10..] {
        // SAFETY: as above.
        unsafe { (a.free)(blocks[i]) };
    }
    light_activity(a, &mut rng);
    let end = rss_kib();
    println!("{start} {peak} {idle} {held} {end}");
}
