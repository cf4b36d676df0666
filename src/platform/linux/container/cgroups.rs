//! cgroups v1 and v2: creating a container's cgroup, writing its limits,
//! placing processes in it and removing it again.
//!
//! Three layouts occur: pure v2 (`/sys/fs/cgroup` is cgroup2), pure v1, and
//! the hybrid one (v1 controllers plus a cgroup2 mount, usually at
//! `/sys/fs/cgroup/unified`, that may hold some controllers such as
//! hugetlb). The layout is read from `/proc/self/mountinfo`.

use std::fs;
use std::io::ErrorKind;
use std::path::{Path, PathBuf};
use std::thread;
use std::time::Duration;

use serde::{Deserialize, Serialize};

use crate::oci::runtime_spec::{BlockIo, Cpu, DeviceRule, Memory, Resources};
use crate::runtime::Error;

/// Parent of the cgroups of containers whose configuration names none.
pub const DEFAULT_PARENT: &str = "/cblock-runtime";

/// One mounted cgroup hierarchy.
#[derive(Debug, Clone)]
struct Hierarchy {
    mount: PathBuf,
    /// Controllers bound to it (`memory`, `name=systemd`, ...); for cgroup2,
    /// the contents of `cgroup.controllers` at its root.
    controllers: Vec<String>,
    unified: bool,
}

/// A container's cgroup: one directory per hierarchy it was placed in.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct Cgroup {
    pub dirs: Vec<PathBuf>,
}

fn io_error(context: String, source: std::io::Error) -> Error {
    Error::Io { context, source }
}

/// Returns the mounted hierarchies, v1 ones first.
fn hierarchies() -> Result<Vec<Hierarchy>, Error> {
    let text = fs::read_to_string("/proc/self/mountinfo")
        .map_err(|e| io_error("reading /proc/self/mountinfo".into(), e))?;
    let mut found = Vec::new();
    for line in text.lines() {
        let Some((left, right)) = line.split_once(" - ") else {
            continue;
        };
        let fields: Vec<&str> = left.split(' ').collect();
        let rest: Vec<&str> = right.split(' ').collect();
        if fields.len() < 5 || rest.len() < 3 {
            continue;
        }
        let mount = PathBuf::from(fields[4]);
        match rest[0] {
            "cgroup" => {
                let controllers = rest[2]
                    .split(',')
                    .filter(|o| !matches!(*o, "rw" | "ro") && !o.contains("clone_children"))
                    .filter(|o| !o.starts_with("release_agent") && *o != "noprefix")
                    .filter(|o| !o.starts_with("xattr") && *o != "cpuset_v2_mode")
                    .map(str::to_string)
                    .collect();
                found.push(Hierarchy {
                    mount,
                    controllers,
                    unified: false,
                });
            }
            "cgroup2" => {
                let controllers = fs::read_to_string(mount.join("cgroup.controllers"))
                    .unwrap_or_default()
                    .split_whitespace()
                    .map(str::to_string)
                    .collect();
                found.push(Hierarchy {
                    mount,
                    controllers,
                    unified: true,
                });
            }
            _ => {}
        }
    }
    // A hierarchy may be mounted twice; keep the first mount of each.
    let mut seen = Vec::<Vec<String>>::new();
    found.retain(|h| {
        let key = if h.unified {
            vec!["cgroup2".to_string()]
        } else {
            h.controllers.clone()
        };
        if seen.contains(&key) {
            false
        } else {
            seen.push(key);
            true
        }
    });
    found.sort_by_key(|h| h.unified);
    Ok(found)
}

/// Returns whether a v1 devices hierarchy is mounted, which is how this
/// runtime enforces device rules.
pub fn enforces_device_rules() -> bool {
    hierarchies().is_ok_and(|found| {
        found
            .iter()
            .any(|h| !h.unified && h.controllers.iter().any(|c| c == "devices"))
    })
}

/// Returns whether the host runs cgroup v2 alone.
pub fn is_unified_only() -> bool {
    hierarchies()
        .map(|hs| hs.iter().all(|h| h.unified) && !hs.is_empty())
        .unwrap_or(false)
}

