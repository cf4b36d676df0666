//! The build context: the directory `cblock build PATH` sends to the daemon,
//! minus the files that `.cblockignore` (or `.dockerignore`) excludes, as an
//! uncompressed tar stream; and the digest of ADD and COPY sources that the
//! cache keys include.

use std::fs;
use std::io::{self, Write};
use std::path::{Path, PathBuf};

use sha2::{Digest, Sha256};

use crate::fim;

/// Errors of context packing and digesting.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("build context {path}: {source}")]
    Io { path: PathBuf, source: io::Error },
    #[error("build context: {0}")]
    Scan(#[from] fim::Error),
}

/// Decides whether a context path (relative, `/`-separated) is left out.
pub trait Exclude {
    fn is_excluded(&self, relative: &str, is_dir: bool) -> bool;

    /// Returns true when a path below an excluded directory can be included
    /// again (a `!` pattern), so the directory must still be walked.
    fn has_exceptions(&self) -> bool {
        false
    }
}

impl Exclude for crate::cblockfile::ignore::Patterns {
    fn is_excluded(&self, relative: &str, _is_dir: bool) -> bool {
        crate::cblockfile::ignore::Patterns::is_excluded(self, relative)
    }

    fn has_exceptions(&self) -> bool {
        self.patterns().iter().any(|pattern| pattern.exception)
    }
}

/// Excludes nothing.
pub struct IncludeAll;

impl Exclude for IncludeAll {
    fn is_excluded(&self, _relative: &str, _is_dir: bool) -> bool {
        false
    }
}

/// Counts of what `pack` wrote.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct Packed {
    pub files: u64,
    /// Bytes of regular file contents (the stream is larger by its headers).
    pub bytes: u64,
}

/// Writes the context under `dir` to `out` as a tar stream, in sorted order
/// so that the same tree gives the same stream. Symbolic links are stored as
/// links, never followed. `progress` is called after each file with the
/// running counts.
pub fn pack(
    dir: &Path,
    exclude: &dyn Exclude,
    out: impl Write,
    progress: &mut dyn FnMut(Packed),
) -> Result<Packed, Error> {
    let mut builder = tar::Builder::new(out);
    builder.follow_symlinks(false);
    // Complete headers: COPY keeps a file's mode and modification time, as
    // in Docker, so a 0600 file stays 0600. The order keeps the stream the
    // same for the same tree.
    builder.mode(tar::HeaderMode::Complete);
    let mut packed = Packed::default();
    let mut pending = vec![String::new()];

    while let Some(relative) = pending.pop() {
        let host = if relative.is_empty() {
            dir.to_path_buf()
        } else {
            dir.join(&relative)
        };
        let io_error = |source| Error::Io {
            path: host.clone(),
            source,
        };
        let meta = fs::symlink_metadata(&host).map_err(io_error)?;

        if !relative.is_empty() {
            if exclude.is_excluded(&relative, meta.is_dir()) {
                // An excluded directory is still walked when a `!` pattern
                // may bring back something inside it.
                if !(meta.is_dir() && exclude.has_exceptions()) {
                    continue;
                }
                pending.extend(child_names(&host, &relative)?);
                continue;
            }
            builder
                .append_path_with_name(&host, &relative)
                .map_err(io_error)?;
            packed.files += 1;
            if meta.is_file() {
                packed.bytes += meta.len();
            }
            progress(packed);
        }

        if meta.is_dir() {
            pending.extend(child_names(&host, &relative)?);
        }
    }

    builder
        .into_inner()
        .and_then(|mut out| out.flush())
        .map_err(|source| Error::Io {
            path: dir.to_path_buf(),
            source,
        })?;
    Ok(packed)
}

/// Returns the relative paths of the entries of directory `host`, in
/// reverse order, for a stack that pops them in sorted order.
fn child_names(host: &Path, relative: &str) -> Result<Vec<String>, Error> {
    let io_error = |source| Error::Io {
        path: host.to_path_buf(),
        source,
    };
    let mut names: Vec<String> = fs::read_dir(host)
        .map_err(io_error)?
        .map(|entry| entry.map(|e| e.file_name().to_string_lossy().into_owned()))
        .collect::<Result<_, _>>()
        .map_err(io_error)?;
    names.sort_by(|a, b| b.cmp(a));
    Ok(names
        .into_iter()
        .map(|name| {
            if relative.is_empty() {
                name
            } else {
                format!("{relative}/{name}")
            }
        })
        .collect())
}

/// Copies the context under `dir`, minus what `exclude` leaves out, into
/// the empty directory `dest` through the same tar stream the client sends
/// to the daemon, so that the build reads only what it was given.
pub fn stage(dir: &Path, exclude: &(dyn Exclude + Sync), dest: &Path) -> Result<Packed, Error> {
    let (mut reader, writer) = io::pipe().map_err(|source| Error::Io {
        path: dir.to_path_buf(),
        source,
    })?;
    std::thread::scope(|scope| {
        let packer = scope.spawn(move || pack(dir, exclude, writer, &mut |_| {}));
        let options = crate::storage::ExtractOptions::default();
        let extracted = crate::storage::extract(&mut reader, dest, &options);
        let _ = io::copy(&mut reader, &mut io::sink());
        let packed = packer.join().expect("the context packer thread panicked")?;
        extracted.map_err(|err| Error::Io {
            path: dest.to_path_buf(),
            source: io::Error::other(err.to_string()),
        })?;
        Ok(packed)
    })
}

