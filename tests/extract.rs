//! Layer extraction against hostile archives, and whiteout handling.
//!
//! The archives are built here from raw 512-byte headers, because the `tar`
//! crate refuses to write most of them. Each hostile archive must be rejected
//! with an error naming the entry, and must leave the directory beside the
//! extraction root exactly as it was.

use std::fs;
use std::io::Cursor;
use std::os::unix::fs::{FileTypeExt, MetadataExt};
use std::path::{Path, PathBuf};

use cblocks::storage::{extract, ExtractOptions, Whiteouts};

/// A scratch directory removed on drop, also when the test fails.
struct Scratch(PathBuf);

impl Scratch {
    fn new(tag: &str) -> Self {
        let dir =
            std::env::temp_dir().join(format!("cblocks-extract-{tag}-{}", std::process::id()));
        let _ = fs::remove_dir_all(&dir);
        fs::create_dir_all(dir.join("root")).unwrap();
        fs::create_dir_all(dir.join("outside")).unwrap();
        fs::write(dir.join("outside/secret"), b"secret").unwrap();
        Scratch(dir)
    }

    fn root(&self) -> PathBuf {
        self.0.join("root")
    }

    fn outside(&self) -> PathBuf {
        self.0.join("outside")
    }

    /// Lists everything outside the root: the scratch directory less `root`.
    fn snapshot_outside(&self) -> Vec<(PathBuf, u64, Vec<u8>)> {
        let mut out = Vec::new();
        walk(&self.0, &self.root(), &mut out);
        out.sort();
        out
    }
}

fn walk(dir: &Path, skip: &Path, out: &mut Vec<(PathBuf, u64, Vec<u8>)>) {
    for entry in fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        if path == skip {
            continue;
        }
        let meta = fs::symlink_metadata(&path).unwrap();
        let content = if meta.is_file() {
            fs::read(&path).unwrap()
        } else {
            Vec::new()
        };
        out.push((path.clone(), meta.nlink(), content));
        if meta.is_dir() {
            walk(&path, skip, out);
        }
    }
}

impl Drop for Scratch {
    fn drop(&mut self) {
        let _ = fs::remove_dir_all(&self.0);
    }
}

/// One raw tar entry.
struct Raw {
    name: Vec<u8>,
    kind: u8,
    link: Vec<u8>,
    data: Vec<u8>,
    /// Overrides the size field; `None` writes the data length.
    size_field: Option<Vec<u8>>,
    device: (u32, u32),
    break_checksum: bool,
}

fn raw(name: &str, kind: u8) -> Raw {
    Raw {
        name: name.as_bytes().to_vec(),
        kind,
        link: Vec::new(),
        data: Vec::new(),
        size_field: None,
        device: (0, 0),
        break_checksum: false,
    }
}

fn file(name: &str, data: &[u8]) -> Raw {
    Raw {
        data: data.to_vec(),
        ..raw(name, b'0')
    }
}

fn link(name: &str, kind: u8, target: &str) -> Raw {
    Raw {
        link: target.as_bytes().to_vec(),
        ..raw(name, kind)
    }
}

fn octal(field: &mut [u8], value: u64) {
    let text = format!("{:0width$o}", value, width = field.len() - 1);
    field[..text.len()].copy_from_slice(text.as_bytes());
}

fn header(entry: &Raw) -> [u8; 512] {
    let mut h = [0u8; 512];
    let name = &entry.name[..entry.name.len().min(100)];
    h[..name.len()].copy_from_slice(name);
    octal(&mut h[100..108], 0o644);
    octal(&mut h[108..116], 0);
    octal(&mut h[116..124], 0);
    match &entry.size_field {
        Some(field) => h[124..124 + field.len()].copy_from_slice(field),
        None => octal(&mut h[124..136], entry.data.len() as u64),
    }
    octal(&mut h[136..148], 1_700_000_000);
    h[156] = entry.kind;
    h[157..157 + entry.link.len()].copy_from_slice(&entry.link);
    h[257..263].copy_from_slice(b"ustar\0");
    h[263..265].copy_from_slice(b"00");
    octal(&mut h[329..337], entry.device.0 as u64);
    octal(&mut h[337..345], entry.device.1 as u64);
    h[148..156].copy_from_slice(b"        ");
    let sum: u32 = h.iter().map(|b| *b as u32).sum();
    let sum = if entry.break_checksum { sum + 1 } else { sum };
    let text = format!("{sum:06o}\0 ");
    h[148..156].copy_from_slice(text.as_bytes());
    h
}

