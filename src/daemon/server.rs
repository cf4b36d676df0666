//! Connections: authorization, request dispatch, console proxying, and the
//! watch threads that notice instance exits.

use std::io::{self, Write};
use std::os::unix::net::{UnixListener, UnixStream};
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, MutexGuard};
use std::thread;
use std::time::Duration;

use super::instances::{connect_supervisor, supervisor_response, Instance};
use super::protocol::{
    self as proto, InstanceInfo, Kind, ProtocolError, Request, Response, TestProcessRequest,
    WindowSize,
};
use super::{probes, Daemon, Error, CONSOLE_LOG_MAX};
use crate::console::{
    now_secs, InstanceConfig, PayloadSpec, SupervisorRequest, SupervisorResponse,
};
use crate::platform::peer::{peer_credentials, PeerCredentials};
use crate::{log_debug, log_error, log_info, log_warn};

/// How long a new connection may take to send its request.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(30);
/// Stack size of the watch threads, which only wait on one socket.
const WATCH_STACK: usize = 64 * 1024;
/// The signal `instances --stop` sends when the instance names none.
const DEFAULT_STOP_SIGNAL: i32 = libc::SIGTERM;
/// How long a stop or prune waits for the cleanup after an exit.
const CLEANUP_WAIT: Duration = Duration::from_secs(30);

fn watched(daemon: &Daemon) -> MutexGuard<'_, std::collections::HashSet<String>> {
    daemon.watched.lock().unwrap_or_else(|e| e.into_inner())
}

/// Accepts connections forever, one named thread each.
pub fn accept_loop(daemon: &Arc<Daemon>, listener: UnixListener) {
    static NEXT: AtomicU64 = AtomicU64::new(1);
    for conn in listener.incoming() {
        let conn = match conn {
            Ok(conn) => conn,
            Err(err) => {
                log_error!(None, "accept failed: {err}; retrying");
                thread::sleep(Duration::from_millis(100));
                continue;
            }
        };
        let number = NEXT.fetch_add(1, Ordering::Relaxed);
        let daemon = daemon.clone();
        let spawned = thread::Builder::new()
            .name(format!("conn-{number}"))
            .spawn(move || {
                // A panic ends this connection only; the daemon keeps serving.
                let result = catch_unwind(AssertUnwindSafe(|| serve(&daemon, conn, number)));
                if result.is_err() {
                    log_error!(None, "connection {number} panicked; closed it");
                }
            });
        if let Err(err) = spawned {
            log_error!(
                None,
                "failed to start a thread for connection {number}: {err}"
            );
        }
    }
}

fn authorized(daemon: &Daemon, cred: &PeerCredentials) -> bool {
    if cred.uid == 0 {
        return true;
    }
    let Some(gid) = daemon.sock_owner_gid else {
        return false;
    };
    if cred.gid == gid {
        return true;
    }
    // Supplementary groups come from the group database: the peer is a
    // member if its user name is listed in the group.
    let user = nix::unistd::User::from_uid(nix::unistd::Uid::from_raw(cred.uid));
    let group = nix::unistd::Group::from_gid(nix::unistd::Gid::from_raw(gid));
    match (user, group) {
        (Ok(Some(user)), Ok(Some(group))) => group.mem.contains(&user.name),
        _ => false,
    }
}

fn serve(daemon: &Arc<Daemon>, mut conn: UnixStream, number: u64) {
    let cred = match peer_credentials(&conn) {
        Ok(cred) => cred,
        Err(err) => {
            log_error!(
                None,
                "connection {number}: reading peer credentials failed: {err}"
            );
            return;
        }
    };
    if !authorized(daemon, &cred) {
        log_warn!(
            None,
            "connection {number} from uid {} gid {} pid {:?} rejected: permission denied",
            cred.uid,
            cred.gid,
            cred.pid
        );
        let _ = proto::write_error(
            &mut conn,
            "permission denied: only root and members of cblockd's --sock-owner group may use cblockd",
        );
        return;
    }

    let _ = conn.set_read_timeout(Some(REQUEST_TIMEOUT));
    let request: Request = match proto::read_json(&mut conn, Kind::Request) {
        Ok(request) => request,
        Err(ProtocolError::Closed) => return,
        Err(err) => {
            log_warn!(
                None,
                "connection {number} (uid {}): bad request: {err}",
                cred.uid
            );
            let _ = proto::write_error(&mut conn, &err.to_string());
            return;
        }
    };
    let _ = conn.set_read_timeout(None);
    log_debug!(None, "connection {number} (uid {}): {request:?}", cred.uid);

    if let Err(err) = request.validate() {
        log_warn!(None, "connection {number} (uid {}): {err}", cred.uid);
        let _ = proto::write_error(&mut conn, &err.to_string());
        return;
    }
    if let Err(err) = dispatch(daemon, &mut conn, request) {
        log_warn!(None, "connection {number} (uid {}): {err}", cred.uid);
        let _ = proto::write_error(&mut conn, &err.to_string());
    }
}

