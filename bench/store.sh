#!/usr/bin/env bash
# Layer commit and extraction throughput of the image store, against
# `tar` piped through `sha256sum` on the same tree. Run as root from the
# project root:  bash bench/store.sh [TREE]
#
# TREE defaults to a copy of /usr/bin and /usr/share/doc. Each number is the
# best of three runs, with the page cache warm. Prints a Markdown table for
# docs/BENCHMARKS.md.
set -euo pipefail
cd "$(dirname "$0")/.."

work=$(mktemp -d /tmp/cblocks-bench.XXXXXX)
trap 'rm -rf "$work"' EXIT

tree=${1:-}
if [ -z "$tree" ]; then
    tree=$work/tree
    mkdir -p "$tree"
    cp -a /usr/bin /usr/share/doc "$tree/"
fi

cargo test --release --quiet --test store --no-run >/dev/null 2>&1
best() { sort -n | head -1; }

bytes=$(tar -C "$tree" -cf - . | wc -c)
tar_c=$(for _ in 1 2 3; do
    /usr/bin/time -f %e sh -c "tar -C '$tree' -cf - . | sha256sum >/dev/null" 2>&1 | tail -1
done | best)

diff=() commit=() extract=()
for _ in 1 2 3; do
    out=$(CBLOCKS_BENCH_TREE=$tree CBLOCKS_BENCH_KEEP_TAR=$work/layer.tar \
        cargo test --release --quiet --test store bench_harness -- --ignored --nocapture 2>/dev/null)
    diff+=("$(awk '$1 == "diff" {print $2}' <<<"$out")")
    commit+=("$(awk '$1 == "commit" {print $2}' <<<"$out")")
    extract+=("$(awk '$1 == "extract" {print $2}' <<<"$out")")
done
diff=$(printf '%s\n' "${diff[@]}" | best)
commit=$(printf '%s\n' "${commit[@]}" | best)
extract=$(printf '%s\n' "${extract[@]}" | best)

tar_x=$(for _ in 1 2 3; do
    rm -rf "$work/x" && mkdir "$work/x"
    /usr/bin/time -f %e bash -c "tee >(sha256sum >/dev/null) <'$work/layer.tar' | tar -C '$work/x' -xf -" 2>&1 | tail -1
done | best)

mbps() { awk -v b="$bytes" -v s="$1" 'BEGIN { printf "%.0f", b / 1e6 / s }'; }
ratio() { awk -v a="$1" -v b="$2" 'BEGIN { printf "%.2f", b / a }'; }

echo "tree: $tree, $((bytes / 1000000)) MB of tar stream"
echo
echo "| step | cblocks s | MB/s | tar + sha256sum s | MB/s | cblocks / tar throughput |"
echo "| --- | --- | --- | --- | --- | --- |"
echo "| tar stream + diff ID | $diff | $(mbps "$diff") | $tar_c | $(mbps "$tar_c") | $(ratio "$diff" "$tar_c") |"
echo "| full commit (tar, diff ID, gzip, fsync, unpack into overlay layer) | $commit | $(mbps "$commit") | $tar_c | $(mbps "$tar_c") | $(ratio "$commit" "$tar_c") |"
echo "| extraction | $extract | $(mbps "$extract") | $tar_x | $(mbps "$tar_x") | $(ratio "$extract" "$tar_x") |"
