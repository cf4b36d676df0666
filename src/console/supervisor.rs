//! The supervisor process: PTY, scrollback, console log, attach socket and
//! exit record of one instance.
//!
//! Threads: the main thread accepts connections, and `pty-output` copies
//! the PTY master to the log, the scrollback and every attached console.
//! `payload-wait` waits for the payload and records its exit. Each
//! connection has a reader thread and, for streams, a writer thread that
//! drains a bounded queue, so one slow console never stalls the others: a
//! console whose queue is full is disconnected.
//!
//! Lock order: `phase`, then `log`, then `inner`. Sockets are written with
//! no lock held, except the short OK response of a new subscription (see
//! `subscribe`). `log` is held while writing the console log file, so that
//! a `Follow` request finds each chunk either in the file or in its queue,
//! never both and never neither.

use std::fs::File;
use std::io::{self, Read, Write};
use std::os::fd::{AsRawFd, FromRawFd};
use std::os::unix::fs::PermissionsExt;
use std::os::unix::net::{UnixListener, UnixStream};
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::atomic::{AtomicU64, AtomicU8, Ordering};
use std::sync::mpsc::{self, Receiver, SyncSender, TrySendError};
use std::sync::{Arc, Condvar, Mutex, MutexGuard, OnceLock};
use std::thread;
use std::time::{Duration, Instant};

use super::logfile::{read_log, ConsoleLog};
use super::payload::{self, Payload};
use super::ring::Ring;
use super::starter::{Launched, Starter};
use super::{
    now_secs, read_json, write_json_runtime, Error, ExitRecord, InstanceConfig, SupervisorRequest,
    SupervisorResponse, SupervisorState, CONFIG_FILE, EXIT_FILE, SOCKET_FILE, STATE_FILE,
    SUPERVISOR_LOG_FILE,
};
use crate::daemon::protocol::{self as proto, Kind};
use crate::{log_error, log_info, log_warn};

/// Chunks queued for one console before it counts as stuck and is
/// disconnected.
const QUEUE_CHUNKS: usize = 1024;
/// How long to wait for the last output after the payload exits, for
/// output still in the PTY or a descendant holding the terminal open.
const DRAIN_WAIT: Duration = Duration::from_secs(2);
/// How long to let consoles receive the exit status before leaving.
const WRITER_WAIT: Duration = Duration::from_secs(5);
/// How long to wait for the exit after SIGKILL.
const KILL_WAIT: Duration = Duration::from_secs(30);
/// The VEOF character in the PTY's default settings (Ctrl+D).
const VEOF: u8 = 0x04;

/// Something a console's writer thread sends.
enum Event {
    Output(Arc<[u8]>),
}

struct Subscriber {
    id: u64,
    /// False for `Watch` connections, which want only the exit status.
    output: bool,
    tx: SyncSender<Event>,
}

struct Inner {
    ring: Ring,
    subscribers: Vec<Subscriber>,
    pid: Option<i32>,
    exit: Option<i32>,
    output_done: bool,
    writers: usize,
}

/// The life-cycle phase of the payload.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Phase {
    /// Waiting for the first attach or a start request.
    Held,
    Started,
    /// Ended, or stopped before it started.
    Ended,
}

struct Shared {
    dir: PathBuf,
    config: InstanceConfig,
    payload: Box<dyn Payload>,
    /// The process that starts the payload, until it did.
    starter: Mutex<Option<Starter>>,
    /// The master side of the payload's terminal, once it started.
    master: OnceLock<File>,
    phase: Mutex<Phase>,
    /// The window size the payload starts with: the last one a console sent.
    window: Mutex<crate::daemon::protocol::WindowSize>,
    log: Mutex<ConsoleLog>,
    inner: Mutex<Inner>,
    changed: Condvar,
    last_input: AtomicU8,
    next_client: AtomicU64,
    /// The pipe to report readiness to cblockd on, until reported.
    ready: Mutex<Option<File>>,
}

fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    mutex
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner())
}

