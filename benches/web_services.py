"""Real web services from PyPI under CPython's pymalloc, pymalloc-rs, mimalloc and jemalloc
(benches/allocators.py): a Flask app under gunicorn (one worker, `--threads 32`) and an
aiohttp server, each answering GET / with a 300-item JSON document
(benches/python/web_payload.py), driven on loopback by `wrk -t2 -c64 --latency` in bursts
with idle gaps between them.

    python3 benches/web_services.py [-n RUNS] [-s gunicorn,aiohttp] [--bursts 8]
        [--burst-s 5] [--gap-s 3] [-p PYTHON] [--svg FILE] [--json FILE | --from-json FILE]

The packages (benches/web_requirements.txt, every version pinned) are installed into a venv
under target/web-bench/ on the first run. Each run is a fresh server in its own process
group (the allocators alternating, in a rotated order each round); the serving process's
RSS (gunicorn's worker, aiohttp's one process) is read from /proc every 0.25 s. Prints per
server a markdown table of medians over runs: peak RSS (VmHWM), idle RSS (at the end of each
gap, the median over a run's gaps), requests per second over the bursts, and p50 / p99
latency (the median over a run's bursts), with ratios to CPython's pymalloc. `--svg` draws
the RSS timelines (for each allocator its run of median peak) with `pymalloc chart`.
Loopback only; one server and one wrk at a time; every run's process group is killed at its
end. Needs `wrk` (`apt-get install wrk`) and `cargo build --release`."""
import argparse
import hashlib
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time
import urllib.request

from allocators import (BASELINE, ROOT, allocators, check_installed, environment, median,
                        ratio)

APPS = os.path.join(ROOT, "benches/python")
REQUIREMENTS = os.path.join(ROOT, "benches/web_requirements.txt")
WORK = os.path.join(ROOT, "target/web-bench")
SAMPLE_S = 0.25
# wrk's summary in one parseable line: requests, microseconds, p50 and p99 (microseconds),
# socket errors, non-2xx answers.
WRK_SCRIPT = """done = function(summary, latency, requests)
  local e = summary.errors
  io.write(string.format("RESULT %d %d %.0f %.0f %d %d\\n", summary.requests,
    summary.duration, latency:percentile(50), latency:percentile(99),
    e.connect + e.read + e.write + e.timeout, e.status))
end
"""


def venv(python):
    """The venv's interpreter for `python`, with the pinned packages, made once."""
    tag = hashlib.sha256((python + open(REQUIREMENTS).read()).encode()).hexdigest()[:12]
    home = os.path.join(WORK, "venv-" + tag)
    bin_python = os.path.join(home, "bin/python")
    if not os.path.isfile(os.path.join(home, "installed")):
        shutil.rmtree(home, ignore_errors=True)
        subprocess.run([python, "-m", "venv", home], check=True)
        subprocess.run([bin_python, "-m", "pip", "install", "-q", "--no-deps", "-r",
                        REQUIREMENTS], check=True)
        open(os.path.join(home, "installed"), "w").close()
    return bin_python


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def server_command(server, python, port):
    if server == "gunicorn":
        return [python, "-m", "gunicorn", "--workers", "1", "--threads", "32",
                "--bind", f"127.0.0.1:{port}", "--log-level", "warning", "flask_app:app"]
    return [python, "aiohttp_app.py", str(port)]


def rss_kib(pid, field="VmRSS"):
    try:
        with open(f"/proc/{pid}/status") as f:
            for line in f:
                if line.startswith(field + ":"):
                    return int(line.split()[1])
    except OSError:
        pass
    return 0


def serving_pid(server, proc, deadline):
    """The process that serves: gunicorn's one worker (the master's child), or the server."""
    if server != "gunicorn":
        return proc.pid
    while time.monotonic() < deadline:
        try:
            with open(f"/proc/{proc.pid}/task/{proc.pid}/children") as f:
                children = f.read().split()
        except OSError:
            children = []
        if children:
            return int(children[0])
        time.sleep(0.05)
    raise RuntimeError("gunicorn started no worker")


def wait_ready(proc, url, deadline):
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"the server exited ({proc.returncode})")
        try:
            with urllib.request.urlopen(url, timeout=2) as r:
                if r.status == 200 and len(json.loads(r.read())) == 300:
                    return
        except OSError:
            time.sleep(0.1)
    raise RuntimeError("the server did not answer within 30 s")


