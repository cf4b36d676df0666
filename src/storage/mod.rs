//! Layered root file systems behind one driver trait (overlay, btrfs and vfs
//! on Linux; unionfs and ZFS on FreeBSD), and safe archive extraction.
//!
//! A driver keeps layers by id, each on top of a parent layer, and mounts: a fresh writable layer on top of a
//! layer, mounted as a root file system for a container or a build step. Each
//! driver lays its files out under its own directory as
//!
//! ```text
//! layers/ID/            one layer (its content, and a `parent` file)
//! layers/.staging-ID/   a layer being created; renamed to ID when complete
//! mounts/ID/            one mount (its writable layer and a `top` file)
//! ```
//!
//! so that a crash leaves at most staging directories, which `cleanup`
//! removes.

use std::ffi::OsStr;
use std::fmt;
use std::fs;
use std::io::{Read, Write};
use std::path::{Path, PathBuf};

pub mod archive;
pub mod extract;
pub mod fdops;
pub mod fsops;
pub mod vfs;

pub use archive::{decompress, write_diff, Compression, DiffSource};
pub use extract::{extract, ExtractOptions, ExtractSummary, Whiteouts};

/// Errors of this module.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("{context}: {source}")]
    Io {
        context: String,
        source: std::io::Error,
    },
    #[error("archive entry {entry:?} rejected: {reason}")]
    Entry { entry: String, reason: String },
    #[error("archive entry {entry:?}: {step} failed: {source}")]
    EntryIo {
        entry: String,
        step: String,
        source: std::io::Error,
    },
    #[error(
        "malformed archive header at entry {index}: {reason}; the archive is damaged or hostile"
    )]
    Malformed { index: u64, reason: String },
    #[error("unknown storage driver {0:?}; use one of {1}")]
    UnknownDriver(String, String),
    #[error("storage driver {driver} cannot be used here: {reason}")]
    Unsupported {
        driver: &'static str,
        reason: String,
    },
    #[error("{command} failed with {status}: {stderr}")]
    Command {
        command: String,
        status: String,
        stderr: String,
    },
    #[error("layer {0} not found in the storage driver; run the store's consistency check")]
    LayerNotFound(String),
    #[error("mount {0} not found; it was never created or was removed")]
    MountNotFound(String),
}

/// Result with this module's error type.
pub type Result<T, E = Error> = std::result::Result<T, E>;

pub(crate) fn io_err(context: impl Into<String>) -> impl FnOnce(std::io::Error) -> Error {
    let context = context.into();
    move |source| Error::Io { context, source }
}

/// Storage drivers of cblocks.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DriverKind {
    /// Linux overlayfs: layers as lower directories.
    Overlay,
    /// Linux btrfs: a subvolume per layer, snapshots for mounts.
    Btrfs,
    /// Plain copies; works on any file system.
    Vfs,
    /// FreeBSD unionfs over full layer trees.
    Unionfs,
    /// FreeBSD ZFS: a dataset per layer, clones for mounts.
    Zfs,
}

const ALL_DRIVERS: [DriverKind; 5] = [
    DriverKind::Overlay,
    DriverKind::Btrfs,
    DriverKind::Vfs,
    DriverKind::Unionfs,
    DriverKind::Zfs,
];

impl DriverKind {
    pub fn name(self) -> &'static str {
        match self {
            DriverKind::Overlay => "overlay",
            DriverKind::Btrfs => "btrfs",
            DriverKind::Vfs => "vfs",
            DriverKind::Unionfs => "unionfs",
            DriverKind::Zfs => "zfs",
        }
    }

    /// Parses a driver name; the original's backend names `ufs` and `zfs`
    /// map to `unionfs` and `zfs`.
    pub fn parse(name: &str) -> Result<Self> {
        if name == "ufs" {
            return Ok(DriverKind::Unionfs);
        }
        ALL_DRIVERS
            .into_iter()
            .find(|d| d.name() == name)
            .ok_or_else(|| {
                let names: Vec<&str> = ALL_DRIVERS.iter().map(|d| d.name()).collect();
                Error::UnknownDriver(name.to_string(), names.join(", "))
            })
    }

    /// Returns the default driver of this platform.
    pub fn platform_default() -> Self {
        crate::platform::storage::DEFAULT_DRIVER
    }
}

