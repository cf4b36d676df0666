#!/usr/bin/env bash
# Compares cblock-runtime with crun and runc: `RUNTIME run` of one busybox
# bundle whose process is /bin/true, measured with `hyperfine -N` in one run,
# then the smallest memory limit at which that container still runs under
# cblock-runtime. Run as root from anywhere; writes bench/runtime-results.json
# and prints the median ratio against crun.
#
#   RUNS=200 bench/runtime.sh
#
# Debian's crun 1.8 rejects a hybrid cgroup layout whose hugetlb controller
# sits only in the cgroup2 mount, so the script mounts hugetlb as a v1
# hierarchy for the run and removes that mount again afterwards.
set -euo pipefail
cd "$(dirname "$0")/.."

runs=${RUNS:-100}
binary=${CBLOCK_BIN:-target/x86_64-unknown-linux-musl/release/cblock}
if [ ! -x "$binary" ]; then
    make build
fi
for tool in hyperfine crun runc busybox python3; do
    command -v "$tool" >/dev/null || { echo "bench: $tool is missing; install it" >&2; exit 1; }
done

work=$(mktemp -d /tmp/cblock-bench.XXXXXX)
hugetlb_mounted=
cleanup() {
    for runtime in cblock crun runc; do
        "$work/cblock-runtime" --root "$work/state-$runtime" delete --force "bench-$runtime" \
            >/dev/null 2>&1 || true
    done
    if [ -n "$hugetlb_mounted" ]; then
        rmdir /sys/fs/cgroup/hugetlb/*/ 2>/dev/null || true
        umount /sys/fs/cgroup/hugetlb
        rmdir /sys/fs/cgroup/hugetlb 2>/dev/null || true
    fi
    rm -rf "$work"
}
trap cleanup EXIT

# The bundle: busybox with one link per applet, and the example
# configuration of `cblock-runtime spec` running /bin/true without a
# terminal.
rootfs=$work/bundle/rootfs
mkdir -p "$rootfs/bin"
cp "$(command -v busybox)" "$rootfs/bin/busybox"
for applet in $(busybox --list); do
    [ "$applet" = busybox ] || ln -s busybox "$rootfs/bin/$applet"
done
ln -s "$(realpath "$binary")" "$work/cblock-runtime"
(cd "$work/bundle" && "$work/cblock-runtime" spec)
python3 - "$work/bundle/config.json" <<'PY'
import json, sys
path = sys.argv[1]
config = json.load(open(path))
config["process"]["terminal"] = False
config["process"]["args"] = ["/bin/true"]
json.dump(config, open(path, "w"), indent=2)
PY

if [ -e /sys/fs/cgroup/unified ] && ! grep -q ' /sys/fs/cgroup/hugetlb ' /proc/self/mountinfo; then
    mkdir -p /sys/fs/cgroup/hugetlb
    if ! mount -t cgroup -o hugetlb cgroup /sys/fs/cgroup/hugetlb; then
        rmdir /sys/fs/cgroup/hugetlb
        echo "bench: hugetlb cannot move to a v1 hierarchy while cgroups in" \
            "/sys/fs/cgroup/unified use it; remove those cgroups and retry" >&2
        exit 1
    fi
    hugetlb_mounted=1
fi

hyperfine -N --warmup 10 --runs "$runs" --export-json "$work/hyperfine.json" \
    -n cblock-runtime "$work/cblock-runtime --root $work/state-cblock run --bundle $work/bundle bench-cblock" \
    -n crun "crun --root $work/state-crun run --bundle $work/bundle bench-crun" \
    -n runc "runc --root $work/state-runc run --bundle $work/bundle bench-runc"

# The smallest memory limit, in steps of 256 KiB, at which /bin/true still
# exits 0 under cblock-runtime, found by bisection between 256 KiB and 64 MiB.
runs_with_limit() {
    python3 - "$work/bundle/config.json" "$1" <<'PY'
import json, sys
path, limit = sys.argv[1], int(sys.argv[2])
config = json.load(open(path))
resources = config["linux"].setdefault("resources", {})
resources["memory"] = {"limit": limit, "swap": limit}
json.dump(config, open(path, "w"), indent=2)
PY
    "$work/cblock-runtime" --root "$work/state-cblock" run --bundle "$work/bundle" bench-cblock \
        >/dev/null 2>&1
}
step=262144
low=1
high=256
if ! runs_with_limit $((high * step)); then
    echo "bench: the container fails even with a 64 MiB limit" >&2
    exit 1
fi
while [ $((high - low)) -gt 0 ]; do
    middle=$(((low + high) / 2))
    if runs_with_limit $((middle * step)); then high=$middle; else low=$((middle + 1)); fi
done
smallest=$((high * step))

python3 - "$work/hyperfine.json" "$smallest" "$runs" <<'PY' | tee bench/runtime-results.json
import json, sys
results = {r["command"]: r for r in json.load(open(sys.argv[1]))["results"]}
median = {name: r["median"] for name, r in results.items()}
print(json.dumps({
    "runs": int(sys.argv[3]),
    "median_seconds": median,
    "mean_seconds": {name: r["mean"] for name, r in results.items()},
    "ratio_to_crun": median["cblock-runtime"] / median["crun"],
    "ratio_to_runc": median["cblock-runtime"] / median["runc"],
    "smallest_memory_limit_bytes": int(sys.argv[2]),
}, indent=2))
PY
