//! `cblock-runtime`: the OCI runtime command line, following runc's.

/// Runs the OCI runtime role (`cblock-runtime`, `cblock runtime`).
pub fn main(_args: &[String]) -> crate::Result<std::process::ExitCode> {
    Err(crate::Error::NotImplemented("cblock-runtime"))
}
