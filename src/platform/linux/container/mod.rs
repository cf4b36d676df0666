//! Linux containers: namespaces, mounts, cgroups, capabilities and seccomp.
//!
//! A container is started in up to three processes, as runc does it:
//!
//! 1. The runtime (`launch`) creates the container's cgroup, then starts a
//!    setup process from an unwritable view of its own binary (see `exe`)
//!    with `clone3` (see `spawn`), and talks to it over a socket pair.
//! 2. The setup process (`setup_main`) moves itself into the v1 cgroups
//!    (see `cgroups::Placement`), joins or creates the namespaces, and
//!    has the runtime write its user namespace's id maps. A new PID
//!    namespace takes effect only for children, so it then forks, reports
//!    the child's pid and exits. Without a user namespace the runtime
//!    starts it in the new PID namespace already, and it goes on as the
//!    container process itself without the fork.
//! 3. The container process, PID 1 of the container, builds the root file
//!    system, drops privileges and reports `created`. It then executes the
//!    container's program at once (`run`), or first blocks on the exec
//!    FIFO in the state directory until `start` opens it.
//!
//! Messages on the socket are JSON objects, one per line.

pub mod cgroups;
mod console;
mod exe;
mod process;
mod rootfs;
pub mod seccomp;
mod spawn;
mod syscall_table;

use std::ffi::CString;
use std::fs;
use std::io::{self, BufRead, BufReader, Write};
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt};
use std::os::unix::net::UnixStream;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use nix::sched::CloneFlags;
use serde::{Deserialize, Serialize};

pub use console::{connect as connect_console, receive_fd};
pub use process::{default_capabilities, CAPABILITIES};

use crate::oci::runtime_spec::{Process, Spec, State, Status, OCI_VERSION};
use crate::runtime::Error;

/// Everything the setup process needs, sent as the first message.
#[derive(Debug, Serialize, Deserialize)]
struct InitConfig {
    id: String,
    spec: Spec,
    process: Process,
    rootfs: PathBuf,
    bundle: PathBuf,
    exec_fifo: Option<PathBuf>,
    /// Set for `exec`: the container process whose namespaces to join.
    join_pid: Option<i32>,
    console_fd: Option<RawFd>,
    preserve_fds: u32,
    no_pivot: bool,
    parent_hooks: bool,
    /// The runtime started the setup process as PID 1 of the container's
    /// new PID namespace, so the setup process becomes the container
    /// process without a fork.
    started_in_pid_namespace: bool,
    /// No devices cgroup enforces device rules, so the process must not
    /// keep CAP_MKNOD: with it, it could make and open a node for any host
    /// device.
    drop_mknod: bool,
}

#[derive(Debug, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
enum Message {
    /// Setup process to runtime: place me in the cgroup.
    Ready,
    /// Runtime to setup process: the container's cgroup directories, and
    /// the v1 `tasks` files to move into.
    Cgroup {
        dirs: Vec<PathBuf>,
        v1_tasks: Vec<PathBuf>,
    },
    /// Setup process to runtime: write my user namespace's id maps.
    UserNamespace,
    /// Setup process to runtime: the container process's pid.
    Pid {
        pid: i32,
    },
    /// Container process to runtime: run the prestart and createRuntime
    /// hooks now.
    Hooks,
    /// Container process to runtime: setup is done.
    Created,
    /// Runtime to container process: go on.
    Continue,
    Error {
        message: String,
    },
}

struct Channel {
    writer: UnixStream,
    reader: BufReader<UnixStream>,
}

impl Channel {
    fn new(stream: UnixStream) -> io::Result<Self> {
        let reader = BufReader::new(stream.try_clone()?);
        Ok(Channel {
            writer: stream,
            reader,
        })
    }

    fn send<T: Serialize>(&mut self, message: &T) -> Result<(), Error> {
        let mut line = serde_json::to_vec(message).map_err(|e| Error::Setup(e.to_string()))?;
        line.push(b'\n');
        self.writer.write_all(&line).map_err(|e| Error::Io {
            context: "writing to the container setup channel".into(),
            source: e,
        })
    }

    /// Returns the next message, or `None` when the other side closed.
    fn receive<T: for<'de> Deserialize<'de>>(&mut self) -> Result<Option<T>, Error> {
        let mut line = String::new();
        let read = self.reader.read_line(&mut line).map_err(|e| Error::Io {
            context: "reading from the container setup channel".into(),
            source: e,
        })?;
        if read == 0 {
            return Ok(None);
        }
        serde_json::from_str(&line)
            .map(Some)
            .map_err(|e| Error::Setup(format!("invalid setup message {line:?}: {e}")))
    }

    /// Returns the channel's descriptors, which must stay open until exec.
    fn fds(&self) -> Vec<RawFd> {
        vec![self.writer.as_raw_fd(), self.reader.get_ref().as_raw_fd()]
    }

    fn expect_continue(&mut self) -> Result<(), Error> {
        match self.receive::<Message>()? {
            Some(Message::Continue) => Ok(()),
            other => Err(Error::Setup(format!(
                "expected the runtime to continue, got {other:?}"
            ))),
        }
    }
}

