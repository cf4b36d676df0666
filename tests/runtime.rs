//! The container runtime from the outside: isolation properties checked
//! from inside real containers, the OCI lifecycle through the
//! `cblock runtime` command line, and bad bundles that must fail cleanly.
//!
//! Runs as root. Each test builds its own bundle in a temporary directory,
//! with a busybox root file system from Debian's busybox-static package and
//! its own state root. A guard deletes its containers and the directory even
//! when the test fails.

use std::collections::BTreeSet;
use std::fs;
use std::io::{IoSliceMut, Read};
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::os::unix::net::UnixListener;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::sync::atomic::{AtomicU32, Ordering};
use std::thread;
use std::time::{Duration, Instant};

use cblocks::oci::runtime_spec::{
    Capabilities, Hook, Hooks, IdMapping, Mount, Namespace, Seccomp, SeccompSyscall, Spec,
};
use cblocks::runtime::{default_spec, write_config, NetworkMode, Settings};

const BUSYBOX: &str = "/bin/busybox";
const CBLOCK: &str = env!("CARGO_BIN_EXE_cblock");

static NEXT: AtomicU32 = AtomicU32::new(0);

/// A bundle with a busybox root file system and a private state root.
/// Dropping it deletes every container created under its root and removes
/// the directory.
struct Bundle {
    dir: PathBuf,
    ids: Vec<String>,
}

impl Bundle {
    fn new(name: &str) -> Bundle {
        assert!(
            Path::new(BUSYBOX).exists(),
            "{BUSYBOX} is missing; install Debian's busybox-static package"
        );
        let n = NEXT.fetch_add(1, Ordering::SeqCst);
        let dir = std::env::temp_dir().join(format!("cblock-rt-{name}-{}-{n}", std::process::id()));
        let _ = fs::remove_dir_all(&dir);
        let bin = dir.join("bundle/rootfs/bin");
        fs::create_dir_all(&bin).unwrap();
        fs::create_dir_all(dir.join("root")).unwrap();
        fs::copy(BUSYBOX, bin.join("busybox")).unwrap();
        let list = Command::new(BUSYBOX).arg("--list").output().unwrap();
        for applet in String::from_utf8_lossy(&list.stdout).lines() {
            if applet != "busybox" && !applet.is_empty() {
                std::os::unix::fs::symlink("busybox", bin.join(applet)).unwrap();
            }
        }
        for extra in ["tmp", "etc", "mnt"] {
            fs::create_dir_all(dir.join("bundle/rootfs").join(extra)).unwrap();
        }
        Bundle {
            dir,
            ids: Vec::new(),
        }
    }

    fn path(&self) -> PathBuf {
        self.dir.join("bundle")
    }

    fn root(&self) -> PathBuf {
        self.dir.join("root")
    }

    /// Returns a fresh container id and remembers it for cleanup.
    fn id(&mut self, name: &str) -> String {
        let id = format!(
            "{name}-{}-{}",
            std::process::id(),
            NEXT.fetch_add(1, Ordering::SeqCst)
        );
        self.ids.push(id.clone());
        id
    }

    /// Returns the default configuration of cblocks containers, running
    /// `script` with sh in a cgroup path private to this test.
    fn spec(&self, id_hint: &str, script: &str) -> Spec {
        let mut spec = default_spec(&Settings {
            args: vec!["sh".into(), "-c".into(), script.into()],
            hostname: Some("box".into()),
            ..Default::default()
        });
        let linux = spec.linux.as_mut().unwrap();
        linux.cgroups_path = Some(format!("/cblock-test/{id_hint}"));
        spec
    }

    fn write(&self, spec: &Spec) {
        write_config(&self.path(), spec).unwrap();
    }

    /// Runs `cblock runtime --root ROOT ARGS...`.
    fn cli(&self, args: &[&str]) -> Output {
        let root = self.root();
        let mut full = vec!["runtime", "--root", root.to_str().unwrap()];
        full.extend_from_slice(args);
        // Files rather than pipes: a created container keeps the runtime's
        // standard streams open, and a pipe would never see its end.
        let n = NEXT.fetch_add(1, Ordering::SeqCst);
        let stdout_path = self.dir.join(format!("stdout-{n}"));
        let stderr_path = self.dir.join(format!("stderr-{n}"));
        let status = Command::new(CBLOCK)
            .args(&full)
            .stdin(Stdio::null())
            .stdout(fs::File::create(&stdout_path).unwrap())
            .stderr(fs::File::create(&stderr_path).unwrap())
            .status()
            .expect("running cblock runtime");
        Output {
            status,
            stdout: fs::read(&stdout_path).unwrap_or_default(),
            stderr: fs::read(&stderr_path).unwrap_or_default(),
        }
    }

    /// Runs the container to completion and returns its output.
    fn run(&mut self, name: &str, spec: &Spec) -> Output {
        self.write(spec);
        let id = self.id(name);
        let bundle = self.path();
        self.cli(&["run", "--bundle", bundle.to_str().unwrap(), &id])
    }

    /// Starts the container in the background and returns its id.
    fn run_detached(&mut self, name: &str, spec: &Spec) -> String {
        self.write(spec);
        let id = self.id(name);
        let bundle = self.path();
        let out = self.cli(&["run", "--detach", "--bundle", bundle.to_str().unwrap(), &id]);
        assert!(
            out.status.success(),
            "run --detach failed: {}",
            text(&out.stderr)
        );
        id
    }

    fn state(&self, id: &str) -> serde_json::Value {
        let out = self.cli(&["state", id]);
        assert!(out.status.success(), "state failed: {}", text(&out.stderr));
        serde_json::from_slice(&out.stdout).unwrap()
    }
}

impl Drop for Bundle {
    fn drop(&mut self) {
        for id in self.ids.clone() {
            let _ = self.cli(&["delete", "--force", &id]);
        }
        let _ = fs::remove_dir_all(&self.dir);
        // The parent cgroup of the tests' containers goes with the last
        // test; while others still use it, the kernel rejects the rmdir.
        if let Ok(hierarchies) = fs::read_dir("/sys/fs/cgroup") {
            for hierarchy in hierarchies.flatten() {
                let _ = fs::remove_dir(hierarchy.path().join("cblock-test"));
            }
        }
        let _ = fs::remove_dir("/sys/fs/cgroup/cblock-test");
    }
}

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

