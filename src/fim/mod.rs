//! File integrity: mtree specifications of an image's files, written at build
//! time and checked later.

/// Errors of this module.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("{context}: {source}")]
    Io {
        context: String,
        source: std::io::Error,
    },
}
