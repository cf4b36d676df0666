#!/usr/bin/env bash
# Compares the OCI runtimes on one container start. `hyperfine -N` times
# `cblock-runtime run`, `crun run` and `runc run` of the same busybox
# bundle running /bin/true, all in one invocation. A bisection in 4 KiB
# steps then finds, for each runtime, the smallest memory limit
# (linux.resources.memory.limit) at which the container still runs.
#
# Usage (as root):
#   bench/runtime.sh [CBLOCK_BINARY]
#
#   CBLOCK_BINARY  the cblock binary or a cblock-runtime link to it; without
#                  it, or when `cblock-runtime run` fails on the bundle, only
#                  crun and runc are measured
#
# Settings (environment): RUNS (timed runs per runtime, default 200),
# WARMUP (untimed runs first, default 10), BENCH_OUT (result directory,
# default /var/tmp/cblocks-bench).
#
# Each runtime keeps its state under its own --root in a temporary
# directory. `run` without --detach deletes the container when /bin/true
# exits, so every timed run creates and deletes a container under the same
# id. On a hybrid cgroup layout whose cgroup2 mount contains hugetlb, hugetlb is
# mounted as a v1 hierarchy for the whole run, because crun 1.8 rejects that
# layout otherwise, and removed again on exit. When cgroup2 uses hugetlb and
# the kernel refuses that mount, the script runs in a private mount
# namespace without the cgroup2 mount instead.
set -eu

prog=bench/runtime
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
require_command crun crun
require_command runc runc
require_command jq jq

prepare_cgroup_layout "$here/runtime.sh" "$@"
trap hugetlb_v1_release EXIT

runs=${RUNS:-200}
warmup=${WARMUP:-10}
out=${BENCH_OUT:-/var/tmp/cblocks-bench}
mkdir -p "$out"
{
    describe_machine
    echo "cgroups: $(describe_cgroup_layout)"
} | tee "$out/runtime-machine.txt"

work=$(mktemp -d /var/tmp/cblocks-bench-runtime.XXXXXX)
chmod 755 "$work"
bundle=$work/bundle
id=cblocks-bench-$$

# Runtime name -> command (path plus --root). Filled below.
declare -A runtime_cmd=()

# Every runtime call runs under `timeout`, which also puts it in a process
# group of its own, so a runtime that hangs or signals its own group cannot
# take the script with it.
runtime_call() {
    local name=$1
    shift
    timeout -k 5 60 ${runtime_cmd[$name]} "$@"
}

cleanup() {
    local name dir dirs pid
    for name in "${!runtime_cmd[@]}"; do
        runtime_call "$name" delete --force "$id" >/dev/null 2>&1 || true
        runtime_call "$name" delete --force "$id-mem" >/dev/null 2>&1 || true
    done
    # A runtime that failed midway can leave the container's cgroups, and
    # processes in them, behind. The cgroups are named after this run's
    # container ids, so whatever is in them was started by this run.
    dirs=$(find /sys/fs/cgroup -maxdepth 5 -type d \( -name "$id" -o -name "$id-mem" \) 2>/dev/null |
        while read -r dir; do
            [ "$(stat -f -c %T "$dir")" = tmpfs ] || echo "$dir"
        done)
    for dir in $dirs; do
        for pid in $(cat "$dir/cgroup.procs" 2>/dev/null); do
            kill -KILL "$pid" 2>/dev/null || true
        done
    done
    [ -z "$dirs" ] || sleep 0.5
    for dir in $dirs; do
        rmdir "$dir" 2>/dev/null || note "cgroup $dir is still in use: remove it once its processes are gone"
    done
    unmount_below "$work"
    rm -rf --one-file-system "$work"
    hugetlb_v1_release
}
trap cleanup EXIT
trap 'exit 130' INT TERM

make_busybox_bundle "$bundle" /bin/true

add_runtime() {
    local name=$1 path=$2
    mkdir -p "$work/state/$name"
    runtime_cmd[$name]="$path --root $work/state/$name"
}

add_runtime crun "$(command -v crun)"
add_runtime runc "$(command -v runc)"

# The multi-call binary picks its role from its name, so cblock-runtime is
# a link to it. The link also keeps spaces out of the command lines, which
# are split on spaces.
if [ -n "${1:-}" ]; then
    [ -x "$1" ] || die "cblock binary $1 is not an executable file: pass the path of cblock or cblock-runtime"
    mkdir -p "$work/bin"
    ln -s "$(realpath "$1")" "$work/bin/cblock-runtime"
    add_runtime cblock-runtime "$work/bin/cblock-runtime"