fn stdout_of(out: &Output) -> String {
    assert!(
        out.status.success(),
        "container failed with {}: stdout {:?} stderr {:?}",
        out.status,
        text(&out.stdout),
        text(&out.stderr)
    );
    text(&out.stdout)
}

/// Directory of a test cgroup in the hierarchy of `controller`.
fn cgroup_dir(controller: &str, path: &str) -> PathBuf {
    let base = Path::new("/sys/fs/cgroup");
    if base.join("cgroup.controllers").exists() {
        base.join(path.trim_start_matches('/'))
    } else {
        base.join(controller).join(path.trim_start_matches('/'))
    }
}

/// Binds the host's C library into the root file system, for the
/// dynamically linked test build of cblock.
fn bind_host_libraries(spec: &mut Spec) {
    for (source, destination) in [
        ("/usr/lib/x86_64-linux-gnu", "/lib/x86_64-linux-gnu"),
        ("/usr/lib64", "/lib64"),
    ] {
        spec.mounts.push(Mount {
            destination: destination.into(),
            kind: Some("bind".into()),
            source: Some(source.into()),
            options: vec!["rbind".into(), "ro".into()],
            ..Default::default()
        });
    }
}

fn wait_until(deadline: Duration, mut done: impl FnMut() -> bool) -> bool {
    let end = Instant::now() + deadline;
    while Instant::now() < end {
        if done() {
            return true;
        }
        thread::sleep(Duration::from_millis(50));
    }
    done()
}

/// Returns pid, state letter and name of the children of `parent`. Zombies
/// have left their cgroup already, so they are found by parent pid.
fn children_of(parent: i64) -> Vec<(i32, char, String)> {
    let mut found = Vec::new();
    for entry in fs::read_dir("/proc").unwrap().flatten() {
        let Ok(pid) = entry.file_name().to_string_lossy().parse::<i32>() else {
            continue;
        };
        let Ok(stat) = fs::read_to_string(format!("/proc/{pid}/stat")) else {
            continue;
        };
        let (Some(open), Some(close)) = (stat.find('('), stat.rfind(')')) else {
            continue;
        };
        let fields: Vec<&str> = stat[close + 2..].split(' ').collect();
        if fields.get(1).and_then(|p| p.parse::<i64>().ok()) == Some(parent) {
            let state = fields[0].chars().next().unwrap_or('?');
            found.push((pid, state, stat[open + 1..close].to_string()));
        }
    }
    found
}

#[test]
fn pid_namespace_hides_host_processes() {
    let mut bundle = Bundle::new("pidns");
    let host_pid = std::process::id();
    let script = format!(
        "echo self=$$; ls /proc | grep -c '^[0-9]*$'; test -d /proc/{host_pid} && echo host-visible || echo host-hidden"
    );
    let spec = bundle.spec("pidns", &script);
    let out = stdout_of(&bundle.run("pidns", &spec));
    assert!(out.contains("self=1\n"), "shell is not PID 1: {out}");
    assert!(
        !out.contains("host-visible"),
        "host pid {host_pid} visible: {out}"
    );
    let count: usize = out.lines().nth(1).unwrap().trim().parse().unwrap();
    assert!(
        count <= 4,
        "{count} processes visible in the container: {out}"
    );
}

#[test]
fn capabilities_as_configured() {
    let mut bundle = Bundle::new("caps");
    let mut spec = bundle.spec("caps", "grep ^Cap /proc/self/status");
    let names: Vec<String> = vec!["CAP_CHOWN".into(), "CAP_KILL".into()];
    spec.process.as_mut().unwrap().capabilities = Some(Capabilities {
        bounding: names.clone(),
        effective: names.clone(),
        inheritable: Vec::new(),
        permitted: names,
        ambient: Vec::new(),
    });
    let out = stdout_of(&bundle.run("caps", &spec));
    // CAP_CHOWN is bit 0 and CAP_KILL bit 5.
    for set in ["CapPrm", "CapEff", "CapBnd"] {
        assert!(
            out.contains(&format!("{set}:\t0000000000000021")),
            "{set} is not CHOWN|KILL: {out}"
        );
    }
    assert!(out.contains("CapInh:\t0000000000000000"), "{out}");
    assert!(out.contains("CapAmb:\t0000000000000000"), "{out}");
}

#[test]
fn seccomp_filter_active() {
    let mut bundle = Bundle::new("seccomp");
    let spec = bundle.spec(
        "seccomp",
        "grep ^Seccomp: /proc/self/status; unshare -n true 2>&1 || echo unshare-rejected",
    );
    let out = stdout_of(&bundle.run("seccomp", &spec));
    assert!(out.contains("Seccomp:\t2"), "no seccomp filter: {out}");
    assert!(
        out.contains("unshare-rejected"),
        "unshare was allowed: {out}"
    );
}

#[test]
fn seccomp_rule_errno_applied() {
    let mut bundle = Bundle::new("seccomp-errno");
    let mut spec = bundle.spec("seccomp-errno", "mkdir /tmp/x 2>&1; echo status=$?");
    spec.linux.as_mut().unwrap().seccomp = Some(Seccomp {
        default_action: "SCMP_ACT_ALLOW".into(),
        syscalls: vec![SeccompSyscall {
            names: vec!["mkdir".into(), "mkdirat".into()],
            action: "SCMP_ACT_ERRNO".into(),
            errno_ret: Some(libc::EXDEV as u32),
            args: Vec::new(),
        }],
        ..Default::default()
    });
    let out = stdout_of(&bundle.run("seccomp-errno", &spec));
    assert!(out.contains("status=1"), "mkdir succeeded: {out}");
    assert!(
        out.contains("Invalid cross-device link"),
        "wrong errno: {out}"
    );
}

#[test]
fn proc_sys_read_only() {
    let mut bundle = Bundle::new("procsys");
    let spec = bundle.spec(
        "procsys",
        "echo other > /proc/sys/kernel/hostname 2>/dev/null && echo writable || echo read-only",
    );
    let out = stdout_of(&bundle.run("procsys", &spec));
    assert!(out.contains("read-only"), "/proc/sys is writable: {out}");
}

