//! The container runtime: from an OCI runtime configuration to a running,
//! isolated and limited process. The OS-specific work is in `platform`.
//!
//! The library interface is [`Container`]: `create` sets a container up
//! from a bundle and leaves its process waiting, `start` lets it run the
//! configured program, and `kill`, `wait`, `exec`, `state` and `delete`
//! follow the OCI lifecycle. Each container keeps its state in a directory
//! `ROOT/ID` (by default below [`DEFAULT_ROOT`]), so that separate runtime
//! invocations, as the OCI command line makes them, see the same
//! containers. [`default_spec`] writes the configuration of cblocks' own
//! containers from image settings.

pub mod cli;
mod defaults;
pub mod hooks;
mod init;
mod state;

use std::fs;
use std::io::{self, Read};
use std::os::fd::{AsRawFd, OwnedFd};
use std::os::unix::fs::DirBuilderExt;
use std::os::unix::net::UnixStream;
use std::path::{Path, PathBuf};
use std::thread;
use std::time::{Duration, Instant};

pub use defaults::{default_spec, example_spec, write_config, BindMount, NetworkMode, Settings};
pub use init::init_main;
pub use state::Record;

use crate::oci::runtime_spec::{Process, Spec, State, Status};

#[cfg(target_os = "linux")]
pub(crate) use crate::platform::container as engine;
#[cfg(target_os = "freebsd")]
pub(crate) use crate::platform::jail as engine;

/// Default directory of the containers' state directories.
pub const DEFAULT_ROOT: &str = "/run/cblock-runtime";

/// Errors of this module.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("{context}: {source}")]
    Io {
        context: String,
        source: std::io::Error,
    },
    /// A step of the container's setup failed; the message names it.
    #[error("{0}")]
    Setup(String),
    #[error("invalid configuration: {0}")]
    Config(String),
    /// A command line that cannot be carried out, with the reason.
    #[error("{0}")]
    Usage(String),
    #[error(
        "the configuration uses features this runtime does not support: {0}; remove them from \
         config.json"
    )]
    Unsupported(String),
    #[error("invalid bundle {path}: {reason}")]
    Bundle { path: PathBuf, reason: String },
    #[error(
        "invalid container id {0:?}: use letters, digits, '_', '+', '-' and '.', not starting \
         with '.'"
    )]
    InvalidId(String),
    #[error("container {id:?} already exists in {root}; delete it or choose another id")]
    Exists { id: String, root: PathBuf },
    #[error("container {id:?} does not exist in {root}")]
    NotFound { id: String, root: PathBuf },
    #[error("container {id:?} is {status}; {action} needs it to be {expected}")]
    WrongStatus {
        id: String,
        status: Status,
        action: &'static str,
        expected: &'static str,
    },
    #[error("{kind} hook {path} failed: {reason}")]
    Hook {
        kind: String,
        path: String,
        reason: String,
    },
    #[error("invalid signal {0:?}: give a number or a name such as TERM or SIGKILL")]
    InvalidSignal(String),
    #[error("{0} is not supported on this platform yet")]
    NotSupported(&'static str),
}

fn io_error(context: impl Into<String>) -> impl FnOnce(io::Error) -> Error {
    let context = context.into();
    move |source| Error::Io { context, source }
}

/// Hand-over of the container's terminal, when `process.terminal` requests
/// one.
#[derive(Debug, Default)]
pub enum ConsoleMode {
    /// No terminal is expected; the process inherits the caller's standard
    /// streams.
    #[default]
    Inherit,
    /// runc's protocol: the terminal's master is sent to the UNIX socket at
    /// this path.
    Socket(PathBuf),
    /// The master is returned by [`Container::take_console`].
    Receive,
}