impl fmt::Display for DriverKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// A storage driver: layers stacked by parent, and writable mounts on them.
///
/// Ids are file names made of letters, digits, `-` and `_` (see `check_id`);
/// the store passes random hex ids for layers and the container or build id
/// for mounts.
pub trait Driver: Send + Sync {
    fn kind(&self) -> DriverKind;

    /// Creates layer `id` on top of `parent` (`None`: an empty base) from an
    /// uncompressed OCI layer tar stream, returning what extraction wrote.
    /// The layer exists only when this returns `Ok`.
    fn create_layer(
        &self,
        id: &str,
        parent: Option<&str>,
        tar: &mut dyn Read,
    ) -> Result<ExtractSummary>;

    fn remove_layer(&self, id: &str) -> Result<()>;

    fn layer_exists(&self, id: &str) -> bool;

    /// Lists the complete layers.
    fn layers(&self) -> Result<Vec<String>>;

    /// Creates a fresh writable layer on top of layer `top` (`None`: an empty
    /// root) and mounts it; returns the path of the root file system. Calling
    /// it again for a mount that exists mounts the existing writable layer.
    fn mount(&self, id: &str, top: Option<&str>) -> Result<PathBuf>;

    /// Unmounts mount `id`, keeping its writable layer.
    fn unmount(&self, id: &str) -> Result<()>;

    /// Unmounts mount `id` if mounted and deletes its writable layer.
    fn remove_mount(&self, id: &str) -> Result<()>;

    /// Lists the mounts, mounted or not.
    fn mounts(&self) -> Result<Vec<String>>;

    /// Writes the changes of mount `id` against its top layer as an OCI layer
    /// tar to `out`. The mount must be mounted where the driver needs it.
    fn diff(&self, id: &str, out: &mut dyn Write) -> Result<()>;

    /// Removes what a crash left: staging layers and half-created mounts.
    fn cleanup(&self) -> Result<()>;
}

/// Opens driver `kind` with its files under `root`, checking that it can work
/// there.
pub fn open_driver(kind: DriverKind, root: &Path) -> Result<Box<dyn Driver>> {
    match kind {
        DriverKind::Vfs => Ok(Box::new(vfs::Vfs::open(root)?)),
        other => crate::platform::storage::open_driver(other, root),
    }
}

/// Directory layout shared by the drivers.
#[derive(Debug, Clone)]
pub struct Layout {
    pub root: PathBuf,
}

/// Prefix of staging directories below `layers/` and `mounts/`.
pub const STAGING_PREFIX: &str = ".staging-";

impl Layout {
    /// Creates the `layers` and `mounts` directories below `root`.
    pub fn create(root: &Path) -> Result<Self> {
        for sub in ["layers", "mounts"] {
            let dir = root.join(sub);
            fs::create_dir_all(&dir).map_err(io_err(format!("create {}", dir.display())))?;
        }
        Ok(Layout {
            root: root.to_path_buf(),
        })
    }

    pub fn layer(&self, id: &str) -> PathBuf {
        self.root.join("layers").join(id)
    }

    pub fn staging_layer(&self, id: &str) -> PathBuf {
        self.root
            .join("layers")
            .join(format!("{STAGING_PREFIX}{id}"))
    }

    pub fn mount(&self, id: &str) -> PathBuf {
        self.root.join("mounts").join(id)
    }

    /// Returns the parent of layer `id` from its `parent` file.
    pub fn parent(&self, id: &str) -> Result<Option<String>> {
        read_id_file(&self.layer(id).join("parent"))
    }

    /// Returns the top layer of mount `id` from its `top` file.
    pub fn top(&self, id: &str) -> Result<Option<String>> {
        if !self.mount(id).exists() {
            return Err(Error::MountNotFound(id.to_string()));
        }
        read_id_file(&self.mount(id).join("top"))
    }