/// A container process to start.
pub struct Launch<'a> {
    pub id: &'a str,
    pub spec: &'a Spec,
    pub process: &'a Process,
    pub bundle: &'a Path,
    pub rootfs: PathBuf,
    /// The FIFO the process waits on until `start`; `None` starts at once.
    pub exec_fifo: Option<&'a Path>,
    /// Joins the namespaces and cgroups of this process instead of
    /// creating a container (`exec`).
    pub join_pid: Option<i32>,
    /// Connected console socket that receives the terminal's master.
    pub console: Option<OwnedFd>,
    pub preserve_fds: u32,
    pub no_pivot: bool,
    /// The binary to run the setup from; normally `/proc/self/exe`.
    pub runtime_exe: &'a Path,
    /// The cgroup to create; `None` for `exec`.
    pub cgroup_path: Option<String>,
    /// Standard input, output and error of the process; the caller's own
    /// when `None`.
    pub stdio: Option<[OwnedFd; 3]>,
}

/// A started container process.
#[derive(Debug)]
pub struct Launched {
    pub pid: i32,
    pub cgroup: cgroups::Cgroup,
}

/// Checks the platform-specific parts of a configuration, so that `create`
/// fails before anything is set up.
pub fn validate(spec: &Spec, process: &Process) -> Result<(), Error> {
    let linux = spec.linux_or_default();
    let mut seen = Vec::new();
    for ns in &linux.namespaces {
        namespace_flag(&ns.kind)?;
        if seen.contains(&ns.kind) {
            return Err(Error::Config(format!(
                "namespace {:?} is listed twice in linux.namespaces; keep one",
                ns.kind
            )));
        }
        seen.push(ns.kind.clone());
    }
    let new_user = spec.namespace("user").is_some_and(|ns| ns.path.is_none());
    if new_user && (linux.uid_mappings.is_empty() || linux.gid_mappings.is_empty()) {
        return Err(Error::Config(
            "a new user namespace needs linux.uidMappings and linux.gidMappings; add them".into(),
        ));
    }
    if spec.hostname.as_deref().is_some_and(|h| !h.is_empty()) && spec.namespace("uts").is_none() {
        return Err(Error::Config(
            "hostname is set but the container shares the host's uts namespace; add a uts \
             namespace or remove hostname"
                .into(),
        ));
    }
    if let Some(capabilities) = &process.capabilities {
        let sets = [
            (&capabilities.bounding, "bounding"),
            (&capabilities.effective, "effective"),
            (&capabilities.inheritable, "inheritable"),
            (&capabilities.permitted, "permitted"),
            (&capabilities.ambient, "ambient"),
        ];
        for (names, set) in sets {
            process::cap_mask(names, set)?;
        }
    }
    process::check_rlimits(&process.rlimits)?;
    if let Some(profile) = &linux.seccomp {
        seccomp::compile(profile)?;
    }
    check_cwd(&process.cwd)?;
    Ok(())
}

/// CVE-2024-21626: a working directory under `/proc/self/fd` could lead to
/// a descriptor the runtime still held on the host, outside the container.
fn check_cwd(cwd: &str) -> Result<(), Error> {
    if !cwd.starts_with('/') {
        return Err(Error::Config(format!(
            "process.cwd {cwd:?} is not absolute; give the full path in the container"
        )));
    }
    let parts: Vec<&str> = cwd.split('/').filter(|p| !p.is_empty()).collect();
    if parts.first() == Some(&"proc") && parts.len() >= 3 {
        let owner = parts[1];
        let is_process =
            owner == "self" || owner == "thread-self" || owner.chars().all(|c| c.is_ascii_digit());
        if is_process && parts[2] == "fd" {
            return Err(Error::Config(format!(
                "process.cwd {cwd:?} is under /proc/*/fd, which can reach outside the \
                 container; choose a directory of the container's file system"
            )));
        }
    }
    Ok(())
}

fn namespace_flag(kind: &str) -> Result<CloneFlags, Error> {
    Ok(match kind {
        "pid" => CloneFlags::CLONE_NEWPID,
        "network" => CloneFlags::CLONE_NEWNET,
        "mount" => CloneFlags::CLONE_NEWNS,
        "ipc" => CloneFlags::CLONE_NEWIPC,
        "uts" => CloneFlags::CLONE_NEWUTS,
        "user" => CloneFlags::CLONE_NEWUSER,
        "cgroup" => CloneFlags::CLONE_NEWCGROUP,
        other => {
            return Err(Error::Config(format!(
                "unknown namespace type {other:?}; use pid, network, mount, ipc, uts, user or \
                 cgroup"
            )))
        }
    })
}

/// Starts a container process and returns once it is set up: waiting on
/// the exec FIFO for a new container, or executing the program for `exec`.
/// `run_hooks` is called with the container's pid at the point where the
/// prestart and createRuntime hooks belong. On failure every process and
/// cgroup this call made is removed again.
pub fn launch(
    request: Launch<'_>,
    run_hooks: &mut dyn FnMut(i32) -> Result<(), Error>,
) -> Result<Launched, Error> {
    let mut cgroup = match (&request.cgroup_path, request.join_pid) {
        (Some(path), _) => CgroupSetup::Create(cgroups::reserve(path)?),
        (None, Some(target)) => CgroupSetup::Join(cgroups::of_process(target)?),
        (None, None) => CgroupSetup::Join(cgroups::Cgroup::default()),
    };
    let mut request = request;
    let result = start_setup(&mut request, &mut cgroup, run_hooks);
    match (result, cgroup) {
        (Ok(pid), CgroupSetup::Create(creation)) => Ok(Launched {
            pid,
            cgroup: creation.cgroup,
        }),
        (Ok(pid), CgroupSetup::Join(_)) => Ok(Launched {
            pid,
            cgroup: cgroups::Cgroup::default(),
        }),
        (Err(err), CgroupSetup::Create(creation)) => {
            let _ = cgroups::destroy(&creation.cgroup);
            Err(err)
        }
        (Err(err), CgroupSetup::Join(_)) => Err(err),
    }
}

