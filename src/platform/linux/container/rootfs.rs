//! The container's root file system: propagation, the configured mounts,
//! `/dev`, `pivot_root`, masked and read-only paths.
//!
//! Everything here runs in the container's new mount namespace before the
//! process is started. Errors name the step and the path inside the
//! container, as in `mounting proc on /proc: EPERM`.

use std::fs;
use std::io::{self, ErrorKind};
use std::os::unix::fs::{symlink, OpenOptionsExt};
use std::path::{Component, Path, PathBuf};

use nix::mount::{mount, umount2, MntFlags, MsFlags};
use nix::sys::stat::{makedev, mknod, Mode, SFlag};
use nix::sys::statvfs::{statvfs, FsFlags};

use crate::oci::runtime_spec::{Device, Mount, Spec};
use crate::runtime::Error;

fn failed(step: String, err: nix::Error) -> Error {
    Error::Io {
        context: step,
        source: io::Error::from(err),
    }
}

fn io_failed(step: String, err: io::Error) -> Error {
    Error::Io {
        context: step,
        source: err,
    }
}

/// Joins `path` to `root`, resolving symbolic links as if `root` were `/`,
/// so that a link in the container's file system cannot lead a mount
/// outside it.
pub fn secure_join(root: &Path, path: &str) -> PathBuf {
    let mut resolved: Vec<std::ffi::OsString> = Vec::new();
    let mut pending: Vec<std::ffi::OsString> = Path::new(path)
        .components()
        .rev()
        .filter_map(|c| match c {
            Component::Normal(name) => Some(name.to_os_string()),
            Component::ParentDir => Some("..".into()),
            _ => None,
        })
        .collect();
    let mut links_followed = 0;

    while let Some(part) = pending.pop() {
        if part == ".." {
            resolved.pop();
            continue;
        }
        let mut candidate = root.to_path_buf();
        candidate.extend(&resolved);
        candidate.push(&part);
        match fs::read_link(&candidate) {
            Ok(target) if links_followed < 255 => {
                links_followed += 1;
                if target.is_absolute() {
                    resolved.clear();
                }
                for c in target.components().rev() {
                    match c {
                        Component::Normal(name) => pending.push(name.to_os_string()),
                        Component::ParentDir => pending.push("..".into()),
                        _ => {}
                    }
                }
            }
            _ => resolved.push(part),
        }
    }
    let mut joined = root.to_path_buf();
    joined.extend(&resolved);
    joined
}

/// Parsed mount options: flags for mount(2), propagation changes and the
/// file-system-specific data string.
#[derive(Debug)]
struct MountOptions {
    flags: MsFlags,
    propagation: Vec<MsFlags>,
    data: Vec<String>,
    bind: bool,
    recursive: bool,
}

