//! FreeBSD jails: the runtime's second platform.
//!
//! TODO: start containers with jail_set(2) (path, host.hostname, vnet,
//! persist), nullfs mounts and a devfs ruleset, and limits with rctl(8).
//! Until then every entry point returns `NotSupported`, so that the
//! platform-neutral runtime type-checks here with the same interface as on
//! Linux.

use std::io;
use std::os::fd::OwnedFd;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use crate::oci::runtime_spec::{Capabilities, Process, Seccomp, Spec};
use crate::runtime::Error;

/// A container process to start; the same fields as on Linux.
pub struct Launch<'a> {
    pub id: &'a str,
    pub spec: &'a Spec,
    pub process: &'a Process,
    pub bundle: &'a Path,
    pub rootfs: PathBuf,
    pub exec_fifo: Option<&'a Path>,
    pub join_pid: Option<i32>,
    pub console: Option<OwnedFd>,
    pub preserve_fds: u32,
    pub no_pivot: bool,
    pub runtime_exe: &'a Path,
    pub cgroup_path: Option<String>,
    pub stdio: Option<[OwnedFd; 3]>,
}

/// A started jail's process.
#[derive(Debug)]
pub struct Launched {
    pub pid: i32,
    pub cgroup: cgroups::Cgroup,
}

/// Resource limits; FreeBSD has rctl(8) instead of cgroups.
pub mod cgroups {
    use std::path::PathBuf;

    use serde::{Deserialize, Serialize};

    use crate::runtime::Error;

    #[derive(Debug, Clone, Default, Serialize, Deserialize)]
    pub struct Cgroup {
        pub dirs: Vec<PathBuf>,
    }

    pub fn resolve_path(configured: Option<&str>, id: &str) -> Result<String, Error> {
        Ok(configured.map_or_else(|| format!("/cblock-runtime/{id}"), str::to_string))
    }

    pub fn pids(_cgroup: &Cgroup) -> Vec<i32> {
        Vec::new()
    }

    pub fn destroy(_cgroup: &Cgroup) -> Result<(), Error> {
        Ok(())
    }
}

pub fn validate(_spec: &Spec, _process: &Process) -> Result<(), Error> {
    Err(Error::NotSupported("running containers on FreeBSD"))
}

pub fn launch(
    _request: Launch<'_>,
    _run_hooks: &mut dyn FnMut(i32) -> Result<(), Error>,
) -> Result<Launched, Error> {
    Err(Error::NotSupported("running containers on FreeBSD"))
}

pub fn setup_main(_args: &[String]) -> ExitCode {
    eprintln!("cblock-runtime: jails are not supported yet");
    ExitCode::from(1)
}

pub fn connect_console(path: &Path) -> Result<std::os::unix::net::UnixStream, Error> {
    std::os::unix::net::UnixStream::connect(path).map_err(|e| Error::Io {
        context: format!("connecting to console socket {}", path.display()),
        source: e,
    })
}

pub fn receive_fd(_socket: std::os::fd::RawFd) -> Result<OwnedFd, Error> {
    Err(Error::NotSupported("terminals for jails"))
}

pub fn signal(pid: i32, signal: i32) -> io::Result<()> {
    // A pid of 0 or below would signal a whole process group, such as the
    // runtime's own, so only a single process is accepted.
    if pid <= 0 {
        return Err(io::Error::new(
            io::ErrorKind::InvalidInput,
            format!("invalid pid {pid} for a signal: it names no single process"),
        ));
    }
    // SAFETY: kill(2) has no memory effects.
    if unsafe { libc::kill(pid, signal) } != 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}

pub fn features() -> serde_json::Value {
    serde_json::json!({ "jail": { "enabled": false } })
}

pub fn default_capabilities() -> Capabilities {
    Capabilities::default()
}

/// FreeBSD has no seccomp; jails restrict system calls themselves.
pub fn default_seccomp(_capabilities: &[String]) -> Option<Seccomp> {
    None
}

/// Makes the calling process the reaper of its orphaned descendants.
pub fn become_subreaper() -> io::Result<()> {
    // SAFETY: PROC_REAP_ACQUIRE takes no data.
    let rc = unsafe {
        libc::procctl(
            libc::P_PID,
            0,
            libc::PROC_REAP_ACQUIRE,
            std::ptr::null_mut(),
        )
    };
    if rc != 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}