/// Checks a configured `cgroupsPath` and returns it as an absolute path
/// below each hierarchy's root.
pub fn resolve_path(configured: Option<&str>, id: &str) -> Result<String, Error> {
    let path = match configured {
        None | Some("") => format!("{DEFAULT_PARENT}/{id}"),
        Some(p) if p.contains(':') => {
            return Err(Error::Config(format!(
                "linux.cgroupsPath {p:?} is in the systemd slice:prefix:name form, which needs \
                 the systemd cgroup driver; this runtime manages cgroupfs paths only, so set an \
                 absolute path (with podman: --cgroup-manager cgroupfs)"
            )))
        }
        Some(p) if p.starts_with('/') => p.to_string(),
        Some(p) => format!("/{p}"),
    };
    if path.split('/').any(|c| c == "..") {
        return Err(Error::Config(format!(
            "linux.cgroupsPath {path:?} contains '..'; give a path below the cgroup root"
        )));
    }
    Ok(path)
}

fn write_file(dir: &Path, name: &str, value: &str) -> Result<(), Error> {
    let path = dir.join(name);
    fs::write(&path, value).map_err(|e| {
        let hint = if e.kind() == ErrorKind::NotFound {
            "; the kernel does not provide this cgroup file, so remove the limit"
        } else {
            ""
        };
        io_error(format!("writing {value:?} to {}{hint}", path.display()), e)
    })
}

/// Creates `dir` and its missing parents, copying `cpuset.cpus` and
/// `cpuset.mems` from the parent on v1, where a new cpuset cgroup starts
/// with none and cannot take processes.
fn create_dir(dir: &Path, cpuset_v1: bool) -> Result<(), Error> {
    if dir.is_dir() {
        return Ok(());
    }
    if let Some(parent) = dir.parent() {
        create_dir(parent, cpuset_v1)?;
    }
    match fs::create_dir(dir) {
        Ok(()) => {}
        Err(e) if e.kind() == ErrorKind::AlreadyExists => {}
        Err(e) => return Err(io_error(format!("creating cgroup {}", dir.display()), e)),
    }
    if cpuset_v1 {
        if let Some(parent) = dir.parent() {
            for name in ["cpuset.cpus", "cpuset.mems"] {
                let current = fs::read_to_string(dir.join(name)).unwrap_or_default();
                if current.trim().is_empty() {
                    let inherited = fs::read_to_string(parent.join(name)).unwrap_or_default();
                    write_file(dir, name, inherited.trim())?;
                }
            }
        }
    }
    Ok(())
}

/// Enables the controllers the container needs in every ancestor of `dir`
/// on cgroup v2, where a controller must be delegated level by level.
fn enable_controllers(mount: &Path, dir: &Path) -> Result<(), Error> {
    let wanted = ["cpu", "cpuset", "io", "memory", "pids", "hugetlb"];
    let relative = dir.strip_prefix(mount).unwrap_or(Path::new(""));
    let mut level = mount.to_path_buf();
    for component in relative.components() {
        let available = fs::read_to_string(level.join("cgroup.controllers")).unwrap_or_default();
        let enable: Vec<String> = available
            .split_whitespace()
            .filter(|c| wanted.contains(c))
            .map(|c| format!("+{c}"))
            .collect();
        if !enable.is_empty() {
            // Failing here (a process sits in an inner cgroup) is reported
            // later by the limit that cannot be written.
            let _ = fs::write(level.join("cgroup.subtree_control"), enable.join(" "));
        }
        level.push(component);
        if !level.is_dir() {
            fs::create_dir(&level)
                .map_err(|e| io_error(format!("creating cgroup {}", level.display()), e))?;
        }
    }
    Ok(())
}

/// A container's cgroup during its creation, which has two steps. `reserve`
/// checks every hierarchy and creates the cgroup2 directory, so that the
/// setup process can start in it. `complete` creates the rest and writes
/// the limits while that process starts.
pub struct Creation {
    hierarchies: Vec<Hierarchy>,
    relative: PathBuf,
    unified_only: bool,
    /// The directories made so far, which `destroy` removes on failure.
    pub cgroup: Cgroup,
}

