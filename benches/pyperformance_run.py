"""The timed part of benches/pyperformance.sh, run by the venv that holds pyperformance.

usage: pyperformance_run.py PYTHON LIBRARY ROUNDS BENCHMARKS OUTDIR LOCKFILE DESCRIBED PROCESSES

(LOCKFILE and PROCESSES may be empty: no lock, pyperf's number of worker processes.)

Runs each benchmark under CPython's pymalloc and under pymalloc-rs (LIBRARY preloaded) back
to back, the order swapped from one round and benchmark to the next, so that both see the
same load on a shared machine; ROUNDS rounds of one benchmark, then the next benchmark. Each run goes through pyperformance's own
code (its benchmark scripts, pyperf `--fast`, in its benchmark venv for PYTHON), with the
loop counts of the first run of each benchmark. A run under pymalloc-rs counts only if
every interpreter process of it (the pyperf master and each worker) said it installed
itself (`PYMALLOC_VERBOSE=1`); a baseline run must have no such line. Writes each run's
result as pyperf JSON as soon as it is measured (`OUTDIR/runs/`; run again with the same
OUTDIR, the script measures only what is missing) and its output (`OUTDIR/logs/`), and
prints the markdown table: per benchmark the median over rounds of each round's median,
their ratio, each round's ratio, and the geometric means.
"""

import contextlib
import fcntl
import math
import os
import re
import statistics
import sys
import time

import pyperf
import pyperformance
from pyperformance import _manifest, _pythoninfo, _venv
from pyperformance.run import get_run_id

CONFIGS = ("cpython", "pymalloc-rs")
NAMES = {"cpython": "CPython pymalloc", "pymalloc-rs": "pymalloc-rs"}


def say(*words):
    print("pyperformance.sh:", *words, file=sys.stderr, flush=True)


@contextlib.contextmanager
def redirected(path):
    """fds 1 and 2 (inherited by the benchmark's processes) into `path`."""
    saved = [os.dup(1), os.dup(2)]
    sys.stdout.flush()
    sys.stderr.flush()
    with open(path, "w") as log:
        os.dup2(log.fileno(), 1)
        os.dup2(log.fileno(), 2)
        try:
            yield
        finally:
            sys.stdout.flush()
            sys.stderr.flush()
            for fd, old in zip((1, 2), saved):
                os.dup2(old, fd)
                os.close(old)


