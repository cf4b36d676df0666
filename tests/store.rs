//! The image store with real drivers (vfs, overlay, and btrfs on a loop
//! device). Also names, removal and pruning, crash safety under kill -9, and
//! round trips through Podman. Runs as root.

use std::collections::BTreeMap;
use std::fs;
use std::io::{Cursor, Write};
use std::os::unix::fs::{symlink, MetadataExt};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::Duration;

use cblocks::image::{Error as ImageError, Reference, Removed, Store};
use cblocks::oci::image_spec::{ContainerConfig, ImageConfig};
use cblocks::storage::{write_diff, DiffSource, DriverKind};

/// A scratch directory that unmounts whatever is mounted below it and is
/// removed on drop, also when the test fails.
struct Scratch(PathBuf);

impl Scratch {
    fn new(tag: &str) -> Self {
        let dir = std::env::temp_dir().join(format!("cblocks-store-{tag}-{}", std::process::id()));
        unmount_below(&dir);
        let _ = fs::remove_dir_all(&dir);
        fs::create_dir_all(&dir).unwrap();
        Scratch(dir)
    }

    fn path(&self, sub: &str) -> PathBuf {
        self.0.join(sub)
    }
}

impl Drop for Scratch {
    fn drop(&mut self) {
        unmount_below(&self.0);
        let _ = fs::remove_dir_all(&self.0);
    }
}

/// Unmounts every mount point below `dir`, deepest first.
fn unmount_below(dir: &Path) {
    let info = fs::read_to_string("/proc/self/mountinfo").unwrap_or_default();
    let mut points: Vec<&str> = info
        .lines()
        .filter_map(|line| line.split(' ').nth(4))
        .filter(|point| Path::new(point).starts_with(dir))
        .collect();
    points.sort_by_key(|p| std::cmp::Reverse(p.len()));
    for point in points {
        let _ = Command::new("umount")
            .arg("-l")
            .arg(point)
            .stderr(Stdio::null())
            .status();
    }
}

fn config(cmd: &[&str], env: &[&str]) -> ImageConfig {
    ImageConfig {
        architecture: "amd64".into(),
        os: "linux".into(),
        config: Some(ContainerConfig {
            cmd: Some(cmd.iter().map(|s| s.to_string()).collect()),
            env: Some(env.iter().map(|s| s.to_string()).collect()),
            working_dir: Some("/".into()),
            ..Default::default()
        }),
        ..Default::default()
    }
}

fn reference(text: &str) -> Reference {
    Reference::parse(text).unwrap()
}

/// Returns an uncompressed layer tar of everything in `dir`.
fn tar_of(dir: &Path) -> Vec<u8> {
    let mut out = Vec::new();
    write_diff(
        DiffSource::Trees {
            lower: None,
            upper: dir,
        },
        &mut out,
    )
    .unwrap();
    out
}

fn base_tree(dir: &Path) {
    fs::create_dir_all(dir.join("bin")).unwrap();
    fs::create_dir_all(dir.join("etc")).unwrap();
    fs::create_dir_all(dir.join("dir/sub")).unwrap();
    fs::write(dir.join("bin/tool"), b"#!/bin/sh\necho tool\n").unwrap();
    fs::write(dir.join("etc/conf"), b"key=value\n").unwrap();
    fs::hard_link(dir.join("etc/conf"), dir.join("etc/conf.hl")).unwrap();
    fs::write(dir.join("dir/old1"), b"1").unwrap();
    fs::write(dir.join("dir/sub/old2"), b"2").unwrap();
    symlink("/etc/conf", dir.join("lnk")).unwrap();
}

fn names_in(dir: &Path) -> Vec<String> {
    let mut names: Vec<String> = fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    names.sort();
    names
}