fn parse_options(options: &[String]) -> Result<MountOptions, Error> {
    let mut parsed = MountOptions {
        flags: MsFlags::empty(),
        propagation: Vec::new(),
        data: Vec::new(),
        bind: false,
        recursive: false,
    };
    for option in options {
        let (set, clear) = match option.as_str() {
            "ro" => (MsFlags::MS_RDONLY, MsFlags::empty()),
            "rw" => (MsFlags::empty(), MsFlags::MS_RDONLY),
            "nosuid" => (MsFlags::MS_NOSUID, MsFlags::empty()),
            "suid" => (MsFlags::empty(), MsFlags::MS_NOSUID),
            "nodev" => (MsFlags::MS_NODEV, MsFlags::empty()),
            "dev" => (MsFlags::empty(), MsFlags::MS_NODEV),
            "noexec" => (MsFlags::MS_NOEXEC, MsFlags::empty()),
            "exec" => (MsFlags::empty(), MsFlags::MS_NOEXEC),
            "sync" => (MsFlags::MS_SYNCHRONOUS, MsFlags::empty()),
            "async" => (MsFlags::empty(), MsFlags::MS_SYNCHRONOUS),
            "dirsync" => (MsFlags::MS_DIRSYNC, MsFlags::empty()),
            "remount" => (MsFlags::MS_REMOUNT, MsFlags::empty()),
            "mand" => (MsFlags::MS_MANDLOCK, MsFlags::empty()),
            "nomand" => (MsFlags::empty(), MsFlags::MS_MANDLOCK),
            "atime" => (MsFlags::empty(), MsFlags::MS_NOATIME),
            "noatime" => (MsFlags::MS_NOATIME, MsFlags::empty()),
            "diratime" => (MsFlags::empty(), MsFlags::MS_NODIRATIME),
            "nodiratime" => (MsFlags::MS_NODIRATIME, MsFlags::empty()),
            "relatime" => (MsFlags::MS_RELATIME, MsFlags::empty()),
            "norelatime" => (MsFlags::empty(), MsFlags::MS_RELATIME),
            "strictatime" => (MsFlags::MS_STRICTATIME, MsFlags::empty()),
            "nostrictatime" => (MsFlags::empty(), MsFlags::MS_STRICTATIME),
            "lazytime" => (MsFlags::MS_LAZYTIME, MsFlags::empty()),
            "nolazytime" => (MsFlags::empty(), MsFlags::MS_LAZYTIME),
            "silent" => (MsFlags::MS_SILENT, MsFlags::empty()),
            "loud" => (MsFlags::empty(), MsFlags::MS_SILENT),
            "bind" => {
                parsed.bind = true;
                continue;
            }
            "rbind" => {
                parsed.bind = true;
                parsed.recursive = true;
                continue;
            }
            "private" | "rprivate" | "shared" | "rshared" | "slave" | "rslave" | "unbindable"
            | "runbindable" => {
                parsed.propagation.push(propagation_flags(option)?);
                continue;
            }
            // Copying the image's content into a tmpfs is not implemented;
            // crun's tmpcopyup is accepted and the tmpfs starts empty.
            "tmpcopyup" => continue,
            "idmap" | "ridmap" => {
                return Err(Error::Config(format!(
                    "mount option {option:?} (id-mapped mounts) is not supported; remove it"
                )))
            }
            _ => {
                parsed.data.push(option.clone());
                continue;
            }
        };
        parsed.flags.insert(set);
        parsed.flags.remove(clear);
    }
    Ok(parsed)
}

/// Returns the mount(2) flags of a propagation name such as `rslave`.
pub fn propagation_flags(name: &str) -> Result<MsFlags, Error> {
    let flags = match name {
        "private" => MsFlags::MS_PRIVATE,
        "rprivate" => MsFlags::MS_PRIVATE | MsFlags::MS_REC,
        "shared" => MsFlags::MS_SHARED,
        "rshared" => MsFlags::MS_SHARED | MsFlags::MS_REC,
        "slave" => MsFlags::MS_SLAVE,
        "rslave" => MsFlags::MS_SLAVE | MsFlags::MS_REC,
        "unbindable" => MsFlags::MS_UNBINDABLE,
        "runbindable" => MsFlags::MS_UNBINDABLE | MsFlags::MS_REC,
        other => {
            return Err(Error::Config(format!(
                "unknown propagation {other:?}; use private, shared, slave or unbindable, each \
                 optionally with an r prefix"
            )))
        }
    };
    Ok(flags)
}

/// Returns the flags a bind remount must keep: the kernel refuses to clear
/// nosuid, nodev or noexec of a mount locked by a user namespace.
fn locked_flags(path: &Path) -> MsFlags {
    let Ok(stat) = statvfs(path) else {
        return MsFlags::empty();
    };
    let mut flags = MsFlags::empty();
    let flag = stat.flags();
    if flag.contains(FsFlags::ST_NOSUID) {
        flags |= MsFlags::MS_NOSUID;
    }
    if flag.contains(FsFlags::ST_NODEV) {
        flags |= MsFlags::MS_NODEV;
    }
    if flag.contains(FsFlags::ST_NOEXEC) {
        flags |= MsFlags::MS_NOEXEC;
    }
    flags
}

/// The container's cgroup, as the cgroup mount needs it.
pub struct CgroupMountInfo {
    /// Host directories of the container's cgroup, one per hierarchy.
    pub dirs: Vec<PathBuf>,
}

