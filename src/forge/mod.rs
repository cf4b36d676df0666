//! The forge: layer 0 of every image built `FROM forge` on a host with no
//! other images. It holds the host's own `sh`, `cp`, `ln`, `mkdir`, `mktemp`,
//! `rm`, `tar` and `env`, the shared libraries they load, a fetch tool (the
//! cblocks binary itself, which acts as `fetch` under that name), the CA
//! certificates, `/etc/services` and `/etc/protocols`.
//!
//! Libraries are found by reading ELF headers (see `elf`), never by running
//! `ldd`, which executes the program it inspects.

pub mod elf;
pub mod fetch;

use std::collections::BTreeSet;
use std::fs;
use std::os::unix::fs::{symlink, PermissionsExt};
use std::path::{Component, Path, PathBuf};

/// The host programs the forge carries, looked up on `PROGRAM_DIRS`.
pub const PROGRAMS: &[&str] = &["sh", "cp", "ln", "mkdir", "mktemp", "rm", "tar", "env"];

/// Directories searched for `PROGRAMS`, in order.
const PROGRAM_DIRS: &[&str] = &["/bin", "/usr/bin", "/sbin", "/usr/sbin"];

/// Files copied as they are. Each must exist on the host.
const ETC_FILES: &[&str] = &["/etc/services", "/etc/protocols"];

/// Places of the CA certificate bundle on Debian-like systems and on
/// FreeBSD. At least one must exist.
const CA_BUNDLES: &[&str] = &[
    "/etc/ssl/certs/ca-certificates.crt",
    "/etc/ssl/cert.pem",
    "/usr/local/share/certs/ca-root-nss.crt",
];

/// Path of the fetch tool inside the forge.
pub const FETCH_PATH: &str = "/usr/bin/fetch";

/// Errors of the forge.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error(
        "program {0:?} not found in /bin, /usr/bin, /sbin or /usr/sbin; install it on the host"
    )]
    MissingProgram(String),
    #[error(
        "library {library:?} needed by {needed_by} not found in the dynamic linker's search path"
    )]
    MissingLibrary { library: String, needed_by: PathBuf },
    #[error("interpreter {interpreter} of {program} does not exist")]
    MissingInterpreter {
        program: PathBuf,
        interpreter: PathBuf,
    },
    #[error("{path} is not a valid ELF file: {reason}")]
    BadElf { path: PathBuf, reason: String },
    #[error("{path}: {reason}")]
    BadConfig { path: PathBuf, reason: String },
    #[error("{0}: too many nested include lines; check for an include loop")]
    IncludeLoop(PathBuf),
    #[error("no CA certificate bundle found (looked for {0}); install ca-certificates")]
    MissingCaBundle(String),
    #[error("host file {0} is missing")]
    MissingFile(PathBuf),
    #[error(transparent)]
    Fetch(#[from] fetch::Error),
    #[error("{path} has too many levels of symbolic links")]
    SymlinkLoop { path: PathBuf },
    #[error("reading {path}: {source}")]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("writing {path}: {source}")]
    Write {
        path: PathBuf,
        source: std::io::Error,
    },
}

/// The host files copied into an assembled forge root.
#[derive(Debug, Default)]
pub struct Contents {
    /// Host paths of the programs, as found on `PROGRAM_DIRS`.
    pub programs: Vec<PathBuf>,
    /// Host paths of the interpreter and the shared libraries.
    pub libraries: BTreeSet<PathBuf>,
    /// Other host files copied (certificates, /etc files).
    pub files: Vec<PathBuf>,
}

/// Returns the path of `name` in the first of `PROGRAM_DIRS` that has it.
pub fn find_program(name: &str) -> Result<PathBuf, Error> {
    PROGRAM_DIRS
        .iter()
        .map(|dir| Path::new(dir).join(name))
        .find(|path| path.exists())
        .ok_or_else(|| Error::MissingProgram(name.to_string()))
}

