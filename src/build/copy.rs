//! ADD and COPY: files from the build context or an earlier stage into the
//! stage's root file system.
//!
//! Sources are resolved inside their own root (the context, or the source
//! stage's root file system), so `..` and symlinks cannot reach the host. The
//! files are streamed as a tar archive into `storage::extract`, which writes
//! only below the destination directory; the destination itself is resolved
//! inside the stage's root by `rootpath`. New files belong to 0:0 unless
//! `--chown` says otherwise, as in Docker.

use std::fs;
use std::io::{self, Read, Write};
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};

use super::rootpath::{self, Missing};
use super::users::Owner;
use crate::storage::{self, ExtractOptions};

/// Errors of ADD and COPY.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("source {source_path:?} not found in {origin}")]
    SourceNotFound { source_path: String, origin: String },
    #[error("source pattern {pattern:?} matches nothing in {origin}")]
    NoMatch { pattern: String, origin: String },
    #[error("invalid source pattern {pattern:?}: {reason}")]
    BadPattern { pattern: String, reason: String },
    #[error(
        "{path:?}: names starting with .wh. cannot be stored in an image layer; rename the file"
    )]
    WhiteoutName { path: String },
    #[error("invalid --chmod value {0:?}: give octal permission bits such as 0755")]
    InvalidChmod(String),
    #[error(
        "destination {dest:?} must be a directory (end it with /) when copying several sources"
    )]
    DestNotDirectory { dest: String },
    #[error(transparent)]
    Resolve(#[from] rootpath::Error),
    #[error("copying into {dest}: {source}")]
    Extract {
        dest: String,
        source: storage::Error,
    },
    #[error("reading {path}: {source}")]
    Read { path: PathBuf, source: io::Error },
}

/// Parses `--chmod` (octal, at most 07777).
pub fn parse_chmod(text: &str) -> Result<u32, Error> {
    u32::from_str_radix(text, 8)
        .ok()
        .filter(|mode| *mode <= 0o7777)
        .ok_or_else(|| Error::InvalidChmod(text.to_string()))
}

/// One ADD or COPY, with every word already expanded.
pub struct Request<'a> {
    /// The root the sources are read from: the context directory or the
    /// source stage's root file system.
    pub source_root: &'a Path,
    /// How errors name `source_root` ("the build context", "stage 0").
    pub origin: &'a str,
    /// Source paths or glob patterns, relative to `source_root`.
    pub sources: &'a [String],
    /// Absolute destination inside the stage.
    pub dest: &'a str,
    /// Owner of the new files; 0:0 when `None`.
    pub owner: Option<Owner>,
    pub chmod: Option<u32>,
    /// ADD: unpack local tar archives (plain, gzip, bzip2, xz or zstd).
    pub unpack_archives: bool,
}

/// Counts of what a copy wrote.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Copied {
    pub entries: u64,
    pub bytes: u64,
}

/// A resolved source: its path inside the source root.
struct Source {
    relative: PathBuf,
    /// The name as given, for errors and for a file's destination name.
    given: String,
}

/// Copies the request's sources into `stage_root`.
pub fn copy(request: &Request, stage_root: &Path) -> Result<Copied, Error> {
    let sources = expand_sources(request)?;

    let dest_is_dir = request.dest.ends_with('/')
        || sources.len() > 1
        || stage_root
            .join(rootpath::resolve(stage_root, request.dest, Missing::Keep)?)
            .is_dir();
    if !dest_is_dir && request.sources.len() > 1 {
        return Err(Error::DestNotDirectory {
            dest: request.dest.to_string(),
        });
    }

    let mut copied = Copied::default();
    for source in &sources {
        let host = request.source_root.join(&source.relative);
        let meta = fs::metadata(&host).map_err(|source_err| Error::Read {
            path: host.clone(),
            source: source_err,
        })?;

        // An archive is unpacked into the destination, which is then always
        // a directory, as in Docker.
        if request.unpack_archives && meta.is_file() {
            if let Some(mut archive) = open_tar(&host)? {
                let dir =
                    rootpath::resolve(stage_root, &format!("{}/", request.dest), Missing::Create)?;
                let summary = storage::extract(
                    &mut archive,
                    &stage_root.join(dir),
                    &ExtractOptions::default(),
                )
                .map_err(|source| Error::Extract {
                    dest: request.dest.to_string(),
                    source,
                })?;
                copied.entries += summary.entries;
                copied.bytes += summary.bytes;
                continue;
            }
        }

        // The directory the entries land in, and the name a single file gets.
        let (dest_dir, file_name) = if dest_is_dir || meta.is_dir() {
            (request.dest.to_string(), None)
        } else {
            let dest = Path::new(request.dest);
            let parent = dest.parent().map(|p| p.to_string_lossy().into_owned());
            let name = dest.file_name().map(|n| n.to_string_lossy().into_owned());
            (parent.unwrap_or_else(|| "/".into()), name)
        };
        let dir = rootpath::resolve(stage_root, &format!("{dest_dir}/"), Missing::Create)?;
        let target = stage_root.join(dir);

        let summary = stream_into(request, source, &host, &meta, file_name, &target)?;
        copied.entries += summary.entries;
        copied.bytes += summary.bytes;
    }
    Ok(copied)
}