/// Checks that the container's cgroup at `path` contains no processes in any
/// hierarchy and creates its cgroup2 directory, if there is a cgroup2
/// hierarchy. On failure nothing that this call created is left.
pub fn reserve(path: &str) -> Result<Creation, Error> {
    let hierarchies = hierarchies()?;
    if hierarchies.is_empty() {
        return Err(Error::Config(
            "no cgroup file system is mounted; mount cgroup2 on /sys/fs/cgroup".into(),
        ));
    }
    let mut creation = Creation {
        unified_only: hierarchies.iter().all(|h| h.unified),
        relative: PathBuf::from(path.trim_start_matches('/')),
        hierarchies,
        cgroup: Cgroup::default(),
    };
    for hierarchy in &creation.hierarchies {
        let dir = hierarchy.mount.join(&creation.relative);
        // Deleting the container kills what is left in its cgroup, so it
        // must not share one with other processes.
        let in_use = fs::read_to_string(dir.join("cgroup.procs"))
            .is_ok_and(|procs| !procs.trim().is_empty());
        if in_use {
            return Err(Error::Config(format!(
                "cgroup {} already holds processes; give the container its own \
                 linux.cgroupsPath",
                dir.display()
            )));
        }
    }
    if let Some(hierarchy) = creation.hierarchies.iter().find(|h| h.unified) {
        let dir = hierarchy.mount.join(&creation.relative);
        let created = if creation.unified_only {
            enable_controllers(&hierarchy.mount, &dir)
        } else {
            // Hybrid layout: the cgroup2 mount only tracks processes here.
            // Enabling a controller in it would keep that controller from
            // being mounted as a v1 hierarchy.
            fs::create_dir_all(&dir)
                .map_err(|e| io_error(format!("creating cgroup {}", dir.display()), e))
        };
        match created {
            Ok(()) => creation.cgroup.dirs.push(dir),
            Err(err) => {
                let _ = destroy(&Cgroup { dirs: vec![dir] });
                return Err(err);
            }
        }
    }
    Ok(creation)
}

impl Creation {
    /// Creates the v1 cgroups and writes the limits of `resources` in
    /// every hierarchy. The v1 devices cgroup allows `device_rules` (the
    /// configured rules, then one per configured device node) on top of
    /// the standard devices and denies the rest. On failure the caller
    /// destroys `self.cgroup`.
    pub fn complete(
        &mut self,
        resources: Option<&Resources>,
        device_rules: &[DeviceRule],
    ) -> Result<(), Error> {
        for (index, hierarchy) in self.hierarchies.iter().enumerate() {
            let dir = hierarchy.mount.join(&self.relative);
            if !hierarchy.unified {
                let cpuset = hierarchy.controllers.iter().any(|c| c == "cpuset");
                create_dir(&dir, cpuset)?;
                // In the order of the hierarchies, v1 ones first.
                self.cgroup.dirs.insert(index, dir.clone());
            }
            if let Some(resources) = resources {
                if hierarchy.unified {
                    apply_v2(
                        &hierarchy.mount,
                        &dir,
                        &hierarchy.controllers,
                        resources,
                        self.unified_only,
                    )?;
                } else {
                    apply_v1(&dir, &hierarchy.controllers, resources)?;
                }
            }
            // The device rules apply with or without linux.resources.
            if !hierarchy.unified && hierarchy.controllers.iter().any(|c| c == "devices") {
                apply_devices_v1(&dir, device_rules)?;
            }
        }
        if let Some(resources) = resources {
            check_all_applied(&self.hierarchies, resources, self.unified_only)?;
        }
        Ok(())
    }
}

/// The way a new process enters its cgroups without the cost of writing
/// its pid to `cgroup.procs`.
///
/// That write takes the kernel's global threadgroup lock for writing, and
/// taking it waits for an RCU grace period: 5 to 18 ms on a quiet 2-core
/// machine (Linux 6.18), more than the rest of a container start. Two
/// paths avoid the lock. A single-threaded process that writes `0` to a v1
/// hierarchy's `tasks` file moves only itself and skips it. For cgroup2,
/// `clone3` with `CLONE_INTO_CGROUP` starts the process in the cgroup.
#[derive(Debug, Default)]
pub struct Placement {
    /// The cgroup2 directory to start the process in, if any.
    pub unified: Option<PathBuf>,
    /// The `tasks` files of the v1 hierarchies, where the process writes
    /// `0` to move itself.
    pub v1_tasks: Vec<PathBuf>,
}

