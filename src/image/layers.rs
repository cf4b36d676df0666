//! Layer commits and imports: a tar stream becomes a stored blob, a driver
//! layer and a layer record. The record is written last, after the blob and
//! the driver layer are complete and flushed, so a crash leaves at most an
//! unreferenced blob or driver layer, which the next open removes.

use std::fs::{self, File};
use std::io::{self, BufReader, BufWriter, Read, Write};
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{SystemTime, UNIX_EPOCH};

use flate2::write::GzEncoder;

use super::durable::{commit_file, io_err, temp_path, write_atomic};
use super::{Error, Layer, Result, Store};
use crate::oci::image_spec::{self, Descriptor};
use crate::storage::archive::{decompress, sha256_digest, DigestReader, DigestWriter};
use crate::storage::ExtractSummary;

/// gzip level for committed layers: zlib's level 1 is several times faster
/// than the default 6 for a few percent more bytes.
const GZIP_LEVEL: u32 = 1;

/// Returns a new driver id: 24 hex digits, unique across processes.
fn new_driver_id() -> String {
    static COUNTER: AtomicU64 = AtomicU64::new(0);
    let nanos = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_nanos())
        .unwrap_or(0);
    let seed = format!(
        "{}-{nanos}-{}",
        std::process::id(),
        COUNTER.fetch_add(1, Ordering::Relaxed)
    );
    sha256_digest(seed.as_bytes())[7..31].to_string()
}

/// A writer that copies everything to two writers.
struct Tee<A, B>(A, B);

impl<A: Write, B: Write> Write for Tee<A, B> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        self.0.write_all(buf)?;
        self.1.write_all(buf)?;
        Ok(buf.len())
    }

    fn flush(&mut self) -> io::Result<()> {
        self.0.flush()?;
        self.1.flush()
    }
}

impl Store {
    /// Commits the changes of mount `mount_id` as a new layer on top of the
    /// layer the mount stacks on. The mount stays as it is, and holds the
    /// new layer (see `commit_tar`) until `remove_mount`.
    pub fn commit_mount(&self, mount_id: &str) -> Result<Layer> {
        let _lock = self.lock(true)?;
        let record: super::MountRecord = super::read_json(&self.mount_path(mount_id)?)?;
        let layer = self.commit_stream(record.top.as_deref(), &mut |out| {
            Ok(self.driver.diff(mount_id, out)?)
        })?;
        self.hold_unlocked(mount_id, &layer.chain_id)?;
        Ok(layer)
    }

    /// Commits an uncompressed layer tar stream as a new layer on top of
    /// `parent` (a chain ID, `None` for a base layer). The builder uses it
    /// for a tar made from a directory, as with `storage::write_diff`.
    ///
    /// `holder` (a build or container id) holds the layer: `prune` and
    /// `rmi` keep it until `release(holder)`, so that a concurrent prune
    /// cannot remove it before `add_image` names it.
    pub fn commit_tar(
        &self,
        parent: Option<&str>,
        tar: &mut dyn Read,
        holder: &str,
    ) -> Result<Layer> {
        crate::storage::check_id(holder)?;
        let _lock = self.lock(true)?;
        let layer = self.commit_stream(parent, &mut |out| {
            io::copy(tar, out).map_err(io_err("read layer tar"))?;
            Ok(())
        })?;
        self.hold_unlocked(holder, &layer.chain_id)?;
        Ok(layer)
    }

    /// Runs `produce` once and sends the tar stream it writes both into a
    /// gzip blob and, through a pipe, to a thread that unpacks it into a new
    /// driver layer. The caller holds the exclusive lock.
    fn commit_stream(
        &self,
        parent: Option<&str>,
        produce: &mut dyn FnMut(&mut dyn Write) -> Result<()>,
    ) -> Result<Layer> {
        let parent_layer = parent.map(|p| self.layer_unlocked(p)).transpose()?;
        let parent_driver_id = parent_layer.as_ref().map(|l| l.driver_id.as_str());
        let driver_id = new_driver_id();
        let temp = temp_path(&self.tmp(), "layer");
        let (read_end, write_end) =
            nix::unistd::pipe().map_err(|e| io_err("create pipe")(e.into()))?;

        let (written, extracted) = std::thread::scope(|scope| {
            let extractor = scope.spawn(|| {
                let mut reader = BufReader::with_capacity(1 << 20, File::from(read_end));
                let result = self
                    .driver
                    .create_layer(&driver_id, parent_driver_id, &mut reader);
                // Reading on to the end keeps the writer from failing with
                // EPIPE, so the caller gets the extraction error instead.
                let _ = io::copy(&mut reader, &mut io::sink());
                result
            });
            let written = self.write_blob_and_pipe(&temp, File::from(write_end), produce);
            (
                written,
                extractor.join().expect("layer extraction thread panicked"),
            )
        });

        let (blob, diff_id, summary) = match (written, extracted) {
            (Ok((blob, diff_id)), Ok(summary)) => (blob, diff_id, summary),
            (written, extracted) => {
                if extracted.is_ok() {
                    let _ = self.driver.remove_layer(&driver_id);
                }
                let _ = fs::remove_file(&temp);
                written?;
                return Err(extracted.expect_err("one of the two failed").into());
            }
        };

        let chain_id = super::chain_id(parent, &diff_id);
        if let Ok(existing) = self.layer_unlocked(&chain_id) {
            self.driver.remove_layer(&driver_id)?;
            let _ = fs::remove_file(&temp);
            return Ok(existing);
        }
        commit_file(&temp, &self.blob_path(&blob.digest)?)?;
        self.write_layer_record(parent, blob, &diff_id, driver_id, summary)
    }

