//! The `overlay` driver: each layer holds only its own changes, in
//! overlayfs's format, and a mount stacks the layer chain as lower
//! directories under a fresh upper directory.
//!
//! ```text
//! layers/ID/parent   the parent layer's id (empty for a base layer)
//! layers/ID/diff/    this layer's files; whiteouts as 0/0 character devices
//! mounts/ID/top      the layer the mount stacks on
//! mounts/ID/upper/   the writable layer
//! mounts/ID/work/    overlayfs's work directory
//! mounts/ID/merged/  the root file system
//! empty/             the lower directory of a mount on no layer
//! ```

use std::fs;
use std::io::{Read, Write};
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};

use nix::mount::{mount, umount2, MntFlags, MsFlags};

use crate::storage::{
    check_id, fsops, io_err, write_id_file, Driver, DriverKind, Error, ExtractOptions,
    ExtractSummary, Layout, Result, Whiteouts, STAGING_PREFIX,
};

/// Maximum length of overlayfs mount options: one page, less the NUL.
const MAX_MOUNT_DATA: usize = 4095;

pub struct Overlay {
    layout: Layout,
}

impl Overlay {
    pub fn open(root: &Path) -> Result<Self> {
        let filesystems = fs::read_to_string("/proc/filesystems").unwrap_or_default();
        if !filesystems
            .lines()
            .any(|line| line.trim_end().ends_with("\toverlay"))
        {
            return Err(Error::Unsupported {
                driver: "overlay",
                reason: "the kernel has no overlay file system; run `modprobe overlay` or use --storage vfs".into(),
            });
        }
        let layout = Layout::create(root)?;
        let empty = root.join("empty");
        fs::create_dir_all(&empty).map_err(io_err(format!("create {}", empty.display())))?;
        Ok(Overlay { layout })
    }

    /// Returns the diff directories of layer `top` and its parents, top first.
    fn lower_dirs(&self, top: &str) -> Result<Vec<PathBuf>> {
        let mut dirs = Vec::new();
        let mut next = Some(top.to_string());
        while let Some(id) = next {
            let dir = self.layout.layer(&id).join("diff");
            if !dir.is_dir() {
                return Err(Error::LayerNotFound(id));
            }
            dirs.push(dir);
            next = self.layout.parent(&id)?;
        }
        Ok(dirs)
    }

    fn is_mounted(&self, id: &str) -> bool {
        let dir = self.layout.mount(id);
        match (fs::metadata(&dir), fs::metadata(dir.join("merged"))) {
            (Ok(outer), Ok(inner)) => outer.dev() != inner.dev(),
            _ => false,
        }
    }
}

impl Driver for Overlay {
    fn kind(&self) -> DriverKind {
        DriverKind::Overlay
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
        let staging = self.layout.staging_layer(id);
        fsops::remove_tree(&staging).map_err(io_err(format!("remove {}", staging.display())))?;
        let diff = staging.join("diff");
        fs::create_dir_all(&diff).map_err(io_err(format!("create {}", diff.display())))?;

        let options = ExtractOptions {
            whiteouts: Whiteouts::Overlay,
            allow_devices: false,
        };
        let result = crate::storage::extract(tar, &diff, &options)
            .and_then(|summary| write_id_file(&staging.join("parent"), parent).map(|()| summary));
        match result {
            Ok(summary) => {
                let target = self.layout.layer(id);
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

    fn remove_layer(&self, id: &str) -> Result<()> {
        check_id(id)?;
        let dir = self.layout.layer(id);
        fsops::remove_tree(&dir).map_err(io_err(format!("remove {}", dir.display())))
    }

    fn layer_exists(&self, id: &str) -> bool {
        check_id(id).is_ok() && self.layout.layer(id).join("diff").is_dir()
    }

    fn layers(&self) -> Result<Vec<String>> {
        self.layout.list("layers")
    }

    fn mount(&self, id: &str, top: Option<&str>) -> Result<PathBuf> {
        check_id(id)?;
        let dir = self.layout.mount(id);
        let merged = dir.join("merged");
        if self.is_mounted(id) {
            return Ok(merged);
        }

        if !dir.join("top").exists() {
            let staging = self
                .layout
                .root
                .join("mounts")
                .join(format!("{STAGING_PREFIX}{id}"));
            fsops::remove_tree(&staging)
                .map_err(io_err(format!("remove {}", staging.display())))?;
            for sub in ["upper", "work", "merged"] {
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

        let top = self.layout.top(id)?;
        let lowers = match &top {
            Some(top) => self.lower_dirs(top)?,
            None => vec![self.layout.root.join("empty")],
        };
        let lower_list: Vec<String> = lowers.iter().map(|p| p.display().to_string()).collect();
        // redirect_dir and metacopy stay off, so the upper directory contains
        // whole files and plain whiteouts that `diff` can read.
        let data = format!(
            "lowerdir={},upperdir={},workdir={},redirect_dir=off,metacopy=off",
            lower_list.join(":"),
            dir.join("upper").display(),
            dir.join("work").display(),
        );
        if data.len() > MAX_MOUNT_DATA {
            // NOTE: about 55 layers fit with the default data directory (an
            // estimate from its path lengths); mounts of taller images fail.
            return Err(Error::Unsupported {
                driver: "overlay",
                reason: format!(
                    "the {} lower layers of mount {id} need {} bytes of mount options, over the kernel's {MAX_MOUNT_DATA}; squash the image or use a shorter data directory",
                    lowers.len(),
                    data.len()
                ),
            });
        }
        mount(
            Some("overlay"),
            &merged,
            Some("overlay"),
            MsFlags::empty(),
            Some(data.as_str()),
        )
        .map_err(|e| io_err(format!("mount overlay on {}", merged.display()))(e.into()))?;
        Ok(merged)
    }

    fn unmount(&self, id: &str) -> Result<()> {
        check_id(id)?;
        if !self.layout.mount(id).exists() {
            return Err(Error::MountNotFound(id.to_string()));
        }
        if self.is_mounted(id) {
            let merged = self.layout.mount(id).join("merged");
            umount2(&merged, MntFlags::empty())
                .map_err(|e| io_err(format!("unmount {}", merged.display()))(e.into()))?;
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
        self.layout.top(id)?;
        let upper = self.layout.mount(id).join("upper");
        crate::storage::write_diff(crate::storage::DiffSource::OverlayUpper(&upper), out)
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
