"""A target for `pymalloc inspect` (tests/inspect.rs), run with the library preloaded:
prints its PID, builds a sparse heap (ARGV[1] strings, every other one dropped), takes
its own statistics (pymalloc_get_stats), stops itself (SIGSTOP) so that the test reads it
while nothing moves, and once continued takes them again and prints both, as two lines
of numbers in the order of the struct's fields (include/pymalloc.h)."""
import ctypes
import os
import signal
import sys

print(os.getpid(), flush=True)
lib = ctypes.CDLL(os.environ["PYMALLOC_LIB"])
WORDS = 15 + 32 * 15  # pymalloc_stats: 15 uint64_t, then 32 classes of 15
get = lib.pymalloc_get_stats
get.restype = None
libc = ctypes.CDLL(None)
before = (ctypes.c_uint64 * WORDS)()
after = (ctypes.c_uint64 * WORDS)()
keep = [str(i) * 3 for i in range(int(sys.argv[1]))]
del keep[::2]
kill, pid, stop = libc.kill, os.getpid(), int(signal.SIGSTOP)
get(after)  # once before, so that the calls below allocate alike
get(before)
# Stops inside a ctypes call that keeps alive what the call to get did (ctypes' converted
# argument for the array: kill ignores a third argument), so that the heap read while
# stopped is the one get saw.
kill(pid, stop, before)
get(after)
print(" ".join(map(str, before)))
print(" ".join(map(str, after)), flush=True)
sys.stdin.read()  # until the test closes stdin (tests of a running target)
