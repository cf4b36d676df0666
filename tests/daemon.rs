//! cblockd, its supervisors and the client commands, end to end: a real
//! daemon on a temporary socket and data directory, real PTYs, real
//! processes. Instances run plain host processes through the test-only
//! request until containers can be launched from images.

use std::fs;
use std::io::{Read, Write};
use std::os::fd::{AsRawFd, OwnedFd};
use std::os::unix::fs::PermissionsExt;
use std::os::unix::net::UnixStream;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::sync::atomic::{AtomicU32, Ordering};
use std::thread;
use std::time::{Duration, Instant};

use cblocks::daemon::protocol::{
    self as proto, Kind, Request, Response, TestProcessRequest, WindowSize,
};

/// The cblock binary under test: `$CBLOCK_TEST_BINARY` (such as the static
/// release build), else the one cargo built for the tests.
fn binary() -> String {
    std::env::var("CBLOCK_TEST_BINARY").unwrap_or_else(|_| env!("CARGO_BIN_EXE_cblock").into())
}
/// Upper bound for anything a test waits for; reaching it fails the test.
const DEADLINE: Duration = Duration::from_secs(30);
const NOBODY: u32 = 65534;

/// A daemon on a temporary socket and data directory. Dropping it kills
/// the daemon, every supervisor and payload it started, and removes the
/// directory.
struct Daemon {
    dir: PathBuf,
    socket: PathBuf,
    data: PathBuf,
    log: PathBuf,
    process: Option<Child>,
    extra_args: Vec<String>,
}

impl Daemon {
    fn start() -> Daemon {
        Daemon::start_with(&["--enable-test-processes"])
    }

    fn start_with(extra_args: &[&str]) -> Daemon {
        static NEXT: AtomicU32 = AtomicU32::new(0);
        let dir = PathBuf::from(format!(
            "/tmp/cbd-{}-{}",
            std::process::id(),
            NEXT.fetch_add(1, Ordering::Relaxed)
        ));
        let _ = fs::remove_dir_all(&dir);
        fs::create_dir_all(&dir).unwrap();
        fs::set_permissions(&dir, fs::Permissions::from_mode(0o755)).unwrap();
        let mut daemon = Daemon {
            socket: dir.join("sock"),
            data: dir.join("data"),
            log: dir.join("cblockd.log"),
            dir,
            process: None,
            extra_args: extra_args.iter().map(|s| s.to_string()).collect(),
        };
        daemon.launch_process();
        daemon
    }

    fn launch_process(&mut self) {
        let child = Command::new(binary())
            .arg("daemon")
            .arg("-d")
            .arg(&self.data)
            .arg("-U")
            .arg(&self.socket)
            .arg("-l")
            .arg(&self.log)
            .arg("-v")
            .args(&self.extra_args)
            .stdin(Stdio::null())
            .spawn()
            .expect("start cblockd");
        self.process = Some(child);

        let deadline = Instant::now() + DEADLINE;
        loop {
            if let Ok(mut stream) = UnixStream::connect(&self.socket) {
                proto::write_json(&mut stream, Kind::Request, &Request::Ping).unwrap();
                let response: Response = proto::read_json(&mut stream, Kind::Response).unwrap();
                assert_eq!(
                    response,
                    Response::Pong {
                        version: proto::VERSION
                    }
                );
                return;
            }
            assert!(
                Instant::now() < deadline,
                "cblockd did not start; log:\n{}",
                self.log_text()
            );
            thread::sleep(Duration::from_millis(20));
        }
    }

    /// Kills the daemon with SIGKILL and waits for it.
    fn kill_hard(&mut self) {
        if let Some(mut child) = self.process.take() {
            child.kill().unwrap();
            child.wait().unwrap();
        }
    }