def kill_group(proc):
    """Ends the server's process group (the leader and any worker it forked): SIGTERM, then
    SIGKILL after 5 s; exits if anything of it is left."""
    for sig in (signal.SIGTERM, signal.SIGKILL):
        try:
            os.killpg(proc.pid, sig)
        except ProcessLookupError:
            pass
        deadline = time.monotonic() + 5
        while time.monotonic() < deadline:
            proc.poll()  # reaps the leader, whose zombie would still count as the group's
            try:
                os.killpg(proc.pid, 0)
            except ProcessLookupError:
                return
            time.sleep(0.05)
    sys.exit(f"process group {proc.pid} is still alive after SIGKILL")


def one_run(server, python, alloc, args, wrk_script):
    """One fresh server under one allocator, driven in bursts: its measurements."""
    name, preload, pythonmalloc = alloc
    env = environment(preload, pythonmalloc)
    port = free_port()
    url = f"http://127.0.0.1:{port}/"
    err_path = os.path.join(WORK, "server.err")
    with open(err_path, "w") as err:
        proc = subprocess.Popen(server_command(server, python, port), cwd=APPS, env=env,
                                stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                                stderr=err, start_new_session=True)
    samples, stop, sampler = [], threading.Event(), None
    try:
        deadline = time.monotonic() + 30
        wait_ready(proc, url, deadline)
        pid = serving_pid(server, proc, deadline)
        t0 = time.monotonic()

        def sample():
            i = 0
            while not stop.is_set():
                samples.append((i * SAMPLE_S, rss_kib(pid)))
                i += 1
                stop.wait(max(0.0, t0 + i * SAMPLE_S - time.monotonic()))

        sampler = threading.Thread(target=sample)
        sampler.start()
        bursts, idle = [], []
        for _ in range(args.bursts):
            out = subprocess.run(
                ["wrk", "-t2", "-c64", f"-d{args.burst_s}s", "--latency", "-s", wrk_script,
                 url], capture_output=True, text=True, timeout=args.burst_s + 60)
            line = next((l for l in out.stdout.splitlines() if l.startswith("RESULT ")), None)
            if out.returncode != 0 or line is None:
                raise RuntimeError(f"wrk failed: {out.stdout[-1000:]}{out.stderr[-1000:]}")
            bursts.append([int(v) for v in line.split()[1:]])
            time.sleep(args.gap_s)
            idle.append(rss_kib(pid))
        peak = rss_kib(pid, "VmHWM")
        if proc.poll() is not None:
            raise RuntimeError(f"the server exited ({proc.returncode})")
    except (RuntimeError, subprocess.TimeoutExpired) as e:
        with open(err_path) as f:
            sys.exit(f"{server} under {name}: {e}\n{f.read()[-2000:]}")
    finally:
        stop.set()
        if sampler:
            sampler.join()
        kill_group(proc)
    with open(err_path) as f:
        check_installed(env, f.read(), f"{server} under {name}")
    errors = sum(b[4] + b[5] for b in bursts)
    if errors:
        print(f"{server} under {name}: {errors} socket errors or non-2xx answers",
              file=sys.stderr)
    return {"peak_kib": peak, "idle_kib": median(idle), "idle_each_kib": idle,
            "rps": sum(b[0] for b in bursts) / (sum(b[1] for b in bursts) / 1e6),
            "p50_ms": median([b[2] for b in bursts]) / 1000,
            "p99_ms": median([b[3] for b in bursts]) / 1000,
            "errors": errors, "bursts": bursts, "rss_kib": samples}