/// Parameters of [`Container::create`].
#[derive(Debug, Default)]
pub struct ContainerConfig {
    pub id: String,
    /// Directory holding `config.json` and, usually, the root file system.
    pub bundle: PathBuf,
    /// State directory root; [`DEFAULT_ROOT`] when empty.
    pub root_dir: PathBuf,
    pub console: ConsoleMode,
    /// File to write the container's pid to.
    pub pid_file: Option<PathBuf>,
    /// Number of descriptors after the standard streams (3, 4, ...) that the
    /// container inherits.
    pub preserve_fds: u32,
    /// Move the root file system over `/` and chroot instead of
    /// `pivot_root`, for roots on a ramdisk.
    pub no_pivot: bool,
    /// The multi-call binary to run the setup from; the running binary when
    /// `None`. Tests that link the library set it to the `cblock` binary.
    pub runtime_exe: Option<PathBuf>,
    /// Standard input, output and error of the container's process, such as
    /// pipes of a build step; the caller's own when `None`.
    pub stdio: Option<[OwnedFd; 3]>,
    /// Terminal size that replaces `process.consoleSize` of the bundle, so
    /// that the terminal has it before the process starts.
    pub console_size: Option<crate::oci::runtime_spec::ConsoleSize>,
    /// Lets the process run as soon as it is set up, as `run` does, instead
    /// of waiting for [`Container::start`]. The container is then created
    /// without an exec FIFO and returned running.
    pub start_at_once: bool,
}

/// A process to start in a running container.
#[derive(Debug, Default)]
pub struct ExecConfig {
    pub process: Process,
    pub console: ConsoleMode,
    pub pid_file: Option<PathBuf>,
    pub preserve_fds: u32,
    pub runtime_exe: Option<PathBuf>,
    /// Standard input, output and error; the caller's own when `None`.
    pub stdio: Option<[OwnedFd; 3]>,
}

/// A container known to the runtime, by its state directory.
#[derive(Debug)]
pub struct Container {
    record: Record,
    state_dir: PathBuf,
    console: Option<OwnedFd>,
}

/// Checks a container id: letters, digits and `_+-.`, not starting with a
/// dot, at most 1024 bytes.
pub fn check_id(id: &str) -> Result<(), Error> {
    let valid_char = |c: char| c.is_ascii_alphanumeric() || "_+-.".contains(c);
    if id.is_empty() || id.len() > 1024 || id.starts_with('.') || !id.chars().all(valid_char) {
        return Err(Error::InvalidId(id.to_string()));
    }
    Ok(())
}

fn root_or_default(root: &Path) -> PathBuf {
    if root.as_os_str().is_empty() {
        PathBuf::from(DEFAULT_ROOT)
    } else {
        root.to_path_buf()
    }
}

/// Reads and checks `config.json` of a bundle.
pub fn load_bundle(bundle: &Path) -> Result<(PathBuf, Spec), Error> {
    let bundle_error = |reason: String| Error::Bundle {
        path: bundle.to_path_buf(),
        reason,
    };
    let bundle = fs::canonicalize(bundle)
        .map_err(|e| bundle_error(format!("{e}; give an existing bundle directory")))?;
    let config_path = bundle.join("config.json");
    let text = fs::read_to_string(&config_path).map_err(|e| {
        bundle_error(format!(
            "reading config.json: {e}; create it, for example with `cblock-runtime spec`"
        ))
    })?;
    let spec: Spec =
        serde_json::from_str(&text).map_err(|e| bundle_error(format!("config.json: {e}")))?;
    check_spec(&bundle, &spec)?;
    Ok((bundle, spec))
}

fn check_spec(bundle: &Path, spec: &Spec) -> Result<(), Error> {
    let bundle_error = |reason: String| Error::Bundle {
        path: bundle.to_path_buf(),
        reason,
    };
    if !spec.oci_version.starts_with("1.") {
        return Err(bundle_error(format!(
            "ociVersion {:?} is not supported; this runtime implements 1.x",
            spec.oci_version
        )));
    }
    let unsupported = spec.unsupported();
    if !unsupported.is_empty() {
        return Err(Error::Unsupported(unsupported.join(", ")));
    }
    let Some(process) = &spec.process else {
        return Err(bundle_error(
            "config.json has no process; add process.args".into(),
        ));
    };
    if process.args.is_empty() {
        return Err(bundle_error(
            "process.args is empty; give the program to run".into(),
        ));
    }
    let rootfs = rootfs_path(bundle, spec)?;
    if !rootfs.is_dir() {
        return Err(bundle_error(format!(
            "root file system {} is not a directory; check root.path",
            rootfs.display()
        )));
    }
    engine::validate(spec, process)
}

