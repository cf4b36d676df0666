//! The `zfs` driver: a dataset per layer holding the whole file system up to
//! that layer, cloned from its parent's `@layer` snapshot; a mount is a clone
//! of its top layer's snapshot. The driver directory must be the mount point
//! of a dataset the administrator created, for example
//! `zfs create -o mountpoint=/var/db/cblocks/store/zfs zroot/cblocks`.
//!
//! ```text
//! BASE/l-ID    layer dataset, mounted on layers/ID/root, snapshot @layer
//! BASE/s-ID    a layer being created (destroyed by cleanup)
//! BASE/m-ID    mount dataset, mounted on mounts/ID/root
//! layers/ID/parent, mounts/ID/top   as in the other drivers
//! ```
//!
//! NOTE: type-checked only; never run on FreeBSD. Removing a layer whose
//! snapshot still has clones (child layers or mounts) fails in `zfs destroy`.

use std::fs;
use std::io::{Read, Write};
use std::path::{Path, PathBuf};

use crate::storage::{
    check_id, fsops, io_err, run_command, write_id_file, Driver, DriverKind, Error, ExtractOptions,
    ExtractSummary, Layout, Result, STAGING_PREFIX,
};

pub struct Zfs {
    layout: Layout,
    /// The dataset mounted on the driver directory.
    base: String,
}

fn path_str(path: &Path) -> Result<&str> {
    path.to_str().ok_or_else(|| Error::Unsupported {
        driver: "zfs",
        reason: format!("path {} is not valid UTF-8", path.display()),
    })
}

impl Zfs {
    pub fn open(root: &Path) -> Result<Self> {
        let layout = Layout::create(root)?;
        let listing = run_command("zfs", &["list", "-H", "-o", "name,mountpoint"])?;
        let base = listing
            .lines()
            .filter_map(|line| line.split_once('\t'))
            .find(|(_, mountpoint)| Path::new(mountpoint) == root)
            .map(|(name, _)| name.to_string())
            .ok_or_else(|| Error::Unsupported {
                driver: "zfs",
                reason: format!(
                    "no dataset is mounted on {}; create one with `zfs create -o mountpoint={} POOL/cblocks`",
                    root.display(),
                    root.display()
                ),
            })?;
        Ok(Zfs { layout, base })
    }

    fn layer_dataset(&self, id: &str) -> String {
        format!("{}/l-{id}", self.base)
    }

    fn staging_dataset(&self, id: &str) -> String {
        format!("{}/s-{id}", self.base)
    }

    fn mount_dataset(&self, id: &str) -> String {
        format!("{}/m-{id}", self.base)
    }

    fn dataset_exists(&self, name: &str) -> bool {
        run_command("zfs", &["list", "-H", "-o", "name", name]).is_ok()
    }

    /// Creates `dataset` mounted on `mountpoint`, as a clone of `origin`'s
    /// `@layer` snapshot or empty.
    fn create_dataset(&self, dataset: &str, origin: Option<&str>, mountpoint: &Path) -> Result<()> {
        let option = format!("mountpoint={}", path_str(mountpoint)?);
        match origin {
            Some(origin) => {
                let snapshot = format!("{}@layer", self.layer_dataset(origin));
                run_command("zfs", &["clone", "-o", &option, &snapshot, dataset]).map(drop)
            }
            None => run_command("zfs", &["create", "-o", &option, dataset]).map(drop),
        }
    }
}

impl Driver for Zfs {
    fn kind(&self) -> DriverKind {
        DriverKind::Zfs
    }

