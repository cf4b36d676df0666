//! The crate's error type: one variant per module error, so that a failure
//! keeps the message its module gave it on the way to the user.

use std::path::PathBuf;

/// Any error a cblocks command can end with.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error(transparent)]
    Cblockfile(#[from] crate::cblockfile::Error),
    #[error(transparent)]
    Build(#[from] crate::build::Error),
    #[error(transparent)]
    Image(#[from] crate::image::Error),
    #[error(transparent)]
    Storage(#[from] crate::storage::Error),
    #[error(transparent)]
    Runtime(#[from] crate::runtime::Error),
    #[error(transparent)]
    Console(#[from] crate::console::Error),
    #[error(transparent)]
    Daemon(#[from] crate::daemon::Error),
    #[error(transparent)]
    Client(#[from] crate::client::Error),
    #[error(transparent)]
    Network(#[from] crate::network::Error),
    #[error(transparent)]
    Warden(#[from] crate::warden::Error),
    #[error(transparent)]
    Fim(#[from] crate::fim::Error),
    #[error(transparent)]
    Forge(#[from] crate::forge::Error),
    #[error("{path}: {source}")]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("{0} is not implemented yet")]
    NotImplemented(&'static str),
}

/// Result with the crate's error type.
pub type Result<T, E = Error> = std::result::Result<T, E>;
