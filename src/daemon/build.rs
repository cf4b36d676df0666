//! `cblock build` on the daemon side: receive the context, write the build
//! job and start a supervisor whose payload is the build process (`cblock
//! _build JOB`). The build then has a console like a container: its output
//! is kept in the scrollback and log, Ctrl+Q detaches from it, and `cblock
//! console` re-attaches to it.
//!
//! A rebuild whose every step is in the build cache runs no step, so when
//! the client accepts it, cblockd first tries the build from the cache
//! alone in its own process, and sends the output back on the connection.
//! That saves the supervisor, the build process and the console. On the
//! first miss it starts the build process as above, with the same context
//! directory.

use std::io;
use std::os::unix::net::UnixStream;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use super::protocol::{self as proto, BuildRequest, Kind};
use super::{Daemon, Error, CONSOLE_LOG_MAX};
use crate::build::job::{self, Job};
use crate::console::{now_secs, InstanceConfig, PayloadSpec};
use crate::{log_error, log_info};

/// Name of the job file in the instance directory.
const JOB_FILE: &str = "build-job.json";
/// Signal that `instances --stop` sends to a build first.
const BUILD_STOP_SIGNAL: i32 = libc::SIGTERM;

/// The outcome of a build request in cblockd.
#[derive(Debug)]
pub enum Started {
    /// The build runs as this instance, and the client attaches to its
    /// console.
    Instance(String),
    /// Every step came from the build cache and the image is tagged: the
    /// build's output, ready to send.
    Cached(Vec<u8>),
}

/// Receives the context that follows `request` on `conn`. Builds from the
/// cache alone when the client accepts that and every step is a hit, else
/// creates the build instance and starts it. On failure nothing of the
/// build is left: no context, job or instance directory.
pub fn start(
    daemon: &Arc<Daemon>,
    conn: &mut UnixStream,
    request: &BuildRequest,
) -> Result<Started, Error> {
    let (context_id, context_dir) = create_context_dir(daemon)?;
    let entries = match receive_context(conn, &context_dir) {
        Ok(entries) => entries,
        Err(err) => {
            log_error!(
                Some(&context_id),
                "failed to receive a build context: {err}"
            );
            let _ = std::fs::remove_dir_all(&context_dir);
            return Err(err);
        }
    };
    log_info!(
        Some(&context_id),
        "received a build context of {entries} entries for {:?}",
        request.names
    );
    let job = Job {
        id: context_id,
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

    if request.accept_cached && !request.no_cache {
        if let Some(output) = build_from_cache(daemon, &job) {
            let _ = std::fs::remove_dir_all(&context_dir);
            return Ok(Started::Cached(output));
        }
    }
    match start_instance(daemon, request, job) {
        Ok(id) => Ok(Started::Instance(id)),
        Err(err) => {
            let _ = std::fs::remove_dir_all(&context_dir);
            Err(err)
        }
    }
}

/// Creates an empty directory for a build context under `DATA/builds`
/// and returns its random id with the path.
fn create_context_dir(daemon: &Daemon) -> Result<(String, PathBuf), Error> {
    let builds = daemon.data_dir.join("builds");
    std::fs::create_dir_all(&builds).map_err(|source| Error::Io {
        context: format!("create {}", builds.display()),
        source,
    })?;
    for _ in 0..16 {
        let id = super::instances::random_id().map_err(|source| Error::Io {
            context: "read random bytes for a build id".into(),
            source,
        })?;
        let dir = builds.join(format!("{id}-context"));
        match std::fs::create_dir(&dir) {
            Ok(()) => return Ok((id, dir)),
            Err(err) if err.kind() == io::ErrorKind::AlreadyExists => continue,
            Err(source) => {
                return Err(Error::Io {
                    context: format!("create {}", dir.display()),
                    source,
                })
            }
        }
    }
    Err(Error::Invalid(format!(
        "no free build context directory in {} after 16 random names; check the random source",
        builds.display()
    )))
}

/// Runs `job` from the build cache alone in this process and returns its
/// output, or `None` when a step misses the cache or the build fails. The
/// full build then runs and reports any error, so that a failing build
/// prints the same message on either path.
///
/// NOTE: on a miss the build process repeats the lookups made here,
/// including the digest of every ADD or COPY source before the miss, so a
/// large context that misses after its COPY is read twice.
fn build_from_cache(daemon: &Daemon, job: &Job) -> Option<Vec<u8>> {
    // A panic here must not leave the context behind, so it counts as a
    // failure and the build process gets the request.
    let outcome = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
        job::run_cached(job, &daemon.images)
    }));
    let Ok(result) = outcome else {
        log_error!(
            Some(&job.id),
            "the build from the cache alone panicked; starting a build process"
        );
        return None;
    };
    match result {
        Ok(cached) => {
            log_info!(
                Some(&job.id),
                "built {} from the build cache alone, tagged {:?}",
                cached.image_id,
                job.names
            );
            Some(cached.output)
        }
        Err(crate::Error::Build(crate::build::Error::CacheMiss { step, text })) => {
            log_info!(
                Some(&job.id),
                "step {step} ({text}) is not in the build cache; starting a build process"
            );
            None
        }
        Err(err) => {
            log_info!(
                Some(&job.id),
                "the build from the cache alone failed ({err}); starting a build process"
            );
            None
        }
    }
}

