//! `cblock launch` on the daemon side: resolve the image, mount its root
//! with a fresh writable layer, write the OCI bundle and start the
//! instance's supervisor, which creates the container on a terminal.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use super::protocol::LaunchRequest;
use super::{Daemon, Error, CONSOLE_LOG_MAX};
use crate::build::rootpath::{self, Missing};
use crate::console::{now_secs, InstanceConfig, PayloadSpec};
use crate::oci::image_spec::ContainerConfig as ImageSettings;
use crate::oci::runtime_spec::Mount;
use crate::runtime::{default_spec, write_config, BindMount, NetworkMode, Settings};
use crate::{log_error, log_info};

/// Returns the runtime's state root for cblockd's containers.
pub fn runtime_root(data_dir: &Path) -> PathBuf {
    data_dir.join("runtime")
}

/// Returns the store mount id of an instance's root file system.
pub fn mount_id(id: &str) -> String {
    format!("instance-{id}")
}

/// Creates the instance of `request` and starts its supervisor; returns
/// the instance id. On failure it removes the mount and directory it made.
pub fn launch(daemon: &Arc<Daemon>, request: &LaunchRequest) -> Result<String, Error> {
    let network = network_mode(request)?;
    for target in request
        .volumes
        .iter()
        .map(|volume| volume.target.as_str())
        .chain(request.tmpfs.iter().map(|entry| tmpfs_parts(entry).0))
    {
        check_mount_target(target)?;
    }
    for entry in &request.tmpfs {
        tmpfs_options(entry)?;
    }
    if let Some(name) = &request.hostname {
        super::protocol::check_id(name).map_err(|_| {
            Error::Invalid(format!(
                "hostname {name:?} is not valid; use letters, digits, '-', '_' and '.'"
            ))
        })?;
        if let Some(other) = daemon.store.find_name(name)? {
            return Err(Error::Invalid(format!(
                "name {name:?} is in use by instance {other}; choose another --hostname"
            )));
        }
    }

    let reference = format!("{}:{}", request.image, request.tag);
    let image = daemon.images.resolve(&reference)?;
    let settings = daemon.images.config(&image)?.config.unwrap_or_default();
    let argv = command(request, &settings, &reference)?;

    let (id, dir) = daemon.store.allocate()?;
    let result = prepare(
        daemon, request, &image.id, &settings, argv, network, &id, &dir,
    )
    .and_then(|config| super::instances::start_instance(&daemon.exe, &dir, &config));
    if let Err(err) = result {
        log_error!(Some(&id), "failed to launch {reference}: {err}");
        discard(daemon, &id);
        return Err(err);
    }
    log_info!(Some(&id), "launched {reference}");
    Ok(id)
}

/// Removes what a failed launch made: the root file system mount and the
/// instance directory.
fn discard(daemon: &Daemon, id: &str) {
    if let Err(err) = daemon.images.remove_mount(&mount_id(id)) {
        log_error!(Some(id), "failed to remove the root file system: {err}");
    }
    if let Err(err) = daemon.store.remove(id) {
        log_error!(Some(id), "failed to remove the instance directory: {err}");
    }
}

/// Files and directories that the runtime mounts or creates in every
/// container. A volume there would hide them, and the runtime's writes
/// there would go to the volume's host directory.
const RUNTIME_PATHS: &[&str] = &[
    "/dev",
    "/dev/pts",
    "/dev/shm",
    "/dev/mqueue",
    "/dev/null",
    "/dev/zero",
    "/dev/full",
    "/dev/random",
    "/dev/urandom",
    "/dev/tty",
    "/dev/console",
    "/dev/ptmx",
    "/dev/fd",
    "/dev/stdin",
    "/dev/stdout",
    "/dev/stderr",
    "/dev/core",
    "/proc",
    "/sys",
];

/// Rejects a volume or tmpfs target that would replace the container's
/// root or a path the runtime builds: `/`, `/dev` and its standard nodes,
/// and anything at or below `/proc` and `/sys`.
fn check_mount_target(target: &str) -> Result<(), Error> {
    // The path as the runtime resolves it: no `.` parts, no repeated or
    // trailing slashes. `..` parts are resolved inside the root later.
    let parts: Vec<&str> = target
        .split('/')
        .filter(|part| !part.is_empty() && *part != ".")
        .collect();
    let normal = format!("/{}", parts.join("/"));
    let reserved = normal == "/"
        || parts.contains(&"..")
        || RUNTIME_PATHS.contains(&normal.as_str())
        || normal.starts_with("/proc/")
        || normal.starts_with("/sys/");
    if reserved {
        return Err(Error::Invalid(format!(
            "mount target {target:?} is the container's root, contains '..', or is a path the \
             runtime builds (/dev and its devices, /proc, /sys); choose another path"
        )));
    }
    Ok(())
}