else
    note "no cblock binary given: measuring crun and runc only"
fi

# Every runtime must run the bundle once before it is timed; one that fails
# is left out with the reason.
for name in cblock-runtime crun runc; do
    [ -n "${runtime_cmd[$name]:-}" ] || continue
    # The output goes to a file, not a pipe, because a process the runtime
    # left behind could keep a pipe open and block the script.
    status=0
    runtime_call "$name" run --bundle "$bundle" "$id" > "$work/probe.log" 2>&1 < /dev/null || status=$?
    if [ "$status" != 0 ]; then
        runtime_call "$name" delete --force "$id" >/dev/null 2>&1 || true
        reason=$(head -n 1 "$work/probe.log")
        [ "$status" != 124 ] || reason="timed out after 60 seconds"
        note "skipping $name: '$name run' of the busybox bundle failed: ${reason:-exit status $status, no output}"
        unset "runtime_cmd[$name]"
    fi
done

names=()
for name in cblock-runtime crun runc; do
    [ -n "${runtime_cmd[$name]:-}" ] && names+=("$name")
done
[ "${#names[@]}" -gt 0 ] || die "no runtime ran the busybox bundle: see the reasons above"
reference=crun
[ -n "${runtime_cmd[crun]:-}" ] || reference=runc
[ -n "${runtime_cmd[$reference]:-}" ] || reference=${names[0]}

hyperfine_args=(-N --warmup "$warmup" --runs "$runs" --export-json "$out/runtime.json"
    --export-markdown "$out/runtime.md")
for name in "${names[@]}"; do
    hyperfine_args+=(-n "$name" "${runtime_cmd[$name]} run --bundle $bundle $id")
done
hyperfine "${hyperfine_args[@]}"

echo
echo "median time relative to $reference (goal for cblock-runtime: at most 0.8 of crun):"
jq -r --arg reference "$reference" '(.results[] | select(.command == $reference) | .median) as $base
    | .results[] | "  \(.command): median \(.median * 1000 * 100 | round / 100) ms, ratio \(.median / $base * 1000 | round / 1000)"' \
    "$out/runtime.json"

# Runs the bundle once with memory limit BYTES; true when it exits 0.
runs_with_memory_limit() {
    local name=$1 bytes=$2
    jq --argjson limit "$bytes" --arg root "$bundle/rootfs" \
        '.root.path = $root | .linux.resources.memory = {limit: $limit}' \
        "$bundle/config.json" > "$work/memory/config.json"
    if runtime_call "$name" run --bundle "$work/memory" "$id-mem" > /dev/null 2>&1 < /dev/null; then
        return 0
    fi
    runtime_call "$name" delete --force "$id-mem" >/dev/null 2>&1 || true
    return 1
}

# Prints the smallest limit in KiB at which the container runs, found by
# bisection between one page and 64 MiB. Near the edge a run can fail at
# random, so the result must pass three more runs, and it grows by 1/16
# until it does.
smallest_memory_limit() {
    local name=$1 page=4096 low=1 high=16384 mid tries=0 passes
    runs_with_memory_limit "$name" $((high * page)) || { echo "more than 65536"; return; }
    if runs_with_memory_limit "$name" $((low * page)); then
        echo "at most 4"
        return
    fi
    while [ $((high - low)) -gt 1 ]; do
        mid=$(((low + high) / 2))
        if runs_with_memory_limit "$name" $((mid * page)); then high=$mid; else low=$mid; fi
    done
    while [ "$tries" -lt 5 ]; do
        passes=0
        for _ in 1 2 3; do
            runs_with_memory_limit "$name" $((high * page)) && passes=$((passes + 1))
        done
        [ "$passes" = 3 ] && break
        high=$((high + high / 16 + 1))
        tries=$((tries + 1))
    done
    if [ "$passes" != 3 ]; then
        echo "unstable: runs still fail at random with $((high * page / 1024))"
        return
    fi
    echo $((high * page / 1024))
}

echo
echo "smallest memory limit at which /bin/true still runs:"
mkdir -p "$work/memory"
: > "$out/runtime-memory.txt"
for name in "${names[@]}"; do
    limit=$(smallest_memory_limit "$name")
    printf '  %s: %s KiB\n' "$name" "$limit" | tee -a "$out/runtime-memory.txt"
done
echo
echo "load average at the end: $(cut -d' ' -f1-3 /proc/loadavg)"
echo "results: $out/runtime.json, $out/runtime.md, $out/runtime-memory.txt"
