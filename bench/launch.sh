#!/usr/bin/env bash
# Compares cblocks with Podman on container launches from the same busybox
# root file system:
#   - the end-to-end time of `cblock launch --rm -n IMG -- /bin/true`
#     against `podman run --rm --network none IMG /bin/true`, timed by
#     `hyperfine -N` in one invocation;
#   - the idle resident set size (VmRSS) of a freshly started cblockd;
#   - the memory of the per-container process: conmon for Podman, the
#     cblocks supervisor, each with CONTAINERS `sleep` containers running.
#
# Usage (as root):
#   bench/launch.sh [CBLOCK_BINARY]
#
#   CBLOCK_BINARY  the cblock binary; the script starts a private cblockd
#                  from it on a temporary socket and data directory. Without
#                  it, or when that daemon or the image import fails, only
#                  Podman is measured.
#
# Settings (environment): MANY (run that many sleep containers at once and
# measure cblockd's memory and `cblock instances` with them; default 0, off),
# RUNS (timed runs per command, default 50), WARMUP
# (default 3), CONTAINERS (sleep containers for the per-container memory,
# default 5), BENCH_OUT (result directory, default /var/tmp/cblocks-bench).
#
# Podman keeps its images and containers in a private store (--root,
# --runroot, --tmpdir) in a temporary directory. It runs with
# `--runtime runc` because Debian 12's crun rejects this machine's hybrid
# cgroup layout, and with nofile and nproc limits under the hard limits
# here (nofile 20000), because its default of 1048576 open files fails.
# Everything started is stopped and removed on exit, also on failure.
set -eu

prog=bench/launch
here=$(cd "$(dirname "$0")" && pwd)
. "$here/lib.sh"

case ${1:-} in -h | --help)
    sed -n '2,/^set -eu/p' "$0" | sed '$d; s/^# \{0,1\}//'
    exit 0
    ;;