impl Cgroup {
    /// Sorts the cgroup's directories by hierarchy version.
    pub fn placement(&self) -> Result<Placement, Error> {
        let mut placement = Placement::default();
        for dir in &self.dirs {
            let stat = nix::sys::statfs::statfs(dir).map_err(|e| {
                io_error(
                    format!("reading the file system of cgroup {}", dir.display()),
                    e.into(),
                )
            })?;
            if stat.filesystem_type() == nix::sys::statfs::CGROUP2_SUPER_MAGIC {
                placement.unified = Some(dir.clone());
            } else {
                placement.v1_tasks.push(dir.join("tasks"));
            }
        }
        Ok(placement)
    }
}

/// Moves the calling process into the v1 cgroups whose `tasks` files are
/// given. The caller must be single-threaded, because only the calling
/// thread moves.
pub fn enter_v1(tasks_files: &[PathBuf]) -> Result<(), Error> {
    for file in tasks_files {
        fs::write(file, "0").map_err(|e| {
            io_error(
                format!("moving the setup process into cgroup {}", file.display()),
                e,
            )
        })?;
    }
    Ok(())
}

/// Places `pid` in cgroup2 directory `dir` by writing `cgroup.procs`, the
/// slow path for when `clone3` cannot start a process there.
pub fn place_in_unified(dir: &Path, pid: i32) -> Result<(), Error> {
    write_file(dir, "cgroup.procs", &pid.to_string())
}

/// Rejects limits for which no hierarchy has the controller, instead of
/// silently running the container without them.
fn check_all_applied(
    hierarchies: &[Hierarchy],
    resources: &Resources,
    unified_only: bool,
) -> Result<(), Error> {
    let has = |name: &str| {
        hierarchies
            .iter()
            .any(|h| h.controllers.iter().any(|c| c == name))
    };
    let mut missing = Vec::new();
    if resources.memory.is_some() && !has("memory") {
        missing.push("memory");
    }
    if resources.pids.is_some() && !has("pids") {
        missing.push("pids");
    }
    if !resources.hugepage_limits.is_empty() && !has("hugetlb") {
        missing.push("hugetlb");
    }
    if !resources.unified.is_empty() && !unified_only {
        return Err(Error::Config(
            "linux.resources.unified needs cgroup v2 alone, but this host mounts v1 \
             controllers; remove linux.resources.unified"
                .into(),
        ));
    }
    if missing.is_empty() {
        Ok(())
    } else {
        Err(Error::Config(format!(
            "the cgroup controllers {} are not available on this host; remove those limits \
             from linux.resources",
            missing.join(", ")
        )))
    }
}

fn limit_or_max(value: i64) -> String {
    if value < 0 {
        "max".to_string()
    } else {
        value.to_string()
    }
}

fn apply_v1(dir: &Path, controllers: &[String], resources: &Resources) -> Result<(), Error> {
    for controller in controllers {
        match controller.as_str() {
            "memory" => {
                if let Some(memory) = &resources.memory {
                    apply_memory_v1(dir, memory)?;
                }
            }
            "pids" => {
                if let Some(pids) = &resources.pids {
                    let value = if pids.limit > 0 {
                        pids.limit.to_string()
                    } else {
                        "max".to_string()
                    };
                    write_file(dir, "pids.max", &value)?;
                }
            }
            "cpu" => {
                if let Some(cpu) = &resources.cpu {
                    apply_cpu_v1(dir, cpu)?;
                }
            }
            "cpuset" => {
                if let Some(cpu) = &resources.cpu {
                    if let Some(cpus) = cpu.cpus.as_deref().filter(|c| !c.is_empty()) {
                        write_file(dir, "cpuset.cpus", cpus)?;
                    }
                    if let Some(mems) = cpu.mems.as_deref().filter(|m| !m.is_empty()) {
                        write_file(dir, "cpuset.mems", mems)?;
                    }
                }
            }
            "blkio" => {
                if let Some(block_io) = &resources.block_io {
                    apply_blkio_v1(dir, block_io)?;
                }
            }
            "hugetlb" => {
                for limit in &resources.hugepage_limits {
                    let name = format!("hugetlb.{}.limit_in_bytes", limit.page_size);
                    write_file(dir, &name, &limit.limit.to_string())?;
                }
            }
            _ => {}
        }
    }
    Ok(())
}

