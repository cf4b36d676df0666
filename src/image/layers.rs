//! Layer commits and imports: a tar stream becomes a stored blob, a driver
//! layer and a layer record, in that order.

use std::fs::{self, File};
use std::io::{self, BufWriter, Read, Write};

use flate2::write::GzEncoder;

use super::durable::{commit_file, io_err, temp_path, write_atomic};
use super::{digest_hex, Error, Layer, Result, Store};
use crate::oci::image_spec::{self, Descriptor};
use crate::storage::archive::{decompress, DigestReader, DigestWriter};

/// gzip level for committed layers: zlib's level 1 is several times faster
/// than the default 6 for a few percent more bytes.
const GZIP_LEVEL: u32 = 1;

impl Store {
    /// Commits the changes of mount `mount_id` as a new layer on top of the
    /// layer the mount stacks on. The mount stays as it is.
    pub fn commit_mount(&self, mount_id: &str) -> Result<Layer> {
        let _lock = self.lock(true)?;
        let record: super::MountRecord = super::read_json(&self.mount_path(mount_id)?)?;
        let (blob, diff_id) = self.write_gzip_blob(|out| Ok(self.driver.diff(mount_id, out)?))?;
        self.create_layer_from_blob(record.top.as_deref(), blob, &diff_id)
    }

    /// Commits an uncompressed layer tar stream as a new layer on top of
    /// `parent` (a chain ID, `None` for a base layer). The builder uses it
    /// for a tar made from a directory, as with `storage::write_diff`.
    pub fn commit_tar(&self, parent: Option<&str>, tar: &mut dyn Read) -> Result<Layer> {
        let _lock = self.lock(true)?;
        if let Some(parent) = parent {
            self.layer_unlocked(parent)?;
        }
        let (blob, diff_id) = self.write_gzip_blob(|out| {
            io::copy(tar, out).map_err(io_err("read layer tar"))?;
            Ok(())
        })?;
        self.create_layer_from_blob(parent, blob, &diff_id)
    }

    /// Writes what `fill` produces, gzip-compressed, as a blob; returns the
    /// blob's descriptor and the diff ID of the uncompressed stream.
    fn write_gzip_blob(
        &self,
        fill: impl FnOnce(&mut dyn Write) -> Result<()>,
    ) -> Result<(Descriptor, String)> {
        let temp = temp_path(&self.tmp(), "layer");
        let result = (|| {
            let file = File::create(&temp).map_err(io_err(format!("create {}", temp.display())))?;
            let compressed = DigestWriter::new(BufWriter::with_capacity(1 << 20, file));
            let gzip = GzEncoder::new(compressed, flate2::Compression::new(GZIP_LEVEL));
            let mut plain = DigestWriter::new(gzip);
            fill(&mut plain)?;
            let (gzip, diff_id, _) = plain.finish();
            let compressed = gzip.finish().map_err(io_err("finish gzip stream"))?;
            let (writer, digest, size) = compressed.finish();
            let file = writer
                .into_inner()
                .map_err(|e| io_err("flush layer blob")(e.into_error()))?;
            file.sync_all()
                .map_err(io_err(format!("fsync {}", temp.display())))?;
            let blob = Descriptor::new(image_spec::MEDIA_TYPE_LAYER_GZIP, &digest, size);
            commit_file(&temp, &self.blob_path(&digest)?)?;
            Ok((blob, diff_id))
        })();
        if result.is_err() {
            let _ = fs::remove_file(&temp);
        }
        result
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
        let path = self.blob_path(&blob.digest)?;
        let file = File::open(&path).map_err(io_err(format!("open {}", path.display())))?;
        let (_, mut tar) = decompress(file).map_err(io_err(format!("read {}", path.display())))?;
        let parent_hex = parent.map(digest_hex).transpose()?;
        let summary = match self
            .driver
            .create_layer(digest_hex(&chain_id)?, parent_hex, &mut tar)
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
        let layer = Layer {
            chain_id,
            diff_id: diff_id.to_string(),
            parent: parent.map(str::to_string),
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
