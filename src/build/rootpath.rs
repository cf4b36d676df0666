//! Resolves a path inside a stage's root file system the way the kernel would
//! inside a chroot at that root: absolute symlinks start again at the root and
//! `..` never climbs above it. ADD, COPY, WORKDIR and ROOTPIVOT use it for
//! their destinations, so a symlink in the image can redirect a write only to
//! another place inside the same root.
//!
//! The walk uses `lstat` on each component and never follows a link itself.
//! It runs while no build container is running on the root, so nothing moves
//! the components between the check and the use.

use std::fs;
use std::io;
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::DirBuilderExt;
use std::path::{Component, Path, PathBuf};

/// Links followed in one resolution before giving up, as Linux does (40).
const MAX_LINKS: usize = 40;

/// Errors of path resolution inside a root.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("{path}: too many levels of symbolic links inside the image")]
    SymlinkLoop { path: String },
    #[error("{path}: {component} is not a directory in the image")]
    NotDirectory { path: String, component: String },
    #[error("{path}: not found in the image")]
    NotFound { path: String },
    #[error("{path}: {source}")]
    Io { path: String, source: io::Error },
}

/// What to do with missing directories on the way.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Missing {
    /// Create them (mode 0755, owned by the caller), like `mkdir -p`.
    Create,
    /// Stop at the first missing component and return the path so far
    /// followed by the rest unchanged.
    Keep,
    /// Fail with `NotFound`.
    Fail,
}

/// Returns `path` (absolute, or relative to `/`) resolved inside `root`, as
/// a relative path with no symlink in it. The last component is resolved
/// too when it is a symlink.
pub fn resolve(root: &Path, path: &str, missing: Missing) -> Result<PathBuf, Error> {
    let mut resolved = PathBuf::new();
    let mut pending: Vec<Vec<u8>> = components(path.as_bytes());
    pending.reverse();
    let mut links = 0;

    while let Some(name) = pending.pop() {
        if name == b".." {
            resolved.pop();
            continue;
        }
        let candidate = resolved.join(std::ffi::OsStr::from_bytes(&name));
        let host = root.join(&candidate);
        let meta = match fs::symlink_metadata(&host) {
            Ok(meta) => meta,
            Err(err) if err.kind() == io::ErrorKind::NotFound => match missing {
                Missing::Create if !pending.is_empty() || path.ends_with('/') => {
                    fs::DirBuilder::new()
                        .mode(0o755)
                        .create(&host)
                        .map_err(|source| Error::Io {
                            path: path.to_string(),
                            source,
                        })?;
                    resolved = candidate;
                    continue;
                }
                Missing::Create | Missing::Keep => {
                    resolved = candidate;
                    while let Some(rest) = pending.pop() {
                        if rest == b".." {
                            resolved.pop();
                        } else {
                            resolved.push(std::ffi::OsStr::from_bytes(&rest));
                        }
                    }
                    return Ok(resolved);
                }
                Missing::Fail => {
                    return Err(Error::NotFound {
                        path: path.to_string(),
                    })
                }
            },
            Err(source) => {
                return Err(Error::Io {
                    path: path.to_string(),
                    source,
                })
            }
        };

        if meta.file_type().is_symlink() {
            links += 1;
            if links > MAX_LINKS {
                return Err(Error::SymlinkLoop {
                    path: path.to_string(),
                });
            }
            let target = fs::read_link(&host).map_err(|source| Error::Io {
                path: path.to_string(),
                source,
            })?;
            let target = target.as_os_str().as_bytes();
            if target.starts_with(b"/") {
                resolved = PathBuf::new();
            }
            for component in components(target).into_iter().rev() {
                pending.push(component);
            }
            continue;
        }
        if !meta.is_dir() && !pending.is_empty() {
            return Err(Error::NotDirectory {
                path: path.to_string(),
                component: candidate.display().to_string(),
            });
        }
        resolved = candidate;
    }
    Ok(resolved)
}

/// Splits a path into its normal components and `..`, dropping `.` and
/// empty parts.
fn components(path: &[u8]) -> Vec<Vec<u8>> {
    Path::new(std::ffi::OsStr::from_bytes(path))
        .components()
        .filter_map(|component| match component {
            Component::Normal(name) => Some(name.as_bytes().to_vec()),
            Component::ParentDir => Some(b"..".to_vec()),
            _ => None,
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::symlink;

    struct Root(PathBuf);

    impl Root {
        fn new(label: &str) -> Root {
            let path = std::env::temp_dir()
                .join(format!("cblocks-rootpath-{label}-{}", std::process::id()));
            let _ = fs::remove_dir_all(&path);
            fs::create_dir_all(path.join("usr/bin")).unwrap();
            symlink("usr/bin", path.join("bin")).unwrap();
            symlink("/etc", path.join("usr/abs")).unwrap();
            symlink("../../../../../../tmp", path.join("usr/up")).unwrap();
            symlink("loop2", path.join("loop1")).unwrap();
            symlink("loop1", path.join("loop2")).unwrap();
            fs::write(path.join("file"), "x").unwrap();
            Root(path)
        }
    }

    impl Drop for Root {
        fn drop(&mut self) {
            let _ = fs::remove_dir_all(&self.0);
        }
    }

    #[test]
    fn resolve_follows_links_inside_root() {
        let root = Root::new("inside");
        let cases = [
            ("/bin/sh", "usr/bin/sh"),
            // As in the kernel, `..` after a link climbs from the target.
            ("bin/../etc", "usr/etc"),
            ("/usr/abs/passwd", "etc/passwd"),
            ("/usr/up/x", "tmp/x"),
            ("/../../../x", "x"),
        ];
        for (input, expected) in cases {
            let resolved = resolve(&root.0, input, Missing::Keep).unwrap();
            assert_eq!(resolved, PathBuf::from(expected), "{input}");
        }
    }

    #[test]
    fn resolve_creates_missing_dirs_inside_root() {
        let root = Root::new("create");
        // Followed on the host, usr/up would lead to the host's /tmp.
        let name = format!("cblocks-escape-{}", std::process::id());
        let resolved = resolve(&root.0, &format!("/usr/up/{name}/b/"), Missing::Create).unwrap();
        assert_eq!(resolved, Path::new("tmp").join(&name).join("b"));
        assert!(root.0.join("tmp").join(&name).join("b").is_dir());
        assert!(!Path::new("/tmp").join(&name).exists());
    }

    #[test]
    fn resolve_errors() {
        let root = Root::new("errors");
        let looped = resolve(&root.0, "/loop1/x", Missing::Keep).unwrap_err();
        assert!(matches!(looped, Error::SymlinkLoop { .. }), "{looped}");
        let not_dir = resolve(&root.0, "/file/x", Missing::Keep).unwrap_err();
        assert!(matches!(not_dir, Error::NotDirectory { .. }), "{not_dir}");
        let missing = resolve(&root.0, "/nothing/here", Missing::Fail).unwrap_err();
        assert!(matches!(missing, Error::NotFound { .. }), "{missing}");
    }
}