fn archive(entries: &[Raw]) -> Vec<u8> {
    let mut out = Vec::new();
    for entry in entries {
        out.extend_from_slice(&header(entry));
        out.extend_from_slice(&entry.data);
        let pad = (512 - entry.data.len() % 512) % 512;
        out.extend(std::iter::repeat_n(0, pad));
    }
    out.extend(std::iter::repeat_n(0, 1024));
    out
}

fn pax(records: &[(&str, &str)]) -> Raw {
    let mut data = Vec::new();
    for (key, value) in records {
        let body = format!(" {key}={value}\n");
        // The length prefix counts itself.
        let mut len = body.len() + 1;
        while format!("{len}{body}").len() != len {
            len += 1;
        }
        data.extend_from_slice(format!("{len}{body}").as_bytes());
    }
    Raw {
        data,
        ..raw("pax", b'x')
    }
}

fn run(scratch: &Scratch, bytes: &[u8]) -> Result<(), String> {
    extract(
        &mut Cursor::new(bytes),
        &scratch.root(),
        &ExtractOptions::default(),
    )
    .map(drop)
    .map_err(|e| e.to_string())
}

/// Extracts a hostile archive and checks the rejection names `entry` and
/// nothing outside the root changed.
fn assert_rejected(tag: &str, entries: Vec<Raw>, entry: &str) {
    let scratch = Scratch::new(tag);
    let before = scratch.snapshot_outside();
    let result = run(&scratch, &archive(&entries));
    let err = result.expect_err(&format!("{tag}: hostile archive was accepted"));
    eprintln!("{tag}: {err}");
    assert!(
        err.contains(entry),
        "{tag}: error does not name {entry:?}: {err}"
    );
    assert_eq!(
        scratch.snapshot_outside(),
        before,
        "{tag}: something outside the root changed"
    );
}

#[test]
fn hostile_absolute_name() {
    let scratch = Scratch::new("abs-target");
    let target = format!("{}/pwned", scratch.outside().display());
    assert_rejected("abs", vec![file(&target, b"x")], &target);
    assert!(!scratch.outside().join("pwned").exists());
}

#[test]
fn hostile_dotdot_name() {
    assert_rejected(
        "dotdot",
        vec![file("../outside/pwned", b"x")],
        "../outside/pwned",
    );
}

#[test]
fn hostile_nested_dotdot() {
    assert_rejected(
        "nested-dotdot",
        vec![file("a/b/../../../outside/pwned", b"x")],
        "a/b/../../../outside/pwned",
    );
}

#[test]
fn hostile_symlink_absolute_then_write() {
    let scratch = Scratch::new("symabs-target");
    let outside = scratch.outside().display().to_string();
    assert_rejected(
        "symabs",
        vec![link("evil", b'2', &outside), file("evil/pwned", b"x")],
        "evil/pwned",
    );
}

#[test]
fn hostile_symlink_relative_then_write() {
    assert_rejected(
        "symrel",
        vec![link("evil", b'2', "../outside"), file("evil/pwned", b"x")],
        "evil/pwned",
    );
}

#[test]
fn hostile_symlink_chain_then_write() {
    assert_rejected(
        "symchain",
        vec![
            link("a", b'2', "b"),
            link("b", b'2', "../outside"),
            file("a/pwned", b"x"),
        ],
        "a/pwned",
    );
}