/// Splits a `--tmpfs` value, `PATH[:OPTIONS]` as in Docker, into the path
/// and the comma-separated options.
fn tmpfs_parts(entry: &str) -> (&str, Option<&str>) {
    match entry.split_once(':') {
        Some((path, options)) => (path, Some(options)),
        None => (entry, None),
    }
}

/// Returns the mount options of a `--tmpfs` value: always nosuid and
/// nodev, mode 1777 unless it gives another, and the options it gives from
/// the ones that cannot weaken the container.
fn tmpfs_options(entry: &str) -> Result<Vec<String>, Error> {
    let mut options = vec!["nosuid".to_string(), "nodev".to_string()];
    let given: Vec<&str> = tmpfs_parts(entry)
        .1
        .map(|text| text.split(',').filter(|o| !o.is_empty()).collect())
        .unwrap_or_default();
    for option in &given {
        let key = option.split('=').next().unwrap_or_default();
        let allowed = matches!(*option, "ro" | "rw" | "exec" | "noexec")
            || (option.contains('=')
                && matches!(key, "size" | "mode" | "nr_inodes" | "uid" | "gid"));
        if !allowed {
            return Err(Error::Invalid(format!(
                "tmpfs option {option:?} in {entry:?} is not supported; use size=, mode=, \
                 nr_inodes=, uid=, gid=, ro, rw, exec or noexec"
            )));
        }
        options.push(option.to_string());
    }
    if !given.iter().any(|o| o.starts_with("mode=")) {
        options.push("mode=1777".into());
    }
    Ok(options)
}

fn network_mode(request: &LaunchRequest) -> Result<NetworkMode, Error> {
    if !request.ports.is_empty() {
        return Err(Error::Invalid(
            "published ports need a NAT network, which this cblockd cannot create yet; drop -P"
                .into(),
        ));
    }
    // TODO: NAT and bridge networks plug in here by name once crate::network
    // can create them; nothing else in the launch path changes.
    match request.network.as_str() {
        "host" => Ok(NetworkMode::Host),
        "none" => Ok(NetworkMode::New),
        other => Err(Error::Invalid(format!(
            "network {other:?} is not available yet; use --host-networking or --network none"
        ))),
    }
}

/// Returns the argv: the entrypoint (the image's, or `--entrypoint`, which
/// also drops the image's CMD) followed by the launch arguments or CMD.
fn command(
    request: &LaunchRequest,
    settings: &ImageSettings,
    reference: &str,
) -> Result<Vec<String>, Error> {
    let (entrypoint, cmd) = match &request.entrypoint {
        Some(entrypoint) => (entrypoint.clone(), Vec::new()),
        None => (
            settings.entrypoint.clone().unwrap_or_default(),
            settings.cmd.clone().unwrap_or_default(),
        ),
    };
    let args = if request.args.is_empty() {
        cmd
    } else {
        request.args.clone()
    };
    let argv: Vec<String> = entrypoint.into_iter().chain(args).collect();
    if argv.is_empty() {
        return Err(Error::Invalid(format!(
            "image {reference} has no ENTRYPOINT or CMD; give a command after `--`"
        )));
    }
    Ok(argv)
}

#[allow(clippy::too_many_arguments)]
fn prepare(
    daemon: &Daemon,
    request: &LaunchRequest,
    image_id: &str,
    settings: &ImageSettings,
    argv: Vec<String>,
    network: NetworkMode,
    id: &str,
    dir: &Path,
) -> Result<InstanceConfig, Error> {
    let rootfs = daemon.images.mount_image(&mount_id(id), Some(image_id))?;

    let user = request.user.clone().or_else(|| settings.user.clone());
    let (uid, gid, additional_gids) = match user.as_deref().filter(|u| !u.is_empty()) {
        Some(spec) => {
            let passwd = read_in_root(&rootfs, "/etc/passwd");
            let group = read_in_root(&rootfs, "/etc/group");
            let owner = crate::build::users::resolve_owner(spec, &passwd, &group)
                .map_err(|err| Error::Invalid(err.to_string()))?;
            let groups = crate::build::users::supplementary_groups(spec, &passwd, &group);
            (owner.uid, owner.gid, groups)
        }
        None => (0, 0, Vec::new()),
    };

    let mut env = settings.env.clone().unwrap_or_default();
    env.extend(request.env.iter().cloned());
    env.push(format!("TERM={}", request.term));

    let runtime_settings = Settings {
        args: argv,
        env,
        cwd: request
            .workdir
            .clone()
            .or_else(|| settings.working_dir.clone())
            .filter(|dir| !dir.is_empty())
            .unwrap_or_else(|| "/".into()),
        uid,
        gid,
        additional_gids,
        hostname: Some(request.hostname.clone().unwrap_or_else(|| id.to_string())),
        terminal: true,
        rootfs: rootfs.display().to_string(),
        readonly_rootfs: request.read_only,
        mounts: request
            .volumes
            .iter()
            .map(|volume| BindMount {
                source: PathBuf::from(&volume.source),
                destination: volume.target.clone(),
                readonly: volume.read_only,
            })
            .collect(),
        memory_limit: request.memory_bytes.map(|bytes| bytes as i64),
        pids_limit: request.pids_limit.map(|limit| limit as i64),
        cpus: request.cpu_millis.map(|millis| millis as f64 / 1000.0),
        network,
        init: daemon.init.clone(),
    };
    let mut spec = default_spec(&runtime_settings);
    for entry in &request.tmpfs {
        spec.mounts.push(Mount {
            destination: tmpfs_parts(entry).0.to_string(),
            kind: Some("tmpfs".into()),
            source: Some("tmpfs".into()),
            options: tmpfs_options(entry)?,
            ..Default::default()
        });
    }

    let bundle = dir.join("bundle");
    std::fs::create_dir(&bundle).map_err(|source| Error::Io {
        context: format!("create {}", bundle.display()),
        source,
    })?;
    write_config(&bundle, &spec)?;

    let stop_signal = settings
        .stop_signal
        .as_deref()
        .map(crate::runtime::parse_signal)
        .transpose()?
        .unwrap_or(libc::SIGTERM);
    Ok(InstanceConfig {
        id: id.to_string(),
        name: request.hostname.clone(),
        image: format!("{}:{}", request.image, request.tag),
        kind: "assembled".into(),
        created: now_secs(),
        payload: PayloadSpec::Container {
            bundle,
            runtime_root: runtime_root(&daemon.data_dir),
            container_id: format!("cblock-{id}"),
        },
        scrollback_bytes: daemon.tty_buffer,
        log_max_bytes: CONSOLE_LOG_MAX,
        remove: request.remove,
        stop_signal,
        window: request.window,
        start: !request.attach,
    })
}