@contextlib.contextmanager
def locked(path):
    if not path:
        yield
        return
    with open(path, "a") as f:
        fcntl.flock(f, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(f, fcntl.LOCK_UN)


def run_one(bench, venv_python, runid, config, library, loops, processes, log):
    """One pyperf run of `bench` under `config` (`loops` per value if not None); the
    result suite and the number of processes pymalloc-rs installed itself in."""
    opts = ["--fast", "--verbose", "--inherit-environ", "LD_PRELOAD,PYMALLOC_VERBOSE"]
    if processes:
        opts.append(f"--processes={processes}")
    if loops:
        opts.append(f"--loops={loops}")
    for var in ("LD_PRELOAD", "PYMALLOC_VERBOSE", "PYTHONMALLOC"):
        os.environ.pop(var, None)
    if config == "pymalloc-rs":
        os.environ["LD_PRELOAD"] = library
        os.environ["PYMALLOC_VERBOSE"] = "1"
    try:
        with redirected(log):
            result = bench.run(venv_python, runid, opts, verbose=True)
    finally:
        os.environ.pop("LD_PRELOAD", None)
        os.environ.pop("PYMALLOC_VERBOSE", None)
    text = open(log).read()
    processes = 1 + len(re.findall(r"^Run \d+:", text, re.M))
    installed = len(re.findall(r"^pymalloc: installed for CPython's", text, re.M))
    if config == "pymalloc-rs" and installed < processes:
        raise SystemExit(
            f"{bench.name}: pymalloc-rs installed itself in {installed} of {processes} "
            f"interpreter processes: see {log}"
        )
    if config == "cpython" and installed:
        raise SystemExit(f"{bench.name}: pymalloc-rs was loaded in a baseline run: {log}")
    return result, installed


def table(out, rounds, described, names, processes):
    """The markdown table from the runs measured so far: the benchmarks measured under both
    allocators in every round (a run cut short says how many it had)."""
    procs = f" with {processes} worker processes" if processes else ""

    def load(config, r, name):
        path = run_file(out, r, name, config)
        if not os.path.exists(path):
            return None
        return {b.get_name(): b.median() for b in pyperf.BenchmarkSuite.load(path).get_benchmarks()}

    complete = [n for n in names if all(load(c, r, n) for c in CONFIGS for r in range(1, rounds + 1))]
    data = {c: [{} for _ in range(rounds)] for c in CONFIGS}
    for c in CONFIGS:
        for r in range(rounds):
            for n in complete:
                data[c][r].update(load(c, r + 1, n))
    results = sorted(set.intersection(*(set(m) for c in CONFIGS for m in data[c])))
    if not results:
        return f"Interpreter: {described}\n\nno benchmark measured in all {rounds} rounds yet\n"
    done = range(rounds)

    def geo(xs):
        return math.exp(sum(map(math.log, xs)) / len(xs))

    lines = [
        f"Interpreter: {described}",
        "",
        f"pyperformance {pyperformance.__version__}, {len(complete)} of {len(names)} benchmarks, "
        f"{len(results)} results, `--fast`{procs}, {rounds} rounds, the two allocators back "
        "to back per benchmark; time: median over rounds of each round's median; ratio: "
        "pymalloc-rs / CPython pymalloc (lower is better)",
        "",
        "| benchmark | CPython pymalloc (ms) | pymalloc-rs (ms) | ratio | ratio per round |",
        "|---|---|---|---|---|",
    ]
    ratios, by_round = [], [[] for _ in done]
    for n in results:
        base = statistics.median(m[n] for m in data["cpython"])
        ours = statistics.median(m[n] for m in data["pymalloc-rs"])
        ratios.append(ours / base)
        each = [data["pymalloc-rs"][k][n] / data["cpython"][k][n] for k in range(len(done))]
        for k, x in enumerate(each):
            by_round[k].append(x)
        lines.append(
            f"| {n} | {base * 1e3:.2f} | {ours * 1e3:.2f} | {ours / base:.3f} | "
            + " ".join(f"{x:.3f}" for x in each)
            + " |"
        )
    lines.append(
        f"| **geometric mean** | | | **{geo(ratios):.3f}** | "
        + " ".join(f"{geo(x):.3f}" for x in by_round)
        + " |"
    )
    return "\n".join(lines) + "\n"


def main():
    python, library, rounds, names, out, lock, described, processes = sys.argv[1:]
    rounds, names = int(rounds), names.split(",")
    manifest = _manifest.load_manifest(None)
    known = {b.name: b for b in manifest.benchmarks}
    missing = [n for n in names if n not in known]
    if missing:
        raise SystemExit(f"not in pyperformance {pyperformance.__version__}: {missing}")
    # pyperformance's venv for PYTHON (`pyperformance venv create` made it).
    info = _pythoninfo.get_info(python)
    venv_python = _venv.resolve_venv_python(_venv.get_venv_root(get_run_id(info).name, python=info))
    os.makedirs(f"{out}/logs", exist_ok=True)
    os.makedirs(f"{out}/runs", exist_ok=True)
    loads, installs = [], 0
    # Benchmark by benchmark, its rounds together: a run cut short leaves whole benchmarks.
    for i, name in enumerate(names):
        for r in range(1, rounds + 1):
            bench = known[name]
            runid = get_run_id(info, bench)
            order = CONFIGS if (r + i) % 2 else CONFIGS[::-1]
            # A pair already measured (an interrupted run started again) is kept.
            if all(os.path.exists(run_file(out, r, name, c)) for c in CONFIGS):
                continue
            with locked(lock):
                loads.append(float(open("/proc/loadavg").read().split()[0]))
                for config in order:
                    say(f"round {r}/{rounds}, {name} under {NAMES[config]}, load {loads[-1]}")
                    log = f"{out}/logs/r{r}-{name}-{config}.txt"
                    result, n = run_one(
                        bench, venv_python, runid, config, library, loops(out, name), processes, log
                    )
                    installs += n
                    result.dump(run_file(out, r, name, config), replace=True)
    if loads:
        say(
            f"pymalloc-rs installed itself in all {installs} interpreter processes of its runs; "
            f"load average (1 min) before each pair: {min(loads)}-{max(loads)}, "
            f"median {statistics.median(loads)}; {time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}"
        )
    text = table(out, rounds, described, names, processes)
    with open(f"{out}/table.md", "w") as f:
        f.write(text)
    print(text, end="")


def run_file(out, r, name, config):
    return f"{out}/runs/r{r}-{name}-{config}.json"


def loops(out, name):
    """The loop count of the first run of `name` (round 1, either allocator), if any."""
    for config in CONFIGS:
        path = run_file(out, 1, name, config)
        if os.path.exists(path):
            for res in pyperf.BenchmarkSuite.load(path).get_benchmarks():
                meta = res.get_metadata()
                if res.get_name() == name and "loops" in meta:
                    return meta["loops"]
    return None


if __name__ == "__main__":
    main()
