#!/usr/bin/env bash
# Compares `cblock build` with `buildah bud` (Debian 12's buildah) on the
# same Dockerfile and the same busybox base root file system, timed by
# `hyperfine -N` in one invocation:
#   - cold: a build that uses no cached step (--no-cache);
#   - no-change rebuild: the same build again with the cache of the
#     previous run, nothing in the context changed.
#
# Usage (as root):
#   bench/build.sh [CBLOCK_BINARY]
#
#   CBLOCK_BINARY  the cblock binary; the script starts a private cblockd
#                  from it on a temporary socket and data directory. Without
#                  it, or when that daemon or the base import fails, only
#                  buildah is measured.
#
# Settings (environment): RUNS (timed runs per command, default 20), BENCH_OUT
# (result directory, default /var/tmp/cblocks-bench).
#
# The base image comes from an archive of Debian's busybox-static made by
# the script: buildah imports it into a private store (--root, --runroot)
# in a temporary directory, cblocks builds it with `FROM scratch` and
# `ADD`. Both resolve the short name in `FROM cblocks-bench-base` to their
# local image and pull nothing; builds run with --network none. buildah runs
# its steps with runc, because Debian 12's crun rejects this machine's hybrid
# cgroup layout, and with nofile and nproc limits under the hard limits
# here. Everything started is stopped and removed on exit, also on failure.
set -eu

prog=bench/build
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
require_command buildah buildah
require_command runc runc
require_command jq jq

runs=${RUNS:-20}
out=${BENCH_OUT:-/var/tmp/cblocks-bench}
mkdir -p "$out"
describe_machine | tee "$out/build-machine.txt"
base=cblocks-bench-base
app=cblocks-bench-app

work=$(mktemp -d /var/tmp/cblocks-bench-build.XXXXXX)
chmod 755 "$work"
buildah=(buildah --root "$work/buildah/root" --runroot "$work/buildah/run")
buildah_bud_flags=(--layers --pull-never --network none --runtime "$(command -v runc)"
    --ulimit nofile=20000:20000 --ulimit nproc=32768:32768 --quiet)
cblockd_pid=
cblock=

cleanup() {
    if [ -n "$cblockd_pid" ]; then
        kill "$cblockd_pid" 2>/dev/null || true
        wait "$cblockd_pid" 2>/dev/null || true
    fi
    if [ -d "$work/buildah" ]; then
        "${buildah[@]}" rm --all >/dev/null 2>&1 || true
        "${buildah[@]}" rmi --all --force >/dev/null 2>&1 || true
    fi
    unmount_below "$work"
    rm -rf --one-file-system "$work"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

make_busybox_rootfs "$work"
tar -C "$work/rootfs" -cf "$work/busybox-rootfs.tar" .

# The build context: one file to COPY and a Dockerfile with the usual mix
# of configuration, COPY and RUN steps. The same file serves both tools.
mkdir -p "$work/context"
seq 1 10000 > "$work/context/data.txt"
cat > "$work/context/Dockerfile" <<'EOF'
FROM cblocks-bench-base
ENV GREETING=hello
WORKDIR /app
COPY data.txt /app/data.txt
RUN mkdir -p /app/out && cp /app/data.txt /app/out/copy.txt
RUN echo "$GREETING" > /app/out/greeting.txt
RUN wc -l /app/data.txt > /app/out/count.txt
CMD ["/bin/cat", "/app/out/greeting.txt"]
EOF

container=$("${buildah[@]}" from scratch)
"${buildah[@]}" add "$container" "$work/busybox-rootfs.tar" / >/dev/null
"${buildah[@]}" commit --quiet "$container" "localhost/$base:latest" >/dev/null
"${buildah[@]}" rm "$container" >/dev/null

# --- The cblocks half -------------------------------------------------------

start_cblocks() {
    mkdir -p "$work/base-context"
    start_private_cblockd "$1" || return 1

    cp "$work/busybox-rootfs.tar" "$work/base-context/"
    printf 'FROM scratch\nADD busybox-rootfs.tar /\n' > "$work/base-context/Dockerfile"
    if ! "$cblock" build -q -n "$base" -f "$work/base-context/Dockerfile" "$work/base-context" > "$work/base.log" 2>&1; then
        note "'cblock build -n $base' of the busybox archive failed: $(tail -n 1 "$work/base.log")"
        return 1
    fi
    if ! "$cblock" build -q --network none -n "$app" -f "$work/context/Dockerfile" "$work/context" > "$work/app.log" 2>&1; then
        note "'cblock build -n $app' failed: $(tail -n 1 "$work/app.log")"
        return 1
    fi
}

if [ -n "${1:-}" ]; then
    if ! start_cblocks "$1"; then
        note "skipping cblocks: measuring buildah only"
        cblock=
    fi
else
    note "no cblock binary given: measuring buildah only"
fi

# --- Build times ------------------------------------------------------------

"${buildah[@]}" bud "${buildah_bud_flags[@]}" -t "$app" "$work/context" >/dev/null ||
    die "'buildah bud' of $work/context/Dockerfile failed"

bud="${buildah[*]} bud ${buildah_bud_flags[*]}"
hyperfine_args=(-N --runs "$runs" --warmup 1 --export-json "$out/build.json"
    --export-markdown "$out/build.md")
if [ -n "$cblock" ]; then
    hyperfine_args+=(-n "cblock build, cold" "$cblock build -q --no-cache --network none -n $app -f $work/context/Dockerfile $work/context"
        -n "cblock build, no change" "$cblock build -q --network none -n $app -f $work/context/Dockerfile $work/context")
fi
hyperfine_args+=(-n "buildah bud, cold" "$bud --no-cache -t $app $work/context"
    -n "buildah bud, no change" "$bud -t $app $work/context")
hyperfine "${hyperfine_args[@]}" < /dev/null

echo
jq -r '(.results[] | select(.command == "buildah bud, cold") | .median) as $cold
    | .results[] | "  \(.command): median \(.median * 1000 | round) ms, ratio to buildah cold \(.median / $cold * 1000 | round / 1000)"' \
    "$out/build.json"
if [ -n "$cblock" ]; then
    jq -r '(.results[] | select(.command == "cblock build, cold") | .median) as $cold
        | .results[] | select(.command == "cblock build, no change")
        | "  cblock no-change rebuild against its cold build: \(.median / $cold * 1000 | round / 1000) (goal: at most 0.05)"' \
        "$out/build.json"
fi
echo
echo "load average at the end: $(cut -d' ' -f1-3 /proc/loadavg)"
echo "results: $out/build.json, $out/build.md"
