//! `image save` and `image load`: OCI image layout archives, and the
//! docker-archive format of `docker save` and `podman save`.
//!
//! A saved archive is an OCI image layout (`oci-layout`, `index.json`,
//! `blobs/sha256/`) that also carries a docker-archive `manifest.json`
//! pointing at the same blobs, as Docker 25 writes, so that both kinds of
//! readers take it.

use std::collections::{BTreeMap, BTreeSet};
use std::fs::{self, File};
use std::io::{Read, Write};
use std::os::fd::OwnedFd;
use std::path::{Path, PathBuf};

use super::durable::{io_err, temp_path};
use super::{digest_hex, Error, Image, Reference, Result, Store};
use crate::oci::image_spec::{
    self, Descriptor, DockerArchiveEntry, ImageConfig, ImageLayout, Index, Manifest,
};
use crate::storage::{self, fdops, fsops, Compression};

/// Result of `load`: the images added and the names left out.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct LoadReport {
    /// Image IDs with the names given to them.
    pub images: Vec<(String, Vec<Reference>)>,
    /// Names in the archive that are not valid here, with the reason.
    pub skipped_names: Vec<String>,
}

/// Removes a staging directory when dropped.
struct TempDir(PathBuf);

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = fsops::remove_tree(&self.0);
    }
}

impl Store {
    /// Writes the images `specs` name to `out` as an OCI layout archive;
    /// names given in `specs` become the images' names in the archive.
    pub fn save(&self, specs: &[&str], out: &mut dyn Write) -> Result<()> {
        let _lock = self.lock(false)?;
        let mut builder = tar::Builder::new(out);
        let mut written = BTreeSet::new();
        let mut index = Vec::new();
        let mut docker = Vec::new();

        for spec in specs {
            let image = self.resolve_unlocked(spec)?;
            let name = Reference::parse(spec).ok().filter(|r| {
                self.names().ok().and_then(|n| n.get(r).cloned()) == Some(image.id.clone())
            });
            let manifest = self.manifest(&image)?;
            let mut digests = vec![image.id.clone(), image.manifest.digest.clone()];
            digests.extend(manifest.layers.iter().map(|l| l.digest.clone()));
            for digest in &digests {
                if written.insert(digest.clone()) {
                    let path = self.blob_path(digest)?;
                    append_file(
                        &mut builder,
                        &format!("blobs/sha256/{}", digest_hex(digest)?),
                        &path,
                    )?;
                }
            }

            let mut descriptor = image.manifest.clone();
            if let Some(name) = &name {
                let mut annotations = BTreeMap::new();
                annotations.insert(
                    image_spec::ANNOTATION_REF_NAME.to_string(),
                    name.to_string(),
                );
                annotations.insert(
                    image_spec::ANNOTATION_CONTAINERD_NAME.to_string(),
                    name.to_string(),
                );
                descriptor.annotations = Some(annotations);
            }
            index.push(descriptor);
            docker.push(DockerArchiveEntry {
                config: format!("blobs/sha256/{}", digest_hex(&image.id)?),
                repo_tags: name.map(|n| vec![n.to_string()]),
                layers: manifest
                    .layers
                    .iter()
                    .map(|l| digest_hex(&l.digest).map(|hex| format!("blobs/sha256/{hex}")))
                    .collect::<Result<_>>()?,
            });
        }

        let layout = ImageLayout {
            image_layout_version: image_spec::LAYOUT_VERSION.into(),
        };
        let index = Index {
            schema_version: 2,
            media_type: Some(image_spec::MEDIA_TYPE_INDEX.into()),
            manifests: index,
            annotations: None,
        };
        append_bytes(
            &mut builder,
            image_spec::LAYOUT_FILE,
            &serde_json::to_vec(&layout).expect("layout serialises"),
        )?;
        append_bytes(
            &mut builder,
            "index.json",
            &serde_json::to_vec(&index).expect("index serialises"),
        )?;
        append_bytes(
            &mut builder,
            "manifest.json",
            &serde_json::to_vec(&docker).expect("manifest serialises"),
        )?;
        builder
            .into_inner()
            .and_then(|out| out.flush())
            .map_err(io_err("finish image archive"))
    }

    /// Loads every image of an OCI layout archive or docker-archive, in any
    /// of the compressions layers may have.
    pub fn load(&self, input: &mut dyn Read, archive_name: &str) -> Result<LoadReport> {
        let _lock = self.lock(true)?;
        let staging = TempDir(temp_path(&self.tmp(), "load"));
        fs::create_dir(&staging.0).map_err(io_err(format!("create {}", staging.0.display())))?;

        // The archive is unpacked with the same checks as a layer, so its
        // names cannot reach outside the staging directory.
        let (_, mut plain) =
            storage::decompress(input).map_err(io_err(format!("read {archive_name}")))?;
        storage::extract(&mut plain, &staging.0, &storage::ExtractOptions::default())?;
        let root =
            fdops::open_dir(&staging.0).map_err(io_err(format!("open {}", staging.0.display())))?;

        let unpacked = Unpacked {
            root,
            archive: archive_name,
        };
        if staging.0.join("index.json").is_file() {
            self.load_oci(&unpacked)
        } else if staging.0.join("manifest.json").is_file() {
            self.load_docker(&unpacked)
        } else {
            Err(unpacked
                .error("it has neither index.json (OCI layout) nor manifest.json (docker-archive)"))
        }
    }

