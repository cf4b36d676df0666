//! The content-addressed image store: OCI image configurations, manifests,
//! names and tags, kept durable across crashes.
//!
//! The store lives in `DATA/store/`:
//!
//! ```text
//! driver              name of the storage driver the store was created with
//! lock                flock(2) target serialising operations
//! tmp/                files being written; emptied at open
//! blobs/sha256/HEX    configurations, manifests and layer blobs by digest
//! layers/HEX.json     layer record; HEX is the layer's chain ID
//! images/HEX.json     image record; HEX is the image ID (config digest)
//! names.json          `name:tag` -> image ID
//! uses/HEX/USER       image HEX is in use by container or build USER
//! holds/HOLDER        chain IDs of layers HOLDER committed and still needs
//! mounts/ID.json      mount record: the layer and image a mount stacks on
//! DRIVER/             the storage driver's own files
//! ```
//!
//! Layers are content-addressed by diff ID (the sha256 of the uncompressed
//! tar stream) and recorded under their chain ID, which also fixes their
//! parents. The driver keeps each layer under an id of its own. Records are written only after what they name is complete,
//! and removed before it, so a crash at any point leaves only unreferenced
//! files, which `open` removes. Every operation holds the lock for its whole
//! run: shared for reads, exclusive for changes.
//!
//! How the rest of cblocks uses it:
//!
//! - the daemon opens one `Store` (`Store::open(data_dir, driver)`) and
//!   mounts an image for each container with `mount_image(id, image)`, which
//!   returns the root file system path and counts as a use of the image;
//!   `remove_mount(id)` ends it. `add_use`/`remove_use` record other uses;
//! - a build mounts its base with `mount_image` or a step's layer with
//!   `mount_layer`, commits each step with `commit_mount` (or a tar with
//!   `commit_tar`), and finishes with `add_image(config, top, annotations,
//!   names)`, then removes its mounts and calls `release`;
//! - the client's image commands call `images`, `resolve`, `tag`, `remove`,
//!   `prune`, `disk_usage`, `save` and `load`.

use std::collections::{BTreeMap, BTreeSet, HashSet};
use std::fs;
use std::path::{Path, PathBuf};
use std::time::SystemTime;

use serde::{Deserialize, Serialize};

use crate::oci::image_spec::{self, Descriptor, ImageConfig, Manifest};
use crate::storage::{self, Driver, DriverKind};

mod check;
pub mod durable;
mod layers;
pub mod reference;
mod transfer;

pub use durable::rfc3339;
pub use reference::Reference;
pub use transfer::LoadReport;

use durable::{io_err, write_atomic, StoreLock};

/// Errors of this module.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("{context}: {source}")]
    Io {
        context: String,
        source: std::io::Error,
    },
    #[error(transparent)]
    Storage(#[from] storage::Error),
    #[error("invalid image name {reference:?}: {rule}")]
    InvalidReference { reference: String, rule: String },
    #[error(
        "no image store in data directory {0}; start cblockd with `-d {0}` once, \
         or pass the daemon's data directory with -d"
    )]
    NoStore(PathBuf),
    #[error("image {0:?} not found; `cblock images` lists the images")]
    ImageNotFound(String),
    #[error("image ID prefix {0:?} matches more than one image; give more characters")]
    AmbiguousId(String),
    #[error("layer {0} not found; it was pruned or never committed")]
    LayerNotFound(String),
    #[error(
        "data directory {data_dir} uses storage driver {recorded:?}, not {requested:?}; \
         start with `--storage {recorded}` or use another data directory"
    )]
    DriverMismatch {
        data_dir: PathBuf,
        recorded: String,
        requested: String,
    },
    #[error("image {image} is in use by {users}; stop them first or remove it with --force")]
    InUse { image: String, users: String },
    #[error("image {image} has the names {names}; remove them one by one or use --force")]
    MultipleNames { image: String, names: String },
    #[error("invalid {what} {value:?}: {reason}")]
    Invalid {
        what: &'static str,
        value: String,
        reason: String,
    },
    #[error(
        "{what} in the store is damaged: {reason}; run the consistency check and remove the image"
    )]
    Corrupt { what: String, reason: String },
    #[error("archive {archive}: {reason}")]
    Archive { archive: String, reason: String },
}

