//! CPython injection: the library constructor that takes over CPython's allocator when the
//! library is preloaded (or linked) into an interpreter, `pymalloc_install()` for embedders,
//! and where the exported `PyObject_*` names find the interpreter's dispatch.
//!
//! How it works:
//! - The constructor runs before `main`. If `PyMem_SetAllocator` can be found with
//!   `dlsym(RTLD_DEFAULT)`, this is a CPython process. Unless told not to (`PYMALLOC_INSTALL=0`)
//!   or CPython is about to replace the allocators itself (`PYTHONMALLOC`, `PYTHONDEVMODE`,
//!   `-X dev`; see [`python_resets_allocators`]), it installs our allocator for the OBJ and MEM
//!   domains (`PYMALLOC_DOMAINS`). The allocator it replaces becomes our fallback: it receives
//!   requests we do not serve and frees of blocks we did not hand out.
//! - A free-threaded CPython (3.13t and later) is left alone, whatever the settings: its
//!   garbage collector needs CPython's mimalloc in both domains ([`free_threaded`]).
//! - Inside a CPython process our exported `PyObject_Malloc` & co. dispatch as the
//!   interpreter's own `PyObject_*` do, through the OBJ domain's installed allocator (ours,
//!   tracemalloc's hooks, or whatever `PYTHONMALLOC` chose): directly where the install
//!   found the interpreter's struct, else by forwarding to the interpreter's functions
//!   ([`crate::cpython::dispatch`]). On builds whose own calls go through the PLT (pyenv's
//!   `--enable-shared`), preloading puts our names in front of libpython's; dispatching as
//!   the interpreter does keeps every block with the allocator that made it.
//! - Where interposition reaches, `_PyObject_DebugMallocStats` (`sys._debugmallocstats()`)
//!   and `_Py_GetAllocatedBlocks` (`sys.getallocatedblocks()`, up to 3.11) answer with our
//!   statistics while we are installed, and defer to the interpreter otherwise.

pub mod config;
pub mod dispatch;

use crate::allocator::fallback::{self, AllocatorEx};
use crate::allocator::heap::interp::{self, Interpreter};
use crate::allocator::heap::ThreadHeap;
use crate::allocator::meta;
use crate::allocator::sync::unmodeled::{AtomicI64, AtomicPtr, AtomicU8};
use crate::allocator::sync::{Locked, Ordering};
use crate::{front::debug, introspect::stats};
use alloc::string::String;
use alloc::vec::Vec;
use config::{Config, Domains};
use core::ffi::{c_char, c_int, c_void, CStr};
use core::mem::MaybeUninit;
use core::ptr;

/// CPython's `PYMEM_DOMAIN_MEM` and `PYMEM_DOMAIN_OBJ`.
const DOMAIN_MEM: c_int = 1;
const DOMAIN_OBJ: c_int = 2;

/// Our bits for the domains, as `pymalloc_install` and `pymalloc_installed_domains`
/// report them (C: 1 = OBJ, 2 = MEM).
pub const BIT_OBJ: u8 = 1;
pub const BIT_MEM: u8 = 2;

impl Domains {
    /// The domains as `BIT_OBJ | BIT_MEM` bits.
    pub fn bits(self) -> u8 {
        (if self.obj { BIT_OBJ } else { 0 }) | (if self.mem { BIT_MEM } else { 0 })
    }

    fn from_bits(bits: u8) -> Domains {
        Domains {
            obj: bits & BIT_OBJ != 0,
            mem: bits & BIT_MEM != 0,
        }
    }
}

type AllocatorFn = unsafe extern "C" fn(c_int, *mut AllocatorEx);