fn rootfs_path(bundle: &Path, spec: &Spec) -> Result<PathBuf, Error> {
    let Some(root) = &spec.root else {
        return Err(Error::Bundle {
            path: bundle.to_path_buf(),
            reason: "config.json has no root; add root.path".into(),
        });
    };
    Ok(bundle.join(&root.path))
}

/// Duplicates the caller's standard streams for the container's process.
fn clone_stdio(stdio: &Option<[OwnedFd; 3]>) -> Result<Option<[OwnedFd; 3]>, Error> {
    let Some([stdin, stdout, stderr]) = stdio else {
        return Ok(None);
    };
    let duplicate = |fd: &OwnedFd| {
        fd.try_clone()
            .map_err(io_error("duplicating a standard stream of the container"))
    };
    Ok(Some([
        duplicate(stdin)?,
        duplicate(stdout)?,
        duplicate(stderr)?,
    ]))
}

fn write_pid_file(path: &Path, pid: i32) -> Result<(), Error> {
    let temporary = path.with_extension("tmp-cblock");
    fs::write(&temporary, pid.to_string())
        .and_then(|()| fs::rename(&temporary, path))
        .map_err(io_error(format!("writing pid file {}", path.display())))
}

/// Opens the console channel for `mode`: the socket end the container
/// sends its terminal to, and the end this process keeps to receive it.
fn console_channel(
    mode: &ConsoleMode,
    terminal: bool,
) -> Result<(Option<OwnedFd>, Option<UnixStream>), Error> {
    if !terminal {
        return Ok((None, None));
    }
    match mode {
        ConsoleMode::Inherit => Err(Error::Config(
            "process.terminal is set but no console socket was given; pass --console-socket \
             or set process.terminal to false"
                .into(),
        )),
        ConsoleMode::Socket(path) => {
            let stream = engine::connect_console(path)?;
            Ok((Some(OwnedFd::from(stream)), None))
        }
        ConsoleMode::Receive => {
            let (ours, theirs) =
                UnixStream::pair().map_err(io_error("creating the console socket pair"))?;
            Ok((Some(OwnedFd::from(theirs)), Some(ours)))
        }
    }
}

impl Container {
    /// Creates a container from a bundle. Namespaces, mounts, cgroup and
    /// credentials are set up and the process waits for [`Container::start`].
    /// On failure the state directory, the processes and the cgroup are
    /// removed; mounts live only in the container's mount namespace.
    pub fn create(config: &ContainerConfig) -> Result<Container, Error> {
        check_id(&config.id)?;
        let (bundle, spec) = load_bundle(&config.bundle)?;
        Self::create_from(config, bundle, spec)
    }

    /// Creates the container like [`Container::create`] from a bundle that
    /// [`load_bundle`] has already read.
    pub fn create_from(
        config: &ContainerConfig,
        bundle: PathBuf,
        spec: Spec,
    ) -> Result<Container, Error> {
        check_id(&config.id)?;
        let root = root_or_default(&config.root_dir);
        let rootfs = rootfs_path(&bundle, &spec)?;
        let mut process = spec.process.clone().unwrap_or_default();
        if config.console_size.is_some() {
            process.console_size = config.console_size;
        }
        let cgroup_path = engine::cgroups::resolve_path(
            spec.linux.as_ref().and_then(|l| l.cgroups_path.as_deref()),
            &config.id,
        )?;

        fs::DirBuilder::new()
            .recursive(true)
            .mode(0o711)
            .create(&root)
            .map_err(io_error(format!("creating state root {}", root.display())))?;
        let state_dir = root.join(&config.id);
        match fs::DirBuilder::new().mode(0o711).create(&state_dir) {
            Ok(()) => {}
            Err(e) if e.kind() == io::ErrorKind::AlreadyExists => {
                return Err(Error::Exists {
                    id: config.id.clone(),
                    root,
                })
            }
            Err(e) => {
                return Err(Error::Io {
                    context: format!("creating state directory {}", state_dir.display()),
                    source: e,
                })
            }
        }

        let result = Self::create_in(
            config,
            &state_dir,
            &bundle,
            &spec,
            rootfs,
            &process,
            cgroup_path,
        );
        if result.is_err() {
            let _ = fs::remove_dir_all(&state_dir);
        }
        result
    }