/// Result with this module's error type.
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// One layer: its content digests, its parent and its blob.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Layer {
    /// OCI chain ID, `sha256:HEX`: the layer and all its parents.
    pub chain_id: String,
    /// sha256 of the uncompressed tar stream, `sha256:HEX`.
    pub diff_id: String,
    /// Chain ID of the parent layer.
    pub parent: Option<String>,
    /// The storage driver's id of the layer, unrelated to its digests so
    /// that the driver can unpack it before the diff ID is known.
    pub driver_id: String,
    /// The stored blob (compressed or not) as it appears in manifests.
    pub blob: Descriptor,
    /// Bytes of regular file content in the layer.
    pub size: u64,
}

/// One image: its configuration digest, manifest and layers.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Image {
    /// The digest of the configuration, `sha256:HEX`.
    pub id: String,
    pub manifest: Descriptor,
    /// Chain IDs of the layers, base first.
    pub layers: Vec<String>,
    /// When the image entered this store, RFC 3339.
    pub added: String,
    /// Creation time from the configuration, RFC 3339, when it has one.
    pub created: Option<String>,
    /// Sum of the layers' sizes in bytes.
    pub size: u64,
}

impl Image {
    /// Returns the first 12 hex digits of the ID, as listings show it.
    pub fn short_id(&self) -> &str {
        let hex = self.id.strip_prefix("sha256:").unwrap_or(&self.id);
        &hex[..hex.len().min(12)]
    }
}

/// An image with the names that point to it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ImageSummary {
    pub image: Image,
    pub names: Vec<Reference>,
}

impl Serialize for Reference {
    fn serialize<S: serde::Serializer>(&self, s: S) -> std::result::Result<S::Ok, S::Error> {
        s.serialize_str(&self.to_string())
    }
}

impl<'de> Deserialize<'de> for Reference {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> std::result::Result<Self, D::Error> {
        let text = String::deserialize(d)?;
        Reference::parse(&text).map_err(serde::de::Error::custom)
    }
}

/// Mount record: the layer and image a mount stacks on.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct MountRecord {
    /// Chain ID of the top layer, `None` for an empty root.
    pub top: Option<String>,
    /// The image mounted, when the mount is of an image.
    pub image: Option<String>,
}

/// Outcome of `remove` for one image reference.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Removed {
    /// Only the name went; the image has other names.
    Untagged(Reference),
    /// The name and the image went.
    Deleted { name: Option<Reference>, id: String },
}

/// Images, layers and blobs that `prune` removed.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct PruneReport {
    pub images: Vec<String>,
    pub layers: Vec<String>,
    pub blobs: u64,
    pub bytes_freed: u64,
}

/// Disk usage of the store.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct DiskUsage {
    pub images: u64,
    pub layers: u64,
    /// Bytes of file content in all layers.
    pub layer_bytes: u64,
    pub blobs: u64,
    pub blob_bytes: u64,
    pub mounts: u64,
}

/// The image store of one data directory.
pub struct Store {
    data_dir: PathBuf,
    dir: PathBuf,
    driver: Box<dyn Driver>,
}

/// Returns the hex part of a `sha256:HEX` digest, checking its form so that
/// it is safe as a file name.
pub fn digest_hex(digest: &str) -> Result<&str> {
    let hex = digest.strip_prefix("sha256:").unwrap_or("");
    if hex.len() != 64
        || !hex
            .bytes()
            .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
    {
        return Err(Error::Invalid {
            what: "digest",
            value: digest.to_string(),
            reason: "expected sha256: and 64 lower-case hex digits".into(),
        });
    }
    Ok(hex)
}

/// Returns the chain ID of a layer with `diff_id` on top of `parent`.
pub fn chain_id(parent: Option<&str>, diff_id: &str) -> String {
    match parent {
        None => diff_id.to_string(),
        Some(parent) => storage::archive::sha256_digest(format!("{parent} {diff_id}").as_bytes()),
    }
}

