//! `cblock build` on the daemon side: receive the context, write the build
//! job and start a supervisor whose payload is the build process (`cblock
//! _build JOB`). The build then has a console like a container: its output
//! is kept in the scrollback and log, Ctrl+Q detaches from it, and `cblock
//! console` re-attaches to it.

use std::io;
use std::os::unix::net::UnixStream;
use std::path::Path;
use std::sync::Arc;

use super::protocol::{self as proto, BuildRequest, Kind};
use super::{Daemon, Error, CONSOLE_LOG_MAX};
use crate::build::job::{self, Job};
use crate::console::{now_secs, write_json_atomic, InstanceConfig, PayloadSpec, CONFIG_FILE};
use crate::{log_error, log_info};

/// Name of the job file in the instance directory.
const JOB_FILE: &str = "build-job.json";
/// Signal that `instances --stop` sends to a build first.
const BUILD_STOP_SIGNAL: i32 = libc::SIGTERM;

/// Receives the context that follows `request` on `conn`, creates the build
/// instance and starts it; returns the instance id. On failure nothing of
/// the build is left: no context, job or instance directory.
pub fn start(
    daemon: &Arc<Daemon>,
    conn: &mut UnixStream,
    request: &BuildRequest,
) -> Result<String, Error> {
    let (id, dir) = daemon.store.allocate()?;
    let context_dir = daemon.data_dir.join("builds").join(format!("{id}-context"));

    let result = receive_context(conn, &context_dir).and_then(|entries| {
        log_info!(Some(&id), "received a build context of {entries} entries");
        let job = Job {
            id: id.clone(),
            data_dir: daemon.data_dir.clone(),
            context_dir: context_dir.clone(),
            file_name: request.file_name.clone(),
            file_text: request.file_text.clone(),
            names: request.names.clone(),
            build_args: request.build_args.iter().cloned().collect(),
            target: request.target.clone(),
            network: request.network.clone(),
            no_cache: request.no_cache,
            file_integrity: request.file_integrity,
            quiet: request.quiet,
            remove_context: true,
        };
        let job_path = dir.join(JOB_FILE);
        job::write(&job, &job_path).map_err(|err| Error::Invalid(err.to_string()))?;

        let config = InstanceConfig {
            id: id.clone(),
            name: None,
            image: request
                .names
                .first()
                .cloned()
                .unwrap_or_else(|| "(build)".into()),
            kind: "building".into(),
            created: now_secs(),
            payload: PayloadSpec::Process {
                argv: vec![
                    daemon.exe.display().to_string(),
                    "_build".into(),
                    job_path.display().to_string(),
                ],
                env: Vec::new(),
                cwd: "/".into(),
            },
            scrollback_bytes: daemon.tty_buffer,
            log_max_bytes: CONSOLE_LOG_MAX,
            remove: false,
            stop_signal: BUILD_STOP_SIGNAL,
            window: request.window,
            start: true,
        };
        write_json_atomic(&dir, CONFIG_FILE, &config).map_err(|source| Error::Io {
            context: format!("write {}/{CONFIG_FILE}", dir.display()),
            source,
        })?;
        super::instances::start_supervisor(&daemon.exe, &dir)
    });

    if let Err(err) = result {
        log_error!(Some(&id), "failed to start the build: {err}");
        let _ = std::fs::remove_dir_all(&context_dir);
        if let Err(cleanup) = daemon.store.remove(&id) {
            log_error!(Some(&id), "failed to remove the failed build: {cleanup}");
        }
        return Err(err);
    }
    log_info!(Some(&id), "started a build of {:?}", request.names);
    Ok(id)
}

/// Reads `Data` frames up to `Eof` and extracts them as a tar stream into
/// `dest` with the same checks as image layers, so a hostile context can
/// write nothing outside it. Returns the number of entries.
fn receive_context(conn: &mut UnixStream, dest: &Path) -> Result<u64, Error> {
    std::fs::create_dir_all(dest).map_err(|source| Error::Io {
        context: format!("create {}", dest.display()),
        source,
    })?;
    let (mut reader, mut writer) = io::pipe().map_err(|source| Error::Io {
        context: "create a pipe for the build context".into(),
        source,
    })?;

    std::thread::scope(|scope| {
        let extractor = std::thread::Builder::new()
            .name("build-context".into())
            .spawn_scoped(scope, move || {
                let options = crate::storage::ExtractOptions::default();
                let result = crate::storage::extract(&mut reader, dest, &options);
                let _ = io::copy(&mut reader, &mut io::sink());
                result
            })
            .map_err(|source| Error::Io {
                context: "start the context extraction thread".into(),
                source,
            })?;

        let copied = (|| loop {
            let frame = proto::read_frame(conn)?;
            match frame.kind {
                Kind::Data => {
                    io::Write::write_all(&mut writer, &frame.payload).map_err(|source| {
                        Error::Io {
                            context: "pass on the build context".into(),
                            source,
                        }
                    })?
                }
                Kind::Eof => return Ok(()),
                other => {
                    return Err(Error::Invalid(format!(
                        "unexpected {other:?} frame while receiving the build context"
                    )))
                }
            }
        })();
        drop(writer);
        let extracted = extractor
            .join()
            .expect("the context extraction thread panicked");
        copied?;
        let summary = extracted.map_err(|err| {
            Error::Invalid(format!(
                "the build context is not a valid tar stream: {err}"
            ))
        })?;
        Ok(summary.entries)
    })
}
