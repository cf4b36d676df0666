//! Helpers that several integration test files share.

#![allow(dead_code)]

use std::fs;
use std::os::fd::AsRawFd;
use std::path::Path;
use std::sync::{Arc, Mutex};

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

/// A writer that collects what is written, shared between clones, for
/// checks on build output.
#[derive(Clone, Default)]
pub struct OutputSink(Arc<Mutex<Vec<u8>>>);

impl OutputSink {
    /// Returns what was written so far, as text.
    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.0.lock().unwrap()).into_owned()
    }
}

impl std::io::Write for OutputSink {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(buf);
        Ok(buf.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}
