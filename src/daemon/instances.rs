//! Instances on disk: creation with random ids, lookup by unique prefix or
//! name, listing, starting supervisors and cleaning up after an exit.
//!
//! The instance directories are the only state: cblockd keeps no list in
//! memory that could disagree with them, so a restarted daemon finds every
//! instance that exists.

use std::fs;
use std::io::{self, Read};
use std::os::fd::AsRawFd;
use std::os::unix::fs::DirBuilderExt;
use std::os::unix::net::UnixStream;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::Duration;

use super::protocol::{InstanceInfo, ProtocolError};
use super::Error;
use crate::console::{
    read_json, ExitRecord, InstanceConfig, SupervisorState, CONFIG_FILE, EXIT_FILE, SOCKET_FILE,
    STATE_FILE,
};

/// Length of an instance id in hex characters.
pub const ID_LEN: usize = 10;
/// Maximum length of a UNIX socket path on Linux and FreeBSD, less the NUL.
const MAX_SOCKET_PATH: usize = 103;
/// How long a supervisor may take to report that it is ready.
const SUPERVISOR_START_TIMEOUT: Duration = Duration::from_secs(10);

/// The directory with one subdirectory per instance.
pub struct Store {
    root: PathBuf,
}

/// The configuration and recorded state of one instance.
pub struct Instance {
    pub dir: PathBuf,
    pub config: InstanceConfig,
    pub state: Option<SupervisorState>,
    pub exit: Option<ExitRecord>,
}

impl Instance {
    /// Returns whether the supervisor process of this instance is alive.
    pub fn supervisor_alive(&self) -> bool {
        if self.exit.is_some() {
            return false;
        }
        let Some(state) = &self.state else {
            return false;
        };
        // SAFETY: kill with signal 0 only checks that the process exists.
        let alive = unsafe { libc::kill(state.supervisor_pid, 0) } == 0;
        alive && self.dir.join(SOCKET_FILE).exists()
    }

    /// Returns `created`, `running`, `exited` or `lost`.
    pub fn state_name(&self) -> &'static str {
        if self.exit.is_some() {
            "exited"
        } else if !self.supervisor_alive() {
            "lost"
        } else if self.state.as_ref().is_some_and(|s| s.pid.is_some()) {
            "running"
        } else {
            "created"
        }
    }

    pub fn socket(&self) -> PathBuf {
        self.dir.join(SOCKET_FILE)
    }

    pub fn info(&self) -> InstanceInfo {
        InstanceInfo {
            id: self.config.id.clone(),
            name: self.config.name.clone(),
            image: self.config.image.clone(),
            kind: self.config.kind.clone(),
            state: self.state_name().to_string(),
            tty: self.state.as_ref().map(|s| s.tty.clone()),
            pid: self.state.as_ref().and_then(|s| s.pid),
            created: self.config.created,
            started: self.state.as_ref().and_then(|s| s.started),
            exit_status: self.exit.map(|e| e.status),
        }
    }
}

fn io_error(context: String) -> impl FnOnce(io::Error) -> Error {
    move |source| Error::Io { context, source }
}

impl Store {
    /// Opens the store under `data_dir`, creating `instances/` (mode 0700).
    pub fn open(data_dir: &Path) -> Result<Store, Error> {
        let root = data_dir.join("instances");
        fs::DirBuilder::new()
            .recursive(true)
            .mode(0o700)
            .create(&root)
            .map_err(io_error(format!("create {}", root.display())))?;
        Ok(Store { root })
    }

    /// Creates the directory of a new instance with a fresh random id and
    /// returns the id and the directory.
    pub fn allocate(&self) -> Result<(String, PathBuf), Error> {
        for _ in 0..16 {
            let id = random_id().map_err(io_error("read random bytes".into()))?;
            let dir = self.root.join(&id);
            let socket_len = dir.join(SOCKET_FILE).as_os_str().len();
            if socket_len > MAX_SOCKET_PATH {
                return Err(Error::Invalid(format!(
                    "the console socket path under {} is {socket_len} bytes, over the limit of \
                     {MAX_SOCKET_PATH}; use a shorter --data-directory",
                    self.root.display()
                )));
            }
            match fs::DirBuilder::new().mode(0o700).create(&dir) {
                Ok(()) => return Ok((id, dir)),
                Err(err) if err.kind() == io::ErrorKind::AlreadyExists => continue,
                Err(err) => return Err(io_error(format!("create {}", dir.display()))(err)),
            }
        }
        Err(Error::Invalid(
            "no free instance id after 16 random tries; check the random source".into(),
        ))
    }