fn apply_memory_v1(dir: &Path, memory: &Memory) -> Result<(), Error> {
    if let Some(limit) = memory.limit {
        write_file(dir, "memory.limit_in_bytes", &limit.to_string())?;
    }
    if let Some(swap) = memory.swap {
        if dir.join("memory.memsw.limit_in_bytes").exists() {
            write_file(dir, "memory.memsw.limit_in_bytes", &swap.to_string())?;
        } else if swap > 0 && Some(swap) != memory.limit {
            return Err(Error::Config(
                "linux.resources.memory.swap is set, but the kernel does not account swap \
                 (no memory.memsw.limit_in_bytes); remove the swap limit"
                    .into(),
            ));
        }
    }
    if let Some(reservation) = memory.reservation {
        write_file(dir, "memory.soft_limit_in_bytes", &reservation.to_string())?;
    }
    if let Some(swappiness) = memory.swappiness {
        if swappiness > 100 {
            return Err(Error::Config(format!(
                "linux.resources.memory.swappiness {swappiness} is out of range; use 0 to 100"
            )));
        }
        write_file(dir, "memory.swappiness", &swappiness.to_string())?;
    }
    if memory.disable_oom_killer == Some(true) {
        write_file(dir, "memory.oom_control", "1")?;
    }
    if let Some(kernel_tcp) = memory.kernel_tcp {
        write_file(
            dir,
            "memory.kmem.tcp.limit_in_bytes",
            &kernel_tcp.to_string(),
        )?;
    }
    // NOTE: memory.kernel is accepted and ignored, as kernels since 5.16
    // have no kernel memory limit of their own.
    Ok(())
}

fn apply_cpu_v1(dir: &Path, cpu: &Cpu) -> Result<(), Error> {
    if let Some(shares) = cpu.shares.filter(|s| *s > 0) {
        write_file(dir, "cpu.shares", &shares.to_string())?;
    }
    if let Some(period) = cpu.period.filter(|p| *p > 0) {
        write_file(dir, "cpu.cfs_period_us", &period.to_string())?;
    }
    if let Some(quota) = cpu.quota.filter(|q| *q != 0) {
        write_file(dir, "cpu.cfs_quota_us", &quota.to_string())?;
    }
    if let Some(period) = cpu.realtime_period.filter(|p| *p > 0) {
        write_file(dir, "cpu.rt_period_us", &period.to_string())?;
    }
    if let Some(runtime) = cpu.realtime_runtime.filter(|r| *r != 0) {
        write_file(dir, "cpu.rt_runtime_us", &runtime.to_string())?;
    }
    if let Some(idle) = cpu.idle.filter(|i| *i != 0) {
        write_file(dir, "cpu.idle", &idle.to_string())?;
    }
    Ok(())
}

fn apply_blkio_v1(dir: &Path, block_io: &BlockIo) -> Result<(), Error> {
    if let Some(weight) = block_io.weight {
        let name = if dir.join("blkio.weight").exists() {
            "blkio.weight"
        } else {
            "blkio.bfq.weight"
        };
        write_file(dir, name, &weight.to_string())?;
    }
    if let Some(weight) = block_io.leaf_weight {
        write_file(dir, "blkio.leaf_weight", &weight.to_string())?;
    }
    for device in &block_io.weight_device {
        if let Some(weight) = device.weight {
            let line = format!("{}:{} {weight}", device.major, device.minor);
            write_file(dir, "blkio.weight_device", &line)?;
        }
    }
    let throttles = [
        (
            "blkio.throttle.read_bps_device",
            &block_io.throttle_read_bps_device,
        ),
        (
            "blkio.throttle.write_bps_device",
            &block_io.throttle_write_bps_device,
        ),
        (
            "blkio.throttle.read_iops_device",
            &block_io.throttle_read_iops_device,
        ),
        (
            "blkio.throttle.write_iops_device",
            &block_io.throttle_write_iops_device,
        ),
    ];
    for (name, devices) in throttles {
        for device in devices {
            let line = format!("{}:{} {}", device.major, device.minor, device.rate);
            write_file(dir, name, &line)?;
        }
    }
    Ok(())
}

