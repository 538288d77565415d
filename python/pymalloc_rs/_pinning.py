"""Which objects keep sparsely used pools resident: ``pymalloc_rs.pinning()``.

A pool is one 4096-byte page serving one size class. As long as one block in it is live,
its whole page stays resident: after a program drops most of a large structure, the
survivors scattered over many pools hold far more memory than their own size. This module
finds the objects the interpreter can enumerate and has the library count, in one call
per grouping (``pymalloc_attribute``), the pools they lie in, by type and by allocation
site.
"""

import ctypes
import gc
from array import array
from collections import namedtuple
from itertools import filterfalse

POOL_SIZE = 4096

#: Tracked containers whose referents are fetched per ``gc.get_referents`` call.
_CHUNK = 10000

#: The report's name for the blocks no enumerated object accounts for.
UNSEEN = "(blocks of no object seen)"

#: The report's name for objects tracemalloc has no traceback for.
UNTRACED = "(no traceback: allocated before tracemalloc started, or from a free list)"

Group = namedtuple(
    "Group", "name objects live_bytes pools pool_bytes stranded_bytes"
)
Group.__doc__ = """One group of objects (a type, or an allocation site ``file:line``).

- ``objects``: objects of the group in our pools;
- ``live_bytes``: their blocks' bytes (the class size of each: an object's own block, not
  what it points to, such as a list's item array);
- ``pools``: sparse pools (at most half of their blocks in use) holding at least one of
  them, and ``pool_bytes`` those pools' pages (``pools * 4096``): what they pin; a pool
  holding objects of several groups counts in each;
- ``stranded_bytes``: the group's share of the bytes stranded in the pools it lies in
  (each pool's 4096 bytes minus its live blocks, shared out equally among the pool's live
  blocks): the groups' shares and the unseen blocks' add up to the bytes stranded in pools
  in use, and the report ranks by it.
"""


class Pinning(object):
    """The result of :func:`pinning`: ``by_type`` and ``by_site`` (lists of :class:`Group`,
    most stranded bytes first; ``by_site`` is ``None`` when tracemalloc was not tracing),
    ``unseen`` (a :class:`Group` for the blocks in use that no enumerated object accounts
    for), ``objects`` (objects enumerated, an object counted once per reference that led to
    it), ``in_pools`` (distinct objects found in our pools),
    ``stats`` (``pymalloc_rs.stats()`` taken with the pools' figures) and
    ``seconds`` (the time the walk took). ``str()`` gives the text report."""

    def __init__(self, **fields):
        self.__dict__.update(fields)

    def __str__(self):
        return format_report(self)

    def __repr__(self):
        top = (self.by_site or self.by_type or [None])[0]
        most = "" if top is None else ", most by %s (%s)" % (
            top.name,
            "{:,}".format(top.stranded_bytes),
        )
        return "<Pinning: %s bytes stranded in pools in use%s; %s objects in our pools; " \
            "str() is the report>" % (
                "{:,}".format(_stranded_in_use(self.stats)),
                most,
                "{:,}".format(self.in_pools),
            )


def _enumerate():
    """The objects the interpreter can enumerate: ``gc.get_objects()`` (the tracked
    containers) and, level after level, the untracked objects they refer to (strings,
    ints, floats, bytes, tuples and dicts of atomic values, ...). An object referred to
    from several places comes as often (``pymalloc_attribute`` counts it once): removing
    repeats here would take an int per object, and more time than the repeats cost.
    Terminates: an untracked object refers only to atomic or untracked ones, so no
    cycle runs through them."""
    objs = gc.get_objects()
    frontier = objs
    is_tracked = gc.is_tracked
    while frontier:
        found = []
        for i in range(0, len(frontier), _CHUNK):
            found.extend(filterfalse(is_tracked, gc.get_referents(*frontier[i : i + _CHUNK])))
        objs.extend(found)
        frontier = found
    return objs


def _sites():
    """A function giving an object's allocation site as a hashable key, ``(filename,
    lineno)`` of the most recent frame tracemalloc kept, ``None`` without a traceback."""
    try:
        from _tracemalloc import _get_object_traceback as raw
    except ImportError:  # not in CPython's private module: the public, slower way
        import tracemalloc

        def site(o):
            tb = tracemalloc.get_object_traceback(o)
            return None if tb is None else (tb[-1].filename, tb[-1].lineno)

        return site

    def site(o):
        t = raw(o)
        return None if t is None else t[0]

    return site


class _Index(dict):
    """Numbers keys in the order they are first seen."""

    def __missing__(self, key):
        number = self[key] = len(self)
        return number