#[test]
fn hostile_symlink_deep_parent() {
    assert_rejected(
        "symdeep",
        vec![
            raw("d/", b'5'),
            link("d/up", b'2', "../../outside"),
            file("d/up/sub/pwned", b"x"),
        ],
        "d/up/sub/pwned",
    );
}

#[test]
fn hostile_hardlink_dotdot_target() {
    assert_rejected(
        "hldotdot",
        vec![link("hl", b'1', "../outside/secret")],
        "hl",
    );
}

#[test]
fn hostile_hardlink_absolute_target() {
    let scratch = Scratch::new("hlabs-target");
    let secret = format!("{}/secret", scratch.outside().display());
    assert_rejected("hlabs", vec![link("hl", b'1', &secret)], "hl");
}

#[test]
fn hostile_hardlink_through_symlink() {
    assert_rejected(
        "hlsym",
        vec![link("s", b'2', "../outside"), link("hl", b'1', "s/secret")],
        "hl",
    );
}

#[test]
fn hostile_char_device() {
    let mut dev = raw("dev/mem", b'3');
    dev.device = (1, 1);
    assert_rejected("chardev", vec![dev], "dev/mem");
}

#[test]
fn hostile_block_device() {
    let mut dev = raw("sda", b'4');
    dev.device = (8, 0);
    assert_rejected("blockdev", vec![dev], "sda");
}

#[test]
fn hostile_gnu_long_name_escape() {
    let long = format!("{}/../../../outside/pwned", "d".repeat(120));
    let mut name_entry = raw("././@LongLink", b'L');
    name_entry.data = long.as_bytes().to_vec();
    assert_rejected("longname", vec![name_entry, file("short", b"x")], "../");
}

#[test]
fn hostile_pax_absolute_path() {
    assert_rejected(
        "paxabs",
        vec![
            pax(&[("path", "/tmp/cblocks-pax-pwned")]),
            file("innocent", b"x"),
        ],
        "/tmp/cblocks-pax-pwned",
    );
    assert!(!Path::new("/tmp/cblocks-pax-pwned").exists());
}

#[test]
fn hostile_oversized_long_name() {
    let mut name_entry = raw("././@LongLink", b'L');
    // The size claims 64 MiB; no data follows, and none may be read.
    name_entry.size_field = Some(b"00400000000\0".to_vec());
    let scratch = Scratch::new("oversized");
    let err = run(&scratch, &archive(&[name_entry])).unwrap_err();
    assert!(err.contains("larger than the limit"), "{err}");
    assert!(err.contains("entry 0"), "{err}");
}

#[test]
fn hostile_bad_checksum() {
    let mut entry = file("x", b"data");
    entry.break_checksum = true;
    let scratch = Scratch::new("checksum");
    let err = run(&scratch, &archive(&[entry])).unwrap_err();
    assert!(err.contains("checksum"), "{err}");
    assert!(!scratch.root().join("x").exists());
}

#[test]
fn hostile_bad_size_field() {
    let mut entry = file("x", b"data");
    entry.size_field = Some(b"0000000zz04\0".to_vec());
    let scratch = Scratch::new("badsize");
    let err = run(&scratch, &archive(&[entry])).unwrap_err();
    assert!(err.contains("malformed"), "{err}");
}

#[test]
fn hostile_pax_size_mismatch() {
    assert_rejected(
        "paxsize",
        vec![pax(&[("size", "999999")]), file("smuggled", b"data")],
        "PAX size",
    );
}

#[test]
fn hostile_whiteout_of_parent() {
    let scratch = Scratch::new("whdotdot");
    fs::write(scratch.root().join("keep"), b"k").unwrap();
    let err = run(
        &scratch,
        &archive(&[raw("sub/", b'5'), file("sub/.wh...", b"")]),
    )
    .unwrap_err();
    assert!(err.contains("sub/.wh..."), "{err}");
    assert!(
        scratch.root().join("keep").exists(),
        "whiteout of .. removed the root's files"
    );
}