/// The cgroup a new process goes into.
enum CgroupSetup {
    /// A new container's cgroup, made while the setup process starts.
    Create(cgroups::Creation),
    /// The cgroup of a running container, for `exec`.
    Join(cgroups::Cgroup),
}

/// Starts the setup process and leads it through the setup. Returns the
/// container process's pid. On failure the processes it started are
/// killed.
fn start_setup(
    request: &mut Launch<'_>,
    cgroup: &mut CgroupSetup,
    run_hooks: &mut dyn FnMut(i32) -> Result<(), Error>,
) -> Result<i32, Error> {
    let unified = match &*cgroup {
        CgroupSetup::Create(creation) => creation.cgroup.placement()?.unified,
        CgroupSetup::Join(joined) => joined.placement()?.unified,
    };
    let exe = exe::open_unwritable(request.runtime_exe)?;
    let (parent_end, child_end) = UnixStream::pair().map_err(|e| Error::Io {
        context: "creating the setup socket pair".into(),
        source: e,
    })?;
    let child_fd = child_end.as_raw_fd();
    let console = request.console.take();
    let console_fd = console.as_ref().map(|fd| fd.as_raw_fd());

    let child_fd_arg = CString::new(child_fd.to_string()).expect("digits contain no NUL");
    let mut inherit = vec![child_fd];
    inherit.extend(console_fd);
    let mut child = spawn::spawn(spawn::Spawn {
        exe: &exe,
        args: &[c"cblock-runtime", c"_setup", &child_fd_arg],
        stdio: request.stdio.take(),
        inherit: &inherit,
        cgroup: unified.as_deref(),
        new_pid_namespace: pid_namespace_at_clone(request),
    })?;
    drop(child_end);
    drop(console);
    drop(exe);

    let spec = request.spec;
    let parent_hooks = spec
        .hooks
        .as_ref()
        .is_some_and(|h| !h.prestart.is_empty() || !h.create_runtime.is_empty());
    let config = InitConfig {
        id: request.id.to_string(),
        spec: spec.clone(),
        process: request.process.clone(),
        rootfs: request.rootfs.clone(),
        bundle: request.bundle.to_path_buf(),
        exec_fifo: request.exec_fifo.map(Path::to_path_buf),
        join_pid: request.join_pid,
        console_fd,
        preserve_fds: request.preserve_fds,
        no_pivot: request.no_pivot,
        parent_hooks,
        started_in_pid_namespace: child.in_new_pid_namespace,
        drop_mknod: !cgroups::enforces_device_rules(),
    };

    let mut channel = match Channel::new(parent_end) {
        Ok(channel) => channel,
        Err(e) => {
            child.kill();
            return Err(Error::Io {
                context: "opening the setup channel".into(),
                source: e,
            });
        }
    };
    // Sent before the exec finishes: the socket buffers it, and the setup
    // process reads it as soon as it runs.
    if let Err(err) = channel.send(&config) {
        child.kill();
        return Err(err);
    }

    // The rest of a new cgroup is made while the setup process executes
    // the binary and reads its configuration, which takes about as long.
    let completed = match cgroup {
        CgroupSetup::Create(creation) => {
            let resources = request
                .spec
                .linux
                .as_ref()
                .and_then(|l| l.resources.as_ref());
            creation.complete(resources, &device_rules(request.spec))
        }
        CgroupSetup::Join(_) => Ok(()),
    };
    let placement = completed.and_then(|()| match &*cgroup {
        CgroupSetup::Create(creation) => creation.cgroup.placement(),
        CgroupSetup::Join(joined) => joined.placement(),
    });
    let placement = match placement.and_then(|p| child.wait_exec().map(|()| p)) {
        Ok(placement) => placement,
        Err(err) => {
            child.kill();
            return Err(err);
        }
    };
    let cgroup_dirs = match &*cgroup {
        CgroupSetup::Create(creation) => creation.cgroup.dirs.clone(),
        CgroupSetup::Join(joined) => joined.dirs.clone(),
    };

    let mut pid = None;
    let setup_pid = child.pid;
    let result = (|| loop {
        let message = channel.receive::<Message>()?;
        match message {
            Some(Message::Ready) => {
                if let Some(dir) = placement.unified.as_deref().filter(|_| !child.in_cgroup) {
                    cgroups::place_in_unified(dir, setup_pid)?;
                }
                if let Some(score) = request.process.oom_score_adj {
                    let path = format!("/proc/{setup_pid}/oom_score_adj");
                    fs::write(&path, score.to_string()).map_err(|e| Error::Io {
                        context: format!(
                            "writing oom_score_adj {score} to {path}; lowering it needs \
                                 CAP_SYS_RESOURCE"
                        ),
                        source: e,
                    })?;
                }
                channel.send(&Message::Cgroup {
                    dirs: cgroup_dirs.clone(),
                    v1_tasks: placement.v1_tasks.clone(),
                })?;
            }
            Some(Message::UserNamespace) => {
                write_id_maps(spec, setup_pid)?;
                channel.send(&Message::Continue)?;
            }
            Some(Message::Pid { pid: container_pid }) => {
                pid = Some(container_pid);
                if let Err(how) = child.wait()? {
                    return Err(Error::Setup(format!("the setup process failed with {how}")));
                }
                channel.send(&Message::Continue)?;
            }
            Some(Message::Hooks) => {
                let container_pid = pid.unwrap_or(setup_pid);
                run_hooks(container_pid)?;
                channel.send(&Message::Continue)?;
            }
            Some(Message::Created) => return Ok(()),
            Some(Message::Error { message }) => return Err(Error::Setup(message)),
            Some(other) => return Err(Error::Setup(format!("unexpected setup message {other:?}"))),
            None => return Err(Error::Setup(setup_vanished(request.spec, pid, &child))),
        }
    })();

    match result {
        Ok(()) => Ok(pid.unwrap_or(setup_pid)),
        Err(err) => {
            if let Some(pid) = pid {
                // SAFETY: kill(2) has no memory effects.
                unsafe { libc::kill(pid, libc::SIGKILL) };
            } else {
                child.kill();
            }
            Err(err)
        }
    }
}

