//! Loading peers with `dlopen`, shared by the benches and `examples/record_trace.rs`.

// Not every user needs every helper.
#![allow(dead_code)]

use std::ffi::{c_void, CStr, CString};

/// The address of `name` in `handle` (`RTLD_DEFAULT` searches everything loaded).
pub fn sym(handle: *mut c_void, name: &str) -> Option<*mut c_void> {
    let c = CString::new(name).unwrap();
    // SAFETY: a valid handle and NUL-terminated name.
    let p = unsafe { libc::dlsym(handle, c.as_ptr()) };
    (!p.is_null()).then_some(p)
}

/// `dlopen(path, RTLD_NOW | RTLD_LOCAL)`, or why not.
pub fn open(path: &str) -> Result<*mut c_void, String> {
    let c = CString::new(path).unwrap();
    // SAFETY: dlopen of a shared library by path.
    let h = unsafe { libc::dlopen(c.as_ptr(), libc::RTLD_NOW | libc::RTLD_LOCAL) };
    if h.is_null() {
        // SAFETY: dlerror returns a C string describing the last failure.
        let why = unsafe { CStr::from_ptr(libc::dlerror()) };
        return Err(format!("cannot load {path}: {}", why.to_string_lossy()));
    }
    Ok(h)
}

/// pyenv's CPython 3.11 shared library (`$PYENV_ROOT`, else `~/.pyenv`; the newest 3.11.x
/// built with `--enable-shared`).
pub fn cpython_lib() -> Option<String> {
    let root = std::env::var("PYENV_ROOT")
        .or_else(|_| std::env::var("HOME").map(|h| format!("{h}/.pyenv")))
        .ok()?;
    let dir = std::fs::read_dir(format!("{root}/versions")).ok()?;
    let mut versions: Vec<(u32, String)> = dir
        .filter_map(|e| {
            let name = e.ok()?.file_name().into_string().ok()?;
            let patch = name.strip_prefix("3.11.")?.parse().ok()?;
            Some((patch, name))
        })
        .map(|(p, n)| (p, format!("{root}/versions/{n}/lib/libpython3.11.so.1.0")))
        .filter(|(_, lib)| std::path::Path::new(lib).is_file())
        .collect();
    versions.sort();
    versions.pop().map(|(_, lib)| lib)
}

/// Loads CPython 3.11 and runs `Py_InitializeEx(0)`; returns the library handle.
pub fn cpython() -> Result<*mut c_void, String> {
    for var in ["PYTHONMALLOC", "PYTHONDEVMODE"] {
        if std::env::var_os(var).is_some() {
            return Err(format!(
                "{var} is set, so CPython would not use its pymalloc: unset it"
            ));
        }
    }
    let h = open(&cpython_lib().ok_or(
        "no pyenv CPython 3.11 shared library (PYTHON_CONFIGURE_OPTS=--enable-shared \
         pyenv install 3.11)",
    )?)?;
    let init = sym(h, "Py_InitializeEx").ok_or("no Py_InitializeEx")?;
    // SAFETY: CPython's initialisation, no signal handlers; the symbol has this signature.
    unsafe { std::mem::transmute::<*mut c_void, unsafe extern "C" fn(i32)>(init)(0) };
    Ok(h)
}