fn respond(conn: &mut UnixStream, response: &Response) -> Result<(), Error> {
    proto::write_json(conn, Kind::Response, response).map_err(Error::from)
}

fn dispatch(daemon: &Arc<Daemon>, conn: &mut UnixStream, request: Request) -> Result<(), Error> {
    match request {
        Request::Ping => respond(
            conn,
            &Response::Pong {
                version: proto::VERSION,
            },
        ),
        Request::Launch(launch) => {
            let id = super::launch::launch(daemon, &launch)?;
            probes::create(&id);
            if let Some(instance) = daemon.store.load(&id) {
                watch(daemon, instance);
            }
            respond(conn, &Response::Launched { id: id.clone() })?;
            if launch.attach {
                attach(daemon, conn, &id, launch.window, true, true)?;
            }
            Ok(())
        }
        Request::Build(build) => {
            let id = match super::build::start(daemon, conn, &build)? {
                super::build::Started::Instance(id) => id,
                super::build::Started::Cached(output) => {
                    respond(conn, &Response::Streaming)?;
                    for chunk in output.chunks(proto::MAX_CHUNK) {
                        proto::write_frame(conn, Kind::Output, chunk)?;
                    }
                    return Ok(proto::write_frame(conn, Kind::Exit, &0i32.to_be_bytes())?);
                }
            };
            probes::create(&id);
            if let Some(instance) = daemon.store.load(&id) {
                watch(daemon, instance);
            }
            respond(conn, &Response::Launched { id: id.clone() })?;
            if build.attach {
                attach(daemon, conn, &id, build.window, true, true)?;
            }
            Ok(())
        }
        Request::TestProcess(spawn) => {
            let id = start_test_process(daemon, spawn)?;
            respond(conn, &Response::Launched { id })
        }
        Request::TestPanic => {
            require_test_mode(daemon)?;
            panic!("panic requested by a test client");
        }
        Request::Attach { id, window, replay } => attach(daemon, conn, &id, window, replay, false),
        Request::List { all } => {
            let instances: Vec<InstanceInfo> = daemon
                .store
                .all()?
                .iter()
                .filter(|i| all || matches!(i.state_name(), "running" | "created"))
                .map(Instance::info)
                .collect();
            respond(conn, &Response::Instances { instances })
        }
        Request::Stop {
            id,
            signal,
            timeout_secs,
        } => {
            let instance = daemon.store.resolve(&id)?;
            let signal = signal.unwrap_or(instance.config.stop_signal);
            stop(daemon, conn, &instance, signal, timeout_secs)
        }
        Request::Kill { id } => {
            let instance = daemon.store.resolve(&id)?;
            stop(daemon, conn, &instance, libc::SIGKILL, 0)
        }
        Request::Prune => {
            let ids = prune(daemon)?;
            respond(conn, &Response::Pruned { ids })
        }
        Request::Logs { id, follow } => logs(daemon, conn, &id, follow),
        Request::Exec {
            id,
            argv,
            tty,
            env,
            window,
        } => {
            let instance = daemon.store.resolve(&id)?;
            require_running(&instance)?;
            super::exec::run(conn, &instance, argv, env, tty, window)
        }
    }
}

fn require_running(instance: &Instance) -> Result<(), Error> {
    match (instance.exit, instance.supervisor_alive()) {
        (Some(exit), _) => Err(Error::Invalid(format!(
            "instance {} has exited with status {}; its output is in `cblock logs {}`",
            instance.config.id, exit.status, instance.config.id
        ))),
        (None, false) => Err(Error::Invalid(format!(
            "instance {} has no live supervisor (it was lost, for example in a reboot); \
             remove it with `cblock instances --prune`",
            instance.config.id
        ))),
        (None, true) => Ok(()),
    }
}

fn require_test_mode(daemon: &Daemon) -> Result<(), Error> {
    if daemon.test_processes {
        return Ok(());
    }
    Err(Error::Invalid(
        "test processes are disabled; they exist for the test suite and need cblockd \
         --enable-test-processes"
            .into(),
    ))
}

