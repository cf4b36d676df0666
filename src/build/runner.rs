//! How a RUN step's process runs: in a build container over the stage's
//! mounted root file system. The builder sees only the `StepRunner` trait;
//! `RuntimeRunner` implements it with cblocks' own OCI runtime.

use std::path::Path;

use super::users::Owner;

/// The network of build containers.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Network {
    /// The host's network, as the original system gave every build.
    #[default]
    Host,
    /// A new network namespace with only loopback.
    None,
}

impl Network {
    /// Parses `host` or `none`, the values of `cblock build --network`.
    pub fn parse(text: &str) -> Option<Network> {
        match text {
            "host" => Some(Network::Host),
            "none" => Some(Network::None),
            _ => None,
        }
    }
}

/// One RUN step's process.
#[derive(Debug)]
pub struct StepProcess<'a> {
    /// Container id, unique per step.
    pub id: &'a str,
    pub rootfs: &'a Path,
    pub argv: &'a [String],
    /// `NAME=value` entries.
    pub env: &'a [String],
    pub cwd: &'a str,
    pub user: Owner,
    pub network: Network,
    pub hostname: &'a str,
    /// Host directory for the runtime's bundle and state files.
    pub work_dir: &'a Path,
}

/// Runs RUN steps. Output goes to the caller's standard output and error.
pub trait StepRunner: Sync {
    /// Runs `process` to its end and returns its exit status (128 + N for
    /// a process killed by signal N).
    fn run(&self, process: &StepProcess) -> Result<i32, super::Error>;
}
