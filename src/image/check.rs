//! Crash recovery at open and the consistency check.

use std::collections::BTreeSet;
use std::fs::{self, File};
use std::io;

use super::durable::{io_err, remove_durable};
use super::{chain_id, digest_hex, Image, Layer, Result, Store};
use crate::storage::archive::DigestReader;
use crate::storage::fsops;

impl Store {
    /// Removes what an interrupted operation left: files in `tmp/`, driver
    /// staging directories, driver layers and mounts without a record, and
    /// blobs nothing refers to. The caller holds the exclusive lock.
    pub(super) fn recover(&self) -> Result<()> {
        let tmp = self.tmp();
        for entry in fs::read_dir(&tmp).map_err(io_err(format!("read {}", tmp.display())))? {
            let path = entry
                .map_err(io_err(format!("read {}", tmp.display())))?
                .path();
            fsops::remove_tree(&path).map_err(io_err(format!("remove {}", path.display())))?;
        }
        self.driver.cleanup()?;

        let layers = self.all_layers()?;
        let recorded: BTreeSet<String> = layers.iter().map(|l| l.driver_id.clone()).collect();
        for id in self.driver.layers()? {
            if !recorded.contains(&id) {
                self.driver.remove_layer(&id)?;
            }
        }

        let mounts = self.mount_records()?;
        for id in self.driver.mounts()? {
            if !mounts.contains_key(&id) {
                self.driver.remove_mount(&id)?;
            }
        }

        let mut keep = BTreeSet::new();
        for layer in &layers {
            keep.insert(layer.blob.digest.clone());
        }
        for image in self.all_images()? {
            keep.insert(image.id.clone());
            keep.insert(image.manifest.digest.clone());
        }
        let blob_dir = self.dir.join("blobs/sha256");
        for entry in
            fs::read_dir(&blob_dir).map_err(io_err(format!("read {}", blob_dir.display())))?
        {
            let entry = entry.map_err(io_err(format!("read {}", blob_dir.display())))?;
            let digest = format!("sha256:{}", entry.file_name().to_string_lossy());
            if !keep.contains(&digest) {
                remove_durable(&entry.path())?;
            }
        }
        Ok(())
    }

    /// Checks the store and returns every problem found, empty when it is
    /// consistent: names point to images, images to their blobs and layers,
    /// layers to their blobs, parents and driver layers, and every blob's
    /// content matches its digest.
    pub fn check(&self) -> Result<Vec<String>> {
        let _lock = self.lock(false)?;
        let mut problems = Vec::new();

        let leftovers = fs::read_dir(self.tmp()).map(|d| d.count()).unwrap_or(0);
        if leftovers > 0 {
            problems.push(format!(
                "{leftovers} leftover files in {}",
                self.tmp().display()
            ));
        }

        let mut referenced = BTreeSet::new();
        let images = self.all_images()?;
        let image_ids: BTreeSet<&str> = images.iter().map(|i| i.id.as_str()).collect();
        for (name, id) in self.names()? {
            if !image_ids.contains(id.as_str()) {
                problems.push(format!("name {name} points to missing image {id}"));
            }
        }
        for image in &images {
            referenced.insert(image.id.clone());
            referenced.insert(image.manifest.digest.clone());
            self.check_image(image, &mut problems);
        }

        let layers = self.all_layers()?;
        let driver_layers: BTreeSet<String> = self.driver.layers()?.into_iter().collect();
        for layer in &layers {
            referenced.insert(layer.blob.digest.clone());
            self.check_layer(layer, &driver_layers, &mut problems);
        }
        let recorded: BTreeSet<String> = layers.iter().map(|l| l.driver_id.clone()).collect();
        for id in driver_layers.difference(&recorded) {
            problems.push(format!("driver layer {id} has no layer record"));
        }

        let mounts = self.mount_records()?;
        for (id, record) in &mounts {
            if let Some(top) = &record.top {
                if self.layer_unlocked(top).is_err() {
                    problems.push(format!("mount {id} stacks on missing layer {top}"));
                }
            }
        }
        for id in self.driver.mounts()? {
            if !mounts.contains_key(&id) {
                problems.push(format!("driver mount {id} has no mount record"));
            }
        }

        let blob_dir = self.dir.join("blobs/sha256");
        for path in
            fs::read_dir(&blob_dir).map_err(io_err(format!("read {}", blob_dir.display())))?
        {
            let path = path
                .map_err(io_err(format!("read {}", blob_dir.display())))?
                .path();
            let digest = format!(
                "sha256:{}",
                path.file_name().unwrap_or_default().to_string_lossy()
            );
            if !referenced.contains(&digest) {
                problems.push(format!("blob {digest} is referenced by nothing"));
            }
            match blob_digest(&path) {
                Ok(actual) if actual == digest => {}
                Ok(actual) => {
                    problems.push(format!("blob {digest} has content with digest {actual}"))
                }
                Err(e) => problems.push(format!("blob {digest} cannot be read: {e}")),
            }
        }
        Ok(problems)
    }