/// Runs the supervisor role (`cblock _supervisor [--ready-fd N] DIR`).
///
/// cblockd passes the write end of a pipe as `--ready-fd`. The supervisor
/// writes `ok` there once its socket is listening (and a payload to start
/// at once runs), or `error: ...`, and closes it.
pub fn supervisor_main(args: &[String]) -> crate::Result<ExitCode> {
    let (ready_fd, dir) = match args {
        [flag, fd, dir] if flag == "--ready-fd" => {
            let fd: i32 = fd.parse().map_err(|_| Error::Usage)?;
            (Some(fd), dir)
        }
        [dir] => (None, dir),
        _ => return Err(Error::Usage.into()),
    };
    // SAFETY: cblockd opened this descriptor for us and nothing else in
    // this process owns it.
    let mut ready = ready_fd.map(|fd| unsafe { File::from_raw_fd(fd) });
    if let Some(file) = &ready {
        set_cloexec(file);
    }

    detach()?;
    // The supervisor inherits cblockd's blocked signals; it wants the
    // defaults (SIGTERM ends it) and an ignored SIGPIPE for vanished consoles.
    super::payload::reset_signals().map_err(|err| Error::io("reset signal handling", err))?;
    // The payload's processes come back to the supervisor as its children
    // when the starter that started them exits.
    crate::runtime::become_subreaper()
        .map_err(|err| Error::io("become a subreaper", io::Error::other(err.to_string())))?;
    // SAFETY: setting a signal to SIG_IGN installs no handler code.
    unsafe { libc::signal(libc::SIGPIPE, libc::SIG_IGN) };

    let dir = PathBuf::from(dir);
    match setup(&dir) {
        Ok((shared, listener)) => {
            *lock(&shared.ready) = ready.take();
            serve(shared, listener);
            Ok(ExitCode::SUCCESS)
        }
        Err(err) => {
            log_error!(
                None,
                "supervisor of {} failed to start: {err}",
                dir.display()
            );
            if let Some(mut file) = ready.take() {
                drop(writeln!(file, "error: {err}"));
            }
            Ok(ExitCode::FAILURE)
        }
    }
}

fn set_cloexec(file: &File) {
    // SAFETY: plain fcntl on a descriptor this process owns.
    unsafe { libc::fcntl(file.as_raw_fd(), libc::F_SETFD, libc::FD_CLOEXEC) };
}

/// Leaves cblockd's process tree and session: fork, setsid, fork again, so
/// the supervisor is no session leader and never gains a controlling
/// terminal by opening the PTY. The first two processes exit at once.
fn detach() -> crate::Result<()> {
    use nix::unistd::{fork, setsid, ForkResult};

    for step in 0..2 {
        // SAFETY: the supervisor has not started any thread yet, so the
        // child is a complete copy of a single-threaded process.
        match unsafe { fork() } {
            Ok(ForkResult::Parent { .. }) => std::process::exit(0),
            Ok(ForkResult::Child) => {}
            Err(err) => return Err(Error::io("fork the supervisor", err.into()).into()),
        }
        if step == 0 {
            setsid().map_err(|err| Error::io("start a new session", err.into()))?;
        }
    }
    std::env::set_current_dir("/").map_err(|err| Error::io("change to /", err))?;
    Ok(())
}