/// Formats a device rule as `devices.allow` and `devices.deny` take it.
fn device_rule_line(rule: &DeviceRule) -> String {
    let kind = rule.kind.as_deref().unwrap_or("a");
    let number = |n: Option<i64>| match n {
        Some(n) if n >= 0 => n.to_string(),
        _ => "*".to_string(),
    };
    let access = rule.access.as_deref().unwrap_or("rwm");
    if kind == "a" && rule.major.is_none() && rule.minor.is_none() {
        return format!("a *:* {access}");
    }
    format!(
        "{kind} {}:{} {access}",
        number(rule.major),
        number(rule.minor)
    )
}

/// Devices every container may use whatever its rules are, because the
/// runtime creates them in its /dev: null, zero, full, random, urandom,
/// tty, console, ptmx and the PTYs of its devpts instance. Creating any
/// node (`m`) is allowed too, as in runc, because the runtime makes the
/// configured devices after joining the cgroup. Using them still needs a
/// rule.
const STANDARD_DEVICE_RULES: &[&str] = &[
    "c *:* m",
    "b *:* m",
    "c 1:3 rwm",
    "c 1:5 rwm",
    "c 1:7 rwm",
    "c 1:8 rwm",
    "c 1:9 rwm",
    "c 5:0 rwm",
    "c 5:1 rwm",
    "c 5:2 rwm",
    "c 136:* rwm",
];

/// Writes the device rules of a v1 devices cgroup: every device denied,
/// then the configured rules in order, then the standard devices. A new
/// cgroup inherits its parent's rules, which on most hosts allow every
/// device, so without the first rule a container with CAP_MKNOD could make
/// and open the host's disks.
fn apply_devices_v1(dir: &Path, rules: &[DeviceRule]) -> Result<(), Error> {
    write_file(dir, "devices.deny", "a")?;
    for rule in rules {
        let file = if rule.allow {
            "devices.allow"
        } else {
            "devices.deny"
        };
        write_file(dir, file, &device_rule_line(rule))?;
    }
    for line in STANDARD_DEVICE_RULES {
        write_file(dir, "devices.allow", line)?;
    }
    Ok(())
}