#[test]
fn sigpipe_default_in_container() {
    // The runtime is a Rust program and ignores SIGPIPE. The container's
    // program must not inherit that.
    let mut bundle = Bundle::new("sigpipe");
    let spec = bundle.spec("sigpipe", "grep SigIgn /proc/self/status");
    let out = stdout_of(&bundle.run("sigpipe", &spec));
    let mask = out
        .split_whitespace()
        .nth(1)
        .and_then(|hex| u64::from_str_radix(hex, 16).ok())
        .unwrap_or_else(|| panic!("no SigIgn line in: {out}"));
    let sigpipe_bit = 1u64 << (libc::SIGPIPE - 1);
    assert_eq!(
        mask & sigpipe_bit,
        0,
        "SIGPIPE is ignored in the container: {out}"
    );
}

#[test]
fn missing_cwd_created_and_home_set() {
    let mut bundle = Bundle::new("cwd");
    fs::write(
        bundle.path().join("rootfs/etc/passwd"),
        "root:x:0:0:root:/root:/bin/sh\nguest:x:405:100:guest:/home/guest:/bin/sh\n",
    )
    .unwrap();
    let mut spec = bundle.spec("cwd", "echo cwd=$(pwd) home=$HOME");
    spec.process.as_mut().unwrap().cwd = "/new/dir".into();
    let out = stdout_of(&bundle.run("cwd", &spec));
    assert!(out.contains("cwd=/new/dir"), "{out}");
    assert!(out.contains("home=/root"), "{out}");

    // A user without a passwd entry gets /, and a configured HOME stays.
    let mut spec = bundle.spec("cwd", "echo home=$HOME");
    spec.process.as_mut().unwrap().user.uid = 4242;
    let out = stdout_of(&bundle.run("cwd-nobody", &spec));
    assert!(out.contains("home=/\n") || out.ends_with("home=/"), "{out}");
    let mut spec = bundle.spec("cwd", "echo home=$HOME");
    spec.process.as_mut().unwrap().env.push("HOME=/srv".into());
    let out = stdout_of(&bundle.run("cwd-set", &spec));
    assert!(out.contains("home=/srv"), "{out}");
}

#[test]
fn run_terminal_takes_caller_size() {
    // `run` with process.terminal and no console socket proxies the
    // terminal itself; it must start at the caller's size. script(1)
    // gives the runtime a terminal of 19 rows and 73 columns.
    let mut bundle = Bundle::new("run-tty");
    let mut spec = bundle.spec("run-tty", "stty size");
    spec.process.as_mut().unwrap().terminal = true;
    bundle.write(&spec);
    let id = bundle.id("run-tty");
    let command = format!(
        "stty rows 19 cols 73 && {CBLOCK} runtime --root {} run --bundle {} {id}",
        bundle.root().display(),
        bundle.path().display()
    );
    let out = Command::new("script")
        .args(["-qec", &command, "/dev/null"])
        .stdin(Stdio::null())
        .output()
        .expect("running script(1) from util-linux");
    let stdout = text(&out.stdout);
    assert!(out.status.success(), "{stdout}{}", text(&out.stderr));
    assert!(stdout.contains("19 73"), "{stdout}");
}

#[test]
fn host_devices_denied() {
    // The default capabilities include CAP_MKNOD, so the container can make
    // a node for the host's first loop device. The devices cgroup must keep
    // it from opening that node, while /dev/null's numbers stay usable.
    let mut bundle = Bundle::new("devices");
    let spec = bundle.spec(
        "devices",
        "mknod /tmp/loop b 7 0 && mknod /tmp/null c 1 3 || echo mknod-failed; \
         head -c 1 /tmp/loop >/dev/null 2>/tmp/err; cat /tmp/err; \
         echo data > /tmp/null && echo null-writable",
    );
    let out = stdout_of(&bundle.run("devices", &spec));
    assert!(!out.contains("mknod-failed"), "{out}");
    assert!(
        out.contains("Operation not permitted"),
        "the container opened the host's loop device: {out}"
    );
    assert!(out.contains("null-writable"), "{out}");
}

#[test]
fn masked_paths_empty() {
    let mut bundle = Bundle::new("masked");
    let spec = bundle.spec(
        "masked",
        "echo timer_list=$(wc -c < /proc/timer_list); echo keys=$(wc -c < /proc/keys); \
         echo firmware=$(ls -A /sys/firmware | wc -l)",
    );
    // The host has content at all three paths.
    assert!(fs::metadata("/proc/timer_list").is_ok());
    assert!(fs::read_dir("/sys/firmware").is_ok());
    let out = stdout_of(&bundle.run("masked", &spec));
    assert!(out.contains("timer_list=0"), "{out}");
    assert!(out.contains("keys=0"), "{out}");
    assert!(out.contains("firmware=0"), "{out}");
}

#[test]
fn mounting_refused() {
    let mut bundle = Bundle::new("mount");
    let spec = bundle.spec(
        "mount",
        "mount -t tmpfs tmpfs /mnt 2>&1; echo status=$?; grep -c ' /mnt ' /proc/self/mountinfo || true",
    );
    let out = stdout_of(&bundle.run("mount", &spec));
    assert!(
        out.contains("status=1") || out.contains("status=255"),
        "mount succeeded: {out}"
    );
    assert!(out.trim_end().ends_with('0'), "/mnt is mounted: {out}");
}

/// A shell script that keeps 200 MB in a variable.
const MEMORY_HOG: &str = "x=$(head -c 200000000 /dev/zero | tr '\\000' a); echo survived ${#x}";

#[test]
fn memory_limit_kills_hog() {
    let mut bundle = Bundle::new("memory");
    let mut spec = bundle.spec("memory", MEMORY_HOG);
    let resources = spec
        .linux
        .as_mut()
        .unwrap()
        .resources
        .get_or_insert_with(Default::default);
    resources.memory = Some(cblocks::oci::runtime_spec::Memory {
        limit: Some(32 << 20),
        swap: Some(32 << 20),
        ..Default::default()
    });
    let out = bundle.run("memory", &spec);
    assert!(
        !text(&out.stdout).contains("survived"),
        "hog survived: {:?}",
        text(&out.stdout)
    );
    assert_eq!(
        out.status.code(),
        Some(137),
        "not killed: {}",
        text(&out.stderr)
    );
}

