//! A sealed in-memory copy of the runtime binary.
//!
//! CVE-2019-5736: a container process could open `/proc/PID/exe` of a
//! runtime process that had joined the container, and write to the host's
//! runtime binary once it stopped running. The process that enters the
//! container therefore runs from a memfd copy sealed against writes, so
//! that `/proc/PID/exe` leads only to that copy.

use std::fs::File;
use std::io;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::path::Path;

use crate::runtime::Error;

/// Copies `exe` into a memfd and seals it against writes, growing and
/// shrinking. The descriptor is close-on-exec.
pub fn sealed_copy(exe: &Path) -> Result<OwnedFd, Error> {
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
