//! cblockd: the root daemon that owns images and instances behind a UNIX
//! socket, served by plain threads.

/// Errors of this module.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("{context}: {source}")]
    Io {
        context: String,
        source: std::io::Error,
    },
}

/// Runs the daemon role (`cblockd`, `cblock daemon`).
pub fn main(_args: &[String]) -> crate::Result<std::process::ExitCode> {
    Err(crate::Error::NotImplemented("cblockd"))
}
