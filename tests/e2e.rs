//! The main job end to end, as a new user runs it: cblockd, the forge, the
//! base, builder and web examples built from the real Debian archive, a
//! request to the web server, a console re-attached with its scrollback,
//! and a `--rm` launch of base.
//!
//! The Debian root file system comes from `examples/base/mkrootfs.sh`,
//! which runs debootstrap once per machine and caches the archive in
//! `/var/cache/cblocks`. The builder example fetches gcc with apt-get, so
//! this test needs the Debian mirror of apt's sources.

mod common;

use std::fs;
use std::io::{Read, Write};
use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

const CBLOCK: &str = env!("CARGO_BIN_EXE_cblock");
/// The address the web example serves on, from its ENTRYPOINT.
const WEB_ADDRESS: &str = "127.0.0.1:8080";

/// A daemon with its own data directory and socket, stopped and removed on
/// drop with every instance and mount it made, even when the test fails.
struct Daemon {
    dir: PathBuf,
    child: Child,
}

impl Daemon {
    fn start() -> Daemon {
        let dir = std::env::temp_dir().join(format!("cblocks-e2e-{}", std::process::id()));
        let _ = fs::remove_dir_all(&dir);
        fs::create_dir_all(&dir).unwrap();
        let child = Command::new(CBLOCK)
            .args(["daemon", "-d"])
            .arg(dir.join("data"))
            .arg("-U")
            .arg(dir.join("sock"))
            .arg("-l")
            .arg(dir.join("cblockd.log"))
            .stdin(Stdio::null())
            .spawn()
            .expect("starting cblockd");
        let daemon = Daemon { dir, child };
        let deadline = Instant::now() + Duration::from_secs(10);
        while !daemon.socket().exists() {
            assert!(
                Instant::now() < deadline,
                "cblockd did not create its socket"
            );
            std::thread::sleep(Duration::from_millis(50));
        }
        daemon
    }

    fn socket(&self) -> PathBuf {
        self.dir.join("sock")
    }

    fn data(&self) -> PathBuf {
        self.dir.join("data")
    }

    /// Runs `cblock ARGS` against this daemon in `cwd`, stdin closed.
    fn cblock(&self, cwd: &Path, args: &[&str]) -> Output {
        Command::new(CBLOCK)
            .current_dir(cwd)
            .env("CBLOCK_SOCKET", self.socket())
            .args(args)
            .stdin(Stdio::null())
            .output()
            .expect("running cblock")
    }

    /// Runs `cblock ARGS` and fails the test with its output unless it
    /// exits with status 0; returns its standard output.
    fn ok(&self, cwd: &Path, args: &[&str]) -> String {
        let output = self.cblock(cwd, args);
        assert!(
            output.status.success(),
            "cblock {args:?} failed with {}\nstdout:\n{}\nstderr:\n{}",
            output.status,
            String::from_utf8_lossy(&output.stdout),
            String::from_utf8_lossy(&output.stderr)
        );
        String::from_utf8_lossy(&output.stdout).into_owned()
    }
}

impl Drop for Daemon {
    fn drop(&mut self) {
        let root = Path::new(env!("CARGO_MANIFEST_DIR"));
        if let Ok(ids) = String::from_utf8(self.cblock(root, &["instances", "-q"]).stdout) {
            for id in ids.split_whitespace() {
                let _ = self.cblock(root, &["instances", "--kill", id]);
            }
        }
        let _ = self.cblock(root, &["instances", "--prune"]);
        let _ = self.child.kill();
        let _ = self.child.wait();

        common::unmount_below(&self.dir);
        let _ = fs::remove_dir_all(&self.dir);
    }
}

fn examples() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("examples")
}

/// Fetches `/` from the web example, retrying while it starts.
fn fetch_web() -> String {
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        if let Ok(mut stream) = TcpStream::connect(WEB_ADDRESS) {
            stream
                .set_read_timeout(Some(Duration::from_secs(5)))
                .unwrap();
            stream
                .write_all(b"GET / HTTP/1.0\r\nHost: localhost\r\n\r\n")
                .unwrap();
            let mut reply = String::new();
            if stream.read_to_string(&mut reply).is_ok() && !reply.is_empty() {
                return reply;
            }
        }
        assert!(
            Instant::now() < deadline,
            "web did not answer on {WEB_ADDRESS}"
        );
        std::thread::sleep(Duration::from_millis(200));
    }
}

