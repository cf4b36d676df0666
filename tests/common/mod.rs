//! Helpers that several integration test files share.

#![allow(dead_code)]

use std::fs;
use std::os::fd::AsRawFd;
use std::path::Path;

use nix::fcntl::{fcntl, FcntlArg, OFlag};

/// Returns the mount points below `dir` that are still mounted, deepest
/// first, so that unmounting them in order never hits a busy parent.
pub fn mounts_below(dir: &Path) -> Vec<String> {
    let prefix = dir.display().to_string();
    let mut targets: Vec<String> = fs::read_to_string("/proc/self/mounts")
        .unwrap_or_default()
        .lines()
        .filter_map(|line| line.split(' ').nth(1))
        .filter(|target| target.starts_with(&prefix))
        .map(str::to_string)
        .collect();
    targets.sort_by_key(|target| std::cmp::Reverse(target.len()));
    targets
}

/// Detaches every mount below `dir`, so that removing the directory never
/// walks into a container's or a build's root file system.
pub fn unmount_below(dir: &Path) {
    for target in mounts_below(dir) {
        let _ = nix::mount::umount2(target.as_str(), nix::mount::MntFlags::MNT_DETACH);
    }
}

/// Makes reads from `file` return at once when no data is waiting.
pub fn set_nonblocking(file: &fs::File) {
    let flags = fcntl(file.as_raw_fd(), FcntlArg::F_GETFL).unwrap();
    fcntl(
        file.as_raw_fd(),
        FcntlArg::F_SETFL(OFlag::from_bits_truncate(flags) | OFlag::O_NONBLOCK),
    )
    .unwrap();
}
