//! The per-container supervisor: holds the container's PTY, keeps the
//! scrollback and serves console attach requests.

/// Errors of this module.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("{context}: {source}")]
    Io {
        context: String,
        source: std::io::Error,
    },
}

/// Runs the supervisor role (`cblock _supervisor`).
pub fn supervisor_main(_args: &[String]) -> crate::Result<std::process::ExitCode> {
    Err(crate::Error::NotImplemented("the container supervisor"))
}