/// Returns the host paths of `sources` (paths or glob patterns) resolved
/// inside `root`, for the cache key's digest.
pub fn resolve_sources(root: &Path, sources: &[String]) -> Result<Vec<PathBuf>, Error> {
    let request = Request {
        source_root: root,
        origin: "the build context",
        sources,
        dest: "/",
        owner: None,
        chmod: None,
        unpack_archives: false,
    };
    Ok(expand_sources(&request)?
        .into_iter()
        .map(|source| root.join(source.relative))
        .collect())
}

/// Expands glob patterns and resolves each source inside the source root.
fn expand_sources(request: &Request) -> Result<Vec<Source>, Error> {
    let mut sources = Vec::new();
    for given in request.sources {
        let has_glob = given.contains(['*', '?', '[']);
        if !has_glob {
            let relative =
                rootpath::resolve(request.source_root, given, Missing::Fail).map_err(|err| {
                    match err {
                        rootpath::Error::NotFound { .. } => Error::SourceNotFound {
                            source_path: given.clone(),
                            origin: request.origin.to_string(),
                        },
                        other => Error::Resolve(other),
                    }
                })?;
            sources.push(Source {
                relative,
                given: given.clone(),
            });
            continue;
        }

        let matches = glob_in_root(request.source_root, given)?;
        if matches.is_empty() {
            return Err(Error::NoMatch {
                pattern: given.clone(),
                origin: request.origin.to_string(),
            });
        }
        for relative in matches {
            let name = relative.display().to_string();
            let resolved = rootpath::resolve(request.source_root, &name, Missing::Fail)?;
            sources.push(Source {
                relative: resolved,
                given: name,
            });
        }
    }
    Ok(sources)
}

/// Matches `pattern` component by component below `root`, never following
/// a symlink to a directory outside it (links are listed, not entered).
fn glob_in_root(root: &Path, pattern: &str) -> Result<Vec<PathBuf>, Error> {
    let options = glob::MatchOptions {
        case_sensitive: true,
        require_literal_separator: true,
        require_literal_leading_dot: false,
    };
    let mut current = vec![PathBuf::new()];
    for part in pattern.split('/').filter(|p| !p.is_empty() && *p != ".") {
        let matcher = glob::Pattern::new(part).map_err(|err| Error::BadPattern {
            pattern: pattern.to_string(),
            reason: err.to_string(),
        })?;
        let mut next = Vec::new();
        for dir in &current {
            let host = root.join(dir);
            let Ok(meta) = fs::symlink_metadata(&host) else {
                continue;
            };
            if !meta.is_dir() {
                continue;
            }
            let mut names: Vec<String> = fs::read_dir(&host)
                .map_err(|source| Error::Read {
                    path: host.clone(),
                    source,
                })?
                .flatten()
                .map(|e| e.file_name().to_string_lossy().into_owned())
                .collect();
            names.sort();
            for name in names {
                if matcher.matches_with(&name, options) {
                    next.push(dir.join(name));
                }
            }
        }
        current = next;
    }
    Ok(current)
}

/// Opens `archive` as an uncompressed tar stream when it is a tar archive,
/// plain or compressed; returns `None` when it is not one, so that it is
/// copied as a file.
fn open_tar(archive: &Path) -> Result<Option<Box<dyn Read>>, Error> {
    let read_error = |source| Error::Read {
        path: archive.to_path_buf(),
        source,
    };
    let file = fs::File::open(archive).map_err(read_error)?;
    let (_, mut reader) = storage::decompress(file).map_err(read_error)?;

    // A tar archive has "ustar" at offset 257 of its first header.
    let mut head = vec![0u8; 512];
    let mut filled = 0;
    while filled < head.len() {
        match reader.read(&mut head[filled..]) {
            Ok(0) => break,
            Ok(n) => filled += n,
            Err(_) => return Ok(None),
        }
    }
    if filled < 512 || &head[257..262] != b"ustar" {
        return Ok(None);
    }
    Ok(Some(Box::new(io::Cursor::new(head).chain(reader))))
}