    fn create_layer(
        &self,
        id: &str,
        parent: Option<&str>,
        tar: &mut dyn Read,
    ) -> Result<ExtractSummary> {
        check_id(id)?;
        if let Some(parent) = parent {
            if !self.layer_exists(parent) {
                return Err(Error::LayerNotFound(parent.to_string()));
            }
        }
        let staging_dir = self.layout.staging_layer(id);
        let staging = self.staging_dataset(id);
        if self.dataset_exists(&staging) {
            run_command("zfs", &["destroy", "-r", &staging])?;
        }
        fsops::remove_tree(&staging_dir)
            .map_err(io_err(format!("remove {}", staging_dir.display())))?;
        fs::create_dir_all(&staging_dir)
            .map_err(io_err(format!("create {}", staging_dir.display())))?;

        let staging_root = staging_dir.join("root");
        let result = self
            .create_dataset(&staging, parent, &staging_root)
            .and_then(|()| crate::storage::extract(tar, &staging_root, &ExtractOptions::default()))
            .and_then(|summary| {
                write_id_file(&staging_dir.join("parent"), parent).map(|()| summary)
            });
        let summary = match result {
            Ok(summary) => summary,
            Err(err) => {
                let _ = run_command("zfs", &["destroy", "-r", &staging]);
                let _ = fsops::remove_tree(&staging_dir);
                return Err(err);
            }
        };

        // The dataset is renamed and remounted before the directory, so a
        // layer directory without its dataset never looks complete.
        let dataset = self.layer_dataset(id);
        let final_dir = self.layout.layer(id);
        run_command("zfs", &["snapshot", &format!("{staging}@layer")])?;
        run_command("zfs", &["rename", &staging, &dataset])?;
        fs::rename(&staging_dir, &final_dir).map_err(io_err(format!(
            "rename {} to {}",
            staging_dir.display(),
            final_dir.display()
        )))?;
        let option = format!("mountpoint={}", path_str(&final_dir.join("root"))?);
        run_command("zfs", &["set", &option, &dataset])?;
        Ok(summary)
    }

    fn remove_layer(&self, id: &str) -> Result<()> {
        check_id(id)?;
        let dataset = self.layer_dataset(id);
        if self.dataset_exists(&dataset) {
            run_command("zfs", &["destroy", "-r", &dataset])?;
        }
        let dir = self.layout.layer(id);
        fsops::remove_tree(&dir).map_err(io_err(format!("remove {}", dir.display())))
    }

    fn layer_exists(&self, id: &str) -> bool {
        check_id(id).is_ok()
            && self.layout.layer(id).join("parent").exists()
            && self.dataset_exists(&format!("{}@layer", self.layer_dataset(id)))
    }

    fn layers(&self) -> Result<Vec<String>> {
        self.layout.list("layers")
    }

    fn mount(&self, id: &str, top: Option<&str>) -> Result<PathBuf> {
        check_id(id)?;
        let dir = self.layout.mount(id);
        let root = dir.join("root");
        if dir.join("top").exists() {
            return Ok(root);
        }
        if let Some(top) = top {
            if !self.layer_exists(top) {
                return Err(Error::LayerNotFound(top.to_string()));
            }
        }
        let staging = self
            .layout
            .root
            .join("mounts")
            .join(format!("{STAGING_PREFIX}{id}"));
        fsops::remove_tree(&staging).map_err(io_err(format!("remove {}", staging.display())))?;
        fs::create_dir_all(&dir).map_err(io_err(format!("create {}", dir.display())))?;
        let dataset = self.mount_dataset(id);
        if !self.dataset_exists(&dataset) {
            self.create_dataset(&dataset, top, &root)?;
        }
        write_id_file(&dir.join("top"), top)?;
        Ok(root)
    }

    fn unmount(&self, id: &str) -> Result<()> {
        check_id(id)?;
        if !self.layout.mount(id).exists() {
            return Err(Error::MountNotFound(id.to_string()));
        }
        // The clone stays mounted on its directory while it exists; there is
        // nothing separate to unmount.
        Ok(())
    }

    fn remove_mount(&self, id: &str) -> Result<()> {
        check_id(id)?;
        let dataset = self.mount_dataset(id);
        if self.dataset_exists(&dataset) {
            run_command("zfs", &["destroy", "-r", &dataset])?;
        }
        let dir = self.layout.mount(id);
        fsops::remove_tree(&dir).map_err(io_err(format!("remove {}", dir.display())))
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
        let listing = run_command("zfs", &["list", "-H", "-o", "name", "-r", &self.base])?;
        let prefix = format!("{}/s-", self.base);
        for dataset in listing.lines().filter(|name| name.starts_with(&prefix)) {
            run_command("zfs", &["destroy", "-r", dataset])?;
        }
        for sub in ["layers", "mounts"] {
            for path in self.layout.staging(sub)? {
                fsops::remove_tree(&path).map_err(io_err(format!("remove {}", path.display())))?;
            }
        }
        Ok(())
    }
}