/// What the installation keeps, under its lock ([`INSTALL`]).
///
/// Invariant: `replaced` is null until the first domain is taken over; then it points at
/// the allocator we replaced, in metadata memory (never freed), written once before
/// `fallback::set` published it and never written again: our fallback.
pub(crate) struct Install {
    replaced: *const AllocatorEx,
}
// SAFETY: the struct it points to is process-wide and immutable once recorded; the
// record lives in a `Locked` and is reached only under its lock.
unsafe impl Send for Install {}
/// `BIT_OBJ | BIT_MEM`: the domains we installed ourselves into (only ever set).
static INSTALLED: AtomicU8 = AtomicU8::new(0);
/// The domains `PYMALLOC_DOMAINS` asks for, read once (the constructor reads it; 0 until
/// then), so that a malformed value is reported once, not again by `pymalloc_install`.
static CONFIGURED_DOMAINS: AtomicU8 = AtomicU8::new(0);
crate::allocator::sync::global! {
    /// The installation's record under its lock, the outermost of the allocator's locks
    /// (see `fork`).
    pub(crate) static INSTALL: Locked<Install> = Locked::new(Install {
        replaced: ptr::null(),
    });
}

/// Whether this process ever installed us as the allocator of a CPython domain. Never
/// cleared: an interpreter that later restores its defaults (3.12+ re-initialisation)
/// goes unnoticed.
pub fn installed() -> bool {
    installed_domains() != 0
}

/// The domains (`BIT_OBJ | BIT_MEM`) this process ever installed us into; as
/// [`installed`], never cleared.
pub fn installed_domains() -> u8 {
    INSTALLED.load(Ordering::Acquire)
}

/// The domains to install into: `PYMALLOC_DOMAINS` as the constructor read it, or read
/// now (warning on stderr if malformed) if it has not run.
pub fn configured_domains() -> Domains {
    let bits = CONFIGURED_DOMAINS.load(Ordering::Acquire);
    if bits != 0 {
        return Domains::from_bits(bits);
    }
    let domains = Config::from_env().domains;
    CONFIGURED_DOMAINS.store(domains.bits(), Ordering::Release);
    domains
}

/// `dlsym(handle, name)`.
fn lookup(handle: *mut c_void, name: &CStr) -> *mut c_void {
    // SAFETY: dlsym accepts any handle constant and a NUL-terminated name.
    unsafe { libc::dlsym(handle, name.as_ptr()) }
}

/// The interpreter's definition of `name`, skipping our own export of it: the first
/// definition in the process's lookup order that lies outside the object (shared library,
/// or the program a static build of it is linked into) that our code is in.
pub fn interpreter_symbol(name: &CStr) -> *mut c_void {
    let p = lookup(libc::RTLD_DEFAULT, name);
    if !p.is_null() && !in_our_object(p) {
        return p;
    }
    let p = lookup(libc::RTLD_NEXT, name);
    if in_our_object(p) {
        ptr::null_mut()
    } else {
        p
    }
}

/// Whether `p` lies in the object our code is in (false for null).
fn in_our_object(p: *mut c_void) -> bool {
    /// The base address of the object that contains `p`, null if none does.
    fn base_of(p: *const c_void) -> *mut c_void {
        let mut info = MaybeUninit::<libc::Dl_info>::zeroed();
        // SAFETY: dladdr accepts any address and fills `info` when it returns non-zero.
        if p.is_null() || unsafe { libc::dladdr(p, info.as_mut_ptr()) } == 0 {
            return ptr::null_mut();
        }
        // SAFETY: filled by dladdr.
        unsafe { info.assume_init() }.dli_fbase
    }
    let base = base_of(p);
    !base.is_null() && base == base_of(in_our_object as *const c_void)
}

/// `PyMem_GetAllocator` and `PyMem_SetAllocator`, if this is a CPython process.
fn allocator_api() -> Option<(AllocatorFn, AllocatorFn)> {
    let get = lookup(libc::RTLD_DEFAULT, c"PyMem_GetAllocator");
    let set = lookup(libc::RTLD_DEFAULT, c"PyMem_SetAllocator");
    if get.is_null() || set.is_null() {
        return None;
    }
    // SAFETY: both symbols are CPython's functions of exactly this signature (3.5+).
    unsafe {
        Some((
            core::mem::transmute::<*mut c_void, AllocatorFn>(get),
            core::mem::transmute::<*mut c_void, AllocatorFn>(set),
        ))
    }
}

