"""A busy target for `pymalloc inspect` (tests/inspect.rs): prints its PID, then three
threads build and drop lists of strings of random lengths, and free random blocks of a
larger structure, until stdin closes: arenas, pools and heaps change while being read."""
import os
import random
import sys
import threading

print(os.getpid(), flush=True)
base = [bytes(random.randrange(1, 500)) for _ in range(300_000)]
done = threading.Event()


def churn():
    while not done.is_set():
        keep = [str(i) * random.randint(1, 40) for i in range(20_000)]
        del keep[::3]
        base[random.randrange(len(base))] = None


threads = [threading.Thread(target=churn) for _ in range(3)]
for t in threads:
    t.start()
print("churning", flush=True)
sys.stdin.read()
done.set()
for t in threads:
    t.join()
