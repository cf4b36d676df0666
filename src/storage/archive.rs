//! Layer streams: recognising compression, digesting while writing, and
//! writing a layer tar from a directory of changes.
//!
//! Two kinds of change sets become layers. An overlayfs upper directory holds
//! only what changed, with deletions as 0/0 character devices and opaque
//! directories marked by an extended attribute. The other drivers hand over
//! two whole trees, the image's and the container's, and the layer is their
//! difference. Both end as OCI layer tars: deletions as `.wh.NAME` entries and
//! opaque directories as `.wh..wh..opq`, written before the directory's other
//! entries.

use std::collections::HashMap;
use std::ffi::OsString;
use std::fs::{self, File};
use std::io::{self, BufRead, BufReader, Read, Write};
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::{FileTypeExt, MetadataExt};
use std::path::{Path, PathBuf};

use sha2::{Digest, Sha256};

use super::extract::{OPAQUE_MARKER, WHITEOUT_PREFIX};
use super::{Error, Result};

/// Compression of a layer stream, recognised by its first bytes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Compression {
    None,
    Gzip,
    Zstd,
    Xz,
    Bzip2,
}

/// Recognises the compression of `reader` and returns a reader of the
/// uncompressed stream.
pub fn decompress<'a>(reader: impl Read + 'a) -> io::Result<(Compression, Box<dyn Read + 'a>)> {
    let mut reader = BufReader::with_capacity(256 * 1024, reader);
    let head = reader.fill_buf()?;
    let compression = if head.starts_with(&[0x1f, 0x8b]) {
        Compression::Gzip
    } else if head.starts_with(&[0x28, 0xb5, 0x2f, 0xfd]) {
        Compression::Zstd
    } else if head.starts_with(&[0xfd, b'7', b'z', b'X', b'Z', 0x00]) {
        Compression::Xz
    } else if head.starts_with(b"BZh") {
        Compression::Bzip2
    } else {
        Compression::None
    };
    let out: Box<dyn Read + 'a> = match compression {
        Compression::None => Box::new(reader),
        Compression::Gzip => Box::new(flate2::bufread::MultiGzDecoder::new(reader)),
        Compression::Zstd => Box::new(zstd::stream::read::Decoder::with_buffer(reader)?),
        Compression::Xz => Box::new(xz2::bufread::XzDecoder::new_multi_decoder(reader)),
        Compression::Bzip2 => Box::new(bzip2::bufread::MultiBzDecoder::new(reader)),
    };
    Ok((compression, out))
}

/// A writer that computes the sha256 and length of what passes through.
pub struct DigestWriter<W> {
    inner: W,
    hasher: Sha256,
    count: u64,
}

impl<W: Write> DigestWriter<W> {
    pub fn new(inner: W) -> Self {
        DigestWriter {
            inner,
            hasher: Sha256::new(),
            count: 0,
        }
    }

    /// Returns the inner writer, the digest as `sha256:HEX` and the length.
    pub fn finish(self) -> (W, String, u64) {
        let digest = format!("sha256:{}", hex(&self.hasher.finalize()));
        (self.inner, digest, self.count)
    }
}

impl<W: Write> Write for DigestWriter<W> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        let n = self.inner.write(buf)?;
        self.hasher.update(&buf[..n]);
        self.count += n as u64;
        Ok(n)
    }

    fn flush(&mut self) -> io::Result<()> {
        self.inner.flush()
    }
}

/// A reader that computes the sha256 and length of what passes through.
pub struct DigestReader<R> {
    inner: R,
    hasher: Sha256,
    count: u64,
}

impl<R: Read> DigestReader<R> {
    pub fn new(inner: R) -> Self {
        DigestReader {
            inner,
            hasher: Sha256::new(),
            count: 0,
        }
    }

    /// Returns the digest as `sha256:HEX` and the length read so far.
    pub fn finish(self) -> (String, u64) {
        (
            format!("sha256:{}", hex(&self.hasher.finalize())),
            self.count,
        )
    }
}

impl<R: Read> Read for DigestReader<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let n = self.inner.read(buf)?;
        self.hasher.update(&buf[..n]);
        self.count += n as u64;
        Ok(n)
    }
}

/// Formats bytes as lower-case hexadecimal.
pub fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// Returns the `sha256:HEX` digest of `bytes`.
pub fn sha256_digest(bytes: &[u8]) -> String {
    format!("sha256:{}", hex(&Sha256::digest(bytes)))
}

/// The source of a layer diff.
pub enum DiffSource<'a> {
    /// An overlayfs upper directory.
    OverlayUpper(&'a Path),
    /// Two whole trees; `lower` is `None` for an image with no layers.
    Trees {
        lower: Option<&'a Path>,
        upper: &'a Path,
    },
}