fn setup(dir: &Path) -> crate::Result<(Arc<Shared>, UnixListener)> {
    crate::daemon::log::init(Some(&dir.join(SUPERVISOR_LOG_FILE)), false)
        .map_err(|err| Error::io(format!("open the log in {}", dir.display()), err))?;

    let config: InstanceConfig = read_json(dir, CONFIG_FILE)
        .map_err(|err| Error::io(format!("read {}/{CONFIG_FILE}", dir.display()), err))?
        .ok_or_else(|| {
            Error::io(
                format!("read {}/{CONFIG_FILE}", dir.display()),
                io::ErrorKind::NotFound.into(),
            )
        })?;

    let log = ConsoleLog::open(dir, config.log_max_bytes)
        .map_err(|err| Error::io(format!("open the console log in {}", dir.display()), err))?;

    let socket = dir.join(SOCKET_FILE);
    let _ = std::fs::remove_file(&socket);
    let listener = UnixListener::bind(&socket)
        .map_err(|err| Error::io(format!("listen on {}", socket.display()), err))?;
    std::fs::set_permissions(&socket, std::fs::Permissions::from_mode(0o600))
        .map_err(|err| Error::io(format!("restrict {}", socket.display()), err))?;

    // Forked now, while this process has no other thread.
    let payload = payload::from_spec(&config.payload);
    let starter =
        Starter::spawn(&*payload).map_err(|err| Error::io("fork the payload starter", err))?;
    let shared = Arc::new(Shared {
        dir: dir.to_path_buf(),
        payload,
        starter: Mutex::new(Some(starter)),
        inner: Mutex::new(Inner {
            ring: Ring::new(config.scrollback_bytes),
            subscribers: Vec::new(),
            pid: None,
            exit: None,
            output_done: false,
            writers: 0,
        }),
        window: Mutex::new(config.window),
        config,
        master: OnceLock::new(),
        phase: Mutex::new(Phase::Held),
        log: Mutex::new(log),
        changed: Condvar::new(),
        last_input: AtomicU8::new(b'\n'),
        next_client: AtomicU64::new(1),
        ready: Mutex::new(None),
    });
    write_state(&shared, None, None, "")
        .map_err(|err| Error::io(format!("write {}/{STATE_FILE}", dir.display()), err))?;
    log_info!(Some(&shared.config.id), "supervisor started");
    Ok((shared, listener))
}

fn write_state(
    shared: &Shared,
    pid: Option<i32>,
    started: Option<u64>,
    tty: &str,
) -> io::Result<()> {
    let state = SupervisorState {
        supervisor_pid: std::process::id() as i32,
        pid,
        tty: tty.to_string(),
        started,
    };
    write_json_runtime(&shared.dir, STATE_FILE, &state)
}

fn id(shared: &Shared) -> Option<&str> {
    Some(&shared.config.id)
}

/// Starts the payload when `config.start` is set, reports readiness and
/// accepts connections. A payload started here has its pid and terminal
/// recorded before cblockd learns that the instance is ready.
fn serve(shared: Arc<Shared>, listener: UnixListener) {
    if shared.config.start {
        start(&shared);
    }
    if let Some(mut file) = lock(&shared.ready).take() {
        drop(file.write_all(b"ok\n"));
    }

    for conn in listener.incoming() {
        let conn = match conn {
            Ok(conn) => conn,
            Err(err) => {
                log_warn!(id(&shared), "accept on the console socket failed: {err}");
                thread::sleep(Duration::from_millis(100));
                continue;
            }
        };
        let number = shared.next_client.fetch_add(1, Ordering::Relaxed);
        let shared = shared.clone();
        let spawned = thread::Builder::new()
            .name(format!("client-{number}"))
            .spawn(move || {
                if let Err(err) = handle(&shared, conn, number) {
                    log_warn!(id(&shared), "console client {number}: {err}");
                }
            });
        if let Err(err) = spawned {
            log_error!(None, "failed to start a client thread: {err}");
        }
    }
}

/// Copies PTY output to the log, the scrollback and the subscribers until
/// the last process with the PTY slave open has closed it.
fn copy_output(shared: &Shared, mut reader: File) {
    let mut buf = vec![0u8; 16 * 1024];
    let mut log_failed = false;
    loop {
        let n = match reader.read(&mut buf) {
            Ok(0) => break,
            Ok(n) => n,
            Err(err) if err.kind() == io::ErrorKind::Interrupted => continue,
            // EIO: the last process holding the slave closed it.
            Err(_) => break,
        };
        let chunk: Arc<[u8]> = Arc::from(&buf[..n]);

        let mut log = lock(&shared.log);
        if let Err(err) = log.write(&chunk) {
            if !log_failed {
                log_error!(
                    id(shared),
                    "writing the console log failed, output is kept in the scrollback only: {err}"
                );
                log_failed = true;
            }
        }
        let mut inner = lock(&shared.inner);
        inner.ring.push(&chunk);
        broadcast(shared, &mut inner, &chunk);
    }

    lock(&shared.inner).output_done = true;
    shared.changed.notify_all();
}