    /// Writes what `produce` makes into a gzip blob at `temp` and into
    /// `pipe`; returns the blob's descriptor and the stream's diff ID.
    fn write_blob_and_pipe(
        &self,
        temp: &std::path::Path,
        pipe: File,
        produce: &mut dyn FnMut(&mut dyn Write) -> Result<()>,
    ) -> Result<(Descriptor, String)> {
        let file = File::create(temp).map_err(io_err(format!("create {}", temp.display())))?;
        let compressed = DigestWriter::new(BufWriter::with_capacity(1 << 20, file));
        let gzip = GzEncoder::new(compressed, flate2::Compression::new(GZIP_LEVEL));
        let pipe = BufWriter::with_capacity(1 << 20, pipe);
        let mut plain = DigestWriter::new(Tee(gzip, pipe));
        produce(&mut plain)?;

        let (Tee(gzip, pipe), diff_id, _) = plain.finish();
        // Closing the pipe ends the extraction thread's input.
        drop(
            pipe.into_inner()
                .map_err(|e| io_err("write to the layer extraction")(e.into_error()))?,
        );
        let compressed = gzip.finish().map_err(io_err("finish gzip stream"))?;
        let (writer, digest, size) = compressed.finish();
        let file = writer
            .into_inner()
            .map_err(|e| io_err("flush layer blob")(e.into_error()))?;
        file.sync_all()
            .map_err(io_err(format!("fsync {}", temp.display())))?;
        Ok((
            Descriptor::new(image_spec::MEDIA_TYPE_LAYER_GZIP, &digest, size),
            diff_id,
        ))
    }

    /// Flushes the driver's file system, so that the layer's files are on
    /// disk before its record, and writes the record.
    fn write_layer_record(
        &self,
        parent: Option<&str>,
        blob: Descriptor,
        diff_id: &str,
        driver_id: String,
        summary: ExtractSummary,
    ) -> Result<Layer> {
        let driver_dir = self.dir.join(self.driver.kind().name());
        crate::platform::storage::sync_filesystem(&driver_dir).map_err(io_err(format!(
            "flush file system of {}",
            driver_dir.display()
        )))?;
        let layer = Layer {
            chain_id: super::chain_id(parent, diff_id),
            diff_id: diff_id.to_string(),
            parent: parent.map(str::to_string),
            driver_id,
            blob,
            size: summary.bytes,
        };
        write_atomic(
            &self.tmp(),
            &self.layer_path(&layer.chain_id)?,
            &super::to_json(&layer),
        )?;
        Ok(layer)
    }

    /// Holds layer `chain_id` for `holder` (a build id) until
    /// `release(holder)`: a build holds each layer it commits or takes from
    /// the cache until the image that uses it is named.
    pub fn hold(&self, holder: &str, chain_id: &str) -> Result<()> {
        crate::storage::check_id(holder)?;
        let _lock = self.lock(true)?;
        self.layer_unlocked(chain_id)?;
        self.hold_unlocked(holder, chain_id)
    }

    /// Drops every layer hold of `holder`; a holder with none is not an
    /// error.
    pub fn release(&self, holder: &str) -> Result<()> {
        crate::storage::check_id(holder)?;
        let _lock = self.lock(true)?;
        super::durable::remove_durable(&self.dir.join("holds").join(holder))
    }

    /// Adds `chain_id` to the holds of `holder`; the caller holds the
    /// exclusive lock.
    fn hold_unlocked(&self, holder: &str, chain_id: &str) -> Result<()> {
        crate::storage::check_id(holder)?;
        let path = self.dir.join("holds").join(holder);
        let mut text = fs::read_to_string(&path).unwrap_or_default();
        if !text.lines().any(|line| line == chain_id) {
            text.push_str(chain_id);
            text.push('\n');
            write_atomic(&self.tmp(), &path, text.as_bytes())?;
        }
        Ok(())
    }