#[test]
fn memory_limit_too_low_named() {
    // 4 KiB cannot hold the container's setup, which the kernel then kills.
    let mut bundle = Bundle::new("memory-tiny");
    let mut spec = bundle.spec("memory-tiny", "true");
    let resources = spec
        .linux
        .as_mut()
        .unwrap()
        .resources
        .get_or_insert_with(Default::default);
    resources.memory = Some(cblocks::oci::runtime_spec::Memory {
        limit: Some(4096),
        swap: Some(4096),
        ..Default::default()
    });
    let out = bundle.run("memory-tiny", &spec);
    let stderr = text(&out.stderr);
    assert!(!out.status.success(), "{stderr}");
    assert!(
        stderr.contains("memory limit of 4096 bytes may be too low"),
        "{stderr}"
    );
    let left = cgroup_dir("memory", "/cblock-test/memory-tiny");
    assert!(!left.exists(), "the failed start left {}", left.display());
}

#[test]
fn memory_hog_runs_without_limit() {
    let mut bundle = Bundle::new("memory-free");
    let spec = bundle.spec("memory-free", MEMORY_HOG);
    let out = stdout_of(&bundle.run("memory-free", &spec));
    assert!(out.contains("survived 200000000"), "{out}");
}

#[test]
fn pids_limit_stops_fork_loop() {
    let mut bundle = Bundle::new("pids");
    let mut spec = bundle.spec(
        "pids",
        "i=0; while [ $i -lt 100 ]; do sleep 30 & i=$((i+1)); done 2>/dev/null; sleep 30",
    );
    let resources = spec
        .linux
        .as_mut()
        .unwrap()
        .resources
        .get_or_insert_with(Default::default);
    resources.pids = Some(cblocks::oci::runtime_spec::Pids { limit: 16 });
    let id = bundle.run_detached("pids", &spec);

    let cgroup = cgroup_dir("pids", "/cblock-test/pids");
    let rejected = || {
        let events = fs::read_to_string(cgroup.join("pids.events")).unwrap_or_default();
        events
            .split_whitespace()
            .nth(1)
            .and_then(|n| n.parse::<u64>().ok())
            .is_some_and(|n| n > 0)
    };
    assert!(
        wait_until(Duration::from_secs(20), rejected),
        "no fork was rejected"
    );
    let current: u64 = fs::read_to_string(cgroup.join("pids.current"))
        .unwrap()
        .trim()
        .parse()
        .unwrap();
    assert!(current <= 16, "{current} tasks exceed the limit of 16");
    let out = bundle.cli(&["delete", "--force", &id]);
    assert!(out.status.success(), "{}", text(&out.stderr));
}

/// Runs `sh -c '(sleep 1 &); exec sleep 5'`, in which `sleep 1` is orphaned
/// and, once it exits, can only be reaped by PID 1, and returns whether a
/// zombie showed up in the container.
fn zombie_seen(with_init: bool) -> bool {
    let name = if with_init { "init" } else { "noinit" };
    let mut bundle = Bundle::new(name);
    let mut spec = default_spec(&Settings {
        args: vec!["sh".into(), "-c".into(), "(sleep 1 &); exec sleep 5".into()],
        init: with_init.then(|| PathBuf::from(CBLOCK)),
        ..Default::default()
    });
    spec.linux.as_mut().unwrap().cgroups_path = Some(format!("/cblock-test/{name}"));
    bind_host_libraries(&mut spec);
    let id = bundle.run_detached(name, &spec);

    let init_pid = bundle.state(&id)["pid"].as_i64().unwrap();
    let mut zombie = false;
    // The orphan exits after a second; watch for three.
    wait_until(Duration::from_secs(3), || {
        zombie |= children_of(init_pid)
            .iter()
            .any(|(_, state, _)| *state == 'Z');
        false
    });
    let alive = fs::read_to_string(format!("/proc/{init_pid}/stat")).unwrap_or_default();
    assert!(
        !alive.is_empty() && !alive.contains(") Z "),
        "the container is gone too early"
    );
    let _ = bundle.cli(&["delete", "--force", &id]);
    zombie
}

#[test]
fn init_leaves_no_zombies() {
    assert!(!zombie_seen(true), "a zombie remained under cblock _init");
}

#[test]
fn zombie_without_init() {
    // The control for the test above: without an init, sleep as PID 1 does
    // not reap the orphan.
    assert!(
        zombie_seen(false),
        "no zombie without the init; the check is blind"
    );
}

#[test]
fn no_leaked_host_descriptors() {
    let mut bundle = Bundle::new("fds");
    let spec = bundle.spec("fds", "ls /proc/self/fd");
    bundle.write(&spec);
    let id = bundle.id("fds");

    // A descriptor the caller leaks to the runtime, as a careless parent
    // would: an open directory of the host.
    let leak = fs::File::open("/").unwrap();
    let leak_fd = leak.as_raw_fd();
    let root = bundle.root();
    let bundle_path = bundle.path();
    let mut command = Command::new(CBLOCK);
    command.args([
        "runtime",
        "--root",
        root.to_str().unwrap(),
        "run",
        "--bundle",
        bundle_path.to_str().unwrap(),
        &id,
    ]);
    // SAFETY: the closure only calls dup2, which is async-signal-safe.
    unsafe {
        command.pre_exec(move || {
            libc::dup2(leak_fd, 9);
            libc::dup2(leak_fd, 200);
            Ok(())
        });
    }
    let out = command.output().unwrap();
    let listed: BTreeSet<String> = stdout_of(&out).lines().map(str::to_string).collect();
    // ls itself opens one descriptor, the directory it lists.
    let expected: BTreeSet<String> = ["0", "1", "2", "3"].iter().map(|s| s.to_string()).collect();
    assert_eq!(
        listed, expected,
        "descriptors beyond stdio reached the container"
    );
}

