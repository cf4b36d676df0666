//! The forge assembled from this host's files must run its programs in a
//! chroot with nothing else in it.

use std::fs;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::Command;

/// A temporary directory removed on drop, even when the test fails.
struct TempDir(PathBuf);

impl TempDir {
    fn new(label: &str) -> TempDir {
        let path = std::env::temp_dir().join(format!(
            "cblocks-test-{label}-{}-{:?}",
            std::process::id(),
            std::thread::current().id()
        ));
        let _ = fs::remove_dir_all(&path);
        fs::create_dir_all(&path).unwrap();
        TempDir(path)
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = fs::remove_dir_all(&self.0);
    }
}

fn run_in_chroot(root: &Path, argv: &[&str]) -> std::process::Output {
    let root = root.to_path_buf();
    let mut command = Command::new(argv[0]);
    command
        .args(&argv[1..])
        .env_clear()
        .env("PATH", "/bin:/usr/bin");
    // SAFETY: chroot and chdir are async-signal-safe and touch no memory
    // shared with the parent.
    unsafe {
        command.pre_exec(move || {
            nix::unistd::chroot(&root)?;
            nix::unistd::chdir("/")?;
            Ok(())
        });
    }
    command
        .output()
        .expect("running a command in the forge chroot")
}

#[test]
fn forge_programs_run_in_chroot() {
    let root = TempDir::new("forge");
    let cblock = Path::new(env!("CARGO_BIN_EXE_cblock"));
    let contents = cblocks::forge::assemble(&root.0, cblock).expect("assembling the forge");

    assert_eq!(contents.programs.len(), cblocks::forge::PROGRAMS.len());
    assert!(
        contents
            .libraries
            .iter()
            .any(|lib| lib.to_string_lossy().contains("libc.so")),
        "libc among {:?}",
        contents.libraries
    );

    let script = "set -e; mkdir -p /tmp/a; echo forged > /tmp/a/f; cp /tmp/a/f /tmp/a/g; \
                  ln -s g /tmp/a/l; tar -cf /tmp/t.tar -C /tmp a; rm -r /tmp/a; \
                  tar -xf /tmp/t.tar -C /tmp; t=$(mktemp); rm \"$t\"; \
                  cat_free=$(while read -r line; do echo \"$line\"; done < /tmp/a/l); \
                  echo \"$cat_free\"; env";
    let output = run_in_chroot(&root.0, &["/bin/sh", "-c", script]);
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(
        output.status.success(),
        "script failed: {}\nstderr: {}",
        output.status,
        String::from_utf8_lossy(&output.stderr)
    );
    assert!(stdout.contains("forged\n"), "stdout: {stdout}");
    assert!(stdout.contains("PATH=/bin:/usr/bin"), "stdout: {stdout}");

    for file in ["etc/services", "etc/protocols"] {
        assert!(root.0.join(file).is_file(), "{file} in the forge");
    }
    let fetch = run_in_chroot(&root.0, &["/usr/bin/fetch", "--help"]);
    assert!(fetch.status.success(), "fetch --help: {:?}", fetch);
    assert!(String::from_utf8_lossy(&fetch.stdout).contains("Download a URL"));
}

#[test]
fn forge_fetch_rejects_other_schemes() {
    let dir = TempDir::new("fetch");
    let link = dir.0.join("fetch");
    std::os::unix::fs::symlink(env!("CARGO_BIN_EXE_cblock"), &link).unwrap();
    let output = Command::new(&link)
        .args(["-o", "/dev/null", "ftp://127.0.0.1/x"])
        .output()
        .unwrap();
    assert_eq!(output.status.code(), Some(1));
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(stderr.contains("unsupported URL"), "stderr: {stderr}");
}

#[test]
fn forge_missing_library_is_named() {
    let dir = TempDir::new("missing-lib");
    // Rename libc.so.6 in the dynamic string table of a copy of true(1):
    // the copy then needs a library that exists nowhere.
    let mut bytes = fs::read("/bin/true").unwrap();
    let needle = b"libc.so.6\0";
    let at = bytes
        .windows(needle.len())
        .position(|window| window == needle)
        .expect("libc.so.6 in /bin/true");
    bytes[at..at + needle.len()].copy_from_slice(b"libq.so.6\0");
    let program = dir.0.join("true");
    fs::write(&program, bytes).unwrap();

    let search = cblocks::forge::elf::SearchPath::host().unwrap();
    let err =
        cblocks::forge::elf::dependencies(std::slice::from_ref(&program), &search).unwrap_err();
    let message = err.to_string();
    assert!(message.contains("\"libq.so.6\""), "message: {message}");
    assert!(
        message.contains(&program.display().to_string()),
        "message: {message}"
    );
}
