//! Durable file updates and the store lock.
//!
//! Every file the store keeps is written to `tmp/`, flushed with fsync,
//! renamed into place, and its directory flushed. A reader therefore sees
//! either the old file or the new one, and a crash leaves at most a file in
//! `tmp/`, which the next open removes. `tmp/` sits on the same file system as the rest of
//! the store, which rename needs.

use std::fs::{self, File, OpenOptions};
use std::io::{self, Write};
use std::os::fd::AsRawFd;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{SystemTime, UNIX_EPOCH};

use super::{Error, Result};

pub(crate) fn io_err(context: impl Into<String>) -> impl FnOnce(io::Error) -> Error {
    let context = context.into();
    move |source| Error::Io { context, source }
}

/// Returns a path in `tmp_dir` that no other writer in any process uses.
pub fn temp_path(tmp_dir: &Path, hint: &str) -> PathBuf {
    static COUNTER: AtomicU64 = AtomicU64::new(0);
    let n = COUNTER.fetch_add(1, Ordering::Relaxed);
    let nanos = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.subsec_nanos())
        .unwrap_or(0);
    tmp_dir.join(format!("{hint}-{}-{n}-{nanos}", std::process::id()))
}

/// Flushes the directory `dir`, so that a rename or unlink in it is durable.
pub fn sync_dir(dir: &Path) -> Result<()> {
    File::open(dir)
        .and_then(|f| f.sync_all())
        .map_err(io_err(format!("fsync directory {}", dir.display())))
}

/// Moves the complete, flushed file `from` to `to` and flushes `to`'s
/// directory.
pub fn commit_file(from: &Path, to: &Path) -> Result<()> {
    fs::rename(from, to).map_err(io_err(format!(
        "rename {} to {}",
        from.display(),
        to.display()
    )))?;
    sync_dir(to.parent().unwrap_or(Path::new("/")))
}

/// Writes `bytes` to `path` through a temporary file in `tmp_dir`.
pub fn write_atomic(tmp_dir: &Path, path: &Path, bytes: &[u8]) -> Result<()> {
    let temp = temp_path(tmp_dir, "write");
    let result = (|| {
        let mut file = File::create(&temp)?;
        file.write_all(bytes)?;
        file.sync_all()
    })();
    if let Err(source) = result {
        let _ = fs::remove_file(&temp);
        return Err(Error::Io {
            context: format!("write {}", temp.display()),
            source,
        });
    }
    commit_file(&temp, path)
}

/// Removes `path` durably; a missing file is not an error.
pub fn remove_durable(path: &Path) -> Result<()> {
    match fs::remove_file(path) {
        Ok(()) => sync_dir(path.parent().unwrap_or(Path::new("/"))),
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(()),
        Err(e) => Err(Error::Io {
            context: format!("remove {}", path.display()),
            source: e,
        }),
    }
}

/// A held `flock(2)` on the store's lock file, released on drop.
///
/// Each guard opens the file anew, so threads of one process serialise too:
/// flock locks belong to open file descriptions.
pub struct StoreLock {
    _file: File,
}

impl StoreLock {
    pub fn acquire(path: &Path, exclusive: bool) -> Result<Self> {
        let file = OpenOptions::new()
            .create(true)
            .truncate(false)
            .write(true)
            .open(path)
            .map_err(io_err(format!("open lock file {}", path.display())))?;
        let operation = if exclusive {
            libc::LOCK_EX
        } else {
            libc::LOCK_SH
        };
        loop {
            // SAFETY: flock on a descriptor owned by `file`.
            if unsafe { libc::flock(file.as_raw_fd(), operation) } == 0 {
                break;
            }
            let err = io::Error::last_os_error();
            if err.kind() != io::ErrorKind::Interrupted {
                return Err(Error::Io {
                    context: format!("lock {}", path.display()),
                    source: err,
                });
            }
        }
        Ok(StoreLock { _file: file })
    }
}

/// Formats a time as RFC 3339 in UTC with seconds, as image configurations
/// record it.
pub fn rfc3339(time: SystemTime) -> String {
    let secs = time
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0) as i64;
    let (days, rest) = (secs.div_euclid(86_400), secs.rem_euclid(86_400));
    // Civil date from days since 1970-01-01 (Howard Hinnant's algorithm).
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    format!(
        "{year:04}-{month:02}-{day:02}T{:02}:{:02}:{:02}Z",
        rest / 3600,
        rest % 3600 / 60,
        rest % 60
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[test]
    fn rfc3339_known_dates() {
        assert_eq!(rfc3339(UNIX_EPOCH), "1970-01-01T00:00:00Z");
        let t = UNIX_EPOCH + Duration::from_secs(1_709_251_199);
        assert_eq!(rfc3339(t), "2024-02-29T23:59:59Z");
    }
}
