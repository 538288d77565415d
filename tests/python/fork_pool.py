"""A thread pool's workers allocate while the main thread forks: in the child (where only
the forking thread survives, holding the GIL) the interpreter heap goes on serving, the
workers' blocks are freed, and the invariant walker (`pymalloc_check`) finds everything
consistent. Prints "ok" from the parent when every child did."""
import ctypes
import json
import os
import sys
import threading
import warnings

warnings.simplefilter("ignore", DeprecationWarning)  # 3.12+: fork with threads running
stop = threading.Event()


def work():
    while not stop.is_set():
        d = [{"a": i, "b": str(i) * 3} for i in range(200)]
        json.loads(json.dumps(d))


workers = [threading.Thread(target=work) for _ in range(4)]
for t in workers:
    t.start()
check = ctypes.CDLL(None).pymalloc_check
failed = 0
for _ in range(20):
    pid = os.fork()
    if pid == 0:
        kept = [{"a": i} for i in range(2000)]
        del kept
        os._exit(0 if check() == 0 else 1)
    _, status = os.waitpid(pid, 0)
    failed += status != 0
stop.set()
for t in workers:
    t.join()
sys.exit("%d children failed pymalloc_check" % failed if failed else print("ok"))