/// Describes a setup that ended without a message: how the process ended,
/// and the memory limit when a kill points at it.
fn setup_vanished(spec: &Spec, container_pid: Option<i32>, setup: &spawn::Child) -> String {
    // The process that closed the channel: the container process once it
    // exists (it may be the setup process itself), else the setup process.
    let ended = match container_pid.filter(|pid| *pid != setup.pid) {
        Some(_) => None,
        None => setup.wait().ok().and_then(Result::err),
    };
    let mut message = "the container process exited during setup without a message".to_string();
    if let Some(how) = &ended {
        message.push_str(&format!(" ({how})"));
    }
    let limit = spec
        .linux
        .as_ref()
        .and_then(|l| l.resources.as_ref())
        .and_then(|r| r.memory.as_ref())
        .and_then(|m| m.limit);
    if let (Some(limit), true) = (
        limit,
        ended.as_deref().is_some_and(|h| h.contains("SIGKILL")),
    ) {
        message.push_str(&format!(
            "; the memory limit of {limit} bytes may be too low to set the container up"
        ));
    }
    message
}

/// Returns the device rules of the container's devices cgroup: the
/// configured ones, then an allow rule for each device node in
/// `linux.devices`, as runc adds them.
fn device_rules(spec: &Spec) -> Vec<crate::oci::runtime_spec::DeviceRule> {
    let linux = spec.linux_or_default();
    let mut rules = linux
        .resources
        .as_ref()
        .map(|r| r.devices.clone())
        .unwrap_or_default();
    for device in &linux.devices {
        let kind = if device.kind == "u" {
            "c"
        } else {
            &device.kind
        };
        rules.push(crate::oci::runtime_spec::DeviceRule {
            allow: true,
            kind: Some(kind.to_string()),
            major: Some(device.major),
            minor: Some(device.minor),
            access: Some("rwm".into()),
        });
    }
    rules
}

/// Whether the setup process can start in the container's new PID
/// namespace, which saves the fork that `unshare` would need. Only without
/// a user namespace: a PID namespace must belong to the container's user
/// namespace, which the setup process creates later.
fn pid_namespace_at_clone(request: &Launch<'_>) -> bool {
    let linux = request.spec.linux_or_default();
    let new_pid = linux
        .namespaces
        .iter()
        .any(|ns| ns.kind == "pid" && ns.path.is_none());
    let user = linux.namespaces.iter().any(|ns| ns.kind == "user");
    request.join_pid.is_none() && new_pid && !user
}

fn write_id_maps(spec: &Spec, pid: i32) -> Result<(), Error> {
    let linux = spec.linux_or_default();
    let maps = [
        ("uid_map", &linux.uid_mappings),
        ("gid_map", &linux.gid_mappings),
    ];
    for (file, mappings) in maps {
        let text: String = mappings
            .iter()
            .map(|m| format!("{} {} {}\n", m.container_id, m.host_id, m.size))
            .collect();
        let path = format!("/proc/{pid}/{file}");
        fs::write(&path, &text).map_err(|e| Error::Io {
            context: format!("writing {} to {path}", text.trim().replace('\n', ", ")),
            source: e,
        })?;
    }
    Ok(())
}

