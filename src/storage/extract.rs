//! Safe extraction of layer tar streams into a directory.
//!
//! Every entry is resolved inside the root one component at a time, with
//! descriptors opened without following symlinks (`openat2` with
//! `RESOLVE_NO_SYMLINKS` on Linux, `O_NOFOLLOW` elsewhere). An entry is
//! rejected, with its name in the error, when:
//!
//! - its name is absolute or contains `..`;
//! - it would write through a symlink, including one an earlier entry
//!   planted;
//! - it hard-links to a name outside the root;
//! - it is a device node and devices are not allowed;
//! - its header is malformed or oversized.
//!
//! The caller extracts into a staging directory and renames it into place
//! only on success, so a failed extraction leaves no half layer.
//!
//! GNU long names, long links and PAX headers are read here rather than by
//! the `tar` crate, so that their size can be bounded before they are read
//! into memory: a compressed archive could otherwise expand one header into
//! gigabytes.

use std::collections::BTreeSet;
use std::ffi::{OsStr, OsString};
use std::fs::File;
use std::io::{self, Read};
use std::os::fd::OwnedFd;
use std::os::unix::ffi::OsStrExt;
use std::path::Path;

use super::fdops;
use super::{Error, Result};

/// Largest GNU long name, long link or PAX header read into memory.
pub const MAX_EXTENSION_SIZE: u64 = 1 << 20;
/// Largest path of an entry, as Linux's `PATH_MAX`.
pub const MAX_PATH_LEN: usize = 4096;
/// Largest single path component, as Linux's `NAME_MAX`.
pub const MAX_NAME_LEN: usize = 255;

/// Prefix of the PAX records that carry extended attributes (as GNU tar and
/// Go's archive/tar write them).
pub const XATTR_PAX_PREFIX: &str = "SCHILY.xattr.";

/// Returns whether an extended attribute is carried in layers: `user.`,
/// file capabilities and POSIX ACLs. Overlayfs's own `trusted.overlay.`
/// attributes and security labels, which belong to the host, are not.
pub fn xattr_allowed(key: &[u8]) -> bool {
    key.starts_with(b"user.")
        || key == b"security.capability"
        || key.starts_with(b"system.posix_acl_")
}

/// Marker of an opaque directory: lower layers' entries in it are hidden.
pub const OPAQUE_MARKER: &str = ".wh..wh..opq";
/// Prefix of a whiteout: `.wh.NAME` deletes `NAME` of lower layers.
pub const WHITEOUT_PREFIX: &str = ".wh.";

/// Handling of whiteout entries.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Whiteouts {
    /// The target contains the whole file system, so a whiteout deletes the
    /// file it names.
    Apply,
    /// The target is an overlayfs layer: write overlay whiteouts (0/0
    /// character devices) and opaque extended attributes.
    Overlay,
}

/// Extraction settings.
#[derive(Debug, Clone, Copy)]
pub struct ExtractOptions {
    pub whiteouts: Whiteouts,
    /// Whether character and block devices may be created.
    pub allow_devices: bool,
}

impl Default for ExtractOptions {
    fn default() -> Self {
        ExtractOptions {
            whiteouts: Whiteouts::Apply,
            allow_devices: false,
        }
    }
}

/// Counts of what an extraction wrote.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct ExtractSummary {
    pub entries: u64,
    /// Bytes of regular file content.
    pub bytes: u64,
}

/// Extension headers that describe the next entry.
#[derive(Default)]
struct Pending {
    long_name: Option<Vec<u8>>,
    long_link: Option<Vec<u8>>,
    pax: Option<Vec<u8>>,
}

/// One entry's header after extensions are applied.
struct EntryHeader {
    name: Vec<u8>,
    link: Option<Vec<u8>>,
    kind: tar::EntryType,
    mode: u32,
    uid: u32,
    gid: u32,
    mtime: i64,
    size: u64,
    device: (u32, u32),
    /// Extended attributes from `SCHILY.xattr.` PAX records.
    xattrs: Vec<(Vec<u8>, Vec<u8>)>,
}

