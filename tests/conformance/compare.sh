#!/usr/bin/env bash
# Runs the OCI runtime-tools validation suite against runc, crun and
# cblock-runtime one after the other, with run.sh, and prints the table for
# docs/CONFORMANCE.md from their summaries.
#
# Usage (as root):
#   RUNTIME_TOOLS_DIR=/var/tmp/runtime-tools tests/conformance/compare.sh [CBLOCK_RUNTIME] [OUTPUT_DIR]
#
#   CBLOCK_RUNTIME  cblock-runtime or the cblock binary; without it, only
#                   runc and crun run and the column reads "not yet measured"
#   OUTPUT_DIR      where the summaries and TAP logs go (default:
#                   ./conformance-results)
#
# The settings of run.sh (RUNTIME_TOOLS_DIR, GO, TEST_TIMEOUT, TESTS,
# HUGETLB_V1) apply to all three runs.
set -eu

here=$(cd "$(dirname "$0")" && pwd)
cblock_runtime=${1:-}
out=${2:-conformance-results}

case $cblock_runtime in -h | --help)
    sed -n '2,/^set -eu/p' "$0" | sed '$d; s/^# \{0,1\}//'
    exit 0
    ;;
esac

runc=$(command -v runc) || { echo "compare: runc not found: install it with 'apt-get install runc'" >&2; exit 1; }
crun=$(command -v crun) || { echo "compare: crun not found: install it with 'apt-get install crun'" >&2; exit 1; }

"$here/run.sh" "$runc" "$out/conformance-runc.txt"
"$here/run.sh" "$crun" "$out/conformance-crun.txt"
columns=("runc=$out/conformance-runc.txt" "crun=$out/conformance-crun.txt")
if [ -n "$cblock_runtime" ]; then
    "$here/run.sh" "$cblock_runtime" "$out/conformance-cblock-runtime.txt"
    columns+=("cblock-runtime=$out/conformance-cblock-runtime.txt")
else
    columns+=("cblock-runtime=")
fi

"$here/table.sh" "${columns[@]}" | tee "$out/table.md"
echo "table in $out/table.md" >&2