#[test]
fn hostile_whiteout_through_symlink() {
    assert_rejected(
        "whsym",
        vec![link("s", b'2', "../outside"), file("s/.wh.secret", b"")],
        "s/.wh.secret",
    );
}

#[test]
fn hostile_opaque_through_symlink() {
    assert_rejected(
        "opqsym",
        vec![link("s", b'2', "../outside"), file("s/.wh..wh..opq", b"")],
        "s/.wh..wh..opq",
    );
}

#[test]
fn hostile_truncated_data() {
    let mut entry = file("big", b"only a little");
    entry.size_field = Some(b"00000010000\0".to_vec());
    let mut bytes = header(&entry).to_vec();
    bytes.extend_from_slice(&entry.data);
    let scratch = Scratch::new("truncated");
    let err = run(&scratch, &bytes).unwrap_err();
    assert!(err.contains("truncated") || err.contains("big"), "{err}");
}

#[test]
fn symlink_replaced_not_followed() {
    // Replacing a planted symlink with a file must not write to its target.
    let scratch = Scratch::new("replace");
    let target = scratch.outside().join("secret");
    let bytes = archive(&[link("f", b'2', target.to_str().unwrap()), file("f", b"new")]);
    run(&scratch, &bytes).unwrap();
    assert_eq!(fs::read(&target).unwrap(), b"secret");
    assert_eq!(fs::read(scratch.root().join("f")).unwrap(), b"new");
    assert!(!fs::symlink_metadata(scratch.root().join("f"))
        .unwrap()
        .file_type()
        .is_symlink());
}

#[test]
fn valid_entries_extract() {
    let scratch = Scratch::new("valid");
    let mut fifo = raw("pipe", b'6');
    fifo.data.clear();
    let bytes = archive(&[
        raw("./", b'5'),
        raw("etc/", b'5'),
        file("etc/hosts", b"127.0.0.1 localhost\n"),
        link("etc/hosts.link", b'1', "etc/hosts"),
        link("abs", b'2', "/usr/lib"),
        file("implicit/parent/file", b"p"),
        fifo,
    ]);
    let summary = extract(
        &mut Cursor::new(&bytes),
        &scratch.root(),
        &ExtractOptions::default(),
    )
    .unwrap();
    assert_eq!(summary.entries, 7);
    let root = scratch.root();
    assert_eq!(
        fs::read(root.join("etc/hosts")).unwrap(),
        b"127.0.0.1 localhost\n"
    );
    let meta = fs::metadata(root.join("etc/hosts")).unwrap();
    assert_eq!(meta.nlink(), 2, "hard link shares the inode");
    assert_eq!(
        fs::read_link(root.join("abs")).unwrap(),
        Path::new("/usr/lib")
    );
    assert_eq!(fs::read(root.join("implicit/parent/file")).unwrap(), b"p");
    assert!(fs::symlink_metadata(root.join("pipe"))
        .unwrap()
        .file_type()
        .is_fifo());
    assert_eq!(meta.mtime(), 1_700_000_000);
}

#[test]
fn whiteout_removes_lower_file() {
    let scratch = Scratch::new("wh");
    let root = scratch.root();
    run(
        &scratch,
        &archive(&[file("dir/a", b"a"), file("dir/b", b"b")]),
    )
    .unwrap();
    run(&scratch, &archive(&[file("dir/.wh.a", b"")])).unwrap();
    assert!(!root.join("dir/a").exists());
    assert!(root.join("dir/b").exists());
    assert!(
        !root.join("dir/.wh.a").exists(),
        "the whiteout itself is not a file"
    );
}

#[test]
fn deleted_dir_recreated_stays_empty() {
    let scratch = Scratch::new("recreate");
    let root = scratch.root();
    run(
        &scratch,
        &archive(&[file("dir/old1", b"1"), file("dir/sub/old2", b"2")]),
    )
    .unwrap();
    run(&scratch, &archive(&[file(".wh.dir", b"")])).unwrap();
    assert!(!root.join("dir").exists());
    run(
        &scratch,
        &archive(&[raw("dir/", b'5'), file("dir/new", b"n")]),
    )
    .unwrap();
    let mut names: Vec<String> = fs::read_dir(root.join("dir"))
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    names.sort();
    assert_eq!(names, vec!["new".to_string()]);
}

