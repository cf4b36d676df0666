//! Thin wrappers over the POSIX `*at` calls that extraction and tree walks
//! use. Every call here is relative to a directory descriptor and never
//! follows a symlink in its last component, so that code built on them cannot
//! be sent out of a root by a link planted inside it.

use std::ffi::{CString, OsStr};
use std::io;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::os::unix::ffi::OsStrExt;
use std::path::Path;

/// Converts a name or path to a C string; a NUL byte is an invalid input.
pub fn cstring(bytes: &[u8]) -> io::Result<CString> {
    CString::new(bytes)
        .map_err(|_| io::Error::new(io::ErrorKind::InvalidInput, "name contains NUL"))
}

fn check(ret: libc::c_int) -> io::Result<()> {
    if ret < 0 {
        Err(io::Error::last_os_error())
    } else {
        Ok(())
    }
}

/// Opens `path` as a directory, following symlinks; used only for roots the
/// caller trusts.
pub fn open_dir(path: &Path) -> io::Result<OwnedFd> {
    let c = cstring(path.as_os_str().as_bytes())?;
    // SAFETY: `c` is a valid C string; the returned descriptor is owned here.
    let fd = unsafe {
        libc::open(
            c.as_ptr(),
            libc::O_RDONLY | libc::O_DIRECTORY | libc::O_CLOEXEC,
        )
    };
    if fd < 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: `fd` is a fresh descriptor with no other owner.
    Ok(unsafe { OwnedFd::from_raw_fd(fd) })
}

/// Opens `name` relative to `dir` with `flags`, adding `O_NOFOLLOW` and
/// `O_CLOEXEC`.
pub fn openat(dir: &OwnedFd, name: &OsStr, flags: libc::c_int, mode: u32) -> io::Result<OwnedFd> {
    let c = cstring(name.as_bytes())?;
    // SAFETY: valid descriptor and C string; the result is owned here.
    let fd = unsafe {
        libc::openat(
            dir.as_raw_fd(),
            c.as_ptr(),
            flags | libc::O_NOFOLLOW | libc::O_CLOEXEC,
            mode as libc::c_uint,
        )
    };
    if fd < 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: `fd` is a fresh descriptor with no other owner.
    Ok(unsafe { OwnedFd::from_raw_fd(fd) })
}

/// Returns the `lstat` of `name` in `dir`, or `None` when it does not exist.
pub fn lstatat(dir: &OwnedFd, name: &OsStr) -> io::Result<Option<libc::stat>> {
    let c = cstring(name.as_bytes())?;
    // SAFETY: `stat` is plain data that fstatat fills in.
    let mut st: libc::stat = unsafe { std::mem::zeroed() };
    // SAFETY: valid descriptor, C string and output buffer.
    let ret = unsafe {
        libc::fstatat(
            dir.as_raw_fd(),
            c.as_ptr(),
            &mut st,
            libc::AT_SYMLINK_NOFOLLOW,
        )
    };
    if ret < 0 {
        let err = io::Error::last_os_error();
        if err.raw_os_error() == Some(libc::ENOENT) {
            return Ok(None);
        }
        return Err(err);
    }
    Ok(Some(st))
}

/// Returns the `fstat` of an open descriptor.
pub fn fstat(fd: &OwnedFd) -> io::Result<libc::stat> {
    // SAFETY: `stat` is plain data that fstat fills in.
    let mut st: libc::stat = unsafe { std::mem::zeroed() };
    // SAFETY: valid descriptor and output buffer.
    check(unsafe { libc::fstat(fd.as_raw_fd(), &mut st) })?;
    Ok(st)
}

/// Returns whether a mode is of file type `kind` (`libc::S_IFDIR` etc).
pub fn is_type(mode: libc::mode_t, kind: libc::mode_t) -> bool {
    mode & libc::S_IFMT == kind
}

pub fn mkdirat(dir: &OwnedFd, name: &OsStr, mode: u32) -> io::Result<()> {
    let c = cstring(name.as_bytes())?;
    // SAFETY: valid descriptor and C string.
    check(unsafe { libc::mkdirat(dir.as_raw_fd(), c.as_ptr(), mode as libc::mode_t) })
}

pub fn symlinkat(target: &[u8], dir: &OwnedFd, name: &OsStr) -> io::Result<()> {
    let t = cstring(target)?;
    let c = cstring(name.as_bytes())?;
    // SAFETY: valid descriptor and C strings.
    check(unsafe { libc::symlinkat(t.as_ptr(), dir.as_raw_fd(), c.as_ptr()) })
}

/// Hard-links `from_name` in `from_dir` as `name` in `dir`; a symlink source
/// is linked itself, never its target.
pub fn linkat(
    from_dir: &OwnedFd,
    from_name: &OsStr,
    dir: &OwnedFd,
    name: &OsStr,
) -> io::Result<()> {
    let f = cstring(from_name.as_bytes())?;
    let c = cstring(name.as_bytes())?;
    // SAFETY: valid descriptors and C strings; flags 0 means no following.
    check(unsafe {
        libc::linkat(
            from_dir.as_raw_fd(),
            f.as_ptr(),
            dir.as_raw_fd(),
            c.as_ptr(),
            0,
        )
    })
}

pub fn mknodat(
    dir: &OwnedFd,
    name: &OsStr,
    mode: libc::mode_t,
    dev: libc::dev_t,
) -> io::Result<()> {
    let c = cstring(name.as_bytes())?;
    // SAFETY: valid descriptor and C string.
    check(unsafe { libc::mknodat(dir.as_raw_fd(), c.as_ptr(), mode, dev) })
}