def _addresses(objs):
    """The address of an array of the addresses of the objects in the list ``objs``
    (their ``PyObject *``), and what keeps it alive: without making an int per object,
    the list's own item array (``ob_item``, the field before ``allocated`` at the end of
    ``PyListObject``), checked against ``len`` and ``id``; where the check fails, an
    array of ``id``s."""
    word = ctypes.sizeof(ctypes.c_void_p)
    field = id(objs) + list.__basicsize__ - 2 * word
    items = ctypes.c_void_p.from_address(field).value
    if (
        objs
        and ctypes.c_ssize_t.from_address(field - word).value == len(objs)
        and ctypes.c_void_p.from_address(items).value == id(objs[0])
        and ctypes.c_void_p.from_address(items + word * (len(objs) - 1)).value
        == id(objs[-1])
    ):
        return items, None
    ids = array("Q", map(id, objs))
    return ids.buffer_info()[0], ids


class _GroupStats(ctypes.Structure):
    """``pymalloc_group_stats``."""

    _fields_ = [
        ("objects", ctypes.c_uint64),
        ("live_bytes", ctypes.c_uint64),
        ("pools", ctypes.c_uint64),
        ("stranded_bytes", ctypes.c_double),
    ]


def _groups(lib, objs, key, names):
    """The groups of ``objs`` by ``key(obj)``, ranked by stranded bytes, with the number
    of objects found in pools; ``names`` turns a key into its label. One call of
    ``pymalloc_attribute`` does the counting. Keeps no Python object per object alive
    meanwhile (addresses and group numbers go straight into C arrays): such objects would
    fill the free blocks of the very pools being measured."""
    index = _Index()
    groups = array("I", map(index.__getitem__, map(key, objs)))
    n = len(objs)
    addrs, keep = _addresses(objs)
    scratch = (ctypes.c_uint64 * (2 * n))()
    out = (_GroupStats * max(len(index), 1))()
    attribute = lib.pymalloc_attribute
    attribute.restype = ctypes.c_size_t
    attribute.argtypes = [ctypes.c_void_p, ctypes.c_void_p, ctypes.c_size_t]
    attribute.argtypes += [ctypes.c_void_p, ctypes.c_void_p, ctypes.c_size_t]
    where = groups.buffer_info()[0] if n else None
    found = attribute(addrs, where, n, scratch, out, len(index))
    del keep, scratch, groups
    groups = [
        Group(
            names(k),
            out[i].objects,
            out[i].live_bytes,
            out[i].pools,
            out[i].pools * POOL_SIZE,
            int(round(out[i].stranded_bytes)),
        )
        for k, i in index.items()
        if out[i].objects
    ]
    groups.sort(key=lambda g: (-g.stranded_bytes, g.name))
    return groups, found


def _type_name(t):
    module = getattr(t, "__module__", "builtins")
    name = getattr(t, "__qualname__", t.__name__)
    return name if module == "builtins" else "%s.%s" % (module, name)


def _site_name(key):
    return UNTRACED if key is None else "%s:%d" % key