fn broadcast(shared: &Shared, inner: &mut Inner, chunk: &Arc<[u8]>) {
    inner.subscribers.retain(|sub| {
        if !sub.output {
            return true;
        }
        match sub.tx.try_send(Event::Output(chunk.clone())) {
            Ok(()) => true,
            Err(TrySendError::Full(_)) => {
                log_warn!(
                    id(shared),
                    "console client {} stopped reading, disconnecting it",
                    sub.id
                );
                false
            }
            Err(TrySendError::Disconnected(_)) => false,
        }
    });
}

/// Starts the payload if it has not started yet.
fn start(shared: &Arc<Shared>) {
    let mut phase = lock(&shared.phase);
    if *phase != Phase::Held {
        return;
    }
    let window = *lock(&shared.window);
    let starter = lock(&shared.starter).take();
    let started = match starter {
        Some(starter) => starter.start(window),
        None => Err(io::Error::other("the payload starter is gone")),
    };
    let started = started.and_then(|started| {
        let reader = File::from(started.master.try_clone()?);
        Ok((started, reader))
    });
    let (Launched { master, pid, tty }, reader) = match started {
        Ok(started) => started,
        Err(err) => {
            *phase = Phase::Ended;
            drop(phase);
            let message = format!("cblock: failed to start the payload: {err}\r\n");
            log_error!(id(shared), "failed to start the payload: {err}");
            if let Some(mut file) = lock(&shared.ready).take() {
                drop(writeln!(file, "error: failed to start the payload: {err}"));
            }
            emit(shared, message.as_bytes());
            finish(shared, 127);
            return;
        }
    };
    let _ = shared.master.set(File::from(master));
    *phase = Phase::Started;
    drop(phase);

    let started_at = now_secs();
    lock(&shared.inner).pid = Some(pid);
    if let Err(err) = write_state(shared, Some(pid), Some(started_at), &tty) {
        log_error!(id(shared), "failed to record the payload pid {pid}: {err}");
    }
    log_info!(id(shared), "payload started, pid {pid}, terminal {tty}");

    let output = shared.clone();
    let spawned = thread::Builder::new()
        .name("pty-output".into())
        .spawn(move || copy_output(&output, reader));
    if let Err(err) = spawned {
        log_error!(id(shared), "failed to start the output thread: {err}");
        lock(&shared.inner).output_done = true;
    }

    let waiter = shared.clone();
    let spawned = thread::Builder::new()
        .name("payload-wait".into())
        .spawn(move || wait_payload(&waiter, pid));
    if let Err(err) = spawned {
        log_error!(id(shared), "failed to start the wait thread: {err}");
    }
}

/// Appends text of the supervisor's own to the console, as if the payload
/// had printed it.
fn emit(shared: &Shared, text: &[u8]) {
    let chunk: Arc<[u8]> = Arc::from(text);
    let mut log = lock(&shared.log);
    drop(log.write(&chunk));
    let mut inner = lock(&shared.inner);
    inner.ring.push(&chunk);
    broadcast(shared, &mut inner, &chunk);
}

fn wait_payload(shared: &Arc<Shared>, pid: i32) {
    let code = shared.payload.wait(pid);
    *lock(&shared.phase) = Phase::Ended;

    let deadline = Instant::now() + DRAIN_WAIT;
    let mut inner = lock(&shared.inner);
    while !inner.output_done && Instant::now() < deadline {
        let left = deadline.saturating_duration_since(Instant::now());
        inner = shared
            .changed
            .wait_timeout(inner, left)
            .unwrap_or_else(|e| e.into_inner())
            .0;
    }
    drop(inner);

    finish(shared, code);
}