    fn create_in(
        config: &ContainerConfig,
        state_dir: &Path,
        bundle: &Path,
        spec: &Spec,
        rootfs: PathBuf,
        process: &Process,
        cgroup_path: String,
    ) -> Result<Container, Error> {
        let fifo = if config.start_at_once {
            None
        } else {
            Some(make_exec_fifo(state_dir)?)
        };

        let mut record = Record::new(&config.id, bundle, &rootfs, spec);
        record.save(state_dir)?;

        let (console_fd, console_receiver) = console_channel(&config.console, process.terminal)?;
        let runtime_exe = config
            .runtime_exe
            .clone()
            .unwrap_or_else(|| PathBuf::from("/proc/self/exe"));
        let hooks = spec.hooks.clone().unwrap_or_default();
        let hook_record = record.clone();
        let mut run_hooks = |pid: i32| -> Result<(), Error> {
            let mut state = hook_record.oci_state(Status::Created);
            state.pid = Some(pid);
            hooks::run_all(&hooks.prestart, "prestart", &state)?;
            hooks::run_all(&hooks.create_runtime, "createRuntime", &state)
        };
        let launched = engine::launch(
            engine::Launch {
                id: &config.id,
                spec,
                process,
                bundle,
                rootfs,
                exec_fifo: fifo.as_deref(),
                join_pid: None,
                console: console_fd,
                preserve_fds: config.preserve_fds,
                no_pivot: config.no_pivot,
                runtime_exe: &runtime_exe,
                cgroup_path: Some(cgroup_path),
                stdio: clone_stdio(&config.stdio)?,
            },
            &mut run_hooks,
        )?;

        record.pid = Some(launched.pid);
        record.start_time = state::process_start_time(launched.pid);
        record.cgroup_dirs = launched.cgroup.dirs.clone();
        record.status = if config.start_at_once {
            Status::Running
        } else {
            Status::Created
        };
        let finish = || -> Result<Option<OwnedFd>, Error> {
            record.save(state_dir)?;
            if let Some(path) = &config.pid_file {
                write_pid_file(path, launched.pid)?;
            }
            match &console_receiver {
                Some(stream) => Ok(Some(engine::receive_fd(stream.as_raw_fd())?)),
                None => Ok(None),
            }
        };
        match finish() {
            Ok(console) => {
                let container = Container {
                    record,
                    state_dir: state_dir.to_path_buf(),
                    console,
                };
                if config.start_at_once {
                    container.run_poststart_hooks();
                }
                Ok(container)
            }
            Err(err) => {
                let _ = engine::signal(launched.pid, libc::SIGKILL);
                let _ = engine::cgroups::destroy(&launched.cgroup);
                Err(err)
            }
        }
    }

    /// Loads the container `id` from the state root `root_dir`.
    pub fn load(root_dir: &Path, id: &str) -> Result<Container, Error> {
        check_id(id)?;
        let root = root_or_default(root_dir);
        let state_dir = root.join(id);
        if !state_dir.join(state::RECORD).exists() {
            return Err(Error::NotFound {
                id: id.to_string(),
                root,
            });
        }
        let record = Record::load(&state_dir)?;
        Ok(Container {
            record,
            state_dir,
            console: None,
        })
    }

    pub fn id(&self) -> &str {
        &self.record.id
    }

    /// Returns the pid of the container's process in the host's PID
    /// namespace.
    pub fn pid(&self) -> Option<i32> {
        self.record.pid
    }

    /// Returns the terminal master when created with [`ConsoleMode::Receive`].
    pub fn take_console(&mut self) -> Option<OwnedFd> {
        self.console.take()
    }

    /// Returns the configuration the container was created from.
    pub fn spec(&self) -> &Spec {
        &self.record.spec
    }

    /// Returns the container's current status, checking its process.
    pub fn status(&self) -> Status {
        self.record.current_status(&self.state_dir)
    }

    /// Returns the OCI state of the container.
    pub fn state(&self) -> State {
        self.record.oci_state(self.status())
    }

