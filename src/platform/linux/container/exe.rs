//! A runtime binary that the container cannot write to.
//!
//! CVE-2019-5736: a container process could open `/proc/PID/exe` of a
//! runtime process that had joined the container, and write to the host's
//! runtime binary once it stopped running. The process that enters the
//! container therefore runs from a file that refuses writes, so that
//! `/proc/PID/exe` leads only there.
//!
//! The fast way is the binary seen through a detached, read-only overlay
//! mount: the mount exists in no mount namespace, and overlayfs without an
//! upper layer fails every write with EROFS. Opening it costs about as
//! much as a few mounts. Where the kernel refuses that (no new mount API
//! before Linux 5.2, no overlayfs, no CAP_SYS_ADMIN), the binary is copied
//! into a sealed memfd instead, which costs a copy of the whole binary
//! (3 ms for 6 MB) on every container start.

use std::ffi::CString;
use std::fs::File;
use std::io;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};
use std::os::unix::ffi::OsStrExt;
use std::path::Path;

use crate::runtime::Error;

/// Opens `exe` so that no one can write to it through the returned
/// descriptor or through `/proc/PID/exe` of a process executing it. The
/// descriptor is close-on-exec.
pub fn open_unwritable(exe: &Path) -> Result<OwnedFd, Error> {
    // Any error of the overlay way leaves only the slower copy, which
    // protects the binary as well.
    match read_only_view(exe) {
        Ok(fd) => Ok(fd),
        Err(_) => sealed_copy(exe),
    }
}

/// Constants of the new mount API from `linux/mount.h`, which the libc
/// crate does not define.
const FSOPEN_CLOEXEC: libc::c_uint = 0x1;
const FSCONFIG_SET_STRING: libc::c_uint = 1;
const FSCONFIG_CMD_CREATE: libc::c_uint = 6;
const FSMOUNT_CLOEXEC: libc::c_uint = 0x1;
const MOUNT_ATTR_RDONLY: libc::c_uint = 0x1;
const MOUNT_ATTR_NOSUID: libc::c_uint = 0x2;
const MOUNT_ATTR_NODEV: libc::c_uint = 0x4;

/// Opens `exe` through a new detached overlay mount whose lower layers are
/// the binary's directory and an empty tmpfs (overlayfs needs two lower
/// layers when it has no upper one). The mount disappears when the last
/// descriptor of a file in it closes.
fn read_only_view(exe: &Path) -> io::Result<OwnedFd> {
    let exe = if exe == Path::new("/proc/self/exe") {
        std::fs::read_link(exe)?
    } else {
        exe.canonicalize()?
    };
    let (Some(dir), Some(name)) = (exe.parent(), exe.file_name()) else {
        return Err(io::Error::from(io::ErrorKind::InvalidInput));
    };
    // The lowerdir option separates layers with ':' and options with ','.
    let dir_bytes = dir.as_os_str().as_bytes();
    if dir_bytes.iter().any(|b| matches!(b, b':' | b',' | b'\\')) {
        return Err(io::Error::from(io::ErrorKind::InvalidInput));
    }

    let empty = mount_detached(c"tmpfs", &[], MOUNT_ATTR_RDONLY)?;
    let lower = format!("{}:/proc/self/fd/{}", dir.display(), empty.as_raw_fd());
    let overlay = mount_detached(
        c"overlay",
        &[(c"lowerdir", CString::new(lower)?)],
        MOUNT_ATTR_RDONLY | MOUNT_ATTR_NOSUID | MOUNT_ATTR_NODEV,
    )?;
    let name = CString::new(name.as_bytes())?;
    // SAFETY: overlay is a mount descriptor and name a valid C string.
    let fd = unsafe {
        libc::openat(
            overlay.as_raw_fd(),
            name.as_ptr(),
            libc::O_RDONLY | libc::O_CLOEXEC,
        )
    };
    if fd < 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: fd was just opened and is owned by nothing else.
    Ok(unsafe { OwnedFd::from_raw_fd(fd) })
}

/// Creates a file system of `fstype` with string `options` and returns a
/// descriptor of its detached mount.
fn mount_detached(
    fstype: &std::ffi::CStr,
    options: &[(&std::ffi::CStr, CString)],
    attributes: libc::c_uint,
) -> io::Result<OwnedFd> {
    let check = |rc: libc::c_long| -> io::Result<RawFd> {
        if rc < 0 {
            Err(io::Error::last_os_error())
        } else {
            Ok(rc as RawFd)
        }
    };
    // SAFETY: fstype is a valid C string; the result is checked.
    let context =
        check(unsafe { libc::syscall(libc::SYS_fsopen, fstype.as_ptr(), FSOPEN_CLOEXEC) })?;
    // SAFETY: context was just returned by fsopen and is owned by nothing else.
    let context = unsafe { OwnedFd::from_raw_fd(context) };
    for (key, value) in options {
        // SAFETY: key and value are valid C strings.
        check(unsafe {
            libc::syscall(
                libc::SYS_fsconfig,
                context.as_raw_fd(),
                FSCONFIG_SET_STRING,
                key.as_ptr(),
                value.as_ptr(),
                0,
            )
        })?;
    }
    // SAFETY: no pointers are passed.
    check(unsafe {
        libc::syscall(
            libc::SYS_fsconfig,
            context.as_raw_fd(),
            FSCONFIG_CMD_CREATE,
            std::ptr::null::<libc::c_char>(),
            std::ptr::null::<libc::c_char>(),
            0,
        )
    })?;
    // SAFETY: no pointers are passed.
    let mount = check(unsafe {
        libc::syscall(
            libc::SYS_fsmount,
            context.as_raw_fd(),
            FSMOUNT_CLOEXEC,
            attributes,
        )
    })?;
    // SAFETY: mount was just returned by fsmount and is owned by nothing else.
    Ok(unsafe { OwnedFd::from_raw_fd(mount) })
}

/// Copies `exe` into a memfd and seals it against writes, growing and
/// shrinking. The descriptor is close-on-exec.
fn sealed_copy(exe: &Path) -> Result<OwnedFd, Error> {
    let context = |step: &str| format!("{step} for a sealed copy of {}", exe.display());
    let mut source = File::open(exe).map_err(|e| Error::Io {
        context: context("opening the runtime binary"),
        source: e,
    })?;

    // SAFETY: the name is a valid C string; the result is checked.
    let fd = unsafe {
        libc::memfd_create(
            c"cblock-runtime".as_ptr(),
            libc::MFD_CLOEXEC | libc::MFD_ALLOW_SEALING,
        )
    };
    if fd < 0 {
        return Err(Error::Io {
            context: context("memfd_create"),
            source: io::Error::last_os_error(),
        });
    }
    // SAFETY: fd was just returned by memfd_create and is owned by no one else.
    let memfd = unsafe { OwnedFd::from_raw_fd(fd) };
    let mut target = File::from(memfd);
    io::copy(&mut source, &mut target).map_err(|e| Error::Io {
        context: context("copying the runtime binary"),
        source: e,
    })?;

    let seals = libc::F_SEAL_SEAL | libc::F_SEAL_SHRINK | libc::F_SEAL_GROW | libc::F_SEAL_WRITE;
    // SAFETY: fcntl on a valid descriptor.
    if unsafe { libc::fcntl(target.as_raw_fd(), libc::F_ADD_SEALS, seals) } < 0 {
        return Err(Error::Io {
            context: context("sealing the memfd"),
            source: io::Error::last_os_error(),
        });
    }
    Ok(OwnedFd::from(target))
}
