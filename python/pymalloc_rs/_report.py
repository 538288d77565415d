"""The child side of ``python -m pymalloc_rs --report``: runs the program (a script,
``-m module`` or ``-c code``) in this interpreter's ``__main__``, as ``python`` would, and
prints :func:`pymalloc_rs.pinning`'s report to stderr when the interpreter exits (after
the program's own ``atexit`` handlers), drawing it as SVG too with ``--svg FILE``.

Started by ``__main__`` as ``python [OPTIONS] -c BOOT [--svg FILE] -- PROGRAM ARGS...``.
"""

import atexit
import os
import sys

#: The code ``__main__`` passes with ``-c``.
BOOT = "import pymalloc_rs._report as r; r.main()"


def report(svg):
    """Prints the report to stderr (and writes the SVG chart to ``svg`` unless ``None``);
    one line saying why when there is none (pymalloc-rs not active)."""
    from . import NotActiveError, pinning

    try:
        p = pinning()
    except NotActiveError as e:
        sys.stderr.write("pymalloc_rs: no report: %s\n" % e)
        return
    sys.stderr.write(str(p))
    if svg is not None:
        from ._chart import write_svg

        try:
            write_svg(p, svg)
        except (OSError, RuntimeError) as e:
            sys.stderr.write("pymalloc_rs: no chart: %s\n" % e)


def _fresh_main(**names):
    """``__main__``'s namespace, emptied of the bootstrap and holding ``names``."""
    import builtins

    g = sys.modules["__main__"].__dict__
    g.clear()
    g.update(__name__="__main__", __doc__=None, __package__=None, __spec__=None)
    g.update(__builtins__=builtins, **names)
    return g


def _set_path0(entry):
    """Sets ``sys.path[0]`` as ``python`` would for the program (``-c`` put ``''``
    there; ``-I`` and ``-P`` put nothing)."""
    if sys.path and sys.path[0] == "":
        sys.path[0] = entry


def run(args):
    """Runs ``args`` (``script.py ...``, ``-m module ...`` or ``-c code ...``) in
    ``__main__`` with ``sys.argv`` as ``python`` gives it."""
    if args[0] == "-m":
        import runpy

        sys.argv = ["-m"] + args[2:]
        _set_path0(os.getcwd())
        # What `python -m` itself calls (argv[0] becomes the module's file).
        runpy._run_module_as_main(args[1], alter_argv=True)
    elif args[0] == "-c":
        sys.argv = ["-c"] + args[2:]
        exec(compile(args[1], "<string>", "exec"), _fresh_main())
    else:
        path = args[0]
        sys.argv = list(args)
        _set_path0(os.path.dirname(os.path.abspath(path)))
        with open(path, "rb") as f:
            source = f.read()
        g = _fresh_main(__file__=path, __cached__=None)
        exec(compile(source, path, "exec", dont_inherit=True), g)


def main():
    args = sys.argv[1:]
    svg = None
    if args[:1] == ["--svg"]:
        svg, args = args[1], args[2:]
    assert args[:1] == ["--"], args
    atexit.register(report, svg)
    run(args[1:])
