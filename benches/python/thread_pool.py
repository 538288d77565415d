"""The thread-pool shape of a Python service: N worker threads of a ThreadPoolExecutor each
take a request (a 300-item JSON document), decode it, build a response of small dicts,
encode it and drop it. Under the GIL one worker runs at a time.

    python thread_pool.py THREADS [REQUESTS]

Prints one line of JSON: threads, requests, seconds (CPU), peak and final RSS (KiB; final is
after the pool has shut down and `gc.collect()`)."""
import gc
import json
import resource
import sys
import time
from concurrent.futures import ThreadPoolExecutor

threads = int(sys.argv[1])
requests = int(sys.argv[2]) if len(sys.argv) > 2 else 3000

REQUEST = json.dumps(
    [{"id": i, "name": "item-%d" % i, "price": i * 1.25, "tags": ["a", "b", str(i)]}
     for i in range(300)]
)


def handle(n):
    items = json.loads(REQUEST)
    reply = {
        "request": n,
        "lines": [{"id": it["id"], "label": it["name"].upper(), "total": it["price"] * 2,
                   "tags": tuple(it["tags"])} for it in items],
    }
    return len(json.dumps(reply))


def rss_kib():
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    return 0


start = time.process_time()
with ThreadPoolExecutor(max_workers=threads) as pool:
    # Submitted in waves, so that every worker gets work (a service's requests arrive over time).
    for wave in range(0, requests, threads):
        list(pool.map(handle, range(wave, min(wave + threads, requests))))
gc.collect()
seconds = time.process_time() - start
peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
print(json.dumps({"threads": threads, "requests": requests, "seconds": round(seconds, 3),
                  "peak_kib": peak, "final_kib": rss_kib()}))