/// Extracts the uncompressed tar stream `reader` into the existing directory
/// `root`.
pub fn extract(
    reader: &mut dyn Read,
    root: &Path,
    options: &ExtractOptions,
) -> Result<ExtractSummary> {
    let root_fd = fdops::open_dir(root).map_err(|source| Error::Io {
        context: format!("open extraction root {}", root.display()),
        source,
    })?;
    let mut extractor = Extractor {
        root: root_fd,
        options: *options,
        created: BTreeSet::new(),
        dir_times: Vec::new(),
        summary: ExtractSummary::default(),
    };

    let mut archive = tar::Archive::new(reader);
    let entries = archive.entries().map_err(|e| malformed(0, &e))?.raw(true);
    let mut pending = Pending::default();
    for (index, entry) in entries.enumerate() {
        let mut entry = entry.map_err(|e| malformed(index, &e))?;
        let kind = entry.header().entry_type();
        match kind {
            tar::EntryType::GNULongName => {
                pending.long_name = Some(read_extension(&mut entry, index, "GNU long name")?);
                continue;
            }
            tar::EntryType::GNULongLink => {
                pending.long_link = Some(read_extension(&mut entry, index, "GNU long link")?);
                continue;
            }
            tar::EntryType::XHeader => {
                pending.pax = Some(read_extension(&mut entry, index, "PAX header")?);
                continue;
            }
            tar::EntryType::XGlobalHeader => {
                // Global PAX records carry nothing a layer needs (comments,
                // Git's commit id); they are read, bounded, and dropped.
                read_extension(&mut entry, index, "PAX global header")?;
                continue;
            }
            _ => {}
        }

        let header = entry_header(&entry, std::mem::take(&mut pending), index)?;
        extractor.entry(&header, &mut entry)?;
    }
    if pending.long_name.is_some() || pending.long_link.is_some() || pending.pax.is_some() {
        return Err(Error::Malformed {
            index: 0,
            reason: "archive ends with an extension header that describes no entry".into(),
        });
    }

    extractor.finish()?;
    Ok(extractor.summary)
}

fn malformed(index: usize, err: &io::Error) -> Error {
    Error::Malformed {
        index: index as u64,
        reason: err.to_string(),
    }
}

fn read_extension(
    entry: &mut tar::Entry<'_, &mut dyn Read>,
    index: usize,
    what: &str,
) -> Result<Vec<u8>> {
    let size = entry.size();
    if size > MAX_EXTENSION_SIZE {
        return Err(Error::Malformed {
            index: index as u64,
            reason: format!(
                "{what} of {size} bytes is larger than the limit of {MAX_EXTENSION_SIZE}"
            ),
        });
    }
    let mut data = Vec::with_capacity(size as usize);
    entry
        .read_to_end(&mut data)
        .map_err(|e| malformed(index, &e))?;
    if data.len() as u64 != size {
        return Err(Error::Malformed {
            index: index as u64,
            reason: format!("{what} is truncated"),
        });
    }
    Ok(data)
}

