//! A container's record in its state directory, and the checks that tell
//! whether its process still runs.

use std::fs;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use super::Error;
use crate::oci::runtime_spec::{Spec, State, Status, OCI_VERSION};

/// File name of the record in the state directory.
pub const RECORD: &str = "state.json";
/// File name of the FIFO the created container waits on.
pub const EXEC_FIFO: &str = "exec.fifo";

/// The runtime's record of a container, kept between invocations.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Record {
    pub id: String,
    pub bundle: String,
    pub rootfs: String,
    pub pid: Option<i32>,
    /// Start time of the process in clock ticks after boot, to tell it from
    /// a later process that reuses the pid.
    pub start_time: Option<u64>,
    pub status: Status,
    /// RFC 3339 time of creation, in UTC.
    pub created: String,
    pub cgroup_dirs: Vec<PathBuf>,
    pub spec: Spec,
}

impl Record {
    pub fn new(id: &str, bundle: &Path, rootfs: &Path, spec: &Spec) -> Record {
        Record {
            id: id.to_string(),
            bundle: bundle.display().to_string(),
            rootfs: rootfs.display().to_string(),
            pid: None,
            start_time: None,
            status: Status::Creating,
            created: now_rfc3339(),
            cgroup_dirs: Vec::new(),
            spec: spec.clone(),
        }
    }

    pub fn load(state_dir: &Path) -> Result<Record, Error> {
        let path = state_dir.join(RECORD);
        let text = fs::read_to_string(&path).map_err(|e| Error::Io {
            context: format!("reading {}", path.display()),
            source: e,
        })?;
        serde_json::from_str(&text).map_err(|e| {
            Error::Setup(format!(
                "{} is invalid ({e}); delete the container's state directory",
                path.display()
            ))
        })
    }

    /// Writes the record atomically.
    pub fn save(&self, state_dir: &Path) -> Result<(), Error> {
        let path = state_dir.join(RECORD);
        let temporary = state_dir.join(format!("{RECORD}.tmp"));
        let text = serde_json::to_vec(self).map_err(|e| Error::Setup(e.to_string()))?;
        fs::write(&temporary, text)
            .and_then(|()| fs::rename(&temporary, &path))
            .map_err(|e| Error::Io {
                context: format!("writing {}", path.display()),
                source: e,
            })
    }

    /// Returns the status from the recorded one and the process's liveness.
    pub fn current_status(&self, state_dir: &Path) -> Status {
        let Some(pid) = self.pid else {
            return self.status;
        };
        if !process_alive(pid, self.start_time) {
            return Status::Stopped;
        }
        if state_dir.join(EXEC_FIFO).exists() {
            Status::Created
        } else {
            Status::Running
        }
    }

    pub fn oci_state(&self, status: Status) -> State {
        State {
            oci_version: OCI_VERSION.into(),
            id: self.id.clone(),
            status,
            pid: self.pid.filter(|_| status != Status::Stopped),
            bundle: self.bundle.clone(),
            annotations: self.spec.annotations.clone(),
        }
    }
}

/// Returns state letter and start time from `/proc/PID/stat`.
fn read_stat(pid: i32) -> Option<(char, u64)> {
    let text = fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // The command name may contain spaces and parentheses; the fields
    // after it start behind the last ')'.
    let rest = &text[text.rfind(')')? + 2..];
    let fields: Vec<&str> = rest.split(' ').collect();
    let state = fields.first()?.chars().next()?;
    // starttime is field 22 of the whole line, the 20th after the name.
    let start_time = fields.get(19)?.parse().ok()?;
    Some((state, start_time))
}

/// Returns the start time of `pid` in clock ticks after boot.
pub fn process_start_time(pid: i32) -> Option<u64> {
    read_stat(pid).map(|(_, start)| start)
}

/// Whether `pid` still runs (not a zombie) and is the process that started
/// at `start_time`.
pub fn process_alive(pid: i32, start_time: Option<u64>) -> bool {
    if pid <= 0 {
        return false;
    }
    match read_stat(pid) {
        Some((state, start)) => {
            let same_process = match start_time {
                Some(recorded) => recorded == start,
                None => true,
            };
            !matches!(state, 'Z' | 'X' | 'x') && same_process
        }
        None => false,
    }
}

/// Returns the current time as RFC 3339 in UTC, with nanoseconds.
pub fn now_rfc3339() -> String {
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap_or_default();
    let seconds = now.as_secs() as i64;
    let (days, rest) = (seconds.div_euclid(86_400), seconds.rem_euclid(86_400));
    let (year, month, day) = civil_from_days(days);
    format!(
        "{year:04}-{month:02}-{day:02}T{:02}:{:02}:{:02}.{:09}Z",
        rest / 3600,
        rest % 3600 / 60,
        rest % 60,
        now.subsec_nanos()
    )
}

/// Converts days since 1970-01-01 to a proleptic Gregorian date (Howard
/// Hinnant's algorithm).
fn civil_from_days(days: i64) -> (i64, u32, u32) {
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let month = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    let year = yoe + era * 400 + i64::from(month <= 2);
    (year, month, day)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn civil_dates() {
        assert_eq!(civil_from_days(0), (1970, 1, 1));
        assert_eq!(civil_from_days(19_723), (2024, 1, 1));
        assert_eq!(civil_from_days(11_016), (2000, 2, 29));
    }

    #[test]
    fn own_process_alive() {
        let pid = std::process::id() as i32;
        let start = process_start_time(pid);
        assert!(start.is_some());
        assert!(process_alive(pid, start));
        assert!(!process_alive(pid, start.map(|s| s + 1)));
    }
}
