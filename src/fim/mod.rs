//! File integrity: mtree(5) specifications of an image's files.
//!
//! `cblock build -F` records the type, mode, owner, size, symlink target and
//! SHA-256 digest of every file of an image in one spec; `verify` later
//! compares a tree against it. The spec uses mtree's full-path form (one
//! line per file, path first), which FreeBSD's and NetBSD's mtree(8) read, so
//! an operator can also check a tree with `mtree -p ROOT -f SPEC`.
//!
//! Times are left out: every layer rewrite changes them without changing
//! what a file is.

use std::collections::BTreeMap;
use std::fs;
use std::io::{self, Read};
use std::os::unix::fs::{FileTypeExt, MetadataExt};
use std::path::{Path, PathBuf};

use sha2::{Digest, Sha256};

/// Errors of the file-integrity module.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("reading {path}: {source}")]
    Read { path: PathBuf, source: io::Error },
    #[error("mtree spec line {line}: {reason}")]
    Parse { line: usize, reason: String },
}

/// The kind of a file, as mtree names it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FileType {
    File,
    Dir,
    Link,
    Char,
    Block,
    Fifo,
    Socket,
}

impl FileType {
    fn as_str(self) -> &'static str {
        match self {
            FileType::File => "file",
            FileType::Dir => "dir",
            FileType::Link => "link",
            FileType::Char => "char",
            FileType::Block => "block",
            FileType::Fifo => "fifo",
            FileType::Socket => "socket",
        }
    }

    fn parse(word: &str) -> Option<FileType> {
        Some(match word {
            "file" => FileType::File,
            "dir" => FileType::Dir,
            "link" => FileType::Link,
            "char" => FileType::Char,
            "block" => FileType::Block,
            "fifo" => FileType::Fifo,
            "socket" => FileType::Socket,
            _ => return None,
        })
    }
}

/// One file of a spec. The path is relative to the tree's root and starts
/// with `.` (`.` itself for the root).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Entry {
    pub path: String,
    pub file_type: FileType,
    /// Permission bits, including set-id and sticky bits.
    pub mode: u32,
    pub uid: u32,
    pub gid: u32,
    /// Size in bytes, for regular files.
    pub size: Option<u64>,
    /// Hex SHA-256 digest of the contents, for regular files.
    pub sha256: Option<String>,
    /// Target of a symbolic link.
    pub link: Option<String>,
}

/// Returns the entries of every file under `root`, sorted by path. Symbolic
/// links are recorded, never followed.
pub fn scan(root: &Path) -> Result<Vec<Entry>, Error> {
    let mut entries = Vec::new();
    let mut pending = vec![(root.to_path_buf(), String::from("."))];

    while let Some((host_path, spec_path)) = pending.pop() {
        let entry = describe(&host_path, spec_path.clone())?;
        if entry.file_type == FileType::Dir {
            let read_error = |source| Error::Read {
                path: host_path.clone(),
                source,
            };
            for child in fs::read_dir(&host_path).map_err(read_error)? {
                let child = child.map_err(read_error)?;
                let name = child.file_name();
                let name = encode_name(name.as_encoded_bytes());
                pending.push((child.path(), format!("{spec_path}/{name}")));
            }
        }
        entries.push(entry);
    }

    entries.sort_by(|a, b| a.path.cmp(&b.path));
    Ok(entries)
}

fn describe(host_path: &Path, spec_path: String) -> Result<Entry, Error> {
    let read_error = |source| Error::Read {
        path: host_path.to_path_buf(),
        source,
    };
    let meta = fs::symlink_metadata(host_path).map_err(read_error)?;
    let kind = meta.file_type();
    let file_type = if kind.is_symlink() {
        FileType::Link
    } else if kind.is_dir() {
        FileType::Dir
    } else if kind.is_file() {
        FileType::File
    } else if kind.is_char_device() {
        FileType::Char
    } else if kind.is_block_device() {
        FileType::Block
    } else if kind.is_fifo() {
        FileType::Fifo
    } else {
        FileType::Socket
    };

    let mut entry = Entry {
        path: spec_path,
        file_type,
        mode: meta.mode() & 0o7777,
        uid: meta.uid(),
        gid: meta.gid(),
        size: None,
        sha256: None,
        link: None,
    };
    match file_type {
        FileType::File => {
            entry.size = Some(meta.len());
            entry.sha256 = Some(sha256_file(host_path)?);
        }
        FileType::Link => {
            let target = fs::read_link(host_path).map_err(read_error)?;
            entry.link = Some(encode_name(target.as_os_str().as_encoded_bytes()));
        }
        _ => {}
    }
    Ok(entry)
}

