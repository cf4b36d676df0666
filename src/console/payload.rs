//! What runs on the console PTY: the seam between the supervisor and
//! whatever creates the container.

use std::io;
use std::os::fd::OwnedFd;
use std::os::unix::process::CommandExt;
use std::process::{Child, Command, Stdio};

use super::PayloadSpec;

/// Something the supervisor can start with a PTY slave as its terminal.
pub trait Payload {
    /// Starts the payload with `pty_slave` as its standard input, output,
    /// error and controlling terminal, in a session of its own.
    fn spawn(&self, pty_slave: OwnedFd) -> io::Result<Child>;
}

/// A plain host process run on the PTY, without isolation.
pub struct PlainProcess {
    pub argv: Vec<String>,
    pub env: Vec<String>,
    pub cwd: String,
}

/// PATH for processes that are given none.
const DEFAULT_PATH: &str = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin";

impl Payload for PlainProcess {
    fn spawn(&self, pty_slave: OwnedFd) -> io::Result<Child> {
        let (program, args) = self
            .argv
            .split_first()
            .ok_or_else(|| io::Error::new(io::ErrorKind::InvalidInput, "empty command"))?;

        let mut command = Command::new(program);
        command.args(args).env_clear().env("PATH", DEFAULT_PATH);
        for entry in &self.env {
            if let Some((key, value)) = entry.split_once('=') {
                command.env(key, value);
            }
        }
        command
            .current_dir(&self.cwd)
            .stdin(Stdio::from(pty_slave.try_clone()?))
            .stdout(Stdio::from(pty_slave.try_clone()?))
            .stderr(Stdio::from(pty_slave));

        // SAFETY: the closure only makes async-signal-safe calls (sigprocmask,
        // signal, setsid, ioctl) on the child's own state.
        unsafe {
            command.pre_exec(|| {
                reset_signals()?;
                crate::platform::pty::make_controlling_terminal(0)
            });
        }
        command.spawn()
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
// TODO: when crate::runtime lands, add a `Container` payload here whose
// spawn creates the OCI container with the PTY slave as its terminal (the
// runtime's `process.terminal` with this slave instead of a console socket)
// and returns the runtime's foreground child, so that stop signals and the
// exit status keep flowing through the same `Child`.
pub fn from_spec(spec: &PayloadSpec) -> Box<dyn Payload + Send + Sync> {
    match spec {
        PayloadSpec::Process { argv, env, cwd } => Box::new(PlainProcess {
            argv: argv.clone(),
            env: env.clone(),
            cwd: cwd.clone(),
        }),
    }
}