/// Runs the setup role (`cblock-runtime _setup FD`) in the process that
/// enters the container. Never returns on success: it ends by executing
/// the container's program.
pub fn setup_main(args: &[String]) -> ExitCode {
    let Some(fd) = args.first().and_then(|a| a.parse::<RawFd>().ok()) else {
        eprintln!("cblock-runtime: _setup is internal and needs the setup descriptor");
        return ExitCode::from(2);
    };
    // SAFETY: the runtime passed this descriptor to us and no other object
    // owns it.
    let stream = unsafe { UnixStream::from_raw_fd(fd) };
    let _ = nix::fcntl::fcntl(
        fd,
        nix::fcntl::FcntlArg::F_SETFD(nix::fcntl::FdFlag::FD_CLOEXEC),
    );
    let mut channel = match Channel::new(stream) {
        Ok(channel) => channel,
        Err(e) => {
            eprintln!("cblock-runtime: opening the setup channel: {e}");
            return ExitCode::from(1);
        }
    };
    let result = match channel.receive::<InitConfig>() {
        Ok(Some(config)) => setup(&config, &mut channel),
        Ok(None) => Err(Error::Setup("the runtime closed the setup channel".into())),
        Err(e) => Err(e),
    };
    if let Err(err) = result {
        let message = err.to_string();
        if channel
            .send(&Message::Error {
                message: message.clone(),
            })
            .is_err()
        {
            eprintln!("cblock-runtime: {message}");
        }
    }
    ExitCode::from(1)
}

fn setup(config: &InitConfig, channel: &mut Channel) -> Result<(), Error> {
    channel.send(&Message::Ready)?;
    let cgroup_dirs = match channel.receive::<Message>()? {
        Some(Message::Cgroup { dirs, v1_tasks }) => {
            // Before the namespaces, so that a new cgroup namespace is
            // rooted at the container's cgroup.
            cgroups::enter_v1(&v1_tasks)?;
            dirs
        }
        other => return Err(Error::Setup(format!("expected the cgroup, got {other:?}"))),
    };

    match config.join_pid {
        Some(target) => join_namespaces_of(target)?,
        None => enter_namespaces(config, channel)?,
    }
    if config.started_in_pid_namespace {
        return start_container(config, channel, cgroup_dirs);
    }

    // SAFETY: the process is single-threaded, so fork is safe here.
    match unsafe { nix::unistd::fork() } {
        Err(e) => Err(Error::Io {
            context: "forking the container process".into(),
            source: e.into(),
        }),
        Ok(nix::unistd::ForkResult::Parent { child }) => {
            channel.send(&Message::Pid {
                pid: child.as_raw(),
            })?;
            // SAFETY: _exit ends this intermediate process without running
            // destructors that the child still relies on.
            unsafe { libc::_exit(0) }
        }
        Ok(nix::unistd::ForkResult::Child) => {
            channel.expect_continue()?;
            if config.join_pid.is_some() {
                start_exec_process(config, channel)
            } else {
                start_container(config, channel, cgroup_dirs)
            }
        }
    }
}

fn open_namespace(path: &str) -> Result<OwnedFd, Error> {
    fs::File::open(path)
        .map(OwnedFd::from)
        .map_err(|e| Error::Io {
            context: format!("opening namespace {path}"),
            source: e,
        })
}

fn set_namespace(fd: &OwnedFd, kind: &str, path: &str) -> Result<(), Error> {
    let flag = namespace_flag(kind)?;
    nix::sched::setns(fd, flag).map_err(|e| Error::Io {
        context: format!("joining {kind} namespace {path}"),
        source: e.into(),
    })
}

/// Joins the namespaces given by path, then creates the others. A new user
/// namespace comes first so that it owns the namespaces created after it.
fn enter_namespaces(config: &InitConfig, channel: &mut Channel) -> Result<(), Error> {
    let linux = config.spec.linux_or_default();
    let mut joins = Vec::new();
    for ns in &linux.namespaces {
        if let Some(path) = &ns.path {
            joins.push((ns.kind.clone(), path.clone(), open_namespace(path)?));
        }
    }
    // The user namespace comes first, because it decides the rights for
    // joining the others. The mount namespace comes last, because it changes
    // what the remaining paths refer to.
    joins.sort_by_key(|(kind, _, _)| match kind.as_str() {
        "user" => 0,
        "mount" => 2,
        _ => 1,
    });
    for (kind, path, fd) in &joins {
        set_namespace(fd, kind, path)?;
        if kind == "user" {
            become_namespace_root();
        }
    }

    let mut new_flags = CloneFlags::empty();
    for ns in linux.namespaces.iter().filter(|ns| ns.path.is_none()) {
        new_flags |= namespace_flag(&ns.kind)?;
    }
    if config.started_in_pid_namespace {
        new_flags.remove(CloneFlags::CLONE_NEWPID);
    }
    if new_flags.contains(CloneFlags::CLONE_NEWUSER) {
        nix::sched::unshare(CloneFlags::CLONE_NEWUSER).map_err(|e| Error::Io {
            context: "creating the user namespace".into(),
            source: e.into(),
        })?;
        channel.send(&Message::UserNamespace)?;
        channel.expect_continue()?;
        become_namespace_root();
        new_flags.remove(CloneFlags::CLONE_NEWUSER);
    }
    if !new_flags.is_empty() {
        nix::sched::unshare(new_flags).map_err(|e| Error::Io {
            context: format!("creating namespaces {new_flags:?}"),
            source: e.into(),
        })?;
    }
    Ok(())
}

