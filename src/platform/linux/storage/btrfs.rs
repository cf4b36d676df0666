//! The `btrfs` driver: each layer is a subvolume holding the whole file
//! system up to that layer, made as a snapshot of its parent; a mount is a
//! writable snapshot of its top layer. Snapshots share extents, so a layer
//! costs only what it changed.
//!
//! ```text
//! layers/ID/parent   the parent layer's id (empty for a base layer)
//! layers/ID/root     subvolume: the whole file system up to this layer
//! mounts/ID/top      the layer the mount was snapshotted from
//! mounts/ID/root     subvolume: the container's root file system
//! ```
//!
//! Subvolumes are made and deleted with the `btrfs` tool of btrfs-progs.

use std::fs;
use std::io::{Read, Write};
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};

use crate::storage::vfs::create_tree_layer;
use crate::storage::{
    check_id, fsops, io_err, run_command, write_id_file, Driver, DriverKind, Error, ExtractSummary,
    Layout, Result, STAGING_PREFIX,
};

/// `f_type` of a btrfs file system in `statfs(2)`.
const BTRFS_SUPER_MAGIC: i64 = 0x9123_683e;
/// Inode number of the root directory of every btrfs subvolume.
const SUBVOLUME_INODE: u64 = 256;

pub struct Btrfs {
    layout: Layout,
}

impl Btrfs {
    pub fn open(root: &Path) -> Result<Self> {
        let layout = Layout::create(root)?;
        let stat = nix::sys::statfs::statfs(root)
            .map_err(|e| io_err(format!("statfs {}", root.display()))(e.into()))?;
        if stat.filesystem_type().0 as i64 != BTRFS_SUPER_MAGIC {
            return Err(Error::Unsupported {
                driver: "btrfs",
                reason: format!(
                    "{} is not on a btrfs file system; use --storage overlay or vfs",
                    root.display()
                ),
            });
        }
        run_command("btrfs", &["--version"]).map_err(|_| Error::Unsupported {
            driver: "btrfs",
            reason: "the `btrfs` tool is missing; install btrfs-progs".into(),
        })?;
        Ok(Btrfs { layout })
    }
}

fn path_str(path: &Path) -> Result<&str> {
    path.to_str().ok_or_else(|| Error::Unsupported {
        driver: "btrfs",
        reason: format!("path {} is not valid UTF-8", path.display()),
    })
}

/// Makes `root` a snapshot of `parent`, or a new empty subvolume.
fn create_subvolume(root: &Path, parent: Option<&Path>) -> Result<()> {
    match parent {
        Some(parent) => run_command(
            "btrfs",
            &[
                "-q",
                "subvolume",
                "snapshot",
                path_str(parent)?,
                path_str(root)?,
            ],
        )
        .map(drop),
        None => run_command("btrfs", &["-q", "subvolume", "create", path_str(root)?]).map(drop),
    }
}

/// Deletes a layer or mount directory and the subvolume inside it.
fn remove_with_subvolume(dir: &Path) -> Result<()> {
    let root = dir.join("root");
    if let Ok(meta) = fs::symlink_metadata(&root) {
        if meta.is_dir() && meta.ino() == SUBVOLUME_INODE {
            run_command("btrfs", &["-q", "subvolume", "delete", path_str(&root)?])?;
        }
    }
    fsops::remove_tree(dir).map_err(io_err(format!("remove {}", dir.display())))
}

impl Driver for Btrfs {
    fn kind(&self) -> DriverKind {
        DriverKind::Btrfs
    }

    fn create_layer(
        &self,
        id: &str,
        parent: Option<&str>,
        tar: &mut dyn Read,
    ) -> Result<ExtractSummary> {
        let staging = self.layout.staging_layer(id);
        let result = create_tree_layer(&self.layout, id, parent, tar, create_subvolume);
        if result.is_err() {
            let _ = remove_with_subvolume(&staging);
        }
        result
    }

    fn remove_layer(&self, id: &str) -> Result<()> {
        check_id(id)?;
        remove_with_subvolume(&self.layout.layer(id))
    }

    fn layer_exists(&self, id: &str) -> bool {
        check_id(id).is_ok() && self.layout.layer(id).join("root").is_dir()
    }

    fn layers(&self) -> Result<Vec<String>> {
        self.layout.list("layers")
    }

    fn mount(&self, id: &str, top: Option<&str>) -> Result<PathBuf> {
        check_id(id)?;
        let dir = self.layout.mount(id);
        if dir.join("top").exists() {
            return Ok(dir.join("root"));
        }
        let parent = match top {
            Some(top) if !self.layer_exists(top) => {
                return Err(Error::LayerNotFound(top.to_string()))
            }
            Some(top) => Some(self.layout.layer(top).join("root")),
            None => None,
        };

        let staging = self
            .layout
            .root
            .join("mounts")
            .join(format!("{STAGING_PREFIX}{id}"));
        remove_with_subvolume(&staging)?;
        fs::create_dir_all(&staging).map_err(io_err(format!("create {}", staging.display())))?;
        let result = create_subvolume(&staging.join("root"), parent.as_deref())
            .and_then(|()| write_id_file(&staging.join("top"), top));
        if let Err(err) = result {
            let _ = remove_with_subvolume(&staging);
            return Err(err);
        }
        fs::rename(&staging, &dir).map_err(io_err(format!(
            "rename {} to {}",
            staging.display(),
            dir.display()
        )))?;
        Ok(dir.join("root"))
    }

    fn unmount(&self, id: &str) -> Result<()> {
        check_id(id)?;
        if !self.layout.mount(id).exists() {
            return Err(Error::MountNotFound(id.to_string()));
        }
        Ok(())
    }

    fn remove_mount(&self, id: &str) -> Result<()> {
        check_id(id)?;
        remove_with_subvolume(&self.layout.mount(id))
    }

    fn mounts(&self) -> Result<Vec<String>> {
        self.layout.list("mounts")
    }

    fn diff(&self, id: &str, out: &mut dyn Write) -> Result<()> {
        check_id(id)?;
        let top = self.layout.top(id)?;
        let lower = top.map(|top| self.layout.layer(&top).join("root"));
        let upper = self.layout.mount(id).join("root");
        crate::storage::write_diff(
            crate::storage::DiffSource::Trees {
                lower: lower.as_deref(),
                upper: &upper,
            },
            out,
        )
    }

    fn cleanup(&self) -> Result<()> {
        for sub in ["layers", "mounts"] {
            for path in self.layout.staging(sub)? {
                remove_with_subvolume(&path)?;
            }
        }
        Ok(())
    }
}