/// Creates the build instance for `job`, starts its supervisor and returns
/// the instance id. On failure it removes the instance, and the caller
/// removes the context.
fn start_instance(
    daemon: &Arc<Daemon>,
    request: &BuildRequest,
    mut job: Job,
) -> Result<String, Error> {
    let (id, dir) = daemon.store.allocate()?;
    let context_id = std::mem::replace(&mut job.id, id.clone());
    let result = (|| {
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
        super::instances::start_instance(&daemon.exe, &dir, &config)
    })();

    if let Err(err) = result {
        log_error!(Some(&id), "failed to start the build: {err}");
        if let Err(cleanup) = daemon.store.remove(&id) {
            log_error!(Some(&id), "failed to remove the failed build: {cleanup}");
        }
        return Err(err);
    }
    log_info!(
        Some(&id),
        "started a build of {:?} with context {context_id}",
        request.names
    );
    Ok(id)
}

/// Reads `Data` frames up to `Eof` and extracts them as a tar stream into
/// `dest` with the same checks as image layers, so a hostile context can
/// write nothing outside it. Returns the number of entries. The frames are
/// read up to `Eof` even when the tar stream is invalid, so that the error
/// reaches the client as a response.
fn receive_context(conn: &mut UnixStream, dest: &Path) -> Result<u64, Error> {
    let mut reader = ContextReader {
        conn,
        frame: Vec::new(),
        offset: 0,
        ended: false,
        error: None,
    };
    let options = crate::storage::ExtractOptions::default();
    let extracted = crate::storage::extract(&mut reader, dest, &options);
    let _ = io::copy(&mut reader, &mut io::sink());
    if let Some(err) = reader.error {
        return Err(err);
    }
    let summary = extracted.map_err(|err| {
        Error::Invalid(format!(
            "the build context is not a valid tar stream: {err}"
        ))
    })?;
    Ok(summary.entries)
}

/// The payloads of `Data` frames up to `Eof`, read as one byte stream.
struct ContextReader<'a> {
    conn: &'a mut UnixStream,
    frame: Vec<u8>,
    /// Bytes of `frame` already read.
    offset: usize,
    ended: bool,
    /// The first error of the connection or of the framing. It ends the
    /// stream, and `receive_context` returns it ahead of the tar error it
    /// causes.
    error: Option<Error>,
}

impl io::Read for ContextReader<'_> {
    fn read(&mut self, buffer: &mut [u8]) -> io::Result<usize> {
        while self.offset == self.frame.len() {
            if self.ended {
                return Ok(0);
            }
            if self.error.is_some() {
                return Err(io::Error::other("receiving the build context failed"));
            }
            match proto::read_frame(self.conn) {
                Ok(frame) if frame.kind == Kind::Data => {
                    self.frame = frame.payload;
                    self.offset = 0;
                }
                Ok(frame) if frame.kind == Kind::Eof => self.ended = true,
                Ok(frame) => {
                    self.error = Some(Error::Invalid(format!(
                        "unexpected {:?} frame while receiving the build context",
                        frame.kind
                    )))
                }
                Err(err) => self.error = Some(err.into()),
            }
        }
        let count = buffer.len().min(self.frame.len() - self.offset);
        buffer[..count].copy_from_slice(&self.frame[self.offset..self.offset + count]);
        self.offset += count;
        Ok(count)
    }
}
