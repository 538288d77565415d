"""pymalloc-rs from Python: is this interpreter running on it, and its statistics.

Run a program on pymalloc-rs with ``python -m pymalloc_rs app.py`` (see ``__main__``), or
``pymalloc run -- python app.py``. From inside that program (a monitoring thread, a
Prometheus exporter, a log line):

>>> import pymalloc_rs
>>> if pymalloc_rs.is_active():
...     print(pymalloc_rs.stats()["bytes_in_use"])

Importing this module loads nothing and changes nothing: it only looks for the library
already loaded into the process (preloaded, or linked by an embedder), never loads a
second copy of it.
"""

import ctypes
import os
import sys

__all__ = [
    "Group",
    "NotActiveError",
    "Pinning",
    "is_active",
    "library_path",
    "pinning",
    "stats",
    "trim",
]

#: The file name of the library inside this package.
LIBRARY_NAME = "libpymalloc.so"

#: The domain bits of ``pymalloc_installed_domains()`` (``include/pymalloc.h``).
_DOMAINS = (("obj", 1), ("mem", 2))

#: The fields of ``pymalloc_stats`` before the per-class table, in header order; each an
#: ``uint64_t`` (see ``include/pymalloc.h`` for what each counts).
STATS_FIELDS = (
    "arenas_allocated_total",
    "arenas_reclaimed",
    "arenas_highwater",
    "arenas_current",
    "pools_in_use",
    "pools_free",
    "pools_returned",
    "pools_cached",
    "bytes_in_use",
    "bytes_mapped",
    "large_in_use",
    "heaps",
    "heaps_abandoned",
    "bytes_resident",
    "bytes_stranded",
)

#: The fields of ``pymalloc_class_stats``, one per size class, in header order; each an
#: ``uint64_t``, ``name[n]`` an array of ``n`` of them.
CLASS_FIELDS = (
    "size",
    "pools",
    "blocks_in_use",
    "blocks_free",
    "occupancy[10]",
    "bytes_stranded",
)

#: Size classes: 16, 32, ..., 512 bytes.
NUM_CLASSES = 32

#: The fields of ``pymalloc_heap_figures``, in header order; each an ``uint64_t``.
HEAP_FIELDS = (
    "pools_partly_filled",
    "pools_full",
    "pools_kept",
    "blocks_in_use",
    "bytes_in_use",
)

#: The names of ``pymalloc_heap_stats.role``'s numbers.
HEAP_ROLES = ("active", "abandoned", "shared", "interpreter", "vanished")


def _ctypes_field(spec):
    """``("name", type)`` for a header field spelled ``name`` or ``name[n]``."""
    name, _, count = spec.partition("[")
    if count:
        return name, ctypes.c_uint64 * int(count.rstrip("]"))
    return name, ctypes.c_uint64


class _ClassStats(ctypes.Structure):
    _fields_ = [_ctypes_field(spec) for spec in CLASS_FIELDS]


class _Stats(ctypes.Structure):
    _fields_ = [(name, ctypes.c_uint64) for name in STATS_FIELDS] + [
        ("classes", _ClassStats * NUM_CLASSES)
    ]


class _HeapFigures(ctypes.Structure):
    _fields_ = [(name, ctypes.c_uint64) for name in HEAP_FIELDS]


class _HeapStats(ctypes.Structure):
    _fields_ = [("role", ctypes.c_uint32), ("figures", _HeapFigures)]


class NotActiveError(RuntimeError):
    """pymalloc-rs does not serve this interpreter: the library is not loaded into the
    process, or it stepped aside (``PYTHONMALLOC``, ``-X dev``, ``PYMALLOC_INSTALL=0``)."""


def library_path():
    """The path (``str``) of the ``libpymalloc.so`` shipped in this package, the one
    ``python -m pymalloc_rs`` and ``pymalloc run`` preload.

    Raises ``FileNotFoundError`` when the installation lacks it (a broken install, or
    this module imported from a source tree that was never built).
    """
    path = os.path.join(os.path.dirname(os.path.abspath(__file__)), LIBRARY_NAME)
    if not os.path.isfile(path):
        raise FileNotFoundError(
            "pymalloc_rs: %s is missing from this installation; reinstall the package "
            "(pip install --force-reinstall pymalloc-rs)" % path
        )
    return path


