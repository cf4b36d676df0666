# Shared helpers (bash) for the peer comparisons in bench/ and tests/conformance/.
# Sourced by those scripts, never run on its own. Callers set `prog` (the
# script's name for messages) before sourcing.

die() {
    printf '%s: %s\n' "${prog:-bench}" "$*" >&2
    exit 1
}

note() {
    printf '%s: %s\n' "${prog:-bench}" "$*" >&2
}

require_root() {
    [ "$(id -u)" = 0 ] || die "must run as root because it creates containers, cgroups and mounts"
}

# require_command COMMAND DEBIAN_PACKAGE
require_command() {
    command -v "$1" >/dev/null 2>&1 ||
        die "$1 not found: install it with 'apt-get install $2'"
}

# Prints the resident set size of process PID in KiB (VmRSS).
rss_kib() {
    awk '/^VmRSS:/ { print $2 }' "/proc/$1/status"
}

# Prints the proportional set size of process PID in KiB, which shares the
# pages of libraries between the processes that map them.
pss_kib() {
    awk '/^Pss:/ { print $2 }' "/proc/$1/smaps_rollup"
}

# Prints the unique set size of process PID in KiB: the pages no other
# process maps (Private_Clean plus Private_Dirty), which ending it frees.
uss_kib() {
    awk '/^Private_(Clean|Dirty):/ { kib += $2 } END { print kib + 0 }' "/proc/$1/smaps_rollup"
}

# Unmounts every mount point at or below DIR, deepest first, so that a
# following `rm -rf DIR` never walks into a container's root file system.
unmount_below() {
    local dir
    dir=$(realpath "$1")
    awk -v d="$dir" '$5 == d || index($5, d "/") == 1 { print $5 }' /proc/self/mountinfo |
        sort -r | while read -r mnt; do
            umount -l "$mnt" 2>/dev/null || true
        done
}

# Writes a root file system with Debian's busybox-static to DIR/rootfs: the
# static binary and one symbolic link per applet, so `/bin/true`, `/bin/sh`
# and `/bin/sleep` exist.
make_busybox_rootfs() {
    local busybox_path applet
    require_command busybox busybox-static
    busybox_path=$(command -v busybox)
    file -L "$busybox_path" 2>/dev/null | grep -q 'statically linked' ||
        die "$busybox_path is not statically linked: install it with 'apt-get install busybox-static'"

    mkdir -p "$1/rootfs/bin" "$1/rootfs/proc" "$1/rootfs/sys" "$1/rootfs/dev" \
        "$1/rootfs/tmp" "$1/rootfs/etc"
    cp "$busybox_path" "$1/rootfs/bin/busybox"
    for applet in $("$1/rootfs/bin/busybox" --list); do
        [ -e "$1/rootfs/bin/$applet" ] || ln -s busybox "$1/rootfs/bin/$applet"
    done
    printf 'root:x:0:0:root:/root:/bin/sh\n' > "$1/rootfs/etc/passwd"
    printf 'root:x:0:\n' > "$1/rootfs/etc/group"
}

# Writes an OCI bundle in DIR that runs ARGS... without a terminal: the
# busybox root file system and `runc spec`'s default config.json.
make_busybox_bundle() {
    local bundle=$1 args_json
    shift
    require_command runc runc
    require_command jq jq
    make_busybox_rootfs "$bundle"
    rm -f "$bundle/config.json"
    runc spec --bundle "$bundle"
    args_json=$(jq -cn '$ARGS.positional' --args "$@")
    jq --argjson args "$args_json" '.process.args = $args | .process.terminal = false' \
        "$bundle/config.json" > "$bundle/config.json.new"
    mv "$bundle/config.json.new" "$bundle/config.json"
}

# hugetlb as a cgroup v1 hierarchy. On a hybrid layout whose cgroup2 mount
# contains only hugetlb, crun 1.8 (Debian 12) rejects every container with
# "cgroups in hybrid mode not supported, drop all controllers from
# cgroupv2". Mounting hugetlb as a v1 hierarchy takes it out of cgroup2, and
# unmounting gives it back.
hugetlb_v1_dir=/sys/fs/cgroup/hugetlb
hugetlb_v1_mounted=
hugetlb_v1_made_dir=