/// Joins every namespace of `target` that differs from ours, for `exec`.
fn join_namespaces_of(target: i32) -> Result<(), Error> {
    let kinds = [
        ("user", "user"),
        ("ipc", "ipc"),
        ("uts", "uts"),
        ("net", "network"),
        ("pid", "pid"),
        ("cgroup", "cgroup"),
        ("mnt", "mount"),
    ];
    let mut joins = Vec::new();
    for (file, kind) in kinds {
        let theirs = format!("/proc/{target}/ns/{file}");
        let ours = format!("/proc/self/ns/{file}");
        let same = match (fs::read_link(&theirs), fs::read_link(&ours)) {
            (Ok(a), Ok(b)) => a == b,
            (Err(e), _) => {
                return Err(Error::Io {
                    context: format!("reading {theirs}; is the container still running?"),
                    source: e,
                })
            }
            _ => false,
        };
        if !same {
            joins.push((kind, theirs.clone(), open_namespace(&theirs)?));
        }
    }
    for (kind, path, fd) in &joins {
        set_namespace(fd, kind, path)?;
        if *kind == "user" {
            become_namespace_root();
        }
    }
    Ok(())
}

/// Becomes uid and gid 0 of the user namespace just entered, where its maps
/// allow it: the host ids this process had are not mapped there, and files
/// it creates would fail with EOVERFLOW. The capabilities in the namespace
/// stay either way.
fn become_namespace_root() {
    // SAFETY: plain id-setting syscalls; a failure leaves the ids as they
    // were, which the next step reports.
    unsafe {
        libc::setresgid(0, 0, 0);
        libc::setresuid(0, 0, 0);
    }
}

fn os_error(context: String) -> Error {
    Error::Io {
        context,
        source: io::Error::last_os_error(),
    }
}

fn hook_state(config: &InitConfig, status: Status) -> State {
    State {
        oci_version: OCI_VERSION.into(),
        id: config.id.clone(),
        status,
        pid: Some(nix::unistd::getpid().as_raw()),
        bundle: config.bundle.display().to_string(),
        annotations: config.spec.annotations.clone(),
    }
}

/// Builds the container around PID 1 and waits for `start`.
fn start_container(
    config: &InitConfig,
    channel: &mut Channel,
    cgroup_dirs: Vec<PathBuf>,
) -> Result<(), Error> {
    let spec = &config.spec;
    let process = &config.process;
    nix::unistd::setsid().map_err(|e| Error::Io {
        context: "starting a new session".into(),
        source: e.into(),
    })?;

    if spec.namespace("mount").is_some() {
        let cgroup = rootfs::CgroupMountInfo { dirs: cgroup_dirs };
        rootfs::prepare(spec, &config.rootfs, &config.bundle, &cgroup)?;
    }

    // The FIFO is opened by path now, while the state directory is still
    // reachable, and reopened for writing through /proc after pivot_root.
    let fifo = match &config.exec_fifo {
        Some(path) => Some(open_path(path).map_err(|e| Error::Io {
            context: format!("opening the exec FIFO {}", path.display()),
            source: e,
        })?),
        None => None,
    };

    if config.parent_hooks {
        channel.send(&Message::Hooks)?;
        channel.expect_continue()?;
    }
    if let Some(hooks) = &spec.hooks {
        crate::runtime::hooks::run_all(
            &hooks.create_container,
            "createContainer",
            &hook_state(config, Status::Created),
        )?;
    }

    if spec.namespace("mount").is_some() {
        rootfs::enter(&config.rootfs, config.no_pivot)?;
    } else {
        return Err(Error::Config(
            "the container has no mount namespace; add {\"type\": \"mount\"} to \
             linux.namespaces"
                .into(),
        ));
    }

    if process.terminal {
        attach_terminal(config, true)?;
    }
    if let Some(hostname) = spec.hostname.as_deref().filter(|h| !h.is_empty()) {
        nix::unistd::sethostname(hostname).map_err(|e| Error::Io {
            context: format!("setting hostname {hostname:?}"),
            source: e.into(),
        })?;
    }
    if let Some(domain) = spec.domainname.as_deref().filter(|d| !d.is_empty()) {
        // SAFETY: pointer and length describe `domain`.
        if unsafe { libc::setdomainname(domain.as_ptr().cast(), domain.len()) } != 0 {
            return Err(os_error(format!("setting domain name {domain:?}")));
        }
    }
    for (key, value) in &spec.linux_or_default().sysctl {
        let path = format!("/proc/sys/{}", key.replace('.', "/"));
        fs::write(&path, value).map_err(|e| Error::Io {
            context: format!(
                "setting sysctl {key} to {value:?}; only namespaced sysctls can be set"
            ),
            source: e,
        })?;
    }
    rootfs::finish(spec)?;

    let fifo_fd = fifo.as_ref().map(|f| f.as_raw_fd()).unwrap_or(-1);
    let mut keep = channel.fds();
    keep.push(fifo_fd);
    let (program, seccomp_late, prepared) = prepare_process(config, &keep)?;
    channel.send(&Message::Created)?;

    if let Some(fifo) = fifo {
        wait_for_start(&fifo)?;
    }
    if let Some(hooks) = &spec.hooks {
        if let Err(err) = crate::runtime::hooks::run_all(
            &hooks.start_container,
            "startContainer",
            &hook_state(config, Status::Running),
        ) {
            eprintln!("cblock-runtime: {err}");
            // SAFETY: ends the container process.
            unsafe { libc::_exit(1) };
        }
    }
    finish_and_exec(&program, &prepared, seccomp_late)
}