/// Sets propagation, makes the root file system a mount point and mounts
/// everything the configuration lists, then fills `/dev`.
pub fn prepare(
    spec: &Spec,
    rootfs: &Path,
    bundle: &Path,
    cgroup: &CgroupMountInfo,
) -> Result<(), Error> {
    // Keeps the container's mounts from propagating to the host while host
    // unmounts still reach the container.
    mount(
        None::<&str>,
        "/",
        None::<&str>,
        MsFlags::MS_SLAVE | MsFlags::MS_REC,
        None::<&str>,
    )
    .map_err(|e| failed("making / a recursive slave mount".into(), e))?;

    mount(
        Some(rootfs),
        rootfs,
        None::<&str>,
        MsFlags::MS_BIND | MsFlags::MS_REC,
        None::<&str>,
    )
    .map_err(|e| {
        failed(
            format!("bind mounting the root file system {}", rootfs.display()),
            e,
        )
    })?;

    let mut dev_mounted = false;
    let mut devpts_mounted = false;
    for m in &spec.mounts {
        mount_one(rootfs, bundle, m, cgroup)?;
        let destination = Path::new(&m.destination);
        if destination == Path::new("/dev") {
            dev_mounted = true;
        }
        if destination == Path::new("/dev/pts") && m.kind.as_deref() == Some("devpts") {
            devpts_mounted = true;
        }
    }

    // SAFETY: umask has no memory effects.
    let old_umask = unsafe { libc::umask(0) };
    let result = (|| {
        if dev_mounted {
            create_standard_devices(rootfs, devpts_mounted)?;
        }
        if let Some(linux) = &spec.linux {
            for device in &linux.devices {
                create_device(rootfs, device)?;
            }
        }
        Ok(())
    })();
    // SAFETY: as above.
    unsafe { libc::umask(old_umask) };
    result
}

fn create_mount_point(path: &Path, directory: bool, shown: &str) -> Result<(), Error> {
    if directory {
        return fs::create_dir_all(path)
            .map_err(|e| io_failed(format!("creating mount point {shown}"), e));
    }
    if let Some(parent) = path.parent() {
        fs::create_dir_all(parent)
            .map_err(|e| io_failed(format!("creating the parent of mount point {shown}"), e))?;
    }
    if path.symlink_metadata().is_err() {
        fs::OpenOptions::new()
            .create(true)
            .truncate(false)
            .write(true)
            .mode(0o644)
            .open(path)
            .map_err(|e| io_failed(format!("creating mount point {shown}"), e))?;
    }
    Ok(())
}

fn mount_one(
    rootfs: &Path,
    bundle: &Path,
    m: &Mount,
    cgroup: &CgroupMountInfo,
) -> Result<(), Error> {
    if !m.destination.starts_with('/') {
        return Err(Error::Config(format!(
            "mount destination {:?} is not absolute; give the full path in the container",
            m.destination
        )));
    }
    let destination = secure_join(rootfs, &m.destination);
    let shown = m.destination.as_str();
    let options = parse_options(&m.options)?;
    let kind = m.kind.as_deref().unwrap_or("");

    if options.bind || kind == "bind" {
        return bind_mount(bundle, m, &destination, &options);
    }
    if kind == "cgroup" || kind == "cgroup2" {
        return mount_cgroup(&destination, shown, &options, cgroup);
    }
    if kind.is_empty() {
        return Err(Error::Config(format!(
            "mount on {shown} is missing \"type\" and is no bind mount; set \"type\""
        )));
    }

    create_mount_point(&destination, true, shown)?;
    let source = m.source.clone().unwrap_or_else(|| kind.to_string());
    let data = options.data.join(",");
    let data = (!data.is_empty()).then_some(data);
    let flags = options.flags & !MsFlags::MS_REMOUNT;
    let result = mount(
        Some(source.as_str()),
        &destination,
        Some(kind),
        flags,
        data.as_deref(),
    );
    match result {
        Ok(()) => {}
        Err(nix::Error::EPERM) if kind == "sysfs" => {
            // A user namespace that does not own the network namespace may
            // not mount sysfs; the host's is bound read-only instead.
            mount(
                Some("/sys"),
                &destination,
                None::<&str>,
                MsFlags::MS_BIND | MsFlags::MS_REC,
                None::<&str>,
            )
            .map_err(|e| failed(format!("bind mounting /sys on {shown}"), e))?;
            remount_bind(&destination, flags | MsFlags::MS_RDONLY, shown)?;
        }
        Err(e) => return Err(failed(format!("mounting {kind} on {shown}"), e)),
    }
    apply_propagation(&destination, &options, shown)
}

