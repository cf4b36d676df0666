//! Finds the shared libraries a dynamically linked program needs by reading
//! ELF headers: the program interpreter (`PT_INTERP`) and the `DT_NEEDED`
//! entries, searched for the way the dynamic linker searches.
//!
//! The search order follows ld.so(8) on Linux and ld-elf.so.1(1) on FreeBSD:
//! `DT_RPATH` of the object (only when it has no `DT_RUNPATH`), `DT_RUNPATH`,
//! the directories of the linker's configuration, then the default
//! directories. `LD_LIBRARY_PATH` is ignored on purpose, because the forge
//! must not depend on the environment of the user who runs it. A candidate
//! whose ELF class or machine differs from the program's is skipped, as the
//! linker skips it.

use std::collections::{BTreeSet, VecDeque};
use std::fs;
use std::path::{Path, PathBuf};

use goblin::elf::Elf;

use super::Error;

/// The fields of one ELF object that the dynamic linker reads.
struct ElfInfo {
    interpreter: Option<String>,
    needed: Vec<String>,
    rpath: Vec<String>,
    runpath: Vec<String>,
    is_64: bool,
    machine: u16,
}

fn read_elf(path: &Path) -> Result<Option<ElfInfo>, Error> {
    let bytes = fs::read(path).map_err(|source| Error::Read {
        path: path.to_path_buf(),
        source,
    })?;
    if !bytes.starts_with(b"\x7fELF") {
        return Ok(None);
    }
    let elf = Elf::parse(&bytes).map_err(|err| Error::BadElf {
        path: path.to_path_buf(),
        reason: err.to_string(),
    })?;

    let split = |list: &[&str]| -> Vec<String> {
        list.iter()
            .flat_map(|entry| entry.split(':'))
            .filter(|dir| !dir.is_empty())
            .map(str::to_string)
            .collect()
    };
    Ok(Some(ElfInfo {
        interpreter: elf.interpreter.map(str::to_string),
        needed: elf.libraries.iter().map(|lib| lib.to_string()).collect(),
        rpath: split(&elf.rpaths),
        runpath: split(&elf.runpaths),
        is_64: elf.is_64,
        machine: elf.header.e_machine,
    }))
}

/// The dynamic linker's search directories, besides each object's own
/// `DT_RPATH` and `DT_RUNPATH`.
#[derive(Debug, Clone)]
pub struct SearchPath {
    /// Directories from the linker's configuration, in order.
    pub configured: Vec<PathBuf>,
    /// Directories the linker always searches last.
    pub defaults: Vec<PathBuf>,
}

impl SearchPath {
    /// Returns the search path of the host's dynamic linker.
    ///
    /// On Linux the configured directories are read from `/etc/ld.so.conf`
    /// and the files it includes. On FreeBSD they are read from the files
    /// that `ldconfig` reads at boot (`/etc/ld-elf.so.conf` and
    /// `/usr/local/libdata/ldconfig`).
    pub fn host() -> Result<SearchPath, Error> {
        if cfg!(target_os = "freebsd") {
            let mut configured = Vec::new();
            read_plain_list(Path::new("/etc/ld-elf.so.conf"), &mut configured)?;
            if let Ok(entries) = fs::read_dir("/usr/local/libdata/ldconfig") {
                let mut files: Vec<PathBuf> = entries.flatten().map(|e| e.path()).collect();
                files.sort();
                for file in files {
                    read_plain_list(&file, &mut configured)?;
                }
            }
            Ok(SearchPath {
                configured,
                defaults: vec!["/lib".into(), "/usr/lib".into()],
            })
        } else {
            let mut configured = Vec::new();
            read_ld_so_conf(Path::new("/etc/ld.so.conf"), &mut configured, 0)?;
            Ok(SearchPath {
                configured,
                defaults: vec![
                    "/lib64".into(),
                    "/usr/lib64".into(),
                    "/lib".into(),
                    "/usr/lib".into(),
                ],
            })
        }
    }
}

/// Reads an ld.so.conf file: one directory a line, `#` comments, and
/// `include GLOB` lines naming further files.
fn read_ld_so_conf(path: &Path, out: &mut Vec<PathBuf>, depth: usize) -> Result<(), Error> {
    // glibc follows includes without a limit; a loop of includes would make
    // it recurse forever, so stop at a depth no real configuration reaches.
    const MAX_INCLUDE_DEPTH: usize = 16;
    if depth > MAX_INCLUDE_DEPTH {
        return Err(Error::IncludeLoop(path.to_path_buf()));
    }
    let text = match fs::read_to_string(path) {
        Ok(text) => text,
        Err(err) if err.kind() == std::io::ErrorKind::NotFound => return Ok(()),
        Err(source) => {
            return Err(Error::Read {
                path: path.to_path_buf(),
                source,
            })
        }
    };

    for line in text.lines() {
        let line = line.split('#').next().unwrap_or("").trim();
        if let Some(pattern) = line.strip_prefix("include") {
            let pattern = pattern.trim();
            let pattern = if pattern.starts_with('/') {
                pattern.to_string()
            } else {
                let base = path.parent().unwrap_or(Path::new("/"));
                format!("{}/{}", base.display(), pattern)
            };
            let mut files: Vec<PathBuf> = glob::glob(&pattern)
                .map_err(|err| Error::BadConfig {
                    path: path.to_path_buf(),
                    reason: format!("include pattern {pattern:?}: {err}"),
                })?
                .flatten()
                .collect();
            files.sort();
            for file in files {
                read_ld_so_conf(&file, out, depth + 1)?;
            }
        } else if line.starts_with('/') {
            push_unique(out, PathBuf::from(line));
        }
    }
    Ok(())
}