/// Records the exit status, lets every console receive it, removes the
/// socket and ends the supervisor.
fn finish(shared: &Shared, code: i32) {
    let record = ExitRecord {
        status: code,
        finished: now_secs(),
    };
    if let Err(err) = write_json_runtime(&shared.dir, EXIT_FILE, &record) {
        log_error!(id(shared), "failed to record exit status {code}: {err}");
    }
    log_info!(id(shared), "payload exited with status {code}");
    // A payload started with the supervisor can end before `serve` reports
    // readiness; cblockd must still learn that it started.
    if let Some(mut file) = lock(&shared.ready).take() {
        drop(file.write_all(b"ok\n"));
    }

    // Dropping the senders ends each writer thread once its queue is
    // drained; the writer then sends the exit status it finds here.
    let mut inner = lock(&shared.inner);
    inner.exit = Some(code);
    inner.subscribers.clear();
    shared.changed.notify_all();

    let deadline = Instant::now() + WRITER_WAIT;
    while inner.writers > 0 && Instant::now() < deadline {
        let left = deadline.saturating_duration_since(Instant::now());
        inner = shared
            .changed
            .wait_timeout(inner, left)
            .unwrap_or_else(|e| e.into_inner())
            .0;
    }
    drop(inner);

    let _ = std::fs::remove_file(shared.dir.join(SOCKET_FILE));
    log_info!(id(shared), "supervisor exiting");
    std::process::exit(0);
}

fn handle(
    shared: &Arc<Shared>,
    mut conn: UnixStream,
    number: u64,
) -> Result<(), proto::ProtocolError> {
    let request: SupervisorRequest = match proto::read_json(&mut conn, Kind::Request) {
        Ok(request) => request,
        Err(err) => {
            let _ = proto::write_error(&mut conn, &err.to_string());
            return Err(err);
        }
    };

    match request {
        SupervisorRequest::Attach { window, replay } => {
            attach(shared, conn, number, window, replay)
        }
        SupervisorRequest::Watch => {
            {
                let mut inner = lock(&shared.inner);
                subscribe(shared, &mut inner, &mut conn, number, false, Vec::new())?;
            }
            let result = wait_close(&mut conn);
            unsubscribe(shared, number);
            result
        }
        SupervisorRequest::Follow => follow(shared, conn, number),
        SupervisorRequest::Start => {
            start(shared);
            proto::write_json(&mut conn, Kind::Response, &SupervisorResponse::Ok)
        }
        SupervisorRequest::Stop {
            signal,
            timeout_secs,
        } => {
            // Counted as a writer so that `finish` waits for this response.
            let _writer = WriterGuard::new(shared);
            match stop(shared, signal, Duration::from_secs(timeout_secs)) {
                Some(status) => proto::write_json(
                    &mut conn,
                    Kind::Response,
                    &SupervisorResponse::Stopped { status },
                ),
                None => proto::write_error(
                    &mut conn,
                    "the payload did not exit after SIGKILL; check for a process in \
                     uninterruptible sleep",
                ),
            }
        }
    }
}

/// Serves a console: the scrollback (if `replay`), live output and the
/// exit status go out, input and resizes come in. Starts a held payload
/// after setting the console's window size.
fn attach(
    shared: &Arc<Shared>,
    mut conn: UnixStream,
    number: u64,
    window: crate::daemon::protocol::WindowSize,
    replay: bool,
) -> Result<(), proto::ProtocolError> {
    {
        let mut inner = lock(&shared.inner);
        let prelude = if replay {
            inner.ring.snapshot()
        } else {
            Vec::new()
        };
        subscribe(shared, &mut inner, &mut conn, number, true, prelude)?;
    }
    if window.rows > 0 && window.cols > 0 {
        resize(shared, window.rows, window.cols);
    }
    start(shared);

    log_info!(id(shared), "console client {number} attached");
    let result = pump_input(shared, &mut conn);
    unsubscribe(shared, number);
    log_info!(id(shared), "console client {number} detached");
    result
}