/// Streams one source as a tar archive through `storage::extract` into
/// `target`. A directory's contents land in `target`; a file lands as
/// `file_name`, or under its own name.
fn stream_into(
    request: &Request,
    source: &Source,
    host: &Path,
    meta: &fs::Metadata,
    file_name: Option<String>,
    target: &Path,
) -> Result<storage::ExtractSummary, Error> {
    let (reader, writer) = io::pipe().map_err(|source_err| Error::Read {
        path: host.to_path_buf(),
        source: source_err,
    })?;
    let name_of_file = file_name.unwrap_or_else(|| {
        Path::new(&source.given)
            .file_name()
            .or_else(|| source.relative.file_name())
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_else(|| "file".into())
    });

    std::thread::scope(|scope| {
        let producer = scope.spawn(move || {
            let mut builder = tar::Builder::new(writer);
            let result = if meta.is_dir() {
                append_tree(&mut builder, request, host, "")
            } else {
                append_entry(&mut builder, request, host, &name_of_file)
            };
            result.and_then(|()| {
                builder.finish().map_err(|source| Error::Read {
                    path: host.to_path_buf(),
                    source,
                })
            })
        });

        let mut reader = reader;
        let extracted = storage::extract(&mut reader, target, &ExtractOptions::default());
        // Drain what the producer still writes so it never blocks on a full
        // pipe after a failed extraction.
        let _ = io::copy(&mut reader, &mut io::sink());
        let produced = producer.join().expect("the tar producer thread panicked");
        produced?;
        extracted.map_err(|source| Error::Extract {
            dest: request.dest.to_string(),
            source,
        })
    })
}

fn append_tree<W: Write>(
    builder: &mut tar::Builder<W>,
    request: &Request,
    dir: &Path,
    prefix: &str,
) -> Result<(), Error> {
    let read_error = |source| Error::Read {
        path: dir.to_path_buf(),
        source,
    };
    let mut names: Vec<String> = fs::read_dir(dir)
        .map_err(read_error)?
        .map(|entry| entry.map(|e| e.file_name().to_string_lossy().into_owned()))
        .collect::<Result<_, _>>()
        .map_err(read_error)?;
    names.sort();

    for name in names {
        let host = dir.join(&name);
        let relative = if prefix.is_empty() {
            name.clone()
        } else {
            format!("{prefix}/{name}")
        };
        append_entry(builder, request, &host, &relative)?;
        let meta = fs::symlink_metadata(&host).map_err(|source| Error::Read {
            path: host.clone(),
            source,
        })?;
        if meta.is_dir() {
            append_tree(builder, request, &host, &relative)?;
        }
    }
    Ok(())
}

/// Appends one file, directory or symlink (never followed) under `name`.
fn append_entry<W: Write>(
    builder: &mut tar::Builder<W>,
    request: &Request,
    host: &Path,
    name: &str,
) -> Result<(), Error> {
    if name.split('/').any(|part| part.starts_with(".wh.")) {
        return Err(Error::WhiteoutName {
            path: name.to_string(),
        });
    }
    let read_error = |source| Error::Read {
        path: host.to_path_buf(),
        source,
    };
    let meta = fs::symlink_metadata(host).map_err(read_error)?;
    let owner = request.owner.unwrap_or(Owner { uid: 0, gid: 0 });
    let mode = request.chmod.unwrap_or(meta.permissions().mode() & 0o7777);

    let mut header = tar::Header::new_gnu();
    header.set_uid(owner.uid.into());
    header.set_gid(owner.gid.into());
    header.set_mode(mode);
    header.set_mtime(meta.mtime().max(0) as u64);

    let kind = meta.file_type();
    if kind.is_symlink() {
        let target = fs::read_link(host).map_err(read_error)?;
        header.set_entry_type(tar::EntryType::Symlink);
        header.set_size(0);
        builder
            .append_link(&mut header, name, &target)
            .map_err(read_error)
    } else if kind.is_dir() {
        header.set_entry_type(tar::EntryType::Directory);
        header.set_size(0);
        builder
            .append_data(&mut header, name, io::empty())
            .map_err(read_error)
    } else if kind.is_file() {
        header.set_entry_type(tar::EntryType::Regular);
        header.set_size(meta.len());
        let file = fs::File::open(host).map_err(read_error)?;
        builder
            .append_data(&mut header, name, file)
            .map_err(read_error)
    } else {
        // Devices, fifos and sockets have no place in a copy from the
        // context; Docker skips sockets and so does this.
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parse_chmod_cases() {
        assert_eq!(parse_chmod("755").unwrap(), 0o755);
        assert_eq!(parse_chmod("04755").unwrap(), 0o4755);
        for bad in ["", "9", "u+x", "77777"] {
            assert!(
                matches!(parse_chmod(bad), Err(Error::InvalidChmod(_))),
                "{bad}"
            );
        }
    }
}
