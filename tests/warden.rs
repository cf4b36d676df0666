//! warden run as a binary: the original's manifests turned into `cblock
//! launch` command lines (`--dry-run`, the contract), bad manifests, usage
//! errors, and a real run against a socket with no daemon behind it.

use std::fs;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::sync::atomic::{AtomicUsize, Ordering};

// ---------------------------------------------------------------------------
// Helpers

/// Returns the shared test data directory: `$CBLOCKS_SHARED`, else `../shared`
/// or `../../shared` from the crate root, whichever exists first.
fn shared() -> PathBuf {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let candidates = [
        std::env::var_os("CBLOCKS_SHARED").map(PathBuf::from),
        Some(root.join("../shared")),
        Some(root.join("../../shared")),
    ];
    candidates
        .into_iter()
        .flatten()
        .find(|path| path.is_dir())
        .expect(
            "shared test data not found: set CBLOCKS_SHARED or place shared/ beside the repository",
        )
}

fn fixture(name: &str) -> PathBuf {
    shared().join("testdata/cblocks-original/warden").join(name)
}

/// A temporary directory removed when the test ends, passed or failed.
struct TempDir(PathBuf);

impl TempDir {
    fn new(name: &str) -> Self {
        static COUNTER: AtomicUsize = AtomicUsize::new(0);
        let unique = format!(
            "cblocks-warden-{name}-{}-{}",
            std::process::id(),
            COUNTER.fetch_add(1, Ordering::SeqCst)
        );
        let path = std::env::temp_dir().join(unique);
        fs::create_dir_all(&path).unwrap();
        TempDir(path)
    }

    fn write(&self, name: &str, contents: &str) -> PathBuf {
        let path = self.0.join(name);
        fs::write(&path, contents).unwrap();
        path
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = fs::remove_dir_all(&self.0);
    }
}

/// Runs `cblock warden ARGS` with no socket in the environment.
fn warden(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_cblock"))
        .arg("warden")
        .args(args)
        .env_remove("CBLOCK_SOCKET")
        .output()
        .expect("running cblock warden")
}

fn stdout(output: &Output) -> String {
    String::from_utf8_lossy(&output.stdout).into_owned()
}

fn stderr(output: &Output) -> String {
    String::from_utf8_lossy(&output.stderr).into_owned()
}

/// Runs `warden --dry-run -p MANIFEST`, expects success, and returns each
/// printed command line split into words. The fixtures hold no characters
/// that need quoting, so a quote in the output is a failure.
fn dry_run(manifest: &Path) -> Vec<Vec<String>> {
    let output = warden(&["--dry-run", "-p", manifest.to_str().unwrap()]);
    assert_eq!(
        output.status.code(),
        Some(0),
        "warden --dry-run {}: {}",
        manifest.display(),
        stderr(&output)
    );
    let text = stdout(&output);
    assert!(!text.contains('\''), "unexpected quoting in {text:?}");
    text.lines()
        .map(|line| line.split(' ').map(String::from).collect())
        .collect()
}

/// Expects warden to reject a manifest with exit status 1, printing
/// nothing on standard output and each of `needles` on standard error.
fn expect_rejected(manifest: &Path, needles: &[&str]) {
    let output = warden(&["--dry-run", "-p", manifest.to_str().unwrap()]);
    let err = stderr(&output);
    assert_eq!(output.status.code(), Some(1), "stderr: {err}");
    assert!(
        stdout(&output).is_empty(),
        "launch lines printed for a bad manifest: {}",
        stdout(&output)
    );
    for needle in needles {
        assert!(err.contains(needle), "{needle:?} missing from {err:?}");
    }
}

fn words(line: &[&str]) -> Vec<String> {
    line.iter().map(|w| w.to_string()).collect()
}

// ---------------------------------------------------------------------------
// The original's fixtures

