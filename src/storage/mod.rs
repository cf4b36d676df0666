//! Layered root file systems behind one driver trait (overlay, btrfs and vfs
//! on Linux; unionfs and ZFS on FreeBSD), and safe archive extraction.

/// Errors of this module.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("{context}: {source}")]
    Io {
        context: String,
        source: std::io::Error,
    },
}
