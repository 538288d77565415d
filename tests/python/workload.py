"""An allocation-heavy script: dicts, lists, str, json, gc of cycles, threads, fork while
threads allocate.

Prints deterministic results on stdout, identical whatever the allocator. With
PYMALLOC_CHECK_OWNS=<path of libpymalloc.so> (only when it is preloaded) it also reports on
stderr how many fresh objects our pools own.
"""
import gc
import json
import os
import sys
import threading
import warnings
import weakref


class Node:
    def __init__(self, i):
        self.i = i
        self.other = None


def work(seed):
    d = {str(i): [i, float(i) * seed, (i, str(i) * 3)] for i in range(20000)}
    s = json.dumps(d, sort_keys=True)
    back = json.loads(s)
    words = " ".join(str(i * seed) for i in range(5000)).split()
    nodes = []
    for i in range(5000):
        a, b = Node(i), Node(-i)
        a.other, b.other = b, a
        nodes.append(a)
    probe = weakref.ref(nodes[0])
    del nodes, a, b
    gc.collect()
    return len(s), sum(len(v) for v in back.values()), len(set(words)), probe() is None


results = {}


def thread_main(k):
    results[k] = work(k + 1)


threads = [threading.Thread(target=thread_main, args=(k,)) for k in range(4)]
for t in threads:
    t.start()
for t in threads:
    t.join()
for k in sorted(results):
    print(k, results[k])
print("main", work(7))

# fork() while other threads allocate: the child must find the allocator usable (its locks
# released, its heaps consistent) and the parent go on. 3.12+ warns about fork in a
# threaded process; that warning is not what is tested.
warnings.simplefilter("ignore", DeprecationWarning)
stop = threading.Event()


def churn():
    while not stop.is_set():
        junk = [str(i) * 2 for i in range(2000)]
        del junk


busy = [threading.Thread(target=churn) for _ in range(2)]
for t in busy:
    t.start()
statuses = []
for _ in range(8):
    pid = os.fork()
    if pid == 0:
        os._exit(0 if work(2) == results[1] else 1)
    statuses.append(os.waitpid(pid, 0)[1])
stop.set()
for t in busy:
    t.join()
print("forked children", statuses)

lib_path = os.environ.get("PYMALLOC_CHECK_OWNS")
if lib_path:
    import ctypes

    lib = ctypes.CDLL(lib_path)
    lib.pymalloc_owns.restype = ctypes.c_bool
    lib.pymalloc_owns.argtypes = [ctypes.c_void_p]
    fresh = [Node(i) for i in range(1000)] + [str(i) * 2 for i in range(1000)]
    owned = sum(lib.pymalloc_owns(id(o)) for o in fresh)
    print(f"owned {owned} of {len(fresh)}", file=sys.stderr)