def pinning(top=20):
    """Which objects hold sparsely used pools resident, by type and by allocation site.

    Enumerates the objects the interpreter can see (``gc.get_objects()``, and the
    untracked objects those refer to, level after level), and has the library find the
    4096-byte pool each lies in (``pymalloc_attribute``, one call per grouping) and count
    them in groups: by type, and
    by allocation site (``file:line``) when ``tracemalloc`` is tracing (start it early,
    e.g. ``python -X tracemalloc -m pymalloc_rs --report app.py``: objects allocated
    before it started have no site). For each group: objects, live bytes, the sparse
    pools (at most half of their blocks in use) they pin and those pools' bytes, and
    their share of the bytes stranded in their pools (see :class:`Group`). Returns a
    :class:`Pinning` with the ``top`` groups of each kind (all of them for ``None``);
    ``print()`` it for the text report.

    Limits: it sees only what the interpreter can enumerate. Not seen: the buffers
    objects own (a list's item array, a dict's tables, a set's table: blocks of their
    own, often in other pools), objects reachable only from C (extension modules'
    statics, the interpreter's free lists and caches), and objects referred to only by
    such unseen ones. Their blocks are counted together as ``unseen``. Objects of more
    than 512 bytes are not in pools and are skipped. The pools' figures are a snapshot
    taken in the library call; the walk keeps no Python object per object alive at that
    moment (which would fill the free blocks of the pools it measures), only a few large
    arrays outside the pools. Other threads keep running; their allocations in the
    meantime are counted as they are found. Objects allocated before tracemalloc
    started, or handed out again from a free list, have no site, or an old one.

    Cost, measured on this project's 2-core machine while loaded (load average 12,
    CPython 3.11; ``docs/stranded.md`` has the commands): for a list of a million mixed
    objects (1.77 million distinct objects in pools), 1.6 s (median of 5, 1.05 to 2.1 s)
    and 54 MiB of peak RSS; with tracemalloc tracing 8.4 s (6.6 to 10.2 s) and 80 MiB,
    most of it the tracebacks' lookup and tracemalloc's cost on the walk's own
    allocations.

    Raises ``NotActiveError`` when pymalloc-rs is not active (see ``is_active``).
    """
    import time

    from . import _active_library, stats

    t0 = time.time()
    lib = _active_library()
    objs = _enumerate()
    by_type, in_pools = _groups(lib, objs, type, _type_name)
    snapshot = stats()
    by_site = None
    import tracemalloc

    if tracemalloc.is_tracing():
        by_site = _groups(lib, objs, _sites(), _site_name)[0]
    n = len(objs)
    del objs
    in_use = sum(c["bytes_stranded"] for c in snapshot["classes"])
    seen = sum(g.stranded_bytes for g in by_type)
    blocks = sum(c["blocks_in_use"] for c in snapshot["classes"])
    unseen = Group(
        UNSEEN,
        blocks - sum(g.objects for g in by_type),
        snapshot["bytes_in_use"] - sum(g.live_bytes for g in by_type),
        None,
        None,
        max(in_use - seen, 0),
    )
    cut = slice(None) if top is None else slice(0, top)
    return Pinning(
        by_type=by_type[cut],
        by_site=None if by_site is None else by_site[cut],
        unseen=unseen,
        objects=n,
        in_pools=in_pools,
        stats=snapshot,
        seconds=time.time() - t0,
    )


def _mib(n):
    return "%.1f MiB" % (n / 1048576.0)


def _stranded_in_use(stats):
    """The bytes stranded in pools in use (all classes)."""
    return sum(c["bytes_stranded"] for c in stats["classes"])


def _tenth(k):
    """The name of occupancy bin ``k``: its pools hold at least ``10 k`` % of their blocks,
    less than ``10 (k + 1)`` %. The first bin's pools are nearly all not empty (empty pools
    are counted apart), so it is ``<10%``: ``0%`` read as empty."""
    return "<10%" if k == 0 else "%d%%" % (10 * k)


def _table(title, groups, unseen):
    lines = [
        title,
        "%14s %8s %14s %10s %14s  %s"
        % ("stranded", "pools", "pool bytes", "objects", "live bytes", "group"),
    ]
    for g in groups + [unseen]:
        lines.append(
            "%14s %8s %14s %10s %14s  %s"
            % (
                "{:,}".format(g.stranded_bytes),
                "" if g.pools is None else "{:,}".format(g.pools),
                "" if g.pool_bytes is None else "{:,}".format(g.pool_bytes),
                "{:,}".format(g.objects),
                "{:,}".format(g.live_bytes),
                g.name,
            )
        )
    return lines


def format_report(p):
    """The text report of a :class:`Pinning` (what ``python -m pymalloc_rs --report``
    prints at exit)."""
    s = p.stats
    in_use = _stranded_in_use(s)
    lines = [
        "pymalloc-rs: which objects keep memory stranded",
        "resident in arenas %s, in live blocks %s, stranded %s "
        "(in pools in use %s, the rest empty pools and arena headers)"
        % (
            _mib(s["bytes_resident"]),
            _mib(s["bytes_in_use"]),
            _mib(s["bytes_stranded"]),
            _mib(in_use),
        ),
    ]
    occupancy = [sum(c["occupancy"][k] for c in s["classes"]) for k in range(10)]
    lines.append(
        "pools by blocks in use: "
        + ", ".join(
            "%s: %s" % (_tenth(k), "{:,}".format(n)) for k, n in enumerate(occupancy)
        )
    )
    lines.append(
        "objects enumerated %s (with repeats), found in pools %s; walk took %.2f s"
        % ("{:,}".format(p.objects), "{:,}".format(p.in_pools), p.seconds)
    )
    lines.append("")
    if p.by_site is not None:
        lines += _table("by allocation site (tracemalloc):", p.by_site, p.unseen)
        lines.append("")
    else:
        lines.append(
            "(allocation sites: run with tracemalloc tracing, e.g. python -X tracemalloc)"
        )
    lines += _table("by type:", p.by_type, p.unseen)
    return "\n".join(lines) + "\n"
