//! The container runtime: from an OCI runtime configuration to a running,
//! isolated and limited process. The OS-specific work is in `platform`.

pub mod cli;

/// Errors of this module.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("{context}: {source}")]
    Io {
        context: String,
        source: std::io::Error,
    },
}

/// Runs the init role (`cblock _init`), PID 1 inside a container.
pub fn init_main(_args: &[String]) -> crate::Result<std::process::ExitCode> {
    Err(crate::Error::NotImplemented("the container init"))
}