/// Runs the whole life of two images on `driver`: commit, mount, change,
/// commit the changes, mount the result, remove, and check.
fn exercise_driver(data: &Path, driver: DriverKind) {
    let tree = data.join("tree");
    base_tree(&tree);
    let store = Store::open(&data.join("data"), driver).unwrap();

    let base = store
        .commit_tar(None, &mut Cursor::new(tar_of(&tree)), "test")
        .unwrap();
    assert_eq!(base.parent, None);
    assert_eq!(
        base.chain_id, base.diff_id,
        "a base layer's chain ID is its diff ID"
    );
    let image = store
        .add_image(
            config(&["/bin/tool"], &["A=1"]),
            Some(&base.chain_id),
            BTreeMap::new(),
            &[reference("base:1")],
        )
        .unwrap();

    store.release("test").unwrap();

    let root = store.mount_image("c1", Some("base:1")).unwrap();
    assert_eq!(
        fs::read(root.join("bin/tool")).unwrap(),
        b"#!/bin/sh\necho tool\n"
    );
    assert_eq!(
        fs::read_link(root.join("lnk")).unwrap(),
        Path::new("/etc/conf")
    );
    assert_eq!(
        fs::metadata(root.join("etc/conf")).unwrap().nlink(),
        2,
        "hard link kept"
    );

    // Changes: a new file, a deleted file, and a directory deleted and
    // recreated with other content.
    fs::write(root.join("new.txt"), b"new").unwrap();
    fs::remove_file(root.join("etc/conf")).unwrap();
    fs::remove_dir_all(root.join("dir")).unwrap();
    fs::create_dir(root.join("dir")).unwrap();
    fs::write(root.join("dir/fresh"), b"f").unwrap();
    let layer = store.commit_mount("c1").unwrap();
    assert_eq!(layer.parent.as_deref(), Some(base.chain_id.as_str()));
    let derived = store
        .add_image(
            config(&["/bin/sh"], &[]),
            Some(&layer.chain_id),
            BTreeMap::new(),
            &[reference("derived:1")],
        )
        .unwrap();
    assert_eq!(derived.layers.len(), 2);

    let root2 = store.mount_image("c2", Some("derived:1")).unwrap();
    assert_eq!(fs::read(root2.join("new.txt")).unwrap(), b"new");
    assert!(!root2.join("etc/conf").exists(), "deleted file came back");
    assert_eq!(fs::read(root2.join("etc/conf.hl")).unwrap(), b"key=value\n");
    assert_eq!(
        names_in(&root2.join("dir")),
        vec!["fresh".to_string()],
        "old files of a recreated dir came back"
    );
    assert_eq!(
        fs::read(root2.join("bin/tool")).unwrap(),
        b"#!/bin/sh\necho tool\n"
    );

    // A file named like a whiteout cannot be committed.
    fs::write(root2.join(".wh.trap"), b"x").unwrap();
    let err = store.commit_mount("c2").unwrap_err().to_string();
    assert!(err.contains(".wh.trap"), "{err}");

    // In use: removal is refused until the mounts go.
    let err = store.remove("base:1", false).unwrap_err();
    assert!(matches!(err, ImageError::InUse { .. }), "{err}");
    assert!(err.to_string().contains("mount c1"), "{err}");
    store.unmount("c1").unwrap();
    store.remove_mount("c1").unwrap();
    store.remove_mount("c2").unwrap();

    assert_eq!(store.check().unwrap(), Vec::<String>::new());
    assert!(matches!(
        store.remove("derived:1", false).unwrap(),
        Removed::Deleted { .. }
    ));
    assert_eq!(
        store.driver().layers().unwrap().len(),
        1,
        "the derived layer is collected, the base stays"
    );
    assert!(matches!(
        store.remove(&image.id, false).unwrap(),
        Removed::Deleted { .. }
    ));
    assert!(store.driver().layers().unwrap().is_empty());
    assert!(store.images().unwrap().is_empty());
    assert_eq!(store.check().unwrap(), Vec::<String>::new());
}

#[test]
fn vfs_driver_full_cycle() {
    let scratch = Scratch::new("vfs");
    exercise_driver(&scratch.0, DriverKind::Vfs);
}

#[test]
fn overlay_driver_full_cycle() {
    let scratch = Scratch::new("overlay");
    exercise_driver(&scratch.0, DriverKind::Overlay);
}

/// A btrfs file system in a file, loop-mounted; unmounted and deleted on
/// drop.
struct LoopBtrfs {
    image: PathBuf,
    mount_point: PathBuf,
}

impl Drop for LoopBtrfs {
    fn drop(&mut self) {
        unmount_below(&self.mount_point);
        let _ = Command::new("umount")
            .arg(&self.mount_point)
            .stderr(Stdio::null())
            .status();
        let _ = fs::remove_file(&self.image);
    }
}

#[test]
fn btrfs_driver_on_loop_device() {
    let scratch = Scratch::new("btrfs");
    let fs_guard = LoopBtrfs {
        image: scratch.path("btrfs.img"),
        mount_point: scratch.path("mnt"),
    };
    fs::create_dir(&fs_guard.mount_point).unwrap();
    let file = fs::File::create(&fs_guard.image).unwrap();
    file.set_len(256 << 20).unwrap();
    drop(file);
    let status = Command::new("mkfs.btrfs")
        .args(["-q", "-f"])
        .arg(&fs_guard.image)
        .stdout(Stdio::null())
        .status()
        .expect("mkfs.btrfs is missing; install btrfs-progs");
    assert!(status.success(), "mkfs.btrfs failed");
    let status = Command::new("mount")
        .args(["-o", "loop"])
        .arg(&fs_guard.image)
        .arg(&fs_guard.mount_point)
        .status()
        .unwrap();
    assert!(status.success(), "loop mount of the btrfs image failed");

    exercise_driver(&fs_guard.mount_point, DriverKind::Btrfs);
}

