"""The example of docs/stranded.md: 1.5 million mixed objects (tuples, dicts, lists,
strings), 1 % kept at random, the rest dropped. Prints what the process holds above its
start (RSS), the survivors' own bytes, and pymalloc-rs's view of the stranded memory.

    python -X tracemalloc -m pymalloc_rs docs/stranded.py
"""

import gc
import random
import sys
import time


def rss():
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * 4096


def make(i):
    kind = i % 4
    if kind == 0:
        return (i, i + 1)
    if kind == 1:
        return {"k": i}
    if kind == 2:
        return [i]
    return "item-%d" % i


def main():
    random.seed(1)
    start = rss()
    objs = [make(i) for i in range(1500000)]
    kept = [o for o in objs if random.random() < 0.01]  # the survivors
    del objs
    gc.collect()
    # Light activity for 1.5 s, as a server between requests: the allocator gives back
    # the pools left free (after 0.4 to 0.8 s of activity on pymalloc-rs).
    until = time.time() + 1.5
    while time.time() < until:
        [str(i) for i in range(100)]
    held = rss() - start
    live = sum(sys.getsizeof(o) for o in kept)
    print("survivors %d, their bytes %.1f MiB, RSS held above start %.1f MiB"
          % (len(kept), live / 2.0**20, held / 2.0**20))
    try:
        import pymalloc_rs
        report = pymalloc_rs.pinning(top=5)
    except Exception as e:  # not on pymalloc-rs
        print("no pinning report:", e)
        return
    print(report)
    print("RSS held minus live bytes %.1f MiB; stranded (report) %.1f MiB"
          % ((held - live) / 2.0**20, report.stats["bytes_stranded"] / 2.0**20))


main()