fn start_test_process(daemon: &Arc<Daemon>, spawn: TestProcessRequest) -> Result<String, Error> {
    require_test_mode(daemon)?;
    if let Some(name) = &spawn.name {
        if let Some(other) = daemon.store.find_name(name)? {
            return Err(Error::Invalid(format!(
                "name {name:?} is in use by instance {other}; choose another name"
            )));
        }
    }

    let (id, dir) = daemon.store.allocate()?;
    let config = InstanceConfig {
        id: id.clone(),
        name: spawn.name,
        image: "(process)".into(),
        kind: "assembled".into(),
        created: now_secs(),
        payload: PayloadSpec::Process {
            argv: spawn.argv,
            env: spawn.env,
            cwd: "/".into(),
        },
        scrollback_bytes: daemon.tty_buffer,
        log_max_bytes: CONSOLE_LOG_MAX,
        remove: spawn.remove,
        stop_signal: DEFAULT_STOP_SIGNAL,
        window: spawn.window,
        start: spawn.start,
    };

    let started = super::instances::start_instance(&daemon.exe, &dir, &config);
    if let Err(err) = started {
        log_error!(Some(&id), "failed to create the instance: {err}");
        if let Err(cleanup) = daemon.store.remove(&id) {
            log_error!(Some(&id), "failed to remove the failed instance: {cleanup}");
        }
        return Err(err);
    }

    probes::create(&id);
    log_info!(Some(&id), "created test process instance");
    if let Some(instance) = daemon.store.load(&id) {
        watch(daemon, instance);
    }
    Ok(id)
}

/// Connects the client's console to the supervisor and copies frames both
/// ways until either side closes.
fn attach(
    daemon: &Arc<Daemon>,
    conn: &mut UnixStream,
    key: &str,
    window: WindowSize,
    replay: bool,
    started_now: bool,
) -> Result<(), Error> {
    let instance = daemon.store.resolve(key)?;
    if let Err(err) = require_running(&instance) {
        // A launch or build that ended in the moment before its client's
        // attach still gives that client its output and exit status.
        if started_now && instance.exit.is_some() {
            return attach_ended(conn, &instance, replay);
        }
        return Err(err);
    }
    let id = instance.config.id.clone();

    let connected = connect_supervisor(&instance, &SupervisorRequest::Attach { window, replay })
        .and_then(|mut supervisor| {
            supervisor_response(&instance, &mut supervisor).map(|response| (supervisor, response))
        });
    let supervisor = match connected {
        Ok((supervisor, SupervisorResponse::Ok)) => supervisor,
        Ok((_, other)) => {
            return Err(Error::Supervisor(format!(
                "instance {id}: unexpected supervisor response {other:?}"
            )))
        }
        Err(err) => {
            // The supervisor leaves once the payload's exit is recorded,
            // which can fall between the check above and the connection.
            return match daemon.store.load(&id).filter(|ended| ended.exit.is_some()) {
                Some(ended) => attach_ended(conn, &ended, replay),
                None => Err(err),
            };
        }
    };
    respond(conn, &Response::Attached { id: id.clone() })?;

    probes::console_attach(&id);
    log_info!(Some(&id), "console attached");
    // The supervisor may also leave after accepting this console but before
    // serving it; the client then gets the rest from the instance's files.
    let ending_daemon = daemon.clone();
    let ending_id = id.clone();
    let ending: Ending = Box::new(move |forwarded| {
        match ending_daemon
            .store
            .load(&ending_id)
            .filter(|ended| ended.exit.is_some())
        {
            Some(ended) => ended_frames(&ended, replay && !forwarded).unwrap_or_default(),
            None => Vec::new(),
        }
    });
    let result = proxy(
        conn,
        supervisor,
        &id,
        |kind| matches!(kind, Kind::Stdin | Kind::Resize | Kind::Eof),
        Some(ending),
    );
    probes::console_detach(&id);
    log_info!(Some(&id), "console detached");
    result
}

/// Serves a console for an instance whose payload has ended: the console
/// log when `replay` is set, then the exit status, as the supervisor
/// sends them to a console that stays until the end.
fn attach_ended(conn: &mut UnixStream, instance: &Instance, replay: bool) -> Result<(), Error> {
    let id = &instance.config.id;
    let frames = ended_frames(instance, replay)?;
    respond(conn, &Response::Attached { id: id.clone() })?;
    conn.write_all(&frames)
        .map_err(io_context("send the console log and exit status"))?;
    log_info!(
        Some(id),
        "console attached after the exit; sent the log and status"
    );
    Ok(())
}