/// Serves `cblock logs -f`: the whole console log, then live output until
/// the exit.
fn follow(
    shared: &Arc<Shared>,
    mut conn: UnixStream,
    number: u64,
) -> Result<(), proto::ProtocolError> {
    {
        let log = lock(&shared.log);
        let contents = read_log(&shared.dir).unwrap_or_else(|err| {
            log_warn!(id(shared), "failed to read the console log: {err}");
            Vec::new()
        });
        let mut inner = lock(&shared.inner);
        subscribe(shared, &mut inner, &mut conn, number, true, contents)?;
        drop(log);
    }
    log_info!(id(shared), "log follower {number} attached");
    let result = wait_close(&mut conn);
    unsubscribe(shared, number);
    result
}

/// Registers a subscriber and starts its writer thread, which first sends
/// `prelude` and then the queued output. Called with `inner` locked, so no
/// chunk falls between the prelude and the queue. The OK response is
/// written here too: a small write to a fresh socket, which the kernel
/// buffer takes without blocking.
fn subscribe(
    shared: &Arc<Shared>,
    inner: &mut Inner,
    conn: &mut UnixStream,
    number: u64,
    output: bool,
    prelude: Vec<u8>,
) -> Result<(), proto::ProtocolError> {
    proto::write_json(conn, Kind::Response, &SupervisorResponse::Ok)?;
    let writer = conn.try_clone()?;
    let (tx, rx) = mpsc::sync_channel(QUEUE_CHUNKS);
    if inner.exit.is_none() {
        inner.subscribers.push(Subscriber {
            id: number,
            output,
            tx,
        });
    }
    inner.writers += 1;

    let shared_writer = shared.clone();
    let spawned = thread::Builder::new()
        .name(format!("client-{number}-out"))
        .spawn(move || write_events(&shared_writer, writer, rx, prelude));
    if let Err(err) = spawned {
        inner.writers -= 1;
        inner.subscribers.retain(|sub| sub.id != number);
        return Err(err.into());
    }
    Ok(())
}

/// Keeps the supervisor alive (see `finish`) while a response is pending.
struct WriterGuard<'a>(&'a Shared);

impl<'a> WriterGuard<'a> {
    fn new(shared: &'a Shared) -> WriterGuard<'a> {
        lock(&shared.inner).writers += 1;
        WriterGuard(shared)
    }
}

impl Drop for WriterGuard<'_> {
    fn drop(&mut self) {
        lock(&self.0.inner).writers -= 1;
        self.0.changed.notify_all();
    }
}

fn unsubscribe(shared: &Shared, number: u64) {
    lock(&shared.inner)
        .subscribers
        .retain(|sub| sub.id != number);
}

fn write_events(shared: &Shared, mut conn: UnixStream, rx: Receiver<Event>, prelude: Vec<u8>) {
    let mut result = prelude
        .chunks(proto::MAX_CHUNK)
        .try_for_each(|chunk| proto::write_frame(&mut conn, Kind::Output, chunk));
    while result.is_ok() {
        match rx.recv() {
            Ok(Event::Output(chunk)) => {
                result = proto::write_frame(&mut conn, Kind::Output, &chunk);
            }
            Err(_) => break,
        }
    }

    let exit = lock(&shared.inner).exit;
    if let (Ok(()), Some(code)) = (&result, exit) {
        let _ = proto::write_frame(&mut conn, Kind::Exit, &code.to_be_bytes());
    }
    let _ = conn.shutdown(std::net::Shutdown::Both);

    let mut inner = lock(&shared.inner);
    inner.writers -= 1;
    shared.changed.notify_all();
}

/// Sets the window size of the payload's terminal, or the size it will
/// start with.
fn resize(shared: &Shared, rows: u16, cols: u16) {
    let phase = lock(&shared.phase);
    *lock(&shared.window) = crate::daemon::protocol::WindowSize { rows, cols };
    if let Some(master) = shared.master.get() {
        if let Err(err) = crate::platform::pty::set_window_size(master.as_raw_fd(), rows, cols) {
            log_warn!(id(shared), "failed to set the window size: {err}");
        }
    }
    drop(phase);
}