fn apply_propagation(destination: &Path, options: &MountOptions, shown: &str) -> Result<(), Error> {
    for flags in &options.propagation {
        mount(
            None::<&str>,
            destination,
            None::<&str>,
            *flags,
            None::<&str>,
        )
        .map_err(|e| failed(format!("setting propagation of {shown}"), e))?;
    }
    Ok(())
}

fn remount_bind(destination: &Path, flags: MsFlags, shown: &str) -> Result<(), Error> {
    let flags = flags | locked_flags(destination) | MsFlags::MS_BIND | MsFlags::MS_REMOUNT;
    mount(None::<&str>, destination, None::<&str>, flags, None::<&str>)
        .map_err(|e| failed(format!("remounting {shown} with its options"), e))
}

fn bind_mount(
    bundle: &Path,
    m: &Mount,
    destination: &Path,
    options: &MountOptions,
) -> Result<(), Error> {
    let shown = m.destination.as_str();
    let Some(source) = m.source.as_deref() else {
        return Err(Error::Config(format!(
            "bind mount on {shown} has no source; set \"source\""
        )));
    };
    let source = if Path::new(source).is_absolute() {
        PathBuf::from(source)
    } else {
        bundle.join(source)
    };
    let metadata = fs::metadata(&source).map_err(|e| {
        io_failed(
            format!("bind mount source {} for {shown}", source.display()),
            e,
        )
    })?;
    create_mount_point(destination, metadata.is_dir(), shown)?;

    let mut flags = MsFlags::MS_BIND;
    if options.recursive {
        flags |= MsFlags::MS_REC;
    }
    mount(
        Some(&source),
        destination,
        None::<&str>,
        flags,
        None::<&str>,
    )
    .map_err(|e| failed(format!("bind mounting {} on {shown}", source.display()), e))?;
    let extra = options.flags & !MsFlags::MS_REMOUNT;
    if !extra.is_empty() {
        remount_bind(destination, extra, shown)?;
    }
    apply_propagation(destination, options, shown)
}

/// Mounts the container's own cgroup directories: cgroup2 where the host
/// runs v2 alone, otherwise a tmpfs holding a bind mount of the container's
/// directory in every hierarchy.
fn mount_cgroup(
    destination: &Path,
    shown: &str,
    options: &MountOptions,
    cgroup: &CgroupMountInfo,
) -> Result<(), Error> {
    create_mount_point(destination, true, shown)?;
    let read_only = options.flags.contains(MsFlags::MS_RDONLY);
    let base = options.flags & !(MsFlags::MS_RDONLY | MsFlags::MS_REMOUNT);

    if super::cgroups::is_unified_only() {
        let direct = mount(
            Some("cgroup2"),
            destination,
            Some("cgroup2"),
            options.flags & !MsFlags::MS_REMOUNT,
            None::<&str>,
        );
        if direct.is_ok() {
            return Ok(());
        }
        if let Some(dir) = cgroup.dirs.first() {
            mount(
                Some(dir),
                destination,
                None::<&str>,
                MsFlags::MS_BIND,
                None::<&str>,
            )
            .map_err(|e| failed(format!("bind mounting the cgroup on {shown}"), e))?;
            if read_only {
                remount_bind(destination, base | MsFlags::MS_RDONLY, shown)?;
            }
        }
        return Ok(());
    }

    mount(
        Some("tmpfs"),
        destination,
        Some("tmpfs"),
        base,
        Some("mode=755"),
    )
    .map_err(|e| failed(format!("mounting tmpfs on {shown}"), e))?;
    for dir in &cgroup.dirs {
        let Some(name) = hierarchy_name(dir) else {
            continue;
        };
        let target = destination.join(&name);
        fs::create_dir_all(&target)
            .map_err(|e| io_failed(format!("creating {shown}/{name}"), e))?;
        mount(
            Some(dir),
            &target,
            None::<&str>,
            MsFlags::MS_BIND,
            None::<&str>,
        )
        .map_err(|e| {
            failed(
                format!("bind mounting the {name} cgroup on {shown}/{name}"),
                e,
            )
        })?;
        if read_only {
            remount_bind(
                &target,
                base | MsFlags::MS_RDONLY,
                &format!("{shown}/{name}"),
            )?;
        }
    }
    if read_only {
        mount(
            None::<&str>,
            destination,
            None::<&str>,
            base | MsFlags::MS_RDONLY | MsFlags::MS_REMOUNT,
            Some("mode=755"),
        )
        .map_err(|e| failed(format!("remounting {shown} read-only"), e))?;
    }
    Ok(())
}