    fn log_text(&self) -> String {
        fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// Waits until the daemon's log contains `needle`.
    fn wait_for_log(&self, needle: &str) {
        let deadline = Instant::now() + DEADLINE;
        while !self.log_text().contains(needle) {
            assert!(
                Instant::now() < deadline,
                "{needle:?} not logged:\n{}",
                self.log_text()
            );
            thread::sleep(Duration::from_millis(20));
        }
    }

    fn client(&self) -> Command {
        let mut command = Command::new(binary());
        command.arg("-U").arg(&self.socket);
        command
    }

    fn run(&self, args: &[&str]) -> Output {
        self.client()
            .args(args)
            .stdin(Stdio::null())
            .output()
            .expect("run cblock")
    }

    fn request(&self, request: &Request) -> (UnixStream, Result<Response, proto::ProtocolError>) {
        let mut stream = UnixStream::connect(&self.socket).unwrap();
        proto::write_json(&mut stream, Kind::Request, request).unwrap();
        let response = proto::read_json(&mut stream, Kind::Response);
        (stream, response)
    }

    /// Starts a test process instance and returns its id.
    fn spawn(&self, argv: &[&str], start: bool) -> String {
        self.spawn_with(TestProcessRequest {
            argv: argv.iter().map(|s| s.to_string()).collect(),
            start,
            ..Default::default()
        })
    }

    fn spawn_with(&self, spawn: TestProcessRequest) -> String {
        match self.request(&Request::TestProcess(spawn)).1 {
            Ok(Response::Launched { id }) => id,
            other => panic!("test process not started: {other:?}\n{}", self.log_text()),
        }
    }

    fn list(&self, all: bool) -> Vec<proto::InstanceInfo> {
        match self.request(&Request::List { all }).1 {
            Ok(Response::Instances { instances }) => instances,
            other => panic!("listing failed: {other:?}"),
        }
    }

    fn instance_dir(&self, id: &str) -> PathBuf {
        self.data.join("instances").join(id)
    }

    /// Waits until the instance has recorded its exit and returns the status.
    fn wait_exit(&self, id: &str) -> i32 {
        let path = self.instance_dir(id).join("exit.json");
        let deadline = Instant::now() + DEADLINE;
        loop {
            if let Ok(text) = fs::read_to_string(&path) {
                let record: serde_json::Value = serde_json::from_str(&text).unwrap();
                return record["status"].as_i64().unwrap() as i32;
            }
            assert!(Instant::now() < deadline, "instance {id} did not exit");
            thread::sleep(Duration::from_millis(20));
        }
    }
}

fn kill_instance_processes(dir: &Path) {
    let Ok(text) = fs::read_to_string(dir.join("state.json")) else {
        return;
    };
    let Ok(state) = serde_json::from_str::<serde_json::Value>(&text) else {
        return;
    };
    // SAFETY: kill takes no pointers.
    unsafe {
        if let Some(pid) = state["pid"].as_i64() {
            libc::kill(-(pid as i32), libc::SIGKILL);
            libc::kill(pid as i32, libc::SIGKILL);
        }
        if let Some(pid) = state["supervisor_pid"].as_i64() {
            libc::kill(pid as i32, libc::SIGKILL);
        }
    }
}

impl Drop for Daemon {
    fn drop(&mut self) {
        self.kill_hard();
        if let Ok(entries) = fs::read_dir(self.data.join("instances")) {
            for entry in entries.flatten() {
                kill_instance_processes(&entry.path());
            }
        }

        // Containers and root file systems of a test that failed midway.
        let runtime_root = self.data.join("runtime");
        if let Ok(entries) = fs::read_dir(&runtime_root) {
            for entry in entries.flatten() {
                let _ = Command::new(binary())
                    .arg("runtime")
                    .arg("--root")
                    .arg(&runtime_root)
                    .args(["delete", "--force"])
                    .arg(entry.file_name())
                    .stderr(Stdio::null())
                    .status();
            }
        }
        let mounts = fs::read_to_string("/proc/self/mounts").unwrap_or_default();
        let prefix = self.dir.display().to_string();
        for line in mounts.lines().rev() {
            if let Some(target) = line.split(' ').nth(1).filter(|t| t.starts_with(&prefix)) {
                let target = std::ffi::CString::new(target).unwrap();
                // SAFETY: umount2 reads one NUL-terminated path.
                unsafe { libc::umount2(target.as_ptr(), libc::MNT_DETACH) };
            }
        }
        let _ = fs::remove_dir_all(&self.dir);
    }
}

/// A client running on a PTY of the test's own, as on a user's terminal.
struct PtyClient {
    master: fs::File,
    child: Child,
    seen: Vec<u8>,
}

impl PtyClient {
    fn start(daemon: &Daemon, args: &[&str], rows: u16, cols: u16) -> PtyClient {
        let pty = nix::pty::openpty(None, None).unwrap();
        set_window_size(&pty.master, rows, cols);
        let slave = pty.slave;
        let mut command = daemon.client();
        command
            .args(args)
            .stdin(Stdio::from(slave.try_clone().unwrap()))
            .stdout(Stdio::from(slave.try_clone().unwrap()))
            .stderr(Stdio::from(slave));
        // SAFETY: setsid and ioctl are async-signal-safe.
        unsafe {
            command.pre_exec(|| {
                if libc::setsid() < 0 || libc::ioctl(0, libc::TIOCSCTTY, 0) < 0 {
                    return Err(std::io::Error::last_os_error());
                }
                Ok(())
            });
        }
        let child = command.spawn().unwrap();
        drop(command);
        PtyClient {
            master: fs::File::from(pty.master),
            child,
            seen: Vec::new(),
        }
    }

    fn write(&mut self, bytes: &[u8]) {
        self.master.write_all(bytes).unwrap();
    }

    /// Reads until `needle` has appeared after everything consumed so far.
    fn expect(&mut self, needle: &str) {
        let deadline = Instant::now() + DEADLINE;
        loop {
            if let Some(pos) = find(&self.seen, needle.as_bytes()) {
                self.seen.drain(..pos + needle.len());
                return;
            }
            let left = deadline.saturating_duration_since(Instant::now());
            assert!(
                !left.is_zero(),
                "{needle:?} did not appear; output so far: {:?}",
                String::from_utf8_lossy(&self.seen)
            );
            if !poll_readable(&self.master, left.min(Duration::from_millis(200))) {
                continue;
            }
            let mut buf = [0u8; 4096];
            match self.master.read(&mut buf) {
                Ok(0) | Err(_) => thread::sleep(Duration::from_millis(20)),
                Ok(n) => self.seen.extend_from_slice(&buf[..n]),
            }
        }
    }