#[test]
fn opaque_hides_lower_keeps_own() {
    let scratch = Scratch::new("opaque");
    let root = scratch.root();
    run(
        &scratch,
        &archive(&[file("dir/old", b"o"), file("other", b"x")]),
    )
    .unwrap();
    // The layer's own entry comes before the marker and must survive it.
    run(
        &scratch,
        &archive(&[
            raw("dir/", b'5'),
            file("dir/new", b"n"),
            file("dir/.wh..wh..opq", b""),
        ]),
    )
    .unwrap();
    assert!(!root.join("dir/old").exists());
    assert!(root.join("dir/new").exists());
    assert!(root.join("other").exists());
    assert!(!root.join("dir/.wh..wh..opq").exists());
}

#[test]
fn opaque_after_own_entries_hides_lower() {
    // The layer writes dir/sub/x before marking dir opaque: the lower
    // dir/sub/y and dir/z must go, dir/sub/x must stay.
    let scratch = Scratch::new("opaque-late");
    let root = scratch.root();
    run(
        &scratch,
        &archive(&[file("dir/sub/y", b"y"), file("dir/z", b"z")]),
    )
    .unwrap();
    run(
        &scratch,
        &archive(&[file("dir/sub/x", b"x"), file("dir/.wh..wh..opq", b"")]),
    )
    .unwrap();
    assert_eq!(fs::read(root.join("dir/sub/x")).unwrap(), b"x");
    assert!(
        !root.join("dir/sub/y").exists(),
        "lower file under a kept dir survived"
    );
    assert!(!root.join("dir/z").exists(), "lower file survived");
}

#[test]
fn whiteout_lookalikes_are_files() {
    let scratch = Scratch::new("lookalike");
    let root = scratch.root();
    run(
        &scratch,
        &archive(&[
            file("keep", b"k"),
            file("x.wh.keep", b"1"),
            file(".whkeep", b"2"),
            file("a.wh..wh..opq", b"3"),
        ]),
    )
    .unwrap();
    assert!(root.join("keep").exists());
    assert_eq!(fs::read(root.join("x.wh.keep")).unwrap(), b"1");
    assert_eq!(fs::read(root.join(".whkeep")).unwrap(), b"2");
    assert_eq!(fs::read(root.join("a.wh..wh..opq")).unwrap(), b"3");
}

#[test]
fn overlay_whiteouts_written() {
    let scratch = Scratch::new("overlay-wh");
    let root = scratch.root();
    let options = ExtractOptions {
        whiteouts: Whiteouts::Overlay,
        allow_devices: false,
    };
    let bytes = archive(&[
        file("gone/.wh.x", b""),
        raw("opq/", b'5'),
        file("opq/.wh..wh..opq", b""),
    ]);
    extract(&mut Cursor::new(&bytes), &root, &options).unwrap();
    let meta = fs::symlink_metadata(root.join("gone/x")).unwrap();
    assert!(meta.file_type().is_char_device());
    assert_eq!(meta.rdev(), 0);
    assert!(cblocks::platform::storage::overlay_is_opaque(&root.join("opq")).unwrap());
}

#[test]
fn devices_allowed_when_asked() {
    let scratch = Scratch::new("devices");
    let mut dev = raw("null", b'3');
    dev.device = (1, 3);
    let options = ExtractOptions {
        whiteouts: Whiteouts::Apply,
        allow_devices: true,
    };
    extract(&mut Cursor::new(archive(&[dev])), &scratch.root(), &options).unwrap();
    let meta = fs::symlink_metadata(scratch.root().join("null")).unwrap();
    assert!(meta.file_type().is_char_device());
    assert_eq!(meta.rdev(), 0x103);
}

