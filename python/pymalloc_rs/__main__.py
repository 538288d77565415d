"""``python -m pymalloc_rs [--stats] [--debug] [--verbose] [--report] [--report-svg FILE]
[--] [PYTHON-ARGS...]``

Re-runs this interpreter (``sys.executable``, with the options it was started with) with
pymalloc-rs preloaded, in place of this process (``exec``): ``python -m pymalloc_rs
app.py x`` then behaves exactly as ``python app.py x`` (``sys.argv``, exit status,
signals, stdin and stdout), only on pymalloc-rs. Everything after our own options goes to
Python unchanged: a script, ``-m module``, ``-c code``, or nothing (the REPL), so a
missing script or module gets Python's own error and exit status.

``--report`` (and ``--report-svg FILE``) run the program through a small bootstrap
(``_report``) that prints, when the program ends, which objects keep memory stranded
(``pymalloc_rs.pinning()``); the program then runs as ``python`` runs it in every way we
know of but one: its traceback, if it fails, starts with two frames of ours.

A free-threaded interpreter, which the library would leave alone, runs the program
without it (and without the report), after one line on stderr that says so.
"""

import os
import sys

from . import _free_threaded, _supported_platform, library_path

USAGE = """\
usage: python -m pymalloc_rs [--stats] [--debug] [--verbose] [--report]
                             [--report-svg FILE] [--] \
(script.py | -m module | -c code | -) [args...]

Runs Python with pymalloc-rs as its allocator (the library preloaded with LD_PRELOAD).

options:
  --stats    print the allocator's statistics to stderr at exit (PYMALLOC_STATS=1)
  --debug    debug checks: overruns, use after free, double free (PYMALLOC_DEBUG=1)
  --verbose  say what was installed or skipped, and why (PYMALLOC_VERBOSE=1)
  --report   at exit, print to stderr which objects keep memory stranded in sparse
             pools, by type (and by allocation site under python -X tracemalloc)
  --report-svg FILE
             --report, and draw it as an SVG chart into FILE
  -h, --help show this help and exit
"""

#: Our options and the environment variable each sets.
OPTIONS = {
    "--stats": "PYMALLOC_STATS",
    "--debug": "PYMALLOC_DEBUG",
    "--verbose": "PYMALLOC_VERBOSE",
}


def fail(message):
    sys.stderr.write("pymalloc_rs: %s\n" % message)
    return 1


def interpreter_options():
    """The options this interpreter was started with (before ``-m pymalloc_rs``): exact
    from ``sys.orig_argv`` (3.10+), else rebuilt from ``sys.flags``, ``-W`` and ``-X``."""
    orig = getattr(sys, "orig_argv", None)
    if orig:
        for i, arg in enumerate(orig):
            if (arg == "-m" and orig[i + 1 : i + 2] == ["pymalloc_rs"]) or (
                arg == "-mpymalloc_rs"
            ):
                return orig[1:i]
    import subprocess

    # CPython's own helper for re-running itself with the same flags (3.8+).
    return subprocess._args_from_interpreter_flags()


def preload_value(lib, old):
    """``LD_PRELOAD`` with ``lib`` first, keeping the user's entries after it."""
    entries = [e for e in old.replace(":", " ").split() if e]
    if lib in entries:
        return old
    return " ".join([lib] + entries)


def main(argv):
    env = dict(os.environ)
    report = None  # the bootstrap's own arguments under --report
    i = 0
    while i < len(argv):
        arg = argv[i]
        if arg in ("-h", "--help"):
            sys.stdout.write(USAGE)
            return 0
        if arg == "--":
            i += 1
            break
        if arg == "--report":
            report = report or []
            i += 1
            continue
        if arg == "--report-svg":
            if i + 1 == len(argv):
                return fail("--report-svg needs a file name")
            report = ["--svg", os.path.abspath(argv[i + 1])]
            i += 2
            continue
        if arg not in OPTIONS:
            break
        env[OPTIONS[arg]] = "1"
        i += 1
    program = argv[i:]
    why = _supported_platform()
    if why:
        return fail(why)
    if _free_threaded():
        sys.stderr.write(
            "pymalloc_rs: this is a free-threaded CPython, whose garbage collector finds "
            "objects by walking mimalloc's heaps: running without pymalloc-rs\n"
        )
        return run(program, env)
    if report is not None:
        if not program or program[0] == "-" or (
            program[0] in ("-m", "-c") and len(program) < 2
        ):
            return fail("--report needs a program: script.py, -m module or -c code")
        from ._report import BOOT

        program = ["-c", BOOT] + report + ["--"] + program
    try:
        lib = library_path()
    except FileNotFoundError as e:
        return fail(str(e).replace("pymalloc_rs: ", "", 1))
    if any(c in lib for c in " :"):
        return fail(
            "the library's path %r holds a space or a colon, which LD_PRELOAD cannot "
            "carry; install the package under a path without them" % lib
        )
    env["LD_PRELOAD"] = preload_value(lib, env.get("LD_PRELOAD", ""))
    return run(program, env)


def run(program, env):
    """Replaces this process with this interpreter running ``program`` in ``env``."""
    python = sys.executable
    if not python:
        return fail("cannot tell which interpreter this is (sys.executable is empty)")
    args = [python] + interpreter_options() + program
    sys.stdout.flush()
    sys.stderr.flush()
    try:
        os.execve(python, args, env)
    except OSError as e:
        return fail("cannot run %s: %s" % (python, e))


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