/// Writes the changes of `source` as an uncompressed OCI layer tar to `out`.
///
/// A file in the changes whose name starts with `.wh.` is rejected, because
/// every reader of the layer would take it for a whiteout.
pub fn write_diff(source: DiffSource<'_>, out: &mut dyn Write) -> Result<()> {
    let mut writer = DiffWriter {
        builder: tar::Builder::new(out),
        links: HashMap::new(),
    };
    writer.builder.mode(tar::HeaderMode::Complete);
    match source {
        DiffSource::OverlayUpper(upper) => writer.walk_upper(upper, Path::new(""))?,
        DiffSource::Trees { lower, upper } => writer.walk_trees(lower, upper, Path::new(""))?,
    }
    writer
        .builder
        .into_inner()
        .and_then(|out| out.flush())
        .map_err(|source| io_error("finish layer tar", source))
}

fn io_error(context: impl Into<String>, source: io::Error) -> Error {
    Error::Io {
        context: context.into(),
        source,
    }
}

struct DiffWriter<'a> {
    builder: tar::Builder<&'a mut dyn Write>,
    /// First path written for each multiply-linked inode, by (device, inode).
    links: HashMap<(u64, u64), PathBuf>,
}

fn sorted_entries(dir: &Path) -> Result<Vec<(OsString, fs::Metadata)>> {
    let mut entries = Vec::new();
    let read =
        fs::read_dir(dir).map_err(|e| io_error(format!("read directory {}", dir.display()), e))?;
    for entry in read {
        let entry = entry.map_err(|e| io_error(format!("read directory {}", dir.display()), e))?;
        let meta = entry
            .metadata()
            .map_err(|e| io_error(format!("stat {}", entry.path().display()), e))?;
        entries.push((entry.file_name(), meta));
    }
    entries.sort_by(|a, b| a.0.cmp(&b.0));
    Ok(entries)
}

fn check_reserved(rel: &Path, name: &OsString) -> Result<()> {
    if name.as_bytes().starts_with(WHITEOUT_PREFIX.as_bytes()) {
        return Err(Error::Entry {
            entry: rel.display().to_string(),
            reason: "names starting with `.wh.` are reserved for whiteouts in OCI layers; rename the file".into(),
        });
    }
    Ok(())
}

/// Returns whether a file differs between the lower and upper tree by the
/// metadata a layer records.
fn changed(
    lower: &fs::Metadata,
    upper: &fs::Metadata,
    lower_path: &Path,
    upper_path: &Path,
) -> bool {
    if lower.file_type() != upper.file_type()
        || lower.mode() != upper.mode()
        || lower.uid() != upper.uid()
        || lower.gid() != upper.gid()
    {
        return true;
    }
    let ft = upper.file_type();
    if ft.is_dir() {
        return false;
    }
    if ft.is_symlink() {
        return fs::read_link(lower_path).ok() != fs::read_link(upper_path).ok();
    }
    if ft.is_block_device() || ft.is_char_device() {
        return lower.rdev() != upper.rdev();
    }
    // NOTE: like other tree-diffing drivers, content is compared by size and
    // modification time only; a rewrite that restores both, or a change of
    // extended attributes alone, is missed.
    lower.size() != upper.size()
        || lower.mtime() != upper.mtime()
        || lower.mtime_nsec() != upper.mtime_nsec()
}