/// Returns the hex SHA-256 digest of the given source paths below `root`:
/// their names relative to `root`, types, modes, sizes, symlink targets and
/// contents, but not owners or times, which COPY does not carry over.
pub fn sources_digest(root: &Path, paths: &[PathBuf]) -> Result<String, Error> {
    let mut hasher = Sha256::new();
    for path in paths {
        let relative = path.strip_prefix(root).unwrap_or(path);
        hasher.update(relative.as_os_str().as_encoded_bytes());
        hasher.update(b"\0");
        for mut entry in fim::scan(path)? {
            entry.uid = 0;
            entry.gid = 0;
            hasher.update(fim::write_spec(std::slice::from_ref(&entry)).as_bytes());
        }
    }
    Ok(format!("{:x}", hasher.finalize()))
}

#[cfg(test)]
mod tests {
    use super::*;

    struct ExcludeLogs;

    impl Exclude for ExcludeLogs {
        fn is_excluded(&self, relative: &str, _is_dir: bool) -> bool {
            relative.ends_with(".log")
        }
    }

    fn temp_tree(label: &str) -> PathBuf {
        let dir = std::env::temp_dir().join(format!("cblocks-ctx-{label}-{}", std::process::id()));
        let _ = fs::remove_dir_all(&dir);
        fs::create_dir_all(dir.join("src")).unwrap();
        fs::write(dir.join("src/main.c"), "int main(void) { return 0; }\n").unwrap();
        fs::write(dir.join("build.log"), "noise").unwrap();
        std::os::unix::fs::symlink("/etc/passwd", dir.join("link")).unwrap();
        dir
    }

    #[test]
    fn pack_sorted_without_excluded() {
        let dir = temp_tree("pack");
        let mut stream = Vec::new();
        let packed = pack(&dir, &ExcludeLogs, &mut stream, &mut |_| {}).unwrap();

        let mut archive = tar::Archive::new(stream.as_slice());
        let names: Vec<(String, tar::EntryType)> = archive
            .entries()
            .unwrap()
            .map(|entry| {
                let entry = entry.unwrap();
                let name = entry.path().unwrap().to_string_lossy().into_owned();
                (name, entry.header().entry_type())
            })
            .collect();
        fs::remove_dir_all(&dir).unwrap();

        let expected = vec![
            ("link".to_string(), tar::EntryType::Symlink),
            ("src".to_string(), tar::EntryType::Directory),
            ("src/main.c".to_string(), tar::EntryType::Regular),
        ];
        assert_eq!(names, expected);
        assert_eq!(packed.files, 3);
        assert_eq!(packed.bytes, 29);
    }

    #[test]
    fn stage_keeps_modes_and_times() {
        use std::os::unix::fs::PermissionsExt;
        let dir = temp_tree("modes");
        fs::write(dir.join("secret"), "key").unwrap();
        fs::set_permissions(dir.join("secret"), fs::Permissions::from_mode(0o600)).unwrap();
        fs::set_permissions(dir.join("src"), fs::Permissions::from_mode(0o700)).unwrap();
        let old = std::time::SystemTime::UNIX_EPOCH + std::time::Duration::from_secs(1_000_000_000);
        fs::File::options()
            .write(true)
            .open(dir.join("secret"))
            .unwrap()
            .set_modified(old)
            .unwrap();
        let dest = dir.with_extension("staged");
        let _ = fs::remove_dir_all(&dest);
        fs::create_dir_all(&dest).unwrap();

        let staged = stage(&dir, &ExcludeLogs, &dest);
        let secret = fs::metadata(dest.join("secret"));
        let src = fs::metadata(dest.join("src"));
        fs::remove_dir_all(&dir).unwrap();
        fs::remove_dir_all(&dest).unwrap();

        staged.unwrap();
        let secret = secret.unwrap();
        assert_eq!(secret.permissions().mode() & 0o7777, 0o600);
        assert_eq!(secret.modified().unwrap(), old);
        assert_eq!(src.unwrap().permissions().mode() & 0o7777, 0o700);
    }

    #[test]
    fn sources_digest_tracks_contents() {
        let dir = temp_tree("digest");
        let sources = [dir.join("src")];
        let before = sources_digest(&dir, &sources).unwrap();
        let unchanged = sources_digest(&dir, &sources).unwrap();
        fs::write(dir.join("src/main.c"), "int main(void) { return 1; }\n").unwrap();
        let after = sources_digest(&dir, &sources).unwrap();

        // The same tree elsewhere, as each build stages the context anew.
        let moved = dir.with_extension("moved");
        let _ = fs::remove_dir_all(&moved);
        fs::rename(&dir, &moved).unwrap();
        let relocated = sources_digest(&moved, &[moved.join("src")]).unwrap();
        fs::remove_dir_all(&moved).unwrap();

        assert_eq!(before, unchanged);
        assert_ne!(before, after);
        assert_eq!(after, relocated);
    }
}