#[test]
fn btrfs_rejected_off_btrfs() {
    let scratch = Scratch::new("btrfs-off");
    let err = Store::open(&scratch.0, DriverKind::Btrfs)
        .err()
        .expect("btrfs opened on a non-btrfs directory");
    assert!(
        err.to_string().contains("not on a btrfs file system"),
        "{err}"
    );
}

#[test]
fn driver_mismatch_rejected() {
    let scratch = Scratch::new("mismatch");
    drop(Store::open(&scratch.0, DriverKind::Vfs).unwrap());
    let err = Store::open(&scratch.0, DriverKind::Overlay)
        .err()
        .expect("a second driver was accepted");
    let text = err.to_string();
    assert!(matches!(err, ImageError::DriverMismatch { .. }), "{text}");
    assert!(text.contains("--storage vfs"), "{text}");
    assert!(Store::open(&scratch.0, DriverKind::Vfs).is_ok());
}

fn small_image(store: &Store, content: &[u8], names: &[&str]) -> cblocks::image::Image {
    let digest = cblocks::storage::archive::sha256_digest(content);
    let tree = tempdir_in(store.data_dir(), &format!("tree-{}", &digest[7..19]));
    fs::write(tree.join("file"), content).unwrap();
    let holder = format!("hold{}", &digest[7..19]);
    let layer = store
        .commit_tar(None, &mut Cursor::new(tar_of(&tree)), &holder)
        .unwrap();
    fs::remove_dir_all(&tree).unwrap();
    let names: Vec<Reference> = names.iter().map(|n| reference(n)).collect();
    let image = store
        .add_image(
            config(&["/file"], &[]),
            Some(&layer.chain_id),
            BTreeMap::new(),
            &names,
        )
        .unwrap();
    store.release(&holder).unwrap();
    image
}

fn tempdir_in(dir: &Path, tag: &str) -> PathBuf {
    let path = dir.join(format!("{tag}-{}", std::process::id()));
    let _ = fs::remove_dir_all(&path);
    fs::create_dir_all(&path).unwrap();
    path
}

#[test]
fn tags_and_removal_rules() {
    let scratch = Scratch::new("tags");
    let store = Store::open(&scratch.0, DriverKind::Vfs).unwrap();
    let image = small_image(&store, b"one", &["app"]);

    let err = Reference::parse("bad/name").unwrap_err().to_string();
    assert!(err.contains("path separators"), "{err}");

    store.tag("app", &reference("app:v2")).unwrap();
    store.tag(&image.id[7..19], &reference("other")).unwrap();
    let summary = &store.images().unwrap()[0];
    let names: Vec<String> = summary.names.iter().map(|n| n.to_string()).collect();
    assert_eq!(names, vec!["app:latest", "app:v2", "other:latest"]);

    assert_eq!(
        store.remove("app:v2", false).unwrap(),
        Removed::Untagged(reference("app:v2"))
    );
    let err = store.remove(&image.id, false).unwrap_err();
    assert!(matches!(err, ImageError::MultipleNames { .. }), "{err}");

    store.untag(&reference("other")).unwrap();
    assert!(matches!(
        store.untag(&reference("other")),
        Err(ImageError::ImageNotFound(_))
    ));

    store.add_use("app", "build1").unwrap();
    let err = store.remove("app", false).unwrap_err();
    assert!(err.to_string().contains("build1"), "{err}");
    assert!(
        store.resolve("app").is_ok(),
        "a refused removal changed nothing"
    );
    assert!(matches!(
        store.remove("app", true).unwrap(),
        Removed::Deleted { .. }
    ));
    assert!(store.images().unwrap().is_empty());
    assert_eq!(store.check().unwrap(), Vec::<String>::new());
}