fn read_json<T: for<'de> Deserialize<'de>>(path: &Path) -> Result<T> {
    let bytes = fs::read(path).map_err(io_err(format!("read {}", path.display())))?;
    serde_json::from_slice(&bytes).map_err(|e| Error::Corrupt {
        what: path.display().to_string(),
        reason: e.to_string(),
    })
}

fn to_json<T: Serialize>(value: &T) -> Vec<u8> {
    serde_json::to_vec_pretty(value).expect("store records serialise")
}

impl Store {
    /// Opens (creating if needed) the store in `data_dir` with `driver`. A
    /// store created with another driver is an error. Leftovers of a crash
    /// are removed.
    pub fn open(data_dir: &Path, driver: DriverKind) -> Result<Store> {
        let dir = data_dir.join("store");
        for sub in [
            "tmp",
            "blobs/sha256",
            "layers",
            "images",
            "uses",
            "mounts",
            "holds",
        ] {
            let path = dir.join(sub);
            fs::create_dir_all(&path).map_err(io_err(format!("create {}", path.display())))?;
        }
        let _lock = StoreLock::acquire(&dir.join("lock"), true)?;

        let driver_file = dir.join("driver");
        match fs::read_to_string(&driver_file) {
            Ok(recorded) if recorded.trim() != driver.name() => {
                return Err(Error::DriverMismatch {
                    data_dir: data_dir.to_path_buf(),
                    recorded: recorded.trim().to_string(),
                    requested: driver.name().to_string(),
                });
            }
            Ok(_) => {}
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                write_atomic(&dir.join("tmp"), &driver_file, driver.name().as_bytes())?;
            }
            Err(e) => return Err(io_err(format!("read {}", driver_file.display()))(e)),
        }