/// Attaches `cblock console --name ID` on a new PTY, reads until `expected`
/// appears, then detaches with Ctrl+Q; returns what the console showed.
fn console_until(daemon: &Daemon, id: &str, expected: &str) -> String {
    let pty = nix::pty::openpty(None, None).unwrap();
    let slave = std::fs::File::from(pty.slave);
    let mut child = Command::new(CBLOCK)
        .env("CBLOCK_SOCKET", daemon.socket())
        .args(["console", "--name", id])
        .stdin(slave.try_clone().unwrap())
        .stdout(slave.try_clone().unwrap())
        .stderr(slave)
        .spawn()
        .unwrap();
    let mut master = std::fs::File::from(pty.master);
    common::set_nonblocking(&master);

    let mut seen = String::new();
    let deadline = Instant::now() + Duration::from_secs(20);
    let mut buffer = [0u8; 4096];
    while !seen.contains(expected) && Instant::now() < deadline {
        match master.read(&mut buffer) {
            Ok(n) if n > 0 => seen.push_str(&String::from_utf8_lossy(&buffer[..n])),
            _ => std::thread::sleep(Duration::from_millis(50)),
        }
    }
    master.write_all(&[0x11]).unwrap();
    let status = child.wait().unwrap();
    assert!(
        status.success(),
        "console exited with {status} after Ctrl+Q"
    );
    seen
}

#[test]
fn main_job_end_to_end() {
    if TcpStream::connect(WEB_ADDRESS).is_ok() {
        panic!("{WEB_ADDRESS} is already in use; stop what listens there and run again");
    }
    let rootfs = Command::new(examples().join("base/mkrootfs.sh"))
        .output()
        .expect("running examples/base/mkrootfs.sh");
    assert!(
        rootfs.status.success(),
        "mkrootfs.sh failed: {}",
        String::from_utf8_lossy(&rootfs.stderr)
    );

    let daemon = Daemon::start();
    let data = daemon.data();
    let data = data.to_str().unwrap();
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    daemon.ok(root, &["forge", "-d", data]);

    // The original's seed workflow: cblock build -n NAME . in the
    // example's directory.
    for name in ["base", "builder", "web"] {
        daemon.ok(&examples().join(name), &["build", "-n", name, "."]);
    }
    let images = daemon.ok(root, &["images", "-d", data]);
    for name in ["forge", "base", "builder", "web"] {
        assert!(
            images
                .lines()
                .any(|line| line.starts_with(&format!("{name} "))),
            "{name} missing from:\n{images}"
        );
    }

    let gcc = daemon.ok(
        root,
        &[
            "launch",
            "--rm",
            "--name",
            "builder",
            "--",
            "gcc",
            "--version",
        ],
    );
    assert!(gcc.contains("gcc (Debian"), "builder has no gcc:\n{gcc}");

    let launched = daemon.ok(
        root,
        &[
            "launch",
            "--name",
            "web",
            "--host-networking",
            "--no-attach",
        ],
    );
    let id = launched
        .split_whitespace()
        .last()
        .expect("launch prints the instance id")
        .to_string();
    let reply = fetch_web();
    assert!(reply.starts_with("HTTP/1.0 200 OK"), "{reply}");
    assert!(reply.ends_with("hello from a cellblock\n"), "{reply}");

    let console = console_until(&daemon, &id, "listening on 127.0.0.1:8080");
    assert!(
        console.contains("server: listening on 127.0.0.1:8080"),
        "{console}"
    );
    let listed = daemon.ok(root, &["instances"]);
    assert!(
        listed.contains(&id),
        "web stopped after the detach:\n{listed}"
    );

    let release = daemon.ok(
        root,
        &[
            "launch",
            "--rm",
            "--name",
            "base",
            "--",
            "cat",
            "/etc/debian_version",
        ],
    );
    let version = release
        .lines()
        .last()
        .unwrap_or_default()
        .trim()
        .to_string();
    assert!(
        version.starts_with("12.") && version[3..].chars().all(|c| c.is_ascii_digit()),
        "unexpected /etc/debian_version output: {release}"
    );
    let failed = daemon.cblock(
        root,
        &[
            "launch", "--rm", "--name", "base", "--", "sh", "-c", "exit 3",
        ],
    );
    assert_eq!(
        failed.status.code(),
        Some(3),
        "the client returns the container's status"
    );
}
