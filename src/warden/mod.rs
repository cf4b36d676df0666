//! warden: launches the containers declared in a file at boot.

/// Errors of this module.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("{context}: {source}")]
    Io {
        context: String,
        source: std::io::Error,
    },
}

/// Runs the warden role (`warden`, `cblock warden`).
pub fn main(_args: &[String]) -> crate::Result<std::process::ExitCode> {
    Err(crate::Error::NotImplemented("warden"))
}