/// Removes `name` from `dir`; `is_dir` selects `rmdir` semantics.
pub fn unlinkat(dir: &OwnedFd, name: &OsStr, is_dir: bool) -> io::Result<()> {
    let c = cstring(name.as_bytes())?;
    let flags = if is_dir { libc::AT_REMOVEDIR } else { 0 };
    // SAFETY: valid descriptor and C string.
    check(unsafe { libc::unlinkat(dir.as_raw_fd(), c.as_ptr(), flags) })
}

/// Sets owner, mode and times of `name` in `dir` without following a
/// symlink. The mode is skipped for symlinks, which have none of their own on
/// Linux.
pub fn set_metadata(
    dir: &OwnedFd,
    name: &OsStr,
    uid: u32,
    gid: u32,
    mode: Option<u32>,
    mtime: i64,
) -> io::Result<()> {
    let c = cstring(name.as_bytes())?;
    // SAFETY: valid descriptor and C string; no following of the last link.
    check(unsafe {
        libc::fchownat(
            dir.as_raw_fd(),
            c.as_ptr(),
            uid,
            gid,
            libc::AT_SYMLINK_NOFOLLOW,
        )
    })?;
    if let Some(mode) = mode {
        // chown cleared set-id bits, so the mode is set afterwards. fchmodat
        // follows symlinks, which is why the caller passes no mode for them.
        // SAFETY: valid descriptor and C string.
        check(unsafe { libc::fchmodat(dir.as_raw_fd(), c.as_ptr(), mode as libc::mode_t, 0) })?;
    }
    set_mtime(dir, name, mtime)
}

/// Sets the access and modification times of `name` to `mtime` seconds.
pub fn set_mtime(dir: &OwnedFd, name: &OsStr, mtime: i64) -> io::Result<()> {
    let c = cstring(name.as_bytes())?;
    let time = libc::timespec {
        tv_sec: mtime as _,
        tv_nsec: 0,
    };
    let times = [time, time];
    // SAFETY: valid descriptor, C string and two timespecs.
    check(unsafe {
        libc::utimensat(
            dir.as_raw_fd(),
            c.as_ptr(),
            times.as_ptr(),
            libc::AT_SYMLINK_NOFOLLOW,
        )
    })
}

/// Reads the target of symlink `name` in `dir`.
pub fn readlinkat(dir: &OwnedFd, name: &OsStr) -> io::Result<Vec<u8>> {
    let c = cstring(name.as_bytes())?;
    let mut buf = vec![0u8; libc::PATH_MAX as usize + 1];
    // SAFETY: valid descriptor, C string and buffer of the given length.
    let n = unsafe {
        libc::readlinkat(
            dir.as_raw_fd(),
            c.as_ptr(),
            buf.as_mut_ptr() as *mut libc::c_char,
            buf.len(),
        )
    };
    if n < 0 {
        return Err(io::Error::last_os_error());
    }
    buf.truncate(n as usize);
    Ok(buf)
}

/// Removes `name` in `dir` and, for a directory, everything below it,
/// without following symlinks.
pub fn remove_all_at(dir: &OwnedFd, name: &OsStr) -> io::Result<()> {
    let Some(st) = lstatat(dir, name)? else {
        return Ok(());
    };
    if !is_type(st.st_mode, libc::S_IFDIR) {
        return unlinkat(dir, name, false);
    }
    let child = openat(dir, name, libc::O_RDONLY | libc::O_DIRECTORY, 0)?;
    clear_dir(&child, |_| false)?;
    drop(child);
    unlinkat(dir, name, true)
}

/// Removes every entry of the open directory `dir` for which `keep` returns
/// false.
pub fn clear_dir(dir: &OwnedFd, keep: impl Fn(&OsStr) -> bool) -> io::Result<()> {
    for name in list_dir(dir)? {
        if !keep(&name) {
            remove_all_at(dir, &name)?;
        }
    }
    Ok(())
}

/// Lists the names in the open directory `dir`, without `.` and `..`.
pub fn list_dir(dir: &OwnedFd) -> io::Result<Vec<std::ffi::OsString>> {
    // fdopendir takes ownership of its descriptor, so it gets a duplicate.
    // SAFETY: dup of a valid descriptor.
    let copy = unsafe { libc::dup(dir.as_raw_fd()) };
    if copy < 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: `copy` is owned by the DIR stream from here on.
    let stream = unsafe { libc::fdopendir(copy) };
    if stream.is_null() {
        let err = io::Error::last_os_error();
        // SAFETY: fdopendir failed, so `copy` is still ours to close.
        unsafe { libc::close(copy) };
        return Err(err);
    }
    // SAFETY: rewind a valid stream, because the duplicate shares the offset.
    unsafe { libc::rewinddir(stream) };

    let mut names = Vec::new();
    loop {
        // SAFETY: valid stream; the entry is read before the next call.
        let entry = unsafe { libc::readdir(stream) };
        if entry.is_null() {
            break;
        }
        // SAFETY: d_name is NUL-terminated within the entry.
        let name = unsafe { std::ffi::CStr::from_ptr((*entry).d_name.as_ptr()) };
        let bytes = name.to_bytes();
        if bytes != b"." && bytes != b".." {
            names.push(OsStr::from_bytes(bytes).to_os_string());
        }
    }
    // SAFETY: closes the stream and the duplicate it owns.
    unsafe { libc::closedir(stream) };
    names.sort();
    Ok(names)
}

/// Flushes a file or directory to disk.
pub fn fsync_path(path: &Path) -> io::Result<()> {
    std::fs::File::open(path)?.sync_all()
}
