//! cblockd: the root daemon that owns images and instances behind a UNIX
//! socket, served by plain threads.
//!
//! Threads: the main thread accepts connections, and each connection gets
//! a thread `conn-N`. Each running instance has a thread `watch-ID` that
//! waits for its exit, and `signals` handles SIGTERM, SIGINT and SIGHUP.
//! The only shared mutable state is `Daemon::watched`, behind one lock that
//! is never held across I/O or process work. Everything else about
//! instances is read from their directories, which are the source of truth.

mod build;
mod exec;
pub mod instances;
mod launch;
pub mod log;
pub mod probes;
pub mod protocol;
mod server;

use std::collections::HashSet;
use std::os::unix::fs::{DirBuilderExt, PermissionsExt};
use std::os::unix::net::{UnixListener, UnixStream};
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::{Arc, Mutex};

use argh::FromArgs;

use self::instances::Store;
use crate::{log_error, log_info, log_warn};

/// Default path of the daemon's socket.
pub const DEFAULT_SOCKET: &str = "/var/run/cblock.sock";
/// Default scrollback per instance, in bytes (the original's default).
pub const DEFAULT_TTY_BUFFER: usize = 20480;
/// Largest scrollback `-T` accepts.
pub const MAX_TTY_BUFFER: usize = 64 * 1024 * 1024;
/// Size at which an instance's console log is rotated.
pub const CONSOLE_LOG_MAX: u64 = 4 * 1024 * 1024;