fn apply_v2(
    mount: &Path,
    dir: &Path,
    controllers: &[String],
    resources: &Resources,
    unified_only: bool,
) -> Result<(), Error> {
    let has = |name: &str| controllers.iter().any(|c| c == name);
    if !unified_only {
        // Hybrid layout: the v1 hierarchies carry every limit except those
        // whose controller lives only here, which needs the controller
        // enabled for this cgroup.
        if has("hugetlb") && !resources.hugepage_limits.is_empty() {
            enable_controllers(mount, dir)?;
            for limit in &resources.hugepage_limits {
                let name = format!("hugetlb.{}.max", limit.page_size);
                write_file(dir, &name, &limit.limit.to_string())?;
            }
        }
        return Ok(());
    }

    if let Some(memory) = &resources.memory {
        if let Some(limit) = memory.limit {
            write_file(dir, "memory.max", &limit_or_max(limit))?;
        }
        if let Some(reservation) = memory.reservation {
            write_file(dir, "memory.low", &limit_or_max(reservation))?;
        }
        if let Some(swap) = memory.swap {
            // The specification counts memory plus swap; cgroup v2 counts
            // swap alone.
            let value = match memory.limit {
                Some(limit) if swap >= 0 && limit >= 0 => (swap - limit).max(0).to_string(),
                _ => limit_or_max(swap),
            };
            write_file(dir, "memory.swap.max", &value)?;
        }
        if memory.disable_oom_killer == Some(true) {
            return Err(Error::Config(
                "linux.resources.memory.disableOOMKiller cannot be honoured on cgroup v2; \
                 remove it"
                    .into(),
            ));
        }
    }
    if let Some(pids) = &resources.pids {
        let value = if pids.limit > 0 {
            pids.limit.to_string()
        } else {
            "max".into()
        };
        write_file(dir, "pids.max", &value)?;
    }
    if let Some(cpu) = &resources.cpu {
        if let Some(shares) = cpu.shares.filter(|s| *s > 0) {
            // Maps the v1 range 2..262144 onto the v2 range 1..10000.
            let weight = 1 + ((shares.clamp(2, 262_144) - 2) * 9999) / 262_142;
            write_file(dir, "cpu.weight", &weight.to_string())?;
        }
        if cpu.quota.is_some() || cpu.period.is_some() {
            let quota = match cpu.quota {
                Some(q) if q > 0 => q.to_string(),
                _ => "max".to_string(),
            };
            let period = cpu.period.filter(|p| *p > 0).unwrap_or(100_000);
            write_file(dir, "cpu.max", &format!("{quota} {period}"))?;
        }
        if let Some(idle) = cpu.idle.filter(|i| *i != 0) {
            write_file(dir, "cpu.idle", &idle.to_string())?;
        }
        if let Some(cpus) = cpu.cpus.as_deref().filter(|c| !c.is_empty()) {
            write_file(dir, "cpuset.cpus", cpus)?;
        }
        if let Some(mems) = cpu.mems.as_deref().filter(|m| !m.is_empty()) {
            write_file(dir, "cpuset.mems", mems)?;
        }
    }
    if let Some(block_io) = &resources.block_io {
        if let Some(weight) = block_io.weight {
            write_file(dir, "io.weight", &format!("default {weight}"))?;
        }
        let throttles = [
            ("rbps", &block_io.throttle_read_bps_device),
            ("wbps", &block_io.throttle_write_bps_device),
            ("riops", &block_io.throttle_read_iops_device),
            ("wiops", &block_io.throttle_write_iops_device),
        ];
        for (key, devices) in throttles {
            for device in devices {
                let line = format!("{}:{} {key}={}", device.major, device.minor, device.rate);
                write_file(dir, "io.max", &line)?;
            }
        }
    }
    for limit in &resources.hugepage_limits {
        let name = format!("hugetlb.{}.max", limit.page_size);
        write_file(dir, &name, &limit.limit.to_string())?;
    }
    for (key, value) in &resources.unified {
        if key.contains('/') {
            return Err(Error::Config(format!(
                "linux.resources.unified key {key:?} is not a cgroup file name"
            )));
        }
        write_file(dir, key, value)?;
    }
    // TODO: device rules on cgroup v2 need an eBPF program attached to the
    // cgroup. Until that exists, the container process loses CAP_MKNOD on
    // hosts without a v1 devices hierarchy (see `enforces_device_rules`),
    // so it can open only the nodes the runtime made in its /dev.
    Ok(())
}

/// Returns the cgroups that `target` is in, one directory per hierarchy,
/// for `exec` to join.
pub fn of_process(target: i32) -> Result<Cgroup, Error> {
    let text = fs::read_to_string(format!("/proc/{target}/cgroup"))
        .map_err(|e| io_error(format!("reading /proc/{target}/cgroup"), e))?;
    let mut cgroup = Cgroup::default();
    for hierarchy in hierarchies()? {
        for line in text.lines() {
            let mut parts = line.splitn(3, ':');
            let (Some(_), Some(names), Some(path)) = (parts.next(), parts.next(), parts.next())
            else {
                continue;
            };
            let matches = if hierarchy.unified {
                names.is_empty()
            } else {
                let names: Vec<&str> = names.split(',').collect();
                !names.is_empty()
                    && hierarchy
                        .controllers
                        .iter()
                        .all(|c| names.contains(&c.as_str()))
            };
            if matches {
                cgroup
                    .dirs
                    .push(hierarchy.mount.join(path.trim_start_matches('/')));
            }
        }
    }
    Ok(cgroup)
}