fn sha256_file(path: &Path) -> Result<String, Error> {
    let read_error = |source| Error::Read {
        path: path.to_path_buf(),
        source,
    };
    let mut file = fs::File::open(path).map_err(read_error)?;
    let mut hasher = Sha256::new();
    let mut buffer = vec![0u8; 64 * 1024];
    loop {
        let n = file.read(&mut buffer).map_err(read_error)?;
        if n == 0 {
            break;
        }
        hasher.update(&buffer[..n]);
    }
    Ok(format!("{:x}", hasher.finalize()))
}

/// Encodes a file name the way mtree(8) writes names: every byte that is
/// not printable ASCII, and the characters mtree treats specially (`\`, `#`,
/// glob characters), as a backslash and three octal digits.
pub fn encode_name(bytes: &[u8]) -> String {
    let mut out = String::with_capacity(bytes.len());
    for &byte in bytes {
        let special = matches!(byte, b'\\' | b'#' | b'*' | b'?' | b'[' | b']');
        if byte.is_ascii_graphic() && !special {
            out.push(byte as char);
        } else {
            out.push_str(&format!("\\{byte:03o}"));
        }
    }
    out
}

/// Writes `entries` as an mtree spec.
pub fn write_spec(entries: &[Entry]) -> String {
    let mut out = String::from("#mtree v2.0\n");
    for entry in entries {
        out.push_str(&entry.path);
        out.push_str(&format!(
            " type={} mode={:04o} uid={} gid={}",
            entry.file_type.as_str(),
            entry.mode,
            entry.uid,
            entry.gid
        ));
        if let Some(size) = entry.size {
            out.push_str(&format!(" size={size}"));
        }
        if let Some(digest) = &entry.sha256 {
            out.push_str(&format!(" sha256={digest}"));
        }
        if let Some(link) = &entry.link {
            out.push_str(&format!(" link={link}"));
        }
        out.push('\n');
    }
    out
}

/// Reads a spec written by `write_spec`: full-path lines with the keywords
/// it writes. `/set` defaults and relative-path lines are rejected, because
/// nothing here writes them.
pub fn parse_spec(text: &str) -> Result<Vec<Entry>, Error> {
    let mut entries = Vec::new();
    for (index, line) in text.lines().enumerate() {
        let line_number = index + 1;
        let parse_error = |reason: String| Error::Parse {
            line: line_number,
            reason,
        };
        let line = line.trim();
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        let mut words = line.split_ascii_whitespace();
        let path = words.next().unwrap_or_default();
        if path != "." && !path.starts_with("./") {
            return Err(parse_error(format!(
                "{path:?} is not a full path starting with \"./\"; write the spec with cblock build -F"
            )));
        }

        let mut keywords = BTreeMap::new();
        for word in words {
            let (key, value) = word
                .split_once('=')
                .ok_or_else(|| parse_error(format!("{word:?} is not KEYWORD=VALUE")))?;
            keywords.insert(key, value);
        }
        let number = |key: &str, radix: u32| -> Result<u32, Error> {
            let value = keywords
                .get(key)
                .ok_or_else(|| parse_error(format!("{path}: missing {key}=")))?;
            u32::from_str_radix(value, radix)
                .map_err(|_| parse_error(format!("{path}: invalid {key}={value}")))
        };
        let type_word = keywords
            .get("type")
            .ok_or_else(|| parse_error(format!("{path}: missing type=")))?;
        let file_type = FileType::parse(type_word)
            .ok_or_else(|| parse_error(format!("{path}: unknown type={type_word}")))?;
        let size = match keywords.get("size") {
            Some(value) => Some(
                value
                    .parse()
                    .map_err(|_| parse_error(format!("{path}: invalid size={value}")))?,
            ),
            None => None,
        };

        entries.push(Entry {
            path: path.to_string(),
            file_type,
            mode: number("mode", 8)?,
            uid: number("uid", 10)?,
            gid: number("gid", 10)?,
            size,
            sha256: keywords.get("sha256").map(|s| s.to_string()),
            link: keywords.get("link").map(|s| s.to_string()),
        });
    }
    Ok(entries)
}

