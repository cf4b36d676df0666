//! Everything that differs between operating systems. Each supported OS has
//! one module, selected at compile time; the rest of the crate calls only
//! what this module re-exports.

#[cfg(target_os = "freebsd")]
mod freebsd;
#[cfg(target_os = "freebsd")]
pub use freebsd::*;

#[cfg(target_os = "linux")]
mod linux;
#[cfg(target_os = "linux")]
pub use linux::*;

/// PTYs, the same on both systems but for the slave's name.
pub mod pty;

/// Closes every descriptor from 3 up except `keep`, for a forked child
/// that must not hold its parent's files.
pub fn close_descriptors_except(keep: std::os::fd::RawFd) -> std::io::Result<()> {
    let keep = keep as libc::c_uint;
    let ranges = [(3, keep.saturating_sub(1)), (keep + 1, libc::c_uint::MAX)];
    for (low, high) in ranges {
        if low <= high {
            close_range(low, high)?;
        }
    }
    Ok(())
}

/// Closes the descriptors from `low` to `high`, both included.
fn close_range(low: libc::c_uint, high: libc::c_uint) -> std::io::Result<()> {
    // SAFETY: close_range(2) only closes descriptors of this process.
    #[cfg(target_os = "linux")]
    let rc = unsafe { libc::syscall(libc::SYS_close_range, low, high, 0) };
    // SAFETY: as above.
    #[cfg(target_os = "freebsd")]
    let rc = unsafe { libc::close_range(low, high, 0) };
    if rc != 0 {
        return Err(std::io::Error::last_os_error());
    }
    Ok(())
}
