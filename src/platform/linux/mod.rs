//! Linux: namespaces, overlayfs, cgroups v1 and v2, nftables.

/// Default data directory of the daemon.
pub const DEFAULT_DATA_DIR: &str = "/var/lib/cblocks";
/// File of containers that warden launches at boot.
pub const DEFAULT_MANIFEST: &str = "/etc/cblocks/cellblocks.yaml";
/// Whether every container has fdescfs and procfs, so warden accepts
/// `fdescfs: true` and `procfs: true` without an option. On Linux /proc is
/// always mounted, and /proc/self/fd is in it.
pub const PSEUDO_FS_IN_EVERY_CONTAINER: bool = true;

pub mod container;
pub mod peer;
pub mod pty;
pub mod storage;

/// Closes every descriptor from 3 up except `keep`, for a forked child
/// that must not hold its parent's files.
pub fn close_descriptors_except(keep: std::os::fd::RawFd) -> std::io::Result<()> {
    let keep = keep as libc::c_uint;
    let ranges = [(3, keep.saturating_sub(1)), (keep + 1, libc::c_uint::MAX)];
    for (low, high) in ranges {
        if low > high {
            continue;
        }
        // SAFETY: close_range only closes descriptors of this process.
        if unsafe { libc::syscall(libc::SYS_close_range, low, high, 0) } != 0 {
            return Err(std::io::Error::last_os_error());
        }
    }
    Ok(())
}