    /// Returns the chain IDs every holder holds.
    pub(super) fn held_layers(&self) -> Result<Vec<String>> {
        let dir = self.dir.join("holds");
        let mut out = Vec::new();
        for entry in fs::read_dir(&dir).map_err(io_err(format!("read {}", dir.display())))? {
            let path = entry
                .map_err(io_err(format!("read {}", dir.display())))?
                .path();
            let text =
                fs::read_to_string(&path).map_err(io_err(format!("read {}", path.display())))?;
            out.extend(text.lines().map(str::to_string));
        }
        Ok(out)
    }

    /// Creates the driver layer from a stored blob and writes its record;
    /// returns the existing record when the layer is already there.
    fn create_layer_from_blob(
        &self,
        parent: Option<&str>,
        blob: Descriptor,
        diff_id: &str,
    ) -> Result<Layer> {
        let chain_id = super::chain_id(parent, diff_id);
        if let Ok(layer) = self.layer_unlocked(&chain_id) {
            return Ok(layer);
        }
        let parent_layer = parent.map(|p| self.layer_unlocked(p)).transpose()?;
        let parent_driver_id = parent_layer.as_ref().map(|l| l.driver_id.as_str());
        let path = self.blob_path(&blob.digest)?;
        let file = File::open(&path).map_err(io_err(format!("open {}", path.display())))?;
        let (_, mut tar) = decompress(file).map_err(io_err(format!("read {}", path.display())))?;
        let driver_id = new_driver_id();
        let summary = match self
            .driver
            .create_layer(&driver_id, parent_driver_id, &mut tar)
        {
            Ok(summary) => summary,
            Err(err) => {
                // A blob no layer record names would stay until the next
                // open; it goes now.
                let shared = self
                    .all_layers()?
                    .iter()
                    .any(|l| l.blob.digest == blob.digest);
                if !shared {
                    super::durable::remove_durable(&path)?;
                }
                return Err(err.into());
            }
        };
        self.write_layer_record(parent, blob, diff_id, driver_id, summary)
    }

    /// Imports a layer blob from an archive: stores it as it is, checks its
    /// digest and the diff ID the image configuration expects, and creates
    /// the layer. The caller holds the exclusive lock.
    pub(super) fn import_layer(
        &self,
        parent: Option<&str>,
        blob: &mut dyn Read,
        media_type: &str,
        expected_digest: Option<&str>,
        expected_diff_id: &str,
    ) -> Result<Layer> {
        let chain_id = super::chain_id(parent, expected_diff_id);
        if let Ok(layer) = self.layer_unlocked(&chain_id) {
            return Ok(layer);
        }

        let temp = temp_path(&self.tmp(), "import");
        let result = (|| {
            let mut file =
                File::create(&temp).map_err(io_err(format!("create {}", temp.display())))?;
            let mut reader = DigestReader::new(blob);
            io::copy(&mut reader, &mut file)
                .map_err(io_err(format!("write {}", temp.display())))?;
            file.sync_all()
                .map_err(io_err(format!("fsync {}", temp.display())))?;
            let (digest, size) = reader.finish();
            if let Some(expected) = expected_digest {
                if expected != digest {
                    return Err(Error::Corrupt {
                        what: format!("layer blob {expected}"),
                        reason: format!("its content has digest {digest}"),
                    });
                }
            }

            // The diff ID is checked before the layer is created under its
            // chain ID, so a wrong layer never takes that name.
            let reread = File::open(&temp).map_err(io_err(format!("open {}", temp.display())))?;
            let (_, plain) =
                decompress(reread).map_err(io_err(format!("read {}", temp.display())))?;
            let mut plain = DigestReader::new(plain);
            io::copy(&mut plain, &mut io::sink())
                .map_err(io_err(format!("decompress {}", temp.display())))?;
            let (diff_id, _) = plain.finish();
            if diff_id != expected_diff_id {
                return Err(Error::Corrupt {
                    what: format!("layer {expected_diff_id}"),
                    reason: format!("its uncompressed content has digest {diff_id}"),
                });
            }
            commit_file(&temp, &self.blob_path(&digest)?)?;
            Ok(Descriptor::new(media_type, &digest, size))
        })();
        let blob = match result {
            Ok(blob) => blob,
            Err(err) => {
                let _ = fs::remove_file(&temp);
                return Err(err);
            }
        };
        self.create_layer_from_blob(parent, blob, expected_diff_id)
    }
}
