//! mtree specs written by cblocks are checked by NetBSD's mtree(8) (Debian's
//! mtree-netbsd) as well as by `fim::verify`.

use std::fs;
use std::os::unix::fs::{symlink, PermissionsExt};
use std::path::{Path, PathBuf};
use std::process::Command;

use cblocks::fim::{self, Difference};

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
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = fs::remove_dir_all(&self.0);
    }
}

fn make_tree(root: &Path) {
    fs::create_dir_all(root.join("etc/conf.d")).unwrap();
    fs::write(root.join("etc/motd"), "welcome\n").unwrap();
    fs::write(root.join("etc/conf.d/with space#and*glob"), "x").unwrap();
    fs::write(root.join("etc/empty"), "").unwrap();
    fs::set_permissions(root.join("etc/motd"), fs::Permissions::from_mode(0o640)).unwrap();
    symlink("motd", root.join("etc/motd.link")).unwrap();
    symlink("../etc", root.join("etc/conf.d/up")).unwrap();
}

fn run_mtree(root: &Path, spec: &Path) -> std::process::Output {
    Command::new("mtree")
        .arg("-p")
        .arg(root)
        .arg("-f")
        .arg(spec)
        .output()
        .expect("running mtree; install Debian's mtree-netbsd")
}

#[test]
fn fim_spec_accepted_by_mtree() {
    let dir = TempDir::new("fim-mtree");
    let root = dir.0.join("root");
    make_tree(&root);
    let spec_path = dir.0.join("spec");
    fs::write(&spec_path, fim::write_spec(&fim::scan(&root).unwrap())).unwrap();

    let clean = run_mtree(&root, &spec_path);
    assert!(
        clean.status.success(),
        "mtree rejected an unchanged tree: {}{}",
        String::from_utf8_lossy(&clean.stdout),
        String::from_utf8_lossy(&clean.stderr)
    );

    // Same size, other contents: only the digest can tell.
    fs::write(root.join("etc/motd"), "welcomE\n").unwrap();
    let changed = run_mtree(&root, &spec_path);
    assert!(!changed.status.success(), "mtree missed a changed file");
}

#[test]
fn fim_verify_reports_each_change() {
    let dir = TempDir::new("fim-verify");
    let root = dir.0.join("root");
    make_tree(&root);
    let spec = fim::parse_spec(&fim::write_spec(&fim::scan(&root).unwrap())).unwrap();
    assert_eq!(fim::verify(&root, &spec).unwrap(), Vec::new());

    fs::write(root.join("etc/motd"), "welcome!\n").unwrap();
    fs::remove_file(root.join("etc/empty")).unwrap();
    fs::write(root.join("etc/new"), "new").unwrap();
    fs::remove_file(root.join("etc/motd.link")).unwrap();
    symlink("elsewhere", root.join("etc/motd.link")).unwrap();
    fs::set_permissions(root.join("etc/conf.d"), fs::Permissions::from_mode(0o700)).unwrap();

    let differences = fim::verify(&root, &spec).unwrap();
    let expected = vec![
        Difference::Changed {
            path: "./etc/conf.d".into(),
            attributes: vec!["mode"],
        },
        Difference::Missing("./etc/empty".into()),
        Difference::Changed {
            path: "./etc/motd".into(),
            attributes: vec!["size", "sha256"],
        },
        Difference::Changed {
            path: "./etc/motd.link".into(),
            attributes: vec!["link"],
        },
        Difference::Extra("./etc/new".into()),
    ];
    assert_eq!(differences, expected);
}
