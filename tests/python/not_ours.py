"""Run with the library preloaded and PYTHONMALLOC=malloc: CPython uses the C library's
malloc, and our pools must serve nothing."""
import ctypes
import os
import sys

lib = ctypes.CDLL(os.environ["PYMALLOC_LIB"])
lib.pymalloc_owns.restype = ctypes.c_bool
lib.pymalloc_owns.argtypes = [ctypes.c_void_p]
objs = [object() for _ in range(1000)] + [str(i) * 3 for i in range(1000)] + [{i: i} for i in range(100)]
owned = sum(lib.pymalloc_owns(id(o)) for o in objs)
# Room for the whole struct (pymalloc_stats in include/pymalloc.h; it grows with the
# statistics): only its first field, arenas_allocated_total, is read.
stats = (ctypes.c_uint64 * 8192)()
lib.pymalloc_get_stats(stats)
arenas_total = stats[0]
print("owned", owned, "arenas", arenas_total)
sys.exit(0 if owned == 0 and arenas_total == 0 else 1)
