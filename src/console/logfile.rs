//! The console log: `console.log`, rotated to `console.log.1` when it
//! reaches its size limit, so one instance uses at most twice that limit.

use std::fs::{self, File, OpenOptions};
use std::io::{self, Write};
use std::path::{Path, PathBuf};

use super::LOG_FILE;

/// An open console log with rotation.
pub struct ConsoleLog {
    path: PathBuf,
    file: File,
    size: u64,
    max: u64,
}

impl ConsoleLog {
    /// Opens (appending) the log in `dir`.
    pub fn open(dir: &Path, max: u64) -> io::Result<ConsoleLog> {
        let path = dir.join(LOG_FILE);
        let file = open_append(&path)?;
        let size = file.metadata()?.len();
        Ok(ConsoleLog {
            path,
            file,
            size,
            max: max.max(1),
        })
    }

    /// Appends `data`, rotating first when it would pass the limit.
    pub fn write(&mut self, data: &[u8]) -> io::Result<()> {
        if self.size > 0 && self.size + data.len() as u64 > self.max {
            fs::rename(&self.path, rotated(&self.path))?;
            self.file = open_append(&self.path)?;
            self.size = 0;
        }
        self.file.write_all(data)?;
        self.size += data.len() as u64;
        Ok(())
    }
}

fn open_append(path: &Path) -> io::Result<File> {
    use std::os::unix::fs::OpenOptionsExt;
    OpenOptions::new()
        .append(true)
        .create(true)
        .mode(0o600)
        .open(path)
}

fn rotated(path: &Path) -> PathBuf {
    let mut name = path.as_os_str().to_owned();
    name.push(".1");
    PathBuf::from(name)
}

/// Reads the whole console log of the instance in `dir`, the rotated part
/// first. Missing files read as empty.
pub fn read_log(dir: &Path) -> io::Result<Vec<u8>> {
    let path = dir.join(LOG_FILE);
    let mut out = Vec::new();
    for part in [rotated(&path), path] {
        match fs::read(&part) {
            Ok(bytes) => out.extend_from_slice(&bytes),
            Err(err) if err.kind() == io::ErrorKind::NotFound => {}
            Err(err) => return Err(err),
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn log_rotates_at_limit() {
        let dir = std::env::temp_dir().join(format!("cblock-log-test-{}", std::process::id()));
        fs::create_dir_all(&dir).unwrap();
        let mut log = ConsoleLog::open(&dir, 10).unwrap();
        log.write(b"0123456").unwrap();
        log.write(b"789abc").unwrap();
        log.write(b"def").unwrap();
        assert_eq!(fs::read(dir.join("console.log.1")).unwrap(), b"0123456");
        assert_eq!(fs::read(dir.join("console.log")).unwrap(), b"789abcdef");
        assert_eq!(read_log(&dir).unwrap(), b"0123456789abcdef");
        log.write(b"ghij").unwrap();
        assert_eq!(fs::read(dir.join("console.log.1")).unwrap(), b"789abcdef");
        fs::remove_dir_all(&dir).unwrap();
    }
}
