//! A build as a unit of work: everything `build` needs, as JSON, so that a
//! build can run in a process of its own (`cblock _build JOB.json`) on a
//! console the daemon's supervisor holds, or in the client's own process.

use std::collections::BTreeMap;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::{Arc, Mutex};
use std::time::Instant;

use serde::{Deserialize, Serialize};

use super::runner::RuntimeRunner;
use super::{Network, Options, Output, StepProcess, StepRunner};
use crate::image::{Reference, Store};

/// The inputs of one build.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Job {
    /// Build id: names the build's mounts, containers and layer holds.
    pub id: String,
    pub data_dir: PathBuf,
    /// The staged context (ignored files already left out).
    pub context_dir: PathBuf,
    /// Name of the Cblockfile for messages (`FILE:LINE:COLUMN`).
    pub file_name: String,
    pub file_text: String,
    /// `name:tag` references the image gets.
    pub names: Vec<String>,
    pub build_args: BTreeMap<String, String>,
    pub target: Option<String>,
    /// `host` or `none`.
    pub network: String,
    pub no_cache: bool,
    pub file_integrity: bool,
    pub quiet: bool,
    /// Remove `context_dir` when the build ends.
    pub remove_context: bool,
}

/// Runs `job`, writing progress to standard output, and returns the image
/// ID. The caller's process must be allowed to wait for the build
/// containers it starts (the runner makes it their subreaper).
pub fn run(job: &Job) -> crate::Result<String> {
    let started = Instant::now();
    let output: Output = Mutex::new(Box::new(std::io::stdout()));
    let runner = RuntimeRunner {
        state_root: PathBuf::from(crate::runtime::DEFAULT_ROOT),
        runtime_exe: None,
    };
    let result = run_inner(job, None, &runner, false, &output);
    if job.remove_context {
        let _ = std::fs::remove_dir_all(&job.context_dir);
    }
    let built = result?;
    println!("{}", last_line(job, &built, started));
    let _ = std::io::stdout().flush();
    Ok(built.image.id)
}

/// A build answered from the build cache alone.
#[derive(Debug)]
pub struct Cached {
    pub image_id: String,
    /// What `run` would have printed, line for line.
    pub output: Vec<u8>,
}

/// Runs `job` from the build cache alone, in this process, against `store`
/// (the store in `job.data_dir`, already open): it mounts, downloads and
/// runs nothing, and collects the output that `run` prints.
/// Stops with `build::Error::CacheMiss` at the first step the cache does
/// not have, before the image is tagged, so that the caller can run the
/// job in full; any other error is the one the full run meets too. Leaves
/// the context in place.
pub fn run_cached(job: &Job, store: &Store) -> crate::Result<Cached> {
    let started = Instant::now();
    let buffer = SharedBuffer::default();
    let output: Output = Mutex::new(Box::new(buffer.clone()));
    let built = run_inner(job, Some(store), &NoRunner, true, &output)?;
    drop(output);
    let mut output = buffer.take();
    output.extend_from_slice(last_line(job, &built, started).as_bytes());
    output.push(b'\n');
    Ok(Cached {
        image_id: built.image.id,
        output,
    })
}

/// Returns the line that ends a build's output: the image ID alone with
/// `-q`, else the summary.
fn last_line(job: &Job, built: &super::Built, started: Instant) -> String {
    if job.quiet {
        return built.image.id.clone();
    }
    format!(
        "-- Build finished in {:.1} seconds: {} steps run, {} from the cache",
        started.elapsed().as_secs_f64(),
        built.executed_steps,
        built.cached_steps
    )
}

/// Runs the build against `store`, or against the store in `job.data_dir`
/// opened after the file is parsed.
fn run_inner(
    job: &Job,
    store: Option<&Store>,
    runner: &dyn StepRunner,
    cache_only: bool,
    output: &Output,
) -> crate::Result<super::Built> {
    let file = crate::cblockfile::parse(&job.file_name, job.file_text.as_bytes())?;
    let opened;
    let store = match store {
        Some(store) => store,
        None => {
            opened = Store::open_or_create(&job.data_dir)?;
            &opened
        }
    };
    let names = job
        .names
        .iter()
        .map(|name| Reference::parse(name))
        .collect::<Result<Vec<_>, _>>()?;
    let network = Network::parse(&job.network).ok_or_else(|| {
        super::Error::Runner(format!(
            "invalid build network {:?}; use host or none",
            job.network
        ))
    })?;
    let options = Options {
        names,
        build_args: job.build_args.clone(),
        target: job.target.clone(),
        network,
        no_cache: job.no_cache,
        file_integrity: job.file_integrity,
        quiet: job.quiet,
        cache_only,
    };
    Ok(super::build(
        store,
        runner,
        &file,
        &job.context_dir,
        &options,
        &job.id,
        output,
    )?)
}

/// The step runner of a cache-only build, which stops at the first miss
/// before it would run a step.
struct NoRunner;

impl StepRunner for NoRunner {
    fn run(&self, process: &StepProcess) -> Result<i32, super::Error> {
        Err(super::Error::Runner(format!(
            "container {} not started: a cache-only build runs no step",
            process.id
        )))
    }
}

/// Build output collected in memory; clones share the bytes.
#[derive(Clone, Default)]
struct SharedBuffer(Arc<Mutex<Vec<u8>>>);

impl SharedBuffer {
    fn take(&self) -> Vec<u8> {
        std::mem::take(&mut *self.0.lock().unwrap_or_else(|e| e.into_inner()))
    }
}

impl Write for SharedBuffer {
    fn write(&mut self, bytes: &[u8]) -> std::io::Result<usize> {
        self.0
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .extend_from_slice(bytes);
        Ok(bytes.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

/// Reads a job file written by `write`.
pub fn read(path: &Path) -> crate::Result<Job> {
    let bytes = std::fs::read(path).map_err(|source| crate::Error::Io {
        path: path.to_path_buf(),
        source,
    })?;
    serde_json::from_slice(&bytes).map_err(|err| crate::Error::Io {
        path: path.to_path_buf(),
        source: std::io::Error::new(std::io::ErrorKind::InvalidData, err),
    })
}

/// Writes `job` as JSON to `path`.
pub fn write(job: &Job, path: &Path) -> crate::Result<()> {
    let bytes = serde_json::to_vec_pretty(job).expect("a build job always serialises");
    std::fs::write(path, bytes).map_err(|source| crate::Error::Io {
        path: path.to_path_buf(),
        source,
    })
}

/// Runs the build role (`cblock _build JOB.json`): the build process the
/// daemon starts on a console. The job file is removed once read.
pub fn main(args: &[String]) -> crate::Result<ExitCode> {
    let [path] = args else {
        eprintln!("usage: cblock _build JOB.json (started by cblockd, not by hand)");
        return Ok(ExitCode::from(crate::role::EXIT_USAGE));
    };
    let path = Path::new(path);
    let job = read(path)?;
    let _ = std::fs::remove_file(path);
    run(&job)?;
    Ok(ExitCode::SUCCESS)
}
