//! Turns the target stage into an image: the file-wide instructions
//! (ENTRYPOINT or CMD before the first FROM, OSRELEASE, AUDITCFG),
//! ROOTPIVOT, the `-F` file-integrity spec, and the image's names.

use std::collections::BTreeMap;
use std::path::Path;

use super::cache::{Entry, StepKey};
use super::rootpath::{self, Missing};
use super::stage::StageResult;
use super::{Build, Built, Error, FIM_SPEC_PATH};
use crate::image::{Layer, Store};
use crate::oci::image_spec::{self, History};
use crate::storage::{self, DiffSource};

pub fn finish(build: &Build, target: usize, result: &StageResult) -> Result<Built, Error> {
    let file = build.file;
    let stage = &file.stages[target];
    let mut config = result.config.clone();
    let mut top = result.top.clone();

    // An ENTRYPOINT or CMD given before the first FROM applies to the image
    // unless the stage chain sets its own (the parser resolves which wins).
    if file.entrypoint.is_some() || file.cmd.is_some() {
        let container = config.config.get_or_insert_with(Default::default);
        if let Some(entrypoint) = file.image_entrypoint(stage) {
            container.entrypoint = Some(entrypoint.argv.clone());
        }
        if let Some(cmd) = file.image_cmd(stage) {
            container.cmd = Some(cmd.argv.clone());
        }
    }

    let mut key = result.key.clone();
    let mut created = result.created.clone();
    if let Some(dir) = &result.rootpivot {
        let text = format!("ROOTPIVOT {dir}");
        key = key.next(&text, &[], None);
        let (layer, when) = cached_layer(build, &key, &text, || {
            pivot_root_layer(build, top.as_deref(), dir)
        })?;
        top = Some(layer);
        created = Some(when.clone());
        config.history = vec![History {
            created: Some(when),
            created_by: Some(format!("ROOTPIVOT {dir}")),
            ..Default::default()
        }];
    }

    let mut annotations = BTreeMap::new();
    if let Some(release) = &file.osrelease {
        annotations.insert(
            image_spec::ANNOTATION_OS_RELEASE.to_string(),
            release.value.preview.clone(),
        );
    }
    if let Some(audit) = &file.auditcfg {
        annotations.insert(
            image_spec::ANNOTATION_AUDIT_CLASSES.to_string(),
            audit.value.classes.join(","),
        );
    }
    if build.options.file_integrity {
        key = key.next("FILE-INTEGRITY", &[], None);
        let (layer, when) = cached_layer(build, &key, "FILE-INTEGRITY", || {
            fim_layer(build, top.as_deref())
        })?;
        top = Some(layer);
        created = Some(when);
        annotations.insert(
            image_spec::ANNOTATION_FIM_SPEC.to_string(),
            FIM_SPEC_PATH.to_string(),
        );
    }

    // The newest layer's time, so that a rebuild from the cache makes the
    // same configuration and so the same image ID.
    config.created =
        Some(created.unwrap_or_else(|| crate::image::rfc3339(std::time::SystemTime::now())));
    let image = build
        .store
        .add_image(config, top.as_deref(), annotations, &build.options.names)?;

    if !build.options.quiet {
        build.say(&format!("-- Successfully built {}", image.short_id()));
        for name in &build.options.names {
            build.say(&format!("-- Tagged {name}"));
        }
    }
    Ok(Built {
        image,
        cached_steps: 0,
        executed_steps: 0,
    })
}

/// Returns the layer cached under `key` with its time, or makes it with
/// `make` and caches it.
fn cached_layer(
    build: &Build,
    key: &StepKey,
    text: &str,
    make: impl FnOnce() -> Result<String, Error>,
) -> Result<(String, String), Error> {
    if let Some(Entry {
        layer: Some(layer),
        created: Some(created),
    }) = build.cached(key, build.total_steps, text)?
    {
        return Ok((layer, created));
    }
    if build.options.cache_only {
        return Err(Error::CacheMiss {
            step: build.total_steps,
            text: text.to_string(),
        });
    }
    let layer = make()?;
    let created = build.record_layer(key, &layer)?;
    Ok((layer, created))
}

