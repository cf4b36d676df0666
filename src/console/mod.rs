//! The per-container supervisor: a small process (the same binary, started
//! as `cblock _supervisor DIR`) that holds the container's PTY, keeps the
//! scrollback, writes the console log and serves attach requests on a
//! per-instance socket. It detaches from cblockd (double fork and setsid),
//! so containers keep running while the daemon restarts.
//!
//! The files of one instance, all in its directory under
//! `DATA/instances/ID/`:
//!
//! | file | written by | contents |
//! | --- | --- | --- |
//! | `config.json` | cblockd | what to run and how (`InstanceConfig`) |
//! | `state.json` | supervisor | supervisor pid, payload pid, TTY path |
//! | `exit.json` | supervisor | exit status, written once by rename |
//! | `console.sock` | supervisor | attach socket, removed at exit |
//! | `console.log`, `console.log.1` | supervisor | console output, rotated |
//! | `supervisor.log` | supervisor | the supervisor's own log lines |

mod logfile;
mod payload;
mod ring;
mod starter;
mod supervisor;

use std::fs;
use std::io::{self, Write};
use std::path::{Path, PathBuf};
use std::time::{SystemTime, UNIX_EPOCH};

use serde::{Deserialize, Serialize};

use crate::daemon::protocol::WindowSize;

pub use logfile::read_log;
pub use payload::{reset_signals, OciContainer, Payload, PlainProcess, Started};
pub use supervisor::supervisor_main;

/// Errors of this module.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("{context}: {source}")]
    Io {
        context: String,
        source: std::io::Error,
    },
    #[error("usage: cblock _supervisor INSTANCE_DIR (started by cblockd, not by hand)")]
    Usage,
    #[error("instance configuration {path}: {source}")]
    Config {
        path: PathBuf,
        source: serde_json::Error,
    },
}

impl Error {
    pub(crate) fn io(context: impl Into<String>, source: io::Error) -> Error {
        Error::Io {
            context: context.into(),
            source,
        }
    }
}

/// File names inside an instance directory.
pub const CONFIG_FILE: &str = "config.json";
pub const STATE_FILE: &str = "state.json";
pub const EXIT_FILE: &str = "exit.json";
pub const SOCKET_FILE: &str = "console.sock";
pub const LOG_FILE: &str = "console.log";
pub const SUPERVISOR_LOG_FILE: &str = "supervisor.log";

/// The program the supervisor runs on the terminal.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum PayloadSpec {
    /// A plain host process: used by the test suite until containers can
    /// be created.
    Process {
        argv: Vec<String>,
        env: Vec<String>,
        cwd: String,
    },
    /// An OCI container from the bundle in `bundle`, created with cblocks'
    /// runtime under the state root `runtime_root`.
    Container {
        bundle: PathBuf,
        runtime_root: PathBuf,
        container_id: String,
    },
}

/// The configuration of one instance, written by cblockd before it starts
/// the supervisor.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct InstanceConfig {
    pub id: String,
    pub name: Option<String>,
    pub image: String,
    /// `assembled` for a launched container, `building` for a build job.
    pub kind: String,
    /// Seconds since the Unix epoch.
    pub created: u64,
    pub payload: PayloadSpec,
    /// Scrollback kept for re-attaching consoles, in bytes.
    pub scrollback_bytes: usize,
    /// Size at which `console.log` is rotated to `console.log.1`.
    pub log_max_bytes: u64,
    /// Remove the instance when it exits (`launch --rm`).
    pub remove: bool,
    /// Signal that `instances --stop` sends first.
    pub stop_signal: i32,
    pub window: WindowSize,
    /// Start the payload at once instead of at the first attach.
    pub start: bool,
}

/// Runtime state the supervisor records.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct SupervisorState {
    pub supervisor_pid: i32,
    pub pid: Option<i32>,
    pub tty: String,
    pub started: Option<u64>,
}

/// The exit record of an instance.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct ExitRecord {
    /// Exit code, or 128 plus the signal number when a signal ended it.
    pub status: i32,
    pub finished: u64,
}

/// A request on a supervisor's socket. Only cblockd connects there: the
/// instance directories are readable by root alone.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case", deny_unknown_fields)]
pub enum SupervisorRequest {
    /// Attach a console: the scrollback (if `replay`), then live output;
    /// input and resize frames flow back. Starts a held payload.
    Attach { window: WindowSize, replay: bool },
    /// Start a held payload without attaching.
    Start,
    /// Wait for the exit: an `Exit` frame is sent when the payload ends.
    Watch,
    /// Send `signal`, then SIGKILL after `timeout_secs`; the response comes
    /// when the payload has ended.
    Stop { signal: i32, timeout_secs: u64 },
    /// Send the whole console log, then live output (`cblock logs -f`).
    Follow,
}

/// A response of a supervisor.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum SupervisorResponse {
    Ok,
    Stopped { status: i32 },
}

/// Returns the current time in seconds since the Unix epoch.
pub fn now_secs() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

/// Writes `value` as JSON to `dir/name` atomically: a temporary file in the
/// same directory, fsync, then rename, so readers see the old or the new
/// contents and never a torn file.
pub fn write_json_atomic<T: Serialize>(dir: &Path, name: &str, value: &T) -> io::Result<()> {
    write_json_replacing(dir, name, value, true)
}

/// Writes `value` as JSON to `dir/name` atomically like
/// [`write_json_atomic`], but without the fsync, which costs milliseconds.
/// Only for records of running processes, such as a payload's pid or exit
/// status: a crash of the writer leaves the old or the new file, and a
/// power loss ends the processes that the record describes.
pub fn write_json_runtime<T: Serialize>(dir: &Path, name: &str, value: &T) -> io::Result<()> {
    write_json_replacing(dir, name, value, false)
}

fn write_json_replacing<T: Serialize>(
    dir: &Path,
    name: &str,
    value: &T,
    flush: bool,
) -> io::Result<()> {
    let tmp = dir.join(format!(".{name}.tmp"));
    let body = serde_json::to_vec_pretty(value).map_err(io::Error::other)?;
    {
        let mut file = fs::File::create(&tmp)?;
        file.write_all(&body)?;
        if flush {
            file.sync_all()?;
        }
    }
    fs::rename(&tmp, dir.join(name))
}

/// Reads `dir/name` as JSON. A missing file is `Ok(None)`.
pub fn read_json<T: for<'de> Deserialize<'de>>(dir: &Path, name: &str) -> io::Result<Option<T>> {
    match fs::read(dir.join(name)) {
        Ok(body) => serde_json::from_slice(&body)
            .map(Some)
            .map_err(|err| io::Error::new(io::ErrorKind::InvalidData, err)),
        Err(err) if err.kind() == io::ErrorKind::NotFound => Ok(None),
        Err(err) => Err(err),
    }
}
