//! Payloads, the programs on the console terminal: the seam between the
//! supervisor and whatever creates the process. A payload starts on a terminal and hands
//! back the terminal's master, the process id and a way to wait for it.

use std::io;
use std::os::fd::{AsRawFd, OwnedFd};
use std::os::unix::process::CommandExt;
use std::path::PathBuf;
use std::process::{Command, Stdio};

use super::PayloadSpec;
use crate::daemon::protocol::WindowSize;

/// A payload that runs.
pub struct Started {
    /// The master side of the payload's terminal.
    pub master: OwnedFd,
    /// The payload's process id in the host's pid namespace.
    pub pid: i32,
    /// The terminal's name, for listings.
    pub tty: String,
}

/// Something the supervisor can start on a terminal.
pub trait Payload: Send + Sync {
    /// Starts the payload on a terminal of `window` size, in a session of its
    /// own with the terminal as its controlling terminal. The size is set
    /// before the payload can write anything. Runs in the supervisor's
    /// starter process (see `starter`).
    fn start(&self, window: WindowSize) -> io::Result<Started>;

    /// Waits for the started payload `pid`, a child of the calling process,
    /// to end, cleans up after it and returns its exit status (128 plus
    /// the signal number for a killed process).
    fn wait(&self, pid: i32) -> i32;
}

/// Waits for child `pid` and returns its exit status, 128 plus the signal
/// number for a killed process, or 255 when it cannot be waited for.
fn wait_child(pid: i32) -> i32 {
    use nix::sys::wait::{waitpid, WaitStatus};
    loop {
        match waitpid(nix::unistd::Pid::from_raw(pid), None) {
            Ok(WaitStatus::Exited(_, code)) => return code,
            Ok(WaitStatus::Signaled(_, signal, _)) => return 128 + signal as i32,
            Ok(_) | Err(nix::errno::Errno::EINTR) => continue,
            Err(_) => return 255,
        }
    }
}

/// A plain host process run on a PTY, without isolation.
pub struct PlainProcess {
    pub argv: Vec<String>,
    pub env: Vec<String>,
    pub cwd: String,
}

/// PATH for processes that are given none.
const DEFAULT_PATH: &str = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin";

impl Payload for PlainProcess {
    fn start(&self, window: WindowSize) -> io::Result<Started> {
        let (program, args) = self
            .argv
            .split_first()
            .ok_or_else(|| io::Error::new(io::ErrorKind::InvalidInput, "empty command"))?;
        let (master, slave, path) = crate::platform::pty::open_pty(window.rows, window.cols)?;

        let mut command = Command::new(program);
        command.args(args).env_clear().env("PATH", DEFAULT_PATH);
        for entry in &self.env {
            if let Some((key, value)) = entry.split_once('=') {
                command.env(key, value);
            }
        }
        command
            .current_dir(&self.cwd)
            .stdin(Stdio::from(slave.try_clone()?))
            .stdout(Stdio::from(slave.try_clone()?))
            .stderr(Stdio::from(slave));

        // SAFETY: the closure only makes async-signal-safe calls (sigprocmask,
        // signal, setsid, ioctl) on the child's own state.
        unsafe {
            command.pre_exec(|| {
                reset_signals()?;
                crate::platform::pty::make_controlling_terminal(0)
            });
        }
        let child = command.spawn()?;
        // The command's copies of the slave close here, so reading the
        // master fails with EIO once the process and its children are done.
        drop(command);

        Ok(Started {
            master,
            pid: child.id() as i32,
            tty: path.display().to_string(),
        })
    }

    fn wait(&self, pid: i32) -> i32 {
        wait_child(pid)
    }
}

/// An OCI container created with cblocks' runtime from a bundle, with a
/// terminal the runtime creates inside the container.
pub struct OciContainer {
    pub bundle: PathBuf,
    pub runtime_root: PathBuf,
    pub container_id: String,
}

impl Payload for OciContainer {
    fn start(&self, window: WindowSize) -> io::Result<Started> {
        use crate::oci::runtime_spec::ConsoleSize;
        use crate::runtime::{ConsoleMode, Container, ContainerConfig};
        let runtime_error = |step: &str| {
            let step = step.to_string();
            move |err: crate::runtime::Error| io::Error::other(format!("{step}: {err}"))
        };

        // The runtime opens the terminal with the window's size, so the
        // container starts at once with its final size already set.
        let console_size = (window.rows > 0 && window.cols > 0).then_some(ConsoleSize {
            height: window.rows,
            width: window.cols,
        });
        let mut container = Container::create(&ContainerConfig {
            id: self.container_id.clone(),
            bundle: self.bundle.clone(),
            root_dir: self.runtime_root.clone(),
            console: ConsoleMode::Receive,
            runtime_exe: Some(std::env::current_exe()?),
            console_size,
            start_at_once: true,
            ..Default::default()
        })
        .map_err(runtime_error("create the container"))?;

        let Some(master) = container.take_console() else {
            let _ = container.delete(true);
            return Err(io::Error::other(
                "the container has no terminal; set process.terminal in its bundle",
            ));
        };
        let pid = container.pid().unwrap_or(0);
        let master_fd = master.as_raw_fd();

        Ok(Started {
            master,
            pid,
            tty: crate::platform::pty::slave_name(master_fd).unwrap_or_else(|_| "-".to_string()),
        })
    }

    fn wait(&self, pid: i32) -> i32 {
        let code = wait_child(pid);
        let deleted = crate::runtime::Container::load(&self.runtime_root, &self.container_id)
            .and_then(|container| container.delete(true));
        if let Err(err) = deleted {
            crate::log_error!(None, "failed to delete the container: {err}");
        }
        code
    }
}

/// Unblocks every signal and restores every default disposition. Meant
/// for `pre_exec`: std's `Command` keeps the parent's signal mask, and
/// cblockd blocks SIGTERM, SIGINT and SIGHUP for its signal thread, so
/// without this a payload could not be stopped with SIGTERM.
pub fn reset_signals() -> io::Result<()> {
    // SAFETY: sigemptyset, sigprocmask and signal are async-signal-safe and
    // only touch the local set and this process's signal state.
    unsafe {
        let mut set: libc::sigset_t = std::mem::zeroed();
        libc::sigemptyset(&mut set);
        if libc::sigprocmask(libc::SIG_SETMASK, &set, std::ptr::null_mut()) != 0 {
            return Err(io::Error::last_os_error());
        }
        for signal in 1..32 {
            if signal != libc::SIGKILL && signal != libc::SIGSTOP {
                libc::signal(signal, libc::SIG_DFL);
            }
        }
    }
    Ok(())
}

/// Returns the payload described by `spec`.
pub fn from_spec(spec: &PayloadSpec) -> Box<dyn Payload> {
    match spec {
        PayloadSpec::Process { argv, env, cwd } => Box::new(PlainProcess {
            argv: argv.clone(),
            env: env.clone(),
            cwd: cwd.clone(),
        }),
        PayloadSpec::Container {
            bundle,
            runtime_root,
            container_id,
        } => Box::new(OciContainer {
            bundle: bundle.clone(),
            runtime_root: runtime_root.clone(),
            container_id: container_id.clone(),
        }),
    }
}
