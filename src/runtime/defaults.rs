//! Configurations the runtime writes itself: the default one for cblocks'
//! own containers, built from image settings, and the example that
//! `cblock-runtime spec` prints.

use std::collections::BTreeMap;
use std::fs;
use std::path::{Path, PathBuf};

use super::{engine, Error};
use crate::oci::runtime_spec::{
    Capabilities, Cpu, Linux, Memory, Mount, Namespace, Pids, Process, Resources, Rlimit, Root,
    Spec, User, OCI_VERSION,
};

/// The network a container gets.
#[derive(Debug, Clone, Default, PartialEq)]
pub enum NetworkMode {
    /// The host's network namespace.
    Host,
    /// A new, empty network namespace with only loopback.
    #[default]
    New,
    /// An existing network namespace, such as one under /run/netns.
    Join(PathBuf),
}

/// A host path bound into the container.
#[derive(Debug, Clone, PartialEq)]
pub struct BindMount {
    pub source: PathBuf,
    pub destination: String,
    pub readonly: bool,
}

/// Image and launch settings for [`default_spec`].
#[derive(Debug, Clone)]
pub struct Settings {
    pub args: Vec<String>,
    /// `NAME=value` entries; PATH is added when missing.
    pub env: Vec<String>,
    pub cwd: String,
    pub uid: u32,
    pub gid: u32,
    pub additional_gids: Vec<u32>,
    pub hostname: Option<String>,
    pub terminal: bool,
    /// Root file system, relative to the bundle or absolute.
    pub rootfs: String,
    pub readonly_rootfs: bool,
    pub mounts: Vec<BindMount>,
    /// Bytes.
    pub memory_limit: Option<i64>,
    pub pids_limit: Option<i64>,
    /// CPUs as a fraction, such as 0.5 for half of one CPU.
    pub cpus: Option<f64>,
    pub network: NetworkMode,
    /// Host path of the cblock binary, bound read-only at `/.cblock-init`
    /// and run as PID 1 (`cblock _init`) in front of `args`, so that
    /// zombies are reaped and signals forwarded.
    pub init: Option<PathBuf>,
}

impl Default for Settings {
    fn default() -> Self {
        Settings {
            args: vec!["sh".into()],
            env: Vec::new(),
            cwd: "/".into(),
            uid: 0,
            gid: 0,
            additional_gids: Vec::new(),
            hostname: None,
            terminal: false,
            rootfs: "rootfs".into(),
            readonly_rootfs: false,
            mounts: Vec::new(),
            memory_limit: None,
            pids_limit: None,
            cpus: None,
            network: NetworkMode::New,
            init: None,
        }
    }
}

/// Path of the init inside containers that use one.
pub const INIT_PATH: &str = "/.cblock-init";

const DEFAULT_PATH: &str = "PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin";

fn strings(items: &[&str]) -> Vec<String> {
    items.iter().map(|s| s.to_string()).collect()
}

fn mount(destination: &str, kind: &str, source: &str, options: &[&str]) -> Mount {
    Mount {
        destination: destination.into(),
        kind: Some(kind.into()),
        source: Some(source.into()),
        options: strings(options),
        ..Default::default()
    }
}

/// Returns the file systems of every container: proc, a tmpfs /dev with
/// devpts, shm and mqueue, read-only sysfs and cgroup.
fn standard_mounts() -> Vec<Mount> {
    vec![
        mount("/proc", "proc", "proc", &["nosuid", "noexec", "nodev"]),
        mount(
            "/dev",
            "tmpfs",
            "tmpfs",
            &["nosuid", "strictatime", "mode=755", "size=65536k"],
        ),
        mount(
            "/dev/pts",
            "devpts",
            "devpts",
            &[
                "nosuid",
                "noexec",
                "newinstance",
                "ptmxmode=0666",
                "mode=0620",
                "gid=5",
            ],
        ),
        mount(
            "/dev/shm",
            "tmpfs",
            "shm",
            &["nosuid", "noexec", "nodev", "mode=1777", "size=65536k"],
        ),
        mount(
            "/dev/mqueue",
            "mqueue",
            "mqueue",
            &["nosuid", "noexec", "nodev"],
        ),
        mount(
            "/sys",
            "sysfs",
            "sysfs",
            &["nosuid", "noexec", "nodev", "ro"],
        ),
        mount(
            "/sys/fs/cgroup",
            "cgroup",
            "cgroup",
            &["nosuid", "noexec", "nodev", "relatime", "ro"],
        ),
    ]
}

/// Paths hidden from containers: kernel interfaces that leak host data or
/// control the host.
fn masked_paths() -> Vec<String> {
    strings(&[
        "/proc/acpi",
        "/proc/asound",
        "/proc/kcore",
        "/proc/keys",
        "/proc/latency_stats",
        "/proc/timer_list",
        "/proc/timer_stats",
        "/proc/sched_debug",
        "/proc/scsi",
        "/sys/firmware",
        "/sys/devices/virtual/powercap",
    ])
}

fn readonly_paths() -> Vec<String> {
    strings(&[
        "/proc/bus",
        "/proc/fs",
        "/proc/irq",
        "/proc/sys",
        "/proc/sysrq-trigger",
    ])
}

fn namespaces(network: &NetworkMode) -> Vec<Namespace> {
    let mut list: Vec<Namespace> = ["pid", "ipc", "uts", "mount", "cgroup"]
        .iter()
        .map(|kind| Namespace {
            kind: kind.to_string(),
            path: None,
        })
        .collect();
    match network {
        NetworkMode::Host => {}
        NetworkMode::New => list.push(Namespace {
            kind: "network".into(),
            path: None,
        }),
        NetworkMode::Join(path) => list.push(Namespace {
            kind: "network".into(),
            path: Some(path.display().to_string()),
        }),
    }
    list
}