#[test]
fn compressed_layers_read() {
    use std::io::Write;
    let plain = archive(&[file("hello", b"world")]);
    let gzip = {
        let mut enc = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
        enc.write_all(&plain).unwrap();
        enc.finish().unwrap()
    };
    let zstd = zstd::encode_all(&plain[..], 3).unwrap();
    let xz = {
        let mut enc = xz2::write::XzEncoder::new(Vec::new(), 6);
        enc.write_all(&plain).unwrap();
        enc.finish().unwrap()
    };
    let bzip2 = {
        let mut enc = bzip2::write::BzEncoder::new(Vec::new(), bzip2::Compression::default());
        enc.write_all(&plain).unwrap();
        enc.finish().unwrap()
    };
    let cases = [
        ("plain", plain.clone(), cblocks::storage::Compression::None),
        ("gzip", gzip, cblocks::storage::Compression::Gzip),
        ("zstd", zstd, cblocks::storage::Compression::Zstd),
        ("xz", xz, cblocks::storage::Compression::Xz),
        ("bzip2", bzip2, cblocks::storage::Compression::Bzip2),
    ];
    for (tag, bytes, expected) in cases {
        let scratch = Scratch::new(&format!("compressed-{tag}"));
        let (found, mut reader) = cblocks::storage::decompress(Cursor::new(bytes)).unwrap();
        assert_eq!(found, expected, "{tag}");
        extract(&mut reader, &scratch.root(), &ExtractOptions::default()).unwrap();
        assert_eq!(
            fs::read(scratch.root().join("hello")).unwrap(),
            b"world",
            "{tag}"
        );
    }
}

#[test]
fn xattrs_extracted_and_filtered() {
    let scratch = Scratch::new("xattr");
    let bytes = archive(&[
        pax(&[("SCHILY.xattr.user.origin", "cblocks")]),
        file("tagged", b"t"),
        pax(&[("SCHILY.xattr.trusted.overlay.opaque", "y")]),
        raw("sneaky/", b'5'),
    ]);
    run(&scratch, &bytes).unwrap();
    let xattrs = cblocks::platform::storage::read_xattrs(&scratch.root().join("tagged")).unwrap();
    assert!(
        xattrs.contains(&(b"user.origin".to_vec(), b"cblocks".to_vec())),
        "{xattrs:?}"
    );
    let sneaky = cblocks::platform::storage::read_xattrs(&scratch.root().join("sneaky")).unwrap();
    assert!(
        !sneaky
            .iter()
            .any(|(k, _)| k.starts_with(b"trusted.overlay.")),
        "an overlay attribute from a layer was applied: {sneaky:?}"
    );
}

#[test]
fn xattrs_survive_diff_and_extract() {
    let scratch = Scratch::new("xattr-diff");
    let tree = scratch.0.join("tree");
    fs::create_dir(&tree).unwrap();
    fs::write(tree.join("f"), b"f").unwrap();
    let path =
        std::ffi::CString::new(tree.join("f").into_os_string().into_encoded_bytes()).unwrap();
    // SAFETY: valid C strings and a buffer of the given length.
    let ret = unsafe {
        libc::lsetxattr(
            path.as_ptr(),
            c"user.kept".as_ptr(),
            b"yes".as_ptr() as *const libc::c_void,
            3,
            0,
        )
    };
    assert_eq!(ret, 0, "cannot set a user xattr in {}", tree.display());

    let mut tar = Vec::new();
    cblocks::storage::write_diff(
        cblocks::storage::DiffSource::Trees {
            lower: None,
            upper: &tree,
        },
        &mut tar,
    )
    .unwrap();
    run(&scratch, &tar).unwrap();
    let xattrs = cblocks::platform::storage::read_xattrs(&scratch.root().join("f")).unwrap();
    assert!(
        xattrs.contains(&(b"user.kept".to_vec(), b"yes".to_vec())),
        "{xattrs:?}"
    );
}