/// One way a tree differs from its spec.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Difference {
    /// In the spec, not in the tree.
    Missing(String),
    /// In the tree, not in the spec.
    Extra(String),
    /// In both, but `attributes` (mtree keywords) differ.
    Changed {
        path: String,
        attributes: Vec<&'static str>,
    },
}

/// Compares the tree under `root` with `expected` and returns every
/// difference, sorted by path.
pub fn verify(root: &Path, expected: &[Entry]) -> Result<Vec<Difference>, Error> {
    let actual = scan(root)?;
    let actual: BTreeMap<&str, &Entry> = actual.iter().map(|e| (e.path.as_str(), e)).collect();
    let expected: BTreeMap<&str, &Entry> = expected.iter().map(|e| (e.path.as_str(), e)).collect();
    let mut differences = Vec::new();

    for (path, want) in &expected {
        let Some(have) = actual.get(path) else {
            differences.push(Difference::Missing(path.to_string()));
            continue;
        };
        let mut attributes = Vec::new();
        if have.file_type != want.file_type {
            attributes.push("type");
        }
        if have.mode != want.mode {
            attributes.push("mode");
        }
        if have.uid != want.uid {
            attributes.push("uid");
        }
        if have.gid != want.gid {
            attributes.push("gid");
        }
        if have.size != want.size {
            attributes.push("size");
        }
        if have.sha256 != want.sha256 {
            attributes.push("sha256");
        }
        if have.link != want.link {
            attributes.push("link");
        }
        if !attributes.is_empty() {
            differences.push(Difference::Changed {
                path: path.to_string(),
                attributes,
            });
        }
    }
    for path in actual.keys() {
        if !expected.contains_key(path) {
            differences.push(Difference::Extra(path.to_string()));
        }
    }

    differences.sort_by(|a, b| difference_path(a).cmp(difference_path(b)));
    Ok(differences)
}

fn difference_path(difference: &Difference) -> &str {
    match difference {
        Difference::Missing(path) | Difference::Extra(path) => path,
        Difference::Changed { path, .. } => path,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn encode_name_escapes_specials() {
        assert_eq!(encode_name(b"plain.txt"), "plain.txt");
        assert_eq!(encode_name(b"a b"), "a\\040b");
        assert_eq!(encode_name(b"x#y*"), "x\\043y\\052");
        assert_eq!(encode_name(b"back\\slash"), "back\\134slash");
        assert_eq!(encode_name(&[0xff, b'\n']), "\\377\\012");
    }

    #[test]
    fn parse_spec_round_trip() {
        let entries = vec![
            Entry {
                path: ".".into(),
                file_type: FileType::Dir,
                mode: 0o755,
                uid: 0,
                gid: 0,
                size: None,
                sha256: None,
                link: None,
            },
            Entry {
                path: "./bin/sh".into(),
                file_type: FileType::Link,
                mode: 0o777,
                uid: 0,
                gid: 0,
                size: None,
                sha256: None,
                link: Some("dash".into()),
            },
            Entry {
                path: "./etc/motd".into(),
                file_type: FileType::File,
                mode: 0o4644,
                uid: 1,
                gid: 2,
                size: Some(3),
                sha256: Some("ab".repeat(32)),
                link: None,
            },
        ];
        let parsed = parse_spec(&write_spec(&entries)).unwrap();
        assert_eq!(parsed, entries);
    }

    #[test]
    fn parse_spec_rejects_bad_lines() {
        let cases = [
            ("usr type=dir mode=0755 uid=0 gid=0\n", "full path"),
            ("./x type=dir mode=0755 uid=0\n", "missing gid"),
            ("./x type=door mode=0755 uid=0 gid=0\n", "unknown type"),
            ("./x type=dir mode=9 uid=0 gid=0\n", "invalid mode"),
            ("./x type=dir mode\n", "KEYWORD=VALUE"),
        ];
        for (text, expected) in cases {
            let err = parse_spec(text).unwrap_err().to_string();
            assert!(err.contains(expected), "{text:?} gave {err:?}");
            assert!(err.contains("line 1"), "{text:?} gave {err:?}");
        }
    }
}
