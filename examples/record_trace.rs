//! Records a real CPython 3.11 allocation trace for W6 (replay): every malloc, calloc,
//! realloc and free of the `PyMem` and `PyObject` domains while the interpreter runs a
//! json + dicts + gc workload, through hooks installed with `PyMem_SetAllocator` that wrap
//! the interpreter's own allocator. Blocks allocated before the hooks are ignored.
//!
//! `cargo run --release --example record_trace -- benches/data/cpython311-json-dict-gc.trace`
//! (format: `benches/common/trace.rs`).

#[path = "../benches/common/dl.rs"]
mod dl;
#[path = "../benches/common/trace.rs"]
mod trace;

use std::collections::HashMap;
use std::ffi::{c_void, CString};
use std::sync::Mutex;

/// CPython's `PyMemAllocatorEx`.
#[repr(C)]
#[derive(Clone, Copy)]
struct AllocatorEx {
    ctx: *mut c_void,
    malloc: unsafe extern "C" fn(*mut c_void, usize) -> *mut c_void,
    calloc: unsafe extern "C" fn(*mut c_void, usize, usize) -> *mut c_void,
    realloc: unsafe extern "C" fn(*mut c_void, *mut c_void, usize) -> *mut c_void,
    free: unsafe extern "C" fn(*mut c_void, *mut c_void),
}

/// The recording: the trace so far and the id of every live recorded block.
struct Recorder {
    writer: trace::Writer,
    live: HashMap<usize, usize>,
}

static REC: Mutex<Option<Recorder>> = Mutex::new(None);

fn record(f: impl FnOnce(&mut Recorder)) {
    if let Some(r) = REC.lock().unwrap().as_mut() {
        f(r);
    }
}

fn on_alloc(p: *mut c_void, size: usize, zeroed: bool) {
    if !p.is_null() {
        record(|r| {
            let id = r.writer.alloc(size, zeroed);
            r.live.insert(p as usize, id);
        });
    }
}

// The hooks: `ctx` is the wrapped domain's original allocator (a leaked box).
unsafe extern "C" fn hook_malloc(ctx: *mut c_void, n: usize) -> *mut c_void {
    // SAFETY: `ctx` is a live `AllocatorEx` (see `install`).
    let orig = unsafe { *ctx.cast::<AllocatorEx>() };
    // SAFETY: forwarding to the interpreter's allocator.
    let p = unsafe { (orig.malloc)(orig.ctx, n) };
    on_alloc(p, n, false);
    p
}

unsafe extern "C" fn hook_calloc(ctx: *mut c_void, nelem: usize, elsize: usize) -> *mut c_void {
    // SAFETY: as in `hook_malloc`.
    let orig = unsafe { *ctx.cast::<AllocatorEx>() };
    // SAFETY: forwarding to the interpreter's allocator.
    let p = unsafe { (orig.calloc)(orig.ctx, nelem, elsize) };
    on_alloc(p, nelem * elsize, true);
    p
}

unsafe extern "C" fn hook_realloc(ctx: *mut c_void, p: *mut c_void, n: usize) -> *mut c_void {
    // SAFETY: as in `hook_malloc`.
    let orig = unsafe { *ctx.cast::<AllocatorEx>() };
    // SAFETY: forwarding to the interpreter's allocator.
    let q = unsafe { (orig.realloc)(orig.ctx, p, n) };
    if !q.is_null() {
        record(|r| match r.live.remove(&(p as usize)) {
            Some(id) => {
                r.writer.realloc(id, n);
                r.live.insert(q as usize, id);
            }
            // NULL or a block from before the hooks: from here on a new block.
            None => {
                let id = r.writer.alloc(n, false);
                r.live.insert(q as usize, id);
            }
        });
    }
    q
}

unsafe extern "C" fn hook_free(ctx: *mut c_void, p: *mut c_void) {
    record(|r| {
        if let Some(id) = r.live.remove(&(p as usize)) {
            r.writer.free(id);
        }
    });
    // SAFETY: as in `hook_malloc`.
    let orig = unsafe { *ctx.cast::<AllocatorEx>() };
    // SAFETY: forwarding to the interpreter's allocator.
    unsafe { (orig.free)(orig.ctx, p) }
}

