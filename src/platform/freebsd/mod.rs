//! FreeBSD: jails, nullfs and unionfs, ZFS, pf, devfs.

/// Default data directory of the daemon.
pub const DEFAULT_DATA_DIR: &str = "/var/db/cblocks";

pub mod jail;
pub mod peer;
pub mod pty;
pub mod storage;