/// Builds an entry's header from the raw header and the extension headers
/// before it. PAX records win over GNU long names, which win over the
/// header's own fields, as in GNU tar and Go's archive/tar.
fn entry_header(
    entry: &tar::Entry<'_, &mut dyn Read>,
    pending: Pending,
    index: usize,
) -> Result<EntryHeader> {
    let raw = entry.header();
    let bad = |reason: String| Error::Malformed {
        index: index as u64,
        reason,
    };
    let field = |what: &str, e: io::Error| bad(format!("invalid {what} field: {e}"));

    let mut name = pending
        .long_name
        .map(trim_nul)
        .unwrap_or_else(|| raw.path_bytes().into_owned());
    let mut xattrs = Vec::new();
    let mut link = pending
        .long_link
        .map(trim_nul)
        .or_else(|| raw.link_name_bytes().map(|l| l.into_owned()));
    let old = raw.as_old();
    let mut uid = or_blank(raw.uid(), &old.uid).map_err(|e| field("uid", e))?;
    let mut gid = or_blank(raw.gid(), &old.gid).map_err(|e| field("gid", e))?;
    let mut mtime = or_blank(raw.mtime(), &old.mtime).map_err(|e| field("mtime", e))? as i64;
    let size = raw.entry_size().map_err(|e| field("size", e))?;

    if let Some(pax) = &pending.pax {
        for record in tar::PaxExtensions::new(pax) {
            let record = record.map_err(|e| bad(format!("invalid PAX record: {e}")))?;
            let value = record.value_bytes();
            let number = || {
                std::str::from_utf8(value)
                    .ok()
                    .and_then(|v| v.split('.').next())
                    .and_then(|v| v.parse::<i64>().ok())
                    .ok_or_else(|| {
                        bad(format!(
                            "invalid PAX {} value",
                            String::from_utf8_lossy(record.key_bytes())
                        ))
                    })
            };
            match record.key_bytes() {
                b"path" => name = value.to_vec(),
                key if key.starts_with(XATTR_PAX_PREFIX.as_bytes()) => {
                    xattrs.push((key[XATTR_PAX_PREFIX.len()..].to_vec(), value.to_vec()));
                }
                b"linkpath" => link = Some(value.to_vec()),
                b"uid" => uid = number()? as u64,
                b"gid" => gid = number()? as u64,
                b"mtime" => mtime = number()?,
                // The tar crate has already placed the next header by the
                // size in the raw header, so a different PAX size would make
                // this reader and others see different files.
                b"size" if number()? as u64 != size => {
                    return Err(bad(format!(
                        "PAX size {} disagrees with the header size {size}",
                        String::from_utf8_lossy(value)
                    )))
                }
                _ => {}
            }
        }
    }

    let uid = u32::try_from(uid).map_err(|_| bad(format!("uid {uid} is out of range")))?;
    let gid = u32::try_from(gid).map_err(|_| bad(format!("gid {gid} is out of range")))?;
    let kind = raw.entry_type();
    let device = match kind {
        tar::EntryType::Char | tar::EntryType::Block => (
            raw.device_major()
                .map_err(|e| field("device major", e))?
                .unwrap_or(0),
            raw.device_minor()
                .map_err(|e| field("device minor", e))?
                .unwrap_or(0),
        ),
        _ => (0, 0),
    };
    Ok(EntryHeader {
        name,
        link,
        kind,
        mode: or_blank(raw.mode().map(u64::from), &old.mode).map_err(|e| field("mode", e))? as u32
            & 0o7777,
        uid,
        gid,
        mtime,
        size,
        device,
        xattrs,
    })
}

/// Reads an empty numeric field (all NUL or spaces, as some writers leave
/// mode, uid, gid and mtime) as 0; other unparsable values stay errors.
fn or_blank(parsed: io::Result<u64>, field: &[u8]) -> io::Result<u64> {
    match parsed {
        Err(_) if field.iter().all(|b| *b == 0 || *b == b' ') => Ok(0),
        other => other,
    }
}

fn trim_nul(mut bytes: Vec<u8>) -> Vec<u8> {
    while bytes.last() == Some(&0) {
        bytes.pop();
    }
    bytes
}

/// Splits an entry name into components, rejecting absolute names, `..`,
/// NUL bytes and names over the length limits. `.` and empty components are
/// dropped, so `./a//b` is `a/b`.
pub fn split_name(name: &[u8]) -> std::result::Result<Vec<OsString>, String> {
    if name.is_empty() {
        return Err("empty name".into());
    }
    if name.contains(&0) {
        return Err("name contains a NUL byte".into());
    }
    if name.len() > MAX_PATH_LEN {
        return Err(format!(
            "name of {} bytes is longer than {MAX_PATH_LEN}",
            name.len()
        ));
    }
    if name[0] == b'/' {
        return Err("absolute name; layer entries must be relative to the root".into());
    }
    let mut parts = Vec::new();
    for part in name.split(|b| *b == b'/') {
        match part {
            b"" | b"." => {}
            b".." => return Err("name contains a `..` component".into()),
            _ if part.len() > MAX_NAME_LEN => {
                return Err(format!(
                    "component of {} bytes is longer than {MAX_NAME_LEN}",
                    part.len()
                ))
            }
            _ => parts.push(OsStr::from_bytes(part).to_os_string()),
        }
    }
    Ok(parts)
}

struct Extractor {
    root: OwnedFd,
    options: ExtractOptions,
    /// Paths this layer wrote, which an opaque marker must not hide.
    created: BTreeSet<Vec<u8>>,
    /// Directory times, set last because entries below change them.
    dir_times: Vec<(Vec<OsString>, i64)>,
    summary: ExtractSummary,
}

fn join(parts: &[OsString]) -> Vec<u8> {
    let mut out = Vec::new();
    for (i, part) in parts.iter().enumerate() {
        if i > 0 {
            out.push(b'/');
        }
        out.extend_from_slice(part.as_bytes());
    }
    out
}