/// Returns the hierarchy's directory name below `/sys/fs/cgroup`, such as
/// `memory` for `/sys/fs/cgroup/memory/cblock-runtime/c1`.
fn hierarchy_name(dir: &Path) -> Option<String> {
    let relative = dir.strip_prefix("/sys/fs/cgroup").ok()?;
    relative
        .components()
        .next()
        .map(|c| c.as_os_str().to_string_lossy().into_owned())
}

/// Standard character devices of every container: name, major, minor.
const STANDARD_DEVICES: &[(&str, u64, u64)] = &[
    ("null", 1, 3),
    ("zero", 1, 5),
    ("full", 1, 7),
    ("random", 1, 8),
    ("urandom", 1, 9),
    ("tty", 5, 0),
];

fn create_standard_devices(rootfs: &Path, devpts_mounted: bool) -> Result<(), Error> {
    for (name, major, minor) in STANDARD_DEVICES {
        let device = Device {
            kind: "c".into(),
            path: format!("/dev/{name}"),
            major: *major as i64,
            minor: *minor as i64,
            file_mode: Some(0o666),
            uid: Some(0),
            gid: Some(0),
        };
        create_device(rootfs, &device)?;
    }

    let dev = secure_join(rootfs, "/dev");
    let mut links = vec![
        ("fd", "/proc/self/fd"),
        ("stdin", "/proc/self/fd/0"),
        ("stdout", "/proc/self/fd/1"),
        ("stderr", "/proc/self/fd/2"),
        ("core", "/proc/kcore"),
    ];
    if devpts_mounted {
        links.push(("ptmx", "pts/ptmx"));
    }
    for (name, target) in links {
        let link = dev.join(name);
        if name == "ptmx" {
            let _ = fs::remove_file(&link);
        }
        match symlink(target, &link) {
            Ok(()) => {}
            Err(e) if e.kind() == ErrorKind::AlreadyExists => {}
            Err(e) => return Err(io_failed(format!("creating symbolic link /dev/{name}"), e)),
        }
    }
    Ok(())
}

fn create_device(rootfs: &Path, device: &Device) -> Result<(), Error> {
    let shown = device.path.as_str();
    let path = secure_join(rootfs, &device.path);
    if let Some(parent) = path.parent() {
        fs::create_dir_all(parent)
            .map_err(|e| io_failed(format!("creating the directory of device {shown}"), e))?;
    }
    let kind = match device.kind.as_str() {
        "c" | "u" => SFlag::S_IFCHR,
        "b" => SFlag::S_IFBLK,
        "p" => SFlag::S_IFIFO,
        other => {
            return Err(Error::Config(format!(
                "device {shown} has unknown type {other:?}; use c, u, b or p"
            )))
        }
    };
    let mode = Mode::from_bits_truncate(device.file_mode.unwrap_or(0o666) & 0o7777);
    let number = makedev(device.major as u64, device.minor as u64);
    let _ = fs::remove_file(&path);
    match mknod(&path, kind, mode, number) {
        Ok(()) => {}
        Err(nix::Error::EPERM) if kind != SFlag::S_IFIFO => {
            // Inside a user namespace mknod is not allowed; the host's node
            // is bound instead.
            create_mount_point(&path, false, shown)?;
            mount(
                Some(Path::new(&device.path)),
                &path,
                None::<&str>,
                MsFlags::MS_BIND,
                None::<&str>,
            )
            .map_err(|e| failed(format!("bind mounting device {shown}"), e))?;
            return Ok(());
        }
        Err(e) => return Err(failed(format!("creating device {shown}"), e)),
    }
    let uid = device.uid.unwrap_or(0);
    let gid = device.gid.unwrap_or(0);
    std::os::unix::fs::chown(&path, Some(uid), Some(gid))
        .map_err(|e| io_failed(format!("changing the owner of device {shown}"), e))?;
    Ok(())
}

