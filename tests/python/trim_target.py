"""A target for `pymalloc trim` (tests/inspect.rs), run with the library preloaded and
PYMALLOC_DECAY_MS=-1 (free pools and empty arenas stay until a trim): prints its PID,
builds and drops ARGV[1] strings, says "dropped", then allocates a little every 10 ms, so
that a slow path comes by to take a trim request, until its stdin closes."""
import os
import sys
import threading
import time

print(os.getpid(), flush=True)
keep = [str(i) * 3 for i in range(int(sys.argv[1]))]
del keep
print("dropped", flush=True)
done = threading.Event()
threading.Thread(target=lambda: (sys.stdin.read(), done.set()), daemon=True).start()
while not done.is_set():
    churn = [object() for _ in range(2000)]
    del churn
    time.sleep(0.01)