/// Errors of this module.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("{context}: {source}")]
    Io {
        context: String,
        source: std::io::Error,
    },
    #[error("{0}")]
    Invalid(String),
    #[error("instance {0:?} not found; list instances with `cblock instances -a`")]
    NotFound(String),
    #[error("{0}")]
    Supervisor(String),
    #[error("{0}")]
    Protocol(#[from] protocol::ProtocolError),
    #[error(transparent)]
    Image(#[from] crate::image::Error),
    #[error(transparent)]
    Runtime(#[from] crate::runtime::Error),
    #[error(transparent)]
    Storage(#[from] crate::storage::Error),
}

#[derive(FromArgs)]
/// cblockd: the cblocks daemon. Serves `cblock` on a UNIX socket and runs
/// every instance under a supervisor that outlives the daemon.
struct Args {
    /// directory for images and instances (default: /var/lib/cblocks on
    /// Linux, /var/db/cblocks on FreeBSD)
    #[argh(option, short = 'd', long = "data-directory")]
    data_directory: Option<PathBuf>,

    /// path of the control socket (default: /var/run/cblock.sock)
    #[argh(option, short = 'U', long = "unix-sock")]
    unix_sock: Option<PathBuf>,

    /// group whose members may use the socket besides root (socket mode
    /// 0660 with that group; without it only root may connect)
    #[argh(option, short = 'o', long = "sock-owner")]
    sock_owner: Option<String>,

    /// run in the background: detach from the terminal and print the pid
    #[argh(switch, short = 'b')]
    background: bool,

    /// append log lines to FILE instead of standard error; reopened on SIGHUP
    #[argh(option, short = 'l')]
    logfile: Option<PathBuf>,

    /// scrollback kept per instance for re-attaching consoles, in bytes
    /// (default: 20480)
    #[argh(option, short = 'T', long = "tty-buffer-size")]
    tty_buffer_size: Option<usize>,

    /// log debug lines too
    #[argh(switch, short = 'v')]
    verbose: bool,

    /// storage driver for image layers and instance roots
    #[argh(option)]
    storage: Option<String>,

    /// accept requests that run plain host processes (test suite only)
    #[argh(switch, long = "enable-test-processes", hidden_help)]
    enable_test_processes: bool,
}

/// Settings and shared state of a running daemon.
pub struct Daemon {
    pub store: Store,
    /// The image store; instance roots are its mounts.
    pub images: crate::image::Store,
    pub data_dir: PathBuf,
    /// The binary to start supervisors from.
    pub exe: PathBuf,
    /// The binary bound into containers as their PID 1 (`cblock _init`);
    /// `None` when it is dynamically linked and could not run there.
    pub init: Option<PathBuf>,
    pub tty_buffer: usize,
    pub sock_owner_gid: Option<u32>,
    pub test_processes: bool,
    /// Instances that have a `watch-ID` thread.
    pub watched: Mutex<HashSet<String>>,
    /// Signalled when a watch thread has finished its cleanup.
    pub watch_done: std::sync::Condvar,
}

/// Runs the daemon role (`cblockd`, `cblock daemon`).
pub fn main(args: &[String]) -> crate::Result<ExitCode> {
    let args = crate::parse_or_exit!(Args, &["cblockd"], args);

    let tty_buffer = args.tty_buffer_size.unwrap_or(DEFAULT_TTY_BUFFER);
    if tty_buffer > MAX_TTY_BUFFER {
        return Err(Error::Invalid(format!(
            "--tty-buffer-size {tty_buffer} is over the limit of {MAX_TTY_BUFFER} bytes; give a smaller size"
        ))
        .into());
    }
    let sock_owner_gid = args.sock_owner.as_deref().map(lookup_group).transpose()?;

    let data_dir = args
        .data_directory
        .unwrap_or_else(|| PathBuf::from(crate::platform::DEFAULT_DATA_DIR));
    std::fs::DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(&data_dir)
        .map_err(|source| Error::Io {
            context: format!("create the data directory {}", data_dir.display()),
            source,
        })?;
    let store = Store::open(&data_dir)?;
    let images = match &args.storage {
        Some(driver) => {
            crate::image::Store::open(&data_dir, crate::storage::DriverKind::parse(driver)?)?
        }
        None => crate::image::Store::open_or_create(&data_dir)?,
    };
    let exe = std::env::current_exe().map_err(|source| Error::Io {
        context: "find the path of this binary".into(),
        source,
    })?;

    let socket = args
        .unix_sock
        .unwrap_or_else(|| PathBuf::from(DEFAULT_SOCKET));
    let listener = bind_socket(&socket, sock_owner_gid)?;

    if args.background {
        background(args.logfile.as_deref())?;
    }
    log::init(args.logfile.as_deref(), args.verbose).map_err(|source| Error::Io {
        context: format!(
            "open the log file {}",
            args.logfile.as_deref().unwrap_or(Path::new("")).display()
        ),
        source,
    })?;
    // SAFETY: setting a signal to SIG_IGN installs no handler code.
    unsafe { libc::signal(libc::SIGPIPE, libc::SIG_IGN) };
    let signals = block_signals()?;
    // Panics go to the log with the thread's name; the connection thread's
    // catch_unwind then keeps the daemon running.
    std::panic::set_hook(Box::new(|info| {
        let thread = std::thread::current();
        log_error!(
            None,
            "thread {} panicked: {info}",
            thread.name().unwrap_or("unnamed")
        );
    }));

    let init = if is_static(&exe) {
        Some(exe.clone())
    } else {
        log_warn!(
            None,
            "{} is dynamically linked, so containers run without cblock-init as PID 1; \
             install the static build for zombie reaping and signal forwarding",
            exe.display()
        );
        None
    };
    let daemon = Arc::new(Daemon {
        store,
        images,
        init,
        data_dir,
        exe,
        tty_buffer,
        sock_owner_gid,
        test_processes: args.enable_test_processes,
        watched: Mutex::new(HashSet::new()),
        watch_done: std::sync::Condvar::new(),
    });
    log_info!(
        None,
        "cblockd {} starting: socket {}, data directory {}, storage {}",
        env!("CARGO_PKG_VERSION"),
        socket.display(),
        daemon.data_dir.display(),
        daemon.images.driver().kind().name()
    );
    if daemon.test_processes {
        log_warn!(
            None,
            "test processes are enabled: clients may run host processes"
        );
    }

    spawn_signal_thread(signals, socket.clone())?;
    probes::register();
    server::recover(&daemon);
    server::accept_loop(&daemon, listener);
    Ok(ExitCode::SUCCESS)
}

/// Returns whether the ELF file at `path` needs no program interpreter,
/// so that it runs inside any container.
fn is_static(path: &Path) -> bool {
    std::fs::read(path)
        .ok()
        .and_then(|bytes| {
            goblin::elf::Elf::parse(&bytes)
                .ok()
                .map(|elf| elf.interpreter.is_none())
        })
        .unwrap_or(false)
}

fn lookup_group(name: &str) -> Result<u32, Error> {
    if let Ok(gid) = name.parse::<u32>() {
        return Ok(gid);
    }
    match nix::unistd::Group::from_name(name) {
        Ok(Some(group)) => Ok(group.gid.as_raw()),
        Ok(None) => Err(Error::Invalid(format!(
            "--sock-owner group {name:?} does not exist; create it or give an existing group"
        ))),
        Err(err) => Err(Error::Io {
            context: format!("look up group {name:?}"),
            source: err.into(),
        }),
    }
}

/// Binds the control socket. A socket file left by a dead daemon is
/// replaced, and one that a live daemon accepts connections on is an error.
fn bind_socket(path: &Path, group: Option<u32>) -> Result<UnixListener, Error> {
    if path.exists() {
        if UnixStream::connect(path).is_ok() {
            return Err(Error::Invalid(format!(
                "another cblockd is already listening on {}; stop it or pass another -U/--unix-sock",
                path.display()
            )));
        }
        std::fs::remove_file(path).map_err(|source| Error::Io {
            context: format!("remove the stale socket {}", path.display()),
            source,
        })?;
    }

    let listener = UnixListener::bind(path).map_err(|source| Error::Io {
        context: format!("listen on {}", path.display()),
        source,
    })?;
    let mode = if group.is_some() { 0o660 } else { 0o600 };
    if let Some(gid) = group {
        nix::unistd::chown(path, None, Some(nix::unistd::Gid::from_raw(gid))).map_err(|err| {
            Error::Io {
                context: format!("give {} to group {gid}", path.display()),
                source: err.into(),
            }
        })?;
    }
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode)).map_err(|source| {
        Error::Io {
            context: format!("set the mode of {}", path.display()),
            source,
        }
    })?;
    Ok(listener)
}

/// Forks into the background. The parent prints the child's pid and exits.
/// The child starts a new session with standard input on /dev/null and
/// standard output and error on the log file, if any.
fn background(logfile: Option<&Path>) -> Result<(), Error> {
    use nix::unistd::{dup2, fork, setsid, ForkResult};
    use std::os::fd::AsRawFd;

    let io_err = |context: &str| {
        let context = context.to_string();
        move |err: nix::Error| Error::Io {
            context,
            source: err.into(),
        }
    };
    let null = std::fs::File::open("/dev/null").map_err(|source| Error::Io {
        context: "open /dev/null".into(),
        source,
    })?;
    let output = match logfile {
        Some(path) => std::fs::OpenOptions::new()
            .append(true)
            .create(true)
            .open(path),
        None => std::fs::OpenOptions::new().write(true).open("/dev/null"),
    }
    .map_err(|source| Error::Io {
        context: "open the output of the background daemon".into(),
        source,
    })?;

    // SAFETY: no thread has been started yet, so the child is a complete
    // copy of a single-threaded process.
    match unsafe { fork() }.map_err(io_err("fork into the background"))? {
        ForkResult::Parent { child } => {
            println!("{child}");
            std::process::exit(0);
        }
        ForkResult::Child => {}
    }
    setsid().map_err(io_err("start a new session"))?;
    dup2(null.as_raw_fd(), 0).map_err(io_err("redirect standard input"))?;
    dup2(output.as_raw_fd(), 1).map_err(io_err("redirect standard output"))?;
    dup2(output.as_raw_fd(), 2).map_err(io_err("redirect standard error"))?;
    std::env::set_current_dir("/").map_err(|source| Error::Io {
        context: "change to /".into(),
        source,
    })?;
    Ok(())
}

/// Blocks SIGTERM, SIGINT and SIGHUP in this thread and every thread
/// started after it, so that only the `signals` thread receives them.
fn block_signals() -> Result<nix::sys::signal::SigSet, Error> {
    use nix::sys::signal::{SigSet, Signal};
    let mut set = SigSet::empty();
    set.add(Signal::SIGTERM);
    set.add(Signal::SIGINT);
    set.add(Signal::SIGHUP);
    set.thread_block().map_err(|err| Error::Io {
        context: "block signals".into(),
        source: err.into(),
    })?;
    Ok(set)
}

/// SIGTERM and SIGINT remove the socket and end the daemon; the instances
/// keep running under their supervisors. SIGHUP reopens the log file.
fn spawn_signal_thread(set: nix::sys::signal::SigSet, socket: PathBuf) -> Result<(), Error> {
    use nix::sys::signal::Signal;
    let spawned = std::thread::Builder::new()
        .name("signals".into())
        .spawn(move || loop {
            match set.wait() {
                Ok(Signal::SIGHUP) => match log::reopen() {
                    Ok(()) => log_info!(None, "reopened the log file on SIGHUP"),
                    Err(err) => log_error!(None, "failed to reopen the log file on SIGHUP: {err}"),
                },
                Ok(signal) => {
                    log_info!(
                        None,
                        "stopping on {signal}; running instances keep running under their supervisors"
                    );
                    let _ = std::fs::remove_file(&socket);
                    std::process::exit(0);
                }
                Err(err) => log_error!(None, "waiting for signals failed: {err}"),
            }
        });
    spawned.map(drop).map_err(|source| Error::Io {
        context: "start the signal thread".into(),
        source,
    })
}
