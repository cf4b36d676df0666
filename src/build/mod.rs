//! Builds an image from a parsed Cblockfile and a context directory: the
//! stage graph, one build container per file-changing step, and the cache.

/// Errors of this module.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("{context}: {source}")]
    Io {
        context: String,
        source: std::io::Error,
    },
}