/// Encodes the frames of an ended instance's console: its log when
/// `replay` is set, then its exit status.
fn ended_frames(instance: &Instance, replay: bool) -> Result<Vec<u8>, Error> {
    let mut frames = Vec::new();
    if replay {
        let contents = crate::console::read_log(&instance.dir).map_err(|source| Error::Io {
            context: format!("read the console log of instance {}", instance.config.id),
            source,
        })?;
        for chunk in contents.chunks(proto::MAX_CHUNK) {
            proto::encode(Kind::Output, chunk, &mut frames);
        }
    }
    let status = instance.exit.map_or(0, |exit| exit.status);
    proto::encode(Kind::Exit, &status.to_be_bytes(), &mut frames);
    Ok(frames)
}

/// Builds the frames a client still needs when the supervisor's stream
/// ends without an exit status; gets whether any frame reached the client.
type Ending = Box<dyn FnOnce(bool) -> Vec<u8> + Send>;

/// Copies frames from `upstream` to the client in a thread, and the
/// client's frames of the kinds `allowed` accepts to `upstream` in this
/// thread. A client frame of another kind ends the session. Only the
/// output thread writes to the client.
fn proxy(
    conn: &mut UnixStream,
    upstream: UnixStream,
    id: &str,
    allowed: impl Fn(Kind) -> bool,
    ending: Option<Ending>,
) -> Result<(), Error> {
    let mut to_client = conn
        .try_clone()
        .map_err(io_context("clone the client socket"))?;
    let mut from_upstream = upstream
        .try_clone()
        .map_err(io_context("clone the supervisor socket"))?;
    let output = thread::Builder::new()
        .name(format!("proxy-{id}"))
        .spawn(move || {
            let mut forwarded = false;
            let mut complete = false;
            while let Ok(frame) = proto::read_frame(&mut from_upstream) {
                let mut buf = Vec::with_capacity(proto::HEADER_LEN + frame.payload.len());
                proto::encode(frame.kind, &frame.payload, &mut buf);
                if to_client.write_all(&buf).is_err() {
                    complete = true;
                    break;
                }
                forwarded = true;
                if frame.kind == Kind::Exit {
                    complete = true;
                    break;
                }
            }
            if let Some(ending) = ending.filter(|_| !complete) {
                let _ = to_client.write_all(&ending(forwarded));
            }
            let _ = to_client.shutdown(std::net::Shutdown::Both);
            let _ = from_upstream.shutdown(std::net::Shutdown::Both);
        })
        .map_err(io_context("start the proxy thread"))?;

    let mut upstream = upstream;
    let result = loop {
        match proto::read_frame(conn) {
            Ok(frame) if allowed(frame.kind) => {
                let mut buf = Vec::with_capacity(proto::HEADER_LEN + frame.payload.len());
                proto::encode(frame.kind, &frame.payload, &mut buf);
                if upstream.write_all(&buf).is_err() {
                    break Ok(());
                }
            }
            Ok(frame) => {
                log_warn!(
                    Some(id),
                    "client sent a {:?} frame during a session; closing it",
                    frame.kind
                );
                break Ok(());
            }
            Err(ProtocolError::Closed) => break Ok(()),
            Err(ProtocolError::Io(err)) if is_disconnect(&err) => break Ok(()),
            Err(err) => {
                log_warn!(
                    Some(id),
                    "bad frame from a client: {err}; closing the session"
                );
                break Ok(());
            }
        }
    };
    // The output thread finishes first: it may still owe the client the
    // exit status (see `Ending`), and closes the client's side itself.
    let _ = upstream.shutdown(std::net::Shutdown::Both);
    let _ = output.join();
    let _ = conn.shutdown(std::net::Shutdown::Both);
    result
}

fn is_disconnect(err: &io::Error) -> bool {
    matches!(
        err.kind(),
        io::ErrorKind::ConnectionReset
            | io::ErrorKind::BrokenPipe
            | io::ErrorKind::UnexpectedEof
            | io::ErrorKind::NotConnected
    )
}

fn io_context(context: &'static str) -> impl FnOnce(io::Error) -> Error {
    move |source| Error::Io {
        context: context.into(),
        source,
    }
}