        let driver = storage::open_driver(driver, &dir.join(driver.name()))?;
        let store = Store {
            data_dir: data_dir.to_path_buf(),
            dir,
            driver,
        };
        store.recover()?;
        Ok(store)
    }

    /// Opens the existing store in `data_dir` with the driver it records.
    /// A data directory without a store is an error rather than a new store,
    /// so that a client command never fixes the driver before cblockd does.
    pub fn open_recorded(data_dir: &Path) -> Result<Store> {
        let driver_file = data_dir.join("store").join("driver");
        let kind = match fs::read_to_string(&driver_file) {
            Ok(name) => DriverKind::parse(name.trim())?,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                return Err(Error::NoStore(data_dir.to_path_buf()));
            }
            Err(e) => return Err(io_err(format!("read {}", driver_file.display()))(e)),
        };
        Store::open(data_dir, kind)
    }

    /// Opens the store in `data_dir` with the driver it records, or creates
    /// it with the platform's default driver: what cblockd does when
    /// started without `--storage`.
    pub fn open_or_create(data_dir: &Path) -> Result<Store> {
        match Store::open_recorded(data_dir) {
            Err(Error::NoStore(_)) => Store::open(data_dir, DriverKind::platform_default()),
            other => other,
        }
    }

    pub fn data_dir(&self) -> &Path {
        &self.data_dir
    }

    pub fn driver(&self) -> &dyn Driver {
        self.driver.as_ref()
    }

    fn lock(&self, exclusive: bool) -> Result<StoreLock> {
        StoreLock::acquire(&self.dir.join("lock"), exclusive)
    }

    fn tmp(&self) -> PathBuf {
        self.dir.join("tmp")
    }

    fn blob_path(&self, digest: &str) -> Result<PathBuf> {
        Ok(self.dir.join("blobs/sha256").join(digest_hex(digest)?))
    }

    fn layer_path(&self, chain_id: &str) -> Result<PathBuf> {
        Ok(self
            .dir
            .join("layers")
            .join(format!("{}.json", digest_hex(chain_id)?)))
    }

    fn image_path(&self, id: &str) -> Result<PathBuf> {
        Ok(self
            .dir
            .join("images")
            .join(format!("{}.json", digest_hex(id)?)))
    }

    fn mount_path(&self, id: &str) -> Result<PathBuf> {
        storage::check_id(id)?;
        Ok(self.dir.join("mounts").join(format!("{id}.json")))
    }

    /// Reads a blob into memory; for configurations and manifests.
    pub fn read_blob(&self, digest: &str) -> Result<Vec<u8>> {
        let path = self.blob_path(digest)?;
        fs::read(&path).map_err(io_err(format!("read blob {}", path.display())))
    }

    /// Writes `bytes` as a blob unless it exists; returns its digest.
    fn put_blob(&self, bytes: &[u8]) -> Result<String> {
        let digest = storage::archive::sha256_digest(bytes);
        let path = self.blob_path(&digest)?;
        if !path.exists() {
            write_atomic(&self.tmp(), &path, bytes)?;
        }
        Ok(digest)
    }

    // ---- layers -------------------------------------------------------

    /// Returns the record of layer `chain_id`.
    pub fn layer(&self, chain_id: &str) -> Result<Layer> {
        let _lock = self.lock(false)?;
        self.layer_unlocked(chain_id)
    }

    fn layer_unlocked(&self, chain_id: &str) -> Result<Layer> {
        let path = self.layer_path(chain_id)?;
        if !path.exists() {
            return Err(Error::LayerNotFound(chain_id.to_string()));
        }
        read_json(&path)
    }

    fn all_layers(&self) -> Result<Vec<Layer>> {
        let mut out = Vec::new();
        for path in list_json(&self.dir.join("layers"))? {
            out.push(read_json(&path)?);
        }
        Ok(out)
    }

    /// Returns the chain IDs of `top` and its parents, base first.
    fn chain_of(&self, top: &str) -> Result<Vec<String>> {
        let mut chain = Vec::new();
        let mut next = Some(top.to_string());
        while let Some(id) = next {
            let layer = self.layer_unlocked(&id)?;
            chain.push(id);
            next = layer.parent;
        }
        chain.reverse();
        Ok(chain)
    }

    // ---- images -------------------------------------------------------

    /// Adds an image made of `config` and the layer `top` with its parents,
    /// and points `names` at it. The configuration's `rootfs.diff_ids` are
    /// set from the layers; `annotations` (for example the cblocks extras in
    /// `image_spec::ANNOTATION_*`) go into the manifest.
    pub fn add_image(
        &self,
        mut config: ImageConfig,
        top: Option<&str>,
        annotations: BTreeMap<String, String>,
        names: &[Reference],
    ) -> Result<Image> {
        let _lock = self.lock(true)?;
        let chain = match top {
            Some(top) => self.chain_of(top)?,
            None => Vec::new(),
        };
        let mut layers = Vec::new();
        for id in &chain {
            layers.push(self.layer_unlocked(id)?);
        }
        config.rootfs = image_spec::RootFs {
            kind: "layers".into(),
            diff_ids: layers.iter().map(|l| l.diff_id.clone()).collect(),
        };
        if config.created.is_none() {
            config.created = Some(rfc3339(SystemTime::now()));
        }
        let config_bytes = serde_json::to_vec(&config).expect("image configurations serialise");
        let config_digest = storage::archive::sha256_digest(&config_bytes);
        let manifest = Manifest {
            schema_version: 2,
            media_type: Some(image_spec::MEDIA_TYPE_MANIFEST.into()),
            config: Descriptor::new(
                image_spec::MEDIA_TYPE_CONFIG,
                &config_digest,
                config_bytes.len() as u64,
            ),
            layers: layers.iter().map(|l| l.blob.clone()).collect(),
            annotations: (!annotations.is_empty()).then_some(annotations),
        };
        let manifest_bytes = serde_json::to_vec(&manifest).expect("manifests serialise");
        self.put_image(&config_bytes, &manifest_bytes, &chain, names)
    }

    /// Stores the configuration and manifest blobs, then the image record,
    /// then the names; the caller holds the exclusive lock.
    fn put_image(
        &self,
        config: &[u8],
        manifest: &[u8],
        chain: &[String],
        names: &[Reference],
    ) -> Result<Image> {
        let config_digest = self.put_blob(config)?;
        let manifest_digest = self.put_blob(manifest)?;
        let parsed: ImageConfig = serde_json::from_slice(config).map_err(|e| Error::Invalid {
            what: "image configuration",
            value: config_digest.clone(),
            reason: e.to_string(),
        })?;
        let mut size = 0;
        for id in chain {
            size += self.layer_unlocked(id)?.size;
        }
        let image = Image {
            id: config_digest.clone(),
            manifest: Descriptor::new(
                image_spec::MEDIA_TYPE_MANIFEST,
                &manifest_digest,
                manifest.len() as u64,
            ),
            layers: chain.to_vec(),
            added: rfc3339(SystemTime::now()),
            created: parsed.created,
            size,
        };
        let path = self.image_path(&image.id)?;
        let image = if path.exists() {
            read_json(&path)?
        } else {
            write_atomic(&self.tmp(), &path, &to_json(&image))?;
            image
        };
        if !names.is_empty() {
            let mut map = self.names()?;
            let mut changed = false;
            for name in names {
                changed |= map.insert(name.clone(), image.id.clone()).as_ref() != Some(&image.id);
            }
            // A rebuild that changes nothing skips the write and its fsyncs.
            if changed {
                self.write_names(&map)?;
            }
        }
        Ok(image)
    }

    fn names(&self) -> Result<BTreeMap<Reference, String>> {
        let path = self.dir.join("names.json");
        if !path.exists() {
            return Ok(BTreeMap::new());
        }
        let raw: BTreeMap<String, String> = read_json(&path)?;
        let mut out = BTreeMap::new();
        for (name, id) in raw {
            let reference = Reference::parse(&name).map_err(|e| Error::Corrupt {
                what: path.display().to_string(),
                reason: e.to_string(),
            })?;
            out.insert(reference, id);
        }
        Ok(out)
    }

    fn write_names(&self, names: &BTreeMap<Reference, String>) -> Result<()> {
        let raw: BTreeMap<String, &String> =
            names.iter().map(|(k, v)| (k.to_string(), v)).collect();
        write_atomic(&self.tmp(), &self.dir.join("names.json"), &to_json(&raw))
    }

    fn all_images(&self) -> Result<Vec<Image>> {
        let mut out = Vec::new();
        for path in list_json(&self.dir.join("images"))? {
            out.push(read_json(&path)?);
        }
        Ok(out)
    }

    /// Lists the images with their names, newest first.
    pub fn images(&self) -> Result<Vec<ImageSummary>> {
        let _lock = self.lock(false)?;
        let names = self.names()?;
        let mut out: Vec<ImageSummary> = self
            .all_images()?
            .into_iter()
            .map(|image| {
                let names = names
                    .iter()
                    .filter(|(_, id)| **id == image.id)
                    .map(|(n, _)| n.clone())
                    .collect();
                ImageSummary { image, names }
            })
            .collect();
        out.sort_by(|a, b| {
            b.image
                .added
                .cmp(&a.image.added)
                .then(a.image.id.cmp(&b.image.id))
        });
        Ok(out)
    }

    /// Finds an image by `name[:tag]`, full ID (`sha256:HEX`) or a prefix of
    /// at least 4 hex digits of its ID.
    pub fn resolve(&self, spec: &str) -> Result<Image> {
        let _lock = self.lock(false)?;
        self.resolve_unlocked(spec)
    }

    fn resolve_unlocked(&self, spec: &str) -> Result<Image> {
        if let Ok(reference) = Reference::parse(spec) {
            if let Some(id) = self.names()?.get(&reference) {
                return read_json(&self.image_path(id)?);
            }
        }
        let hex = spec.strip_prefix("sha256:").unwrap_or(spec);
        let is_hex = hex.bytes().all(|b| b.is_ascii_hexdigit());
        if hex.len() == 64 && is_hex {
            // A full ID names its file; no need to read every image.
            let path = self.image_path(&format!("sha256:{hex}"))?;
            if path.exists() {
                return read_json(&path);
            }
            return Err(Error::ImageNotFound(spec.to_string()));
        }
        if hex.len() >= 4 && is_hex {
            let matches: Vec<Image> = self
                .all_images()?
                .into_iter()
                .filter(|image| image.id["sha256:".len()..].starts_with(hex))
                .collect();
            match matches.len() {
                0 => {}
                1 => return Ok(matches.into_iter().next().expect("one match")),
                _ => return Err(Error::AmbiguousId(spec.to_string())),
            }
        }
        Err(Error::ImageNotFound(spec.to_string()))
    }

    /// Returns the configuration of `image`.
    pub fn config(&self, image: &Image) -> Result<ImageConfig> {
        let bytes = self.read_blob(&image.id)?;
        serde_json::from_slice(&bytes).map_err(|e| Error::Corrupt {
            what: format!("configuration of image {}", image.id),
            reason: e.to_string(),
        })
    }

    /// Returns the manifest of `image`.
    pub fn manifest(&self, image: &Image) -> Result<Manifest> {
        let bytes = self.read_blob(&image.manifest.digest)?;
        serde_json::from_slice(&bytes).map_err(|e| Error::Corrupt {
            what: format!("manifest of image {}", image.id),
            reason: e.to_string(),
        })
    }

    /// Points `target` at the image `source` names.
    pub fn tag(&self, source: &str, target: &Reference) -> Result<()> {
        let _lock = self.lock(true)?;
        let image = self.resolve_unlocked(source)?;
        let mut names = self.names()?;
        names.insert(target.clone(), image.id);
        self.write_names(&names)
    }

    /// Removes the name `reference`; the image stays.
    pub fn untag(&self, reference: &Reference) -> Result<()> {
        let _lock = self.lock(true)?;
        let mut names = self.names()?;
        if names.remove(reference).is_none() {
            return Err(Error::ImageNotFound(reference.to_string()));
        }
        self.write_names(&names)
    }

    /// Removes an image name, and the image when no other name points to it
    /// or `spec` is its ID. An image in use is kept unless `force` is set;
    /// even then, layers under a live mount stay until `prune` after the
    /// mount is gone.
    pub fn remove(&self, spec: &str, force: bool) -> Result<Removed> {
        let _lock = self.lock(true)?;
        let image = self.resolve_unlocked(spec)?;
        let mut names = self.names()?;
        let by_name = Reference::parse(spec)
            .ok()
            .filter(|r| names.get(r) == Some(&image.id));
        let others = names
            .iter()
            .filter(|(n, id)| **id == image.id && Some(*n) != by_name.as_ref())
            .count();

        if let Some(name) = &by_name {
            if others > 0 {
                names.remove(name);
                self.write_names(&names)?;
                return Ok(Removed::Untagged(name.clone()));
            }
        }
        if by_name.is_none() && others > 1 && !force {
            let list: Vec<String> = names
                .iter()
                .filter(|(_, id)| **id == image.id)
                .map(|(n, _)| n.to_string())
                .collect();
            return Err(Error::MultipleNames {
                image: spec.to_string(),
                names: list.join(", "),
            });
        }
        let users = self.users_unlocked(&image.id)?;
        if !users.is_empty() && !force {
            return Err(Error::InUse {
                image: spec.to_string(),
                users: users.join(", "),
            });
        }

        names.retain(|_, id| *id != image.id);
        self.write_names(&names)?;
        self.delete_image(&image)?;
        self.collect_garbage()?;
        Ok(Removed::Deleted {
            name: by_name,
            id: image.id,
        })
    }

    fn delete_image(&self, image: &Image) -> Result<()> {
        durable::remove_durable(&self.image_path(&image.id)?)?;
        let uses = self.dir.join("uses").join(digest_hex(&image.id)?);
        storage::fsops::remove_tree(&uses).map_err(io_err(format!("remove {}", uses.display())))
    }

    /// Removes images that have no name and no user, then every layer and
    /// blob that no image or mount refers to.
    pub fn prune(&self) -> Result<PruneReport> {
        let _lock = self.lock(true)?;
        let named: HashSet<String> = self.names()?.into_values().collect();
        let mut report = PruneReport::default();
        for image in self.all_images()? {
            if !named.contains(&image.id) && self.users_unlocked(&image.id)?.is_empty() {
                self.delete_image(&image)?;
                report.images.push(image.id);
            }
        }
        let collected = self.collect_garbage()?;
        report.layers = collected.layers;
        report.blobs = collected.blobs;
        report.bytes_freed = collected.bytes_freed;
        Ok(report)
    }

    /// Removes layers and blobs nothing refers to; the caller holds the
    /// exclusive lock.
    fn collect_garbage(&self) -> Result<PruneReport> {
        let images = self.all_images()?;
        let mut keep_layers: BTreeSet<String> = images
            .iter()
            .flat_map(|i| i.layers.iter().cloned())
            .collect();
        let mut tops: Vec<String> = self
            .mount_records()?
            .into_values()
            .filter_map(|record| record.top)
            .collect();
        tops.extend(self.held_layers()?);
        for top in tops {
            if let Ok(chain) = self.chain_of(&top) {
                keep_layers.extend(chain);
            }
        }

        let mut report = PruneReport::default();
        let mut keep_blobs = BTreeSet::new();
        for image in &images {
            keep_blobs.insert(image.id.clone());
            keep_blobs.insert(image.manifest.digest.clone());
        }
        // Children go before parents: drivers like ZFS need that order.
        let mut layers = self.all_layers()?;
        layers.sort_by_key(|l| {
            std::cmp::Reverse(self.chain_of(&l.chain_id).map(|c| c.len()).unwrap_or(0))
        });
        for layer in layers {
            if keep_layers.contains(&layer.chain_id) {
                keep_blobs.insert(layer.blob.digest.clone());
                continue;
            }
            // The record goes first: a layer without a record is a leftover
            // that the next open removes.
            durable::remove_durable(&self.layer_path(&layer.chain_id)?)?;
            self.driver.remove_layer(&layer.driver_id)?;
            report.bytes_freed += layer.size;
            report.layers.push(layer.chain_id);
        }

        let blob_dir = self.dir.join("blobs/sha256");
        for entry in
            fs::read_dir(&blob_dir).map_err(io_err(format!("read {}", blob_dir.display())))?
        {
            let entry = entry.map_err(io_err(format!("read {}", blob_dir.display())))?;
            let digest = format!("sha256:{}", entry.file_name().to_string_lossy());
            if !keep_blobs.contains(&digest) {
                let len = entry.metadata().map(|m| m.len()).unwrap_or(0);
                durable::remove_durable(&entry.path())?;
                report.blobs += 1;
                report.bytes_freed += len;
            }
        }
        Ok(report)
    }

    /// Reports how much the store holds.
    pub fn disk_usage(&self) -> Result<DiskUsage> {
        let _lock = self.lock(false)?;
        let layers = self.all_layers()?;
        let mut usage = DiskUsage {
            images: self.all_images()?.len() as u64,
            layers: layers.len() as u64,
            layer_bytes: layers.iter().map(|l| l.size).sum(),
            mounts: self.mount_records()?.len() as u64,
            ..Default::default()
        };
        let blob_dir = self.dir.join("blobs/sha256");
        for entry in
            fs::read_dir(&blob_dir).map_err(io_err(format!("read {}", blob_dir.display())))?
        {
            let entry = entry.map_err(io_err(format!("read {}", blob_dir.display())))?;
            usage.blobs += 1;
            usage.blob_bytes += entry.metadata().map(|m| m.len()).unwrap_or(0);
        }
        Ok(usage)
    }

    // ---- uses and mounts ----------------------------------------------

    /// Records that container or build `user` uses `image`, so that it is
    /// not removed without `--force`. The record is a file
    /// `uses/IMAGE/USER`.
    pub fn add_use(&self, image: &str, user: &str) -> Result<()> {
        storage::check_id(user)?;
        let _lock = self.lock(true)?;
        let image = self.resolve_unlocked(image)?;
        let dir = self.dir.join("uses").join(digest_hex(&image.id)?);
        fs::create_dir_all(&dir).map_err(io_err(format!("create {}", dir.display())))?;
        write_atomic(&self.tmp(), &dir.join(user), b"")
    }

    /// Drops the use of `image` by `user`; a missing record is not an error.
    pub fn remove_use(&self, image_id: &str, user: &str) -> Result<()> {
        storage::check_id(user)?;
        let _lock = self.lock(true)?;
        durable::remove_durable(&self.dir.join("uses").join(digest_hex(image_id)?).join(user))
    }

    /// Lists who uses image `id`: recorded users and mounts of it.
    pub fn users(&self, id: &str) -> Result<Vec<String>> {
        let _lock = self.lock(false)?;
        self.users_unlocked(id)
    }

    fn users_unlocked(&self, id: &str) -> Result<Vec<String>> {
        let mut users = BTreeSet::new();
        let dir = self.dir.join("uses").join(digest_hex(id)?);
        if let Ok(entries) = fs::read_dir(&dir) {
            for entry in entries.flatten() {
                users.insert(entry.file_name().to_string_lossy().into_owned());
            }
        }
        for (mount, record) in self.mount_records()? {
            if record.image.as_deref() == Some(id) {
                users.insert(format!("mount {mount}"));
            }
        }
        Ok(users.into_iter().collect())
    }

    fn mount_records(&self) -> Result<BTreeMap<String, MountRecord>> {
        let mut out = BTreeMap::new();
        for path in list_json(&self.dir.join("mounts"))? {
            let id = path
                .file_stem()
                .unwrap_or_default()
                .to_string_lossy()
                .into_owned();
            out.insert(id, read_json(&path)?);
        }
        Ok(out)
    }

    /// Mounts image `image` (`None`: an empty root) with a fresh writable
    /// layer for container or build `mount_id`; returns the root file
    /// system's path. The mount counts as a use of the image.
    pub fn mount_image(&self, mount_id: &str, image: Option<&str>) -> Result<PathBuf> {
        let _lock = self.lock(true)?;
        let image = image.map(|spec| self.resolve_unlocked(spec)).transpose()?;
        let record = MountRecord {
            top: image.as_ref().and_then(|i| i.layers.last().cloned()),
            image: image.map(|i| i.id),
        };
        self.mount_unlocked(mount_id, record)
    }

    /// Mounts layer `top` (`None`: an empty root) with a fresh writable layer
    /// for `mount_id`; a build uses this between steps.
    pub fn mount_layer(&self, mount_id: &str, top: Option<&str>) -> Result<PathBuf> {
        let _lock = self.lock(true)?;
        if let Some(top) = top {
            self.layer_unlocked(top)?;
        }
        let record = MountRecord {
            top: top.map(str::to_string),
            image: None,
        };
        self.mount_unlocked(mount_id, record)
    }

    fn mount_unlocked(&self, mount_id: &str, record: MountRecord) -> Result<PathBuf> {
        let path = self.mount_path(mount_id)?;
        let record = if path.exists() {
            read_json(&path)?
        } else {
            // The record comes first, so the next open never takes the
            // driver's mount for a leftover.
            write_atomic(&self.tmp(), &path, &to_json(&record))?;
            record
        };
        let top = match &record.top {
            Some(chain_id) => Some(self.layer_unlocked(chain_id)?.driver_id),
            None => None,
        };
        Ok(self.driver.mount(mount_id, top.as_deref())?)
    }

    /// Unmounts `mount_id`, keeping its writable layer for a later mount or
    /// commit.
    pub fn unmount(&self, mount_id: &str) -> Result<()> {
        let _lock = self.lock(true)?;
        self.mount_path(mount_id)?;
        Ok(self.driver.unmount(mount_id)?)
    }

    /// Unmounts `mount_id`, deletes its writable layer and record, and drops
    /// its holds on the layers committed from it.
    pub fn remove_mount(&self, mount_id: &str) -> Result<()> {
        let _lock = self.lock(true)?;
        let path = self.mount_path(mount_id)?;
        self.driver.remove_mount(mount_id)?;
        durable::remove_durable(&path)?;
        durable::remove_durable(&self.dir.join("holds").join(mount_id))
    }

    /// Returns the record of `mount_id`.
    pub fn mount_record(&self, mount_id: &str) -> Result<MountRecord> {
        let _lock = self.lock(false)?;
        read_json(&self.mount_path(mount_id)?)
    }
}

/// Lists the `*.json` files of `dir`, sorted.
fn list_json(dir: &Path) -> Result<Vec<PathBuf>> {
    let mut out = Vec::new();
    for entry in fs::read_dir(dir).map_err(io_err(format!("read {}", dir.display())))? {
        let path = entry
            .map_err(io_err(format!("read {}", dir.display())))?
            .path();
        if path.extension().is_some_and(|e| e == "json") {
            out.push(path);
        }
    }
    out.sort();
    Ok(out)
}
