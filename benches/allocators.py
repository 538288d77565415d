"""What the service benches (thread_pool.py, web_services.py) share: the four allocators they
compare, as `pymalloc compare` runs them (cli/src/compare.rs), the environment of a measured
process under each, and medians and ratios.

- CPython's pymalloc: no preload, PYTHONMALLOC unset (the baseline of every ratio);
- pymalloc-rs: LD_PRELOAD of target/release/libpymalloc.so (or $PYMALLOC_LIB);
- mimalloc and jemalloc: LD_PRELOAD of Debian's libmimalloc.so.2 / libjemalloc.so.2 with
  PYTHONMALLOC=malloc, skipped with a line on stderr when not installed
  (`apt-get install libmimalloc2.0 libjemalloc2`)."""
import os
import statistics
import sys

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
BASELINE = "CPython's pymalloc"
LIBDIRS = ["/usr/lib/x86_64-linux-gnu", "/usr/lib/aarch64-linux-gnu", "/usr/lib64", "/usr/lib"]


def allocators():
    """[(name, preload or None, PYTHONMALLOC or None)], the baseline first; exits when
    pymalloc-rs is not built."""
    ours = os.environ.get("PYMALLOC_LIB") or os.path.join(ROOT, "target/release/libpymalloc.so")
    if not os.path.isfile(ours):
        sys.exit(f"{ours} not found: run `cargo build --release` first")
    found = [(BASELINE, None, None), ("pymalloc-rs", ours, None)]
    for name, file in [("mimalloc", "libmimalloc.so.2"), ("jemalloc", "libjemalloc.so.2")]:
        path = next((os.path.join(d, file) for d in LIBDIRS
                     if os.path.isfile(os.path.join(d, file))), None)
        if path:
            found.append((name, path, "malloc"))
        else:
            print(f"{name} not installed ({file}); skipped", file=sys.stderr)
    return found


def environment(preload, pythonmalloc):
    """The environment of a measured process: ours, less any preload, PYTHONMALLOC or
    PYMALLOC_* setting, plus the allocator's. pymalloc-rs (a preload without PYTHONMALLOC)
    runs with PYMALLOC_VERBOSE=1, so that `check_installed` can see that it served."""
    env = {k: v for k, v in os.environ.items()
           if k not in ("LD_PRELOAD", "PYTHONMALLOC") and not k.startswith("PYMALLOC_")}
    if preload:
        env["LD_PRELOAD"] = preload
    if pythonmalloc:
        env["PYTHONMALLOC"] = pythonmalloc
    elif preload:
        env["PYMALLOC_VERBOSE"] = "1"
    return env


def check_installed(env, stderr, what):
    """Exits unless a process run with `env` under pymalloc-rs said on `stderr` that it
    installed itself (a measurement of CPython's own allocator would pass for ours)."""
    if env.get("PYMALLOC_VERBOSE") and "pymalloc: installed" not in stderr:
        sys.exit(f"{what}: pymalloc-rs did not install itself: {stderr[-2000:]}")


def median(values):
    return statistics.median(values) if values else float("nan")


def ratio(value, base):
    return f"{value / base:.2f}" if base else "n/a"