#[test]
fn fixtures_become_launch_command_lines() {
    let base = ["cblock", "launch", "--no-attach", "--name"];
    let cases: &[(&str, &[&[&str]])] = &[
        (
            "launchImageNoParams.yaml",
            &[&["base:14.3", "--network", "vlan0"]],
        ),
        (
            // fdescfs, procfs and tmpfs all false: no option for any.
            "launchWithFalsePseudoFs.yaml",
            &[&["base:15-STABLE", "--network", "vlan0"]],
        ),
        (
            // fdescfs and procfs are always there on Linux; tmpfs is /tmp.
            "launchWithPseudoFs.yaml",
            &[&["base:14.3", "--network", "vlan0", "--tmpfs", "/tmp"]],
        ),
        (
            "launchWithPortMappings.yaml",
            &[&[
                "base:14.3",
                "--network",
                "vlan0",
                "-P",
                "443:443:public",
                "-P",
                "80:80",
            ]],
        ),
        (
            "launchWithVolumes.yaml",
            &[&[
                "base:14.3",
                "--network",
                "vlan0",
                "-V",
                "ufs:/dev/zvol/pool0/db-storage:/data:rw",
                "-V",
                "zfs:pool0/dataset:/zfs/dataset:rw",
            ]],
        ),
        (
            "launchWithMultiBlocks.yaml",
            &[
                &[
                    "base:14.3",
                    "--network",
                    "vlan0",
                    "-V",
                    "ufs:/dev/zvol/pool0/db-storage:/data:rw",
                    "-V",
                    "zfs:pool0/dataset:/zfs/dataset:rw",
                ],
                &[
                    "nginx",
                    "--network",
                    "vlan0",
                    "-V",
                    "ufs:/storage/vol3/www-content:/www:rw",
                ],
            ],
        ),
        (
            // The sample: `network: host` selects host networking.
            "config.yaml",
            &[
                &[
                    "base:14.3",
                    "--network",
                    "vlan0",
                    "-V",
                    "ufs:/dev/zvol/pool0/db-storage:/data:rw",
                    "-V",
                    "zfs:pool0/dataset:/zfs/dataset:rw",
                    "-V",
                    "nullfs:/home/csjp/.ssh:/root/.ssh:ro",
                    "-P",
                    "443:443:public",
                    "-P",
                    "80:80",
                ],
                &["porter", "--host-networking", "--tmpfs", "/tmp"],
            ],
        ),
    ];
    for (name, blocks) in cases {
        let expected: Vec<Vec<String>> = blocks
            .iter()
            .map(|block| {
                let mut line = words(&base);
                line.extend(words(block));
                line
            })
            .collect();
        assert_eq!(dry_run(&fixture(name)), expected, "fixture {name}");
    }
}

#[test]
fn fixture_without_image_is_rejected() {
    expect_rejected(
        &fixture("launchNoImage.yaml"),
        &[
            "launchNoImage.yaml",
            "block 1 has no image",
            "image: NAME[:TAG]",
        ],
    );
}

// ---------------------------------------------------------------------------
// Manifests written here

#[test]
fn missing_network_means_host_networking() {
    let dir = TempDir::new("host");
    let manifest = dir.write(
        "host.yaml",
        "cellblocks:\n  - image: alpine:3.20\n  - image: busybox\n    network: host\n",
    );
    let expected = vec![
        words(&[
            "cblock",
            "launch",
            "--no-attach",
            "--name",
            "alpine:3.20",
            "--host-networking",
        ]),
        words(&[
            "cblock",
            "launch",
            "--no-attach",
            "--name",
            "busybox",
            "--host-networking",
        ]),
    ];
    assert_eq!(dry_run(&manifest), expected);
}

#[test]
fn ports_written_as_text_are_numbers_too() {
    let dir = TempDir::new("text-port");
    let manifest = dir.write(
        "ports.yaml",
        "cellblocks:\n  - image: web\n    network: nat0\n    ports:\n      \
         - host_port: \"8080\"\n        container_port: \"80\"\n        public: false\n",
    );
    let lines = dry_run(&manifest);
    assert_eq!(lines.len(), 1, "{lines:?}");
    assert_eq!(lines[0][lines[0].len() - 2..], words(&["-P", "8080:80"]));
}