#[test]
fn cwd_under_proc_fd_rejected() {
    // CVE-2024-21626: the working directory must not lead through a
    // descriptor to the host.
    let mut bundle = Bundle::new("cve-2024-21626");
    for fd in [3, 7, 8] {
        let mut spec = bundle.spec("cwd", "pwd");
        spec.process.as_mut().unwrap().cwd = format!("/proc/self/fd/{fd}");
        let out = bundle.run("cwd", &spec);
        assert_eq!(
            out.status.code(),
            Some(1),
            "cwd through fd {fd} was accepted"
        );
        assert!(
            text(&out.stderr).contains("/proc/*/fd"),
            "unclear error: {}",
            text(&out.stderr)
        );
    }
    assert_eq!(
        fs::read_dir(bundle.root()).unwrap().count(),
        0,
        "state left behind"
    );
}

#[test]
fn runtime_binary_not_writable_from_container() {
    // CVE-2019-5736: a container that executes /proc/self/exe while the
    // runtime sets it up gets the unwritable view of the binary (a detached
    // read-only overlay, or a sealed memfd copy), and cannot write through
    // it to the host's binary.
    let mut bundle = Bundle::new("cve-2019-5736");
    let before = fs::read(CBLOCK).unwrap();
    let mut spec = bundle.spec("exe", "");
    spec.process.as_mut().unwrap().args = vec![
        "/proc/self/exe".into(),
        "_init".into(),
        "sleep".into(),
        "30".into(),
    ];
    bind_host_libraries(&mut spec);
    let id = bundle.run_detached("exe", &spec);

    let out = bundle.cli(&[
        "exec",
        &id,
        "sh",
        "-c",
        "readlink /proc/1/exe; echo x >> /proc/1/exe && echo written || echo write-failed",
    ]);
    let output = stdout_of(&out);
    let host_binary = fs::canonicalize(CBLOCK).unwrap();
    let exe_link = output.lines().next().unwrap_or_default();
    assert!(
        !exe_link.is_empty() && Path::new(exe_link) != host_binary,
        "PID 1 runs from the host's binary {}: {output}",
        host_binary.display()
    );
    assert!(
        output.contains("write-failed"),
        "the runtime copy was writable: {output}"
    );
    let after = fs::read(CBLOCK).unwrap();
    assert!(before == after, "the host's cblock binary changed");
}

#[test]
fn kill_term_ends_created_container() {
    let mut bundle = Bundle::new("kill-created");
    let spec = bundle.spec("kill-created", "sleep 30");
    bundle.write(&spec);
    let id = bundle.id("kill-created");
    let bundle_path = bundle.path();
    let out = bundle.cli(&["create", "--bundle", bundle_path.to_str().unwrap(), &id]);
    assert!(out.status.success(), "create: {}", text(&out.stderr));
    assert_eq!(bundle.state(&id)["status"], "created");

    let out = bundle.cli(&["kill", &id, "TERM"]);
    assert!(out.status.success(), "kill: {}", text(&out.stderr));
    let stopped = wait_until(Duration::from_secs(10), || {
        bundle.state(&id)["status"] == "stopped"
    });
    assert!(stopped, "SIGTERM did not end the created container");
}

#[test]
fn lifecycle_through_cli() {
    let mut bundle = Bundle::new("lifecycle");
    let spec = bundle.spec("lifecycle", "sleep 30");
    bundle.write(&spec);
    let id = bundle.id("life");
    let pid_file = bundle.dir.join("pid");
    let bundle_path = bundle.path();

    let out = bundle.cli(&[
        "create",
        "--bundle",
        bundle_path.to_str().unwrap(),
        "--pid-file",
        pid_file.to_str().unwrap(),
        &id,
    ]);
    assert!(out.status.success(), "create: {}", text(&out.stderr));
    let state = bundle.state(&id);
    assert_eq!(state["status"], "created");
    let pid: i64 = fs::read_to_string(&pid_file)
        .unwrap()
        .trim()
        .parse()
        .unwrap();
    assert_eq!(state["pid"], pid);
    assert_eq!(state["bundle"], bundle_path.to_str().unwrap());

    let out = bundle.cli(&["start", &id]);
    assert!(out.status.success(), "start: {}", text(&out.stderr));
    assert_eq!(bundle.state(&id)["status"], "running");

    let out = bundle.cli(&["list", "--format", "json"]);
    let listed: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(listed[0]["id"], id.as_str());
    let out = bundle.cli(&["ps", "--format", "json", &id]);
    let pids: Vec<i64> = serde_json::from_slice(&out.stdout).unwrap();
    assert!(pids.contains(&pid), "ps lacks {pid}: {pids:?}");

    let out = bundle.cli(&["exec", &id, "sh", "-c", "echo from-exec $$"]);
    assert!(
        stdout_of(&out).starts_with("from-exec "),
        "exec output wrong"
    );

    let out = bundle.cli(&["delete", &id]);
    assert!(
        !out.status.success(),
        "deleted a running container without --force"
    );
    assert!(
        text(&out.stderr).contains("--force"),
        "{}",
        text(&out.stderr)
    );

    let out = bundle.cli(&["kill", &id, "KILL"]);
    assert!(out.status.success(), "kill: {}", text(&out.stderr));
    assert!(
        wait_until(Duration::from_secs(10), || bundle.state(&id)["status"]
            == "stopped"),
        "container did not stop"
    );
    let out = bundle.cli(&["delete", &id]);
    assert!(out.status.success(), "delete: {}", text(&out.stderr));
    let out = bundle.cli(&["state", &id]);
    assert!(!out.status.success());
    assert!(
        text(&out.stderr).contains("does not exist"),
        "{}",
        text(&out.stderr)
    );
    assert!(
        !cgroup_dir("memory", "/cblock-test/lifecycle").exists(),
        "cgroup left behind"
    );
}

#[test]
fn run_returns_exit_status() {
    let mut bundle = Bundle::new("status");
    let spec = bundle.spec("status", "echo out; exit 7");
    let out = bundle.run("status", &spec);
    assert_eq!(out.status.code(), Some(7));
    assert_eq!(text(&out.stdout), "out\n");
    assert_eq!(
        fs::read_dir(bundle.root()).unwrap().count(),
        0,
        "state left after run"
    );
}