/// Why this CPython must keep its own allocator, if it is a free-threaded build
/// (`Py_GIL_DISABLED`, 3.13t and later): there the OBJ and MEM domains must be CPython's
/// mimalloc, because the garbage collector finds objects by walking mimalloc's heaps
/// (CPython's `Python/gc_free_threading.c`), and `PyMem_SetAllocator` does not refuse a
/// replacement. Recognised from outside by either of two signs: the process exports
/// `_Py_MergeZeroLocalRefcount` (biased reference counting, only in free-threaded builds),
/// or `Py_GetVersion()` says "free-threading build" (3.13: "experimental free-threading
/// build"). Call only where `allocator_api` found CPython.
pub fn free_threaded() -> Option<&'static str> {
    if !lookup(libc::RTLD_DEFAULT, c"_Py_MergeZeroLocalRefcount").is_null() {
        return Some(FREE_THREADED);
    }
    let version = lookup(libc::RTLD_DEFAULT, c"Py_GetVersion");
    if version.is_null() {
        return None;
    }
    // SAFETY: CPython's `const char *Py_GetVersion(void)` (all versions): it formats
    // compile-time strings into a static buffer, allocates nothing and needs no
    // initialised interpreter.
    let text = unsafe {
        let get =
            core::mem::transmute::<*mut c_void, unsafe extern "C" fn() -> *const c_char>(version);
        let p = get();
        if p.is_null() {
            return None;
        }
        CStr::from_ptr(p)
    };
    text.to_bytes()
        .windows(b"free-threading build".len())
        .any(|w| w == b"free-threading build")
        .then_some(FREE_THREADED)
}

/// What [`free_threaded`] says, for `PYMALLOC_VERBOSE`.
const FREE_THREADED: &str = "not installing: a free-threaded CPython (its garbage collector finds objects by walking mimalloc's heaps, so its OBJ and MEM domains must stay CPython's mimalloc)";

/// Whether an allocator is ours (plain or debug).
fn is_ours(a: &AllocatorEx) -> bool {
    [
        dispatch::ctx::allocator::<Interpreter>(),
        dispatch::ctx::allocator::<ThreadHeap>(),
        debug::allocator(true),
        debug::allocator(false),
    ]
    .iter()
    .any(|o| o.malloc as usize == a.malloc as usize)
}

fn same(a: &AllocatorEx, b: &AllocatorEx) -> bool {
    a.ctx == b.ctx
        && a.malloc as usize == b.malloc as usize
        && a.calloc as usize == b.calloc as usize
        && a.realloc as usize == b.realloc as usize
        && a.free as usize == b.free as usize
}

/// What an install did, as `BIT_OBJ | BIT_MEM` bits.
#[derive(Debug, PartialEq, Eq)]
pub enum Outcome {
    /// Installed now into `done`; the domains in `skipped` were wanted but another
    /// allocator sits there (tracemalloc's or the debug hooks, installed after ours took its
    /// fallback) and we stayed out. Domains already ours are in neither.
    Installed { done: u8, skipped: u8 },
    /// Not a CPython process.
    NoCPython,
    /// A free-threaded CPython ([`free_threaded`]): nothing installed.
    FreeThreaded,
}

/// Names the domains in `bits`: "OBJ and MEM". (A match, not a joined list: this code sits
/// in the text every starting process maps, `tests/lean.rs`.)
pub fn domain_names(bits: u8) -> &'static str {
    match bits & (BIT_OBJ | BIT_MEM) {
        BIT_OBJ => "OBJ",
        BIT_MEM => "MEM",
        0 => "",
        _ => "OBJ and MEM",
    }
}