fn stop(
    daemon: &Daemon,
    conn: &mut UnixStream,
    instance: &Instance,
    signal: i32,
    timeout_secs: u64,
) -> Result<(), Error> {
    let id = &instance.config.id;
    if let Some(exit) = instance.exit {
        return respond(
            conn,
            &Response::Stopped {
                id: id.clone(),
                status: exit.status,
            },
        );
    }
    require_running(instance)?;
    log_info!(
        Some(id),
        "stopping with signal {signal}, SIGKILL after {timeout_secs} s"
    );
    let mut supervisor = connect_supervisor(
        instance,
        &SupervisorRequest::Stop {
            signal,
            timeout_secs,
        },
    )?;
    match supervisor_response(instance, &mut supervisor)? {
        SupervisorResponse::Stopped { status } => {
            // Respond once the root file system is released, so that the
            // caller may remove or prune the instance right away.
            if !wait_cleanup(daemon, id) {
                log_warn!(Some(id), "stopped, but its cleanup is still running");
            }
            respond(
                conn,
                &Response::Stopped {
                    id: id.clone(),
                    status,
                },
            )
        }
        other => Err(Error::Supervisor(format!(
            "instance {id}: unexpected supervisor response {other:?}"
        ))),
    }
}

/// Waits up to `CLEANUP_WAIT` for the cleanup after the exit of `id` to
/// finish; returns whether it did.
fn wait_cleanup(daemon: &Daemon, id: &str) -> bool {
    let deadline = std::time::Instant::now() + CLEANUP_WAIT;
    let mut set = watched(daemon);
    while set.contains(id) {
        let left = deadline.saturating_duration_since(std::time::Instant::now());
        if left.is_zero() {
            return false;
        }
        set = daemon
            .watch_done
            .wait_timeout(set, left)
            .unwrap_or_else(|e| e.into_inner())
            .0;
    }
    true
}

/// Removes every instance that has exited or lost its supervisor, once
/// the cleanup after its exit has finished.
fn prune(daemon: &Daemon) -> Result<Vec<String>, Error> {
    let mut removed = Vec::new();
    for instance in daemon.store.all()? {
        if matches!(instance.state_name(), "running" | "created") {
            continue;
        }
        if !wait_cleanup(daemon, &instance.config.id) {
            log_warn!(
                Some(&instance.config.id),
                "not pruned: its cleanup is still running"
            );
            continue;
        }
        let id = instance.config.id.clone();
        if let Err(err) = release_container(daemon, &instance.config) {
            log_error!(Some(&id), "failed to prune: {err}");
            continue;
        }
        match daemon.store.remove(&id) {
            Ok(()) => {
                log_info!(Some(&id), "pruned");
                removed.push(id);
            }
            Err(err) => log_error!(Some(&id), "failed to prune: {err}"),
        }
    }
    Ok(removed)
}

fn logs(daemon: &Arc<Daemon>, conn: &mut UnixStream, key: &str, follow: bool) -> Result<(), Error> {
    let instance = daemon.store.resolve(key)?;
    if follow && instance.supervisor_alive() {
        let mut supervisor = connect_supervisor(&instance, &SupervisorRequest::Follow)?;
        supervisor_response(&instance, &mut supervisor)?;
        respond(conn, &Response::Streaming)?;
        return proxy(conn, supervisor, &instance.config.id, |_| false, None);
    }

    let contents = crate::console::read_log(&instance.dir).map_err(|source| Error::Io {
        context: format!("read the console log of instance {}", instance.config.id),
        source,
    })?;
    respond(conn, &Response::Streaming)?;
    for chunk in contents.chunks(proto::MAX_CHUNK) {
        proto::write_frame(conn, Kind::Output, chunk)?;
    }
    let status = instance.exit.map_or(0, |exit| exit.status);
    proto::write_frame(conn, Kind::Exit, &status.to_be_bytes())?;
    Ok(())
}

/// Finds the instances that survived a restart of cblockd: starts a watch
/// thread for each one whose supervisor is alive, and cleans up those that
/// exited while no daemon was running.
pub fn recover(daemon: &Arc<Daemon>) {
    let instances = match daemon.store.all() {
        Ok(instances) => instances,
        Err(err) => {
            log_error!(None, "failed to scan instances at startup: {err}");
            return;
        }
    };
    let mut running = 0;
    for instance in instances {
        let id = instance.config.id.clone();
        match instance.state_name() {
            "running" | "created" => {
                running += 1;
                watch(daemon, instance);
            }
            "exited" if !instance.dir.join(CLEANED_FILE).exists() => {
                let status = instance.exit.map_or(0, |e| e.status);
                cleanup(daemon, &instance.config, status);
            }
            "lost" => log_warn!(
                Some(&id),
                "supervisor is gone and no exit status was recorded; `cblock instances --prune` removes it"
            ),
            _ => {}
        }
    }
    log_info!(None, "found {running} running instances");
}