    fn wait(mut self) -> std::process::ExitStatus {
        let deadline = Instant::now() + DEADLINE;
        loop {
            if let Some(status) = self.child.try_wait().unwrap() {
                return status;
            }
            // Keep the PTY drained so the client never blocks on output.
            if poll_readable(&self.master, Duration::from_millis(50)) {
                let mut buf = [0u8; 4096];
                if let Ok(n) = self.master.read(&mut buf) {
                    self.seen.extend_from_slice(&buf[..n]);
                }
            }
            assert!(Instant::now() < deadline, "the client did not end");
        }
    }
}

impl Drop for PtyClient {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn set_window_size(fd: &OwnedFd, rows: u16, cols: u16) {
    let size = libc::winsize {
        ws_row: rows,
        ws_col: cols,
        ws_xpixel: 0,
        ws_ypixel: 0,
    };
    // SAFETY: TIOCSWINSZ reads one winsize from a live local.
    let rc = unsafe { libc::ioctl(fd.as_raw_fd(), libc::TIOCSWINSZ, &size) };
    assert_eq!(rc, 0, "TIOCSWINSZ failed");
}

fn poll_readable(file: &fs::File, timeout: Duration) -> bool {
    let mut fds = libc::pollfd {
        fd: file.as_raw_fd(),
        events: libc::POLLIN,
        revents: 0,
    };
    // SAFETY: poll reads and writes one live pollfd.
    let rc = unsafe { libc::poll(&mut fds, 1, timeout.as_millis() as i32) };
    rc > 0
}

fn find(haystack: &[u8], needle: &[u8]) -> Option<usize> {
    haystack
        .windows(needle.len())
        .position(|window| window == needle)
}

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

/// Reads console frames from a raw attach until `needle` appears in the
/// output; returns everything read.
fn read_output_until(stream: &mut UnixStream, needle: &str) -> String {
    stream.set_read_timeout(Some(DEADLINE)).unwrap();
    let mut seen = Vec::new();
    while find(&seen, needle.as_bytes()).is_none() {
        let frame = proto::read_frame(stream)
            .unwrap_or_else(|err| panic!("{needle:?} not seen before {err}: {:?}", text(&seen)));
        if frame.kind == Kind::Output {
            seen.extend_from_slice(&frame.payload);
        }
    }
    text(&seen)
}

fn attach_raw(daemon: &Daemon, id: &str) -> UnixStream {
    let (stream, response) = daemon.request(&Request::Attach {
        id: id.to_string(),
        window: WindowSize { rows: 24, cols: 80 },
        replay: true,
    });
    match response {
        Ok(Response::Attached { .. }) => stream,
        other => panic!("attach to {id} failed: {other:?}"),
    }
}

#[test]
fn console_streams_and_returns_exit_status() {
    let daemon = Daemon::start();
    let id = daemon.spawn(&["sh", "-c", "echo hello from the payload; exit 7"], false);

    let output = daemon.run(&["console", "-n", &id[..4]]);
    assert_eq!(output.status.code(), Some(7), "{}", text(&output.stderr));
    assert!(text(&output.stdout).contains("hello from the payload"));

    let logs = daemon.run(&["logs", &id]);
    assert!(logs.status.success(), "{}", text(&logs.stderr));
    assert!(text(&logs.stdout).contains("hello from the payload"));

    let listing = daemon.run(&["instances", "-a"]);
    let listing = text(&listing.stdout);
    assert!(listing.starts_with("INSTANCE"), "{listing}");
    assert!(listing.contains(&id), "{listing}");
    assert!(listing.contains("exited(7)"), "{listing}");

    let running = daemon.run(&["instances", "-q"]);
    assert_eq!(
        text(&running.stdout),
        "",
        "exited instances are listed only with -a"
    );

    let json = daemon.run(&["instances", "-a", "--format", "json"]);
    let parsed: serde_json::Value = serde_json::from_slice(&json.stdout).unwrap();
    assert_eq!(parsed[0]["id"], id.as_str());
    assert_eq!(parsed[0]["exit_status"], 7);
}

#[test]
fn attach_detach_and_replay() {
    let daemon = Daemon::start();
    let id = daemon.spawn(
        &[
            "sh",
            "-c",
            "echo started; while read line; do echo \"got:$line\"; done",
        ],
        true,
    );

    let mut first = PtyClient::start(&daemon, &["console", "--name", &id], 24, 80);
    first.expect("started");
    first.write(b"abc\r");
    first.expect("got:abc");
    first.write(&[0x11]);
    let status = first.wait();
    assert!(status.success(), "detach should exit 0, got {status:?}");

    let listed = daemon.list(false);
    assert_eq!(listed.len(), 1);
    assert_eq!(
        listed[0].state, "running",
        "detaching must leave it running"
    );

    let mut second = PtyClient::start(&daemon, &["console", "--name", &id], 24, 80);
    second.expect("started");
    second.expect("got:abc");
    second.write(b"def\r");
    second.expect("got:def");

    // A second console watches the same container and may type too.
    let mut third = PtyClient::start(&daemon, &["console", "--name", &id], 24, 80);
    third.expect("got:def");
    third.write(b"ghi\r");
    third.expect("got:ghi");
    second.expect("got:ghi");

    second.write(b"x");
    third.write(&[0x11]);
    assert!(third.wait().success());
    second.write(&[0x11]);
    assert!(second.wait().success());
}

#[test]
fn detach_keys_option_changes_sequence() {
    let daemon = Daemon::start();
    let id = daemon.spawn(
        &["sh", "-c", "echo up; while read l; do echo \"n:$l\"; done"],
        true,
    );

    let mut client = PtyClient::start(
        &daemon,
        &["console", "-n", &id, "--detach-keys", "ctrl-p,ctrl-q"],
        24,
        80,
    );
    client.expect("up");
    // Ctrl+Q alone is typed into the container, not a detach.
    client.write(&[0x11]);
    client.write(b"one\r");
    client.expect("n:");
    client.expect("one");
    client.write(&[0x10, 0x11]);
    assert!(client.wait().success());
}

#[test]
fn window_size_set_before_output_and_on_resize() {
    let daemon = Daemon::start();
    let id = daemon.spawn(
        &["sh", "-c", "stty size; while read l; do stty size; done"],
        false,
    );

    let mut client = PtyClient::start(&daemon, &["console", "-n", &id], 31, 97);
    client.expect("31 97");

    set_window_size(
        &fs::File::try_clone(&client.master).unwrap().into(),
        42,
        123,
    );
    // The resize travels on its own, so poll with keystrokes until the
    // payload reports the new size.
    let deadline = Instant::now() + DEADLINE;
    loop {
        client.write(b"\r");
        if find(&client.seen, b"42 123").is_some() {
            break;
        }
        let _ = poll_readable(&client.master, Duration::from_millis(200));
        let mut buf = [0u8; 4096];
        if let Ok(n) = client.master.read(&mut buf) {
            client.seen.extend_from_slice(&buf[..n]);
        }
        assert!(
            Instant::now() < deadline,
            "resize never reached stty: {:?}",
            text(&client.seen)
        );
    }
}

#[test]
fn stop_with_grace_then_kill() {
    let daemon = Daemon::start();
    let polite = daemon.spawn(&["sleep", "1000"], true);
    let stubborn = daemon.spawn(
        &[
            "sh",
            "-c",
            "trap '' TERM; echo ready; while :; do sleep 1; done",
        ],
        true,
    );
    let killed = daemon.spawn(&["sleep", "1000"], true);
    let held = daemon.spawn(&["sleep", "1000"], false);

    let output = daemon.run(&["instances", "--stop", &polite]);
    assert!(output.status.success(), "{}", text(&output.stderr));
    assert_eq!(
        text(&output.stdout).trim(),
        format!("{polite} exited with status 143")
    );

    let mut watch = attach_raw(&daemon, &stubborn);
    read_output_until(&mut watch, "ready");
    let output = daemon.run(&["instances", "--stop", &stubborn, "--time", "1"]);
    assert!(output.status.success(), "{}", text(&output.stderr));
    assert_eq!(
        text(&output.stdout).trim(),
        format!("{stubborn} exited with status 137"),
        "SIGTERM is ignored, so SIGKILL must end it"
    );
    let supervisor_log =
        fs::read_to_string(daemon.instance_dir(&stubborn).join("supervisor.log")).unwrap();
    assert!(
        supervisor_log.contains("sending SIGKILL"),
        "{supervisor_log}"
    );

    let output = daemon.run(&["instances", "--kill", &killed]);
    assert_eq!(
        text(&output.stdout).trim(),
        format!("{killed} exited with status 137")
    );

    let output = daemon.run(&["instances", "--stop", &held]);
    assert_eq!(
        text(&output.stdout).trim(),
        format!("{held} exited with status 143")
    );

    let output = daemon.run(&["instances", "--stop", "0000000000"]);
    assert_eq!(output.status.code(), Some(1));
    assert!(
        text(&output.stderr).contains("not found"),
        "{}",
        text(&output.stderr)
    );
}

#[test]
fn exec_with_pipes_and_tty() {
    let daemon = Daemon::start();
    let id = daemon.spawn(&["sleep", "1000"], true);

    let output = daemon.run(&[
        "exec",
        &id,
        "--",
        "sh",
        "-c",
        "echo out; echo err >&2; exit 3",
    ]);
    assert_eq!(output.status.code(), Some(3), "{}", text(&output.stderr));
    assert_eq!(text(&output.stdout), "out\n");
    assert_eq!(text(&output.stderr), "err\n");

    let output = daemon
        .client()
        .args(["exec", &id, "--", "cat"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .and_then(|mut child| {
            child.stdin.take().unwrap().write_all(b"through stdin\n")?;
            child.wait_with_output()
        })
        .unwrap();
    assert!(output.status.success());
    assert_eq!(text(&output.stdout), "through stdin\n");

    let output = daemon.run(&["exec", "-t", &id, "--", "tty"]);
    assert!(output.status.success(), "{}", text(&output.stderr));
    assert!(
        text(&output.stdout).starts_with("/dev/pts/"),
        "{}",
        text(&output.stdout)
    );

    let output = daemon.run(&["exec", &id]);
    assert_eq!(
        output.status.code(),
        Some(2),
        "a missing command is a usage error"
    );
    assert!(text(&output.stderr).contains("no command given"));
}

#[test]
fn logs_follow_until_exit() {
    let daemon = Daemon::start();
    let id = daemon.spawn(&["sh", "-c", "echo first; read x; echo second"], true);
    let mut console = attach_raw(&daemon, &id);
    read_output_until(&mut console, "first");

    let follower = daemon
        .client()
        .args(["logs", "-f", &id])
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    // Let the payload go on only once the follower is subscribed, so the
    // second line reaches it live.
    let supervisor_log = daemon.instance_dir(&id).join("supervisor.log");
    let deadline = Instant::now() + DEADLINE;
    while !fs::read_to_string(&supervisor_log)
        .unwrap_or_default()
        .contains("log follower")
    {
        assert!(Instant::now() < deadline, "the follower never subscribed");
        thread::sleep(Duration::from_millis(20));
    }
    proto::write_frame(&mut console, Kind::Stdin, b"go\n").unwrap();

    let output = follower.wait_with_output().unwrap();
    assert!(output.status.success());
    let followed = text(&output.stdout);
    assert!(followed.contains("first"), "{followed}");
    assert!(followed.contains("second"), "{followed}");
    assert_eq!(followed.matches("first").count(), 1, "{followed}");
}

#[test]
fn non_root_user_refused() {
    let daemon = Daemon::start();
    // Open the socket's file mode so the connection reaches cblockd; the
    // peer credential check must reject it there.
    fs::set_permissions(&daemon.socket, fs::Permissions::from_mode(0o666)).unwrap();

    let output = as_nobody(daemon.client().arg("instances"));
    assert_eq!(output.status.code(), Some(1));
    assert!(
        text(&output.stderr).contains("permission denied"),
        "{}",
        text(&output.stderr)
    );
    assert!(
        daemon.log_text().contains("uid 65534"),
        "{}",
        daemon.log_text()
    );
    assert!(daemon.log_text().contains("rejected: permission denied"));

    // Root still gets through.
    assert!(daemon.run(&["instances"]).status.success());
}

#[test]
fn sock_owner_group_member_accepted() {
    let daemon = Daemon::start_with(&["-o", "65534"]);
    let mode = fs::metadata(&daemon.socket).unwrap().permissions().mode();
    assert_eq!(mode & 0o777, 0o660);

    let output = as_nobody(daemon.client().arg("instances"));
    assert!(output.status.success(), "{}", text(&output.stderr));
    assert!(text(&output.stdout).starts_with("INSTANCE"));

    // Without --enable-test-processes the test-only request is rejected.
    let (_, response) = daemon.request(&Request::TestProcess(TestProcessRequest {
        argv: vec!["true".into()],
        ..Default::default()
    }));
    let err = response.unwrap_err().to_string();
    assert!(err.contains("test processes are disabled"), "{err}");
}

fn as_nobody(command: &mut Command) -> Output {
    // SAFETY: setgroups, setgid and setuid are async-signal-safe.
    unsafe {
        command.pre_exec(|| {
            if libc::setgroups(0, std::ptr::null()) != 0
                || libc::setgid(NOBODY) != 0
                || libc::setuid(NOBODY) != 0
            {
                return Err(std::io::Error::last_os_error());
            }
            Ok(())
        });
    }
    command.stdin(Stdio::null()).output().unwrap()
}

/// Sends raw bytes as a request and returns the daemon's error message.
fn raw_error(daemon: &Daemon, bytes: &[u8]) -> String {
    let mut stream = UnixStream::connect(&daemon.socket).unwrap();
    stream.write_all(bytes).unwrap();
    let frame = proto::read_frame(&mut stream).expect("an error frame");
    assert_eq!(frame.kind, Kind::Error);
    text(&frame.payload)
}

fn header(version: u8, kind: u8, len: u32) -> Vec<u8> {
    let mut bytes = vec![b'C', b'B', version, kind];
    bytes.extend_from_slice(&len.to_be_bytes());
    bytes
}

#[test]
fn bad_input_leaves_daemon_serving() {
    let daemon = Daemon::start();
    let id = daemon.spawn(
        &[
            "sh",
            "-c",
            "i=0; while :; do i=$((i+1)); echo line $i; sleep 0.05; done",
        ],
        true,
    );

    let err = raw_error(&daemon, b"GET / HTTP/1.0\r\n\r\n");
    assert!(err.contains("malformed frame"), "{err}");

    let err = raw_error(&daemon, &header(proto::VERSION + 1, 1, 2));
    assert!(err.contains("protocol version 2 is not supported"), "{err}");

    let err = raw_error(&daemon, &header(proto::VERSION, 1, 1 << 30));
    assert!(err.contains("exceeds the limit"), "{err}");

    let err = raw_error(&daemon, &header(proto::VERSION, 77, 0));
    assert!(err.contains("unknown frame kind 77"), "{err}");

    let mut body = header(proto::VERSION, 1, 9);
    body.extend_from_slice(b"{not json");
    let err = raw_error(&daemon, &body);
    assert!(err.contains("invalid request"), "{err}");

    let long_id = "a".repeat(5000);
    let (_, response) = daemon.request(&Request::Attach {
        id: long_id,
        window: WindowSize::default(),
        replay: true,
    });
    let err = response.unwrap_err().to_string();
    assert!(err.contains("not a valid id"), "{err}");

    let (_, response) = daemon.request(&Request::TestProcess(TestProcessRequest {
        argv: vec!["x".repeat(proto::MAX_FIELD + 1)],
        ..Default::default()
    }));
    let err = response.unwrap_err().to_string();
    assert!(err.contains("the limit is 4096"), "{err}");

    // A console that sends a frame of the wrong kind is closed.
    let mut console = attach_raw(&daemon, &id);
    read_output_until(&mut console, "line");
    proto::write_json(&mut console, Kind::Request, &Request::Ping).unwrap();
    let deadline = Instant::now() + DEADLINE;
    while proto::read_frame(&mut console).is_ok() {
        assert!(Instant::now() < deadline, "the session was not closed");
    }

    // Clients that vanish: in the middle of a frame, and while output is
    // streaming to them without being read.
    let mut half = UnixStream::connect(&daemon.socket).unwrap();
    half.write_all(&header(proto::VERSION, 1, 100)).unwrap();
    half.write_all(b"{\"type\":").unwrap();
    drop(half);
    for _ in 0..3 {
        let console = attach_raw(&daemon, &id);
        drop(console);
    }
    let mut mid = attach_raw(&daemon, &id);
    read_output_until(&mut mid, "line");
    proto::write_frame(&mut mid, Kind::Stdin, b"").unwrap();
    mid.shutdown(std::net::Shutdown::Both).unwrap();
    drop(mid);

    // The daemon and the instance still serve everyone else.
    let mut again = attach_raw(&daemon, &id);
    let seen = read_output_until(&mut again, "line");
    assert!(
        seen.contains("line 1"),
        "replay starts at the beginning: {seen}"
    );
    let listed = daemon.list(false);
    assert_eq!(listed.len(), 1);
    assert_eq!(listed[0].id, id);
    assert!(daemon.run(&["instances"]).status.success());
}

#[test]
fn launch_rejects_bad_arguments() {
    let daemon = Daemon::start();

    let output = daemon.run(&[
        "launch",
        "-n",
        "alpine:3.20",
        "--rm",
        "-e",
        "A=1",
        "--",
        "true",
    ]);
    assert_eq!(output.status.code(), Some(1));
    assert!(
        text(&output.stderr).contains("\"alpine:3.20\" not found"),
        "{}",
        text(&output.stderr)
    );

    // The client rejects invalid values as usage errors (exit status 2);
    // what only the daemon can judge fails with status 1.
    let cases: &[(&[&str], &str, i32)] = &[
        (&["-V", "relative:/data"], "relative path", 2),
        (&["-V", "/a:/b:rx"], "ro or rw", 2),
        (&["-P", "8080:80"], "need a NAT network", 2),
        (&["-N", "br0", "-P", "0:80"], "ports from 1 to 65535", 2),
        (&["-N", "br0"], "network \"br0\" is not available yet", 1),
        (&["--memory", "lots"], "--memory", 2),
        (&["--cpus", "0"], "--cpus", 2),
        (&["--pids-limit", "0"], "--pids-limit 0", 2),
        (&["--detach-keys", "ctrl-"], "--detach-keys", 2),
        (&["-H", "-N", "br0"], "conflicts", 2),
        (&["-e", "=x"], "has no name", 2),
        (&["--tmpfs", "tmp"], "not absolute", 2),
        (&["--hostname", "a b"], "hostname \"a b\" is not valid", 1),
        (&["-V", "/tmp:/"], "container's root", 1),
        (&["-V", "/tmp:/dev"], "path the runtime builds", 1),
        (&["--tmpfs", "/proc/sys"], "path the runtime builds", 1),
        (&["--tmpfs", "/scratch:dev"], "tmpfs option \"dev\"", 1),
    ];
    for (extra, message, code) in cases {
        let mut args = vec!["launch", "-n", "alpine"];
        args.extend_from_slice(extra);
        let output = daemon.run(&args);
        assert_eq!(output.status.code(), Some(*code), "{extra:?}");
        assert!(
            text(&output.stderr).contains(message),
            "{extra:?}: {}",
            text(&output.stderr)
        );
    }

    let left = fs::read_dir(daemon.data.join("instances")).unwrap().count();
    assert_eq!(left, 0, "a rejected launch must leave nothing behind");
}

/// Puts a busybox image named `busybox:latest` into the store of a data
/// directory, before a daemon opens it.
fn add_busybox_image(data: &Path) {
    use cblocks::image::reference::Reference;
    use cblocks::image::Store;
    use cblocks::oci::image_spec::{ContainerConfig, ImageConfig};
    use cblocks::storage::{write_diff, DiffSource, DriverKind};

    let tree = data.with_file_name("busybox-tree");
    fs::create_dir_all(tree.join("bin")).unwrap();
    fs::create_dir_all(tree.join("etc")).unwrap();
    fs::copy("/bin/busybox", tree.join("bin/busybox"))
        .expect("/bin/busybox is missing; install busybox-static");
    for applet in [
        "sh", "true", "cat", "echo", "stty", "hostname", "sleep", "tty", "id", "ls",
    ] {
        std::os::unix::fs::symlink("busybox", tree.join("bin").join(applet)).unwrap();
    }
    fs::write(
        tree.join("etc/passwd"),
        "root:x:0:0::/:/bin/sh\nguest:x:405:100::/:/bin/sh\n",
    )
    .unwrap();
    fs::write(
        tree.join("etc/group"),
        "root:x:0:\nusers:x:100:\naudio:x:29:guest\n",
    )
    .unwrap();

    let mut layer_tar = Vec::new();
    write_diff(
        DiffSource::Trees {
            lower: None,
            upper: &tree,
        },
        &mut layer_tar,
    )
    .unwrap();
    let store = Store::open(data, DriverKind::Overlay).unwrap();
    let layer = store
        .commit_tar(None, &mut std::io::Cursor::new(layer_tar), "daemon-test")
        .unwrap();
    let config = ImageConfig {
        architecture: "amd64".into(),
        os: "linux".into(),
        config: Some(ContainerConfig {
            cmd: Some(vec!["/bin/sh".into()]),
            env: Some(vec!["PATH=/bin".into()]),
            working_dir: Some("/".into()),
            ..Default::default()
        }),
        ..Default::default()
    };
    store
        .add_image(
            config,
            Some(&layer.chain_id),
            Default::default(),
            &[Reference::parse("busybox:latest").unwrap()],
        )
        .unwrap();
}

impl Daemon {
    /// Starts a daemon whose store contains the busybox image.
    fn start_with_busybox() -> Daemon {
        let mut daemon = Daemon::start_with(&["--storage", "overlay"]);
        daemon.kill_hard();
        add_busybox_image(&daemon.data);
        daemon.launch_process();
        daemon
    }
}

#[test]
fn launch_container_end_to_end() {
    let daemon = Daemon::start_with_busybox();

    // Script use: no terminal on stdin, the container's exit status out.
    let output = daemon.run(&[
        "launch",
        "-n",
        "busybox",
        "--rm",
        "-e",
        "GREETING=hi",
        "--",
        "sh",
        "-c",
        "echo $GREETING from $(hostname); exit 3",
    ]);
    assert_eq!(
        output.status.code(),
        Some(3),
        "stdout: {}\nstderr: {}\nlog:\n{}",
        text(&output.stdout),
        text(&output.stderr),
        daemon.log_text()
    );
    let stdout = text(&output.stdout);
    let stderr = text(&output.stderr);
    assert!(
        stderr.contains("container launched: instance: "),
        "{stderr}"
    );
    assert!(
        !stdout.contains("container launched"),
        "the launch line mixes with the container's output: {stdout}"
    );
    let id = stderr
        .split("instance: ")
        .nth(1)
        .unwrap()
        .split_whitespace()
        .next()
        .unwrap()
        .to_string();
    assert!(stdout.contains(&format!("hi from {id}")), "{stdout}");
    let deadline = Instant::now() + DEADLINE;
    while daemon.instance_dir(&id).exists() {
        assert!(
            Instant::now() < deadline,
            "--rm instance {id} was not removed"
        );
        thread::sleep(Duration::from_millis(20));
    }

    // An attached launch: the container's terminal has the client's size
    // before the container's first output.
    let mut sized = PtyClient::start(
        &daemon,
        &["launch", "-n", "busybox", "--rm", "--", "stty", "size"],
        27,
        88,
    );
    sized.expect("27 88");
    assert!(sized.wait().success());

    // Interactive use through a terminal: the size is set before the first
    // output, Ctrl+Q detaches, the console replays on re-attach.
    let launched = daemon.run(&[
        "launch",
        "-n",
        "busybox",
        "-A",
        "--hostname",
        "web",
        "-u",
        "guest",
        "--",
        "sh",
        "-c",
        "echo up as $(id -u) groups $(id -G); while read l; do echo \"got:$l\"; stty size; done",
    ]);
    assert!(launched.status.success(), "{}", text(&launched.stderr));
    let listed = daemon.list(false);
    let id = listed[0].id.clone();
    assert_eq!(listed[0].image, "busybox:latest");
    let tty = listed[0].tty.clone().unwrap_or_default();
    assert!(tty.starts_with("/dev/pts/"), "{tty}");
    let mut console = PtyClient::start(&daemon, &["console", "-n", "web"], 33, 101);
    console.expect("up as 405 groups 100 29");
    console.write(b"one\r");
    console.expect("got:one");
    console.expect("33 101");
    console.write(&[0x11]);
    assert!(console.wait().success());

    let output = daemon.run(&["exec", "web", "--", "hostname"]);
    assert!(output.status.success(), "{}", text(&output.stderr));
    assert_eq!(text(&output.stdout).trim(), "web");

    let mut again = PtyClient::start(&daemon, &["console", "-n", &id[..5]], 33, 101);
    again.expect("got:one");
    again.write(&[0x11]);
    assert!(again.wait().success());

    let output = daemon.run(&["instances", "--stop", "web", "--time", "2"]);
    assert!(output.status.success(), "{}", text(&output.stderr));
    assert!(
        text(&output.stdout).starts_with(&format!("{id} exited with status")),
        "{}",
        text(&output.stdout)
    );
    assert!(daemon.list(false).is_empty());

    let output = daemon.run(&["logs", "web"]);
    assert!(text(&output.stdout).contains("got:one"));
    let output = daemon.run(&["instances", "--prune"]);
    assert!(
        text(&output.stdout).contains(&id),
        "{}\n{}",
        text(&output.stdout),
        daemon.log_text()
    );
    assert!(!daemon.instance_dir(&id).exists());
}

#[test]
fn client_without_daemon_names_socket() {
    let output = Command::new(binary())
        .args(["-U", "/nonexistent/cblock.sock", "instances"])
        .output()
        .unwrap();
    assert_eq!(output.status.code(), Some(1));
    let err = text(&output.stderr);
    assert!(err.contains("/nonexistent/cblock.sock"), "{err}");
    assert!(err.contains("CBLOCK_SOCKET"), "{err}");

    let help = Command::new(binary())
        .env("CBLOCK_SOCKET", "/nonexistent/cblock.sock")
        .args(["launch", "--help"])
        .output()
        .unwrap();
    assert!(help.status.success(), "--help needs no daemon");
}

#[test]
fn prune_and_remove_on_exit() {
    let daemon = Daemon::start();
    let kept = daemon.spawn(&["sh", "-c", "exit 0"], true);
    let removed = daemon.spawn_with(TestProcessRequest {
        argv: vec!["sh".into(), "-c".into(), "exit 0".into()],
        start: true,
        remove: true,
        ..Default::default()
    });
    let running = daemon.spawn(&["sleep", "1000"], true);
    daemon.wait_exit(&kept);

    let deadline = Instant::now() + DEADLINE;
    while daemon.instance_dir(&removed).exists() {
        assert!(Instant::now() < deadline, "--rm instance was not removed");
        thread::sleep(Duration::from_millis(20));
    }

    let output = daemon.run(&["instances", "--prune"]);
    assert!(output.status.success());
    assert_eq!(
        text(&output.stdout).trim(),
        format!("Removing stale instance: {kept}")
    );
    assert!(!daemon.instance_dir(&kept).exists());
    assert!(daemon.instance_dir(&running).exists());
}

#[test]
fn ids_match_by_unique_prefix_and_name() {
    let daemon = Daemon::start();
    let named = daemon.spawn_with(TestProcessRequest {
        argv: vec!["sleep".into(), "1000".into()],
        start: true,
        name: Some("web".into()),
        ..Default::default()
    });
    let output = daemon.run(&["exec", "web", "--", "true"]);
    assert!(output.status.success(), "{}", text(&output.stderr));
    let output = daemon.run(&["exec", &named[..3], "--", "true"]);
    assert!(output.status.success(), "{}", text(&output.stderr));

    let (_, response) = daemon.request(&Request::TestProcess(TestProcessRequest {
        argv: vec!["true".into()],
        name: Some("web".into()),
        ..Default::default()
    }));
    assert!(response.unwrap_err().to_string().contains("in use"));

    // With 17 instances two ids share a first hex digit, so some
    // one-character prefix is ambiguous.
    let mut ids = vec![named];
    for _ in 0..16 {
        ids.push(daemon.spawn(&["sleep", "1000"], false));
    }
    let ambiguous = (0..16u8)
        .map(|d| format!("{d:x}"))
        .find(|p| ids.iter().filter(|id| id.starts_with(p.as_str())).count() > 1)
        .unwrap();
    let output = daemon.run(&["exec", &ambiguous, "--", "true"]);
    assert_eq!(output.status.code(), Some(1));
    assert!(
        text(&output.stderr).contains("ambiguous"),
        "{}",
        text(&output.stderr)
    );
}

#[test]
fn instances_survive_daemon_kill() {
    let mut daemon = Daemon::start();
    let mut ids = Vec::new();
    for i in 0..20 {
        let script = format!("echo marker-{i}-ready; exec sleep 100000");
        ids.push(daemon.spawn(&["sh", "-c", &script], true));
    }
    for (i, id) in ids.iter().enumerate() {
        let mut console = attach_raw(&daemon, id);
        read_output_until(&mut console, &format!("marker-{i}-ready"));
    }

    daemon.kill_hard();
    daemon.launch_process();

    let listed = daemon.list(false);
    assert_eq!(listed.len(), 20, "{listed:?}");
    for (i, id) in ids.iter().enumerate() {
        let info = listed.iter().find(|info| &info.id == id).unwrap();
        assert_eq!(info.state, "running", "{id}");
        let mut console = attach_raw(&daemon, id);
        let replay = read_output_until(&mut console, &format!("marker-{i}-ready"));
        assert!(replay.contains(&format!("marker-{i}-ready")));
    }
    assert!(daemon.log_text().contains("found 20 running instances"));

    // The new daemon also notices exits of recovered instances.
    let output = daemon.run(&["instances", "--kill", &ids[0]]);
    assert!(output.status.success(), "{}", text(&output.stderr));
    assert_eq!(daemon.list(false).len(), 19);
}

#[test]
fn sigterm_leaves_instances_running() {
    let mut daemon = Daemon::start();
    let id = daemon.spawn(&["sh", "-c", "echo alive; exec sleep 100000"], true);
    let mut child = daemon.process.take().unwrap();
    // SAFETY: kill takes no pointers.
    unsafe { libc::kill(child.id() as i32, libc::SIGTERM) };
    let status = child.wait().unwrap();
    assert!(
        status.success(),
        "SIGTERM should stop cblockd cleanly: {status:?}"
    );
    assert!(!daemon.socket.exists(), "the socket is removed on SIGTERM");

    daemon.launch_process();
    let mut console = attach_raw(&daemon, &id);
    read_output_until(&mut console, "alive");
}

#[test]
fn sighup_reopens_log_file() {
    let daemon = Daemon::start();
    let rotated = daemon.dir.join("cblockd.log.0");
    fs::rename(&daemon.log, &rotated).unwrap();
    let pid = daemon.process.as_ref().unwrap().id() as i32;
    // SAFETY: kill takes no pointers.
    unsafe { libc::kill(pid, libc::SIGHUP) };
    daemon.wait_for_log("reopened the log file");
    assert!(fs::read_to_string(&rotated).unwrap().contains("starting"));
    let line = daemon.log_text();
    let first = line.lines().next().unwrap();
    assert!(first.contains("Z INFO"), "timestamp and level: {first}");
}

#[test]
fn panic_in_connection_spares_daemon() {
    let daemon = Daemon::start();
    let (_, response) = daemon.request(&Request::TestPanic);
    assert!(
        matches!(response, Err(proto::ProtocolError::Closed)),
        "the panicking connection closes without a response: {response:?}"
    );
    // The connection closes while unwinding, before the line is logged.
    daemon.wait_for_log("panicked; closed it");
    assert!(daemon.run(&["instances"]).status.success());
}

/// Mounts tracefs for bpftrace when it is missing, and unmounts it again.
struct TracefsGuard {
    mounted: bool,
}

impl TracefsGuard {
    fn mount() -> TracefsGuard {
        let path = Path::new("/sys/kernel/tracing");
        let present = path.join("uprobe_events").exists();
        let mounted = !present
            && path.is_dir()
            && Command::new("mount")
                .args(["-t", "tracefs", "tracefs", "/sys/kernel/tracing"])
                .status()
                .is_ok_and(|s| s.success());
        TracefsGuard { mounted }
    }
}

impl Drop for TracefsGuard {
    fn drop(&mut self) {
        if self.mounted {
            let _ = Command::new("umount").arg("/sys/kernel/tracing").status();
        }
    }
}

#[test]
fn usdt_probes_listed_and_fired() {
    let listing = Command::new("bpftrace")
        .args(["-l", &format!("usdt:{}:*", binary())])
        .output()
        .expect("bpftrace is needed for this test; install it (apt-get install bpftrace)");
    let probes = text(&listing.stdout);
    for probe in [
        "cblock_create",
        "cblock_destroy",
        "cblock_cleanup",
        "cblock_console_attach",
        "cblock_console_detach",
        "cblock_build_step_start",
        "cblock_build_step_done",
    ] {
        assert!(
            probes.contains(&format!("cblockd:{probe}")),
            "{probe} missing from: {probes}{}",
            text(&listing.stderr)
        );
    }

    let _tracefs = TracefsGuard::mount();
    let daemon = Daemon::start();
    let pid = daemon.process.as_ref().unwrap().id().to_string();
    let script = format!(
        "usdt:{}:cblockd:cblock_destroy {{ printf(\"destroy %s %d\\n\", str(arg0), arg1); }}",
        binary()
    );
    let out_path = daemon.dir.join("bpftrace.out");
    let mut tracer = Command::new("bpftrace")
        .args(["-p", &pid, "-e", &script])
        .stdout(fs::File::create(&out_path).unwrap())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();

    // Attaching takes a moment and prints nothing reliable when done, so
    // keep creating instances until the tracer reports one.
    let deadline = Instant::now() + DEADLINE;
    loop {
        let id = daemon.spawn(&["sh", "-c", "exit 5"], true);
        daemon.wait_exit(&id);
        let expected = format!("destroy {id} 5");
        let fired = (0..50).any(|_| {
            thread::sleep(Duration::from_millis(20));
            fs::read_to_string(&out_path)
                .unwrap_or_default()
                .contains(&expected)
        });
        if fired {
            break;
        }
        if let Some(status) = tracer.try_wait().unwrap() {
            let mut err = String::new();
            tracer
                .stderr
                .take()
                .unwrap()
                .read_to_string(&mut err)
                .unwrap();
            panic!(
                "bpftrace exited with {status} before the probe fired; the kernel cannot \
                 trace user-space probes here (uprobes): {err}"
            );
        }
        assert!(
            Instant::now() < deadline,
            "cblock_destroy never reached bpftrace"
        );
    }
    let _ = tracer.kill();
    let _ = tracer.wait();
}

#[test]
fn usdt_build_step_probes_fire() {
    let _tracefs = TracefsGuard::mount();
    let dir = PathBuf::from(format!("/tmp/cbd-probe-{}", std::process::id()));
    let _ = fs::remove_dir_all(&dir);
    fs::create_dir_all(dir.join("context")).unwrap();
    fs::write(
        dir.join("context/Cblockfile"),
        "FROM scratch\nENV PROBED=yes\n",
    )
    .unwrap();
    let script = format!(
        "usdt:{bin}:cblockd:cblock_build_step_start {{ printf(\"start %d %s\\n\", arg1, str(arg2)); }} \
         usdt:{bin}:cblockd:cblock_build_step_done {{ printf(\"done %d %d\\n\", arg1, arg2); }}",
        bin = binary()
    );
    let out_path = dir.join("bpftrace.out");
    let mut tracer = Command::new("bpftrace")
        .args(["-e", &script])
        .stdout(fs::File::create(&out_path).unwrap())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();

    // As above, build until the tracer, attached after a moment, reports
    // the steps of one build.
    let deadline = Instant::now() + DEADLINE;
    let data = dir.join("data");
    let fired = loop {
        let built = Command::new(binary())
            .args(["build", "-q", "-d", data.to_str().unwrap(), "-n", "probed"])
            .arg(dir.join("context"))
            .stdin(Stdio::null())
            .output()
            .unwrap();
        assert!(built.status.success(), "{}", text(&built.stderr));
        thread::sleep(Duration::from_millis(200));
        let out = fs::read_to_string(&out_path).unwrap_or_default();
        if out.contains("start 2 ENV PROBED=yes") && out.contains("done 2 0") {
            break true;
        }
        if tracer.try_wait().unwrap().is_some() || Instant::now() >= deadline {
            break false;
        }
    };
    let _ = tracer.kill();
    let _ = tracer.wait();
    let out = fs::read_to_string(&out_path).unwrap_or_default();
    let _ = fs::remove_dir_all(&dir);
    assert!(fired, "the build step probes never reached bpftrace: {out}");
}