/// Makes the ROOTPIVOT directory the root of a new base layer: `DIR/root`
/// when it exists (the original system's layout), otherwise `DIR`.
fn pivot_root_layer(build: &Build, top: Option<&str>, dir: &str) -> Result<String, Error> {
    let (mount_id, rootfs) = build.mount("pivot", top)?;
    let result = (|| {
        let resolved = rootpath::resolve(&rootfs, dir, Missing::Fail)?;
        if resolved.as_os_str().is_empty() {
            // The stage's own root: the `DIR/root` rule would otherwise
            // pick the root user's home directory.
            return Err(Error::Runner(format!(
                "ROOTPIVOT {dir}: the directory is the stage's root itself; give the \
                 subdirectory that holds the new root"
            )));
        }
        let mut pivot = rootfs.join(&resolved);
        if !pivot.is_dir() {
            return Err(Error::Runner(format!(
                "ROOTPIVOT {dir}: not a directory in the image"
            )));
        }
        if let Ok(inner) = rootpath::resolve(&rootfs, &format!("{dir}/root"), Missing::Fail) {
            if rootfs.join(&inner).is_dir() {
                pivot = rootfs.join(inner);
            }
        }
        if !build.options.quiet {
            build.say(&format!(
                " ---> Root pivoted to {}",
                pivot.strip_prefix(&rootfs).unwrap_or(&pivot).display()
            ));
        }
        Ok(commit_tree(build.store, &pivot, &build.holder())?.chain_id)
    })();
    build.release(&mount_id)?;
    result
}

/// Commits the whole tree under `dir` as a layer with no parent, held by
/// `holder`. The tar stream goes through a pipe from a packing thread
/// straight into the store, never to a file.
pub fn commit_tree(store: &Store, dir: &Path, holder: &str) -> Result<Layer, Error> {
    let (mut reader, mut writer) = std::io::pipe().map_err(|source| Error::Io {
        path: dir.to_path_buf(),
        source,
    })?;
    std::thread::scope(|scope| {
        let packer = scope.spawn(move || {
            let source = DiffSource::Trees {
                lower: None,
                upper: dir,
            };
            storage::write_diff(source, &mut writer)
        });
        let committed = store.commit_tar(None, &mut reader, holder);
        // Drain what the packer still writes so it never blocks on a full
        // pipe after a failed commit.
        let _ = std::io::copy(&mut reader, &mut std::io::sink());
        let packed = packer.join().expect("the layer packing thread panicked");
        packed
            .map_err(|err| Error::Runner(format!("packing the tree {}: {err}", dir.display())))?;
        Ok(committed?)
    })
}

/// Adds a layer holding the mtree spec of every file below it.
fn fim_layer(build: &Build, top: Option<&str>) -> Result<String, Error> {
    let (mount_id, rootfs) = build.mount("fim", top)?;
    let scanned = crate::fim::scan(&rootfs);
    build.release(&mount_id)?;
    let spec = crate::fim::write_spec(
        &scanned.map_err(|err| Error::Runner(format!("scanning the image for -F: {err}")))?,
    );

    let mut tar = tar::Builder::new(Vec::new());
    let relative = FIM_SPEC_PATH.trim_start_matches('/');
    let mut parents = Vec::new();
    let mut path = std::path::Path::new(relative).parent();
    while let Some(dir) = path.filter(|p| !p.as_os_str().is_empty()) {
        parents.push(dir.to_path_buf());
        path = dir.parent();
    }
    let append_error = |source| Error::Io {
        path: FIM_SPEC_PATH.into(),
        source,
    };
    let new_header = |kind, mode, size| {
        let mut header = tar::Header::new_gnu();
        header.set_entry_type(kind);
        header.set_mode(mode);
        header.set_size(size);
        header.set_uid(0);
        header.set_gid(0);
        header.set_mtime(0);
        header
    };
    for dir in parents.iter().rev() {
        let mut header = new_header(tar::EntryType::Directory, 0o755, 0);
        tar.append_data(&mut header, dir, std::io::empty())
            .map_err(append_error)?;
    }
    let mut header = new_header(tar::EntryType::Regular, 0o444, spec.len() as u64);
    tar.append_data(&mut header, relative, spec.as_bytes())
        .map_err(append_error)?;
    let bytes = tar.into_inner().map_err(append_error)?;

    let layer = build
        .store
        .commit_tar(top, &mut bytes.as_slice(), &build.holder())?;
    if !build.options.quiet {
        build.say(&format!(
            " ---> File integrity spec written to {FIM_SPEC_PATH}"
        ));
    }
    Ok(layer.chain_id)
}