/// Installs our allocator for `domains` of the running CPython. A domain already ours is
/// left alone; a domain whose current allocator differs from the one we took as fallback
/// is skipped (its blocks could not be freed correctly), and said so in the result.
pub fn install(domains: Domains) -> Outcome {
    let Some((get, set)) = allocator_api() else {
        return Outcome::NoCPython;
    };
    if free_threaded().is_some() {
        return Outcome::FreeThreaded;
    }
    // Idempotent; needed where libpython was loaded after the constructor ran (dlopen).
    resolve_forwarding();
    // Before the lock: the loader's lock must not be taken under ours (`search_windows`).
    let windows = dispatch::search_windows();
    if !debug::enabled() {
        share_interpreter_heap();
    }
    let mut install = INSTALL.lock();
    let (mut done, mut skipped) = (0, 0);
    for (domain, bit, wanted) in [
        (DOMAIN_OBJ, BIT_OBJ, domains.obj),
        (DOMAIN_MEM, BIT_MEM, domains.mem),
    ] {
        if !wanted {
            continue;
        }
        let mut current = MaybeUninit::<AllocatorEx>::uninit();
        // SAFETY: PyMem_GetAllocator fills the whole struct.
        let current = unsafe {
            get(domain, current.as_mut_ptr());
            current.assume_init()
        };
        if is_ours(&current) {
            continue;
        }
        if install.replaced.is_null() {
            let slot = meta::alloc::<AllocatorEx>();
            if slot.is_null() {
                skipped |= bit; // no memory to keep the allocator we would replace
                continue;
            }
            // SAFETY: fresh metadata memory for one `AllocatorEx`, never freed: written
            // here, once, before it is published and recorded.
            unsafe {
                slot.write(current);
                fallback::set(&*slot);
            }
            install.replaced = slot;
        } else {
            // SAFETY: recorded after being written, never written again (the invariant).
            let replaced = unsafe { &*install.replaced };
            if !same(&current, replaced) {
                skipped |= bit;
                continue;
            }
        }
        let mut ours = if debug::enabled() {
            debug::allocator(domain == DOMAIN_OBJ)
        } else if domain == DOMAIN_OBJ {
            // A `ctx` of our own, by which `dispatch::locate` recognises the struct.
            AllocatorEx {
                ctx: dispatch::obj_ctx(),
                ..dispatch::ctx::allocator::<Interpreter>()
            }
        } else {
            dispatch::ctx::allocator::<Interpreter>()
        };
        // SAFETY: PyMem_SetAllocator copies the struct.
        unsafe { set(domain, &mut ours) };
        if domain == DOMAIN_OBJ {
            dispatch::locate(&ours, &windows);
        }
        INSTALLED.fetch_or(bit, Ordering::AcqRel);
        done |= bit;
    }
    Outcome::Installed { done, skipped }
}

/// Where CPython 3.12-3.15 keep the count of interpreters ever created
/// (`_PyRuntime.interpreters.next_id`), and right before it `interpreters.head` and
/// `interpreters.main`, as byte offsets into `_PyRuntime` by minor version: measured with
/// `offsetof` against each version's internal headers (release builds). Where an entry is
/// wrong, [`interpreter_count`] refuses it and the threads keep their own heaps, which
/// `tests/cpython.rs`'s thread-pool test finds on every interpreter of the machine.
const NEXT_ID_OFFSETS: [(u32, usize); 4] = [(12, 56), (13, 648), (14, 824), (15, 952)];