#[test]
fn prune_spares_used_images() {
    let scratch = Scratch::new("prune");
    let store = Store::open(&scratch.0, DriverKind::Vfs).unwrap();
    let named = small_image(&store, b"named", &["keep"]);
    let used = small_image(&store, b"used", &[]);
    let unused = small_image(&store, b"unused", &[]);
    store.mount_image("ctr1", Some(&used.id)).unwrap();

    // A layer a build committed is kept while the build holds it, and
    // pruned once released.
    let tree = tempdir_in(&scratch.0, "loose");
    fs::write(tree.join("x"), b"loose").unwrap();
    let loose = store
        .commit_tar(None, &mut Cursor::new(tar_of(&tree)), "build7")
        .unwrap();
    let report = store.prune().unwrap();
    assert_eq!(report.images, vec![unused.id.clone()]);
    assert!(
        !report.layers.contains(&loose.chain_id),
        "a held layer was pruned"
    );
    assert!(store.layer(&loose.chain_id).is_ok());
    store.release("build7").unwrap();

    let report = store.prune().unwrap();
    assert!(report.images.is_empty());
    assert_eq!(report.layers, vec![loose.chain_id.clone()]);
    let ids: Vec<String> = store
        .images()
        .unwrap()
        .into_iter()
        .map(|s| s.image.id)
        .collect();
    assert!(ids.contains(&named.id), "a named image was pruned");
    assert!(ids.contains(&used.id), "an image in use was pruned");
    assert_eq!(store.check().unwrap(), Vec::<String>::new());

    let usage = store.disk_usage().unwrap();
    assert_eq!((usage.images, usage.layers, usage.mounts), (2, 2, 1));
    store.remove_mount("ctr1").unwrap();
}

#[test]
fn hostile_layer_leaves_nothing() {
    let scratch = Scratch::new("hostile");
    let store = Store::open(&scratch.0, DriverKind::Vfs).unwrap();
    let mut builder = tar::Builder::new(Vec::new());
    let mut header = tar::Header::new_gnu();
    header.set_entry_type(tar::EntryType::Symlink);
    header.set_size(0);
    builder.append_link(&mut header, "escape", "/").unwrap();
    let mut header = tar::Header::new_gnu();
    header.set_size(4);
    builder
        .append_data(
            &mut header,
            "escape/tmp/cblocks-hostile-layer",
            &b"evil"[..],
        )
        .unwrap();
    let bytes = builder.into_inner().unwrap();

    let err = store
        .commit_tar(None, &mut Cursor::new(bytes), "test")
        .unwrap_err()
        .to_string();
    assert!(err.contains("escape/tmp/cblocks-hostile-layer"), "{err}");
    assert!(!Path::new("/tmp/cblocks-hostile-layer").exists());
    assert!(store.driver().layers().unwrap().is_empty());
    let data = scratch.0.join("store");
    assert!(names_in(&data.join("layers")).is_empty());
    assert!(
        names_in(&data.join("blobs/sha256")).is_empty(),
        "the hostile blob stayed"
    );
    assert!(names_in(&data.join("tmp")).is_empty());
    assert!(
        names_in(&data.join("vfs/layers")).is_empty(),
        "a half layer stayed"
    );
    assert_eq!(store.check().unwrap(), Vec::<String>::new());
}

#[test]
fn save_load_round_trip() {
    let scratch = Scratch::new("saveload");
    let store = Store::open(&scratch.path("a"), DriverKind::Vfs).unwrap();
    let tree = scratch.path("tree");
    base_tree(&tree);
    let layer = store
        .commit_tar(None, &mut Cursor::new(tar_of(&tree)), "test")
        .unwrap();
    let mut annotations = BTreeMap::new();
    annotations.insert(
        cblocks::oci::image_spec::ANNOTATION_OS_RELEASE.to_string(),
        "14.1-RELEASE".to_string(),
    );
    let image = store
        .add_image(
            config(&["/bin/tool"], &["X=y"]),
            Some(&layer.chain_id),
            annotations,
            &[reference("rt:v1")],
        )
        .unwrap();

    let mut archive = Vec::new();
    store.save(&["rt:v1"], &mut archive).unwrap();
    let other = Store::open(&scratch.path("b"), DriverKind::Vfs).unwrap();
    let report = other.load(&mut Cursor::new(&archive), "archive").unwrap();
    assert_eq!(
        report.images,
        vec![(image.id.clone(), vec![reference("rt:v1")])]
    );
    let loaded = other.resolve("rt:v1").unwrap();
    assert_eq!(loaded.id, image.id);
    assert_eq!(
        other.config(&loaded).unwrap(),
        store.config(&image).unwrap()
    );
    let root = other.mount_image("m", Some("rt:v1")).unwrap();
    assert_eq!(
        fs::read(root.join("bin/tool")).unwrap(),
        b"#!/bin/sh\necho tool\n"
    );
    other.remove_mount("m").unwrap();
    assert_eq!(other.check().unwrap(), Vec::<String>::new());

    // A damaged archive is rejected and leaves nothing behind.
    let third = Store::open(&scratch.path("c"), DriverKind::Vfs).unwrap();
    let mut damaged = archive.clone();
    let layer_hex = &layer.blob.digest[7..];
    let pos = find(&damaged, format!("blobs/sha256/{layer_hex}").as_bytes()).unwrap();
    // The layer blob's data starts in the block after its header.
    let data = pos - (pos % 512) + 512;
    damaged[data + 100] ^= 0xff;
    let err = third
        .load(&mut Cursor::new(&damaged), "damaged")
        .unwrap_err()
        .to_string();
    assert!(err.contains("digest"), "{err}");
    assert!(third.images().unwrap().is_empty());
    assert!(names_in(&scratch.path("c/store/tmp")).is_empty());
}

