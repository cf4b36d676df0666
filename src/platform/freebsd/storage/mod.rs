//! FreeBSD storage drivers (unionfs, ZFS) and the path helpers extraction
//! needs.
//!
//! NOTE: this code type-checks in CI but has not been run on FreeBSD.

use std::ffi::{CString, OsStr};
use std::fs;
use std::io;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::os::unix::ffi::OsStrExt;
use std::path::Path;

use crate::storage::{Driver, DriverKind, Error, Result};

mod unionfs;
mod zfs;

pub use unionfs::Unionfs;
pub use zfs::Zfs;

/// The driver `cblockd` uses when `--storage` is not given.
pub const DEFAULT_DRIVER: DriverKind = DriverKind::Unionfs;

/// Opens one of this platform's drivers below `root`.
pub fn open_driver(kind: DriverKind, root: &Path) -> Result<Box<dyn Driver>> {
    match kind {
        DriverKind::Unionfs => Ok(Box::new(Unionfs::open(root)?)),
        DriverKind::Zfs => Ok(Box::new(Zfs::open(root)?)),
        other => Err(Error::Unsupported {
            driver: other.name(),
            reason: "it exists only on Linux; use unionfs, zfs or vfs on FreeBSD".into(),
        }),
    }
}

/// Opens the directory `name` (one component) inside `dir` without following
/// a symlink; `O_RESOLVE_BENEATH` keeps a longer name inside `dir`.
pub fn open_dir_nofollow(dir: &OwnedFd, name: &OsStr) -> io::Result<OwnedFd> {
    let c = CString::new(name.as_bytes())
        .map_err(|_| io::Error::new(io::ErrorKind::InvalidInput, "name contains NUL"))?;
    let flags = libc::O_RDONLY
        | libc::O_DIRECTORY
        | libc::O_NOFOLLOW
        | libc::O_CLOEXEC
        | libc::O_RESOLVE_BENEATH;
    // SAFETY: valid descriptor and C string; the result is owned here.
    let fd = unsafe { libc::openat(dir.as_raw_fd(), c.as_ptr(), flags) };
    if fd < 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: a fresh descriptor with no other owner.
    Ok(unsafe { OwnedFd::from_raw_fd(fd) })
}

fn no_overlay() -> io::Error {
    io::Error::new(
        io::ErrorKind::Unsupported,
        "overlayfs whiteouts exist only on Linux",
    )
}

/// Overlay whiteouts exist only on Linux.
pub fn overlay_whiteout(_dir: &OwnedFd, _name: &OsStr) -> io::Result<()> {
    Err(no_overlay())
}

/// Overlay opaque directories exist only on Linux.
pub fn overlay_set_opaque(_dir: &OwnedFd) -> io::Result<()> {
    Err(no_overlay())
}

/// Overlay opaque directories exist only on Linux.
pub fn overlay_is_opaque(_path: &Path) -> io::Result<bool> {
    Ok(false)
}

/// Overlay whiteouts exist only on Linux.
pub fn is_overlay_whiteout(_meta: &fs::Metadata) -> bool {
    false
}

/// Sets an extended attribute.
// NOTE: FreeBSD's extattr namespaces do not map onto Linux's `user.` and
// `security.` names, so layer xattrs are dropped here.
pub fn set_xattr(_dir: &OwnedFd, _name: &OsStr, _key: &[u8], _value: &[u8]) -> io::Result<()> {
    Ok(())
}

/// Returns the extended attributes of `path`; none on FreeBSD (see
/// `set_xattr`).
pub fn read_xattrs(_path: &Path) -> io::Result<Vec<(Vec<u8>, Vec<u8>)>> {
    Ok(Vec::new())
}

/// Flushes file systems to disk. FreeBSD has no per-file-system call, so
/// this is `sync(2)`, which schedules the writes of all of them.
pub fn sync_filesystem(_path: &Path) -> io::Result<()> {
    // SAFETY: sync(2) takes no arguments and returns nothing.
    unsafe { libc::sync() };
    Ok(())
}

/// Encodes a device number as FreeBSD's `makedev(3)`.
pub fn make_device(major: u32, minor: u32) -> libc::dev_t {
    let (major, minor) = (major as u64, minor as u64);
    ((major & 0xffffff00) << 32)
        | ((major & 0xff) << 8)
        | ((minor & 0xff00) << 24)
        | (minor & 0xffff00ff)
}

/// Splits a device number into major and minor, the inverse of `make_device`.
pub fn split_device(dev: u64) -> (u32, u32) {
    let major = ((dev >> 32) & 0xffffff00) | ((dev >> 8) & 0xff);
    let minor = ((dev >> 24) & 0xff00) | (dev & 0xffff00ff);
    (major as u32, minor as u32)
}

/// Opens `path` below `root`, following symlinks only while they stay below
/// it (`O_RESOLVE_BENEATH`, FreeBSD 13).
pub fn open_in_root(root: &OwnedFd, path: &Path, flags: libc::c_int) -> io::Result<OwnedFd> {
    let c = CString::new(path.as_os_str().as_bytes())
        .map_err(|_| io::Error::new(io::ErrorKind::InvalidInput, "path contains NUL"))?;
    // SAFETY: valid descriptor and C string; the result is owned here.
    let fd = unsafe {
        libc::openat(
            root.as_raw_fd(),
            c.as_ptr(),
            flags | libc::O_CLOEXEC | libc::O_RESOLVE_BENEATH,
        )
    };
    if fd < 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: a fresh descriptor with no other owner.
    Ok(unsafe { OwnedFd::from_raw_fd(fd) })
}