/// Lets the OBJ and MEM domains' calls share the interpreter heap
/// ([`crate::allocator::heap::interp`]) for as long as the process has one GIL: always up
/// to 3.11; from 3.12 while only the main interpreter was ever created, which the
/// runtime's interpreter count says. Where that count cannot be found for sure (another
/// version, a debug build's layout) every call keeps using its thread's own heap.
fn share_interpreter_heap() {
    let Some(minor) = minor_version() else {
        return;
    };
    let count = if minor <= 11 {
        &interp::ONE as *const i64
    } else {
        match interpreter_count(minor) {
            Some(count) => count,
            None => return,
        }
    };
    let held = lookup(libc::RTLD_DEFAULT, c"PyGILState_Check");
    if !held.is_null() {
        // SAFETY: CPython's `int PyGILState_Check(void)` (3.4 and later).
        interp::set_lock_held(unsafe {
            core::mem::transmute::<*mut c_void, extern "C" fn() -> c_int>(held)
        });
    }
    // SAFETY: before the domains are ours (the caller installs them next); `count` is ours
    // or in `_PyRuntime`, which lives as long as libpython, and the runtime raises it when
    // it creates a second interpreter, before that interpreter's GIL exists.
    unsafe { interp::enable(count) };
}

/// CPython's minor version (3.X), from `Py_GetVersion()`. (Digits by hand: core's parsers
/// live in the cold text, which a starting process must not touch; `tests/lean.rs`.)
fn minor_version() -> Option<u32> {
    let version = lookup(libc::RTLD_DEFAULT, c"Py_GetVersion");
    if version.is_null() {
        return None;
    }
    // SAFETY: as in `free_threaded`; the string is NUL-terminated, so the reads stop at the
    // first byte that is not what they look for, the NUL at the latest.
    unsafe {
        let get =
            core::mem::transmute::<*mut c_void, unsafe extern "C" fn() -> *const c_char>(version);
        let p = get().cast::<u8>();
        if p.is_null() || *p != b'3' || *p.add(1) != b'.' {
            return None;
        }
        let mut minor = 0u32;
        let mut q = p.add(2);
        while (*q).is_ascii_digit() && minor < 1000 {
            minor = minor * 10 + u32::from(*q - b'0');
            q = q.add(1);
        }
        (q != p.add(2)).then_some(minor)
    }
}

/// The address of `_PyRuntime.interpreters.next_id` of CPython 3.`minor`, if this
/// interpreter's runtime is laid out as [`NEXT_ID_OFFSETS`] says: a release build (no
/// `_Py_NegativeRefcount`, which only debug builds have), the count -1 (before
/// `Py_Initialize`) or at least 1, and the two pointers before it null (before) or the
/// interpreters `PyInterpreterState_Head()` and `_Main()` return.
fn interpreter_count(minor: u32) -> Option<*const i64> {
    let &(_, offset) = NEXT_ID_OFFSETS.iter().find(|(m, _)| *m == minor)?;
    let runtime = lookup(libc::RTLD_DEFAULT, c"_PyRuntime");
    let head = lookup(libc::RTLD_DEFAULT, c"PyInterpreterState_Head");
    let main = lookup(libc::RTLD_DEFAULT, c"PyInterpreterState_Main");
    if runtime.is_null()
        || head.is_null()
        || main.is_null()
        || !lookup(libc::RTLD_DEFAULT, c"_Py_NegativeRefcount").is_null()
    {
        return None;
    }
    type Get = unsafe extern "C" fn() -> *mut c_void;
    // SAFETY: `_PyRuntime` is at least `offset + 8` bytes in this version (the table), its
    // words 8-aligned; the interpreter writes them under its own lock while other threads
    // may run, so they are read as relaxed atomics. The two functions are CPython's
    // `PyInterpreterState *f(void)`, which read the runtime only.
    unsafe {
        let count = runtime.cast::<u8>().add(offset).cast::<i64>();
        let word = |back: usize| {
            AtomicPtr::from_ptr(count.cast::<*mut c_void>().sub(back)).load(Ordering::Relaxed)
        };
        let (head_now, main_now) = (
            core::mem::transmute::<*mut c_void, Get>(head)(),
            core::mem::transmute::<*mut c_void, Get>(main)(),
        );
        let n = AtomicI64::from_ptr(count).load(Ordering::Relaxed);
        let laid_out = if n == -1 {
            word(2).is_null() && word(1).is_null()
        } else {
            n >= 1 && word(2) == head_now && word(1) == main_now
        };
        laid_out.then_some(count.cast_const())
    }
}