impl DiffWriter<'_> {
    fn walk_upper(&mut self, dir: &Path, rel: &Path) -> Result<()> {
        let entries = sorted_entries(dir)?;

        // Whiteouts and the opaque marker come before the directory's other
        // entries, as image-spec recommends.
        if !rel.as_os_str().is_empty()
            && crate::platform::storage::overlay_is_opaque(dir).unwrap_or(false)
        {
            self.append_empty(&rel.join(OPAQUE_MARKER))?;
        }
        for (name, meta) in &entries {
            if crate::platform::storage::is_overlay_whiteout(meta) {
                let mut wh = OsString::from(WHITEOUT_PREFIX);
                wh.push(name);
                self.append_empty(&rel.join(wh))?;
            }
        }

        for (name, meta) in &entries {
            if crate::platform::storage::is_overlay_whiteout(meta) {
                continue;
            }
            let child_rel = rel.join(name);
            check_reserved(&child_rel, name)?;
            let path = dir.join(name);
            self.append(&path, &child_rel, meta)?;
            if meta.is_dir() {
                self.walk_upper(&path, &child_rel)?;
            }
        }
        Ok(())
    }

    fn walk_trees(&mut self, lower: Option<&Path>, upper: &Path, rel: &Path) -> Result<()> {
        let upper_entries = sorted_entries(upper)?;
        let lower_entries = match lower {
            Some(lower) => sorted_entries(lower)?,
            None => Vec::new(),
        };
        let lower_map: HashMap<&OsString, &fs::Metadata> =
            lower_entries.iter().map(|(n, m)| (n, m)).collect();
        let upper_names: std::collections::HashSet<&OsString> =
            upper_entries.iter().map(|(n, _)| n).collect();

        for (name, _) in &lower_entries {
            if !upper_names.contains(name) {
                let mut wh = OsString::from(WHITEOUT_PREFIX);
                wh.push(name);
                self.append_empty(&rel.join(wh))?;
            }
        }

        for (name, meta) in &upper_entries {
            let child_rel = rel.join(name);
            let upper_path = upper.join(name);
            let lower_meta = lower_map.get(name).copied();
            let lower_path = lower.map(|l| l.join(name));
            let is_new = match (lower_meta, &lower_path) {
                (Some(lm), Some(lp)) => changed(lm, meta, lp, &upper_path),
                _ => true,
            };
            if is_new {
                check_reserved(&child_rel, name)?;
                self.append(&upper_path, &child_rel, meta)?;
            }
            if meta.is_dir() {
                // A directory that replaced a non-directory is new as a whole.
                let lower_dir = match (lower_meta, &lower_path) {
                    (Some(lm), Some(lp)) if lm.is_dir() => Some(lp.as_path()),
                    _ => None,
                };
                self.walk_trees(lower_dir, &upper_path, &child_rel)?;
            }
        }
        Ok(())
    }

    fn append_empty(&mut self, rel: &Path) -> Result<()> {
        let mut header = tar::Header::new_gnu();
        header.set_entry_type(tar::EntryType::Regular);
        header.set_size(0);
        header.set_mode(0o644);
        header.set_uid(0);
        header.set_gid(0);
        header.set_mtime(0);
        self.builder
            .append_data(&mut header, rel, io::empty())
            .map_err(|e| io_error(format!("write whiteout {}", rel.display()), e))
    }

    fn append(&mut self, path: &Path, rel: &Path, meta: &fs::Metadata) -> Result<()> {
        let context = || format!("write {} into the layer", path.display());
        let mut header = tar::Header::new_gnu();
        header.set_mode(meta.mode() & 0o7777);
        header.set_uid(meta.uid() as u64);
        header.set_gid(meta.gid() as u64);
        header.set_mtime(meta.mtime().max(0) as u64);
        header.set_size(0);
        let ft = meta.file_type();

        if ft.is_file() && meta.nlink() > 1 {
            let key = (meta.dev(), meta.ino());
            if let Some(first) = self.links.get(&key) {
                header.set_entry_type(tar::EntryType::Link);
                let first = first.clone();
                return self
                    .builder
                    .append_link(&mut header, rel, &first)
                    .map_err(|e| io_error(context(), e));
            }
            self.links.insert(key, rel.to_path_buf());
        }

        let xattrs: Vec<(String, Vec<u8>)> = crate::platform::storage::read_xattrs(path)
            .map_err(|e| io_error(context(), e))?
            .into_iter()
            .filter(|(key, _)| super::extract::xattr_allowed(key))
            .filter_map(|(key, value)| {
                let key = String::from_utf8(key).ok()?;
                Some((format!("{}{key}", super::extract::XATTR_PAX_PREFIX), value))
            })
            .collect();
        if !xattrs.is_empty() && !ft.is_symlink() {
            self.builder
                .append_pax_extensions(xattrs.iter().map(|(k, v)| (k.as_str(), v.as_slice())))
                .map_err(|e| io_error(context(), e))?;
        }

        if ft.is_dir() {
            header.set_entry_type(tar::EntryType::Directory);
            self.builder.append_data(&mut header, rel, io::empty())
        } else if ft.is_file() {
            header.set_entry_type(tar::EntryType::Regular);
            header.set_size(meta.size());
            let file = File::open(path).map_err(|e| io_error(context(), e))?;
            // A file that changes size while it is read would corrupt the
            // archive; `take` bounds it and a short read fails below.
            self.builder
                .append_data(&mut header, rel, file.take(meta.size()))
        } else if ft.is_symlink() {
            header.set_entry_type(tar::EntryType::Symlink);
            let target = fs::read_link(path).map_err(|e| io_error(context(), e))?;
            self.builder.append_link(&mut header, rel, &target)
        } else if ft.is_fifo() {
            header.set_entry_type(tar::EntryType::Fifo);
            self.builder.append_data(&mut header, rel, io::empty())
        } else if ft.is_char_device() || ft.is_block_device() {
            let kind = if ft.is_char_device() {
                tar::EntryType::Char
            } else {
                tar::EntryType::Block
            };
            header.set_entry_type(kind);
            let (major, minor) = crate::platform::storage::split_device(meta.rdev());
            header
                .set_device_major(major)
                .map_err(|e| io_error(context(), e))?;
            header
                .set_device_minor(minor)
                .map_err(|e| io_error(context(), e))?;
            self.builder.append_data(&mut header, rel, io::empty())
        } else {
            // Sockets are not archived, as with GNU tar.
            return Ok(());
        }
        .map_err(|e| io_error(context(), e))
    }
}