#[test]
fn dry_run_quotes_words_for_the_shell() {
    let dir = TempDir::new("quote");
    let manifest = dir.write(
        "quote.yaml",
        "cellblocks:\n  - image: web\n    network: nat0\n    volumes:\n      \
         - type: nullfs\n        origin: \"/srv/it's data\"\n        mountpoint: /data\n        \
         perms: ro\n",
    );
    let output = warden(&[
        "-n",
        "-U",
        "/run/my socket",
        "-p",
        manifest.to_str().unwrap(),
    ]);
    assert_eq!(output.status.code(), Some(0), "{}", stderr(&output));
    assert_eq!(
        stdout(&output),
        "cblock -U '/run/my socket' launch --no-attach --name web --network nat0 \
         -V 'nullfs:/srv/it'\\''s data:/data:ro'\n"
    );
}

#[test]
fn later_block_without_image_is_named() {
    let dir = TempDir::new("second");
    let manifest = dir.write(
        "second.yaml",
        "cellblocks:\n  - image: web\n  - network: nat0\n    description: no image\n",
    );
    expect_rejected(&manifest, &["block 2 has no image"]);
}

#[test]
fn bad_manifests_are_rejected_with_the_fix() {
    let dir = TempDir::new("bad");
    let block = "cellblocks:\n  - image: web\n    network: nat0\n";
    let port = |host: &str| {
        format!("{block}    ports:\n      - host_port: {host}\n        container_port: 80\n")
    };
    let volume = |fields: &str| format!("{block}    volumes:\n      - {fields}\n");
    let cases: Vec<(&str, String, Vec<&str>)> = vec![
        (
            "empty",
            String::new(),
            vec!["no cellblocks defined in", "empty.yaml"],
        ),
        (
            "comments",
            "# nothing yet\n".into(),
            vec!["no cellblocks defined in"],
        ),
        (
            "empty-list",
            "cellblocks: []\n".into(),
            vec!["no cellblocks defined in"],
        ),
        (
            "no-key",
            "containers:\n  - image: web\n".into(),
            vec!["no cellblocks defined in", "`cellblocks:`"],
        ),
        (
            "not-yaml",
            "cellblocks:\n  - image: \"web\n".into(),
            vec!["not-yaml.yaml:3:1: manifest is not valid", "fix the YAML"],
        ),
        (
            "tab",
            "cellblocks:\n  - image: web\n\tnetwork: nat0\n".into(),
            vec!["tab.yaml:3:1", "tab character"],
        ),
        (
            "not-a-mapping",
            "hello\n".into(),
            vec![
                "not-a-mapping.yaml:1:1",
                "a mapping with a `cellblocks:` list",
            ],
        ),
        (
            "image-list",
            "cellblocks:\n  - image: [web]\n".into(),
            vec!["image-list.yaml:2:12", "expected a string"],
        ),
        (
            "block-string",
            "cellblocks:\n  - web\n".into(),
            vec!["block-string.yaml:2:5", "`image: NAME[:TAG]`"],
        ),
        (
            "not-a-list",
            "cellblocks: web\n".into(),
            vec!["not-a-list.yaml:1:13", "cellblocks"],
        ),
        (
            "port-zero",
            port("0"),
            vec![
                "block 1 (web), port 1: host_port 0 is not a port number",
                "1 to 65535",
            ],
        ),
        (
            "port-large",
            port("70000"),
            vec!["host_port 70000 is not a port number"],
        ),
        (
            "port-word",
            port("http"),
            vec!["host_port \"http\" is not a port number"],
        ),
        (
            "port-missing",
            format!("{block}    ports:\n      - host_port: 80\n"),
            vec!["port 1 has no container_port"],
        ),
        (
            "perms",
            volume("{type: nullfs, origin: /srv, mountpoint: /data, perms: rx}"),
            vec!["volume 1: perms \"rx\" is not rw or ro"],
        ),
        (
            "no-mountpoint",
            volume("{type: nullfs, origin: /srv, perms: ro}"),
            vec!["block 1 (web), volume 1 has no mountpoint"],
        ),
        (
            "no-type",
            volume("{origin: /srv, mountpoint: /data, perms: ro}"),
            vec!["volume 1 has no type"],
        ),
        (
            "colon",
            volume("{type: nullfs, origin: \"/a:b\", mountpoint: /data, perms: ro}"),
            vec!["origin \"/a:b\" contains a colon"],
        ),
        (
            "empty-network",
            "cellblocks:\n  - image: web\n    network: \"\"\n".into(),
            vec!["block 1 (web) has an empty network"],
        ),
    ];
    for (name, text, needles) in cases {
        let manifest = dir.write(&format!("{name}.yaml"), &text);
        expect_rejected(&manifest, &needles);
    }
}