    fn load_oci(&self, unpacked: &Unpacked<'_>) -> Result<LoadReport> {
        let index: Index = unpacked.json("index.json")?;
        let mut report = LoadReport::default();
        let mut manifests = Vec::new();
        for descriptor in index.manifests {
            if descriptor.media_type == image_spec::MEDIA_TYPE_INDEX {
                let nested: Index = unpacked.json(&blob_name(&descriptor.digest)?)?;
                manifests.extend(nested.manifests);
            } else {
                manifests.push(descriptor);
            }
        }

        for descriptor in manifests {
            let manifest_bytes = unpacked.read_blob(&descriptor)?;
            let manifest: Manifest = serde_json::from_slice(&manifest_bytes)
                .map_err(|e| unpacked.error(&format!("manifest {}: {e}", descriptor.digest)))?;
            let config_bytes = unpacked.read_blob(&manifest.config)?;
            let config: ImageConfig = serde_json::from_slice(&config_bytes).map_err(|e| {
                unpacked.error(&format!("configuration {}: {e}", manifest.config.digest))
            })?;
            if config.rootfs.diff_ids.len() != manifest.layers.len() {
                return Err(unpacked
                    .error("the manifest and the configuration list different numbers of layers"));
            }

            let mut parent: Option<String> = None;
            for (layer, diff_id) in manifest.layers.iter().zip(&config.rootfs.diff_ids) {
                let mut file = unpacked.open(&blob_name(&layer.digest)?)?;
                let media_type = oci_layer_type(&layer.media_type);
                let record = self.import_layer(
                    parent.as_deref(),
                    &mut file,
                    &media_type,
                    Some(&layer.digest),
                    diff_id,
                )?;
                parent = Some(record.chain_id);
            }

            let annotations = descriptor.annotations.unwrap_or_default();
            let raw_name = annotations
                .get(image_spec::ANNOTATION_CONTAINERD_NAME)
                .or_else(|| annotations.get(image_spec::ANNOTATION_REF_NAME));
            let names = collect_names(raw_name.into_iter(), &mut report);
            let image = self.put_loaded(
                &config_bytes,
                parent.as_deref(),
                manifest.annotations,
                &names,
            )?;
            report.images.push((image.id, names));
        }
        Ok(report)
    }

    fn load_docker(&self, unpacked: &Unpacked<'_>) -> Result<LoadReport> {
        let entries: Vec<DockerArchiveEntry> = unpacked.json("manifest.json")?;
        let mut report = LoadReport::default();
        for entry in entries {
            let config_bytes = unpacked.read(&entry.config)?;
            let config: ImageConfig = serde_json::from_slice(&config_bytes)
                .map_err(|e| unpacked.error(&format!("configuration {}: {e}", entry.config)))?;
            if config.rootfs.diff_ids.len() != entry.layers.len() {
                return Err(unpacked.error(
                    "manifest.json and the configuration list different numbers of layers",
                ));
            }

            let mut parent: Option<String> = None;
            for (path, diff_id) in entry.layers.iter().zip(&config.rootfs.diff_ids) {
                let compression = {
                    let file = unpacked.open(path)?;
                    storage::decompress(file)
                        .map_err(io_err(format!("read {path} in {}", unpacked.archive)))?
                        .0
                };
                let media_type = match compression {
                    Compression::Gzip => image_spec::MEDIA_TYPE_LAYER_GZIP,
                    Compression::Zstd => image_spec::MEDIA_TYPE_LAYER_ZSTD,
                    Compression::None => image_spec::MEDIA_TYPE_LAYER_TAR,
                    Compression::Xz | Compression::Bzip2 => {
                        // NOTE: OCI has no media type for these; such layers
                        // load but would need recompressing to be saved.
                        image_spec::MEDIA_TYPE_LAYER_TAR
                    }
                };
                let mut file = unpacked.open(path)?;
                let record =
                    self.import_layer(parent.as_deref(), &mut file, media_type, None, diff_id)?;
                parent = Some(record.chain_id);
            }

            let tags = entry.repo_tags.unwrap_or_default();
            let names = collect_names(tags.iter(), &mut report);
            let image = self.put_loaded(&config_bytes, parent.as_deref(), None, &names)?;
            report.images.push((image.id, names));
        }
        Ok(report)
    }