/// Makes `rootfs` the root: `pivot_root` and detaching the old root, or,
/// when `no_pivot` is set, moving it over `/` and chroot (for a root on a
/// ramdisk, where pivot_root fails).
pub fn enter(rootfs: &Path, no_pivot: bool) -> Result<(), Error> {
    nix::unistd::chdir(rootfs)
        .map_err(|e| failed(format!("changing directory to {}", rootfs.display()), e))?;
    if no_pivot {
        mount(
            Some(rootfs),
            "/",
            None::<&str>,
            MsFlags::MS_MOVE,
            None::<&str>,
        )
        .map_err(|e| failed("moving the root file system onto /".into(), e))?;
        nix::unistd::chroot(".")
            .map_err(|e| failed("chroot into the root file system".into(), e))?;
    } else {
        nix::unistd::pivot_root(".", ".")
            .map_err(|e| failed(format!("pivot_root to {}", rootfs.display()), e))?;
        umount2(".", MntFlags::MNT_DETACH)
            .map_err(|e| failed("detaching the old root".into(), e))?;
    }
    nix::unistd::chdir("/").map_err(|e| failed("changing directory to /".into(), e))
}

/// Applies what must follow the mounts: masked and read-only paths, a
/// read-only root and the root's propagation.
pub fn finish(spec: &Spec) -> Result<(), Error> {
    let linux = spec.linux_or_default();
    for path in &linux.readonly_paths {
        let target = Path::new(path);
        if target.symlink_metadata().is_err() {
            continue;
        }
        mount(
            Some(target),
            target,
            None::<&str>,
            MsFlags::MS_BIND | MsFlags::MS_REC,
            None::<&str>,
        )
        .map_err(|e| failed(format!("bind mounting read-only path {path}"), e))?;
        remount_bind(target, MsFlags::MS_RDONLY | MsFlags::MS_REC, path)?;
    }

    for path in &linux.masked_paths {
        let target = Path::new(path);
        let Ok(metadata) = target.symlink_metadata() else {
            continue;
        };
        let result = if metadata.is_dir() {
            mount(
                Some("tmpfs"),
                target,
                Some("tmpfs"),
                MsFlags::MS_RDONLY,
                Some("size=0"),
            )
        } else {
            mount(
                Some("/dev/null"),
                target,
                None::<&str>,
                MsFlags::MS_BIND,
                None::<&str>,
            )
        };
        result.map_err(|e| failed(format!("masking {path}"), e))?;
    }

    if spec.root.as_ref().is_some_and(|r| r.readonly) {
        remount_bind(Path::new("/"), MsFlags::MS_RDONLY, "/")?;
    }
    if let Some(name) = linux.rootfs_propagation.as_deref() {
        let flags = propagation_flags(name)?;
        mount(None::<&str>, "/", None::<&str>, flags, None::<&str>)
            .map_err(|e| failed(format!("setting propagation {name} on /"), e))?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn secure_join_keeps_links_inside_root() {
        let dir = std::env::temp_dir().join(format!("cblock-join-{}", std::process::id()));
        fs::create_dir_all(dir.join("etc")).unwrap();
        let _ = fs::remove_file(dir.join("escape"));
        symlink("/etc/../../..", dir.join("escape")).unwrap();
        let joined = secure_join(&dir, "/escape/passwd");
        assert_eq!(joined, dir.join("passwd"));
        let joined = secure_join(&dir, "/../../etc");
        assert_eq!(joined, dir.join("etc"));
        fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn options_split_flags_and_data() {
        let options: Vec<String> = ["nosuid", "ro", "mode=755", "size=65536k", "rslave"]
            .iter()
            .map(|s| s.to_string())
            .collect();
        let parsed = parse_options(&options).unwrap();
        assert!(parsed
            .flags
            .contains(MsFlags::MS_NOSUID | MsFlags::MS_RDONLY));
        assert_eq!(parsed.data, vec!["mode=755", "size=65536k"]);
        assert_eq!(parsed.propagation.len(), 1);
    }

    #[test]
    fn idmap_option_rejected() {
        let err = parse_options(&["idmap".to_string()]).unwrap_err();
        assert!(err.to_string().contains("idmap"), "{err}");
    }
}