def _loaded():
    """The library already loaded into this process as a ``ctypes.CDLL``, or ``None``.

    Looks in the global symbol scope (where ``LD_PRELOAD`` and embedders linking it put
    it), then for this package's copy with ``RTLD_NOLOAD``: never loads anything.
    """
    scope = ctypes.CDLL(None)
    if hasattr(scope, "pymalloc_installed_domains"):
        return scope
    try:
        path = library_path()
    except FileNotFoundError:
        return None
    try:
        return ctypes.CDLL(path, mode=os.RTLD_NOLOAD | ctypes.RTLD_LOCAL)
    except OSError:
        return None


def _probe(lib, alloc, free):
    """Whether a 16-byte block allocated through the interpreter's ``alloc`` lies in
    our pools (so this also holds under tracemalloc, whose hooks call us)."""
    alloc.restype = ctypes.c_void_p
    alloc.argtypes = [ctypes.c_size_t]
    free.restype = None
    free.argtypes = [ctypes.c_void_p]
    lib.pymalloc_owns.restype = ctypes.c_bool
    lib.pymalloc_owns.argtypes = [ctypes.c_void_p]
    p = alloc(16)
    if not p:
        raise MemoryError("pymalloc_rs: a 16-byte probe allocation failed")
    try:
        return bool(lib.pymalloc_owns(p))
    finally:
        free(p)


def is_active():
    """The CPython allocator domains this interpreter runs on pymalloc-rs, as a
    ``frozenset`` of ``"obj"`` (``PyObject_Malloc``) and ``"mem"`` (``PyMem_Malloc``).

    Empty (false) when the library is not loaded, or was told to stay out
    (``PYMALLOC_INSTALL=0``), or stepped aside for ``PYTHONMALLOC`` / ``-X dev``, or the
    interpreter has since restored its own allocators. A domain counts when the library
    installed itself there and a probe allocation through the interpreter's API for that
    domain lands in its pools.
    """
    lib = _loaded()
    if lib is None:
        return frozenset()
    lib.pymalloc_installed_domains.restype = ctypes.c_uint
    lib.pymalloc_installed_domains.argtypes = []
    installed = lib.pymalloc_installed_domains()
    api = ctypes.pythonapi  # calls with the GIL held, as these functions require
    probes = {
        "obj": (api.PyObject_Malloc, api.PyObject_Free),
        "mem": (api.PyMem_Malloc, api.PyMem_Free),
    }
    return frozenset(
        name
        for name, bit in _DOMAINS
        if installed & bit and _probe(lib, *probes[name])
    )


def _active_library():
    if not is_active():
        raise NotActiveError(
            "pymalloc-rs is not active in this interpreter; run it with "
            "`python -m pymalloc_rs SCRIPT` (or `PYMALLOC_VERBOSE=1` says why it stepped aside)"
        )
    return _loaded()


