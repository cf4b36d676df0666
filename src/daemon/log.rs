//! The one logger of cblockd and the supervisors: lines of
//! `TIMESTAMP LEVEL [ID] message` on standard error or in a log file that
//! is opened for appending and reopened on SIGHUP, so rotation by
//! logrotate or newsyslog works.

use std::fs::{File, OpenOptions};
use std::io::{self, Write};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Mutex;
use std::time::{SystemTime, UNIX_EPOCH};

/// Severity of a log line.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Level {
    Error,
    Warn,
    Info,
    Debug,
}

impl Level {
    fn as_str(self) -> &'static str {
        match self {
            Level::Error => "ERROR",
            Level::Warn => "WARN",
            Level::Info => "INFO",
            Level::Debug => "DEBUG",
        }
    }
}

struct Target {
    path: Option<PathBuf>,
    file: Option<File>,
}

static TARGET: Mutex<Target> = Mutex::new(Target {
    path: None,
    file: None,
});
static VERBOSE: AtomicBool = AtomicBool::new(false);

/// Sends log lines to `path` (appended, created with mode 0600), or to
/// standard error when `path` is `None`.
pub fn init(path: Option<&Path>, verbose: bool) -> io::Result<()> {
    VERBOSE.store(verbose, Ordering::Relaxed);
    let file = path.map(open_log).transpose()?;
    let mut target = TARGET.lock().unwrap_or_else(|e| e.into_inner());
    target.path = path.map(Path::to_path_buf);
    target.file = file;
    Ok(())
}

fn open_log(path: &Path) -> io::Result<File> {
    use std::os::unix::fs::OpenOptionsExt;
    OpenOptions::new()
        .append(true)
        .create(true)
        .mode(0o600)
        .open(path)
}

/// Reopens the log file after it was rotated away. Returns the error of
/// the open, and keeps writing to the old file in that case.
pub fn reopen() -> io::Result<()> {
    let path = {
        let target = TARGET.lock().unwrap_or_else(|e| e.into_inner());
        target.path.clone()
    };
    let Some(path) = path else { return Ok(()) };
    let file = open_log(&path)?;
    TARGET.lock().unwrap_or_else(|e| e.into_inner()).file = Some(file);
    Ok(())
}

/// Writes one log line. `id` is the instance or build id the line is
/// about, if any. Debug lines are written only with `--verbose`.
pub fn write(level: Level, id: Option<&str>, message: &str) {
    if level == Level::Debug && !VERBOSE.load(Ordering::Relaxed) {
        return;
    }
    let mut line = format!("{} {:<5} ", timestamp(SystemTime::now()), level.as_str());
    if let Some(id) = id {
        line.push('[');
        line.push_str(id);
        line.push_str("] ");
    }
    line.push_str(message);
    line.push('\n');

    // The line is formatted before the lock and written with one call, so
    // lines of different threads never mix. Logging must never fail the
    // caller, so write errors are dropped.
    let mut target = TARGET.lock().unwrap_or_else(|e| e.into_inner());
    match target.file.as_mut() {
        Some(file) => drop(file.write_all(line.as_bytes())),
        None => drop(io::stderr().write_all(line.as_bytes())),
    }
}

/// Formats a time as RFC 3339 in UTC with second precision.
pub fn timestamp(time: SystemTime) -> String {
    let secs = time.duration_since(UNIX_EPOCH).map_or(0, |d| d.as_secs());
    let (days, rem) = (secs / 86_400, secs % 86_400);
    let (year, month, day) = civil_from_days(days as i64);
    format!(
        "{year:04}-{month:02}-{day:02}T{:02}:{:02}:{:02}Z",
        rem / 3600,
        rem % 3600 / 60,
        rem % 60
    )
}

/// Converts days since 1970-01-01 to a proleptic Gregorian date, after
/// Howard Hinnant's `civil_from_days` algorithm.
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

/// Logs at error level.
#[macro_export]
macro_rules! log_error {
    ($id:expr, $($arg:tt)*) => {
        $crate::daemon::log::write($crate::daemon::log::Level::Error, $id, &format!($($arg)*))
    };
}

/// Logs at warning level.
#[macro_export]
macro_rules! log_warn {
    ($id:expr, $($arg:tt)*) => {
        $crate::daemon::log::write($crate::daemon::log::Level::Warn, $id, &format!($($arg)*))
    };
}

/// Logs at info level.
#[macro_export]
macro_rules! log_info {
    ($id:expr, $($arg:tt)*) => {
        $crate::daemon::log::write($crate::daemon::log::Level::Info, $id, &format!($($arg)*))
    };
}

/// Logs at debug level (only with `--verbose`).
#[macro_export]
macro_rules! log_debug {
    ($id:expr, $($arg:tt)*) => {
        $crate::daemon::log::write($crate::daemon::log::Level::Debug, $id, &format!($($arg)*))
    };
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[test]
    fn timestamp_known_dates() {
        assert_eq!(timestamp(UNIX_EPOCH), "1970-01-01T00:00:00Z");
        let leap = UNIX_EPOCH + Duration::from_secs(951_782_400 + 3661);
        assert_eq!(timestamp(leap), "2000-02-29T01:01:01Z");
        let later = UNIX_EPOCH + Duration::from_secs(1_798_761_599);
        assert_eq!(timestamp(later), "2026-12-31T23:59:59Z");
    }
}