/// Opens `path` with O_PATH, which does not block on a FIFO. libc is called
/// directly because, in the static musl build, opening through the standard
/// library lost the O_PATH flag (seen with strace) and blocked.
fn open_path(path: &Path) -> io::Result<OwnedFd> {
    let c_path = CString::new(path.as_os_str().as_encoded_bytes())
        .map_err(|e| io::Error::new(io::ErrorKind::InvalidInput, e))?;
    // SAFETY: c_path is a valid C string; the result is checked.
    let fd = unsafe { libc::open(c_path.as_ptr(), libc::O_PATH | libc::O_CLOEXEC) };
    if fd < 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: fd was just opened and is owned by nothing else.
    Ok(unsafe { OwnedFd::from_raw_fd(fd) })
}

/// Ends the waiting container process on a signal, with the status a
/// shell reports for it.
extern "C" fn exit_on_signal(signal: libc::c_int) {
    // SAFETY: _exit is async-signal-safe.
    unsafe { libc::_exit(128 + signal) }
}

/// Blocks until `start` opens the FIFO for reading, then writes the byte
/// that `start` waits for.
fn wait_for_start(fifo: &OwnedFd) -> Result<(), Error> {
    // As PID 1 of its namespace, the process ignores every signal without a
    // handler, so `kill` of a created container would do nothing. The
    // handlers end it meanwhile; exec resets them for the program.
    for signal in [libc::SIGTERM, libc::SIGINT, libc::SIGHUP, libc::SIGQUIT] {
        // SAFETY: the handler only calls _exit.
        unsafe { libc::signal(signal, exit_on_signal as *const () as libc::sighandler_t) };
    }
    let path = format!("/proc/self/fd/{}", fifo.as_raw_fd());
    let mut writer = fs::OpenOptions::new()
        .write(true)
        .custom_flags(libc::O_CLOEXEC)
        .open(&path)
        .map_err(|e| Error::Io {
            context: format!("opening the exec FIFO through {path}; mount /proc in the container"),
            source: e,
        })?;
    writer.write_all(b"0").map_err(|e| Error::Io {
        context: "writing to the exec FIFO".into(),
        source: e,
    })
}

fn start_exec_process(config: &InitConfig, channel: &mut Channel) -> Result<(), Error> {
    if config.process.terminal {
        nix::unistd::setsid().map_err(|e| Error::Io {
            context: "starting a new session".into(),
            source: e.into(),
        })?;
        attach_terminal(config, false)?;
    }
    let (program, seccomp_late, prepared) = prepare_process(config, &channel.fds())?;
    channel.send(&Message::Created)?;
    finish_and_exec(&program, &prepared, seccomp_late)
}

/// Opens the terminal, sends its master to the console socket and makes it
/// the process's standard streams and controlling terminal.
fn attach_terminal(config: &InitConfig, bind_console: bool) -> Result<(), Error> {
    let Some(console_fd) = config.console_fd else {
        return Err(Error::Config(
            "process.terminal is set but no console socket was given; pass --console-socket".into(),
        ));
    };
    let pty = console::open_pty(config.process.console_size)?;
    console::send_fd(console_fd, &pty.name, pty.master.as_raw_fd())?;
    // SAFETY: console_fd was passed to us and is no longer needed.
    unsafe { libc::close(console_fd) };
    drop(pty.master);

    if bind_console && Path::new("/dev").is_dir() {
        let console = Path::new("/dev/console");
        if console.symlink_metadata().is_err() {
            let _ = fs::File::create(console);
        }
        nix::mount::mount(
            Some(pty.name.as_str()),
            console,
            None::<&str>,
            nix::mount::MsFlags::MS_BIND,
            None::<&str>,
        )
        .map_err(|e| Error::Io {
            context: format!("bind mounting {} on /dev/console", pty.name),
            source: e.into(),
        })?;
    }
    console::make_controlling(pty.slave.as_raw_fd())?;
    Ok(())
}

/// Applies limits, identity and (when no_new_privs is off) seccomp, closes
/// stray descriptors, enters the working directory and finds the program.
/// Returns the program, the seccomp filters still to load and the process
/// as it runs: with HOME set and, where needed, without CAP_MKNOD.
fn prepare_process(
    config: &InitConfig,
    keep_fds: &[RawFd],
) -> Result<(CString, Vec<seccompiler::BpfProgram>, Process), Error> {
    let mut process = config.process.clone();
    if process::env_value(&process.env, "HOME").is_none() {
        // As runc does: the user's home from the container's passwd file,
        // else /. Read after pivot_root, so it is the container's file.
        let home = process::home_of(process.user.uid).unwrap_or_else(|| "/".into());
        process.env.push(format!("HOME={home}"));
    }
    if config.drop_mknod {
        if let Some(capabilities) = process.capabilities.as_mut() {
            process::remove_capability(capabilities, "CAP_MKNOD");
        }
    }
    let process = &process;
    process::set_rlimits(&process.rlimits)?;

    // Everything that a restrictive seccomp profile might reject comes
    // before the filter is loaded.
    close_stray_descriptors(config, keep_fds)?;
    enter_cwd(&process.cwd)?;
    let program = process::find_program(process)?;

    let filters = match config.spec.linux.as_ref().and_then(|l| l.seccomp.as_ref()) {
        Some(profile) => seccomp::compile(profile)?,
        None => Vec::new(),
    };
    // Without no_new_privs a filter can be loaded only while CAP_SYS_ADMIN
    // is still held, so before the capabilities are dropped.
    let late = if process.no_new_privileges {
        filters
    } else {
        seccomp::load(&filters)?;
        Vec::new()
    };

    process::set_identity(process, true)?;
    if process.no_new_privileges {
        process::set_no_new_privileges()?;
    }
    let umask = process.user.umask.unwrap_or(0o022);
    // SAFETY: umask has no memory effects.
    unsafe { libc::umask(umask as libc::mode_t) };

    Ok((program, late, process.clone()))
}