# True when hugetlb is a controller of the cgroup2 mount next to v1
# hierarchies, the layout crun rejects.
hugetlb_in_hybrid_cgroup2() {
    [ -f /sys/fs/cgroup/unified/cgroup.controllers ] &&
        grep -qw hugetlb /sys/fs/cgroup/unified/cgroup.controllers
}

# Mounts hugetlb as a v1 hierarchy when the layout needs it, and remembers
# that this script mounted it, so hugetlb_v1_release touches only that.
# Returns false with a note when the kernel refuses, which it does while
# any cgroup2 cgroup has hugetlb in its cgroup.subtree_control.
hugetlb_v1_mount() {
    hugetlb_in_hybrid_cgroup2 || return 0
    if [ ! -d "$hugetlb_v1_dir" ]; then
        mkdir "$hugetlb_v1_dir"
        hugetlb_v1_made_dir=1
    fi
    if ! mount -t cgroup -o hugetlb cgroup "$hugetlb_v1_dir" 2>/dev/null; then
        [ -z "$hugetlb_v1_made_dir" ] || rmdir "$hugetlb_v1_dir"
        hugetlb_v1_made_dir=
        note "mounting hugetlb as a cgroup v1 hierarchy on $hugetlb_v1_dir failed because cgroup2 uses it (cgroup.subtree_control under /sys/fs/cgroup/unified lists hugetlb)"
        return 1
    fi
    hugetlb_v1_mounted=1
    note "mounted hugetlb as a cgroup v1 hierarchy on $hugetlb_v1_dir (removed again on exit)"
}

# Prepares a cgroup layout that crun 1.8 accepts, for the script SCRIPT
# called with ARGS. On a hybrid layout whose cgroup2 mount contains hugetlb it
# mounts hugetlb as a v1 hierarchy. When the kernel refuses that mount, it
# runs the script again in a private mount namespace without the cgroup2
# mount, where runtimes see a pure cgroup v1 layout without hugetlb. Nothing
# outside that namespace changes then.
prepare_cgroup_layout() {
    local script=$1
    shift
    if [ -n "${CBLOCKS_CGROUP2_HIDDEN:-}" ]; then
        umount /sys/fs/cgroup/unified ||
            die "unmounting /sys/fs/cgroup/unified in the private mount namespace failed: run with the layout as it is (HUGETLB_V1=no for the conformance run)"
        # Runtimes still write their cgroup directories there. An empty tmpfs
        # of this namespace takes them, so they vanish with the namespace
        # instead of staying on the host's /sys/fs/cgroup tmpfs, hidden under
        # its cgroup2 mount.
        mount -t tmpfs -o mode=755,size=1m cblocks-cgroup2-hidden /sys/fs/cgroup/unified ||
            die "mounting a tmpfs on /sys/fs/cgroup/unified in the private mount namespace failed"
        note "running in a private mount namespace without the cgroup2 mount: a pure cgroup v1 layout without hugetlb"
        return 0
    fi
    hugetlb_v1_mount && return 0

    require_command unshare util-linux
    note "running again in a private mount namespace without the cgroup2 mount instead"
    exec unshare --mount --propagation private env CBLOCKS_CGROUP2_HIDDEN=1 bash "$script" "$@"
}

# Describes the cgroup layout for the records: which hierarchy contains hugetlb.
describe_cgroup_layout() {
    if [ -n "${CBLOCKS_CGROUP2_HIDDEN:-}" ]; then
        echo "cgroup v1 only (cgroup2 hidden in a private mount namespace, no hugetlb)"
    elif [ -n "$hugetlb_v1_mounted" ]; then
        echo "hybrid, hugetlb mounted as a v1 hierarchy"
    elif hugetlb_in_hybrid_cgroup2; then
        echo "hybrid, hugetlb in cgroup2"
    else
        echo "as found"
    fi
}

# Prints the hierarchy id of hugetlb from /proc/cgroups: 0 means cgroup2.
hugetlb_hierarchy_id() {
    awk '$1 == "hugetlb" { print $2 }' /proc/cgroups
}

# Waits up to 10 seconds for the kernel to give hugetlb back to cgroup2.
hugetlb_wait_cgroup2() {
    local tries=0
    while [ "$(hugetlb_hierarchy_id)" != 0 ]; do
        tries=$((tries + 1))
        [ "$tries" -le 40 ] || return 1
        sleep 0.25
    done
}