/// Points the exported `PyObject_*` names at the interpreter's own.
fn resolve_forwarding() {
    let slots: [(&AtomicPtr<c_void>, &CStr); 4] = [
        (&dispatch::FORWARD_MALLOC, c"PyObject_Malloc"),
        (&dispatch::FORWARD_CALLOC, c"PyObject_Calloc"),
        (&dispatch::FORWARD_REALLOC, c"PyObject_Realloc"),
        (&dispatch::FORWARD_FREE, c"PyObject_Free"),
    ];
    for (slot, name) in slots {
        slot.store(interpreter_symbol(name), Ordering::Release);
    }
}

/// CPython's `sys._debugmallocstats()` hook (the exported `_PyObject_DebugMallocStats`):
/// our statistics while we are installed, the interpreter's own otherwise.
///
/// # Safety
/// `out` is a valid `FILE*`.
pub unsafe fn debug_malloc_stats(out: *mut libc::FILE) -> c_int {
    if installed() {
        // SAFETY: `out` is a valid stream; flush it so our text lands after its own.
        unsafe {
            libc::fflush(out);
            stats::print(libc::fileno(out));
        }
        return 1;
    }
    let theirs = interpreter_symbol(c"_PyObject_DebugMallocStats");
    if theirs.is_null() {
        return 0;
    }
    // SAFETY: the interpreter's function of this signature.
    unsafe {
        core::mem::transmute::<*mut c_void, unsafe extern "C" fn(*mut libc::FILE) -> c_int>(theirs)(
            out,
        )
    }
}

/// CPython's `sys.getallocatedblocks()` hook (the exported `_Py_GetAllocatedBlocks`): the
/// blocks in our pools plus those in the interpreter's own.
pub fn allocated_blocks() -> isize {
    let theirs = interpreter_symbol(c"_Py_GetAllocatedBlocks");
    let theirs = if theirs.is_null() {
        0
    } else {
        // SAFETY: the interpreter's function of this signature.
        unsafe { core::mem::transmute::<*mut c_void, extern "C" fn() -> isize>(theirs)() }
    };
    let ours = if installed() {
        stats::blocks_in_use() as isize
    } else {
        0
    };
    theirs + ours
}

/// Why CPython will replace the allocators after our constructor, if it will: its own
/// `PYTHONMALLOC` or development mode. `args` is the process's argv; `env` reads the
/// environment. Python options end at the first non-option argument, `-c`, `-m` or `--`.
pub fn python_resets_allocators(
    args: &[&[u8]],
    env: impl Fn(&str) -> Option<String>,
) -> Option<String> {
    let mut ignore_env = false;
    let mut dev_mode = false;
    let mut i = 1;
    'args: while i < args.len() {
        let a = args[i];
        if a == b"--" || a == b"-" || !a.starts_with(b"-") {
            break;
        }
        if a.starts_with(b"--") {
            if a == b"--check-hash-based-pycs" {
                i += 1; // takes a value
            }
            i += 1;
            continue;
        }
        let flags = &a[1..];
        for (j, &f) in flags.iter().enumerate() {
            match f {
                b'c' | b'm' => break 'args,
                b'E' | b'I' => ignore_env = true,
                b'W' | b'X' => {
                    let value: &[u8] = if j + 1 < flags.len() {
                        &flags[j + 1..]
                    } else {
                        i += 1;
                        args.get(i).copied().unwrap_or(b"")
                    };
                    let key = value.split(|&b| b == b'=').next().unwrap_or(b"");
                    if f == b'X' && key == b"dev" {
                        dev_mode = true;
                    }
                    break;
                }
                _ => {}
            }
        }
        i += 1;
    }
    if dev_mode {
        return Some("python runs with -X dev, whose debug allocator replaces ours".into());
    }
    if ignore_env {
        return None;
    }
    if let Some(v) = env("PYTHONMALLOC").filter(|v| !v.is_empty()) {
        return Some(format!(
            "PYTHONMALLOC={v} is set: CPython installs the allocator it names"
        ));
    }
    if env("PYTHONDEVMODE").is_some_and(|v| !v.is_empty()) {
        return Some(
            "PYTHONDEVMODE is set: CPython's development mode installs its debug allocator".into(),
        );
    }
    None
}

