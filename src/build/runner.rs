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
    /// Supplementary group ids of the user.
    pub groups: &'a [u32],
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

/// Runs RUN steps as containers of cblocks' own OCI runtime. The container's
/// standard streams are the builder's, so its output is the build's output.
pub struct RuntimeRunner {
    /// State directory root of the build containers.
    pub state_root: std::path::PathBuf,
    /// The cblocks binary that sets containers up; the running one when
    /// `None` (tests that link the library name the built binary).
    pub runtime_exe: Option<std::path::PathBuf>,
}

/// Host file bound read-only into build containers for name resolution.
const HOST_RESOLV_CONF: &str = "/etc/resolv.conf";

impl StepRunner for RuntimeRunner {
    fn run(&self, process: &StepProcess) -> Result<i32, super::Error> {
        use crate::runtime::{
            self, BindMount, ConsoleMode, Container, ContainerConfig, NetworkMode, Settings,
        };

        let failed = |what: &str, err: &dyn std::fmt::Display| {
            super::Error::Runner(format!("{what} for build container {}: {err}", process.id))
        };
        let bundle = process.work_dir.join(format!("bundle-{}", process.id));
        std::fs::create_dir_all(&bundle).map_err(|source| super::Error::Io {
            path: bundle.clone(),
            source,
        })?;

        let mut mounts = Vec::new();
        if process.network == Network::Host && Path::new(HOST_RESOLV_CONF).exists() {
            mounts.push(BindMount {
                source: HOST_RESOLV_CONF.into(),
                destination: HOST_RESOLV_CONF.into(),
                readonly: true,
            });
        }
        let settings = Settings {
            args: process.argv.to_vec(),
            env: process.env.to_vec(),
            cwd: process.cwd.to_string(),
            uid: process.user.uid,
            gid: process.user.gid,
            additional_gids: process.groups.to_vec(),
            hostname: Some(process.hostname.to_string()),
            terminal: false,
            rootfs: process.rootfs.display().to_string(),
            mounts,
            network: match process.network {
                Network::Host => NetworkMode::Host,
                Network::None => NetworkMode::New,
            },
            ..Settings::default()
        };
        let spec = runtime::default_spec(&settings);
        let result = (|| {
            runtime::write_config(&bundle, &spec).map_err(|e| failed("writing config.json", &e))?;
            runtime::become_subreaper().map_err(|e| failed("becoming subreaper", &e))?;
            let container = Container::create(&ContainerConfig {
                id: process.id.to_string(),
                bundle: bundle.clone(),
                root_dir: self.state_root.clone(),
                console: ConsoleMode::Inherit,
                runtime_exe: self.runtime_exe.clone(),
                start_at_once: true,
                ..ContainerConfig::default()
            })
            .map_err(|e| failed("creating the container", &e))?;
            let status = container.wait().map_err(|e| failed("running the step", &e));
            let deleted = container
                .delete(true)
                .map_err(|e| failed("deleting the container", &e));
            let status = status?;
            deleted?;
            Ok(status)
        })();
        let _ = std::fs::remove_dir_all(&bundle);
        result
    }
}