# Removes the child cgroups of the mounted hugetlb hierarchy, deepest
# first. rmdir fails on a cgroup that still has processes, so only empty
# ones go. Containers started by others while the hierarchy was mounted
# leave their cgroups here too (Podman's libpod_parent), and any child keeps
# the hierarchy alive after the unmount.
hugetlb_v1_remove_children() {
    find "$hugetlb_v1_dir" -mindepth 1 -depth -type d -exec rmdir {} \; 2>/dev/null || true
}

# Unmounts hugetlb and removes the mount point if this script made it. The
# mount point is a directory on the /sys/fs/cgroup tmpfs, where a
# container manager may have written files while nothing was mounted.
hugetlb_v1_unmount() {
    hugetlb_v1_remove_children
    umount "$hugetlb_v1_dir" || note "unmounting $hugetlb_v1_dir failed: unmount it by hand"
    if [ -n "$hugetlb_v1_made_dir" ] && ! mountpoint -q "$hugetlb_v1_dir"; then
        rm -rf --one-file-system "$hugetlb_v1_dir"
    fi
}

# Unmounts what hugetlb_v1_mount mounted and waits until hugetlb is a
# cgroup2 controller again. The kernel destroys a v1 hierarchy shortly after
# its unmount, but only when it has no child cgroups left. A container's
# cgroup can still be dying at that moment, and then mounting the hierarchy
# again and unmounting it destroys it.
hugetlb_v1_release() {
    local attempt=0
    [ -n "$hugetlb_v1_mounted" ] || return 0
    hugetlb_v1_mounted=
    hugetlb_v1_unmount

    while ! hugetlb_wait_cgroup2 && [ "$attempt" -lt 3 ]; do
        attempt=$((attempt + 1))
        mkdir -p "$hugetlb_v1_dir"
        mount -t cgroup -o hugetlb cgroup "$hugetlb_v1_dir" 2>/dev/null || break
        hugetlb_v1_unmount
    done
    hugetlb_v1_made_dir=
    [ "$(hugetlb_hierarchy_id)" = 0 ] ||
        note "hugetlb is still a cgroup v1 hierarchy because a process in it is alive: mount it on $hugetlb_v1_dir, wait for its cgroups to empty, remove them and unmount it"
}

# Prints the machine a measurement ran on: CPU, cores, memory, kernel,
# Debian release and the load average, which other work on the machine
# raises and which then widens the spread of the times.
describe_machine() {
    printf 'machine: %s, %s cores, %s MiB, kernel %s, Debian %s, load average %s\n' \
        "$(awk -F': ' '/^model name/ { print $2; exit }' /proc/cpuinfo)" "$(nproc)" \
        "$(awk '/^MemTotal:/ { print int($2 / 1024) }' /proc/meminfo)" "$(uname -r)" \
        "$(cat /etc/debian_version 2>/dev/null || echo unknown)" "$(cut -d' ' -f1-3 /proc/loadavg)"
}

# Starts cblockd from the cblock binary BINARY on a socket and data
# directory below $work, and waits until it replies. Sets cblock (the
# client's path), cblockd_pid and CBLOCK_SOCKET, for the caller's cleanup
# and commands. Prints why and returns false when cblockd exits or does not
# answer within 10 seconds.
start_private_cblockd() {
    local tries=0 status real
    real=$(realpath "$1")
    mkdir -p "$work/bin" "$work/cblocks"
    ln -s "$real" "$work/bin/cblock"
    ln -s "$real" "$work/bin/cblockd"
    cblock=$work/bin/cblock
    export CBLOCK_SOCKET="$work/cblock.sock"

    "$work/bin/cblockd" -d "$work/cblocks/data" -U "$CBLOCK_SOCKET" > "$work/cblockd.log" 2>&1 &
    cblockd_pid=$!
    until "$cblock" instances >/dev/null 2>&1; do
        tries=$((tries + 1))
        if ! kill -0 "$cblockd_pid" 2>/dev/null; then
            status=0
            wait "$cblockd_pid" || status=$?
            note "cblockd exited with status $status: $(tail -n 1 "$work/cblockd.log")"
            cblockd_pid=
            return 1
        fi
        if [ "$tries" -gt 50 ]; then
            note "cblockd did not answer on $CBLOCK_SOCKET within 10 seconds: $(tail -n 1 "$work/cblockd.log")"
            return 1
        fi
        sleep 0.2
    done
}
