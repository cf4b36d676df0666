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
pub mod storage;
