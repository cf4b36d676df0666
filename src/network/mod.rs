//! Container networking: host, NAT and bridge modes with port publishing.

/// Errors of this module.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("{context}: {source}")]
    Io {
        context: String,
        source: std::io::Error,
    },
}