/// Closes every descriptor above the standard streams except the preserved
/// ones and `keep` (the setup channel and the exec FIFO, both
/// close-on-exec), so that nothing of the host reaches the container
/// (CVE-2024-21626 used such a leaked directory descriptor).
fn close_stray_descriptors(config: &InitConfig, keep: &[RawFd]) -> Result<(), Error> {
    let first_free = 3 + config.preserve_fds as RawFd;
    let mut keep_fds: Vec<RawFd> = keep.to_vec();
    keep_fds.retain(|fd| *fd >= first_free);
    keep_fds.sort_unstable();
    keep_fds.dedup();

    let mut low = first_free as libc::c_uint;
    for fd in keep_fds.iter().map(|fd| *fd as libc::c_uint) {
        if fd > low {
            close_range(low, fd - 1)?;
        }
        low = fd + 1;
    }
    close_range(low, libc::c_uint::MAX)
}

fn close_range(low: libc::c_uint, high: libc::c_uint) -> Result<(), Error> {
    // SAFETY: close_range only closes descriptors.
    let rc = unsafe { libc::syscall(libc::SYS_close_range, low, high, 0) };
    if rc != 0 {
        return Err(os_error(format!("closing descriptors {low} to {high}")));
    }
    Ok(())
}

/// Changes to the working directory, creating it (mode 0755) when it is
/// missing, as runc and Docker do. Runs after `pivot_root`, so the path is
/// resolved inside the container.
fn enter_cwd(cwd: &str) -> Result<(), Error> {
    check_cwd(cwd)?;
    if !Path::new(cwd).exists() {
        fs::DirBuilder::new()
            .recursive(true)
            .mode(0o755)
            .create(cwd)
            .map_err(|e| Error::Io {
                context: format!("creating the working directory {cwd}"),
                source: e,
            })?;
    }
    nix::unistd::chdir(cwd).map_err(|e| Error::Io {
        context: format!("changing to the working directory {cwd}"),
        source: e.into(),
    })?;
    // A directory outside the container's root shows up as unreachable.
    match std::env::current_dir() {
        Ok(dir) if dir.is_absolute() => Ok(()),
        _ => Err(Error::Config(format!(
            "the working directory {cwd} lies outside the container's root; choose a directory \
             of the container's file system"
        ))),
    }
}

fn finish_and_exec(
    program: &CString,
    process: &Process,
    late_filters: Vec<seccompiler::BpfProgram>,
) -> Result<(), Error> {
    // Loaded last so that the filter does not have to allow the runtime's
    // own setup calls.
    seccomp::load(&late_filters)?;
    Err(process::exec(program, process))
}

/// Returns the platform's part of `features`.
pub fn features() -> serde_json::Value {
    let (v1, v2) = cgroups::available();
    serde_json::json!({
        "namespaces": ["cgroup", "ipc", "mount", "network", "pid", "user", "uts"],
        "capabilities": CAPABILITIES,
        "cgroup": { "v1": v1, "v2": v2, "systemd": false, "systemdUser": false },
        "seccomp": {
            "enabled": cfg!(target_arch = "x86_64"),
            "actions": ["SCMP_ACT_ALLOW", "SCMP_ACT_ERRNO", "SCMP_ACT_KILL",
                "SCMP_ACT_KILL_PROCESS", "SCMP_ACT_KILL_THREAD", "SCMP_ACT_LOG",
                "SCMP_ACT_TRACE", "SCMP_ACT_TRAP"],
            "operators": ["SCMP_CMP_EQ", "SCMP_CMP_GE", "SCMP_CMP_GT", "SCMP_CMP_LE",
                "SCMP_CMP_LT", "SCMP_CMP_MASKED_EQ", "SCMP_CMP_NE"],
            "archs": ["SCMP_ARCH_X86_64"],
        },
        "apparmor": { "enabled": false },
        "selinux": { "enabled": false },
    })
}

/// Sends `signal` to `pid`.
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

/// Makes the calling process the reaper of its orphaned descendants.
pub fn become_subreaper() -> io::Result<()> {
    // SAFETY: prctl with integer arguments.
    if unsafe { libc::prctl(libc::PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0) } != 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}

/// Returns the default seccomp profile for the given capabilities.
pub fn default_seccomp(capabilities: &[String]) -> Option<crate::oci::runtime_spec::Seccomp> {
    Some(seccomp::default_profile(capabilities))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cwd_under_proc_fd_rejected() {
        for cwd in [
            "/proc/self/fd/7",
            "/proc/thread-self/fd/3",
            "/proc/1/fd/4",
            "//proc/self/fd",
        ] {
            let err = check_cwd(cwd).unwrap_err();
            assert!(err.to_string().contains("/proc/*/fd"), "{cwd}: {err}");
        }
        assert!(check_cwd("/proc").is_ok());
        assert!(check_cwd("/home/fd").is_ok());
        assert!(check_cwd("relative").is_err());
    }
}