    /// Loads the instance in directory `id`, or `None` if it has no
    /// configuration (being created, or not an instance).
    pub fn load(&self, id: &str) -> Option<Instance> {
        let dir = self.root.join(id);
        let config: InstanceConfig = read_json(&dir, CONFIG_FILE).ok()??;
        let state = read_json(&dir, STATE_FILE).ok().flatten();
        let exit = read_json(&dir, EXIT_FILE).ok().flatten();
        Some(Instance {
            dir,
            config,
            state,
            exit,
        })
    }

    /// Returns every instance, oldest first.
    pub fn all(&self) -> Result<Vec<Instance>, Error> {
        let entries =
            fs::read_dir(&self.root).map_err(io_error(format!("read {}", self.root.display())))?;
        let mut instances: Vec<Instance> = entries
            .filter_map(|entry| entry.ok())
            .filter_map(|entry| entry.file_name().into_string().ok())
            .filter(|name| name.len() == ID_LEN && name.bytes().all(|b| b.is_ascii_hexdigit()))
            .filter_map(|id| self.load(&id))
            .collect();
        instances.sort_by(|a, b| {
            (a.config.created, &a.config.id).cmp(&(b.config.created, &b.config.id))
        });
        Ok(instances)
    }

    /// Finds the instance named by `key`: a full id, a name, or a prefix of
    /// exactly one id.
    pub fn resolve(&self, key: &str) -> Result<Instance, Error> {
        super::protocol::check_id(key).map_err(|err| Error::Invalid(err.to_string()))?;
        if let Some(instance) = self.load(key) {
            return Ok(instance);
        }
        let all = self.all()?;
        if let Some(pos) = all
            .iter()
            .position(|i| i.config.name.as_deref() == Some(key))
        {
            return Ok(all.into_iter().nth(pos).expect("position is in range"));
        }
        let mut matches: Vec<Instance> = all
            .into_iter()
            .filter(|i| i.config.id.starts_with(key))
            .collect();
        match matches.len() {
            1 => Ok(matches.remove(0)),
            0 => Err(Error::NotFound(key.to_string())),
            n => Err(Error::Invalid(format!(
                "instance prefix {key:?} is ambiguous: it matches {n} instances; give more characters"
            ))),
        }
    }

    /// Returns the instance with name `name`, if any.
    pub fn find_name(&self, name: &str) -> Result<Option<String>, Error> {
        Ok(self
            .all()?
            .into_iter()
            .find(|i| i.config.name.as_deref() == Some(name))
            .map(|i| i.config.id))
    }

    /// Returns the directory of instance `id`.
    pub fn dir(&self, id: &str) -> PathBuf {
        self.root.join(id)
    }

    /// Removes the directory of an instance.
    pub fn remove(&self, id: &str) -> Result<(), Error> {
        let dir = self.root.join(id);
        fs::remove_dir_all(&dir).map_err(io_error(format!("remove {}", dir.display())))
    }
}

/// Returns 10 hex characters from 5 bytes of the kernel's random source.
pub(super) fn random_id() -> io::Result<String> {
    let mut bytes = [0u8; ID_LEN / 2];
    fs::File::open("/dev/urandom")?.read_exact(&mut bytes)?;
    Ok(bytes.iter().map(|b| format!("{b:02x}")).collect())
}

/// Writes `config` into the instance directory `dir` and starts the
/// instance's supervisor (see `start_supervisor`).
pub fn start_instance(
    exe: &Path,
    dir: &Path,
    config: &crate::console::InstanceConfig,
) -> Result<(), Error> {
    crate::console::write_json_atomic(dir, crate::console::CONFIG_FILE, config).map_err(
        |source| Error::Io {
            context: format!("write {}/{}", dir.display(), crate::console::CONFIG_FILE),
            source,
        },
    )?;
    start_supervisor(exe, dir)
}