/// Receives the descriptor a runtime sends to a console socket.
fn receive_master(listener: &UnixListener) -> OwnedFd {
    let (stream, _) = listener.accept().unwrap();
    let mut data = [0u8; 256];
    let mut buffers = [IoSliceMut::new(&mut data)];
    let mut space = nix::cmsg_space!([i32; 1]);
    let message = nix::sys::socket::recvmsg::<()>(
        stream.as_raw_fd(),
        &mut buffers,
        Some(&mut space),
        nix::sys::socket::MsgFlags::empty(),
    )
    .unwrap();
    for cmsg in message.cmsgs().unwrap() {
        if let nix::sys::socket::ControlMessageOwned::ScmRights(fds) = cmsg {
            // SAFETY: the kernel installed this descriptor for us.
            return unsafe { OwnedFd::from_raw_fd(fds[0]) };
        }
    }
    panic!("no descriptor received on the console socket");
}

#[test]
fn console_socket_receives_terminal() {
    let mut bundle = Bundle::new("console");
    let mut spec = bundle.spec("console", "tty; echo on-terminal");
    spec.process.as_mut().unwrap().terminal = true;
    bundle.write(&spec);
    let id = bundle.id("console");
    let socket = bundle.dir.join("console.sock");
    let listener = UnixListener::bind(&socket).unwrap();
    let receiver = thread::spawn(move || receive_master(&listener));

    let bundle_path = bundle.path();
    let out = bundle.cli(&[
        "create",
        "--bundle",
        bundle_path.to_str().unwrap(),
        "--console-socket",
        socket.to_str().unwrap(),
        &id,
    ]);
    assert!(out.status.success(), "create: {}", text(&out.stderr));
    let master = receiver.join().unwrap();
    let out = bundle.cli(&["start", &id]);
    assert!(out.status.success(), "start: {}", text(&out.stderr));

    let mut terminal = fs::File::from(master);
    let mut seen = String::new();
    let mut buffer = [0u8; 1024];
    // Reading ends with EIO once the container closed the terminal.
    while let Ok(n) = terminal.read(&mut buffer) {
        if n == 0 {
            break;
        }
        seen.push_str(&String::from_utf8_lossy(&buffer[..n]));
        if seen.contains("on-terminal") {
            break;
        }
    }
    assert!(seen.contains("/dev/pts/0"), "not on a terminal: {seen:?}");
    assert!(seen.contains("on-terminal"), "{seen:?}");
}

#[test]
fn hooks_receive_state() {
    let mut bundle = Bundle::new("hooks");
    let mut spec = bundle.spec("hooks", "true");
    let prestart = bundle.dir.join("prestart.json");
    let poststop = bundle.dir.join("poststop.json");
    let hook = |file: &Path| Hook {
        path: "/bin/sh".into(),
        args: vec![
            "sh".into(),
            "-c".into(),
            format!("cat > {}", file.display()),
        ],
        env: Vec::new(),
        timeout: Some(10),
    };
    spec.hooks = Some(Hooks {
        prestart: vec![hook(&prestart)],
        poststop: vec![hook(&poststop)],
        ..Default::default()
    });
    let out = bundle.run("hooks", &spec);
    assert!(out.status.success(), "{}", text(&out.stderr));
    let id = bundle.ids.last().unwrap().clone();
    let state: serde_json::Value = serde_json::from_slice(&fs::read(&prestart).unwrap()).unwrap();
    assert_eq!(state["id"], id.as_str());
    assert!(state["pid"].as_i64().unwrap() > 0, "{state}");
    let state: serde_json::Value = serde_json::from_slice(&fs::read(&poststop).unwrap()).unwrap();
    assert_eq!(state["status"], "stopped");
}

fn chown_tree(path: &Path, id: u32) {
    std::os::unix::fs::lchown(path, Some(id), Some(id)).unwrap();
    if path.symlink_metadata().unwrap().is_dir() {
        for entry in fs::read_dir(path).unwrap() {
            chown_tree(&entry.unwrap().path(), id);
        }
    }
}

#[test]
fn user_namespace_maps_ids() {
    let mut bundle = Bundle::new("userns");
    let mut spec = bundle.spec("userns", "cat /proc/self/uid_map; id -u");
    let linux = spec.linux.as_mut().unwrap();
    linux.namespaces.push(Namespace {
        kind: "user".into(),
        path: None,
    });
    let map = IdMapping {
        container_id: 0,
        host_id: 100_000,
        size: 65_536,
    };
    linux.uid_mappings = vec![map];
    linux.gid_mappings = vec![map];
    // The container's root must own its files to create mount points.
    chown_tree(&bundle.path().join("rootfs"), 100_000);
    let out = stdout_of(&bundle.run("userns", &spec));
    let words: Vec<&str> = out.split_whitespace().collect();
    assert_eq!(words, ["0", "100000", "65536", "0"], "{out}");
}

#[test]
fn user_namespace_joined_by_path() {
    let mut bundle = Bundle::new("userns-join");
    let map = IdMapping {
        container_id: 0,
        host_id: 100_000,
        size: 65_536,
    };
    chown_tree(&bundle.path().join("rootfs"), 100_000);
    let mut spec = bundle.spec("userns-a", "sleep 30");
    let linux = spec.linux.as_mut().unwrap();
    linux.namespaces.push(Namespace {
        kind: "user".into(),
        path: None,
    });
    linux.uid_mappings = vec![map];
    linux.gid_mappings = vec![map];
    let first = bundle.run_detached("userns-a", &spec);
    let pid = bundle.state(&first)["pid"].as_i64().unwrap();
    let expected = fs::read_link(format!("/proc/{pid}/ns/user")).unwrap();

    // A second container in the first one's user namespace, with a mount
    // namespace of its own whose mount points it must be able to create.
    let mut spec = bundle.spec("userns-b", "readlink /proc/self/ns/user; id -u");
    spec.linux.as_mut().unwrap().namespaces.push(Namespace {
        kind: "user".into(),
        path: Some(format!("/proc/{pid}/ns/user")),
    });
    let out = stdout_of(&bundle.run("userns-b", &spec));
    let words: Vec<&str> = out.split_whitespace().collect();
    assert_eq!(words, [expected.to_str().unwrap(), "0"], "{out}");
}