/// Copies the forge's files from the host into `root`, an existing empty
/// directory, and copies `fetch_binary` (a static cblocks binary) to
/// `FETCH_PATH`. Directory and symlink structure on the way to each file is
/// kept, so that `/lib64` stays a link to `usr/lib64` on a merged-/usr host.
pub fn assemble(root: &Path, fetch_binary: &Path) -> Result<Contents, Error> {
    let mut contents = Contents::default();
    for name in PROGRAMS {
        contents.programs.push(find_program(name)?);
    }
    // The fetch tool is normally the static release binary, but a debug build
    // is dynamic, so its libraries are looked up like those of the programs.
    let search = elf::SearchPath::host()?;
    let mut needing_libraries = contents.programs.clone();
    needing_libraries.push(fetch_binary.to_path_buf());
    contents.libraries = elf::dependencies(&needing_libraries, &search)?;

    for file in ETC_FILES {
        let path = PathBuf::from(file);
        if !path.exists() {
            return Err(Error::MissingFile(path));
        }
        contents.files.push(path);
    }
    let bundle = CA_BUNDLES
        .iter()
        .map(PathBuf::from)
        .find(|path| path.exists())
        .ok_or_else(|| Error::MissingCaBundle(CA_BUNDLES.join(", ")))?;
    contents.files.push(bundle);

    let all = contents
        .programs
        .iter()
        .chain(contents.libraries.iter())
        .chain(contents.files.iter());
    for path in all {
        copy_into_root(path, root)?;
    }

    let fetch_target = root.join(FETCH_PATH.trim_start_matches('/'));
    create_dirs(fetch_target.parent().unwrap_or(root))?;
    fs::copy(fetch_binary, &fetch_target).map_err(|source| Error::Write {
        path: fetch_target.clone(),
        source,
    })?;
    set_mode(&fetch_target, 0o755)?;

    for dir in ["tmp", "dev", "proc", "etc", "root"] {
        create_dirs(&root.join(dir))?;
    }
    set_mode(&root.join("tmp"), 0o1777)?;
    Ok(contents)
}

fn create_dirs(path: &Path) -> Result<(), Error> {
    fs::create_dir_all(path).map_err(|source| Error::Write {
        path: path.to_path_buf(),
        source,
    })
}

fn set_mode(path: &Path, mode: u32) -> Result<(), Error> {
    fs::set_permissions(path, fs::Permissions::from_mode(mode)).map_err(|source| Error::Write {
        path: path.to_path_buf(),
        source,
    })
}

/// Copies the host file `host_path` to the same path under `root`,
/// recreating every symlink met on the way, in a directory component or in
/// the file itself, and copying the file it finally names.
fn copy_into_root(host_path: &Path, root: &Path) -> Result<(), Error> {
    // The kernel gives up after 40 links; so does this walk.
    const MAX_LINKS: usize = 40;
    let mut pending = vec![host_path.to_path_buf()];
    let mut links_followed = 0;

    while let Some(path) = pending.pop() {
        let mut current = PathBuf::from("/");
        let components: Vec<Component> = path.components().collect();

        for (index, component) in components.iter().enumerate() {
            let Component::Normal(name) = component else {
                continue;
            };
            let host = current.join(name);
            let inside = root.join(host.strip_prefix("/").unwrap_or(&host));
            let meta = fs::symlink_metadata(&host).map_err(|source| Error::Read {
                path: host.clone(),
                source,
            })?;

            if meta.file_type().is_symlink() {
                links_followed += 1;
                if links_followed > MAX_LINKS {
                    return Err(Error::SymlinkLoop { path: path.clone() });
                }
                let target = fs::read_link(&host).map_err(|source| Error::Read {
                    path: host.clone(),
                    source,
                })?;
                if fs::symlink_metadata(&inside).is_err() {
                    create_dirs(inside.parent().unwrap_or(root))?;
                    symlink(&target, &inside).map_err(|source| Error::Write {
                        path: inside.clone(),
                        source,
                    })?;
                }
                // Continue with the link's target and the rest of the path.
                let mut resolved = if target.is_absolute() {
                    target
                } else {
                    current.join(target)
                };
                for rest in &components[index + 1..] {
                    resolved.push(rest);
                }
                pending.push(normalize(&resolved));
                break;
            }

            if meta.is_dir() {
                if !inside.exists() {
                    create_dirs(&inside)?;
                    set_mode(&inside, meta.permissions().mode() & 0o7777)?;
                }
            } else if !inside.exists() {
                fs::copy(&host, &inside).map_err(|source| Error::Write {
                    path: inside.clone(),
                    source,
                })?;
            }
            current = host;
        }
    }
    Ok(())
}

/// Removes `.` and `..` components without touching the file system. A `..`
/// at the root stays at the root, as the kernel resolves it.
fn normalize(path: &Path) -> PathBuf {
    let mut out = PathBuf::from("/");
    for component in path.components() {
        match component {
            Component::Normal(name) => out.push(name),
            Component::ParentDir => {
                out.pop();
            }
            Component::RootDir | Component::CurDir | Component::Prefix(_) => {}
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn normalize_resolves_dot_dot() {
        assert_eq!(
            normalize(Path::new("/usr/bin/../lib/x")),
            PathBuf::from("/usr/lib/x")
        );
        assert_eq!(normalize(Path::new("/../../etc")), PathBuf::from("/etc"));
    }
}
