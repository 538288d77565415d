#!/usr/bin/env bash
# The allocator's share of CPU time (issue 13) in CPython 3.11 running the bundled Python
# workloads (cli/src/workloads/*.py): `perf record -e cpu-clock` samples of each
# run, under CPython's own pymalloc (no preload) and under pymalloc-rs
# (LD_PRELOAD=target/release/libpymalloc.so). Prints a markdown table of the shares and
# their ratio (target: pymalloc-rs / CPython's pymalloc <= 0.6).
#
#   cargo build --release && bash benches/perf_share.sh [WORKLOAD ...]
#
# WORKLOAD: a name in the workloads folder (json_roundtrip, containers, oo_richards, ...);
# all of them when none is given. Environment: PYTHON (default: pyenv's newest 3.11,
# ~/.pyenv/versions/3.11.*/bin/python3.11, $PYENV_ROOT honoured), PERF_RUNS (runs per
# cell, default 3; the table shows the median share), PERF_FREQ (samples per second,
# default 10000).
#
# Shares are percentages of all samples of the run. pymalloc-rs's share is every sample
# in libpymalloc.so; CPython's is every sample in obmalloc.c's functions in libpython
# (the PyObject_* entry points, which pymalloc-rs replaces, and the _PyObject_* and pool and
# arena functions behind them; what the compiler did not inline is listed in OBMALLOC
# below). Neither counts the C library's malloc (blocks over 512 bytes, in both) nor kernel
# time (page faults, mmap).
set -euo pipefail

die() {
    echo "perf_share.sh: $*" >&2
    exit 1
}

root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
workloads="$root/cli/src/workloads"
lib="$root/target/release/libpymalloc.so"
runs=${PERF_RUNS:-3}
freq=${PERF_FREQ:-10000}

# obmalloc.c's functions (CPython 3.11) as they appear as symbols of libpython.
OBMALLOC=(
    PyObject_Malloc PyObject_Calloc PyObject_Realloc PyObject_Free
    _PyObject_Malloc _PyObject_Calloc _PyObject_Realloc _PyObject_Free
    pymalloc_alloc pymalloc_free pymalloc_realloc allocate_from_new_pool
    insert_to_usedpool insert_to_freepool new_arena address_in_range
    arena_map_get arena_map_mark_used _PyObject_ArenaMmap _PyObject_ArenaMunmap
)

command -v perf >/dev/null || die "perf not found (Debian: apt-get install linux-perf)"
[[ $runs =~ ^[1-9][0-9]*$ ]] || die "PERF_RUNS must be a positive integer, not '$runs'"
if [[ -z ${PYTHON:-} ]]; then
    PYTHON=$(ls -d "${PYENV_ROOT:-$HOME/.pyenv}"/versions/3.11.*/bin/python3.11 2>/dev/null |
        sort -V | tail -n 1) || true
    [[ -n $PYTHON ]] || die "no pyenv CPython 3.11 (PYTHON_CONFIGURE_OPTS=--enable-shared pyenv install 3.11, or set PYTHON)"
fi
[[ -x $PYTHON ]] || die "PYTHON=$PYTHON is not an executable"
[[ -f $lib ]] || die "$lib not found (run: cargo build --release)"

tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT

if ! err=$(perf record -e cpu-clock -o "$tmp/probe.data" -q -- true 2>&1); then
    die "perf record -e cpu-clock does not work here: $err (see /proc/sys/kernel/perf_event_paranoid)"
fi

if (($# > 0)); then
    names=("$@")
else
    names=()
    for f in "$workloads"/*.py; do
        names+=("$(basename "$f" .py)")
    done
fi
for n in "${names[@]}"; do
    [[ -f $workloads/$n.py ]] || die "no workload $n ($workloads/$n.py)"
done

# share DATA MODE: the allocator's percentage of the samples in perf data file DATA; MODE
# "ours" sums libpymalloc.so, "cpython" obmalloc's symbols in libpython.
share() {
    local pattern
    pattern=$(printf '%s|' "${OBMALLOC[@]}")
    perf report -i "$1" --stdio -q --sort dso,sym --percent-limit 0 2>/dev/null |
        awk -v mode="$2" -v syms="^(${pattern%|})\$" '
            { pct = $1; sub(/%/, "", pct) }
            mode == "ours" && $2 == "libpymalloc.so" { s += pct }
            mode == "cpython" && $2 ~ /^libpython/ && $4 ~ syms { s += pct }
            END { printf "%.2f\n", s }'
}

# measure NAME MODE RUN: one perf run of workload NAME; prints its share.
measure() {
    local data="$tmp/$1-$2-$3.data" pre=()
    [[ $2 == ours ]] && pre=(LD_PRELOAD="$lib")
    env -u PYTHONMALLOC -u PYTHONDEVMODE -u LD_PRELOAD "${pre[@]}" \
        perf record -e cpu-clock -F "$freq" -o "$data" -q -- \
        "$PYTHON" "$workloads/$1.py" >/dev/null ||
        die "$1 failed under $2 (perf record or $PYTHON exited non-zero)"
    share "$data" "$2"
    rm -f "$data"
}

median() {
    sort -g | awk '{ v[NR] = $1 } END { print (NR % 2) ? v[(NR + 1) / 2] : (v[NR / 2] + v[NR / 2 + 1]) / 2 }'
}

echo "## Allocator share of perf cpu-clock samples, $("$PYTHON" -c 'import platform; print(platform.python_version())'), median of $runs runs"
echo
echo "| workload | CPython's pymalloc share % | pymalloc-rs share % | ratio |"
echo "|---|---|---|---|"
for n in "${names[@]}"; do
    cpy=()
    ours=()
    # Alternate the two allocators run by run.
    for ((r = 0; r < runs; r++)); do
        cpy+=("$(measure "$n" cpython "$r")")
        ours+=("$(measure "$n" ours "$r")")
    done
    c=$(printf '%s\n' "${cpy[@]}" | median)
    o=$(printf '%s\n' "${ours[@]}" | median)
    [[ $o != 0 && $o != 0.00 ]] || echo "perf_share.sh: $n: no samples in libpymalloc.so (was it preloaded?)" >&2
    ratio=$(awk -v c="$c" -v o="$o" 'BEGIN { if (c > 0) printf "%.2f", o / c; else print "-" }')
    echo "| $n | $c | $o | $ratio |"
done
echo
echo "Target (issue 13): ratio <= 0.6. Shares exclude the C library's malloc and kernel time."
