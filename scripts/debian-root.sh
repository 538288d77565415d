#!/usr/bin/env bash
# The Debian root that holds CPython 3.14 (sid) and 3.15 (experimental) for the tests:
# Debian's static, PGO+LTO builds with their regression tests (Lib/test), venv, headers
# and a C compiler (for the embedding program). Needs root (debootstrap, chroot, mount).
#
#   scripts/debian-root.sh                  make the root, or bring it up to date (quick
#                                           when it is complete)
#   scripts/debian-root.sh enter [--bind DIR]... -- CMD [ARG]...
#                                           run CMD inside it, with /proc, /dev, this
#                                           repository and each DIR mounted at the same
#                                           paths as outside (in a mount namespace of its
#                                           own: nothing stays mounted afterwards)
#
# The root is $PYMALLOC_DEBIAN_ROOT, or /var/lib/pymalloc-rs/debian-sid. The archive's
# Release files for sid and experimental may be past their validity date on a snapshot
# mirror; apt is told not to mind (Acquire::Check-Valid-Until=false).
set -euo pipefail

root=${PYMALLOC_DEBIAN_ROOT:-/var/lib/pymalloc-rs/debian-sid}
repo=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
mirror=${PYMALLOC_DEBIAN_MIRROR:-http://deb.debian.org/debian}

# The packages, per suite; the stamp records them, so that a changed list reinstalls.
sid_packages="python3.14 python3.14-venv python3.14-dev libpython3.14-testsuite gcc libc6-dev"
experimental_packages="python3.15 python3.15-venv python3.15-dev libpython3.15-testsuite"
stamp="$root/.pymalloc-rs-root"
want="sid: $sid_packages
experimental: $experimental_packages"

# Inside a fresh mount namespace: mount what a program in the root needs, then chroot.
# Not for direct use (`enter` calls it through unshare).
if [ "${1:-}" = __mounted ]; then
    shift
    binds=()
    while [ "$1" != -- ]; do
        binds+=("$1")
        shift
    done
    shift
    mount -t proc proc "$root/proc"
    mount --rbind /dev "$root/dev"
    for dir in "${binds[@]}"; do
        mkdir -p "$root$dir"
        mount --bind "$dir" "$root$dir"
    done
    exec chroot "$root" "$@"
fi

if [ "${1:-}" = enter ]; then
    shift
    binds=("$repo")
    while [ "${1:-}" = --bind ]; do
        binds+=("$(cd "$2" && pwd)")
        shift 2
    done
    [ "${1:-}" = -- ] && shift
    [ $# -gt 0 ] || { echo "usage: $0 enter [--bind DIR]... -- CMD [ARG]..." >&2; exit 2; }
    [ -x "$root/usr/bin/env" ] || { echo "$0: no Debian root at $root (run $0 to make it)" >&2; exit 2; }
    exec unshare --mount --propagation private -- "$0" __mounted "${binds[@]}" -- "$@"
fi

[ $# -eq 0 ] || { echo "usage: $0 [enter [--bind DIR]... -- CMD [ARG]...]" >&2; exit 2; }
[ "$(id -u)" = 0 ] || { echo "$0: needs root (debootstrap, chroot, mount)" >&2; exit 2; }

if [ -f "$stamp" ] && [ "$(cat "$stamp")" = "$want" ]; then
    echo "Debian root ready at $root"
    exit 0
fi

start=$SECONDS
if [ ! -x "$root/usr/bin/apt-get" ]; then
    command -v debootstrap >/dev/null || { echo "$0: needs debootstrap (apt-get install debootstrap)" >&2; exit 2; }
    rm -rf "$root" "$root.partial"
    mkdir -p "$(dirname "$root")"
    # A partial root from an interrupted run is started over, not patched.
    debootstrap --variant=minbase sid "$root.partial" "$mirror"
    # dpkg without fsync: a root that a crash spoiled is made again anyway.
    echo force-unsafe-io >"$root.partial/etc/dpkg/dpkg.cfg.d/pymalloc-rs-unsafe-io"
    mv "$root.partial" "$root"
fi
cat >"$root/etc/apt/sources.list" <<EOF
deb $mirror sid main
deb $mirror experimental main
EOF
cp /etc/resolv.conf "$root/etc/resolv.conf" 2>/dev/null || true
apt=(apt-get -q -y -o Acquire::Check-Valid-Until=false -o APT::Install-Recommends=false)
in_root() { DEBIAN_FRONTEND=noninteractive "$0" enter -- "$@"; }
in_root "${apt[@]}" update
# shellcheck disable=SC2086 # the lists are words
in_root "${apt[@]}" install $sid_packages
# shellcheck disable=SC2086
in_root "${apt[@]}" -t experimental install $experimental_packages
in_root "${apt[@]}" clean
printf '%s\n' "$want" >"$stamp"
echo "Debian root ready at $root ($((SECONDS - start)) s)"