    fn require(
        &self,
        action: &'static str,
        allowed: &[Status],
        expected: &'static str,
    ) -> Result<Status, Error> {
        let status = self.status();
        if allowed.contains(&status) {
            Ok(status)
        } else {
            Err(Error::WrongStatus {
                id: self.record.id.clone(),
                status,
                action,
                expected,
            })
        }
    }

    /// Lets the created container run its program, then runs the poststart
    /// hooks.
    pub fn start(&mut self) -> Result<(), Error> {
        self.require("start", &[Status::Created], "created")?;
        let fifo = self.state_dir.join(state::EXEC_FIFO);
        // Opened through nix: the standard library's open loses custom flags
        // such as O_NONBLOCK in the musl build.
        let flags = nix::fcntl::OFlag::O_RDONLY
            | nix::fcntl::OFlag::O_NONBLOCK
            | nix::fcntl::OFlag::O_CLOEXEC;
        let fd = nix::fcntl::open(&fifo, flags, nix::sys::stat::Mode::empty()).map_err(|e| {
            Error::Io {
                context: format!("opening the exec FIFO {}", fifo.display()),
                source: e.into(),
            }
        })?;
        // SAFETY: fd was just opened and is owned by nothing else.
        let mut reader =
            fs::File::from(unsafe { <OwnedFd as std::os::fd::FromRawFd>::from_raw_fd(fd) });

        // The container opens its end once this end exists; wait for its
        // byte while checking that it is still alive.
        let pid = self.record.pid.unwrap_or_default();
        let mut byte = [0u8; 1];
        loop {
            match reader.read(&mut byte) {
                Ok(1) => break,
                Ok(_) => {}
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => {}
                Err(e) => {
                    return Err(Error::Io {
                        context: "reading the exec FIFO".into(),
                        source: e,
                    })
                }
            }
            if !state::process_alive(pid, self.record.start_time) {
                return Err(Error::Setup(format!(
                    "container {:?} exited before it was started",
                    self.record.id
                )));
            }
            let mut poll = [nix::poll::PollFd::new(
                std::os::fd::AsFd::as_fd(&reader),
                nix::poll::PollFlags::POLLIN,
            )];
            let _ = nix::poll::poll(&mut poll, nix::poll::PollTimeout::from(50u16));
        }
        let _ = fs::remove_file(&fifo);

        self.record.status = Status::Running;
        self.record.save(&self.state_dir)?;
        self.run_poststart_hooks();
        Ok(())
    }

    fn run_poststart_hooks(&self) {
        let hooks = self.record.spec.hooks.clone().unwrap_or_default();
        hooks::run_all_warn(&hooks.poststart, "poststart", &self.state());
    }

    /// Sends `signal` to the container's process, or with `all` to every
    /// process in its cgroup.
    pub fn kill(&self, signal: i32, all: bool) -> Result<(), Error> {
        self.require(
            "kill",
            &[Status::Created, Status::Running],
            "created or running",
        )?;
        let pid = self.record.pid.unwrap_or_default();
        if all {
            let cgroup = engine::cgroups::Cgroup {
                dirs: self.record.cgroup_dirs.clone(),
            };
            for member in engine::cgroups::pids(&cgroup) {
                let _ = engine::signal(member, signal);
            }
        }
        engine::signal(pid, signal).map_err(io_error(format!(
            "sending signal {signal} to container {:?} (pid {pid})",
            self.record.id
        )))
    }

    /// Waits for the container's process to exit and returns its exit
    /// status, 128 plus the signal number for a killed process. The caller
    /// must be the process's parent, which [`become_subreaper`] arranges.
    pub fn wait(&self) -> Result<i32, Error> {
        let pid = nix::unistd::Pid::from_raw(self.record.pid.unwrap_or_default());
        loop {
            match nix::sys::wait::waitpid(pid, None) {
                Ok(nix::sys::wait::WaitStatus::Exited(_, code)) => return Ok(code),
                Ok(nix::sys::wait::WaitStatus::Signaled(_, signal, _)) => {
                    return Ok(128 + signal as i32)
                }
                Ok(_) => continue,
                Err(nix::Error::EINTR) => continue,
                Err(e) => {
                    return Err(Error::Io {
                        context: format!(
                            "waiting for container {:?}; only its parent or subreaper can wait",
                            self.record.id
                        ),
                        source: e.into(),
                    })
                }
            }
        }
    }

