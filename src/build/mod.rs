//! Builds an image from a parsed Cblockfile and a context directory.
//!
//! Stages form a graph through `FROM` and `COPY --from`. Only the stages
//! the target (the last stage, or `--target`) needs are built, and stages
//! whose dependencies are complete run in parallel, one thread each. Inside
//! a stage every file-changing instruction (RUN, ADD, COPY, WORKDIR) mounts
//! the stage's layers with a fresh writable layer, changes it, and commits
//! one layer; the other instructions only change the image configuration.
//! Every step has a cache key (see `cache`), so a rebuild with nothing
//! changed mounts nothing and starts no container.

pub mod cache;
pub mod context;
pub mod copy;
pub mod download;
mod finish;
pub mod job;
pub mod rootpath;
pub mod runner;
mod stage;
pub use stage::host_architecture;
pub mod users;

use std::collections::{BTreeMap, BTreeSet};
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::Mutex;

use crate::cblockfile::{Cblockfile, CopySource, InstructionKind};
use crate::image::reference::Reference;
use crate::image::{Image, Store};
pub use finish::commit_tree;
pub use runner::{Network, StepProcess, StepRunner};

/// Errors of a build.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error(transparent)]
    Download(#[from] download::Error),
    #[error(transparent)]
    Cache(#[from] cache::Error),
    #[error(transparent)]
    Context(#[from] context::Error),
    #[error(transparent)]
    Copy(#[from] copy::Error),
    #[error(transparent)]
    RootPath(#[from] rootpath::Error),
    #[error(transparent)]
    Users(#[from] users::Error),
    #[error(transparent)]
    Image(#[from] crate::image::Error),
    #[error("{file}:{line}: step {step} ({text}) failed: {reason}")]
    Step {
        file: String,
        line: usize,
        step: usize,
        text: String,
        reason: String,
    },
    #[error("{file}:{line}: step {step} ({text}) failed: the command exited with status {status}")]
    StepExit {
        file: String,
        line: usize,
        step: usize,
        text: String,
        status: i32,
    },
    #[error("target stage {0:?} not found; name a stage given with FROM ... AS NAME, or its 0-based index")]
    UnknownTarget(String),
    #[error("the file has no FROM instruction, so there is nothing to build")]
    NoStages,
    #[error("running a build step: {0}")]
    Runner(String),
    /// A step whose result is not in the cache, met in a cache-only build.
    #[error("step {step} ({text}) is not in the build cache")]
    CacheMiss { step: usize, text: String },
    #[error("build work directory {path}: {source}")]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
}

/// What `cblock build` asks for, besides the file and the context.
#[derive(Debug, Clone, Default)]
pub struct Options {
    /// Names the image gets; none leaves it reachable by ID only.
    pub names: Vec<Reference>,
    /// `--build-arg NAME=value`.
    pub build_args: BTreeMap<String, String>,
    /// `--target`: a stage name or 0-based index.
    pub target: Option<String>,
    pub network: Network,
    pub no_cache: bool,
    /// `-F`: write an mtree specification of the image's files into it.
    pub file_integrity: bool,
    /// `-q`: print no step lines.
    pub quiet: bool,
    /// Stop with `Error::CacheMiss` at the first step that is not in the
    /// cache, before it mounts, downloads or runs anything. cblockd answers
    /// a no-change rebuild this way without starting a build process.
    pub cache_only: bool,
}

/// Path of the mtree specification that `-F` writes into the image.
pub const FIM_SPEC_PATH: &str = "/etc/cblocks/fim.mtree";

/// Where build output goes. Several stages may write at once, so each line
/// is written whole under the lock.
pub type Output = Mutex<Box<dyn Write + Send>>;

/// Everything the steps of one build share.
pub(crate) struct Build<'a> {
    pub store: &'a Store,
    pub runner: &'a dyn StepRunner,
    pub cache: cache::Cache,
    pub file: &'a Cblockfile,
    pub context_dir: &'a Path,
    /// Scratch space of this build, removed at its end.
    pub work_dir: PathBuf,
    pub id: String,
    pub options: &'a Options,
    pub output: &'a Output,
    /// Step numbers: the first step of each needed stage, and the total.
    pub step_base: BTreeMap<usize, usize>,
    pub total_steps: usize,
    /// Mounts made by this build, unmounted and removed at its end.
    pub mounts: Mutex<BTreeSet<String>>,
}

impl Build<'_> {
    /// Writes one line of build output.
    pub fn say(&self, line: &str) {
        let mut out = self.output.lock().unwrap_or_else(|e| e.into_inner());
        let _ = writeln!(out, "{line}");
        let _ = out.flush();
    }

    /// Mounts `top` with a fresh writable layer under a mount id of this
    /// build, and remembers the mount for cleanup.
    pub fn mount(&self, label: &str, top: Option<&str>) -> Result<(String, PathBuf), Error> {
        let mount_id = format!("build-{}-{label}", self.id);
        self.mounts
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .insert(mount_id.clone());
        let path = self.store.mount_layer(&mount_id, top)?;
        Ok((mount_id, path))
    }

    /// Returns the store holder id of this build's layers.
    pub fn holder(&self) -> String {
        format!("build-{}", self.id)
    }

    /// Keeps layer `chain_id` from being pruned until the build ends.
    pub fn hold(&self, chain_id: &str) -> Result<(), Error> {
        Ok(self.store.hold(&self.holder(), chain_id)?)
    }

    /// Returns the cache entry of `key`, unless `--no-cache` is given or the
    /// entry's layer is gone; in a cache-only build a miss is
    /// `Error::CacheMiss` for `step`. The layer is held for this build, so
    /// that a prune before the image is named cannot take it away.
    ///
    /// A cache-only build holds nothing, which saves two fsyncs a step. It
    /// commits no layer of its own, and `Store::add_image` reads every layer
    /// of the image's chain under the store's exclusive lock. So a layer
    /// pruned after its lookup makes the build fail, and the caller then
    /// runs the full build, which builds that layer again.
    pub fn cached(
        &self,
        key: &cache::StepKey,
        step: usize,
        text: &str,
    ) -> Result<Option<cache::Entry>, Error> {
        let miss = || {
            if self.options.cache_only {
                Err(Error::CacheMiss {
                    step,
                    text: text.to_string(),
                })
            } else {
                Ok(None)
            }
        };
        if self.options.no_cache {
            return miss();
        }
        let store = self.store;
        let Some(entry) = self.cache.lookup(key, |layer| store.layer(layer).is_ok()) else {
            return miss();
        };
        if let (Some(layer), false) = (&entry.layer, self.options.cache_only) {
            if self.hold(layer).is_err() {
                return miss();
            }
        }
        if !self.options.quiet {
            self.say(" ---> Using cache");
        }
        Ok(Some(entry))
    }

    /// Records layer `chain_id` as the result of `key`, made now; returns
    /// that time (RFC 3339).
    pub fn record_layer(&self, key: &cache::StepKey, chain_id: &str) -> Result<String, Error> {
        let created = crate::image::rfc3339(std::time::SystemTime::now());
        self.cache.record(
            key,
            &cache::Entry {
                layer: Some(chain_id.to_string()),
                created: Some(created.clone()),
            },
        )?;
        Ok(created)
    }

    /// Unmounts and removes a mount made by `mount`.
    pub fn release(&self, mount_id: &str) -> Result<(), Error> {
        self.store.remove_mount(mount_id)?;
        self.mounts
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .remove(mount_id);
        Ok(())
    }
}

impl Drop for Build<'_> {
    fn drop(&mut self) {
        let mounts = std::mem::take(&mut *self.mounts.lock().unwrap_or_else(|e| e.into_inner()));
        for mount_id in mounts {
            if let Err(err) = self.store.remove_mount(&mount_id) {
                self.say(&format!(
                    "-- warning: removing build mount {mount_id}: {err}"
                ));
            }
        }
        if let Err(err) = self.store.release(&self.holder()) {
            self.say(&format!("-- warning: releasing the build's layers: {err}"));
        }
        let _ = std::fs::remove_dir_all(&self.work_dir);
    }
}

/// The result of a build.
#[derive(Debug)]
pub struct Built {
    pub image: Image,
    /// Steps answered from the cache, and steps run.
    pub cached_steps: usize,
    pub executed_steps: usize,
}

/// Builds `file` with the context in `context_dir`, writing progress to
/// `output`. `build_id` names the build's mounts and containers.
pub fn build(
    store: &Store,
    runner: &dyn StepRunner,
    file: &Cblockfile,
    context_dir: &Path,
    options: &Options,
    build_id: &str,
    output: &Output,
) -> Result<Built, Error> {
    if file.stages.is_empty() {
        return Err(Error::NoStages);
    }
    let target = match &options.target {
        Some(name) => {
            file.stage(name)
                .ok_or_else(|| Error::UnknownTarget(name.clone()))?
                .index
        }
        None => file.stages.len() - 1,
    };
    let needed = needed_stages(file, target, store);

    let mut step_base = BTreeMap::new();
    let mut total_steps = 0;
    for &index in &needed {
        step_base.insert(index, total_steps);
        total_steps += 1 + file.stages[index].instructions.len();
    }

    // A cache-only build writes to its work directory only for heredoc
    // sources, which create it, so a no-change rebuild creates and removes
    // no directory here.
    let work_dir = store.data_dir().join("builds").join(build_id);
    if !options.cache_only {
        std::fs::create_dir_all(&work_dir).map_err(|source| Error::Io {
            path: work_dir.clone(),
            source,
        })?;
    }
    let build = Build {
        store,
        runner,
        cache: if options.cache_only {
            cache::Cache::at(store.data_dir())
        } else {
            cache::Cache::open(store.data_dir())?
        },
        file,
        context_dir,
        work_dir,
        id: build_id.to_string(),
        options,
        output,
        step_base,
        total_steps,
        mounts: Mutex::new(BTreeSet::new()),
    };

    let results = run_stages(&build, &needed)?;
    let result = results
        .get(&target)
        .expect("the target stage is among the needed stages");
    let mut built = finish::finish(&build, target, result)?;
    built.cached_steps = results.values().map(|r| r.cached_steps).sum();
    built.executed_steps = results.values().map(|r| r.executed_steps).sum();
    Ok(built)
}

/// Returns the stages `target` depends on, itself included, in file order.
/// A `FROM` that names an earlier stage depends on it; so does `COPY
/// --from` of a stage.
fn needed_stages(file: &Cblockfile, target: usize, store: &Store) -> Vec<usize> {
    let mut needed = BTreeSet::new();
    let mut pending = vec![target];
    while let Some(index) = pending.pop() {
        if !needed.insert(index) {
            continue;
        }
        for dependency in stage_dependencies(file, index, store) {
            pending.push(dependency);
        }
    }
    needed.into_iter().collect()
}

/// Returns the earlier stages that stage `index` reads from.
pub(crate) fn stage_dependencies(file: &Cblockfile, index: usize, _store: &Store) -> Vec<usize> {
    let stage = &file.stages[index];
    let mut dependencies = Vec::new();
    // A FROM that names an earlier stage means that stage, as in Docker,
    // even where an image of the same name exists.
    if let Some(base) = stage.from.stage {
        if base < index {
            dependencies.push(base);
        }
    }
    for instruction in &stage.instructions {
        if let InstructionKind::Copy(copy) | InstructionKind::Add(copy) = &instruction.kind {
            if let Some(CopySource::Stage { index: source, .. }) = &copy.from {
                if *source < index {
                    dependencies.push(*source);
                }
            }
        }
    }
    dependencies
}

/// Runs the needed stages, each as soon as the stages it reads from are
/// done, stages that are ready at the same time in parallel.
fn run_stages(
    build: &Build,
    needed: &[usize],
) -> Result<BTreeMap<usize, stage::StageResult>, Error> {
    let mut done: BTreeMap<usize, stage::StageResult> = BTreeMap::new();
    let mut remaining: Vec<usize> = needed.to_vec();

    while !remaining.is_empty() {
        let ready: Vec<usize> = remaining
            .iter()
            .copied()
            .filter(|&index| {
                stage_dependencies(build.file, index, build.store)
                    .iter()
                    .all(|dependency| done.contains_key(dependency))
            })
            .collect();
        assert!(
            !ready.is_empty(),
            "stage dependencies point only to earlier stages, so one is always ready"
        );
        remaining.retain(|index| !ready.contains(index));

        let finished: Vec<(usize, Result<stage::StageResult, Error>)> = if ready.len() == 1 {
            vec![(ready[0], stage::run(build, ready[0], &done))]
        } else {
            std::thread::scope(|scope| {
                let handles: Vec<_> = ready
                    .iter()
                    .map(|&index| {
                        let done = &done;
                        let handle = std::thread::Builder::new()
                            .name(format!("build-stage-{index}"))
                            .spawn_scoped(scope, move || stage::run(build, index, done))
                            .expect("spawning a build stage thread");
                        (index, handle)
                    })
                    .collect();
                handles
                    .into_iter()
                    .map(|(index, handle)| {
                        let result = handle.join().unwrap_or_else(|_| {
                            Err(Error::Runner(format!("stage {index} panicked")))
                        });
                        (index, result)
                    })
                    .collect()
            })
        };
        for (index, result) in finished {
            done.insert(index, result?);
        }
    }
    Ok(done)
}
