//! Builder tests: ADD downloads from a loopback HTTP server.

mod common;

use std::fs;
use std::io::{BufRead, BufReader, Write};
use std::net::{TcpListener, TcpStream};
use std::path::PathBuf;
use std::thread;
use std::time::Duration;

use cblocks::build::download::{self, Checksum, Error, Request};

/// A temporary directory removed on drop, even when the test fails.
struct TempDir(PathBuf);

impl TempDir {
    fn new(label: &str) -> TempDir {
        let path =
            std::env::temp_dir().join(format!("cblocks-test-{label}-{}", std::process::id()));
        let _ = fs::remove_dir_all(&path);
        fs::create_dir_all(&path).unwrap();
        TempDir(path)
    }

    fn entries(&self) -> Vec<String> {
        let mut names: Vec<String> = fs::read_dir(&self.0)
            .unwrap()
            .map(|entry| entry.unwrap().file_name().to_string_lossy().into_owned())
            .collect();
        names.sort();
        names
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = fs::remove_dir_all(&self.0);
    }
}

const BODY: &[u8] = b"file served over loopback\n";

/// Serves a few fixed paths on 127.0.0.1 from a background thread:
/// `/file.txt` (200 with `BODY`), `/hang` (reads the request and sends
/// no response) and anything else (404).
fn serve() -> String {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let address = listener.local_addr().unwrap();
    thread::spawn(move || {
        for stream in listener.incoming() {
            let Ok(stream) = stream else { continue };
            thread::spawn(move || answer(stream));
        }
    });
    format!("http://{address}")
}

fn answer(mut stream: TcpStream) {
    let mut reader = BufReader::new(stream.try_clone().unwrap());
    let mut request_line = String::new();
    reader.read_line(&mut request_line).unwrap();
    loop {
        let mut header = String::new();
        if reader.read_line(&mut header).unwrap() == 0 || header == "\r\n" {
            break;
        }
    }
    let path = request_line.split(' ').nth(1).unwrap_or("/").to_string();

    match path.as_str() {
        "/file.txt" => {
            let head = format!(
                "HTTP/1.1 200 OK\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
                BODY.len()
            );
            let _ = stream.write_all(head.as_bytes());
            let _ = stream.write_all(BODY);
        }
        "/hang" => thread::sleep(Duration::from_secs(30)),
        _ => {
            let _ = stream.write_all(
                b"HTTP/1.1 404 Not Found\r\nContent-Length: 0\r\nConnection: close\r\n\r\n",
            );
        }
    }
}

fn request(url: &str) -> Request<'_> {
    Request {
        url,
        timeout: Duration::from_secs(2),
        checksum: None,
        max_bytes: 1 << 20,
    }
}

fn sha256_hex(bytes: &[u8]) -> String {
    use sha2::{Digest, Sha256};
    format!("{:x}", Sha256::digest(bytes))
}

#[test]
fn download_file_with_checksum() {
    let base = serve();
    let dir = TempDir::new("dl-ok");
    let url = format!("{base}/file.txt");
    let checksum = Checksum::parse(&format!("sha256:{}", sha256_hex(BODY))).unwrap();
    let mut request = request(&url);
    request.checksum = Some(&checksum);
    let mut last_progress = 0;

    let output = dir.0.join("file.txt");
    let done = download::download(&request, &output, &mut |received, _| {
        last_progress = received
    })
    .unwrap();

    assert_eq!(fs::read(&output).unwrap(), BODY);
    assert_eq!(done.bytes, BODY.len() as u64);
    assert_eq!(done.sha256, sha256_hex(BODY));
    assert_eq!(last_progress, BODY.len() as u64);
    assert_eq!(dir.entries(), vec!["file.txt"]);
}

#[test]
fn download_bad_checksum_leaves_nothing() {
    let base = serve();
    let dir = TempDir::new("dl-sum");
    let url = format!("{base}/file.txt");
    let checksum = Checksum::parse(&format!("sha256:{}", "0".repeat(64))).unwrap();
    let mut request = request(&url);
    request.checksum = Some(&checksum);

    let err = download::download(&request, &dir.0.join("file.txt"), &mut |_, _| {}).unwrap_err();

    assert!(matches!(err, Error::ChecksumMismatch { .. }), "{err:?}");
    assert!(err.to_string().contains(&sha256_hex(BODY)), "{err}");
    assert_eq!(dir.entries(), Vec::<String>::new());
}

#[test]
fn download_not_found_names_status() {
    let base = serve();
    let dir = TempDir::new("dl-404");
    let url = format!("{base}/missing.tar.gz");

    let err = download::download(&request(&url), &dir.0.join("x"), &mut |_, _| {}).unwrap_err();

    let message = err.to_string();
    assert!(message.contains("404 Not Found"), "{message}");
    assert!(message.contains(&url), "{message}");
    assert_eq!(dir.entries(), Vec::<String>::new());
}

#[test]
fn download_hanging_server_times_out() {
    let base = serve();
    let dir = TempDir::new("dl-hang");
    let url = format!("{base}/hang");

    let err = download::download(&request(&url), &dir.0.join("x"), &mut |_, _| {}).unwrap_err();

    assert!(matches!(err, Error::TimedOut { seconds: 2, .. }), "{err:?}");
    assert!(err.to_string().contains("no data for 2 seconds"), "{err}");
    assert_eq!(dir.entries(), Vec::<String>::new());
}

#[test]
fn download_rejects_other_schemes() {
    let dir = TempDir::new("dl-scheme");
    let err = download::download(
        &request("file:///etc/passwd"),
        &dir.0.join("x"),
        &mut |_, _| {},
    )
    .unwrap_err();
    assert!(matches!(err, Error::UnsupportedUrl(_)), "{err:?}");
}

// ---- builds without RUN steps, on the real store -------------------------

mod builds {
    use std::collections::BTreeMap;
    use std::fs;
    use std::os::unix::fs::{symlink, MetadataExt, PermissionsExt};
    use std::path::{Path, PathBuf};
    use std::sync::Mutex;

    use cblocks::build::{self, Built, Options, Output, StepProcess, StepRunner};
    use cblocks::image::{Reference, Store};
    use cblocks::storage::DriverKind;

    use super::TempDir;

    /// For files without RUN: a RUN step reaching it is a test failure.
    struct NoRunSteps;

    impl StepRunner for NoRunSteps {
        fn run(&self, process: &StepProcess) -> Result<i32, build::Error> {
            panic!("unexpected RUN step {:?}", process.argv);
        }
    }

    /// A data directory, a context directory and a store.
    struct Setup {
        dir: TempDir,
        store: Store,
    }

    impl Setup {
        fn new(label: &str, driver: DriverKind) -> Setup {
            let dir = TempDir::new(label);
            fs::create_dir_all(dir.0.join("context")).unwrap();
            let store = Store::open(&dir.0.join("data"), driver).unwrap();
            Setup { dir, store }
        }

        fn context(&self) -> PathBuf {
            self.dir.0.join("context")
        }

        fn write(&self, relative: &str, contents: &str) {
            let path = self.context().join(relative);
            fs::create_dir_all(path.parent().unwrap()).unwrap();
            fs::write(path, contents).unwrap();
        }

        fn build(
            &self,
            text: &str,
            name: &str,
            options: Options,
        ) -> (Result<Built, build::Error>, String) {
            let file = cblocks::cblockfile::parse("Cblockfile", text.as_bytes()).unwrap();
            let mut options = options;
            options.names = vec![Reference::parse(name).unwrap()];
            let sink = crate::common::OutputSink::default();
            let output: Output = Mutex::new(Box::new(sink.clone()));
            let result = build::build(
                &self.store,
                &NoRunSteps,
                &file,
                &self.context(),
                &options,
                &format!("t{}", std::process::id()),
                &output,
            );
            (result, sink.text())
        }

        /// Mounts image `name` and passes its root to `check`.
        fn inspect(&self, name: &str, check: impl FnOnce(&Path)) {
            let mount_id = format!("inspect-{}", std::process::id());
            let root = self.store.mount_image(&mount_id, Some(name)).unwrap();
            let outcome = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| check(&root)));
            self.store.remove_mount(&mount_id).unwrap();
            if let Err(panic) = outcome {
                std::panic::resume_unwind(panic);
            }
        }

        fn config(&self, name: &str) -> cblocks::oci::image_spec::ContainerConfig {
            let image = self.store.resolve(name).unwrap();
            self.store
                .config(&image)
                .unwrap()
                .config
                .unwrap_or_default()
        }
    }

    impl Drop for Setup {
        fn drop(&mut self) {
            // Unmount anything a failed build or check left mounted.
            crate::common::unmount_below(&self.dir.0);
        }
    }

    const CONFIG_FILE: &str = "FROM scratch