// ---------------------------------------------------------------------------
// Command line and running

#[test]
fn usage_errors_exit_2_and_help_exits_0() {
    let output = warden(&["--no-such-option"]);
    assert_eq!(output.status.code(), Some(2), "{}", stderr(&output));
    assert!(stderr(&output).contains("--no-such-option"));

    let output = warden(&["-p"]);
    assert_eq!(output.status.code(), Some(2), "{}", stderr(&output));

    let output = warden(&["--help"]);
    assert_eq!(output.status.code(), Some(0), "{}", stderr(&output));
    for option in ["--manifest-path", "--unix-sock", "--dry-run"] {
        assert!(stdout(&output).contains(option), "{option} not in help");
    }
}

#[test]
fn missing_manifest_is_named() {
    let dir = TempDir::new("missing");
    let path = dir.0.join("absent.yaml");
    let output = warden(&["-p", path.to_str().unwrap()]);
    assert_eq!(output.status.code(), Some(1));
    assert!(
        stderr(&output).contains(&format!("reading manifest {}", path.display())),
        "{}",
        stderr(&output)
    );
}

#[test]
fn runs_under_the_warden_name() {
    let dir = TempDir::new("name");
    let link = dir.0.join("warden");
    std::os::unix::fs::symlink(env!("CARGO_BIN_EXE_cblock"), &link).unwrap();
    let output = Command::new(&link)
        .args(["-n", "-p"])
        .arg(fixture("launchImageNoParams.yaml"))
        .output()
        .unwrap();
    assert_eq!(output.status.code(), Some(0), "{}", stderr(&output));
    assert_eq!(
        stdout(&output),
        "cblock launch --no-attach --name base:14.3 --network vlan0\n"
    );
}

#[test]
fn launch_without_daemon_fails_naming_the_socket() {
    let dir = TempDir::new("nodaemon");
    let socket = dir.0.join("cblock.sock");
    let manifest = dir.write(
        "two.yaml",
        "cellblocks:\n  - image: web\n    network: nat0\n  - image: db\n",
    );

    let output = warden(&[
        "-U",
        socket.to_str().unwrap(),
        "-p",
        manifest.to_str().unwrap(),
    ]);
    let err = stderr(&output);
    assert_eq!(output.status.code(), Some(1), "{err}");
    assert!(stdout(&output).is_empty(), "{}", stdout(&output));
    // Both blocks are tried: a failure does not stop the next one.
    for block in ["block 1 (web)", "block 2 (db)"] {
        assert!(err.contains(block), "{block} missing from {err}");
    }
    assert!(err.contains(&socket.display().to_string()), "{err}");
    assert!(err.contains("2 of 2 cellblocks failed"), "{err}");

    // Without -U, $CBLOCK_SOCKET names the socket.
    let output = Command::new(env!("CARGO_BIN_EXE_cblock"))
        .args(["warden", "-p", manifest.to_str().unwrap()])
        .env("CBLOCK_SOCKET", &socket)
        .output()
        .unwrap();
    assert_eq!(output.status.code(), Some(1));
    assert!(stderr(&output).contains(&socket.display().to_string()));
}
