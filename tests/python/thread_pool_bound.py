"""A thread pool's pools: THREADS workers of a ThreadPoolExecutor take REQUESTS requests
(decode a JSON document, build a reply of small dicts, encode it), one running at a time
under the GIL. Prints one line: the most bytes stranded (resident in our pools but in no
live block) seen after any request, the bytes stranded at the end, and the roles of the
heaps that hold pools at the end (one, the interpreter heap, where the threads share it). Run with the library preloaded and its Python package on
PYTHONPATH (tests/cpython.rs)."""
import json
import sys
from concurrent.futures import ThreadPoolExecutor

import pymalloc_rs

threads, requests = int(sys.argv[1]), int(sys.argv[2])
REQUEST = json.dumps(
    [{"id": i, "name": "item-%d" % i, "price": i * 1.25, "tags": ["a", str(i)]} for i in range(300)]
)
most = 0


def handle(n):
    global most
    items = json.loads(REQUEST)
    reply = [{"id": it["id"], "label": it["name"].upper(), "tags": tuple(it["tags"])} for it in items]
    size = len(json.dumps(reply))
    del items, reply
    s = pymalloc_rs.stats()
    most = max(most, s["bytes_stranded"])
    return size


with ThreadPoolExecutor(max_workers=threads) as pool:
    for wave in range(0, requests, threads):
        list(pool.map(handle, range(wave, min(wave + threads, requests))))
s = pymalloc_rs.stats()
holding = [h["role"] for h in s["per_heap"] if h["pools_partly_filled"] + h["pools_full"]]
print(most, s["bytes_stranded"], ",".join(holding))