def table(allocs, results):
    names = [a[0] for a in allocs]
    keys = ["peak_kib", "idle_kib", "rps", "p50_ms", "p99_ms"]
    m = {n: {k: median([r[k] for r in results[n]]) for k in keys} for n in names}
    b = m[BASELINE]
    lines = ["| allocator | peak RSS, MiB | idle RSS, MiB | requests/s | p50, ms | p99, ms |",
             "|---|---|---|---|---|---|"]
    for n in names:
        v = m[n]
        cells = [f"{v['peak_kib'] / 1024:.1f}", f"{v['idle_kib'] / 1024:.1f}",
                 f"{v['rps']:,.0f}", f"{v['p50_ms']:.1f}", f"{v['p99_ms']:.1f}"]
        if n != BASELINE:
            cells = [f"{c} ({ratio(v[k], b[k])})" for c, k in zip(cells, keys)]
        lines.append(f"| {n} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


TITLES = {"gunicorn": "gunicorn + Flask (1 worker, 32 threads)",
          "aiohttp": "aiohttp"}


def chart(servers, allocs, results, args, svg):
    """Draws each server's RSS timeline (MiB; per allocator its run of median peak)."""
    names = [a[0] for a in allocs]
    text = []
    for server in servers:
        runs = {}
        for n in names:
            ordered = sorted(results[server][n], key=lambda r: r["peak_kib"])
            runs[n] = ordered[(len(ordered) - 1) // 2]["rss_kib"]
        length = min(len(s) for s in runs.values())
        text.append(f"lines\t{TITLES[server]}: RSS of the serving process (MiB)")
        text.append("series\t" + "\t".join(names))
        for i in range(length):
            text.append(f"row\t{runs[names[0]][i][0]:g} s\t"
                        + "\t".join(f"{runs[n][i][1] / 1024:.2f}" for n in names))
    subprocess.run([os.path.join(ROOT, "target/release/pymalloc"), "chart", "-o", svg],
                   input="\n".join(text) + "\n", text=True, check=True)


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("-n", "--runs", type=int, default=3, help="runs per cell (default 3)")
    ap.add_argument("-s", "--servers", default="gunicorn,aiohttp")
    ap.add_argument("-p", "--python", default="/usr/bin/python3.11",
                    help="interpreter of the venv (default Debian's 3.11)")
    ap.add_argument("--bursts", type=int, default=8)
    ap.add_argument("--burst-s", type=int, default=5)
    ap.add_argument("--gap-s", type=float, default=3)
    ap.add_argument("--svg", help="draw the RSS timelines into this SVG file")
    ap.add_argument("--json", help="write every run's measurements into this file")
    ap.add_argument("--from-json", metavar="FILE",
                    help="measure nothing: the tables and --svg from a --json file")
    args = ap.parse_args()
    if not (args.from_json or shutil.which("wrk")):
        sys.exit("wrk not found: apt-get install wrk")
    servers = args.servers.split(",")
    for s in servers:
        if s not in TITLES:
            sys.exit(f"unknown server {s!r}: gunicorn or aiohttp")
    # SIGTERM ends the bench as Ctrl-C does: through the `finally` that kills the server.
    signal.signal(signal.SIGTERM, lambda *_: sys.exit("terminated"))
    allocs = allocators()
    if args.from_json:
        with open(args.from_json) as f:
            saved = json.load(f)
        results, version = saved["results"], saved["python"]
        servers = [s for s in servers if s in results]
        for k in ("bursts", "burst_s", "gap_s", "runs", "python"):
            setattr(args, k, saved["args"][k])
    else:
        results, version = measure(servers, allocs, args)
    for server in servers:
        print(f"{TITLES[server]}, {version} ({args.python}), {args.runs} runs each, "
              f"medians; {args.bursts} bursts of {args.burst_s} s, {args.gap_s} s idle after "
              f"each; ratios to {BASELINE}\n")
        print(table(allocs, results[server]) + "\n", flush=True)
    if args.svg:
        chart(servers, allocs, results, args, args.svg)
    if args.json:
        with open(args.json, "w") as f:
            json.dump({"args": vars(args), "python": version, "results": results}, f)


def measure(servers, allocs, args):
    """Every run, alternating: {server: {allocator: [run]}}, and the interpreter's version."""
    os.makedirs(WORK, exist_ok=True)
    python = venv(args.python)
    wrk_script = os.path.join(WORK, "report.lua")
    with open(wrk_script, "w") as f:
        f.write(WRK_SCRIPT)
    per_run = args.bursts * (args.burst_s + args.gap_s)
    print(f"{len(servers) * len(allocs) * args.runs} runs of about {per_run:.0f} s each",
          file=sys.stderr, flush=True)
    results = {s: {a[0]: [] for a in allocs} for s in servers}
    for r in range(args.runs):
        for server in servers:
            for i in range(len(allocs)):
                alloc = allocs[(i + r) % len(allocs)]
                results[server][alloc[0]].append(one_run(server, python, alloc, args,
                                                         wrk_script))
        print(f"round {r + 1}/{args.runs} done", file=sys.stderr, flush=True)
    version = subprocess.run([python, "--version"], capture_output=True, text=True).stdout
    return results, version.strip()


if __name__ == "__main__":
    main()