/// The process's arguments as byte strings.
///
/// # Safety
/// `argv` holds `argc` valid C strings (or is null).
unsafe fn arguments<'a>(argc: c_int, argv: *const *const c_char) -> Vec<&'a [u8]> {
    if argv.is_null() {
        return Vec::new();
    }
    (0..argc.max(0) as usize)
        // SAFETY: per the caller.
        .map(|i| unsafe { *argv.add(i) })
        .take_while(|p| !p.is_null())
        // SAFETY: per the caller, each is a NUL-terminated string that outlives us.
        .map(|p| unsafe { CStr::from_ptr(p) }.to_bytes())
        .collect()
}

fn say(config: &Config, what: &str) {
    if config.verbose {
        eprintln!("pymalloc: {what}");
    }
}

/// The library constructor (glibc passes `argc`, `argv`, `envp` to `.init_array` entries).
unsafe extern "C" fn constructor(
    argc: c_int,
    argv: *const *const c_char,
    _envp: *const *const c_char,
) {
    let config = Config::from_env();
    CONFIGURED_DOMAINS.store(config.domains.bits(), Ordering::Release);
    if config.debug {
        debug::enable();
    }
    crate::allocator::arena::set_decay_ms(config.decay_ms);
    if config.trim_signal != 0 && !crate::allocator::trim_signal::install(config.trim_signal) {
        eprintln!(
            "pymalloc: PYMALLOC_TRIM_SIGNAL: cannot catch signal {}",
            config.trim_signal
        );
    }
    if config.stats {
        // SAFETY: registering a plain C function.
        unsafe { libc::atexit(print_at_exit) };
    }
    if allocator_api().is_none() {
        say(
            &config,
            "not a CPython process (no PyMem_SetAllocator): nothing to install",
        );
        return;
    }
    resolve_forwarding();
    if let Some(why) = free_threaded() {
        say(&config, why);
        return;
    }
    if !config.install {
        say(
            &config,
            "PYMALLOC_INSTALL=0: leaving CPython's allocator in place",
        );
        return;
    }
    // SAFETY: glibc passes the real argv.
    let args = unsafe { arguments(argc, argv) };
    if let Some(why) = python_resets_allocators(&args, config::var) {
        say(&config, &format!("not installing: {why}"));
        return;
    }
    let outcome = install(config.domains);
    // Formatting only when asked: the formatting code then stays on pages a process never
    // touches (link/hot-text.ld).
    if !config.verbose {
        return;
    }
    if let Outcome::Installed { done, skipped } = outcome {
        if done != 0 {
            let names = domain_names(done);
            say(
                &config,
                &format!("installed for CPython's {names} domain(s)"),
            );
        }
        if done & BIT_OBJ != 0 {
            say(
                &config,
                if dispatch::obj_domain().is_some() {
                    "PyObject_* dispatch through the OBJ domain directly"
                } else {
                    "PyObject_* forward to the interpreter's own"
                },
            );
        }
        if skipped != 0 {
            let names = domain_names(skipped);
            say(
                &config,
                &format!("skipped CPython's {names} domain(s): another allocator sits there"),
            );
        }
        if done | skipped == 0 {
            say(&config, "nothing installed: the domains were ours already");
        }
    }
}

#[used]
#[link_section = ".init_array"]
static CONSTRUCTOR: unsafe extern "C" fn(c_int, *const *const c_char, *const *const c_char) =
    constructor;