    /// Starts another process in the running container and returns its
    /// pid, with the terminal master for [`ConsoleMode::Receive`].
    pub fn exec(&self, config: &ExecConfig) -> Result<(i32, Option<OwnedFd>), Error> {
        self.require(
            "exec",
            &[Status::Running, Status::Created],
            "created or running",
        )?;
        let spec = &self.record.spec;
        engine::validate(spec, &config.process)?;
        if config.process.args.is_empty() {
            return Err(Error::Config("the process to execute has no args".into()));
        }
        let (console_fd, console_receiver) =
            console_channel(&config.console, config.process.terminal)?;
        let runtime_exe = config
            .runtime_exe
            .clone()
            .unwrap_or_else(|| PathBuf::from("/proc/self/exe"));
        let launched = engine::launch(
            engine::Launch {
                id: &self.record.id,
                spec,
                process: &config.process,
                bundle: Path::new(&self.record.bundle),
                rootfs: PathBuf::from(&self.record.rootfs),
                exec_fifo: None,
                join_pid: self.record.pid,
                console: console_fd,
                preserve_fds: config.preserve_fds,
                no_pivot: false,
                runtime_exe: &runtime_exe,
                cgroup_path: None,
                stdio: clone_stdio(&config.stdio)?,
            },
            &mut |_| Ok(()),
        )?;
        if let Some(path) = &config.pid_file {
            write_pid_file(path, launched.pid)?;
        }
        let console = match console_receiver {
            Some(stream) => Some(engine::receive_fd(stream.as_raw_fd())?),
            None => None,
        };
        Ok((launched.pid, console))
    }

    /// Returns the pids of the processes in the container's cgroup.
    pub fn processes(&self) -> Vec<i32> {
        engine::cgroups::pids(&engine::cgroups::Cgroup {
            dirs: self.record.cgroup_dirs.clone(),
        })
    }

    /// Deletes a stopped container: removes its cgroup and state and runs
    /// the poststop hooks. With `force`, a created or running container is
    /// killed first.
    pub fn delete(self, force: bool) -> Result<(), Error> {
        let status = self.status();
        if status != Status::Stopped && !force {
            return Err(Error::WrongStatus {
                id: self.record.id.clone(),
                status,
                action: "delete without --force",
                expected: "stopped",
            });
        }
        let cgroup = engine::cgroups::Cgroup {
            dirs: self.record.cgroup_dirs.clone(),
        };
        if status != Status::Stopped {
            let pid = self.record.pid.unwrap_or_default();
            let _ = engine::signal(pid, libc::SIGKILL);
            for member in engine::cgroups::pids(&cgroup) {
                let _ = engine::signal(member, libc::SIGKILL);
            }
            let deadline = Instant::now() + Duration::from_secs(10);
            while state::process_alive(pid, self.record.start_time) && Instant::now() < deadline {
                thread::sleep(Duration::from_millis(5));
            }
        }
        let cgroup_result = engine::cgroups::destroy(&cgroup);

        let hooks = self.record.spec.hooks.clone().unwrap_or_default();
        hooks::run_all_warn(
            &hooks.poststop,
            "poststop",
            &self.record.oci_state(Status::Stopped),
        );
        fs::remove_dir_all(&self.state_dir).map_err(io_error(format!(
            "removing state directory {}",
            self.state_dir.display()
        )))?;
        cgroup_result
    }
}

/// Creates the FIFO on which a created container waits for `start`.
fn make_exec_fifo(state_dir: &Path) -> Result<PathBuf, Error> {
    // Writable by others: in a user namespace the container's root is not
    // the host's root that owns the FIFO.
    let fifo = state_dir.join(state::EXEC_FIFO);
    nix::unistd::mkfifo(&fifo, nix::sys::stat::Mode::from_bits_truncate(0o622)).map_err(|e| {
        Error::Io {
            context: format!("creating the exec FIFO {}", fifo.display()),
            source: e.into(),
        }
    })?;
    fs::set_permissions(&fifo, std::os::unix::fs::PermissionsExt::from_mode(0o622))
        .map_err(io_error(format!("setting the mode of {}", fifo.display())))?;
    Ok(fifo)
}