/// Reads a file of the image, resolved inside its root; a missing or
/// unreadable file reads as empty.
fn read_in_root(root: &Path, path: &str) -> String {
    rootpath::resolve(root, path, Missing::Fail)
        .ok()
        .and_then(|relative| std::fs::read_to_string(root.join(relative)).ok())
        .unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn request(args: &[&str], entrypoint: Option<&[&str]>) -> LaunchRequest {
        LaunchRequest {
            args: args.iter().map(|s| s.to_string()).collect(),
            entrypoint: entrypoint.map(|e| e.iter().map(|s| s.to_string()).collect()),
            ..Default::default()
        }
    }

    fn image(entrypoint: &[&str], cmd: &[&str]) -> ImageSettings {
        ImageSettings {
            entrypoint: Some(entrypoint.iter().map(|s| s.to_string()).collect()),
            cmd: Some(cmd.iter().map(|s| s.to_string()).collect()),
            ..Default::default()
        }
    }

    #[test]
    fn tmpfs_values_split() {
        assert_eq!(
            tmpfs_options("/run").unwrap(),
            ["nosuid", "nodev", "mode=1777"]
        );
        assert_eq!(
            tmpfs_options("/run:size=1m,noexec,mode=0700").unwrap(),
            ["nosuid", "nodev", "size=1m", "noexec", "mode=0700"]
        );
        assert_eq!(tmpfs_parts("/run:size=1m").0, "/run");
        for bad in ["/run:suid", "/run:dev", "/run:size", "/run:uid=0,remount"] {
            let err = tmpfs_options(bad).unwrap_err().to_string();
            assert!(err.contains("is not supported"), "{bad}: {err}");
        }
    }

    #[test]
    fn mount_targets_checked() {
        for bad in [
            "/",
            "//",
            "/.",
            "/dev",
            "/dev/",
            "/./dev",
            "/dev/null",
            "/dev/pts",
            "/proc",
            "/proc/sys",
            "/sys/fs/cgroup",
            "/data/../dev",
        ] {
            assert!(check_mount_target(bad).is_err(), "{bad} was accepted");
        }
        for good in ["/data", "/dev/snd", "/devices", "/srv/proc", "/system"] {
            assert!(check_mount_target(good).is_ok(), "{good} was rejected");
        }
    }

    #[test]
    fn command_from_image_and_arguments() {
        let settings = image(&["/init"], &["serve"]);
        assert_eq!(
            command(&request(&[], None), &settings, "x").unwrap(),
            ["/init", "serve"]
        );
        assert_eq!(
            command(&request(&["debug"], None), &settings, "x").unwrap(),
            ["/init", "debug"]
        );
        assert_eq!(
            command(&request(&[], Some(&["/bin/sh"])), &settings, "x").unwrap(),
            ["/bin/sh"]
        );
        assert_eq!(
            command(&request(&["-c", "id"], Some(&["/bin/sh"])), &settings, "x").unwrap(),
            ["/bin/sh", "-c", "id"]
        );
        let empty = image(&[], &[]);
        assert!(command(&request(&[], None), &empty, "x").is_err());
    }
}
