#!/bin/sh
# Makes the Debian root file system archive that examples/base ADDs, once per
# machine: debootstrap --variant=minbase of Debian 12 (bookworm), packed as a
# gzip tar archive whose top directory is "root" (ROOTPIVOT takes it from
# there).
#
# Usage: mkrootfs.sh [OUTPUT]
#   OUTPUT  where the archive goes (default: debian-rootfs.tar.gz next to
#           this script). It is a hard link to the cached copy, or a copy on
#           another file system: a symlink would point out of the build
#           context, which the builder rejects.
#
# The archive is cached in $CBLOCKS_CACHE (default /var/cache/cblocks) and
# reused while it exists. The mirror is the first one in apt's sources, so a
# machine that reaches only its configured mirror works unchanged; set
# DEBIAN_MIRROR to override it.
set -eu

here=$(cd "$(dirname "$0")" && pwd)
output=${1:-$here/debian-rootfs.tar.gz}
cache=${CBLOCKS_CACHE:-/var/cache/cblocks}
suite=bookworm
cached=$cache/debian-$suite-minbase-nodev.tar.gz

if [ "$(id -u)" != 0 ]; then
    echo "mkrootfs.sh: debootstrap needs root; run it as root" >&2
    exit 1
fi

if [ ! -s "$cached" ]; then
    if ! command -v debootstrap >/dev/null; then
        echo "mkrootfs.sh: installing debootstrap" >&2
        apt-get install -y -qq debootstrap >/dev/null
    fi

    mirror=${DEBIAN_MIRROR:-}
    if [ -z "$mirror" ]; then
        mirror=$(sed -n 's/^URIs:[[:space:]]*\([^[:space:]]*\/debian\)$/\1/p' \
            /etc/apt/sources.list.d/*.sources 2>/dev/null | head -n 1)
    fi
    if [ -z "$mirror" ]; then
        mirror=$(sed -n 's/^deb[[:space:]]\{1,\}\([^[:space:]]*\/debian\)[[:space:]].*/\1/p' \
            /etc/apt/sources.list 2>/dev/null | head -n 1)
    fi
    mirror=${mirror:-http://deb.debian.org/debian}

    mkdir -p "$cache"
    work=$(mktemp -d "$cache/rootfs.XXXXXX")
    trap 'rm -rf "$work"' EXIT INT TERM
    echo "mkrootfs.sh: debootstrap --variant=minbase $suite from $mirror (a few minutes)" >&2
    debootstrap --variant=minbase "$suite" "$work/root" "$mirror" >"$work/log" 2>&1 || {
        echo "mkrootfs.sh: debootstrap failed; its log follows" >&2
        tail -n 20 "$work/log" >&2
        exit 1
    }
    # The host's resolver settings are not part of the image.
    : > "$work/root/etc/resolv.conf"
    echo "mkrootfs.sh: packing the root file system" >&2
    # Device nodes stay out: the runtime gives every container its own /dev,
    # and ADD rejects device nodes in archives.
    tar -C "$work" --numeric-owner --exclude='root/dev/*' -czf "$work/rootfs.tar.gz" root
    mv "$work/rootfs.tar.gz" "$cached"
fi

if [ "$output" != "$cached" ]; then
    ln -f "$cached" "$output" 2>/dev/null || cp "$cached" "$output"
fi
echo "$output"