    fn check_image(&self, image: &Image, problems: &mut Vec<String>) {
        let config = match self.config(image) {
            Ok(config) => config,
            Err(e) => {
                problems.push(format!("image {}: configuration: {e}", image.id));
                return;
            }
        };
        let manifest = match self.manifest(image) {
            Ok(manifest) => manifest,
            Err(e) => {
                problems.push(format!("image {}: manifest: {e}", image.id));
                return;
            }
        };
        if manifest.config.digest != image.id {
            problems.push(format!(
                "image {}: manifest names configuration {}",
                image.id, manifest.config.digest
            ));
        }
        let mut diff_ids = Vec::new();
        let mut blobs = Vec::new();
        for id in &image.layers {
            match self.layer_unlocked(id) {
                Ok(layer) => {
                    diff_ids.push(layer.diff_id);
                    blobs.push(layer.blob.digest);
                }
                Err(_) => problems.push(format!("image {}: layer {id} is missing", image.id)),
            }
        }
        if diff_ids != config.rootfs.diff_ids {
            problems.push(format!(
                "image {}: layers do not match the configuration's diff IDs",
                image.id
            ));
        }
        let manifest_blobs: Vec<String> =
            manifest.layers.iter().map(|d| d.digest.clone()).collect();
        if blobs != manifest_blobs {
            problems.push(format!(
                "image {}: layers do not match the manifest",
                image.id
            ));
        }
    }

    fn check_layer(
        &self,
        layer: &Layer,
        driver_layers: &BTreeSet<String>,
        problems: &mut Vec<String>,
    ) {
        if digest_hex(&layer.chain_id).is_err() {
            problems.push(format!(
                "layer record with invalid chain ID {}",
                layer.chain_id
            ));
            return;
        }
        let driver_id = layer.driver_id.as_str();
        if chain_id(layer.parent.as_deref(), &layer.diff_id) != layer.chain_id {
            problems.push(format!(
                "layer {}: chain ID does not match parent and diff ID",
                layer.chain_id
            ));
        }
        if let Some(parent) = &layer.parent {
            if self.layer_unlocked(parent).is_err() {
                problems.push(format!(
                    "layer {}: parent {parent} is missing",
                    layer.chain_id
                ));
            }
        }
        if !driver_layers.contains(driver_id) || !self.driver.layer_exists(driver_id) {
            problems.push(format!(
                "layer {}: the storage driver does not have it",
                layer.chain_id
            ));
        }
        match self.blob_path(&layer.blob.digest) {
            Ok(path) if path.exists() => {}
            _ => problems.push(format!(
                "layer {}: blob {} is missing",
                layer.chain_id, layer.blob.digest
            )),
        }
    }
}

fn blob_digest(path: &std::path::Path) -> io::Result<String> {
    let mut reader = DigestReader::new(File::open(path)?);
    io::copy(&mut reader, &mut io::sink())?;
    Ok(reader.finish().0)
}
