"""Measures the pymalloc size class of common CPython objects on the running interpreter:
run it with libpymalloc preloaded (PYMALLOC_LIB names the library); each object's block
is found with pymalloc_attribute (its class size comes back as live_bytes), so the sizes
are what the allocator serves, GC header and pre-header included. Prints, per class size,
the objects of that size, one `SIZE<TAB>DESCRIPTION` line each. The table of
`pymalloc inspect` (cli/src/pytypes.rs) was made with it on CPython 3.8-3.15."""
import ctypes
import os
import sys
import types


class GroupStats(ctypes.Structure):
    _fields_ = [("objects", ctypes.c_uint64), ("live_bytes", ctypes.c_uint64),
                ("pools", ctypes.c_uint64), ("stranded", ctypes.c_double)]


lib = ctypes.CDLL(os.environ["PYMALLOC_LIB"])


def size(obj):
    addrs = (ctypes.c_void_p * 1)(id(obj))
    groups = (ctypes.c_uint32 * 1)(0)
    scratch = (ctypes.c_uint64 * 2)()
    out = (GroupStats * 1)()
    lib.pymalloc_attribute.restype = ctypes.c_size_t
    if lib.pymalloc_attribute(addrs, groups, ctypes.c_size_t(1), scratch, out, ctypes.c_size_t(1)) != 1:
        return None
    return out[0].live_bytes


def ranges(name, make, counts):
    """`name` with its counts grouped by class: 'str (ASCII, 8-23 chars)'."""
    by = {}
    for n in counts:
        objs = [make(n) for _ in range(3)]
        s = size(objs[-1])
        if s:
            by.setdefault(s, []).append(n)
    for s, ns in sorted(by.items()):
        label = f"{ns[0]}" if len(ns) == 1 else f"{ns[0]}-{ns[-1]}"
        yield s, name.format(label)


class Plain:
    def __init__(self):
        self.a = 1
        self.b = 2


class Slotted:
    __slots__ = ("a", "b")


def gen():
    yield 1


async def coro():
    pass


def closure():
    x = 1
    return lambda: x


rows = []
single = {
    "int": 10**6, "int (2 digits)": 2**40, "float": 1.5, "complex": 1j + 1,
    "list": [], "dict (empty)": {}, "dict (5 items)": {i: i for i in range(5)},
    "set": set(), "object()": object(), "instance (plain class)": Plain(),
    "instance (2 __slots__)": Slotted(), "function": closure, "bound method": Plain().__init__,
    "cell": closure().__closure__[0], "generator": gen(), "coroutine": coro(),
    "range": range(10), "slice": slice(1, 2), "list iterator": iter([]),
    "bytearray": bytearray(b"x"), "weakref": None,
}
import weakref
single["weakref"] = weakref.ref(Plain)
for name, obj in single.items():
    s = size(obj)
    if s:
        rows.append((s, name))
single["coroutine"].close()
rows += ranges("tuple of {}", lambda n: tuple(range(1000, 1000 + n)), range(1, 61))
rows += ranges("str (ASCII, {} chars)", lambda n: "x" * n + str(n)[:0] + "", range(2, 480))
rows += ranges("bytes of {}", lambda n: bytes(n) + b"", range(2, 480))
rows += ranges("list's item array of {}", lambda n: None, [])
for s, name in sorted(rows, key=lambda r: (r[0], r[1])):
    print(f"{s}\t{name}")