ENV GREETING=hello PATH=/bin
ARG VERSION=1.2
LABEL version=$VERSION maintainer=\"cblocks tests\"
WORKDIR /app
COPY --chmod=0750 tool.sh bin/
COPY data/ /srv/data/
EXPOSE 80 53/udp
VOLUME /srv/data
USER 1000:1000
STOPSIGNAL SIGINT
ENTRYPOINT [\"/app/bin/tool.sh\"]
CMD [\"--serve\"]
";

    #[test]
    fn build_scratch_image_config_and_files() {
        let setup = Setup::new("build-config", DriverKind::Overlay);
        setup.write("tool.sh", "#!/bin/sh\necho tool\n");
        setup.write("data/a.txt", "alpha");
        setup.write("data/sub/b.txt", "beta");

        let (result, output) = setup.build(CONFIG_FILE, "configured:1", Options::default());
        let built = result.unwrap_or_else(|err| panic!("build failed: {err}\n{output}"));
        assert!(output.contains("-- Step 1/13 : FROM scratch"), "{output}");
        assert!(
            output.contains("-- Step 7/13 : COPY data/ /srv/data/"),
            "{output}"
        );
        assert_eq!(built.executed_steps, 3, "WORKDIR and two COPY steps");

        let config = setup.config("configured:1");
        let env = config.env.clone().unwrap();
        assert!(env.contains(&"GREETING=hello".to_string()), "{env:?}");
        assert_eq!(config.working_dir.as_deref(), Some("/app"));
        assert_eq!(config.user.as_deref(), Some("1000:1000"));
        assert_eq!(config.stop_signal.as_deref(), Some("SIGINT"));
        assert_eq!(
            config.entrypoint,
            Some(vec!["/app/bin/tool.sh".to_string()])
        );
        assert_eq!(config.cmd, Some(vec!["--serve".to_string()]));
        let labels = config.labels.clone().unwrap();
        assert_eq!(labels.get("version").map(String::as_str), Some("1.2"));
        assert_eq!(
            labels.get("maintainer").map(String::as_str),
            Some("cblocks tests")
        );
        let ports: Vec<&String> = config.exposed_ports.as_ref().unwrap().keys().collect();
        assert_eq!(ports, vec!["53/udp", "80/tcp"]);
        assert!(config.volumes.as_ref().unwrap().contains_key("/srv/data"));

        setup.inspect("configured:1", |root| {
            let tool = fs::metadata(root.join("app/bin/tool.sh")).unwrap();
            assert_eq!(tool.permissions().mode() & 0o7777, 0o750);
            assert_eq!((tool.uid(), tool.gid()), (0, 0));
            assert_eq!(
                fs::read_to_string(root.join("srv/data/a.txt")).unwrap(),
                "alpha"
            );
            assert_eq!(
                fs::read_to_string(root.join("srv/data/sub/b.txt")).unwrap(),
                "beta"
            );
            assert!(
                !root.join("srv/data/data").exists(),
                "a directory's contents are copied"
            );
        });
    }

    #[test]
    fn build_cache_hits_and_invalidation() {
        let setup = Setup::new("build-cache", DriverKind::Overlay);
        setup.write("a.txt", "one");
        setup.write("b.txt", "two");
        let text = "FROM scratch\nCOPY a.txt /a.txt\nCOPY b.txt /b.txt\nENV X=1\n";

        let (first, _) = setup.build(text, "cached", Options::default());
        let first = first.unwrap();
        assert_eq!(first.executed_steps, 2);

        let (second, output) = setup.build(text, "cached", Options::default());
        let second = second.unwrap();
        assert_eq!(second.executed_steps, 0, "{output}");
        assert_eq!(
            second.image.id, first.image.id,
            "a cached rebuild makes the same image"
        );
        assert_eq!(
            setup.store.images().unwrap().len(),
            1,
            "no unnamed image left"
        );
        assert_eq!(second.cached_steps, 2, "{output}");
        assert!(output.contains(" ---> Using cache"), "{output}");

        setup.write("b.txt", "changed");
        let (third, _) = setup.build(text, "cached", Options::default());
        let third = third.unwrap();
        assert_eq!(third.cached_steps, 1, "COPY a.txt still cached");
        assert_eq!(third.executed_steps, 1, "COPY b.txt runs again");

        let no_cache = Options {
            no_cache: true,
            ..Options::default()
        };
        let (fourth, _) = setup.build(text, "cached", no_cache);
        assert_eq!(fourth.unwrap().executed_steps, 2);
        setup.inspect("cached", |root| {
            assert_eq!(fs::read_to_string(root.join("b.txt")).unwrap(), "changed");
        });
    }

    #[test]
    fn cache_only_build_stops_at_miss() {
        let setup = Setup::new("cache-only", DriverKind::Overlay);
        setup.write("a.txt", "one");
        let text = "FROM scratch\nCOPY a.txt /a.txt\nENV X=1\n";
        let cache_only = || Options {
            cache_only: true,
            ..Options::default()
        };

        // Nothing cached yet: the COPY misses, and nothing is tagged,
        // mounted or left in the build's scratch space.
        let (missed, output) = setup.build(text, "only", cache_only());
        match missed {
            Err(build::Error::CacheMiss { step, text }) => {
                assert_eq!(step, 2);
                assert_eq!(text, "COPY a.txt /a.txt");
            }
            other => panic!("expected a cache miss, got {other:?}"),
        }
        assert!(!output.contains("Using cache"), "{output}");
        assert!(
            setup.store.resolve("only").is_err(),
            "the miss tagged an image"
        );
        assert!(setup.store.images().unwrap().is_empty());
        let data = setup.dir.0.join("data");
        assert!(crate::common::mounts_below(&data).is_empty());
        let builds: Vec<_> = fs::read_dir(data.join("builds"))
            .map(|dir| dir.flatten().map(|e| e.file_name()).collect())
            .unwrap_or_default();
        assert!(builds.is_empty(), "build leftovers: {builds:?}");

        let (full, full_output) = setup.build(text, "only", Options::default());
        let full = full.unwrap();
        let (cached, cached_output) = setup.build(text, "only", cache_only());
        let cached = cached.unwrap();
        assert_eq!(cached.image.id, full.image.id);
        assert_eq!(cached.cached_steps, 1);
        assert_eq!(cached.executed_steps, 0);
        assert!(
            cached_output.contains(" ---> Using cache"),
            "{cached_output}"
        );
        assert_eq!(
            cached_output
                .lines()
                .filter(|line| line.starts_with("-- Step"))
                .count(),
            full_output
                .lines()
                .filter(|line| line.starts_with("-- Step"))
                .count()
        );

        // With --no-cache, a cache-only build misses at its first lookup.
        let no_cache = Options {
            no_cache: true,
            ..cache_only()
        };
        let (bypassed, _) = setup.build(text, "only", no_cache);
        assert!(
            matches!(bypassed, Err(build::Error::CacheMiss { step: 2, .. })),
            "{bypassed:?}"
        );
    }

    #[test]
    fn build_multi_stage_skips_and_copies_from() {
        let setup = Setup::new("build-stages", DriverKind::Vfs);
        setup.write("one.txt", "first stage");
        setup.write("two.txt", "second stage");
        // Stage 2 copies a missing file: building it would fail, so the
        // success of the build shows that it was skipped.
        let text = "FROM scratch AS first
COPY one.txt /out/one.txt
FROM scratch AS second
COPY two.txt /out/two.txt
FROM scratch AS unused
COPY missing.txt /x
FROM scratch
COPY --from=first /out/one.txt /result/
COPY --from=1 /out/two.txt /result/
";
        let (result, output) = setup.build(text, "assembled", Options::default());
        result.unwrap_or_else(|err| panic!("build failed: {err}\n{output}"));
        assert!(
            !output.contains("COPY missing.txt"),
            "the unused stage ran:\n{output}"
        );
        setup.inspect("assembled", |root| {
            assert_eq!(
                fs::read_to_string(root.join("result/one.txt")).unwrap(),
                "first stage"
            );
            assert_eq!(
                fs::read_to_string(root.join("result/two.txt")).unwrap(),
                "second stage"
            );
            assert!(!root.join("out").exists());
        });

        let target = Options {
            target: Some("second".into()),
            ..Options::default()
        };
        let (result, _) = setup.build(text, "second-only", target);
        result.unwrap();
        setup.inspect("second-only", |root| {
            assert!(root.join("out/two.txt").exists());
        });

        let bad_target = Options {
            target: Some("nonexistent".into()),
            ..Options::default()
        };
        let (result, _) = setup.build(text, "never", bad_target);
        let err = result.unwrap_err().to_string();
        assert!(err.contains("\"nonexistent\""), "{err}");

        // A name that is no stage is an image, as in Docker; a missing one
        // fails the build with the stages listed.
        let typo = "FROM scratch AS first\nCOPY one.txt /one.txt\nFROM scratch\nCOPY --from=frist /one.txt /\n";
        let (result, _) = setup.build(typo, "typo", Options::default());
        let err = result.unwrap_err().to_string();
        assert!(
            err.contains("COPY --from=frist names no earlier stage and no image"),
            "{err}"
        );
        assert!(err.contains("0 (first)"), "{err}");
        assert!(
            setup.store.resolve("typo").is_err(),
            "a failed build tagged an image"
        );
    }

    #[test]
    fn build_onbuild_triggers_run_once() {
        let setup = Setup::new("build-onbuild", DriverKind::Vfs);
        setup.write("trigger.txt", "from the trigger");
        let parent = "FROM scratch
LABEL parent=yes
ONBUILD COPY trigger.txt /from-trigger.txt
ONBUILD ENV TRIGGERED=yes
";
        let (result, output) = setup.build(parent, "parent:1", Options::default());
        result.unwrap_or_else(|err| panic!("parent build failed: {err}\n{output}"));
        assert!(
            !output.contains("build trigger"),
            "ONBUILD ran its own triggers:\n{output}"
        );
        assert_eq!(
            setup.config("parent:1").on_build,
            Some(vec![
                "COPY trigger.txt /from-trigger.txt".to_string(),
                "ENV TRIGGERED=yes".to_string()
            ])
        );
        setup.inspect("parent:1", |root| {
            assert!(!root.join("from-trigger.txt").exists());
        });

        let (result, output) = setup.build("FROM parent:1\n", "child:1", Options::default());
        result.unwrap_or_else(|err| panic!("child build failed: {err}\n{output}"));
        assert!(output.contains("-- Executing 2 build triggers"), "{output}");
        assert!(
            output.contains("-- Trigger : ENV TRIGGERED=yes"),
            "{output}"
        );
        let child = setup.config("child:1");
        assert!(
            child
                .env
                .unwrap_or_default()
                .contains(&"TRIGGERED=yes".to_string()),
            "the ENV trigger did not reach the child's configuration"
        );
        assert_eq!(child.on_build, None, "the child inherited the triggers");
        setup.inspect("child:1", |root| {
            assert_eq!(
                fs::read_to_string(root.join("from-trigger.txt")).unwrap(),
                "from the trigger"
            );
        });

        // Triggers are not inherited by grandchildren.
        let (result, output) = setup.build("FROM child:1\n", "grandchild:1", Options::default());
        result.unwrap_or_else(|err| panic!("grandchild build failed: {err}\n{output}"));
        assert!(!output.contains("build trigger"), "{output}");

        // Every stage FROM a stage with triggers runs them.
        let stages = "FROM scratch AS base
ONBUILD COPY trigger.txt /t.txt
FROM base AS one
FROM base
COPY --from=one /t.txt /one.txt
";
        let (result, output) = setup.build(stages, "stages:1", Options::default());
        result.unwrap_or_else(|err| panic!("stage build failed: {err}\n{output}"));
        setup.inspect("stages:1", |root| {
            assert!(
                root.join("t.txt").exists(),
                "the last stage skipped the trigger"
            );
            assert!(
                root.join("one.txt").exists(),
                "stage one skipped the trigger"
            );
        });
    }

    #[test]
    fn build_rejects_escapes_through_copy() {
        let setup = Setup::new("build-escape", DriverKind::Overlay);
        setup.write("ok.txt", "ok");
        symlink("/etc/passwd", setup.context().join("passwd-link")).unwrap();
        symlink("../../../../../../etc", setup.context().join("etc-up")).unwrap();

        let cases = [
            ("COPY ../outside /x", "not found in the build context"),
            ("COPY passwd-link /x", "not found in the build context"),
            ("COPY etc-up/passwd /x", "not found in the build context"),
            ("COPY nothing* /x/", "matches nothing"),
            ("COPY ok.txt ok.txt /single", "must be a directory"),
        ];
        for (line, expected) in cases {
            let text = format!("FROM scratch\n{line}\n");
            let (result, _) = setup.build(&text, "escape", Options::default());
            let err = result.expect_err(line).to_string();
            assert!(err.contains(expected), "{line}: {err}");
            assert!(err.contains("Cblockfile:2"), "{line}: {err}");
        }

        // A symlink planted in the image sends a later COPY elsewhere inside
        // the image, never to the host.
        let host_target =
            std::env::temp_dir().join(format!("cblocks-planted-{}", std::process::id()));
        let _ = fs::remove_dir_all(&host_target);
        fs::create_dir_all(setup.context().join("plant")).unwrap();
        symlink(&host_target, setup.context().join("plant/evil")).unwrap();
        let text = "FROM scratch\nCOPY plant/ /\nCOPY ok.txt /evil/ok.txt\n";
        let (result, output) = setup.build(text, "planted", Options::default());
        result.unwrap_or_else(|err| panic!("build failed: {err}\n{output}"));
        assert!(
            !host_target.exists(),
            "COPY wrote to the host at {}",
            host_target.display()
        );
        let inside = host_target.strip_prefix("/").unwrap().join("ok.txt");
        setup.inspect("planted", |root| {
            assert_eq!(fs::read_to_string(root.join(&inside)).unwrap(), "ok");
        });
    }

    #[test]
    fn build_add_archive_and_rootpivot() {
        let setup = Setup::new("build-pivot", DriverKind::Overlay);
        // A gzip tar archive whose top directory is "root", as examples/base.
        let mut tar = tar::Builder::new(Vec::new());
        for (path, contents) in [
            ("root/etc/os-release", "ID=test\n"),
            ("root/bin/tool", "tool"),
        ] {
            let mut header = tar::Header::new_gnu();
            header.set_size(contents.len() as u64);
            header.set_mode(0o644);
            header.set_uid(0);
            header.set_gid(0);
            header.set_mtime(0);
            header.set_entry_type(tar::EntryType::Regular);
            tar.append_data(&mut header, path, contents.as_bytes())
                .unwrap();
        }
        let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
        std::io::Write::write_all(&mut gz, &tar.into_inner().unwrap()).unwrap();
        fs::write(setup.context().join("rootfs.tar.gz"), gz.finish().unwrap()).unwrap();

        let text = "FROM scratch\nADD rootfs.tar.gz /imgbuild\nROOTPIVOT /imgbuild\nOSRELEASE 12\nENTRYPOINT [\"/bin/tool\"]\n";
        let options = Options {
            file_integrity: true,
            ..Options::default()
        };
        let (result, output) = setup.build(text, "pivoted", options);
        result.unwrap_or_else(|err| panic!("build failed: {err}\n{output}"));
        setup.inspect("pivoted", |root| {
            assert_eq!(
                fs::read_to_string(root.join("etc/os-release")).unwrap(),
                "ID=test\n"
            );
            assert!(root.join("bin/tool").is_file());
            assert!(
                !root.join("imgbuild").exists(),
                "the pivot directory is the root"
            );
            let spec = fs::read_to_string(root.join("etc/cblocks/fim.mtree")).unwrap();
            assert!(spec.contains("./bin/tool type=file"), "{spec}");
        });

        let image = setup.store.resolve("pivoted").unwrap();
        let manifest = setup.store.manifest(&image).unwrap();
        let annotations: BTreeMap<String, String> = manifest.annotations.unwrap_or_default();
        assert_eq!(
            annotations
                .get("org.cblocks.os-release")
                .map(String::as_str),
            Some("12")
        );
        assert_eq!(image.layers.len(), 2, "the pivoted root and the -F spec");

        // ROOTPIVOT on the stage's own root is refused, also through '..',
        // rather than taking the root user's home for the new root.
        for dir in ["/", "/root/../.."] {
            setup.write("pivot.txt", "x");
            let text = format!("FROM scratch\nCOPY pivot.txt /root/pivot.txt\nROOTPIVOT {dir}\n");
            let (result, _) = setup.build(&text, "pivot-root", Options::default());
            let err = result.unwrap_err().to_string();
            assert!(err.contains("is the stage's root itself"), "{dir}: {err}");
        }
    }

    #[test]
    fn build_add_url_from_loopback() {
        let setup = Setup::new("build-url", DriverKind::Vfs);
        let base = super::serve();
        let text = format!("FROM scratch\nADD {base}/file.txt /downloads/\n");
        let (result, output) = setup.build(&text, "fetched", Options::default());
        result.unwrap_or_else(|err| panic!("build failed: {err}\n{output}"));
        setup.inspect("fetched", |root| {
            assert_eq!(
                fs::read(root.join("downloads/file.txt")).unwrap(),
                super::BODY
            );
        });

        // A cache-only build fetches no URL, even one whose layer is
        // cached (`/hang` would hold a fetch for 30 seconds).
        for path in ["file.txt", "hang"] {
            let text = format!("FROM scratch\nADD {base}/{path} /downloads/\n");
            let cache_only = Options {
                cache_only: true,
                ..Options::default()
            };
            let (result, output) = setup.build(&text, "fetched", cache_only);
            assert!(
                matches!(result, Err(build::Error::CacheMiss { step: 2, .. })),
                "{result:?}"
            );
            assert!(!output.contains("Fetching"), "{output}");
        }

        let text = format!(
            "FROM scratch\nADD --checksum=sha256:{} {base}/file.txt /x\n",
            "0".repeat(64)
        );
        let (result, _) = setup.build(&text, "badsum", Options::default());
        let err = result.unwrap_err().to_string();
        assert!(err.contains("checksum mismatch"), "{err}");

        let text = format!("FROM scratch\nADD {base}/gone.tar.gz /x/\n");
        let (result, _) = setup.build(&text, "gone", Options::default());
        let err = result.unwrap_err().to_string();
        assert!(err.contains("404"), "{err}");
        assert!(
            setup.store.resolve("gone").is_err(),
            "no image after a failed build"
        );
    }
}

// ---- builds with RUN steps in real containers ----------------------------

mod run_steps {
    use std::fs;
    use std::path::{Path, PathBuf};
    use std::sync::Mutex;

    use cblocks::build::runner::RuntimeRunner;
    use cblocks::build::{self, Built, Network, Options, Output};
    use cblocks::image::{Reference, Store};
    use cblocks::storage::DriverKind;

    use super::TempDir;

    /// Writes a tar archive of a busybox root file system: /bin/busybox,
    /// a link per applet, and /etc with root and one user.
    pub(super) fn write_busybox_tar(path: &Path) {
        let mut tar = tar::Builder::new(Vec::new());
        let header = |kind, mode, size| {
            let mut header = tar::Header::new_gnu();
            header.set_entry_type(kind);
            header.set_mode(mode);
            header.set_size(size);
            header.set_uid(0);
            header.set_gid(0);
            header.set_mtime(0);
            header
        };
        for (dir, mode) in [
            ("bin", 0o755),
            ("etc", 0o755),
            ("tmp", 0o1777),
            ("root", 0o700),
        ] {
            let mut h = header(tar::EntryType::Directory, mode, 0);
            tar.append_data(&mut h, dir, std::io::empty()).unwrap();
        }
        let busybox = fs::read("/bin/busybox").expect("Debian's busybox-static at /bin/busybox");
        let mut h = header(tar::EntryType::Regular, 0o755, busybox.len() as u64);
        tar.append_data(&mut h, "bin/busybox", busybox.as_slice())
            .unwrap();
        for applet in [
            "sh", "echo", "cat", "ls", "mkdir", "id", "pwd", "env", "touch", "sleep", "nc",
            "timeout", "mkfifo", "test", "ln",
        ] {
            let mut h = header(tar::EntryType::Symlink, 0o777, 0);
            tar.append_link(&mut h, format!("bin/{applet}"), "busybox")
                .unwrap();
        }
        for (name, text) in [
            (
                "etc/passwd",
                "root:x:0:0:root:/root:/bin/sh\nbuilder:x:1234:2345::/tmp:/bin/sh\n",
            ),
            ("etc/group", "root:x:0:\nbuilders:x:2345:\n"),
        ] {
            let mut h = header(tar::EntryType::Regular, 0o644, text.len() as u64);
            tar.append_data(&mut h, name, text.as_bytes()).unwrap();
        }
        fs::write(path, tar.into_inner().unwrap()).unwrap();
    }

    struct Setup {
        dir: TempDir,
        store: Store,
        runner: RuntimeRunner,
        /// Build and container ids of this test, unique in the process.
        label: String,
    }

    impl Setup {
        fn new(label: &str) -> Setup {
            let dir = TempDir::new(label);
            fs::create_dir_all(dir.0.join("context")).unwrap();
            write_busybox_tar(&dir.0.join("context/busybox.tar"));
            let store = Store::open(&dir.0.join("data"), DriverKind::Overlay).unwrap();
            let runner = RuntimeRunner {
                state_root: dir.0.join("runtime"),
                runtime_exe: Some(PathBuf::from(env!("CARGO_BIN_EXE_cblock"))),
            };
            let setup = Setup {
                dir,
                store,
                runner,
                label: label.to_string(),
            };
            let (base, output) = setup.build(
                "FROM scratch\nADD busybox.tar /\n",
                "busybox",
                Options::default(),
            );
            base.unwrap_or_else(|err| panic!("building the busybox base: {err}\n{output}"));
            setup
        }

        fn build(
            &self,
            text: &str,
            name: &str,
            options: Options,
        ) -> (Result<Built, build::Error>, String) {
            let file = cblocks::cblockfile::parse("Cblockfile", text.as_bytes()).unwrap();
            let mut options = options;
            options.names = vec![Reference::parse(name).unwrap()];
            let sink = crate::common::OutputSink::default();
            let output: Output = Mutex::new(Box::new(sink.clone()));
            let result = build::build(
                &self.store,
                &self.runner,
                &file,
                &self.dir.0.join("context"),
                &options,
                &format!("{}-{}", self.label, std::process::id()),
                &output,
            );
            let text = sink.text();
            (result, text)
        }

        fn read(&self, image: &str, path: &str) -> Option<String> {
            let mount_id = format!("read-{}", std::process::id());
            let root = self.store.mount_image(&mount_id, Some(image)).unwrap();
            let text = fs::read_to_string(root.join(path)).ok();
            self.store.remove_mount(&mount_id).unwrap();
            text
        }

        /// Returns the mount points below the data directory that are still
        /// mounted.
        fn leftover_mounts(&self) -> Vec<String> {
            crate::common::mounts_below(&self.dir.0)
        }
    }

    impl Drop for Setup {
        fn drop(&mut self) {
            crate::common::unmount_below(&self.dir.0);
        }
    }

    #[test]
    fn run_steps_commit_and_cache() {
        let setup = Setup::new("run-cache");
        let text = "FROM busybox
ARG WHO=world
ENV GREETING=hello
WORKDIR /work
RUN echo \"$GREETING $WHO from $(pwd)\" > /work/greeting
RUN [\"/bin/sh\", \"-c\", \"id -u > /work/uid\"]
USER builder
RUN id -u > /tmp/builder-uid; id -g >> /tmp/builder-uid
";
        let (result, output) = setup.build(text, "greeter", Options::default());
        let built = result.unwrap_or_else(|err| panic!("build failed: {err}\n{output}"));
        assert_eq!(built.executed_steps, 4, "{output}");
        assert_eq!(
            setup.read("greeter", "work/greeting").as_deref(),
            Some("hello world from /work\n")
        );
        assert_eq!(setup.read("greeter", "work/uid").as_deref(), Some("0\n"));
        assert_eq!(
            setup.read("greeter", "tmp/builder-uid").as_deref(),
            Some("1234\n2345\n")
        );
        assert_eq!(
            setup.read("greeter", "etc/resolv.conf"),
            None,
            "resolv.conf committed"
        );

        let (again, output) = setup.build(text, "greeter", Options::default());
        let again = again.unwrap();
        assert_eq!(
            again.executed_steps, 0,
            "a rebuild started containers:\n{output}"
        );
        assert_eq!(again.cached_steps, 4);

        let args = Options {
            build_args: [("WHO".to_string(), "cblocks".to_string())].into(),
            ..Options::default()
        };
        let (changed, _) = setup.build(text, "greeter", args);
        assert_eq!(
            changed.unwrap().executed_steps,
            3,
            "a new ARG value reruns the RUN steps"
        );
        assert_eq!(
            setup.read("greeter", "work/greeting").as_deref(),
            Some("hello cblocks from /work\n")
        );
    }

    #[test]
    fn run_failure_names_step_and_status() {
        let setup = Setup::new("run-fail");
        let text = "FROM busybox\nRUN touch /made-before\nRUN echo failing; exit 3\n";
        let (result, output) = setup.build(text, "broken", Options::default());
        let err = result.expect_err("a failing RUN fails the build");
        let message = err.to_string();
        assert!(message.contains("Cblockfile:3"), "{message}");
        assert!(message.contains("step 3"), "{message}");
        assert!(message.contains("exit 3"), "{message}");
        assert!(message.contains("status 3"), "{message}");
        assert!(
            output.contains("-- Step 3/3 : RUN echo failing; exit 3"),
            "{output}"
        );
        assert!(
            setup.store.resolve("broken").is_err(),
            "an image after a failed build"
        );
        assert_eq!(setup.leftover_mounts(), Vec::<String>::new());
        let state: Vec<_> = fs::read_dir(setup.dir.0.join("runtime"))
            .map(|dir| dir.flatten().map(|e| e.file_name()).collect())
            .unwrap_or_default();
        assert!(state.is_empty(), "runtime state left behind: {state:?}");
    }

    #[test]
    fn run_network_none_has_only_loopback() {
        let setup = Setup::new("run-net");
        let text = "FROM busybox\nRUN ls /sys/class/net > /nets\n";
        let options = Options {
            network: Network::None,
            ..Options::default()
        };
        let (result, output) = setup.build(text, "isolated", options);
        result.unwrap_or_else(|err| panic!("build failed: {err}\n{output}"));
        assert_eq!(setup.read("isolated", "nets").as_deref(), Some("lo\n"));
    }

    #[test]
    fn copy_chown_uses_image_users() {
        let setup = Setup::new("run-chown");
        fs::write(setup.dir.0.join("context/owned.txt"), "owned").unwrap();
        let text = "FROM busybox\nCOPY --chown=builder:builders owned.txt /owned.txt\nCOPY --chown=1000:7 owned.txt /numeric.txt\n";
        let (result, output) = setup.build(text, "owned", Options::default());
        result.unwrap_or_else(|err| panic!("build failed: {err}\n{output}"));
        let mount_id = format!("owned-{}", std::process::id());
        let root = setup.store.mount_image(&mount_id, Some("owned")).unwrap();
        use std::os::unix::fs::MetadataExt;
        let named = fs::metadata(root.join("owned.txt")).map(|m| (m.uid(), m.gid()));
        let numeric = fs::metadata(root.join("numeric.txt")).map(|m| (m.uid(), m.gid()));
        setup.store.remove_mount(&mount_id).unwrap();
        assert_eq!(named.unwrap(), (1234, 2345));
        assert_eq!(numeric.unwrap(), (1000, 7));

        let text = "FROM busybox\nCOPY --chown=nobody owned.txt /x\n";
        let (result, _) = setup.build(text, "unowned", Options::default());
        let err = result.unwrap_err().to_string();
        assert!(err.contains("user \"nobody\" not found"), "{err}");
    }

    #[test]
    fn rootpivot_through_planted_link_stays_inside() {
        let setup = Setup::new("run-pivot");
        // The link points at /etc: followed on the host it would make the
        // host's /etc the image.
        let text = "FROM busybox\nRUN ln -s /etc /pivot-link\nROOTPIVOT /pivot-link\n";
        let (result, output) = setup.build(text, "pivoted", Options::default());
        result.unwrap_or_else(|err| panic!("build failed: {err}\n{output}"));
        let passwd = setup.read("pivoted", "passwd").unwrap_or_default();
        assert!(
            passwd.contains("builder:x:1234"),
            "the image's own /etc: {passwd}"
        );
        assert_eq!(
            setup.read("pivoted", "debian_version"),
            None,
            "the host's /etc leaked in"
        );

        let text = "FROM busybox\nROOTPIVOT /missing\n";
        let (result, _) = setup.build(text, "nopivot", Options::default());
        let err = result.unwrap_err().to_string();
        assert!(err.contains("/missing"), "{err}");
    }

    #[test]
    fn shell_heredoc_and_healthcheck() {
        let setup = Setup::new("run-shell");
        let text = r#"FROM busybox
SHELL ["/bin/sh", "-c", "echo shell-was-used > /shell-marker; eval \"$1\"", "sh"]
RUN echo run-text > /run-marker
RUN <<EOF
echo from-heredoc > /heredoc-marker
EOF
COPY <<NOTE /etc/motd
a note from a heredoc
NOTE
HEALTHCHECK --interval=5s --retries=2 CMD ["/bin/true"]
MAINTAINER tests
"#;
        let (result, output) = setup.build(text, "shelled", Options::default());
        result.unwrap_or_else(|err| panic!("build failed: {err}\n{output}"));
        assert_eq!(
            setup.read("shelled", "shell-marker").as_deref(),
            Some("shell-was-used\n")
        );
        assert_eq!(
            setup.read("shelled", "run-marker").as_deref(),
            Some("run-text\n")
        );
        assert_eq!(
            setup.read("shelled", "heredoc-marker").as_deref(),
            Some("from-heredoc\n")
        );
        assert_eq!(
            setup.read("shelled", "etc/motd").as_deref(),
            Some("a note from a heredoc\n")
        );

        let image = setup.store.resolve("shelled").unwrap();
        let config = setup.store.config(&image).unwrap();
        assert_eq!(config.author.as_deref(), Some("tests"));
        let check = config.config.unwrap().healthcheck.unwrap();
        assert_eq!(check.test, vec!["CMD".to_string(), "/bin/true".to_string()]);
        assert_eq!(check.interval, Some(5_000_000_000));
        assert_eq!(check.retries, Some(2));
    }

    /// Returns the parser corpus: `$CBLOCKS_SHARED`, else `../shared` or
    /// `../../shared` from the crate root.
    fn corpus_case(name: &str) -> PathBuf {
        let root = Path::new(env!("CARGO_MANIFEST_DIR"));
        let shared = [
            std::env::var_os("CBLOCKS_SHARED").map(PathBuf::from),
            Some(root.join("../shared")),
            Some(root.join("../../shared")),
        ]
        .into_iter()
        .flatten()
        .find(|path| path.is_dir())
        .expect("shared test data not found: set CBLOCKS_SHARED");
        shared.join("testdata/dockerfile-parser/cases").join(name)
    }

    #[test]
    fn corpus_dockerfiles_build() {
        let setup = Setup::new("run-corpus");
        // The corpus files name Docker Hub images. The busybox image is
        // tagged with each name, because these builds need nothing else.
        for name in [
            "ubuntu",
            "ubuntu:14.04",
            "image",
            "busybox:buildroot-2014.02",
        ] {
            let reference = Reference::parse(name).unwrap();
            setup.store.tag("busybox", &reference).unwrap();
        }
        let context = setup.dir.0.join("context");
        for file in ["null", "nullfile", "vimrc", "bashrc", "test file"] {
            fs::write(context.join(file), format!("contents of {file}\n")).unwrap();
        }

        // `env` is left out: its `ENV name='a\'b'` line is rejected by
        // Docker's builder too (an unterminated single quote).
        let cases = [
            "args",
            "escape",
            "escape-after-comment",
            "escape-nonewline",
            "ADD-COPY-with-JSON",
            "lk4d4-the-edge-case-generator",
        ];
        let mut failures = Vec::new();
        for case in cases {
            let text = fs::read_to_string(corpus_case(case).join("Dockerfile")).unwrap();
            let (result, output) = setup.build(
                &text,
                &format!("corpus-{}", case.to_lowercase()),
                Options::default(),
            );
            if let Err(err) = result {
                failures.push(format!("{case}: {err}\n{output}"));
            }
        }
        assert!(
            failures.is_empty(),
            "corpus builds failed:\n{}",
            failures.join("\n")
        );

        let env = |image: &str| {
            let image = setup.store.resolve(image).unwrap();
            setup
                .store
                .config(&image)
                .unwrap()
                .config
                .unwrap()
                .env
                .unwrap_or_default()
        };
        let escaped = env("corpus-escape");
        assert!(escaped.contains(&"GOPATH=\\go".to_string()), "{escaped:?}");
        let edge = env("corpus-lk4d4-the-edge-case-generator");
        assert!(edge.contains(&"SCUBA=1 DUBA 3".to_string()), "{edge:?}");
        assert_eq!(
            setup
                .read("corpus-add-copy-with-json", "tmp/test file")
                .as_deref(),
            Some("contents of test file\n")
        );
        assert_eq!(
            setup
                .read("corpus-lk4d4-the-edge-case-generator", "tmp/passwd")
                .as_deref(),
            Some("root:testpass\n")
        );
        assert!(setup
            .read("corpus-lk4d4-the-edge-case-generator", "test/copy/vimrc")
            .is_some());
    }

    #[test]
    fn independent_stages_run_in_parallel() {
        let setup = Setup::new("run-parallel");
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        // With host networking the two stages meet on a loopback port: the
        // first listens, the second connects. Built one after the other,
        // the listener would wait in vain and time out. The `test` keeps
        // the shell as the container's PID 1, so that timeout can kill nc;
        // the FIFO gives nc an input that never ends, because busybox nc
        // stops when its input does.
        let text = format!(
            "FROM busybox AS listener
RUN mkfifo /tmp/idle; timeout 30 nc -l -p {port} <>/tmp/idle > /tmp/received; test -s /tmp/received
FROM busybox AS sender
RUN i=0; until echo hello | nc 127.0.0.1 {port}; do i=$((i+1)); [ $i -lt 150 ] || exit 1; sleep 0.2; done; echo sent > /tmp/sent
FROM busybox
COPY --from=listener /tmp/received /received
COPY --from=sender /tmp/sent /sent
"
        );
        let (result, output) = setup.build(&text, "joined", Options::default());
        result.unwrap_or_else(|err| panic!("build failed: {err}\n{output}"));
        assert_eq!(setup.read("joined", "received").as_deref(), Some("hello\n"));
    }
}

// ---- builds through cblockd ----------------------------------------------

mod daemon_builds {
    use std::fs;
    use std::io::{Read, Write};
    use std::os::unix::net::UnixStream;
    use std::path::{Path, PathBuf};
    use std::process::{Child, Command, Output, Stdio};
    use std::time::{Duration, Instant};

    use cblocks::daemon::protocol::{self as proto, BuildRequest, Kind, Request};

    const CBLOCK: &str = env!("CARGO_BIN_EXE_cblock");

    /// A daemon on its own socket and data directory, holding a `busybox`
    /// image; stopped and removed on drop.
    struct Daemon {
        dir: PathBuf,
        child: Child,
    }

    impl Daemon {
        fn start(label: &str) -> Daemon {
            let dir =
                std::env::temp_dir().join(format!("cblocks-dbuild-{label}-{}", std::process::id()));
            let _ = fs::remove_dir_all(&dir);
            fs::create_dir_all(dir.join("base")).unwrap();
            let child = Command::new(CBLOCK)
                .args(["daemon", "-d"])
                .arg(dir.join("data"))
                .arg("-U")
                .arg(dir.join("sock"))
                .arg("-l")
                .arg(dir.join("cblockd.log"))
                .stdin(Stdio::null())
                .spawn()
                .unwrap();
            let daemon = Daemon { dir, child };
            let deadline = Instant::now() + Duration::from_secs(10);
            while UnixStream::connect(daemon.socket()).is_err() {
                assert!(Instant::now() < deadline, "cblockd did not start");
                std::thread::sleep(Duration::from_millis(50));
            }

            // The base image, built in-process into the daemon's store.
            let base = daemon.dir.join("base");
            super::run_steps::write_busybox_tar(&base.join("busybox.tar"));
            fs::write(base.join("Cblockfile"), "FROM scratch\nADD busybox.tar /\n").unwrap();
            let data = daemon.dir.join("data");
            let built = daemon.cblock(
                &base,
                &["build", "-d", data.to_str().unwrap(), "-n", "busybox", "."],
            );
            assert!(
                built.status.success(),
                "{}",
                String::from_utf8_lossy(&built.stderr)
            );
            daemon
        }

        fn socket(&self) -> PathBuf {
            self.dir.join("sock")
        }

        /// Creates a build context with `text` as its Cblockfile.
        fn context(&self, name: &str, text: &str) -> PathBuf {
            let context = self.dir.join(name);
            fs::create_dir_all(&context).unwrap();
            fs::write(context.join("Cblockfile"), text).unwrap();
            context
        }

        fn cblock(&self, cwd: &Path, args: &[&str]) -> Output {
            Command::new(CBLOCK)
                .current_dir(cwd)
                .env("CBLOCK_SOCKET", self.socket())
                .args(args)
                .stdin(Stdio::null())
                .output()
                .unwrap()
        }
    }

    impl Drop for Daemon {
        fn drop(&mut self) {
            let _ = self.child.kill();
            let _ = self.child.wait();
            crate::common::unmount_below(&self.dir);
            let _ = fs::remove_dir_all(&self.dir);
        }
    }

    fn text(output: &Output) -> String {
        format!(
            "{}{}",
            String::from_utf8_lossy(&output.stdout),
            String::from_utf8_lossy(&output.stderr)
        )
    }

    #[test]
    fn daemon_build_streams_and_fails() {
        let daemon = Daemon::start("stream");
        let good = daemon.context(
            "good",
            "FROM busybox\nRUN echo output-of-run; echo x > /x\n",
        );
        let built = daemon.cblock(&good, &["build", "-n", "good", "."]);
        let output = text(&built);
        assert!(built.status.success(), "{output}");
        assert!(
            output.contains("-- Step 2/2 : RUN echo output-of-run"),
            "{output}"
        );
        assert!(output.contains("output-of-run"), "{output}");
        assert!(output.contains("-- Tagged good:latest"), "{output}");

        // -q prints the image ID alone.
        let quiet = daemon.cblock(&good, &["build", "-q", "-n", "good", "."]);
        let printed = String::from_utf8_lossy(&quiet.stdout).trim().to_string();
        assert!(quiet.status.success(), "{}", text(&quiet));
        assert!(printed.starts_with("sha256:"), "{printed:?}");
        assert_eq!(printed.lines().count(), 1, "{printed:?}");

        let bad = daemon.context("bad", "FROM busybox\nRUN exit 4\n");
        let failed = daemon.cblock(&bad, &["build", "-n", "bad", "."]);
        let output = text(&failed);
        assert_eq!(failed.status.code(), Some(1), "{output}");
        assert!(output.contains("Cblockfile:2"), "{output}");
        assert!(output.contains("status 4"), "{output}");
        let builds: Vec<_> = fs::read_dir(daemon.dir.join("data/builds"))
            .map(|dir| dir.flatten().map(|e| e.file_name()).collect())
            .unwrap_or_default();
        assert!(builds.is_empty(), "build leftovers: {builds:?}");
    }

    #[test]
    fn daemon_build_detach_and_reattach() {
        let daemon = Daemon::start("detach");
        let context = daemon.context(
            "slow",
            "FROM busybox\nRUN echo before-sleep; sleep 3; echo after-sleep\n",
        );

        // The client on a terminal, so that Ctrl+Q is read as a key.
        let pty = nix::pty::openpty(None, None).unwrap();
        let slave = fs::File::from(pty.slave);
        let mut client = Command::new(CBLOCK)
            .current_dir(&context)
            .env("CBLOCK_SOCKET", daemon.socket())
            .args(["build", "-n", "slow", "."])
            .stdin(slave.try_clone().unwrap())
            .stdout(slave.try_clone().unwrap())
            .stderr(slave)
            .spawn()
            .unwrap();
        let mut master = fs::File::from(pty.master);
        crate::common::set_nonblocking(&master);
        let mut seen = String::new();
        let deadline = Instant::now() + Duration::from_secs(20);
        let mut buffer = [0u8; 4096];
        while !seen.contains("before-sleep") && Instant::now() < deadline {
            match master.read(&mut buffer) {
                Ok(n) if n > 0 => seen.push_str(&String::from_utf8_lossy(&buffer[..n])),
                _ => std::thread::sleep(Duration::from_millis(20)),
            }
        }
        assert!(seen.contains("before-sleep"), "{seen}");
        master.write_all(&[0x11]).unwrap();
        let status = client.wait().unwrap();
        assert!(
            status.success(),
            "detaching ends the client with 0: {status}"
        );

        let id = seen
            .split("-- Build ")
            .nth(1)
            .and_then(|rest| rest.split_whitespace().next())
            .expect("the client names the build")
            .to_string();
        let console = daemon.cblock(&context, &["console", "--name", &id]);
        let output = text(&console);
        assert!(console.status.success(), "{output}");
        assert!(
            output.contains("before-sleep"),
            "the scrollback is replayed: {output}"
        );
        assert!(output.contains("after-sleep"), "{output}");
        assert!(output.contains("-- Tagged slow:latest"), "{output}");
    }

    #[test]
    fn daemon_rejects_hostile_context() {
        let daemon = Daemon::start("hostile");
        let outside = daemon.dir.join("escaped");
        let mut tar = Vec::new();
        {
            let mut builder = tar::Builder::new(&mut tar);
            let mut header = tar::Header::new_gnu();
            header.set_entry_type(tar::EntryType::Regular);
            header.set_size(4);
            header.set_mode(0o644);
            header.set_uid(0);
            header.set_gid(0);
            header.set_mtime(0);
            // tar::Builder refuses `..`, so the name goes in raw.
            let name = b"../../escaped";
            header.as_old_mut().name[..name.len()].copy_from_slice(name);
            header.set_cksum();
            builder.append(&header, &b"evil"[..]).unwrap();
            builder.finish().unwrap();
        }

        let mut stream = UnixStream::connect(daemon.socket()).unwrap();
        let request = Request::Build(Box::new(BuildRequest {
            file_name: "Cblockfile".into(),
            file_text: "FROM busybox\n".into(),
            names: vec!["hostile:latest".into()],
            network: "host".into(),
            ..Default::default()
        }));
        proto::write_json(&mut stream, Kind::Request, &request).unwrap();
        for chunk in tar.chunks(proto::MAX_CHUNK) {
            let _ = proto::write_frame(&mut stream, Kind::Data, chunk);
        }
        let _ = proto::write_frame(&mut stream, Kind::Eof, &[]);
        let response = proto::read_json::<_, proto::Response>(&mut stream, Kind::Response);
        let message = format!("{response:?}");
        assert!(
            message.contains("escaped"),
            "the error names the entry: {message}"
        );
        assert!(!outside.exists(), "the context wrote outside its directory");
        let listed = daemon.cblock(&daemon.dir, &["instances", "-a", "-q"]);
        assert_eq!(
            String::from_utf8_lossy(&listed.stdout).trim(),
            "",
            "an instance was left"
        );
    }

    #[test]
    fn daemon_rejects_stray_context_frame() {
        let daemon = Daemon::start("frame");
        let mut stream = UnixStream::connect(daemon.socket()).unwrap();
        let request = Request::Build(Box::new(BuildRequest {
            file_name: "Cblockfile".into(),
            file_text: "FROM busybox\n".into(),
            names: vec!["stray:latest".into()],
            network: "host".into(),
            accept_cached: true,
            ..Default::default()
        }));
        proto::write_json(&mut stream, Kind::Request, &request).unwrap();
        let _ = proto::write_frame(&mut stream, Kind::Stdin, b"not a tar stream");
        let response = proto::read_json::<_, proto::Response>(&mut stream, Kind::Response);
        let message = format!("{response:?}");
        assert!(
            message.contains("unexpected Stdin frame while receiving the build context"),
            "{message}"
        );
        assert_eq!(instance_count(&daemon), 0, "an instance was left");
        let builds: Vec<_> = fs::read_dir(daemon.dir.join("data/builds"))
            .map(|dir| dir.flatten().map(|e| e.file_name()).collect())
            .unwrap_or_default();
        assert!(builds.is_empty(), "build leftovers: {builds:?}");
    }

    // ---- rebuilds built from the cache alone -------------------------------

    /// What cblockd sent back for a build request made without the client.
    struct RawBuild {
        /// `Launched` for a build process, `Streaming` for a build from the
        /// cache alone, or the error message.
        response: Result<proto::Response, String>,
        /// The output frames, with the terminal's carriage returns removed.
        output: String,
        status: Option<i32>,
    }

    /// Sends a build request with `names` for `context` the way the client
    /// does, and collects everything that comes back until the exit status.
    fn raw_build(daemon: &Daemon, context: &Path, names: &[&str], accept_cached: bool) -> RawBuild {
        let mut tar = Vec::new();
        let patterns = cblocks::cblockfile::ignore::Patterns::load(context).unwrap();
        cblocks::build::context::pack(context, &patterns, &mut tar, &mut |_| {}).unwrap();

        let mut stream = UnixStream::connect(daemon.socket()).unwrap();
        let request = Request::Build(Box::new(BuildRequest {
            // The name the client gives when it runs in the context with `.`.
            file_name: "./Cblockfile".into(),
            file_text: fs::read_to_string(context.join("Cblockfile")).unwrap(),
            names: names.iter().map(|name| name.to_string()).collect(),
            network: "host".into(),
            attach: true,
            accept_cached,
            ..Default::default()
        }));
        proto::write_json(&mut stream, Kind::Request, &request).unwrap();
        for chunk in tar.chunks(proto::MAX_CHUNK) {
            proto::write_frame(&mut stream, Kind::Data, chunk).unwrap();
        }
        proto::write_frame(&mut stream, Kind::Eof, &[]).unwrap();
        let response = proto::read_json::<_, proto::Response>(&mut stream, Kind::Response)
            .map_err(|err| err.to_string());

        let mut output = Vec::new();
        let mut status = None;
        if response.is_ok() {
            stream
                .set_read_timeout(Some(Duration::from_secs(60)))
                .unwrap();
            while let Ok(frame) = proto::read_frame(&mut stream) {
                match frame.kind {
                    Kind::Output => output.extend_from_slice(&frame.payload),
                    Kind::Exit => {
                        status = proto::parse_exit(&frame.payload);
                        break;
                    }
                    _ => {}
                }
            }
        }
        RawBuild {
            response,
            output: String::from_utf8_lossy(&output).replace('\r', ""),
            status,
        }
    }

    /// Returns the build output lines that do not change from run to run:
    /// all but the summary with its time.
    fn stable_lines(output: &str) -> Vec<String> {
        output
            .replace('\r', "")
            .lines()
            .filter(|line| !line.starts_with("-- Build finished in "))
            .map(str::to_string)
            .collect()
    }

    fn instance_count(daemon: &Daemon) -> usize {
        let listed = daemon.cblock(&daemon.dir, &["instances", "-a", "-q"]);
        assert!(listed.status.success(), "{}", text(&listed));
        String::from_utf8_lossy(&listed.stdout).lines().count()
    }

    fn image_id(daemon: &Daemon, name: &str) -> String {
        let store = cblocks::image::Store::open_or_create(&daemon.dir.join("data")).unwrap();
        store.resolve(name).unwrap().id
    }

    const COPY_AND_RUN: &str =
        "FROM busybox\nENV GREETING=hello\nCOPY data.txt /data.txt\nRUN cp /data.txt /copy.txt\nCMD [\"/bin/cat\", \"/copy.txt\"]\n";

    #[test]
    fn cached_rebuild_starts_no_instance() {
        let daemon = Daemon::start("cached");
        let context = daemon.context("app", COPY_AND_RUN);
        fs::write(context.join("data.txt"), "one\n").unwrap();
        let first = daemon.cblock(&context, &["build", "-n", "app", "."]);
        assert!(first.status.success(), "{}", text(&first));
        assert_eq!(instance_count(&daemon), 1);

        // The build process's output for a rebuild with every step cached,
        // from its log (see the note at `failing_build_same_error_both_paths`).
        let slow = launched_id(&raw_build(&daemon, &context, &["app:latest"], false));
        let (slow_log, slow_row) = finished_build(&daemon, &slow);
        assert!(slow_row.ends_with("exited(0)"), "{slow_row}");
        assert_eq!(instance_count(&daemon), 2);

        let fast = daemon.cblock(&context, &["build", "-n", "app", "."]);
        let stdout = String::from_utf8_lossy(&fast.stdout).into_owned();
        assert!(fast.status.success(), "{}", text(&fast));
        assert_eq!(
            instance_count(&daemon),
            2,
            "the rebuild started an instance"
        );
        assert_eq!(stable_lines(&stdout), stable_lines(&slow_log));
        assert!(
            stdout.contains("-- Step 4/5 : RUN cp /data.txt /copy.txt\n ---> Using cache\n"),
            "{stdout}"
        );
        assert!(stdout.contains("-- Tagged app:latest\n"), "{stdout}");
        assert!(
            stdout.contains(": 0 steps run, 2 from the cache\n"),
            "{stdout}"
        );
        let log = fs::read_to_string(daemon.dir.join("cblockd.log")).unwrap();
        assert!(log.contains("from the build cache alone"), "{log}");

        // -q prints the image ID alone, the ID the full build made.
        let quiet = daemon.cblock(&context, &["build", "-q", "-n", "app", "."]);
        assert!(quiet.status.success(), "{}", text(&quiet));
        assert_eq!(
            String::from_utf8_lossy(&quiet.stdout),
            format!("{}\n", image_id(&daemon, "app:latest"))
        );
        assert_eq!(String::from_utf8_lossy(&quiet.stderr), "");
        assert_eq!(instance_count(&daemon), 2);

        // Every name of the request is tagged.
        let named = raw_build(&daemon, &context, &["app:v2", "other:latest"], true);
        assert_eq!(
            named.response.as_ref().ok(),
            Some(&proto::Response::Streaming)
        );
        assert_eq!(named.status, Some(0), "{}", named.output);
        assert!(
            named.output.contains("-- Tagged app:v2\n"),
            "{}",
            named.output
        );
        assert!(
            named.output.contains("-- Tagged other:latest\n"),
            "{}",
            named.output
        );
        let id = image_id(&daemon, "app:latest");
        assert_eq!(image_id(&daemon, "app:v2"), id);
        assert_eq!(image_id(&daemon, "other:latest"), id);
        assert_eq!(instance_count(&daemon), 2);

        let builds: Vec<_> = fs::read_dir(daemon.dir.join("data/builds"))
            .map(|dir| dir.flatten().map(|e| e.file_name()).collect())
            .unwrap_or_default();
        assert!(builds.is_empty(), "build leftovers: {builds:?}");
    }

    #[test]
    fn changed_context_rebuilds_from_copy() {
        let daemon = Daemon::start("changed");
        let context = daemon.context("app", COPY_AND_RUN);
        fs::write(context.join("data.txt"), "one\n").unwrap();
        let first = daemon.cblock(&context, &["build", "-n", "app", "."]);
        assert!(first.status.success(), "{}", text(&first));
        let old_id = image_id(&daemon, "app:latest");

        fs::write(context.join("data.txt"), "two\n").unwrap();
        let changed = daemon.cblock(&context, &["build", "-n", "app", "."]);
        let stdout = String::from_utf8_lossy(&changed.stdout).replace('\r', "");
        assert!(changed.status.success(), "{}", text(&changed));
        assert_eq!(
            instance_count(&daemon),
            2,
            "the changed build ran in an instance"
        );
        assert!(
            stdout.contains("-- Step 3/5 : COPY data.txt /data.txt\n-- Step 4/5"),
            "{stdout}"
        );
        assert!(
            stdout.contains(": 2 steps run, 0 from the cache"),
            "{stdout}"
        );
        assert_ne!(image_id(&daemon, "app:latest"), old_id);

        // --no-cache runs every step again, even with nothing changed.
        let no_cache = daemon.cblock(&context, &["build", "--no-cache", "-n", "app", "."]);
        let stdout = String::from_utf8_lossy(&no_cache.stdout).replace('\r', "");
        assert!(no_cache.status.success(), "{}", text(&no_cache));
        assert_eq!(instance_count(&daemon), 3, "--no-cache took the cache path");
        assert!(!stdout.contains("Using cache"), "{stdout}");
        assert!(
            stdout.contains(": 2 steps run, 0 from the cache"),
            "{stdout}"
        );
    }

    #[test]
    fn cached_multi_stage_mounts_nothing() {
        let daemon = Daemon::start("stages");
        let context = daemon.context(
            "stages",
            "FROM busybox AS one\nRUN echo from-one > /x\nFROM busybox\nCOPY --from=one /x /y\n",
        );
        let first = daemon.cblock(&context, &["build", "-n", "two", "."]);
        assert!(first.status.success(), "{}", text(&first));

        let again = daemon.cblock(&context, &["build", "-n", "two", "."]);
        let stdout = String::from_utf8_lossy(&again.stdout).into_owned();
        assert!(again.status.success(), "{}", text(&again));
        assert_eq!(
            instance_count(&daemon),
            1,
            "the rebuild started an instance"
        );
        assert!(
            stdout.contains("-- Step 4/4 : COPY --from=one /x /y\n ---> Using cache\n"),
            "{stdout}"
        );
        assert!(
            stdout.contains(": 0 steps run, 2 from the cache"),
            "{stdout}"
        );
        let mounts = crate::common::mounts_below(&daemon.dir.join("data"));
        assert!(mounts.is_empty(), "mounts left: {mounts:?}");
    }

    /// Waits until build instance `id` has exited and returns its output
    /// (`cblock logs`) and its row of `cblock instances -a`.
    fn finished_build(daemon: &Daemon, id: &str) -> (String, String) {
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            let listed = daemon.cblock(&daemon.dir, &["instances", "-a"]);
            let listing = String::from_utf8_lossy(&listed.stdout).into_owned();
            let row = listing.lines().find(|line| line.starts_with(id));
            if let Some(row) = row.filter(|row| row.contains("exited(")) {
                let logs = daemon.cblock(&daemon.dir, &["logs", id]);
                let output = String::from_utf8_lossy(&logs.stdout).replace('\r', "");
                return (output, row.to_string());
            }
            assert!(
                Instant::now() < deadline,
                "build {id} did not exit: {listing}"
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    fn launched_id(build: &RawBuild) -> String {
        match &build.response {
            Ok(proto::Response::Launched { id }) => id.clone(),
            other => panic!("expected a build instance, got {other:?}"),
        }
    }

    // These builds fail within milliseconds, often before the client's
    // attach reaches the supervisor; the attached client still gets the
    // output and the exit status.
    #[test]
    fn failing_build_same_error_both_paths() {
        let daemon = Daemon::start("failing");
        let missing = daemon.context("missing", "FROM no-such-image\nRUN true\n");
        let slow = launched_id(&raw_build(&daemon, &missing, &["missing:latest"], false));
        let built = daemon.cblock(&missing, &["build", "-n", "missing", "."]);
        let stderr = String::from_utf8_lossy(&built.stderr).into_owned();
        let stdout = String::from_utf8_lossy(&built.stdout).into_owned();
        assert_eq!(built.status.code(), Some(1), "{stdout}\n{stderr}");
        assert!(
            stdout.contains("base image \"no-such-image\""),
            "the attached client missed the error: {stdout}\n{stderr}"
        );
        let fallback = stderr
            .split("-- Build ")
            .nth(1)
            .and_then(|rest| rest.split_whitespace().next())
            .unwrap_or_else(|| panic!("the client names no build: {stderr}"))
            .to_string();

        let (slow_log, slow_row) = finished_build(&daemon, &slow);
        let (fallback_log, fallback_row) = finished_build(&daemon, &fallback);
        assert!(slow_row.ends_with("exited(1)"), "{slow_row}");
        assert!(fallback_row.ends_with("exited(1)"), "{fallback_row}");
        assert!(
            slow_log.contains("base image \"no-such-image\""),
            "{slow_log}"
        );
        assert_eq!(fallback_log, slow_log);
        let store = cblocks::image::Store::open_or_create(&daemon.dir.join("data")).unwrap();
        assert!(
            store.resolve("missing:latest").is_err(),
            "the failed build tagged an image"
        );

        // A file the client would reject, sent without it: the parse error
        // comes from the build process whether the cache is accepted or not.
        let invalid = daemon.context("invalid", "FROM busybox\nNOSUCHINSTRUCTION x\n");
        let without = launched_id(&raw_build(&daemon, &invalid, &["invalid:latest"], false));
        let with = launched_id(&raw_build(&daemon, &invalid, &["invalid:latest"], true));
        let (without_log, without_row) = finished_build(&daemon, &without);
        let (with_log, with_row) = finished_build(&daemon, &with);
        assert!(without_row.ends_with("exited(1)"), "{without_row}");
        assert!(with_row.ends_with("exited(1)"), "{with_row}");
        assert!(with_log.contains("NOSUCHINSTRUCTION"), "{with_log}");
        assert_eq!(with_log, without_log);

        let builds: Vec<_> = fs::read_dir(daemon.dir.join("data/builds"))
            .map(|dir| dir.flatten().map(|e| e.file_name()).collect())
            .unwrap_or_default();
        assert!(builds.is_empty(), "build leftovers: {builds:?}");
    }
}