fn read_plain_list(path: &Path, out: &mut Vec<PathBuf>) -> Result<(), Error> {
    match fs::read_to_string(path) {
        Ok(text) => {
            for line in text.lines() {
                let line = line.split('#').next().unwrap_or("").trim();
                if line.starts_with('/') {
                    push_unique(out, PathBuf::from(line));
                }
            }
            Ok(())
        }
        Err(err) if err.kind() == std::io::ErrorKind::NotFound => Ok(()),
        Err(source) => Err(Error::Read {
            path: path.to_path_buf(),
            source,
        }),
    }
}

fn push_unique(list: &mut Vec<PathBuf>, dir: PathBuf) {
    if !list.contains(&dir) {
        list.push(dir);
    }
}

/// Expands `$ORIGIN` (and `${ORIGIN}`) in an rpath entry to the directory
/// of the object that carries it.
fn expand_origin(entry: &str, object: &Path) -> PathBuf {
    let origin = object.parent().unwrap_or(Path::new("/"));
    let origin = origin.to_string_lossy();
    PathBuf::from(
        entry
            .replace("${ORIGIN}", &origin)
            .replace("$ORIGIN", &origin),
    )
}

/// Returns true when `path` is an ELF object the program can load.
fn is_compatible(path: &Path, is_64: bool, machine: u16) -> bool {
    matches!(read_elf(path), Ok(Some(info)) if info.is_64 == is_64 && info.machine == machine)
}

/// Returns every file `programs` need at run time: the interpreter and all
/// shared libraries, directly or through other libraries, without the
/// programs themselves. Paths are as the linker finds them (a symlink stays
/// a symlink; the caller copies both the link and its target).
pub fn dependencies(programs: &[PathBuf], search: &SearchPath) -> Result<BTreeSet<PathBuf>, Error> {
    let mut found = BTreeSet::new();
    let mut queue: VecDeque<PathBuf> = programs.iter().cloned().collect();
    let mut seen: BTreeSet<PathBuf> = BTreeSet::new();

    while let Some(object) = queue.pop_front() {
        if !seen.insert(object.clone()) {
            continue;
        }
        let Some(info) = read_elf(&object)? else {
            continue; // a script: its interpreter is named on its #! line
        };

        if let Some(interp) = &info.interpreter {
            let interp = PathBuf::from(interp);
            if !interp.exists() {
                return Err(Error::MissingInterpreter {
                    program: object.clone(),
                    interpreter: interp,
                });
            }
            found.insert(interp.clone());
            queue.push_back(interp);
        }

        for name in &info.needed {
            let library = find_library(name, &object, &info, search).ok_or_else(|| {
                Error::MissingLibrary {
                    library: name.clone(),
                    needed_by: object.clone(),
                }
            })?;
            found.insert(library.clone());
            queue.push_back(library);
        }
    }

    for program in programs {
        found.remove(program);
    }
    Ok(found)
}

fn find_library(name: &str, object: &Path, info: &ElfInfo, search: &SearchPath) -> Option<PathBuf> {
    // A name with a slash is a path and is not searched for.
    if name.contains('/') {
        let path = PathBuf::from(name);
        return path.exists().then_some(path);
    }

    let object_dirs = if info.runpath.is_empty() {
        &info.rpath
    } else {
        &info.runpath
    };
    let candidates = object_dirs
        .iter()
        .map(|dir| expand_origin(dir, object))
        .chain(search.configured.iter().cloned())
        .chain(search.defaults.iter().cloned());

    for dir in candidates {
        let path = dir.join(name);
        if path.exists() && is_compatible(&path, info.is_64, info.machine) {
            return Some(path);
        }
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn origin_expands_to_object_dir() {
        let object = Path::new("/opt/app/bin/tool");
        assert_eq!(
            expand_origin("$ORIGIN/../lib", object),
            PathBuf::from("/opt/app/bin/../lib")
        );
        assert_eq!(
            expand_origin("${ORIGIN}/lib", object),
            PathBuf::from("/opt/app/bin/lib")
        );
    }

    #[test]
    fn ld_so_conf_follows_includes() {
        let dir = std::env::temp_dir().join(format!("cblocks-ldconf-{}", std::process::id()));
        fs::create_dir_all(dir.join("conf.d")).unwrap();
        fs::write(
            dir.join("ld.so.conf"),
            "# top\n/first\ninclude conf.d/*.conf\n",
        )
        .unwrap();
        fs::write(dir.join("conf.d/b.conf"), "/from-b # note\n").unwrap();
        fs::write(dir.join("conf.d/a.conf"), "/from-a\n/first\n").unwrap();

        let mut out = Vec::new();
        let result = read_ld_so_conf(&dir.join("ld.so.conf"), &mut out, 0);
        fs::remove_dir_all(&dir).unwrap();

        result.unwrap();
        let expected: Vec<PathBuf> = ["/first", "/from-a", "/from-b"]
            .iter()
            .map(PathBuf::from)
            .collect();
        assert_eq!(out, expected);
    }

    #[test]
    fn ld_so_conf_include_loop_is_error() {
        let dir = std::env::temp_dir().join(format!("cblocks-ldloop-{}", std::process::id()));
        fs::create_dir_all(&dir).unwrap();
        let conf = dir.join("ld.so.conf");
        fs::write(&conf, format!("include {}\n", conf.display())).unwrap();

        let mut out = Vec::new();
        let result = read_ld_so_conf(&conf, &mut out, 0);
        fs::remove_dir_all(&dir).unwrap();

        assert!(matches!(result, Err(Error::IncludeLoop(_))), "{result:?}");
    }
}