/// Lists the containers below `root_dir`, skipping unreadable entries.
pub fn list(root_dir: &Path) -> Result<Vec<Container>, Error> {
    let root = root_or_default(root_dir);
    let entries = match fs::read_dir(&root) {
        Ok(entries) => entries,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(e) => {
            return Err(Error::Io {
                context: format!("listing {}", root.display()),
                source: e,
            })
        }
    };
    let mut containers: Vec<Container> = entries
        .filter_map(|entry| entry.ok())
        .filter_map(|entry| {
            let id = entry.file_name().into_string().ok()?;
            Container::load(&root, &id).ok()
        })
        .collect();
    containers.sort_by(|a, b| a.record.id.cmp(&b.record.id));
    Ok(containers)
}

/// Makes the calling process the reaper of orphaned descendants, so that a
/// container's process becomes its child and [`Container::wait`] works.
pub fn become_subreaper() -> Result<(), Error> {
    engine::become_subreaper().map_err(io_error("becoming a child subreaper"))
}

/// Parses a signal given as a number or a name with or without `SIG`.
pub fn parse_signal(text: &str) -> Result<i32, Error> {
    if let Ok(number) = text.parse::<i32>() {
        if (1..=64).contains(&number) {
            return Ok(number);
        }
        return Err(Error::InvalidSignal(text.to_string()));
    }
    let upper = text.to_ascii_uppercase();
    let name = upper.strip_prefix("SIG").unwrap_or(&upper);
    let number = match name {
        "HUP" => libc::SIGHUP,
        "INT" => libc::SIGINT,
        "QUIT" => libc::SIGQUIT,
        "ILL" => libc::SIGILL,
        "TRAP" => libc::SIGTRAP,
        "ABRT" | "IOT" => libc::SIGABRT,
        "BUS" => libc::SIGBUS,
        "FPE" => libc::SIGFPE,
        "KILL" => libc::SIGKILL,
        "USR1" => libc::SIGUSR1,
        "SEGV" => libc::SIGSEGV,
        "USR2" => libc::SIGUSR2,
        "PIPE" => libc::SIGPIPE,
        "ALRM" => libc::SIGALRM,
        "TERM" => libc::SIGTERM,
        "CHLD" => libc::SIGCHLD,
        "CONT" => libc::SIGCONT,
        "STOP" => libc::SIGSTOP,
        "TSTP" => libc::SIGTSTP,
        "TTIN" => libc::SIGTTIN,
        "TTOU" => libc::SIGTTOU,
        "URG" => libc::SIGURG,
        "XCPU" => libc::SIGXCPU,
        "XFSZ" => libc::SIGXFSZ,
        "VTALRM" => libc::SIGVTALRM,
        "PROF" => libc::SIGPROF,
        "WINCH" => libc::SIGWINCH,
        "IO" | "POLL" => libc::SIGIO,
        "SYS" => libc::SIGSYS,
        _ => return Err(Error::InvalidSignal(text.to_string())),
    };
    Ok(number)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_checked() {
        for good in ["c1", "a.b_c-d+e", "X"] {
            assert!(check_id(good).is_ok(), "{good}");
        }
        for bad in ["", ".", "..", "a/b", "a b", ".hidden"] {
            assert!(check_id(bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn signals_parsed() {
        assert_eq!(parse_signal("9").unwrap(), libc::SIGKILL);
        assert_eq!(parse_signal("TERM").unwrap(), libc::SIGTERM);
        assert_eq!(parse_signal("sigusr1").unwrap(), libc::SIGUSR1);
        assert!(parse_signal("NOPE").is_err());
        assert!(parse_signal("0").is_err());
    }

    #[test]
    fn missing_bundle_error_names_path() {
        let err = load_bundle(Path::new("/nonexistent/bundle")).unwrap_err();
        assert!(err.to_string().contains("/nonexistent/bundle"), "{err}");
    }
}
