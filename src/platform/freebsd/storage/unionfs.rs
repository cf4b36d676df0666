//! The `unionfs` driver: layers are whole trees in plain directories, as with
//! `vfs`; a mount puts a fresh upper directory over a read-only nullfs view
//! of its top layer with `mount_unionfs(8)`, so containers share the layer.
//!
//! ```text
//! layers/ID/parent, layers/ID/root/   as in vfs
//! mounts/ID/top       the layer the mount stacks on
//! mounts/ID/upper/    the writable layer
//! mounts/ID/root/     the root file system (nullfs, then unionfs on top)
//! empty/              the lower directory of a mount on no layer
//! ```
//!
//! NOTE: type-checked only; never run on FreeBSD.

use std::fs;
use std::io::{Read, Write};
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};

use crate::storage::vfs::create_tree_layer;
use crate::storage::{
    check_id, fsops, io_err, run_command, write_id_file, Driver, DriverKind, Error, ExtractSummary,
    Layout, Result, STAGING_PREFIX,
};

pub struct Unionfs {
    layout: Layout,
}

impl Unionfs {
    pub fn open(root: &Path) -> Result<Self> {
        let layout = Layout::create(root)?;
        let empty = root.join("empty");
        fs::create_dir_all(&empty).map_err(io_err(format!("create {}", empty.display())))?;
        Ok(Unionfs { layout })
    }

    fn is_mounted(&self, id: &str) -> bool {
        let dir = self.layout.mount(id);
        match (fs::metadata(&dir), fs::metadata(dir.join("root"))) {
            (Ok(outer), Ok(inner)) => outer.dev() != inner.dev(),
            _ => false,
        }
    }

    fn lower(&self, top: Option<&str>) -> PathBuf {
        match top {
            Some(top) => self.layout.layer(top).join("root"),
            None => self.layout.root.join("empty"),
        }
    }
}

fn path_str(path: &Path) -> Result<&str> {
    path.to_str().ok_or_else(|| Error::Unsupported {
        driver: "unionfs",
        reason: format!("path {} is not valid UTF-8", path.display()),
    })
}

fn copy_or_create(root: &Path, parent: Option<&Path>) -> Result<()> {
    fs::create_dir(root).map_err(io_err(format!("create {}", root.display())))?;
    if let Some(parent) = parent {
        fsops::copy_tree(parent, root).map_err(io_err(format!(
            "copy {} to {}",
            parent.display(),
            root.display()
        )))?;
    }
    Ok(())
}

impl Driver for Unionfs {
    fn kind(&self) -> DriverKind {
        DriverKind::Unionfs
    }

    fn create_layer(
        &self,
        id: &str,
        parent: Option<&str>,
        tar: &mut dyn Read,
    ) -> Result<ExtractSummary> {
        create_tree_layer(&self.layout, id, parent, tar, copy_or_create)
    }

    fn remove_layer(&self, id: &str) -> Result<()> {
        check_id(id)?;
        let dir = self.layout.layer(id);
        fsops::remove_tree(&dir).map_err(io_err(format!("remove {}", dir.display())))
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
        let root = dir.join("root");
        if self.is_mounted(id) {
            return Ok(root);
        }
        if !dir.join("top").exists() {
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
            fsops::remove_tree(&staging)
                .map_err(io_err(format!("remove {}", staging.display())))?;
            for sub in ["upper", "root"] {
                let path = staging.join(sub);
                fs::create_dir_all(&path).map_err(io_err(format!("create {}", path.display())))?;
            }
            write_id_file(&staging.join("top"), top)?;
            fs::rename(&staging, &dir).map_err(io_err(format!(
                "rename {} to {}",
                staging.display(),
                dir.display()
            )))?;
        }

        let lower = self.lower(self.layout.top(id)?.as_deref());
        run_command(
            "mount",
            &[
                "-t",
                "nullfs",
                "-o",
                "ro",
                path_str(&lower)?,
                path_str(&root)?,
            ],
        )?;
        let upper = dir.join("upper");
        if let Err(err) = run_command(
            "mount_unionfs",
            &["-o", "noatime", path_str(&upper)?, path_str(&root)?],
        ) {
            let _ = run_command("umount", &[path_str(&root)?]);
            return Err(err);
        }
        Ok(root)
    }

    fn unmount(&self, id: &str) -> Result<()> {
        check_id(id)?;
        if !self.layout.mount(id).exists() {
            return Err(Error::MountNotFound(id.to_string()));
        }
        let root = self.layout.mount(id).join("root");
        // Two mounts are stacked on the root: unionfs over nullfs.
        while self.is_mounted(id) {
            run_command("umount", &[path_str(&root)?])?;
        }
        Ok(())
    }

    fn remove_mount(&self, id: &str) -> Result<()> {
        check_id(id)?;
        let dir = self.layout.mount(id);
        if !dir.exists() {
            return Ok(());
        }
        self.unmount(id)?;
        fsops::remove_tree(&dir).map_err(io_err(format!("remove {}", dir.display())))
    }

    fn mounts(&self) -> Result<Vec<String>> {
        self.layout.list("mounts")
    }

    fn diff(&self, id: &str, out: &mut dyn Write) -> Result<()> {
        check_id(id)?;
        if !self.is_mounted(id) {
            return Err(Error::Unsupported {
                driver: "unionfs",
                reason: format!(
                    "mount {id} must be mounted to compute its changes; mount it first"
                ),
            });
        }
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
                fsops::remove_tree(&path).map_err(io_err(format!("remove {}", path.display())))?;
            }
        }
        Ok(())
    }
}