    /// Stores a loaded image with its configuration bytes unchanged, so that
    /// its ID stays the one the other tool showed.
    fn put_loaded(
        &self,
        config: &[u8],
        top: Option<&str>,
        annotations: Option<BTreeMap<String, String>>,
        names: &[Reference],
    ) -> Result<Image> {
        let chain = match top {
            Some(top) => self.chain_of(top)?,
            None => Vec::new(),
        };
        let mut layers = Vec::new();
        for id in &chain {
            layers.push(self.layer_unlocked(id)?.blob);
        }
        let config_digest = storage::archive::sha256_digest(config);
        let manifest = Manifest {
            schema_version: 2,
            media_type: Some(image_spec::MEDIA_TYPE_MANIFEST.into()),
            config: Descriptor::new(
                image_spec::MEDIA_TYPE_CONFIG,
                &config_digest,
                config.len() as u64,
            ),
            layers,
            annotations,
        };
        let manifest_bytes = serde_json::to_vec(&manifest).expect("manifests serialise");
        self.put_image(config, &manifest_bytes, &chain, names)
    }
}

fn collect_names<'a>(
    raw: impl Iterator<Item = &'a String>,
    report: &mut LoadReport,
) -> Vec<Reference> {
    let mut names = Vec::new();
    for name in raw {
        match Reference::parse_foreign(name) {
            Ok(reference) => names.push(reference),
            Err(e) => report.skipped_names.push(format!(
                "{e}; the image was loaded without it, name it with `cblock tag`"
            )),
        }
    }
    names
}

/// Maps Docker's layer media types to the OCI ones.
fn oci_layer_type(media_type: &str) -> String {
    match media_type {
        image_spec::MEDIA_TYPE_DOCKER_LAYER_GZIP => image_spec::MEDIA_TYPE_LAYER_GZIP.into(),
        image_spec::MEDIA_TYPE_DOCKER_LAYER_TAR => image_spec::MEDIA_TYPE_LAYER_TAR.into(),
        other => other.into(),
    }
}

fn blob_name(digest: &str) -> Result<String> {
    Ok(format!("blobs/sha256/{}", digest_hex(digest)?))
}

/// An unpacked archive, read only through `open_in_root`.
struct Unpacked<'a> {
    root: OwnedFd,
    archive: &'a str,
}

impl Unpacked<'_> {
    fn error(&self, reason: &str) -> Error {
        Error::Archive {
            archive: self.archive.to_string(),
            reason: reason.to_string(),
        }
    }

    /// Opens a file of the archive. Symlinks (docker-archive links repeated
    /// layers) are followed but stay inside the archive.
    fn open(&self, name: &str) -> Result<File> {
        let fd =
            crate::platform::storage::open_in_root(&self.root, Path::new(name), libc::O_RDONLY)
                .map_err(|e| self.error(&format!("cannot open {name:?}: {e}")))?;
        Ok(File::from(fd))
    }

    fn read(&self, name: &str) -> Result<Vec<u8>> {
        let mut bytes = Vec::new();
        self.open(name)?
            .read_to_end(&mut bytes)
            .map_err(|e| self.error(&format!("cannot read {name:?}: {e}")))?;
        Ok(bytes)
    }

    fn read_blob(&self, descriptor: &Descriptor) -> Result<Vec<u8>> {
        let bytes = self.read(&blob_name(&descriptor.digest)?)?;
        let actual = storage::archive::sha256_digest(&bytes);
        if actual != descriptor.digest {
            return Err(self.error(&format!(
                "blob {} has content with digest {actual}",
                descriptor.digest
            )));
        }
        Ok(bytes)
    }

    fn json<T: for<'de> serde::Deserialize<'de>>(&self, name: &str) -> Result<T> {
        serde_json::from_slice(&self.read(name)?).map_err(|e| self.error(&format!("{name}: {e}")))
    }
}

fn tar_header(size: u64) -> tar::Header {
    let mut header = tar::Header::new_ustar();
    header.set_entry_type(tar::EntryType::Regular);
    header.set_mode(0o644);
    header.set_uid(0);
    header.set_gid(0);
    header.set_mtime(0);
    header.set_size(size);
    header
}

fn append_file(builder: &mut tar::Builder<&mut dyn Write>, name: &str, path: &Path) -> Result<()> {
    let file = File::open(path).map_err(io_err(format!("open {}", path.display())))?;
    let size = file
        .metadata()
        .map_err(io_err(format!("stat {}", path.display())))?
        .len();
    builder
        .append_data(&mut tar_header(size), name, file)
        .map_err(io_err(format!("write {name} into the archive")))
}

fn append_bytes(
    builder: &mut tar::Builder<&mut dyn Write>,
    name: &str,
    bytes: &[u8],
) -> Result<()> {
    builder
        .append_data(&mut tar_header(bytes.len() as u64), name, bytes)
        .map_err(io_err(format!("write {name} into the archive")))
}