/// Whether this process used the allocator: it installed us into CPython, or served a
/// block (an arena was mapped, or the fallback handed out a block on our behalf). A forked
/// child inherits the answer of its parent at the fork.
pub fn used() -> bool {
    installed()
        || crate::allocator::arena::counts().allocated_total > 0
        || crate::allocator::fallback::served()
}

/// The `PYMALLOC_STATS=1` exit hook (registered by the constructor): the report on stderr, only from a process that
/// [`used`] the allocator (a shell or `ls` that merely inherits `LD_PRELOAD` stays silent).
pub extern "C" fn print_at_exit() {
    if used() {
        stats::print(2);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use alloc::string::ToString;

    fn resets(args: &[&str], env: &[(&str, &str)]) -> bool {
        let args: Vec<&[u8]> = args.iter().map(|a| a.as_bytes()).collect();
        let env: Vec<(String, String)> = env
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        python_resets_allocators(&args, |k| {
            env.iter().find(|(n, _)| n == k).map(|(_, v)| v.clone())
        })
        .is_some()
    }

    #[test]
    fn pythonmalloc_and_devmode_make_us_step_aside() {
        assert!(!resets(&["python3", "app.py"], &[]));
        assert!(resets(
            &["python3", "app.py"],
            &[("PYTHONMALLOC", "malloc")]
        ));
        assert!(!resets(&["python3", "app.py"], &[("PYTHONMALLOC", "")]));
        assert!(resets(&["python3", "app.py"], &[("PYTHONDEVMODE", "1")]));
        assert!(resets(&["python3", "-X", "dev", "app.py"], &[]));
        assert!(resets(&["python3", "-Xdev", "-c", "pass"], &[]));
        assert!(resets(&["python3", "-bX", "dev=1"], &[]));
    }

    #[test]
    fn ignore_environment_flags_are_honoured() {
        assert!(!resets(
            &["python3", "-E", "app.py"],
            &[("PYTHONMALLOC", "malloc")]
        ));
        assert!(!resets(
            &["python3", "-I", "-c", "pass"],
            &[("PYTHONDEVMODE", "1")]
        ));
        assert!(!resets(
            &["python3", "-sIu", "x.py"],
            &[("PYTHONMALLOC", "debug")]
        ));
        assert!(resets(&["python3", "-E", "-X", "dev"], &[]));
    }

    #[test]
    fn option_parsing_stops_where_python_stops() {
        assert!(!resets(&["python3", "-c", "-X dev"], &[]));
        assert!(!resets(&["python3", "-m", "mod", "-X", "dev"], &[]));
        assert!(!resets(&["python3", "script.py", "-X", "dev"], &[]));
        assert!(!resets(&["python3", "--", "-X", "dev"], &[]));
        assert!(!resets(&["python3", "-W", "dev", "x.py"], &[]));
        assert!(!resets(
            &["python3", "-Wdefault", "-E", "x.py"],
            &[("PYTHONMALLOC", "malloc")]
        ));
        assert!(resets(
            &["python3", "--check-hash-based-pycs", "always", "-X", "dev"],
            &[]
        ));
    }

    #[test]
    fn domain_bits_round_trip_and_are_named() {
        for (obj, mem) in [(true, true), (true, false), (false, true)] {
            let d = Domains { obj, mem };
            assert_eq!(Domains::from_bits(d.bits()), d);
        }
        assert_eq!(domain_names(BIT_OBJ | BIT_MEM), "OBJ and MEM");
        assert_eq!(domain_names(BIT_MEM), "MEM");
    }

    #[test]
    fn no_cpython_in_a_test_binary() {
        assert_eq!(
            install(Domains {
                obj: true,
                mem: true
            }),
            Outcome::NoCPython
        );
        assert!(!installed());
        assert_eq!(installed_domains(), 0);
    }
}