impl Extractor {
    fn reject(&self, name: &[u8], reason: impl Into<String>) -> Error {
        Error::Entry {
            entry: String::from_utf8_lossy(name).into_owned(),
            reason: reason.into(),
        }
    }

    fn io(&self, name: &[u8], step: &str, source: io::Error) -> Error {
        Error::EntryIo {
            entry: String::from_utf8_lossy(name).into_owned(),
            step: step.to_string(),
            source,
        }
    }

    fn entry(&mut self, header: &EntryHeader, data: &mut dyn Read) -> Result<()> {
        let name = &header.name;
        let mut parts = split_name(name).map_err(|reason| self.reject(name, reason))?;
        self.summary.entries += 1;

        // Version 7 archives mark directories only by a trailing slash.
        let is_dir = header.kind == tar::EntryType::Directory
            || (header.kind == tar::EntryType::Regular && name.ends_with(b"/"));

        let Some(base) = parts.pop() else {
            if !is_dir {
                return Err(self.reject(name, "names the root but is not a directory"));
            }
            return fdops::set_metadata(
                &self.root,
                OsStr::new("."),
                header.uid,
                header.gid,
                Some(header.mode),
                header.mtime,
            )
            .map_err(|e| self.io(name, "set metadata of the root", e));
        };

        // The opaque marker is tested first, because it also starts with the
        // whiteout prefix.
        if base == OPAQUE_MARKER {
            return self.opaque(name, &parts);
        }
        if let Some(hidden) = base.as_bytes().strip_prefix(WHITEOUT_PREFIX.as_bytes()) {
            return self.whiteout(name, &parts, OsStr::from_bytes(hidden));
        }

        let parent = self.open_parent(name, &parts, true)?;
        if let Some(existing) =
            fdops::lstatat(&parent, &base).map_err(|e| self.io(name, "stat", e))?
        {
            let both_dirs = is_dir && fdops::is_type(existing.st_mode, libc::S_IFDIR);
            if !both_dirs {
                fdops::remove_all_at(&parent, &base)
                    .map_err(|e| self.io(name, "replace existing entry", e))?;
            }
        }

        let mut path = parts.clone();
        path.push(base.clone());
        self.created.insert(join(&path));

        // Extended attributes go last, because chown clears file
        // capabilities. Symlinks (no mode) get none.
        let meta = |this: &Self, mode: Option<u32>| -> Result<()> {
            fdops::set_metadata(&parent, &base, header.uid, header.gid, mode, header.mtime)
                .map_err(|e| this.io(name, "set metadata", e))?;
            if mode.is_some() {
                for (key, value) in header.xattrs.iter().filter(|(k, _)| xattr_allowed(k)) {
                    crate::platform::storage::set_xattr(&parent, &base, key, value)
                        .map_err(|e| this.io(name, "set extended attribute", e))?;
                }
            }
            Ok(())
        };
        match header.kind {
            _ if is_dir => {
                match fdops::mkdirat(&parent, &base, 0o700) {
                    Ok(()) => {}
                    Err(e) if e.kind() == io::ErrorKind::AlreadyExists => {}
                    Err(e) => return Err(self.io(name, "create directory", e)),
                }
                meta(self, Some(header.mode))?;
                self.dir_times.push((path, header.mtime));
            }
            tar::EntryType::Regular | tar::EntryType::Continuous => {
                let fd = fdops::openat(
                    &parent,
                    &base,
                    libc::O_WRONLY | libc::O_CREAT | libc::O_EXCL,
                    0o600,
                )
                .map_err(|e| self.io(name, "create file", e))?;
                let mut file = File::from(fd);
                let copied = io::copy(&mut data.take(header.size), &mut file)
                    .map_err(|e| self.io(name, "write file", e))?;
                if copied != header.size {
                    return Err(Error::Malformed {
                        index: self.summary.entries,
                        reason: format!(
                            "archive is truncated in entry {:?}",
                            String::from_utf8_lossy(name)
                        ),
                    });
                }
                self.summary.bytes += copied;
                drop(file);
                meta(self, Some(header.mode))?;
            }
            tar::EntryType::Symlink => {
                let target = header.link.as_deref().unwrap_or_default();
                if target.is_empty() || target.contains(&0) || target.len() > MAX_PATH_LEN {
                    return Err(
                        self.reject(name, "symlink target is empty, contains NUL or is too long")
                    );
                }
                // The target is stored as is: nothing here ever follows it.
                fdops::symlinkat(target, &parent, &base)
                    .map_err(|e| self.io(name, "create symlink", e))?;
                meta(self, None)?;
            }
            tar::EntryType::Link => self.hardlink(header, &parent, &base)?,
            tar::EntryType::Char | tar::EntryType::Block => {
                if !self.options.allow_devices {
                    return Err(self.reject(name, "device nodes are not allowed in this archive"));
                }
                let kind = if header.kind == tar::EntryType::Char {
                    libc::S_IFCHR
                } else {
                    libc::S_IFBLK
                };
                let dev = crate::platform::storage::make_device(header.device.0, header.device.1);
                fdops::mknodat(&parent, &base, kind | 0o600, dev)
                    .map_err(|e| self.io(name, "create device node", e))?;
                meta(self, Some(header.mode))?;
            }
            tar::EntryType::Fifo => {
                fdops::mknodat(&parent, &base, libc::S_IFIFO | 0o600, 0)
                    .map_err(|e| self.io(name, "create fifo", e))?;
                meta(self, Some(header.mode))?;
            }
            other => {
                return Err(self.reject(
                    name,
                    format!("unsupported entry type {:?}", other.as_byte() as char),
                ));
            }
        }
        Ok(())
    }