def stats():
    """The allocator's counters, read from the library this process uses, as a
    ``dict`` of ``int``:

    - arenas (256 KiB each): ``arenas_allocated_total``, ``arenas_reclaimed``,
      ``arenas_highwater``, ``arenas_current``;
    - pools (4 KiB each): ``pools_in_use``, ``pools_free``, ``pools_returned`` (given back
      to the OS), ``pools_cached`` (empty ones the thread heaps keep for reuse, part of
      ``pools_in_use``);
    - bytes: ``bytes_in_use`` (blocks handed out, at their class size), ``bytes_mapped``;
    - ``large_in_use``: blocks the fallback (system) allocator served for us, not freed:
      requests of 0 or over 512 bytes, and small ones when no arena could be mapped;
    - ``heaps``, ``heaps_abandoned``: thread heaps;
    - ``bytes_resident``: the arenas' pages not given back to the OS (pools in use, free
      pools not yet returned, header pages): their share of RSS, at most;
      ``bytes_stranded``: ``bytes_resident - bytes_in_use``, resident but not live;
    - ``classes``: a list of 32 dicts, one per size class (16, 32, ..., 512 bytes), with
      ``size`` (bytes), ``pools``, ``blocks_in_use``, ``blocks_free``, ``occupancy`` (a
      list of 10: the pools with 0-9.9 %, 10-19.9 %, ..., 90-100 % of their blocks in
      use) and ``bytes_stranded`` (the pools' 4096 bytes each minus the blocks in use);
    - ``per_heap``: a list with a dict per heap, oldest first: ``role`` (``"active"``: a
      running thread's; ``"abandoned"``: its thread exited; ``"shared"``; ``"interpreter"``:
      the heap CPython's threads share under the GIL; ``"vanished"``: a thread that did not
      survive ``fork``), ``pools_partly_filled``, ``pools_full``, ``pools_kept`` (empty
      pools kept for reuse), ``blocks_in_use`` and ``bytes_in_use``; empty when no memory
      could be had for it.

    The library allocates nothing to read them: a monitoring thread gets them whole also
    when the process has run out of memory (this function's own Python objects aside,
    whose allocation then raises ``MemoryError``).

    Raises ``NotActiveError`` when pymalloc-rs is not active (see ``is_active``).
    """
    lib = _active_library()
    out = _Stats()
    lib.pymalloc_get_stats.restype = None
    lib.pymalloc_get_stats.argtypes = [ctypes.POINTER(_Stats)]
    lib.pymalloc_get_stats(ctypes.byref(out))
    result = {name: int(getattr(out, name)) for name in STATS_FIELDS}
    result["classes"] = [
        {name: _plain(getattr(c, name)) for name, _ in _ClassStats._fields_}
        for c in out.classes
    ]
    result["per_heap"] = _per_heap(lib)
    return result


def _per_heap(lib):
    """``pymalloc_get_heap_stats`` as a list of dicts (see ``stats``)."""
    get = lib.pymalloc_get_heap_stats
    get.restype = ctypes.c_size_t
    get.argtypes = [ctypes.POINTER(_HeapStats), ctypes.c_size_t]
    room = 16
    while True:
        rows = (_HeapStats * room)()
        n = get(rows, room)
        if n == ctypes.c_size_t(-1).value:
            return []
        if n <= room:
            break
        room = n + 16  # threads may start meanwhile
    return [
        dict(
            role=HEAP_ROLES[r.role] if r.role < len(HEAP_ROLES) else str(r.role),
            **{name: int(getattr(r.figures, name)) for name in HEAP_FIELDS}
        )
        for r in rows[:n]
    ]


def _plain(value):
    """A ``ctypes`` field's value as an ``int``, an array's as a ``list`` of them."""
    if isinstance(value, int):
        return value
    return [int(n) for n in value]


def trim():
    """Returns free pools and empty arenas to the OS now (``pymalloc_trim``); returns
    ``None``. Raises ``NotActiveError`` when pymalloc-rs is not active."""
    lib = _active_library()
    # Through PyDLL, which keeps the GIL held: the library trims the heap CPython's threads
    # share (used under the GIL) only from a thread that holds it.
    trim = ctypes.PyDLL(lib._name, handle=lib._handle).pymalloc_trim
    trim.restype = None
    trim.argtypes = []
    trim()


def _supported_platform():
    """``None`` on Linux, else why pymalloc-rs cannot run here (``str``)."""
    if sys.platform.startswith("linux"):
        return None
    return "pymalloc-rs runs on Linux only (LD_PRELOAD); this is %s" % sys.platform


def _free_threaded():
    """Whether this is a free-threaded CPython (3.13t and later), which the library leaves
    alone: its garbage collector finds objects by walking mimalloc's heaps, so both
    allocator domains must stay CPython's mimalloc."""
    import sysconfig

    return bool(sysconfig.get_config_var("Py_GIL_DISABLED"))


from ._pinning import Group, Pinning, pinning  # noqa: E402 (uses the names above)
