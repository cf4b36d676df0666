//! Path resolution that cannot leave a root, with `openat2(2)` (Linux 5.6),
//! and the overlayfs whiteout format.

use std::ffi::{CString, OsStr};
use std::fs;
use std::io;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::{FileTypeExt, MetadataExt};
use std::path::Path;

/// `struct open_how` of `linux/openat2.h`; libc's is non-exhaustive.
#[repr(C)]
struct OpenHow {
    flags: u64,
    mode: u64,
    resolve: u64,
}

fn openat2(dir: &OwnedFd, path: &[u8], flags: libc::c_int, resolve: u64) -> io::Result<OwnedFd> {
    let c = CString::new(path)
        .map_err(|_| io::Error::new(io::ErrorKind::InvalidInput, "path contains NUL"))?;
    let how = OpenHow {
        flags: (flags | libc::O_CLOEXEC) as u64,
        mode: 0,
        resolve,
    };
    // SAFETY: valid descriptor, C string and `open_how` of the given size.
    let fd = unsafe {
        libc::syscall(
            libc::SYS_openat2,
            dir.as_raw_fd(),
            c.as_ptr(),
            &how as *const OpenHow,
            std::mem::size_of::<OpenHow>(),
        )
    };
    if fd < 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: a fresh descriptor with no other owner.
    Ok(unsafe { OwnedFd::from_raw_fd(fd as libc::c_int) })
}

/// Opens the directory `name` (one component) inside `dir` without following
/// any symlink; a symlink fails with `ELOOP`, a non-directory with `ENOTDIR`.
pub fn open_dir_nofollow(dir: &OwnedFd, name: &OsStr) -> io::Result<OwnedFd> {
    // RESOLVE_BENEATH also rejects a name that would step out of `dir` even
    // if a caller passed more than one component.
    openat2(
        dir,
        name.as_bytes(),
        libc::O_RDONLY | libc::O_DIRECTORY | libc::O_NOFOLLOW,
        libc::RESOLVE_BENEATH | libc::RESOLVE_NO_SYMLINKS | libc::RESOLVE_NO_MAGICLINKS,
    )
}

/// Opens `path` inside the root directory `root` as if `root` were `/`:
/// absolute symlinks and `..` stay inside it (`RESOLVE_IN_ROOT`). For ADD and
/// COPY destinations and mount targets inside a container's root.
pub fn open_in_root(root: &OwnedFd, path: &Path, flags: libc::c_int) -> io::Result<OwnedFd> {
    openat2(
        root,
        path.as_os_str().as_bytes(),
        flags,
        libc::RESOLVE_IN_ROOT | libc::RESOLVE_NO_MAGICLINKS,
    )
}

const OPAQUE_XATTR: &[u8] = b"trusted.overlay.opaque\0";

/// Creates an overlayfs whiteout, a 0/0 character device, for `name`.
pub fn overlay_whiteout(dir: &OwnedFd, name: &OsStr) -> io::Result<()> {
    crate::storage::fdops::mknodat(dir, name, libc::S_IFCHR, 0)
}

/// Marks the open directory `dir` opaque for overlayfs.
pub fn overlay_set_opaque(dir: &OwnedFd) -> io::Result<()> {
    // SAFETY: valid descriptor, NUL-terminated name and a one-byte value.
    let ret = unsafe {
        libc::fsetxattr(
            dir.as_raw_fd(),
            OPAQUE_XATTR.as_ptr() as *const libc::c_char,
            b"y".as_ptr() as *const libc::c_void,
            1,
            0,
        )
    };
    if ret < 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}

/// Returns whether the directory at `path` is marked opaque for overlayfs.
pub fn overlay_is_opaque(path: &Path) -> io::Result<bool> {
    let c = CString::new(path.as_os_str().as_bytes())?;
    let mut value = [0u8; 4];
    // SAFETY: valid C strings and a buffer of the given length.
    let n = unsafe {
        libc::lgetxattr(
            c.as_ptr(),
            OPAQUE_XATTR.as_ptr() as *const libc::c_char,
            value.as_mut_ptr() as *mut libc::c_void,
            value.len(),
        )
    };
    if n < 0 {
        let err = io::Error::last_os_error();
        if err.raw_os_error() == Some(libc::ENODATA) {
            return Ok(false);
        }
        return Err(err);
    }
    Ok(&value[..n as usize] == b"y")
}

/// Returns whether an entry of an overlayfs upper directory is a whiteout.
pub fn is_overlay_whiteout(meta: &fs::Metadata) -> bool {
    meta.file_type().is_char_device() && meta.rdev() == 0
}

/// Sets extended attribute `key` on `name` in `dir` without following a
/// symlink at `name`.
pub fn set_xattr(dir: &OwnedFd, name: &OsStr, key: &[u8], value: &[u8]) -> io::Result<()> {
    // The descriptor's /proc link names the directory itself, so the path
    // cannot leave it; lsetxattr does not follow `name` if it is a symlink.
    let mut path = format!("/proc/self/fd/{}/", dir.as_raw_fd()).into_bytes();
    path.extend_from_slice(name.as_bytes());
    let path = CString::new(path)
        .map_err(|_| io::Error::new(io::ErrorKind::InvalidInput, "name contains NUL"))?;
    let key = CString::new(key)
        .map_err(|_| io::Error::new(io::ErrorKind::InvalidInput, "attribute name contains NUL"))?;
    // SAFETY: valid C strings and a buffer of the given length.
    let ret = unsafe {
        libc::lsetxattr(
            path.as_ptr(),
            key.as_ptr(),
            value.as_ptr() as *const libc::c_void,
            value.len(),
            0,
        )
    };
    if ret < 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}

/// Returns the extended attributes of `path`, without following a symlink.
pub fn read_xattrs(path: &Path) -> io::Result<Vec<(Vec<u8>, Vec<u8>)>> {
    let c = CString::new(path.as_os_str().as_bytes())?;
    // SAFETY: a null buffer of length 0 makes llistxattr return the size.
    let size = unsafe { libc::llistxattr(c.as_ptr(), std::ptr::null_mut(), 0) };
    if size < 0 {
        let err = io::Error::last_os_error();
        if err.raw_os_error() == Some(libc::ENOTSUP) {
            return Ok(Vec::new());
        }
        return Err(err);
    }
    let mut names = vec![0u8; size as usize];
    // SAFETY: a buffer of the given length.
    let size = unsafe {
        libc::llistxattr(
            c.as_ptr(),
            names.as_mut_ptr() as *mut libc::c_char,
            names.len(),
        )
    };
    if size < 0 {
        return Err(io::Error::last_os_error());
    }
    names.truncate(size as usize);

    let mut out = Vec::new();
    for key in names.split(|b| *b == 0).filter(|k| !k.is_empty()) {
        let ckey = CString::new(key)?;
        // SAFETY: a null buffer of length 0 makes lgetxattr return the size.
        let len = unsafe { libc::lgetxattr(c.as_ptr(), ckey.as_ptr(), std::ptr::null_mut(), 0) };
        if len < 0 {
            continue;
        }
        let mut value = vec![0u8; len as usize];
        // SAFETY: a buffer of the given length.
        let len = unsafe {
            libc::lgetxattr(
                c.as_ptr(),
                ckey.as_ptr(),
                value.as_mut_ptr() as *mut libc::c_void,
                value.len(),
            )
        };
        if len < 0 {
            continue;
        }
        value.truncate(len as usize);
        out.push((key.to_vec(), value));
    }
    Ok(out)
}