#[test]
fn load_paths_stay_in_archive() {
    let scratch = Scratch::new("loadpaths");
    let store = Store::open(&scratch.0, DriverKind::Vfs).unwrap();
    let secret = scratch.path("secret.json");
    fs::write(
        &secret,
        br#"{"architecture":"amd64","os":"linux","rootfs":{"type":"layers","diff_ids":[]}}"#,
    )
    .unwrap();

    // manifest.json names a configuration outside the archive, once by `..`
    // and once through an absolute symlink inside the archive.
    let relative = format!("../../../../../../..{}", secret.display());
    for (tag, config_path, link) in [
        ("dotdot", relative.as_str(), None),
        ("symlink", "config.json", Some(secret.clone())),
    ] {
        let mut builder = tar::Builder::new(Vec::new());
        let manifest =
            format!(r#"[{{"Config":"{config_path}","RepoTags":["leak:{tag}"],"Layers":[]}}]"#);
        let mut header = tar::Header::new_gnu();
        header.set_size(manifest.len() as u64);
        header.set_mode(0o644);
        builder
            .append_data(&mut header, "manifest.json", manifest.as_bytes())
            .unwrap();
        if let Some(target) = link {
            let mut header = tar::Header::new_gnu();
            header.set_entry_type(tar::EntryType::Symlink);
            header.set_size(0);
            builder
                .append_link(&mut header, "config.json", &target)
                .unwrap();
        }
        let bytes = builder.into_inner().unwrap();

        let err = store
            .load(&mut Cursor::new(bytes), tag)
            .unwrap_err()
            .to_string();
        assert!(err.contains("cannot open"), "{tag}: {err}");
        assert!(
            store.images().unwrap().is_empty(),
            "{tag}: an image was loaded from outside the archive"
        );
    }
    assert!(names_in(&scratch.path("store/tmp")).is_empty());
}

fn find(haystack: &[u8], needle: &[u8]) -> Option<usize> {
    haystack.windows(needle.len()).position(|w| w == needle)
}

#[test]
fn concurrent_writers_serialised() {
    let scratch = Scratch::new("concurrent");
    let data = scratch.path("data");
    drop(Store::open(&data, DriverKind::Vfs).unwrap());

    // Each thread opens its own store, as separate processes would; the
    // flock on the store's lock file is what keeps them apart.
    let threads: Vec<_> = (0..4)
        .map(|t| {
            let data = data.clone();
            std::thread::spawn(move || {
                let store = Store::open(&data, DriverKind::Vfs).unwrap();
                for i in 0..5 {
                    small_image(
                        &store,
                        format!("{t}-{i}").as_bytes(),
                        &[&format!("w{t}:{i}")],
                    );
                    if i == 2 {
                        store.prune().unwrap();
                    }
                }
            })
        })
        .collect();
    for thread in threads {
        thread.join().unwrap();
    }

    let store = Store::open(&data, DriverKind::Vfs).unwrap();
    assert_eq!(store.images().unwrap().len(), 20);
    assert_eq!(store.check().unwrap(), Vec::<String>::new());
}

/// Commits layers and images in a loop until killed, as the child process of
/// `crash_during_commits`; ignored unless that test starts it.
#[test]
#[ignore]
fn crash_child() {
    let data =
        PathBuf::from(std::env::var("CBLOCKS_CRASH_DATA").expect("run by crash_during_commits"));
    let store = Store::open(&data, DriverKind::Vfs).unwrap();
    for step in 0.. {
        let count = store.images().unwrap().len();
        let top = store
            .images()
            .unwrap()
            .first()
            .and_then(|s| s.image.layers.last().cloned());
        let mount = format!("crash{step}");
        let root = store.mount_layer(&mount, top.as_deref()).unwrap();
        for i in 0..50 {
            fs::write(root.join(format!("f{count}-{i}")), vec![b'x'; 2000 + i]).unwrap();
        }
        let layer = store.commit_mount(&mount).unwrap();
        store
            .add_image(
                config(&["/bin/sh"], &[]),
                Some(&layer.chain_id),
                BTreeMap::new(),
                &[reference(&format!("crash:{count}"))],
            )
            .unwrap();
        store.remove_mount(&mount).unwrap();
    }
}

/// A small pseudo-random generator (xorshift), seeded from the clock.
fn random_delays(n: usize) -> Vec<u64> {
    let mut state = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_nanos() as u64
        | 1;
    (0..n)
        .map(|_| {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            20 + state % 400
        })
        .collect()
}

#[test]
fn crash_during_commits() {
    let scratch = Scratch::new("crash");
    let data = scratch.path("data");
    let exe = std::env::current_exe().unwrap();
    let mut max_images = 0;
    for (round, delay) in random_delays(20).into_iter().enumerate() {
        let mut child = Command::new(&exe)
            .args(["--ignored", "--exact", "crash_child", "--nocapture"])
            .env("CBLOCKS_CRASH_DATA", &data)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        std::thread::sleep(Duration::from_millis(delay));
        child.kill().unwrap(); // SIGKILL
        child.wait().unwrap();

        let store = Store::open(&data, DriverKind::Vfs).unwrap();
        let images = store.images().unwrap();
        for summary in &images {
            let image = &summary.image;
            let config = store
                .config(image)
                .unwrap_or_else(|e| panic!("round {round}: {e}"));
            assert_eq!(
                config.rootfs.diff_ids.len(),
                image.layers.len(),
                "round {round}"
            );
            for layer in &image.layers {
                store
                    .layer(layer)
                    .unwrap_or_else(|e| panic!("round {round}: {e}"));
            }
        }
        assert_eq!(
            store.check().unwrap(),
            Vec::<String>::new(),
            "round {round} after {delay} ms"
        );
        max_images = max_images.max(images.len());
    }
    assert!(
        max_images > 0,
        "the child never completed an image; the test exercised nothing"
    );
}

#[test]
fn client_commands_in_process() {
    let scratch = Scratch::new("client");
    let data = scratch.path("data");
    {
        let store = Store::open(&data, DriverKind::Vfs).unwrap();
        small_image(&store, b"client", &["web:1"]);
    }
    let cblock = env!("CARGO_BIN_EXE_cblock");
    let empty = scratch.path("empty");
    let run = |args: &[&str]| {
        let output = Command::new(cblock).args(args).output().unwrap();
        (
            output.status.code(),
            String::from_utf8_lossy(&output.stdout).into_owned(),
            String::from_utf8_lossy(&output.stderr).into_owned(),
        )
    };
    let d = data.to_str().unwrap();

    // A data directory without a store lists nothing and records no driver.
    let (code, out, _) = run(&["images", "-d", empty.to_str().unwrap()]);
    assert_eq!(code, Some(0));
    assert_eq!(out.lines().count(), 1, "{out}");
    assert!(!empty.join("store/driver").exists());
    let (code, _, err) = run(&["rmi", "-d", empty.to_str().unwrap(), "x"]);
    assert_eq!(code, Some(1));
    assert!(err.contains("no image store"), "{err}");

    let (code, out, _) = run(&["images", "-d", d]);
    assert_eq!(code, Some(0));
    let header: Vec<&str> = out.lines().next().unwrap().split_whitespace().collect();
    assert_eq!(header, vec!["IMAGE", "TAG", "ID", "SIZE", "CREATED"]);
    assert!(out.lines().nth(1).unwrap().starts_with("web "), "{out}");

    let (code, _, err) = run(&["tag", "-d", d, "web:1", "web/bad"]);
    assert_eq!(code, Some(1));
    assert!(err.contains("path separators"), "{err}");
    assert_eq!(run(&["tag", "-d", d, "web:1", "api"]).0, Some(0));

    let (code, out, _) = run(&["images", "-d", d, "--format", "json"]);
    assert_eq!(code, Some(0));
    let json: serde_json::Value = serde_json::from_str(&out).unwrap();
    assert_eq!(json[0]["names"], serde_json::json!(["api:latest", "web:1"]));

    let (code, out, _) = run(&["image", "-d", d, "inspect", "api"]);
    assert_eq!(code, Some(0));
    let json: serde_json::Value = serde_json::from_str(&out).unwrap();
    assert_eq!(
        json["Config"]["config"]["Cmd"],
        serde_json::json!(["/file"])
    );

    let archive = scratch.path("web.tar");
    let (code, _, err) = run(&[
        "image",
        "-d",
        d,
        "save",
        "-o",
        archive.to_str().unwrap(),
        "web:1",
    ]);
    assert_eq!(code, Some(0), "{err}");
    assert_eq!(run(&["rmi", "-d", d, "web:1"]).1.trim(), "Untagged: web:1");
    let (code, out, _) = run(&["rmi", "-d", d, "api", "missing"]);
    assert_eq!(code, Some(1), "a missing image fails the command");
    assert!(out.contains("Deleted: sha256:"), "{out}");
    let (code, out, _) = run(&["images", "-q", "-d", d]);
    assert_eq!((code, out.as_str()), (Some(0), ""));

    let (code, out, err) = run(&["image", "-d", d, "load", "-i", archive.to_str().unwrap()]);
    assert_eq!(code, Some(0), "{err}");
    assert!(out.contains("web:1"), "{out}");
    let (code, out, _) = run(&["images", "--prune", "-d", d]);
    assert_eq!(code, Some(0));
    assert!(out.contains("removed 0 images"), "{out}");
}

// ---- Podman ---------------------------------------------------------------

/// Podman images this test created, removed on drop.
struct PodmanImages(Vec<String>);

impl Drop for PodmanImages {
    fn drop(&mut self) {
        for image in &self.0 {
            let _ = Command::new("podman").args(["rmi", "-f", image]).output();
        }
    }
}

fn podman(args: &[&str]) -> String {
    let output = Command::new("podman")
        .arg("--runtime")
        .arg("runc")
        .args(args)
        .output()
        .expect("podman is missing; install Debian's podman package");
    assert!(
        output.status.success(),
        "podman {args:?} failed: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    String::from_utf8_lossy(&output.stdout).into_owned()
}

fn busybox_tree(dir: &Path) {
    fs::create_dir_all(dir.join("bin")).unwrap();
    fs::copy("/bin/busybox", dir.join("bin/busybox"))
        .expect("/bin/busybox is missing; install busybox-static");
    for applet in ["sh", "true", "cat"] {
        symlink("busybox", dir.join("bin").join(applet)).unwrap();
    }
    fs::create_dir_all(dir.join("etc")).unwrap();
    fs::write(dir.join("etc/marker"), b"cblocks round trip\n").unwrap();
}

#[test]
fn podman_round_trip() {
    let scratch = Scratch::new("podman");
    let mut created = PodmanImages(Vec::new());
    let tree = scratch.path("tree");
    busybox_tree(&tree);

    // cblocks -> podman: the saved image loads and runs /bin/true.
    let store = Store::open(&scratch.path("data"), DriverKind::Overlay).unwrap();
    let layer = store
        .commit_tar(None, &mut Cursor::new(tar_of(&tree)), "test")
        .unwrap();
    let name = format!("cbtest-{}", std::process::id());
    let image = store
        .add_image(
            config(&["/bin/sh"], &["PATH=/bin"]),
            Some(&layer.chain_id),
            BTreeMap::new(),
            &[reference(&name)],
        )
        .unwrap();
    let archive = scratch.path("out.tar");
    let mut file = fs::File::create(&archive).unwrap();
    store.save(&[&name], &mut file).unwrap();
    file.flush().unwrap();
    drop(file);

    created.0.push(image.id[7..].to_string());
    podman(&["load", "-i", archive.to_str().unwrap()]);
    podman(&[
        "run",
        "--rm",
        "--network",
        "none",
        "--ulimit",
        "nofile=20000:20000",
        "--ulimit",
        "nproc=32768:32768",
        &image.id[7..],
        "/bin/true",
    ]);
    let out = podman(&[
        "run",
        "--rm",
        "--network",
        "none",
        "--ulimit",
        "nofile=20000:20000",
        "--ulimit",
        "nproc=32768:32768",
        &image.id[7..],
        "/bin/cat",
        "/etc/marker",
    ]);
    assert_eq!(out, "cblocks round trip\n");

    // podman -> cblocks: both archive formats load with files and config.
    let source = format!("localhost/cbsrc-{}:latest", std::process::id());
    let rootfs = scratch.path("rootfs.tar");
    fs::write(&rootfs, tar_of(&tree)).unwrap();
    created.0.push(source.clone());
    podman(&[
        "import",
        "--change",
        "CMD [\"/bin/sh\", \"-c\", \"true\"]",
        "--change",
        "ENV FOO=bar",
        rootfs.to_str().unwrap(),
        &source,
    ]);
    for format in ["docker-archive", "oci-archive"] {
        let saved = scratch.path(&format!("{format}.tar"));
        podman(&[
            "save",
            "--format",
            format,
            "-o",
            saved.to_str().unwrap(),
            &source,
        ]);
        let store = Store::open(&scratch.path(&format!("data-{format}")), DriverKind::Vfs).unwrap();
        let report = store
            .load(&mut fs::File::open(&saved).unwrap(), format)
            .unwrap();
        assert_eq!(report.images.len(), 1, "{format}");
        let (id, _) = &report.images[0];
        let loaded = store.resolve(id).unwrap();
        let config = store.config(&loaded).unwrap().config.unwrap();
        assert_eq!(
            config.cmd,
            Some(vec!["/bin/sh".to_string(), "-c".into(), "true".into()]),
            "{format}"
        );
        assert!(
            config
                .env
                .unwrap_or_default()
                .contains(&"FOO=bar".to_string()),
            "{format}"
        );
        let root = store.mount_image("check", Some(id)).unwrap();
        assert_eq!(
            fs::read(root.join("bin/busybox")).unwrap(),
            fs::read("/bin/busybox").unwrap(),
            "{format}"
        );
        assert_eq!(
            fs::read_link(root.join("bin/true")).unwrap(),
            Path::new("busybox"),
            "{format}"
        );
        assert_eq!(
            fs::read(root.join("etc/marker")).unwrap(),
            b"cblocks round trip\n",
            "{format}"
        );
        store.remove_mount("check").unwrap();
        assert_eq!(store.check().unwrap(), Vec::<String>::new(), "{format}");
    }
}

// ---- benchmark harness ------------------------------------------------------

/// Times layer commit and extraction for `bench/store.sh`; ignored in normal
/// runs. It reads the tree from `CBLOCKS_BENCH_TREE`, prints `name seconds
/// bytes` lines, and checks that the committed layer contains the tree's
/// bytes.
#[test]
#[ignore]
fn bench_harness() {
    use std::time::Instant;

    let Ok(tree) = std::env::var("CBLOCKS_BENCH_TREE") else {
        panic!("run by bench/store.sh with CBLOCKS_BENCH_TREE set");
    };
    let tree = PathBuf::from(tree);
    let scratch = Scratch::new("bench");

    // 1. The layer tar and its diff ID only: the same work as
    //    `tar -cf - | sha256sum`.
    let start = Instant::now();
    let mut digest = cblocks::storage::archive::DigestWriter::new(std::io::sink());
    write_diff(
        DiffSource::Trees {
            lower: None,
            upper: &tree,
        },
        &mut digest,
    )
    .unwrap();
    let (_, _, tar_bytes) = digest.finish();
    println!("diff {:.3} {tar_bytes}", start.elapsed().as_secs_f64());

    // 2. A whole commit on the overlay driver: tar, diff ID, gzip, blob
    //    fsync, and unpacking into the driver's layer.
    let store = Store::open(&scratch.path("data"), DriverKind::Overlay).unwrap();
    let (read_end, write_end) = nix::unistd::pipe().unwrap();
    let writer_tree = tree.clone();
    let writer = std::thread::spawn(move || {
        let mut out = std::io::BufWriter::with_capacity(1 << 20, fs::File::from(write_end));
        write_diff(
            DiffSource::Trees {
                lower: None,
                upper: &writer_tree,
            },
            &mut out,
        )
        .unwrap();
    });
    let start = Instant::now();
    let layer = store
        .commit_tar(None, &mut fs::File::from(read_end), "bench")
        .unwrap();
    writer.join().unwrap();
    println!("commit {:.3} {tar_bytes}", start.elapsed().as_secs_f64());

    // 3. Extraction of the layer tar into an empty directory.
    let layer_tar = scratch.path("layer.tar");
    let mut file = fs::File::create(&layer_tar).unwrap();
    write_diff(
        DiffSource::Trees {
            lower: None,
            upper: &tree,
        },
        &mut file,
    )
    .unwrap();
    drop(file);
    let target = scratch.path("extracted");
    fs::create_dir(&target).unwrap();
    let start = Instant::now();
    let mut input = std::io::BufReader::with_capacity(1 << 20, fs::File::open(&layer_tar).unwrap());
    let summary = cblocks::storage::extract(&mut input, &target, &Default::default()).unwrap();
    println!("extract {:.3} {tar_bytes}", start.elapsed().as_secs_f64());
    println!("layer_tar {}", layer_tar.display());

    assert_eq!(
        summary.bytes, layer.size,
        "extraction and commit saw different content"
    );
    assert!(layer.size > 0, "the benchmark tree is empty");
    // The tar stays for the script's own tar timing until the scratch
    // directory goes; the script copies it first.
    let keep = std::env::var("CBLOCKS_BENCH_KEEP_TAR").ok();
    if let Some(path) = keep {
        fs::copy(&layer_tar, path).unwrap();
    }
}
