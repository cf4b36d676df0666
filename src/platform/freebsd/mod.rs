//! FreeBSD: jails, nullfs and unionfs, ZFS, pf, devfs.

/// Default data directory of the daemon.
pub const DEFAULT_DATA_DIR: &str = "/var/db/cblocks";
/// File of containers that warden launches at boot.
pub const DEFAULT_MANIFEST: &str = "/usr/local/etc/cellblocks.yaml";
/// Whether every container has fdescfs and procfs, so warden accepts
/// `fdescfs: true` and `procfs: true` without an option. Jails get neither
/// yet, so warden rejects such a block.
pub const PSEUDO_FS_IN_EVERY_CONTAINER: bool = false;

pub mod jail;
pub mod peer;
pub mod storage;