esac
[ $# -le 1 ] || die "expected at most one argument (the cblock binary), got $#"

require_root
require_command hyperfine hyperfine
require_command podman podman
require_command runc runc
require_command jq jq

runs=${RUNS:-50}
warmup=${WARMUP:-3}
containers=${CONTAINERS:-5}
out=${BENCH_OUT:-/var/tmp/cblocks-bench}
mkdir -p "$out"
describe_machine | tee "$out/launch-machine.txt"
image=cblocks-bench-busybox

work=$(mktemp -d /var/tmp/cblocks-bench-launch.XXXXXX)
chmod 755 "$work"
podman=(podman --root "$work/podman/root" --runroot "$work/podman/run"
    --tmpdir "$work/podman/tmp" --events-backend file)
podman_run_flags=(--network none --runtime runc
    --ulimit nofile=20000:20000 --ulimit nproc=32768:32768)
cblockd_pid=
cblock=

cleanup() {
    if [ -n "$cblock" ] && [ -n "$cblockd_pid" ]; then
        stop_cblocks_instances
        kill "$cblockd_pid" 2>/dev/null || true
        wait "$cblockd_pid" 2>/dev/null || true
    fi
    if [ -d "$work/podman" ]; then
        "${podman[@]}" rm --all --force --time 0 >/dev/null 2>&1 || true
        "${podman[@]}" rmi --all --force >/dev/null 2>&1 || true
    fi
    unmount_below "$work"
    rm -rf --one-file-system "$work"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

make_busybox_rootfs "$work"
tar -C "$work/rootfs" -cf "$work/busybox-rootfs.tar" .

"${podman[@]}" import --quiet "$work/busybox-rootfs.tar" "localhost/$image:latest" >/dev/null ||
    die "importing $work/busybox-rootfs.tar into Podman failed"

# --- The cblocks half -------------------------------------------------------

# Prints the pids of the per-container supervisors of the private daemon.
# NOTE: this relies on each supervisor having its instance directory under
# the daemon's data directory on its command line, as `cblock _supervisor`
# does now. Because the data directory is private to this run, the match
# never reaches another daemon's containers.
cblocks_supervisor_pids() {
    local pid
    for pid in $(ls /proc | grep -E '^[0-9]+$'); do
        [ "$pid" != "$cblockd_pid" ] || continue
        # A process can end between the listing and the read; the error
        # redirection comes first so that it also covers the input's.
        tr '\0' ' ' 2>/dev/null < "/proc/$pid/cmdline" | grep -q "_supervisor .*$work/cblocks/data/" || continue
        echo "$pid"
    done
}

# Kills and removes every instance of the private daemon, then ends the
# supervisors that are still alive, which only a failed kill leaves.
stop_cblocks_instances() {
    local instance pid
    for instance in $("$cblock" instances -q 2>/dev/null); do
        "$cblock" instances --kill "$instance" >/dev/null 2>&1 || true
    done
    "$cblock" instances --prune >/dev/null 2>&1 || true
    for pid in $(cblocks_supervisor_pids); do
        kill "$pid" 2>/dev/null || true
    done
}

# Starts a private cblockd and builds the image from the same archive.
# Prints why and returns false when any step fails.
start_cblocks() {
    mkdir -p "$work/context"
    start_private_cblockd "$1" || return 1

    cp "$work/busybox-rootfs.tar" "$work/context/"
    printf 'FROM scratch\nADD busybox-rootfs.tar /\n' > "$work/context/Dockerfile"
    if ! "$cblock" build -q -n "$image" -f "$work/context/Dockerfile" "$work/context" > "$work/build.log" 2>&1; then
        note "'cblock build -n $image' of the busybox archive failed: $(tail -n 1 "$work/build.log")"
        return 1
    fi
    if ! "$cblock" launch --rm -n "$image" -- /bin/true < /dev/null > "$work/launch.log" 2>&1; then
        note "'cblock launch --rm -n $image -- /bin/true' failed: $(tail -n 1 "$work/launch.log")"
        return 1
    fi
}

if [ -n "${1:-}" ]; then
    if ! start_cblocks "$1"; then
        note "skipping cblocks: measuring Podman only"
        [ -z "$cblockd_pid" ] || kill "$cblockd_pid" 2>/dev/null || true
        cblock=
    fi
else
    note "no cblock binary given: measuring Podman only"
fi

# --- Launch time ------------------------------------------------------------

"${podman[@]}" run --rm "${podman_run_flags[@]}" "$image" /bin/true ||
    die "'podman run --rm $image /bin/true' failed"

hyperfine_args=(-N --warmup "$warmup" --runs "$runs" --export-json "$out/launch.json"
    --export-markdown "$out/launch.md")
if [ -n "$cblock" ]; then
    cblockd_idle_kib=$(rss_kib "$cblockd_pid")
    hyperfine_args+=(-n "cblock launch" "$cblock launch --rm -n $image -- /bin/true")
fi
hyperfine_args+=(-n "podman run" "${podman[*]} run --rm ${podman_run_flags[*]} $image /bin/true")
hyperfine "${hyperfine_args[@]}" < /dev/null

echo
jq -r '(.results[] | select(.command == "podman run") | .median) as $podman
    | .results[] | "  \(.command): median \(.median * 1000 | round) ms, ratio to podman \(.median / $podman * 1000 | round / 1000)"' \
    "$out/launch.json"

# --- Memory -----------------------------------------------------------------

# Prints "COUNT MEAN_RSS_KIB MEAN_PSS_KIB MEAN_USS_KIB" for the given pids.
mean_memory() {
    local pid count=0 rss=0 pss=0 uss=0
    for pid in "$@"; do
        rss=$((rss + $(rss_kib "$pid")))
        pss=$((pss + $(pss_kib "$pid")))
        uss=$((uss + $(uss_kib "$pid")))
        count=$((count + 1))
    done
    [ "$count" -gt 0 ] || { echo "0 - - -"; return; }
    echo "$count $((rss / count)) $((pss / count)) $((uss / count))"
}

: > "$out/launch-memory.txt"
report() {
    echo "  $*" | tee -a "$out/launch-memory.txt"
}

echo
echo "memory (KiB):"
conmon_pids=()
for i in $(seq 1 "$containers"); do
    id=$("${podman[@]}" run -d --name "cblocks-bench-sleep-$i" "${podman_run_flags[@]}" \
        "$image" /bin/sleep 1000)
    conmon_pids+=("$("${podman[@]}" inspect --format '{{.State.ConmonPid}}' "$id")")
done
sleep 1
read -r count rss pss uss <<< "$(mean_memory "${conmon_pids[@]}")"
report "conmon per podman container ($count running): mean VmRSS $rss, mean Pss $pss, mean USS $uss"
"${podman[@]}" rm --all --force --time 0 >/dev/null

if [ -n "$cblock" ]; then
    report "cblockd idle after start and image import: VmRSS $cblockd_idle_kib"
    report "cblockd after the launch benchmark: VmRSS $(rss_kib "$cblockd_pid")"
    for i in $(seq 1 "$containers"); do
        "$cblock" launch --no-attach -n "$image" -- /bin/sleep 1000 < /dev/null > /dev/null
    done
    sleep 1
    read -r count rss pss uss <<< "$(mean_memory $(cblocks_supervisor_pids))"
    if [ "$count" = 0 ]; then
        note "no supervisor found: no process has '_supervisor' and $work/cblocks/data/ on its command line"
    else
        report "cblocks supervisor per container ($count found): mean VmRSS $rss, mean Pss $pss, mean USS $uss"
    fi
    stop_cblocks_instances
fi

# --- Many containers ----------------------------------------------------------

# With MANY set, MANY sleeping containers run at once: cblockd's memory and
# the time of `cblock instances` are measured with all of them running.
if [ -n "$cblock" ] && [ "${MANY:-0}" -gt 0 ]; then
    echo
    echo "with $MANY running containers:"
    for i in $(seq 1 "$MANY"); do
        "$cblock" launch --no-attach -n "$image" -- /bin/sleep 3600 < /dev/null > /dev/null ||
            die "launch $i of $MANY failed"
    done
    running=$("$cblock" instances -q | wc -l)
    report "cblockd with $running running containers: VmRSS $(rss_kib "$cblockd_pid")"
    hyperfine -N --warmup 2 --runs 20 --export-json "$out/launch-many.json" \
        -n "cblock instances ($running running)" "$cblock instances" < /dev/null
    jq -r '.results[] | "  \(.command): median \(.median * 1000 | round) ms"' \
        "$out/launch-many.json" | tee -a "$out/launch-memory.txt"
    stop_cblocks_instances
fi
echo
echo "load average at the end: $(cut -d' ' -f1-3 /proc/loadavg)"
echo "results: $out/launch.json, $out/launch.md, $out/launch-memory.txt"
