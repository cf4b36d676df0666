//! The `vfs` driver: every layer and every mount is a whole copy of its file
//! system. Slow and large, but it works on any file system and needs no
//! mount privileges.
//!
//! ```text
//! layers/ID/parent   the parent layer's id (empty for a base layer)
//! layers/ID/root/    the whole file system up to this layer
//! mounts/ID/top      the layer the mount was copied from
//! mounts/ID/root/    the container's root file system
//! ```

use std::fs;
use std::io::{Read, Write};
use std::path::{Path, PathBuf};

use super::{
    check_id, fsops, io_err, write_id_file, Driver, DriverKind, Error, ExtractOptions,
    ExtractSummary, Layout, Result,
};

pub struct Vfs {
    layout: Layout,
}

impl Vfs {
    pub fn open(root: &Path) -> Result<Self> {
        Ok(Vfs {
            layout: Layout::create(root)?,
        })
    }
}

/// Creates a layer as a whole tree: copies the parent's tree into a staging
/// directory, applies the tar, and renames the directory into place. Shared
/// by the drivers that keep whole trees in plain directories.
pub fn create_tree_layer(
    layout: &Layout,
    id: &str,
    parent: Option<&str>,
    tar: &mut dyn Read,
    prepare_root: impl FnOnce(&Path, Option<&Path>) -> Result<()>,
) -> Result<ExtractSummary> {
    check_id(id)?;
    let staging = layout.staging_layer(id);
    fsops::remove_tree(&staging).map_err(io_err(format!("remove {}", staging.display())))?;
    fs::create_dir(&staging).map_err(io_err(format!("create {}", staging.display())))?;

    let result = (|| {
        let parent_root = match parent {
            Some(parent) => {
                let dir = layout.layer(parent).join("root");
                if !dir.is_dir() {
                    return Err(Error::LayerNotFound(parent.to_string()));
                }
                Some(dir)
            }
            None => None,
        };
        let root = staging.join("root");
        prepare_root(&root, parent_root.as_deref())?;
        let summary = super::extract(tar, &root, &ExtractOptions::default())?;
        write_id_file(&staging.join("parent"), parent)?;
        Ok(summary)
    })();

    match result {
        Ok(summary) => {
            let target = layout.layer(id);
            fs::rename(&staging, &target).map_err(io_err(format!(
                "rename {} to {}",
                staging.display(),
                target.display()
            )))?;
            Ok(summary)
        }
        Err(err) => {
            let _ = fsops::remove_tree(&staging);
            Err(err)
        }
    }
}

/// Copies `parent` into `root`, or makes `root` an empty directory.
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

impl Driver for Vfs {
    fn kind(&self) -> DriverKind {
        DriverKind::Vfs
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
        if root.is_dir() && dir.join("top").exists() {
            return Ok(root);
        }

        let staging = self
            .layout
            .root
            .join("mounts")
            .join(format!("{}{id}", super::STAGING_PREFIX));
        fsops::remove_tree(&staging).map_err(io_err(format!("remove {}", staging.display())))?;
        fs::create_dir(&staging).map_err(io_err(format!("create {}", staging.display())))?;
        let parent = match top {
            Some(top) if !self.layer_exists(top) => {
                let _ = fsops::remove_tree(&staging);
                return Err(Error::LayerNotFound(top.to_string()));
            }
            Some(top) => Some(self.layout.layer(top).join("root")),
            None => None,
        };
        let result = copy_or_create(&staging.join("root"), parent.as_deref())
            .and_then(|()| write_id_file(&staging.join("top"), top));
        if let Err(err) = result {
            let _ = fsops::remove_tree(&staging);
            return Err(err);
        }
        fs::rename(&staging, &dir).map_err(io_err(format!(
            "rename {} to {}",
            staging.display(),
            dir.display()
        )))?;
        Ok(root)
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
        super::write_diff(
            super::DiffSource::Trees {
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