/// Returns the processes in the container's cgroup.
pub fn pids(cgroup: &Cgroup) -> Vec<i32> {
    let mut pids: Vec<i32> = Vec::new();
    for dir in &cgroup.dirs {
        if let Ok(text) = fs::read_to_string(dir.join("cgroup.procs")) {
            for pid in text.lines().filter_map(|l| l.trim().parse().ok()) {
                if !pids.contains(&pid) {
                    pids.push(pid);
                }
            }
        }
    }
    pids
}

/// Kills every process left in the cgroup and removes its directories,
/// trying each directory even when another fails.
pub fn destroy(cgroup: &Cgroup) -> Result<(), Error> {
    // A cgroup without processes, the usual case after the container's
    // exit, goes with one rmdir per hierarchy. The kernel rejects the rmdir
    // of a cgroup that still has processes (EBUSY), so those are emptied
    // below.
    let mut left = Vec::new();
    for dir in &cgroup.dirs {
        match fs::remove_dir(dir) {
            Ok(()) => {}
            Err(e) if e.kind() == ErrorKind::NotFound => {}
            Err(_) => left.push(dir.clone()),
        }
    }
    if left.is_empty() {
        return Ok(());
    }
    let cgroup = &Cgroup { dirs: left };

    for _ in 0..100 {
        let remaining = pids(cgroup);
        if remaining.is_empty() {
            break;
        }
        for pid in remaining.into_iter().filter(|pid| *pid > 0) {
            // SAFETY: kill(2) has no memory effects.
            unsafe { libc::kill(pid, libc::SIGKILL) };
        }
        thread::sleep(Duration::from_millis(10));
    }

    let mut first_error = None;
    for dir in cgroup.dirs.iter().rev() {
        let mut attempt = 0;
        loop {
            match fs::remove_dir(dir) {
                Ok(()) => break,
                Err(e) if e.kind() == ErrorKind::NotFound => break,
                Err(e) if e.raw_os_error() == Some(libc::EBUSY) && attempt < 50 => {
                    attempt += 1;
                    thread::sleep(Duration::from_millis(10));
                }
                Err(e) => {
                    first_error
                        .get_or_insert(io_error(format!("removing cgroup {}", dir.display()), e));
                    break;
                }
            }
        }
    }
    match first_error {
        Some(err) => Err(err),
        None => Ok(()),
    }
}

/// Lists the controllers of every hierarchy, for `features`.
pub fn available() -> (bool, bool) {
    let hierarchies = hierarchies().unwrap_or_default();
    let v1 = hierarchies.iter().any(|h| !h.unified);
    let v2 = hierarchies.iter().any(|h| h.unified);
    (v1, v2)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn device_rule_formats() {
        let deny_all = DeviceRule {
            allow: false,
            access: Some("rwm".into()),
            ..Default::default()
        };
        assert_eq!(device_rule_line(&deny_all), "a *:* rwm");
        let null = DeviceRule {
            allow: true,
            kind: Some("c".into()),
            major: Some(1),
            minor: Some(3),
            access: Some("rw".into()),
        };
        assert_eq!(device_rule_line(&null), "c 1:3 rw");
        let any_minor = DeviceRule {
            allow: true,
            kind: Some("c".into()),
            major: Some(136),
            minor: None,
            access: None,
        };
        assert_eq!(device_rule_line(&any_minor), "c 136:* rwm");
    }

    #[test]
    fn cgroups_path_forms() {
        assert_eq!(resolve_path(None, "c1").unwrap(), "/cblock-runtime/c1");
        assert_eq!(resolve_path(Some("/a/b"), "c1").unwrap(), "/a/b");
        assert_eq!(resolve_path(Some("a/b"), "c1").unwrap(), "/a/b");
        let err = resolve_path(Some("machine.slice:libpod:x"), "c1").unwrap_err();
        assert!(err.to_string().contains("cgroupfs"), "{err}");
        assert!(resolve_path(Some("/a/../b"), "c1").is_err());
    }
}
