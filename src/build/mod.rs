//! Builds an image from a parsed Cblockfile and a context directory: the
//! stage graph, one build container per file-changing step, and the cache.

pub mod cache;
pub mod context;
pub mod download;
pub mod users;

/// Errors of this module.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error(transparent)]
    Download(#[from] download::Error),
    #[error(transparent)]
    Cache(#[from] cache::Error),
    #[error(transparent)]
    Context(#[from] context::Error),
    #[error(transparent)]
    Users(#[from] users::Error),
    #[error("{context}: {source}")]
    Io {
        context: String,
        source: std::io::Error,
    },
}