    fn hardlink(&mut self, header: &EntryHeader, parent: &OwnedFd, base: &OsStr) -> Result<()> {
        let name = &header.name;
        let target = header.link.as_deref().unwrap_or_default();
        let mut target_parts = split_name(target)
            .map_err(|reason| self.reject(name, format!("hard link target: {reason}")))?;
        let Some(target_base) = target_parts.pop() else {
            return Err(self.reject(name, "hard link to the root directory"));
        };
        let target_parent = self.open_parent(name, &target_parts, false)?;
        match fdops::lstatat(&target_parent, &target_base)
            .map_err(|e| self.io(name, "stat hard link target", e))?
        {
            None => {
                return Err(self.reject(
                    name,
                    format!(
                        "hard link target {:?} does not exist",
                        String::from_utf8_lossy(target)
                    ),
                ))
            }
            Some(st) if fdops::is_type(st.st_mode, libc::S_IFDIR) => {
                return Err(self.reject(name, "hard link to a directory"));
            }
            Some(_) => {}
        }
        fdops::linkat(&target_parent, &target_base, parent, base)
            .map_err(|e| self.io(name, "create hard link", e))
    }

    /// Opens the directory `parts` below the root without following any
    /// symlink, creating missing directories when `create` is set.
    fn open_parent(&self, name: &[u8], parts: &[OsString], create: bool) -> Result<OwnedFd> {
        let mut dir = self
            .root
            .try_clone()
            .map_err(|e| self.io(name, "duplicate root", e))?;
        for (depth, part) in parts.iter().enumerate() {
            let walked = || String::from_utf8_lossy(&join(&parts[..=depth])).into_owned();
            match crate::platform::storage::open_dir_nofollow(&dir, part) {
                Ok(next) => dir = next,
                Err(e) if e.raw_os_error() == Some(libc::ENOENT) && create => {
                    fdops::mkdirat(&dir, part, 0o755)
                        .map_err(|e| self.io(name, "create parent directory", e))?;
                    dir = crate::platform::storage::open_dir_nofollow(&dir, part)
                        .map_err(|e| self.io(name, "open parent directory", e))?;
                }
                Err(e) if e.raw_os_error() == Some(libc::ENOENT) => {
                    return Err(self.reject(name, format!("{:?} does not exist", walked())));
                }
                Err(e) => {
                    let st = fdops::lstatat(&dir, part).ok().flatten();
                    return Err(match st {
                        Some(st) if fdops::is_type(st.st_mode, libc::S_IFLNK) => self.reject(
                            name,
                            format!(
                                "{:?} is a symlink; writing through a symlink is not allowed",
                                walked()
                            ),
                        ),
                        Some(st) if !fdops::is_type(st.st_mode, libc::S_IFDIR) => {
                            self.reject(name, format!("{:?} is not a directory", walked()))
                        }
                        _ => self.io(name, "open parent directory", e),
                    });
                }
            }
        }
        Ok(dir)
    }