/// Starts the supervisor of the instance in `dir` and waits until it
/// listens on its socket. The supervisor detaches from cblockd, so it
/// outlives it.
pub fn start_supervisor(exe: &Path, dir: &Path) -> Result<(), Error> {
    let (read_end, write_end) = nix::unistd::pipe2(nix::fcntl::OFlag::O_CLOEXEC)
        .map_err(|err| io_error("create a pipe".into())(err.into()))?;
    let write_fd = write_end.as_raw_fd();

    let mut command = Command::new(exe);
    command
        .arg0("cblock")
        .args(["_supervisor", "--ready-fd", "3"])
        .arg(dir)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .env_clear()
        .env("PATH", "/usr/sbin:/usr/bin:/sbin:/bin");
    // SAFETY: dup2 and fcntl are async-signal-safe. The pipe's write end
    // becomes descriptor 3 without close-on-exec; every other descriptor of
    // cblockd is close-on-exec and does not reach the supervisor.
    unsafe {
        command.pre_exec(move || {
            if write_fd == 3 {
                if libc::fcntl(3, libc::F_SETFD, 0) < 0 {
                    return Err(io::Error::last_os_error());
                }
            } else if libc::dup2(write_fd, 3) < 0 {
                return Err(io::Error::last_os_error());
            }
            Ok(())
        });
    }

    let mut child = command
        .spawn()
        .map_err(io_error(format!("start the supervisor {}", exe.display())))?;
    drop(write_end);
    // The first process exits right after forking the real supervisor.
    let _ = child.wait();

    let mut reader = fs::File::from(read_end);
    let message = read_ready(&mut reader)?;
    match message.trim() {
        "ok" => Ok(()),
        "" => Err(Error::Supervisor(format!(
            "supervisor for {} ended without reporting; see {}/supervisor.log",
            dir.display(),
            dir.display()
        ))),
        other => Err(Error::Supervisor(format!(
            "supervisor for {} failed: {}",
            dir.display(),
            other.trim_start_matches("error: ")
        ))),
    }
}

fn read_ready(reader: &mut fs::File) -> Result<String, Error> {
    let mut fds = [nix::poll::PollFd::new(
        std::os::fd::AsFd::as_fd(reader),
        nix::poll::PollFlags::POLLIN,
    )];
    let timeout = nix::poll::PollTimeout::try_from(SUPERVISOR_START_TIMEOUT.as_millis() as i32)
        .unwrap_or(nix::poll::PollTimeout::MAX);
    let ready = nix::poll::poll(&mut fds, timeout)
        .map_err(|err| io_error("wait for the supervisor".into())(err.into()))?;
    if ready == 0 {
        return Err(Error::Supervisor(format!(
            "supervisor did not report within {} s",
            SUPERVISOR_START_TIMEOUT.as_secs()
        )));
    }
    let mut message = String::new();
    reader
        .take(4096)
        .read_to_string(&mut message)
        .map_err(io_error("read the supervisor's report".into()))?;
    Ok(message)
}

/// Connects to a supervisor's socket and sends `request`.
pub fn connect_supervisor(
    instance: &Instance,
    request: &crate::console::SupervisorRequest,
) -> Result<UnixStream, Error> {
    let socket = instance.socket();
    let mut stream = UnixStream::connect(&socket).map_err(|source| Error::Io {
        context: format!(
            "connect to the supervisor of instance {} at {}",
            instance.config.id,
            socket.display()
        ),
        source,
    })?;
    super::protocol::write_json(&mut stream, super::protocol::Kind::Request, request)
        .map_err(|err| Error::Supervisor(format!("instance {}: {err}", instance.config.id)))?;
    Ok(stream)
}

/// Reads a supervisor's response to the request just sent.
pub fn supervisor_response(
    instance: &Instance,
    stream: &mut UnixStream,
) -> Result<crate::console::SupervisorResponse, Error> {
    super::protocol::read_json(stream, super::protocol::Kind::Response).map_err(
        |err: ProtocolError| Error::Supervisor(format!("instance {}: {err}", instance.config.id)),
    )
}