/// Copies input and resize frames from an attached console to the PTY
/// until the console goes away.
fn pump_input(shared: &Shared, conn: &mut UnixStream) -> Result<(), proto::ProtocolError> {
    loop {
        let frame = match proto::read_frame(conn) {
            Ok(frame) => frame,
            Err(proto::ProtocolError::Closed) => return Ok(()),
            Err(err) => return Err(err),
        };
        // Input before the payload has a terminal (it failed to start) is
        // dropped.
        let mut master = shared.master.get();
        match frame.kind {
            Kind::Stdin => {
                if let (Some(master), Some(&last)) = (master.as_mut(), frame.payload.last()) {
                    master.write_all(&frame.payload)?;
                    shared.last_input.store(last, Ordering::Relaxed);
                }
            }
            Kind::Resize => {
                if let Some((rows, cols)) = proto::parse_resize(&frame.payload) {
                    resize(shared, rows, cols);
                }
            }
            Kind::Eof => {
                // In canonical mode VEOF at the start of a line ends the
                // input; after a partial line the first one only flushes it.
                let eof: &[u8] = if shared.last_input.load(Ordering::Relaxed) == b'\n' {
                    &[VEOF]
                } else {
                    &[VEOF, VEOF]
                };
                if let Some(master) = master.as_mut() {
                    master.write_all(eof)?;
                }
                shared.last_input.store(b'\n', Ordering::Relaxed);
            }
            other => {
                return Err(proto::ProtocolError::Invalid(format!(
                    "a console may send only input, resize and end-of-input frames, not {other:?}"
                )))
            }
        }
    }
}

/// Waits until the peer closes a connection that carries no input.
fn wait_close(conn: &mut UnixStream) -> Result<(), proto::ProtocolError> {
    let mut buf = [0u8; 64];
    loop {
        match conn.read(&mut buf) {
            Ok(0) => return Ok(()),
            Ok(_) => {}
            Err(err) if err.kind() == io::ErrorKind::Interrupted => {}
            Err(err) => return Err(err.into()),
        }
    }
}

/// Sends `signal` to the payload's process group, waits up to `timeout`,
/// then sends SIGKILL. Returns the exit status, or `None` if the payload
/// outlived SIGKILL by `KILL_WAIT`.
fn stop(shared: &Arc<Shared>, signal: i32, timeout: Duration) -> Option<i32> {
    // A payload that never started is ended without running it.
    let never_started = {
        let mut phase = lock(&shared.phase);
        let held = *phase == Phase::Held;
        if held {
            *phase = Phase::Ended;
        }
        held
    };
    if never_started {
        log_info!(id(shared), "stopped before the payload started");
        let shared = shared.clone();
        let code = 128 + signal;
        thread::spawn(move || finish(&shared, code));
        return Some(code);
    }

    let pid = lock(&shared.inner).pid;
    if let Some(pid) = pid {
        log_info!(id(shared), "sending signal {signal} to pid {pid}");
        send_signal(pid, signal);
    }
    if let Some(code) = wait_exit(shared, timeout) {
        return Some(code);
    }
    if let Some(pid) = pid {
        log_info!(
            id(shared),
            "still running {} s after signal {signal}, sending SIGKILL",
            timeout.as_secs()
        );
        send_signal(pid, libc::SIGKILL);
    }
    wait_exit(shared, KILL_WAIT)
}

fn send_signal(pid: i32, signal: i32) {
    // The payload leads its own session and process group, so the signal
    // reaches its children too; the pid alone is the fallback.
    // SAFETY: kill takes no pointers.
    unsafe {
        if libc::kill(-pid, signal) != 0 {
            libc::kill(pid, signal);
        }
    }
}

fn wait_exit(shared: &Shared, timeout: Duration) -> Option<i32> {
    let deadline = Instant::now() + timeout;
    let mut inner = lock(&shared.inner);
    loop {
        if let Some(code) = inner.exit {
            return Some(code);
        }
        let left = deadline.saturating_duration_since(Instant::now());
        if left.is_zero() {
            return None;
        }
        inner = shared
            .changed
            .wait_timeout(inner, left)
            .unwrap_or_else(|e| e.into_inner())
            .0;
    }
}