#[test]
fn network_namespace_joined_by_path() {
    let mut bundle = Bundle::new("netns");
    let spec = bundle.spec("netns-a", "sleep 30");
    let first = bundle.run_detached("netns-a", &spec);
    let pid = bundle.state(&first)["pid"].as_i64().unwrap();
    let expected = fs::read_link(format!("/proc/{pid}/ns/net")).unwrap();

    let mut spec = bundle.spec("netns-b", "readlink /proc/self/ns/net");
    let namespaces = &mut spec.linux.as_mut().unwrap().namespaces;
    namespaces.retain(|ns| ns.kind != "network");
    namespaces.push(Namespace {
        kind: "network".into(),
        path: Some(format!("/proc/{pid}/ns/net")),
    });
    let out = stdout_of(&bundle.run("netns-b", &spec));
    assert_eq!(out.trim(), expected.to_str().unwrap());
}

#[test]
fn host_network_shares_namespace() {
    let mut bundle = Bundle::new("hostnet");
    let mut spec = default_spec(&Settings {
        args: vec!["readlink".into(), "/proc/self/ns/net".into()],
        network: NetworkMode::Host,
        ..Default::default()
    });
    spec.linux.as_mut().unwrap().cgroups_path = Some("/cblock-test/hostnet".into());
    let out = stdout_of(&bundle.run("hostnet", &spec));
    let host = fs::read_link("/proc/self/ns/net").unwrap();
    assert_eq!(out.trim(), host.to_str().unwrap());
}

/// Runs `create` on a broken bundle and checks that it fails with a message
/// containing `expected` and leaves no state, cgroup or mount behind.
fn assert_clean_failure(bundle: &Bundle, id: &str, expected: &str) {
    let bundle_path = bundle.path();
    let out = bundle.cli(&["create", "--bundle", bundle_path.to_str().unwrap(), id]);
    let stderr = text(&out.stderr);
    if out.status.success() {
        let _ = bundle.cli(&["delete", "--force", id]);
    }
    assert_eq!(
        out.status.code(),
        Some(1),
        "create succeeded or crashed: {stderr}"
    );
    assert!(
        stderr.contains(expected),
        "expected {expected:?} in {stderr:?}"
    );
    assert!(
        !bundle.root().join(id).exists(),
        "state directory left behind"
    );
    for controller in ["memory", "pids", "cpu"] {
        let dir = cgroup_dir(controller, &format!("/cblock-test/{id}"));
        assert!(!dir.exists(), "cgroup {} left behind", dir.display());
    }
    let mounts = fs::read_to_string("/proc/self/mountinfo").unwrap();
    assert!(
        !mounts.contains(bundle.dir.to_str().unwrap()),
        "mount left behind below {}",
        bundle.dir.display()
    );
}

#[test]
fn bad_bundles_fail_cleanly() {
    let bundle = Bundle::new("bad");
    let config = bundle.path().join("config.json");

    assert_clean_failure(&bundle, "no-config", "reading config.json");

    fs::write(&config, "{ not json").unwrap();
    assert_clean_failure(&bundle, "bad-json", "config.json");

    let spec = |id: &str, script: &str| {
        let mut spec = bundle.spec(id, script);
        spec.linux.as_mut().unwrap().cgroups_path = Some(format!("/cblock-test/{id}"));
        spec
    };

    let mut broken = spec("no-rootfs", "true");
    broken.root.as_mut().unwrap().path = "missing-rootfs".into();
    bundle.write(&broken);
    assert_clean_failure(&bundle, "no-rootfs", "missing-rootfs");

    let mut broken = spec("unsupported", "true");
    broken.linux.as_mut().unwrap().intel_rdt = Some(serde_json::json!({"closID": "x"}));
    bundle.write(&broken);
    assert_clean_failure(&bundle, "unsupported", "linux.intelRdt");

    let mut broken = spec("bad-cap", "true");
    let caps = broken
        .process
        .as_mut()
        .unwrap()
        .capabilities
        .as_mut()
        .unwrap();
    caps.bounding.push("CAP_TELEPORT".into());
    bundle.write(&broken);
    assert_clean_failure(&bundle, "bad-cap", "CAP_TELEPORT");

    // These fail inside the container's setup, after namespaces and the
    // cgroup exist.
    let mut broken = spec("no-program", "true");
    broken.process.as_mut().unwrap().args = vec!["/no/such/program".into()];
    bundle.write(&broken);
    assert_clean_failure(&bundle, "no-program", "/no/such/program");

    let mut broken = spec("bad-mount", "true");
    broken.mounts.push(Mount {
        destination: "/data".into(),
        kind: Some("bind".into()),
        source: Some("/no/such/source".into()),
        options: vec!["bind".into()],
        ..Default::default()
    });
    bundle.write(&broken);
    assert_clean_failure(&bundle, "bad-mount", "/no/such/source");

    let mut broken = spec("bad-limit", "true");
    broken
        .linux
        .as_mut()
        .unwrap()
        .resources
        .as_mut()
        .unwrap()
        .memory = Some(cblocks::oci::runtime_spec::Memory {
        swappiness: Some(500),
        ..Default::default()
    });
    bundle.write(&broken);
    assert_clean_failure(&bundle, "bad-limit", "swappiness 500");

    bundle.write(&spec("bad-id", "true"));
    assert_clean_failure(&bundle, "../escape", "invalid container id");
}

#[test]
fn unsupported_global_option_rejected() {
    let bundle = Bundle::new("systemd");
    let out = bundle.cli(&["--systemd-cgroup", "state", "x"]);
    assert_eq!(out.status.code(), Some(1));
    assert!(
        text(&out.stderr).contains("--cgroup-manager cgroupfs"),
        "{}",
        text(&out.stderr)
    );
    let out = bundle.cli(&["create", "--no-such-option", "x"]);
    assert_eq!(out.status.code(), Some(2));
    assert!(
        text(&out.stderr).contains("--no-such-option"),
        "{}",
        text(&out.stderr)
    );
}