/// Starts the thread that waits for the exit of `instance`, unless one
/// is running.
fn watch(daemon: &Arc<Daemon>, instance: Instance) {
    let id = instance.config.id.clone();
    if !watched(daemon).insert(id.clone()) {
        return;
    }
    let thread_daemon = daemon.clone();
    let spawned = thread::Builder::new()
        .name(format!("watch-{id}"))
        .stack_size(WATCH_STACK)
        .spawn(move || {
            let status = wait_exit(&instance);
            let id = instance.config.id.clone();
            match status {
                Some(status) => cleanup(&thread_daemon, &instance.config, status),
                None => log_error!(
                    Some(&id),
                    "supervisor ended without recording an exit status; the instance is lost"
                ),
            }
            watched(&thread_daemon).remove(&id);
            thread_daemon.watch_done.notify_all();
        });
    if let Err(err) = spawned {
        log_error!(Some(&id), "failed to start the watch thread: {err}");
        watched(daemon).remove(&id);
    }
}

fn wait_exit(instance: &Instance) -> Option<i32> {
    let id = &instance.config.id;
    let from_disk = || {
        crate::console::read_json::<crate::console::ExitRecord>(
            &instance.dir,
            crate::console::EXIT_FILE,
        )
        .ok()
        .flatten()
        .map(|e| e.status)
    };
    let mut stream = match connect_supervisor(instance, &SupervisorRequest::Watch) {
        Ok(stream) => stream,
        Err(err) => {
            log_warn!(Some(id), "cannot watch: {err}");
            return from_disk();
        }
    };
    if supervisor_response(instance, &mut stream).is_err() {
        return from_disk();
    }
    loop {
        match proto::read_frame(&mut stream) {
            Ok(frame) if frame.kind == Kind::Exit => return proto::parse_exit(&frame.payload),
            Ok(_) => {}
            Err(_) => return from_disk(),
        }
    }
}

/// Marker file of an instance whose cleanup has run.
const CLEANED_FILE: &str = "cleaned";

/// Runs after an instance's payload ended: fires the probes, releases the
/// container's root file system and removes the instance when it was
/// launched with `--rm`. Its status is what `cblock_cleanup` reports: 0
/// when every step succeeded, else 1.
fn cleanup(daemon: &Daemon, config: &InstanceConfig, status: i32) {
    let id = config.id.as_str();
    probes::destroy(id, status);
    log_info!(Some(id), "exited with status {status}");

    let mut failed = false;
    if matches!(config.payload, PayloadSpec::Container { .. }) {
        // The writable layer is kept until the instance is removed.
        let mount_id = super::launch::mount_id(id);
        let released = if config.remove {
            daemon.images.remove_mount(&mount_id)
        } else {
            daemon.images.unmount(&mount_id)
        };
        if let Err(err) = released {
            failed = true;
            log_error!(Some(id), "failed to release the root file system: {err}");
        }
    }
    if config.remove {
        match daemon.store.remove(id) {
            Ok(()) => log_info!(Some(id), "removed (--rm)"),
            Err(err) => {
                failed = true;
                log_error!(Some(id), "failed to remove: {err}");
            }
        }
    } else if let Err(err) = std::fs::write(daemon.store.dir(id).join(CLEANED_FILE), b"") {
        log_error!(Some(id), "failed to mark the cleanup as done: {err}");
    }
    // The original's cleanup types: `build` for build jobs, `regular` for
    // launched containers.
    let kind = if config.kind == "building" {
        "build"
    } else {
        "regular"
    };
    probes::cleanup(id, i32::from(failed), kind);
}

/// Removes what remains of a stopped instance: its container, if the
/// runtime still has it, and its root file system.
fn release_container(daemon: &Daemon, config: &InstanceConfig) -> Result<(), Error> {
    let PayloadSpec::Container {
        runtime_root,
        container_id,
        ..
    } = &config.payload
    else {
        return Ok(());
    };
    if let Ok(container) = crate::runtime::Container::load(runtime_root, container_id) {
        container.delete(true)?;
    }
    // A launch that failed early may have made no mount.
    let mount_id = super::launch::mount_id(&config.id);
    if daemon.images.mount_record(&mount_id).is_ok() {
        daemon.images.remove_mount(&mount_id)?;
    }
    Ok(())
}
