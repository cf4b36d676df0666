//! Linux: namespaces, overlayfs, cgroups v1 and v2, nftables.

/// Default data directory of the daemon.
pub const DEFAULT_DATA_DIR: &str = "/var/lib/cblocks";

pub mod container;
pub mod peer;
pub mod pty;
pub mod storage;
