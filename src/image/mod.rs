//! The content-addressed image store: OCI image configurations, manifests,
//! names and tags, kept durable across crashes.

/// Errors of this module.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("{context}: {source}")]
    Io {
        context: String,
        source: std::io::Error,
    },
}