/// Runs podman with cblock-runtime as its OCI runtime.
fn podman(bundle: &Bundle, runtime: &Path, args: &[&str]) -> Output {
    let mut full = vec![
        "--runtime",
        runtime.to_str().unwrap(),
        "--cgroup-manager",
        "cgroupfs",
    ];
    full.extend_from_slice(args);
    let n = NEXT.fetch_add(1, Ordering::SeqCst);
    let stdout_path = bundle.dir.join(format!("podman-out-{n}"));
    let stderr_path = bundle.dir.join(format!("podman-err-{n}"));
    let status = Command::new("podman")
        .args(&full)
        .stdin(Stdio::null())
        .stdout(fs::File::create(&stdout_path).unwrap())
        .stderr(fs::File::create(&stderr_path).unwrap())
        .status()
        .expect("running podman; install Debian's podman package");
    Output {
        status,
        stdout: fs::read(&stdout_path).unwrap_or_default(),
        stderr: fs::read(&stderr_path).unwrap_or_default(),
    }
}

/// Removes a podman image when dropped.
struct ImageGuard(&'static str);

impl Drop for ImageGuard {
    fn drop(&mut self) {
        let _ = Command::new("podman")
            .args(["rmi", "--force", self.0])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status();
    }
}

#[test]
fn podman_runs_busybox_image() {
    let bundle = Bundle::new("podman");
    let runtime = bundle.dir.join("cblock-runtime");
    std::os::unix::fs::symlink(CBLOCK, &runtime).unwrap();

    let archive = bundle.dir.join("rootfs.tar");
    let tar = Command::new("tar")
        .arg("-cf")
        .arg(&archive)
        .arg("-C")
        .arg(bundle.path().join("rootfs"))
        .arg(".")
        .status()
        .unwrap();
    assert!(tar.success());
    let image = "localhost/cblock-test-busybox:latest";
    let out = podman(
        &bundle,
        &runtime,
        &["import", archive.to_str().unwrap(), image],
    );
    assert!(out.status.success(), "import: {}", text(&out.stderr));
    let _image = ImageGuard(image);

    // Root here lacks CAP_SYS_RESOURCE, so the rlimits podman requests must
    // stay within the current hard limits.
    let limits = [
        "--ulimit",
        "nofile=20000:20000",
        "--ulimit",
        "nproc=32768:32768",
    ];
    for tty in [false, true] {
        let mut args = vec!["run", "--rm"];
        if tty {
            args.push("-t");
        }
        args.extend_from_slice(&limits);
        args.extend_from_slice(&[image, "/bin/true"]);
        let out = podman(&bundle, &runtime, &args);
        assert!(
            out.status.success(),
            "podman run (tty {tty}): {}",
            text(&out.stderr)
        );
    }

    let mut args = vec!["run", "--rm", "-t"];
    args.extend_from_slice(&limits);
    args.extend_from_slice(&[image, "sh", "-c", "tty; exit 3"]);
    let out = podman(&bundle, &runtime, &args);
    assert_eq!(out.status.code(), Some(3), "{}", text(&out.stderr));
    assert!(
        text(&out.stdout).contains("/dev/pts/0"),
        "{}",
        text(&out.stdout)
    );
}

#[test]
fn ambient_without_inheritable_skipped() {
    // runc's own `spec` writes ambient capabilities without inheritable
    // ones, which the kernel cannot raise; such bundles must still run.
    let mut bundle = Bundle::new("ambient");
    let mut spec = bundle.spec("ambient", "grep -E '^Cap(Amb|Eff)' /proc/self/status");
    let names: Vec<String> = vec!["CAP_KILL".into()];
    spec.process.as_mut().unwrap().capabilities = Some(Capabilities {
        bounding: names.clone(),
        effective: names.clone(),
        inheritable: Vec::new(),
        permitted: names.clone(),
        ambient: names,
    });
    let out = stdout_of(&bundle.run("ambient", &spec));
    assert!(out.contains("CapAmb:\t0000000000000000"), "{out}");
    assert!(out.contains("CapEff:\t0000000000000020"), "{out}");
}

#[test]
fn library_create_with_pipes() {
    use cblocks::runtime::{Container, ContainerConfig};

    let mut bundle = Bundle::new("library");
    let spec = bundle.spec("library", "echo to-stdout; echo to-stderr >&2");
    bundle.write(&spec);
    let id = bundle.id("library");
    let (out_read, out_write) = nix::unistd::pipe().unwrap();
    let (err_read, err_write) = nix::unistd::pipe().unwrap();
    let null = OwnedFd::from(fs::File::open("/dev/null").unwrap());

    let mut container = {
        // The configuration keeps the pipes' write ends; dropping it lets
        // the reads below end when the container exits.
        let config = ContainerConfig {
            id: id.clone(),
            bundle: bundle.path(),
            root_dir: bundle.root(),
            runtime_exe: Some(PathBuf::from(CBLOCK)),
            stdio: Some([null, out_write, err_write]),
            ..Default::default()
        };
        Container::create(&config).unwrap()
    };
    assert_eq!(container.state().status.to_string(), "created");
    container.start().unwrap();

    let mut stdout = String::new();
    fs::File::from(out_read)
        .read_to_string(&mut stdout)
        .unwrap();
    let mut stderr = String::new();
    fs::File::from(err_read)
        .read_to_string(&mut stderr)
        .unwrap();
    assert_eq!(stdout, "to-stdout\n");
    assert_eq!(stderr, "to-stderr\n");
    container.delete(true).unwrap();
    assert!(!bundle.root().join(&id).exists(), "state left after delete");
}

#[test]
fn delete_force_without_pid() {
    // A create that was killed midway leaves a record without a pid;
    // deleting it must not signal pid 0, which is the caller's own
    // process group.
    let bundle = Bundle::new("no-pid");
    let state_dir = bundle.root().join("half-created");
    fs::create_dir_all(&state_dir).unwrap();
    let spec = bundle.spec("no-pid", "true");
    let rootfs = bundle.path().join("rootfs");
    cblocks::runtime::Record::new("half-created", &bundle.path(), &rootfs, &spec)
        .save(&state_dir)
        .unwrap();

    let out = bundle.cli(&["delete", "--force", "half-created"]);
    assert!(out.status.success(), "delete: {}", text(&out.stderr));
    assert!(!state_dir.exists(), "state left after delete");
}
