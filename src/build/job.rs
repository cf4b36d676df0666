//! A build as a unit of work: everything `build` needs, as JSON, so that a
//! build can run in a process of its own (`cblock _build JOB.json`) on a
//! console the daemon's supervisor holds, or in the client's own process.

use std::collections::BTreeMap;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::Mutex;
use std::time::Instant;

use serde::{Deserialize, Serialize};

use super::runner::RuntimeRunner;
use super::{Network, Options, Output};
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
    let result = run_inner(job);
    if job.remove_context {
        let _ = std::fs::remove_dir_all(&job.context_dir);
    }
    let built = result?;
    if job.quiet {
        println!("{}", built.image.id);
    } else {
        println!(
            "-- Build finished in {:.1} seconds: {} steps run, {} from the cache",
            started.elapsed().as_secs_f64(),
            built.executed_steps,
            built.cached_steps
        );
    }
    let _ = std::io::stdout().flush();
    Ok(built.image.id)
}

fn run_inner(job: &Job) -> crate::Result<super::Built> {
    let file = crate::cblockfile::parse(&job.file_name, job.file_text.as_bytes())?;
    let store = Store::open_or_create(&job.data_dir)?;
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
    };
    let runner = RuntimeRunner {
        state_root: PathBuf::from(crate::runtime::DEFAULT_ROOT),
        runtime_exe: None,
    };
    let output: Output = Mutex::new(Box::new(std::io::stdout()));
    Ok(super::build(
        &store,
        &runner,
        &file,
        &job.context_dir,
        &options,
        &job.id,
        &output,
    )?)
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
