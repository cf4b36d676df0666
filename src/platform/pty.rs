//! Pseudo-terminal calls: open a pair, size it, make it a controlling
//! terminal.

use std::io;
use std::os::fd::{AsRawFd, BorrowedFd, OwnedFd, RawFd};
use std::path::PathBuf;

/// Opens a PTY pair with the given window size (0 leaves the kernel's
/// default) and returns the master, the slave and the slave's path. Both
/// descriptors are close-on-exec.
pub fn open_pty(rows: u16, cols: u16) -> io::Result<(OwnedFd, OwnedFd, PathBuf)> {
    let pair = nix::pty::openpty(None, None).map_err(io::Error::from)?;
    for fd in [&pair.master, &pair.slave] {
        set_cloexec(fd.as_raw_fd())?;
    }
    let path = nix::unistd::ttyname(&pair.slave).map_err(io::Error::from)?;
    if rows > 0 && cols > 0 {
        set_window_size(pair.master.as_raw_fd(), rows, cols)?;
    }
    Ok((pair.master, pair.slave, path))
}

fn set_cloexec(fd: RawFd) -> io::Result<()> {
    // SAFETY: plain fcntl on a descriptor this process owns.
    let rc = unsafe { libc::fcntl(fd, libc::F_SETFD, libc::FD_CLOEXEC) };
    if rc < 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}

/// Sets the window size of the terminal behind `fd`; the kernel then sends
/// SIGWINCH to the terminal's foreground process group.
pub fn set_window_size(fd: RawFd, rows: u16, cols: u16) -> io::Result<()> {
    let size = libc::winsize {
        ws_row: rows,
        ws_col: cols,
        ws_xpixel: 0,
        ws_ypixel: 0,
    };
    // SAFETY: TIOCSWINSZ reads one winsize from the pointer, which is live.
    let rc = unsafe { libc::ioctl(fd, libc::TIOCSWINSZ, &size) };
    if rc < 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}

/// Returns the window size of the terminal behind `fd` as rows and columns.
pub fn window_size(fd: BorrowedFd<'_>) -> io::Result<(u16, u16)> {
    let mut size = libc::winsize {
        ws_row: 0,
        ws_col: 0,
        ws_xpixel: 0,
        ws_ypixel: 0,
    };
    // SAFETY: TIOCGWINSZ writes one winsize through the pointer, which is live.
    let rc = unsafe { libc::ioctl(fd.as_raw_fd(), libc::TIOCGWINSZ, &mut size) };
    if rc < 0 {
        return Err(io::Error::last_os_error());
    }
    Ok((size.ws_row, size.ws_col))
}

/// Starts a new session and makes `fd` its controlling terminal. Meant for
/// `pre_exec` in the child, so it only makes async-signal-safe calls.
pub fn make_controlling_terminal(fd: RawFd) -> io::Result<()> {
    // SAFETY: setsid and ioctl are async-signal-safe and take no pointers
    // that outlive the call.
    unsafe {
        if libc::setsid() < 0 {
            return Err(io::Error::last_os_error());
        }
        if libc::ioctl(fd, libc::TIOCSCTTY as _, 0) < 0 {
            return Err(io::Error::last_os_error());
        }
    }
    Ok(())
}

/// Returns the slave's path of the PTY master `fd` (`/dev/pts/N`), as the
/// namespace that opened the master names it.
#[cfg(target_os = "linux")]
pub fn slave_name(fd: RawFd) -> io::Result<String> {
    let mut number: libc::c_uint = 0;
    // SAFETY: TIOCGPTN writes one unsigned int through the pointer.
    let rc = unsafe { libc::ioctl(fd, libc::TIOCGPTN, &mut number) };
    if rc < 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(format!("/dev/pts/{number}"))
}

/// Returns the slave's path of the PTY master `fd` (`/dev/pts/N`).
#[cfg(target_os = "freebsd")]
pub fn slave_name(fd: RawFd) -> io::Result<String> {
    let mut buf = [0 as libc::c_char; 64];
    // SAFETY: ptsname_r writes at most `buf.len()` bytes into `buf`.
    let rc = unsafe { libc::ptsname_r(fd, buf.as_mut_ptr(), buf.len()) };
    if rc != 0 {
        return Err(io::Error::from_raw_os_error(rc));
    }
    // SAFETY: on success the buffer holds a NUL-terminated string.
    let name = unsafe { std::ffi::CStr::from_ptr(buf.as_ptr()) };
    Ok(name.to_string_lossy().into_owned())
}