/// The workload: build records, round-trip them through json, index them in dicts, make
/// reference cycles and collect them.
const WORKLOAD: &str = r#"
import json, gc, random
random.seed(1)
class Node:
    pass
for r in range(4):
    data = [{"id": i, "name": "item%d" % i, "tags": ["t%d" % (i % 7), "x" * (i % 40)],
             "score": i * 1.5, "nested": {"a": [i, i + 1], "b": None}} for i in range(200)]
    s = json.dumps(data)
    back = json.loads(s)
    index = {}
    for o in back:
        index[o["name"]] = o
        index.setdefault(o["tags"][0], []).append(o["id"])
    nodes = [Node() for _ in range(150)]
    for a, b in zip(nodes, nodes[1:]):
        a.next = b
        a.payload = {"k": random.random()}
    nodes[-1].next = nodes[0]
    del nodes, data, back, index, s
    gc.collect()
"#;

fn main() {
    let out = std::env::args()
        .nth(1)
        .unwrap_or_else(|| "benches/data/cpython311-json-dict-gc.trace".into());
    let py = dl::cpython().expect("CPython 3.11");
    // Extension modules (`math`, `_json`) look their symbols up globally.
    let lib = CString::new(dl::cpython_lib().unwrap()).unwrap();
    // SAFETY: re-opening the loaded library with RTLD_GLOBAL only widens its visibility.
    let again = unsafe {
        libc::dlopen(
            lib.as_ptr(),
            libc::RTLD_NOW | libc::RTLD_NOLOAD | libc::RTLD_GLOBAL,
        )
    };
    assert!(!again.is_null(), "libpython not loaded");
    let get = dl::sym(py, "PyMem_GetAllocator").expect("PyMem_GetAllocator");
    let set = dl::sym(py, "PyMem_SetAllocator").expect("PyMem_SetAllocator");
    let run = dl::sym(py, "PyRun_SimpleString").expect("PyRun_SimpleString");
    type GetSet = unsafe extern "C" fn(i32, *mut AllocatorEx);
    // SAFETY: the CPython functions of these signatures.
    let (get, set, run) = unsafe {
        (
            std::mem::transmute::<*mut c_void, GetSet>(get),
            std::mem::transmute::<*mut c_void, GetSet>(set),
            std::mem::transmute::<*mut c_void, unsafe extern "C" fn(*const i8) -> i32>(run),
        )
    };
    let py_run = |code: &str| {
        let c = CString::new(code).unwrap();
        // SAFETY: the interpreter is initialised and this thread holds the GIL.
        assert_eq!(unsafe { run(c.as_ptr()) }, 0, "python code failed");
    };
    py_run("import json, gc, random");
    // PYMEM_DOMAIN_MEM = 1, PYMEM_DOMAIN_OBJ = 2: both are pymalloc's in 3.11.
    let mut saved = Vec::new();
    for domain in [1, 2] {
        let orig = Box::leak(Box::new(AllocatorEx {
            ctx: std::ptr::null_mut(),
            malloc: hook_malloc,
            calloc: hook_calloc,
            realloc: hook_realloc,
            free: hook_free,
        }));
        // SAFETY: fills `orig` with the domain's allocator.
        unsafe { get(domain, orig) };
        saved.push((domain, *orig));
        let mut hook = AllocatorEx {
            ctx: (orig as *mut AllocatorEx).cast(),
            malloc: hook_malloc,
            calloc: hook_calloc,
            realloc: hook_realloc,
            free: hook_free,
        };
        // SAFETY: the hook wraps the allocator it replaces, so blocks stay compatible.
        unsafe { set(domain, &mut hook) };
    }
    *REC.lock().unwrap() = Some(Recorder {
        writer: trace::Writer::default(),
        live: HashMap::new(),
    });
    py_run(WORKLOAD);
    let rec = REC.lock().unwrap().take().unwrap();
    for (domain, mut orig) in saved {
        // SAFETY: putting the interpreter's allocator back; the hook stays valid anyway.
        unsafe { set(domain, &mut orig) };
    }
    let bytes = rec.writer.finish();
    std::fs::write(&out, &bytes).expect("write trace");
    println!(
        "{out}: {} events, {} bytes, {} ids, {} blocks still live",
        rec.writer.events(),
        bytes.len(),
        rec.writer.ids.high_water(),
        rec.live.len()
    );
}
