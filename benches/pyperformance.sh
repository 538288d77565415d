#!/usr/bin/env bash
# A pyperformance subset under CPython's own pymalloc and under pymalloc-rs (LD_PRELOAD),
# the two back to back per benchmark, ROUNDS rounds; prints per-benchmark medians, their
# ratios and the geometric mean as markdown. This script makes the venvs; the runs and the
# table are benches/pyperformance_run.py's. See benches/README.md.
#
#   benches/pyperformance.sh [-p PYTHON] [-r ROUNDS] [-P PROCESSES] [-b BENCHMARKS] [-o DIR]
#                            [-l LOCKFILE]
#
#   -p PYTHON      the interpreter measured (default /usr/bin/python3.11, Debian's PGO + LTO
#                  build); a pyenv shim is resolved to the interpreter behind it
#   -r ROUNDS      rounds, at least 3 (default 3): each benchmark runs ROUNDS times under
#                  both allocators, back to back, which first swapped every time; one
#                  benchmark's rounds run together, so a run cut short leaves whole ones
#   -P PROCESSES   pyperf worker processes per run (default: pyperf's for --fast, 10);
#                  fewer make a round shorter, more rounds make up for them
#   -b BENCHMARKS  comma-separated pyperformance benchmarks (default: the 24 below)
#   -o DIR         where the JSON results, logs and the table go
#                  (default target/pyperformance/<date>-<interpreter>; the same DIR again
#                  measures only what is missing there)
#   -l LOCKFILE    hold this flock(2) lock around each benchmark's pair of runs (a machine
#                  shared with other benchmarks)
#
# Needs: target/release/libpymalloc.so and target/release/pymalloc (cargo build --release;
# PYMALLOC_LIB overrides the library), the interpreter's venv module, and PyPI: pyperformance
# (pinned, PYPERFORMANCE_VERSION) goes into a venv of its own under target/pyperformance/,
# and pyperformance makes the benchmarks' venv beside it on the first run.
set -euo pipefail

repo=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
version=${PYPERFORMANCE_VERSION:-1.14.0}
python=/usr/bin/python3.11
rounds=3
processes=
out=
lock=
# No benchmark that needs a package beyond pyperf (no install can fail, nothing but the
# interpreter and its standard library is timed): 24 benchmarks, 31 results.
benchmarks=async_tree,chaos,comprehensions,coroutines,deepcopy,deltablue,float,gc_collect,gc_traversal,generators,go,hexiom,json_dumps,json_loads,logging,nbody,nqueens,pathlib,pickle_pure_python,raytrace,richards,spectral_norm,unpickle_pure_python,xml_etree

usage() {
    sed -n '7,22p' "$0" >&2
    exit 2
}
while getopts p:r:P:b:o:l:h opt; do
    case $opt in
    p) python=$OPTARG ;;
    r) rounds=$OPTARG ;;
    P) processes=$OPTARG ;;
    b) benchmarks=$OPTARG ;;
    o) out=$OPTARG ;;
    l) lock=$OPTARG ;;
    *) usage ;;
    esac
done
[ $OPTIND -gt $# ] || usage
case $rounds in '' | *[!0-9]*) usage ;; esac
case $processes in *[!0-9]*) usage ;; esac
[ "$rounds" -ge 3 ] || { echo "$0: -r $rounds: at least 3 rounds (one round swings by 5-10 %)" >&2; exit 2; }

lib=${PYMALLOC_LIB:-$repo/target/release/libpymalloc.so}
cli=$repo/target/release/pymalloc
for f in "$lib" "$cli"; do
    [ -f "$f" ] || { echo "$0: no $f (cargo build --release)" >&2; exit 2; }
done
# The interpreter itself, not a wrapper (pyenv's shim would be timed too, and preloaded).
python=$(env -u LD_PRELOAD "$python" -c 'import sys; print(sys.executable)') ||
    { echo "$0: cannot run $python" >&2; exit 2; }
described=$(env -u LD_PRELOAD "$cli" interpreter "$python")
tag=$("$python" -c 'import sys; print("%s-%d.%d" % (sys.implementation.name, *sys.version_info[:2]))')

work=$repo/target/pyperformance
out=${out:-$work/$(date -u +%Y%m%dT%H%M)-$(echo "$python" | tr / _)}
mkdir -p "$work" "$out"
out=$(realpath "$out")
log=$out/log.txt
: >"$log"
# A copy of the library is measured: a rebuild during the runs does not change it.
cp "$lib" "$out/libpymalloc.so"
lib=$out/libpymalloc.so
say() { echo "pyperformance.sh: $*" | tee -a "$log" >&2; }

# pyperformance in a venv of the measured interpreter (its version must run it), kept
# between runs; the benchmarks' venv is pyperformance's own ./venv/<interpreter id>.
tool=$work/tool-$tag-$(echo "$python" | md5sum | cut -c1-8)
if [ "$(cat "$tool/.version" 2>/dev/null)" != "$version" ]; then
    rm -rf "$tool"
    env -u LD_PRELOAD "$python" -m venv "$tool" ||
        { echo "$0: $python has no working venv module (Debian: apt-get install ${tag#cpython-}-venv)" >&2; exit 2; }
    env -u LD_PRELOAD "$tool/bin/python" -m pip install -q "pyperformance==$version"
    echo "$version" >"$tool/.version"
fi
cd "$work"
unset PYTHONMALLOC LD_PRELOAD
say "pyperformance $version, $python; preparing the benchmarks' venv"
if ! made=$("$tool/bin/pyperformance" venv create -p "$python" -b "$benchmarks" 2>&1); then
    grep -q "already exists" <<<"$made" || { echo "$made" >&2; exit 1; }
fi
echo "$made" >>"$log"

# The timed runs and the table (benches/pyperformance_run.py).
"$tool/bin/python" "$repo/benches/pyperformance_run.py" "$python" "$lib" "$rounds" \
    "$benchmarks" "$out" "$lock" "$described" "$processes" 2> >(tee -a "$log" >&2)
