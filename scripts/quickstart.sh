#!/bin/sh
# The main job on a fresh Debian 12 machine, as root: build and install
# cblocks, start cblockd, create the forge, build the base, builder and web
# examples, serve a page from web, and run a command in base.
#
# Usage: scripts/quickstart.sh          run it
#        scripts/quickstart.sh clean    stop what it started and remove its data
#
# Settings (environment): PREFIX (install prefix, default /usr/local),
# CBLOCKS_DATA (data directory, default /var/lib/cblocks), CBLOCK_SOCKET
# (daemon socket, default /var/run/cblock.sock).
set -eu

here=$(cd "$(dirname "$0")/.." && pwd)
prefix=${PREFIX:-/usr/local}
data=${CBLOCKS_DATA:-/var/lib/cblocks}
socket=${CBLOCK_SOCKET:-/var/run/cblock.sock}
cblock="$prefix/bin/cblock"
pidfile=/var/run/cblockd-quickstart.pid
export CBLOCK_SOCKET="$socket"

step() {
    printf '\n\033[1m==> %s\033[0m\n' "$*"
}

fail() {
    printf 'quickstart: %s\n' "$*" >&2
    exit 1
}

clean() {
    step "Stopping the containers and the daemon started by the quickstart"
    if [ -S "$socket" ] && [ -x "$cblock" ]; then
        for id in $("$cblock" instances -q 2>/dev/null || true); do
            "$cblock" instances --kill "$id" >/dev/null 2>&1 || true
        done
        "$cblock" instances --prune >/dev/null 2>&1 || true
    fi
    if [ -f "$pidfile" ]; then
        kill "$(cat "$pidfile")" 2>/dev/null || true
        rm -f "$pidfile"
    fi
    step "Removing $data"
    # Unmount whatever is still mounted below the data directory first, so
    # that rm never walks into a container's root file system.
    grep -o " $data/[^ ]*" /proc/self/mounts | sort -r | while read -r mnt; do
        umount -l "$mnt" 2>/dev/null || true
    done
    rm -rf "$data"
    echo "clean"
}

if [ "${1:-}" = clean ]; then
    clean
    exit 0
fi
[ "$(id -u)" = 0 ] || fail "run the quickstart as root: it installs into $prefix and starts cblockd"

step "Building the static binary (make)"
make -C "$here" build

step "Installing into $prefix (make install)"
make -C "$here" install PREFIX="$prefix" >/dev/null

step "Starting cblockd (data in $data, socket $socket)"
if [ -S "$socket" ] && "$cblock" instances >/dev/null 2>&1; then
    echo "cblockd is already running"
else
    "$prefix/sbin/cblockd" -d "$data" -U "$socket" -b
    echo "waiting for $socket"
    tries=0
    until "$cblock" instances >/dev/null 2>&1; do
        tries=$((tries + 1))
        [ "$tries" -lt 50 ] || fail "cblockd did not answer on $socket within 10 seconds"
        sleep 0.2
    done
    pgrep -n -x cblockd > "$pidfile" || true
fi

step "Creating the forge image (cblock forge)"
"$cblock" forge

step "Making the Debian root file system archive (once per machine; a few minutes the first time)"
"$here/examples/base/mkrootfs.sh"

step "Building base"
"$cblock" build -n base "$here/examples/base"
step "Building builder (apt-get installs gcc: a minute or two)"
"$cblock" build -n builder "$here/examples/builder"
step "Building web (two stages, COPY --FROM)"
"$cblock" build -n web "$here/examples/web"
"$cblock" images

step "Launching web detached, with host networking"
"$cblock" launch --name web --host-networking --no-attach
echo "waiting for the server on 127.0.0.1:8080"
tries=0
until reply=$(curl -fsS http://127.0.0.1:8080/ 2>/dev/null); do
    tries=$((tries + 1))
    [ "$tries" -lt 50 ] || fail "web did not answer on 127.0.0.1:8080 within 10 seconds"
    sleep 0.2
done
echo "web answered: $reply"

step "Running a command in base (cblock launch --rm --name base -- cat /etc/debian_version)"
"$cblock" launch --rm --name base -- cat /etc/debian_version

step "Done"
"$cblock" instances
echo "Attach to web with: $cblock console --name ID (Ctrl+Q detaches)"
echo "Remove everything with: make quickstart-clean"
