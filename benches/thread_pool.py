"""The thread-pool shape of a Python service (benches/python/thread_pool.py: N
ThreadPoolExecutor workers decode a 300-item JSON request, build and encode a reply) at
several thread counts, under CPython's pymalloc, pymalloc-rs, mimalloc and jemalloc
(benches/allocators.py), each run a fresh process, the allocators alternating.

    python3 benches/thread_pool.py [-p PYTHON]... [-n RUNS] [-t 1,8,32,64,256] [-r REQUESTS]

Prints per interpreter a markdown table: the medians of CPython's pymalloc (peak RSS, RSS
after the pool has shut down, CPU seconds), and for each other allocator its medians as
ratios to those. Default interpreters: Debian's /usr/bin/python3.11 and pyenv's 3.12.1,
those present. Build first: `cargo build --release`."""
import argparse
import json
import os
import subprocess
import sys

from allocators import (BASELINE, ROOT, allocators, check_installed, environment, median,
                        ratio)

SCRIPT = os.path.join(ROOT, "benches/python/thread_pool.py")
DEFAULT_PYTHONS = ["/usr/bin/python3.11",
                   os.path.expanduser("~/.pyenv/versions/3.12.1/bin/python3.12")]
# One run of 3,000 requests takes a few seconds; this bounds a stuck one.
RUN_LIMIT_S = 300


def run(python, threads, requests, env):
    """One fresh process: its JSON line as a dict."""
    out = subprocess.run([python, SCRIPT, str(threads), str(requests)], env=env,
                         capture_output=True, text=True, timeout=RUN_LIMIT_S,
                         start_new_session=True)
    if out.returncode != 0:
        sys.exit(f"{python} {SCRIPT} {threads} failed ({out.returncode}): {out.stderr[-2000:]}")
    check_installed(env, out.stderr, f"{python} {SCRIPT} {threads}")
    return json.loads(out.stdout)


def table(python, counts, allocs, samples, runs):
    """The markdown table of one interpreter's medians."""
    names = [a[0] for a in allocs]
    lines = [f"{python}, {runs} runs each, medians; other allocators as ratios to {BASELINE} "
             "(peak / final / time; lower is better)", "",
             f"| threads | {BASELINE}: peak, final RSS (MiB); CPU s | "
             + " | ".join(names[1:]) + " |",
             "|" + "---|" * (len(names) + 1)]
    for t in counts:
        m = {n: {k: median([s[k] for s in samples[(t, n)]])
                 for k in ("peak_kib", "final_kib", "seconds")} for n in names}
        b = m[BASELINE]
        row = [str(t), f"{b['peak_kib'] / 1024:.1f}, {b['final_kib'] / 1024:.1f}; "
                       f"{b['seconds']:.2f}"]
        for n in names[1:]:
            row.append(" / ".join(ratio(m[n][k], b[k])
                                  for k in ("peak_kib", "final_kib", "seconds")))
        lines.append("| " + " | ".join(row) + " |")
    return "\n".join(lines)


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("-p", "--python", action="append",
                    help="interpreter (repeatable; default: Debian's 3.11 and pyenv's 3.12.1)")
    ap.add_argument("-n", "--runs", type=int, default=5, help="runs per cell (>= 1; default 5)")
    ap.add_argument("-t", "--threads", default="1,8,32,64,256", help="thread counts")
    ap.add_argument("-r", "--requests", type=int, default=3000, help="requests per run")
    ap.add_argument("--json", help="write every run's result into this file")
    args = ap.parse_args()
    pythons = args.python or [p for p in DEFAULT_PYTHONS if os.path.isfile(p)]
    counts = [int(t) for t in args.threads.split(",")]
    allocs = allocators()
    everything = {}
    for python in pythons:
        samples = {(t, a[0]): [] for t in counts for a in allocs}
        for r in range(args.runs):
            for t in counts:
                # Alternating, and in a rotated order each round so that no allocator always
                # runs right after the same one.
                for i in range(len(allocs)):
                    name, preload, pm = allocs[(i + r) % len(allocs)]
                    samples[(t, name)].append(run(python, t, args.requests,
                                                  environment(preload, pm)))
            print(f"{python}: round {r + 1}/{args.runs} done", file=sys.stderr, flush=True)
        print(table(python, counts, allocs, samples, args.runs) + "\n", flush=True)
        everything[python] = {f"{n} {t}": v for (t, n), v in samples.items()}
    if args.json:
        with open(args.json, "w") as f:
            json.dump(everything, f, indent=1)


if __name__ == "__main__":
    main()