/// Returns the configuration of a cblocks container: the settings' program
/// and limits, Docker's default capabilities, masked and read-only kernel
/// paths, no_new_privs and the default seccomp profile.
pub fn default_spec(settings: &Settings) -> Spec {
    let capabilities = engine::default_capabilities();
    let mut env = settings.env.clone();
    if !env.iter().any(|e| e.starts_with("PATH=")) {
        env.insert(0, DEFAULT_PATH.into());
    }
    if settings.terminal && !env.iter().any(|e| e.starts_with("TERM=")) {
        env.push("TERM=xterm".into());
    }

    let mut args = settings.args.clone();
    let mut mounts = standard_mounts();
    if let Some(init) = &settings.init {
        mounts.push(Mount {
            destination: INIT_PATH.into(),
            kind: Some("bind".into()),
            source: Some(init.display().to_string()),
            options: strings(&["bind", "ro", "nosuid", "nodev"]),
            ..Default::default()
        });
        let mut with_init = vec![INIT_PATH.to_string(), "_init".to_string()];
        with_init.append(&mut args);
        args = with_init;
    }
    for bind in &settings.mounts {
        let mut options = strings(&["rbind", "nosuid", "nodev"]);
        if bind.readonly {
            options.push("ro".into());
        }
        mounts.push(Mount {
            destination: bind.destination.clone(),
            kind: Some("bind".into()),
            source: Some(bind.source.display().to_string()),
            options,
            ..Default::default()
        });
    }

    let resources = Resources {
        memory: settings.memory_limit.map(|limit| Memory {
            limit: Some(limit),
            swap: Some(limit),
            ..Default::default()
        }),
        pids: settings.pids_limit.map(|limit| Pids { limit }),
        cpu: settings.cpus.map(|cpus| Cpu {
            quota: Some((cpus * 100_000.0).round() as i64),
            period: Some(100_000),
            ..Default::default()
        }),
        ..Default::default()
    };

    Spec {
        oci_version: OCI_VERSION.into(),
        root: Some(Root {
            path: settings.rootfs.clone(),
            readonly: settings.readonly_rootfs,
        }),
        mounts,
        process: Some(Process {
            terminal: settings.terminal,
            user: User {
                uid: settings.uid,
                gid: settings.gid,
                additional_gids: settings.additional_gids.clone(),
                ..Default::default()
            },
            args,
            env,
            cwd: settings.cwd.clone(),
            capabilities: Some(capabilities.clone()),
            no_new_privileges: true,
            ..Default::default()
        }),
        hostname: settings.hostname.clone(),
        linux: Some(Linux {
            resources: Some(resources),
            namespaces: namespaces(&settings.network),
            seccomp: engine::default_seccomp(&capabilities.bounding),
            masked_paths: masked_paths(),
            readonly_paths: readonly_paths(),
            ..Default::default()
        }),
        ..Default::default()
    }
}

/// Returns the example configuration of `cblock-runtime spec`: `sh` on a
/// terminal in `rootfs`, with runc's small default capability set.
pub fn example_spec() -> Spec {
    let mut spec = default_spec(&Settings {
        terminal: true,
        hostname: Some("cblock".into()),
        ..Default::default()
    });
    let names = strings(&["CAP_AUDIT_WRITE", "CAP_KILL", "CAP_NET_BIND_SERVICE"]);
    if let Some(process) = spec.process.as_mut() {
        process.capabilities = Some(Capabilities {
            bounding: names.clone(),
            effective: names.clone(),
            inheritable: Vec::new(),
            permitted: names,
            ambient: Vec::new(),
        });
        process.rlimits = vec![Rlimit {
            kind: "RLIMIT_NOFILE".into(),
            hard: 1024,
            soft: 1024,
        }];
    }
    if let Some(linux) = spec.linux.as_mut() {
        linux.seccomp = None;
        linux.resources = Some(Resources::default());
    }
    spec.annotations = BTreeMap::new();
    spec
}

/// Writes `spec` as `config.json` into `bundle`.
pub fn write_config(bundle: &Path, spec: &Spec) -> Result<(), Error> {
    let path = bundle.join("config.json");
    let text = serde_json::to_string_pretty(spec).map_err(|e| Error::Setup(e.to_string()))?;
    fs::write(&path, text + "\n").map_err(|e| Error::Io {
        context: format!("writing {}", path.display()),
        source: e,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn default_spec_applies_settings() {
        let spec = default_spec(&Settings {
            args: vec!["/bin/true".into()],
            memory_limit: Some(64 << 20),
            pids_limit: Some(100),
            cpus: Some(0.5),
            network: NetworkMode::Host,
            init: Some("/usr/bin/cblock".into()),
            ..Default::default()
        });
        let process = spec.process.as_ref().unwrap();
        assert_eq!(process.args, vec![INIT_PATH, "_init", "/bin/true"]);
        assert!(process.env.iter().any(|e| e.starts_with("PATH=")));
        let linux = spec.linux.as_ref().unwrap();
        assert!(!linux.namespaces.iter().any(|ns| ns.kind == "network"));
        let resources = linux.resources.as_ref().unwrap();
        assert_eq!(resources.memory.as_ref().unwrap().limit, Some(64 << 20));
        assert_eq!(resources.pids.as_ref().unwrap().limit, 100);
        assert_eq!(resources.cpu.as_ref().unwrap().quota, Some(50_000));
        assert!(spec.mounts.iter().any(|m| m.destination == INIT_PATH));
    }
}
