//! Linux storage drivers (overlay, btrfs) and the openat2-based path resolution.

use std::path::Path;

use crate::storage::{Driver, DriverKind, Error, Result};

mod btrfs;
mod overlay;
mod resolve;

pub use btrfs::Btrfs;
pub use overlay::Overlay;
pub use resolve::{
    is_overlay_whiteout, open_dir_nofollow, open_in_root, overlay_is_opaque, overlay_set_opaque,
    overlay_whiteout, read_xattrs, set_xattr,
};

/// The driver `cblockd` uses when `--storage` is not given.
pub const DEFAULT_DRIVER: DriverKind = DriverKind::Overlay;

/// Opens one of this platform's drivers below `root`.
pub fn open_driver(kind: DriverKind, root: &Path) -> Result<Box<dyn Driver>> {
    match kind {
        DriverKind::Overlay => Ok(Box::new(Overlay::open(root)?)),
        DriverKind::Btrfs => Ok(Box::new(Btrfs::open(root)?)),
        other => Err(Error::Unsupported {
            driver: other.name(),
            reason: "it exists only on FreeBSD; use overlay, btrfs or vfs on Linux".into(),
        }),
    }
}

/// Flushes the file system that contains `path` to disk (`syncfs(2)`).
pub fn sync_filesystem(path: &Path) -> std::io::Result<()> {
    let dir = std::fs::File::open(path)?;
    nix::unistd::syncfs(std::os::fd::AsRawFd::as_raw_fd(&dir)).map_err(std::io::Error::from)
}

/// Encodes a device number as glibc's and musl's `makedev` do.
pub fn make_device(major: u32, minor: u32) -> libc::dev_t {
    let (major, minor) = (major as u64, minor as u64);
    ((major & 0xfffff000) << 32)
        | ((major & 0xfff) << 8)
        | ((minor & 0xffffff00) << 12)
        | (minor & 0xff)
}

/// Splits a device number into major and minor, the inverse of `make_device`.
pub fn split_device(dev: u64) -> (u32, u32) {
    let major = ((dev >> 32) & 0xfffff000) | ((dev >> 8) & 0xfff);
    let minor = ((dev >> 12) & 0xffffff00) | (dev & 0xff);
    (major as u32, minor as u32)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn device_numbers_round_trip() {
        for (major, minor) in [(0, 0), (1, 3), (259, 65536), (4095, 255)] {
            assert_eq!(split_device(make_device(major, minor)), (major, minor));
        }
        assert_eq!(make_device(1, 3), 0x103, "/dev/null is 1:3");
    }
}