    fn whiteout(&mut self, name: &[u8], parts: &[OsString], hidden: &OsStr) -> Result<()> {
        let hidden_bytes = hidden.as_bytes();
        if hidden_bytes.is_empty() || hidden_bytes == b"." || hidden_bytes == b".." {
            return Err(self.reject(name, "whiteout names no file"));
        }
        match self.options.whiteouts {
            Whiteouts::Apply => {
                // A whiteout under a directory that does not exist hides
                // nothing, and creating that directory would be wrong.
                let parent = match self.open_parent(name, parts, false) {
                    Ok(parent) => parent,
                    Err(Error::Entry { reason, .. }) if reason.ends_with("does not exist") => {
                        return Ok(())
                    }
                    Err(e) => return Err(e),
                };
                fdops::remove_all_at(&parent, hidden)
                    .map_err(|e| self.io(name, "apply whiteout", e))
            }
            Whiteouts::Overlay => {
                let parent = self.open_parent(name, parts, true)?;
                if fdops::lstatat(&parent, hidden)
                    .map_err(|e| self.io(name, "stat", e))?
                    .is_some()
                {
                    fdops::remove_all_at(&parent, hidden)
                        .map_err(|e| self.io(name, "apply whiteout", e))?;
                }
                crate::platform::storage::overlay_whiteout(&parent, hidden)
                    .map_err(|e| self.io(name, "create overlay whiteout", e))
            }
        }
    }

    fn opaque(&mut self, name: &[u8], parts: &[OsString]) -> Result<()> {
        let dir = self.open_parent(name, parts, true)?;
        match self.options.whiteouts {
            Whiteouts::Apply => self
                .hide_lower(&dir, &join(parts))
                .map_err(|e| self.io(name, "apply opaque marker", e)),
            Whiteouts::Overlay => crate::platform::storage::overlay_set_opaque(&dir)
                .map_err(|e| self.io(name, "mark directory opaque", e)),
        }
    }

    /// Removes from `dir` (at `prefix` below the root) everything this layer
    /// did not write. Directories that hold entries of this layer stay, and
    /// are cleared the same way, because an opaque marker hides every lower
    /// entry below it even when it comes after this layer's own entries.
    fn hide_lower(&self, dir: &OwnedFd, prefix: &[u8]) -> io::Result<()> {
        for child in fdops::list_dir(dir)? {
            let mut path = prefix.to_vec();
            if !path.is_empty() {
                path.push(b'/');
            }
            path.extend_from_slice(child.as_bytes());
            let mut below = path.clone();
            below.push(b'/');
            let written = self.created.contains(&path);
            let written_below = self
                .created
                .range(below.clone()..)
                .next()
                .is_some_and(|p| p.starts_with(&below));

            if !written && !written_below {
                fdops::remove_all_at(dir, &child)?;
                continue;
            }
            let is_dir = fdops::lstatat(dir, &child)?
                .is_some_and(|st| fdops::is_type(st.st_mode, libc::S_IFDIR));
            if is_dir {
                let sub = crate::platform::storage::open_dir_nofollow(dir, &child)?;
                self.hide_lower(&sub, &path)?;
            }
        }
        Ok(())
    }

    fn finish(&mut self) -> Result<()> {
        for (path, mtime) in self.dir_times.iter().rev() {
            let (base, parents) = path.split_last().expect("directory entries have a name");
            let name = join(path);
            let parent = self.open_parent(&name, parents, false)?;
            fdops::set_mtime(&parent, base, *mtime)
                .map_err(|e| self.io(&name, "set directory time", e))?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn split_name_normalises() {
        let parts = split_name(b"./a//b/./c").unwrap();
        assert_eq!(
            parts,
            vec![
                OsString::from("a"),
                OsString::from("b"),
                OsString::from("c")
            ]
        );
        assert!(split_name(b"./").unwrap().is_empty());
    }

    #[test]
    fn split_name_rejects_escapes() {
        assert!(split_name(b"/etc/passwd").unwrap_err().contains("absolute"));
        assert!(split_name(b"a/../../b").unwrap_err().contains(".."));
        assert!(split_name(b"a\0b").unwrap_err().contains("NUL"));
        assert!(split_name(b"").unwrap_err().contains("empty"));
        let long = vec![b'x'; MAX_NAME_LEN + 1];
        assert!(split_name(&long).unwrap_err().contains("longer"));
    }
}
