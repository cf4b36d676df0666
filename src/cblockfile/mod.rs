//! The Cblockfile language: a superset of the Dockerfile, parsed with nom into
//! stages and instructions with source positions.

/// Errors of this module.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("{context}: {source}")]
    Io {
        context: String,
        source: std::io::Error,
    },
}