    /// Lists the complete entries of `layers` or `mounts`.
    pub fn list(&self, sub: &str) -> Result<Vec<String>> {
        let dir = self.root.join(sub);
        let mut out = Vec::new();
        for entry in fs::read_dir(&dir).map_err(io_err(format!("read {}", dir.display())))? {
            let entry = entry.map_err(io_err(format!("read {}", dir.display())))?;
            let name = entry.file_name().to_string_lossy().into_owned();
            if !name.starts_with(STAGING_PREFIX) {
                out.push(name);
            }
        }
        out.sort();
        Ok(out)
    }

    /// Lists the staging entries of `layers` or `mounts` that a crash left.
    pub fn staging(&self, sub: &str) -> Result<Vec<PathBuf>> {
        let dir = self.root.join(sub);
        let mut out = Vec::new();
        for entry in fs::read_dir(&dir).map_err(io_err(format!("read {}", dir.display())))? {
            let entry = entry.map_err(io_err(format!("read {}", dir.display())))?;
            if entry
                .file_name()
                .as_encoded_bytes()
                .starts_with(STAGING_PREFIX.as_bytes())
            {
                out.push(entry.path());
            }
        }
        Ok(out)
    }
}

/// Writes an id file (`parent`, `top`): an empty file means none.
pub fn write_id_file(path: &Path, id: Option<&str>) -> Result<()> {
    let mut file = fs::File::create(path).map_err(io_err(format!("create {}", path.display())))?;
    file.write_all(id.unwrap_or("").as_bytes())
        .and_then(|()| file.sync_all())
        .map_err(io_err(format!("write {}", path.display())))
}

fn read_id_file(path: &Path) -> Result<Option<String>> {
    let text = fs::read_to_string(path).map_err(io_err(format!("read {}", path.display())))?;
    let id = text.trim();
    Ok((!id.is_empty()).then(|| id.to_string()))
}

/// Runs an external storage tool (`btrfs`, `zfs`, `mount_unionfs`) and
/// returns its standard output; a failure carries its standard error.
pub fn run_command(program: &str, args: &[&str]) -> Result<String> {
    let command = format!("{program} {}", args.join(" "));
    let output = std::process::Command::new(program)
        .args(args)
        .stdin(std::process::Stdio::null())
        .output()
        .map_err(io_err(format!("run {command}")))?;
    if !output.status.success() {
        return Err(Error::Command {
            command,
            status: output.status.to_string(),
            stderr: String::from_utf8_lossy(&output.stderr).trim().to_string(),
        });
    }
    Ok(String::from_utf8_lossy(&output.stdout).into_owned())
}

/// Checks that an id is a safe single file name for a layer or mount.
pub fn check_id(id: &str) -> Result<()> {
    let ok = !id.is_empty()
        && id.len() <= 128
        && id
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
        && !OsStr::new(id)
            .as_encoded_bytes()
            .starts_with(STAGING_PREFIX.as_bytes());
    if ok {
        Ok(())
    } else {
        Err(Error::Io {
            context: format!("invalid layer or mount id {id:?}"),
            source: std::io::Error::new(
                std::io::ErrorKind::InvalidInput,
                "ids are 1 to 128 letters, digits, `-` or `_`",
            ),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn driver_names_parse() {
        assert_eq!(DriverKind::parse("overlay").unwrap(), DriverKind::Overlay);
        assert_eq!(DriverKind::parse("ufs").unwrap(), DriverKind::Unionfs);
        let err = DriverKind::parse("aufs").unwrap_err().to_string();
        assert!(
            err.contains("aufs") && err.contains("overlay, btrfs, vfs"),
            "{err}"
        );
    }

    #[test]
    fn ids_are_checked() {
        assert!(check_id("abc123").is_ok());
        assert!(check_id("../x").is_err());
        assert!(check_id("").is_err());
        assert!(check_id("a/b").is_err());
    }
}
