//! `cblock exec`: a second process in a running instance, with a PTY of
//! its own (`-t`) or with pipes, streamed over the client's connection.
//!
//! Output and the exit status go through one writer thread fed by a
//! bounded channel, so frames from stdout and stderr never interleave and a
//! slow client slows the process down instead of filling memory.

use std::fs::File;
use std::io::{self, Read, Write};
use std::os::fd::{AsRawFd, OwnedFd};
use std::os::unix::net::UnixStream;
use std::os::unix::process::CommandExt;
use std::process::{Child, ChildStdin, Command, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc::{self, SyncSender};
use std::sync::Arc;
use std::thread;

use super::instances::Instance;
use super::protocol::{self as proto, Kind, ProtocolError, Response, WindowSize};
use super::Error;
use crate::console::PayloadSpec;
use crate::{log_info, log_warn};

const DEFAULT_PATH: &str = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin";

/// The destination of the process's input.
enum Input {
    Pipe(Option<ChildStdin>),
    Pty(File),
}

/// Runs `argv` in `instance` and streams it to the client on `conn`.
pub fn run(
    conn: &mut UnixStream,
    instance: &Instance,
    argv: Vec<String>,
    env: Vec<String>,
    tty: bool,
    window: WindowSize,
) -> Result<(), Error> {
    let id = instance.config.id.clone();
    let mut command = command_for(instance, &argv, &env)?;

    let (tx, rx) = mpsc::sync_channel::<(Kind, Vec<u8>)>(64);
    let mut readers = Vec::new();
    let (mut child, input) = if tty {
        let (master, slave, _path) = crate::platform::pty::open_pty(window.rows, window.cols)
            .map_err(io_context("open a pseudo-terminal for exec"))?;
        command
            .stdin(Stdio::from(clone_fd(&slave)?))
            .stdout(Stdio::from(clone_fd(&slave)?))
            .stderr(Stdio::from(slave));
        // SAFETY: the closure only makes async-signal-safe calls.
        unsafe {
            command.pre_exec(|| {
                crate::console::reset_signals()?;
                crate::platform::pty::make_controlling_terminal(0)
            });
        }
        let child = command.spawn().map_err(spawn_error(&argv))?;
        // The command's copies of the slave were closed by the spawn, so
        // the master reads EIO once the process and its children are done.
        drop(command);
        let master = File::from(master);
        let reader = master
            .try_clone()
            .map_err(io_context("clone the PTY master"))?;
        readers.push(copy_to_channel(reader, Kind::Output, tx.clone(), &id)?);
        (child, Input::Pty(master))
    } else {
        command
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        // SAFETY: the closure only makes async-signal-safe calls.
        unsafe {
            command.pre_exec(|| {
                crate::console::reset_signals()?;
                if libc::setpgid(0, 0) < 0 {
                    return Err(io::Error::last_os_error());
                }
                Ok(())
            });
        }
        let mut child = command.spawn().map_err(spawn_error(&argv))?;
        let stdout = child.stdout.take().expect("stdout is piped");
        let stderr = child.stderr.take().expect("stderr is piped");
        readers.push(copy_to_channel(stdout, Kind::Output, tx.clone(), &id)?);
        readers.push(copy_to_channel(stderr, Kind::Stderr, tx.clone(), &id)?);
        let stdin = child.stdin.take();
        (child, Input::Pipe(stdin))
    };
    log_info!(Some(&id), "exec {:?} started, pid {}", argv, child.id());

    proto::write_json(conn, Kind::Response, &Response::Streaming)?;
    let writer_conn = conn
        .try_clone()
        .map_err(io_context("clone the client socket"))?;
    let writer = thread::Builder::new()
        .name(format!("exec-{id}-out"))
        .spawn(move || write_frames(writer_conn, rx))
        .map_err(io_context("start the exec output thread"))?;

    let input_conn = conn
        .try_clone()
        .map_err(io_context("clone the client socket"))?;
    let pid = child.id() as i32;
    let input_id = id.clone();
    let finished = Arc::new(AtomicBool::new(false));
    let input_finished = finished.clone();
    let input_thread = thread::Builder::new()
        .name(format!("exec-{id}-in"))
        .spawn(move || copy_input(input_conn, input, pid, &input_id, &input_finished))
        .map_err(io_context("start the exec input thread"))?;

    let status = wait(&mut child);
    finished.store(true, Ordering::SeqCst);
    for reader in readers {
        let _ = reader.join();
    }
    let _ = tx.send((Kind::Exit, status.to_be_bytes().to_vec()));
    drop(tx);
    let _ = writer.join();
    let _ = conn.shutdown(std::net::Shutdown::Both);
    let _ = input_thread.join();
    log_info!(Some(&id), "exec {:?} exited with status {status}", argv);
    Ok(())
}

/// Builds the command for `argv` in the instance's environment.
fn command_for(instance: &Instance, argv: &[String], env: &[String]) -> Result<Command, Error> {
    match &instance.config.payload {
        PayloadSpec::Process {
            env: base_env, cwd, ..
        } => {
            let mut command = Command::new(&argv[0]);
            command
                .args(&argv[1..])
                .env_clear()
                .env("PATH", DEFAULT_PATH);
            for entry in base_env.iter().chain(env) {
                if let Some((key, value)) = entry.split_once('=') {
                    command.env(key, value);
                }
            }
            command.current_dir(cwd);
            Ok(command)
        }
        PayloadSpec::Container {
            runtime_root,
            container_id,
            ..
        } => {
            // The runtime's `exec` enters the container and waits for the
            // process, so its standard streams and exit status are the
            // process's.
            // NOTE: with `-t` the process gets a terminal of the host's
            // devpts, not one of the container's own.
            let exe =
                std::env::current_exe().map_err(io_context("find the path of this binary"))?;
            let mut command = Command::new(exe);
            command
                .arg0("cblock")
                .arg("runtime")
                .arg("--root")
                .arg(runtime_root)
                .arg("exec");
            for entry in env {
                command.arg("-e").arg(entry);
            }
            command.arg(container_id).arg("--").args(argv);
            command.env_clear().env("PATH", DEFAULT_PATH);
            Ok(command)
        }
    }
}

fn clone_fd(fd: &OwnedFd) -> Result<OwnedFd, Error> {
    fd.try_clone()
        .map_err(io_context("duplicate the PTY slave"))
}

fn spawn_error(argv: &[String]) -> impl FnOnce(io::Error) -> Error + '_ {
    move |source| Error::Io {
        context: format!("run {:?} in the instance", argv[0]),
        source,
    }
}

fn io_context(context: &'static str) -> impl FnOnce(io::Error) -> Error {
    move |source| Error::Io {
        context: context.into(),
        source,
    }
}

fn copy_to_channel<R: Read + Send + 'static>(
    mut reader: R,
    kind: Kind,
    tx: SyncSender<(Kind, Vec<u8>)>,
    id: &str,
) -> Result<thread::JoinHandle<()>, Error> {
    thread::Builder::new()
        .name(format!("exec-{id}-read"))
        .spawn(move || {
            let mut buf = vec![0u8; 16 * 1024];
            loop {
                match reader.read(&mut buf) {
                    Ok(0) => break,
                    Ok(n) => {
                        if tx.send((kind, buf[..n].to_vec())).is_err() {
                            break;
                        }
                    }
                    Err(err) if err.kind() == io::ErrorKind::Interrupted => {}
                    // EIO on a PTY master: every holder of the slave is gone.
                    Err(_) => break,
                }
            }
        })
        .map_err(io_context("start an exec reader thread"))
}

fn write_frames(mut conn: UnixStream, rx: mpsc::Receiver<(Kind, Vec<u8>)>) {
    for (kind, payload) in rx {
        if proto::write_frame(&mut conn, kind, &payload).is_err() {
            // Keep receiving, so that the readers do not block on a full channel.
            continue;
        }
    }
}

fn copy_input(mut conn: UnixStream, mut input: Input, pid: i32, id: &str, finished: &AtomicBool) {
    loop {
        let frame = match proto::read_frame(&mut conn) {
            Ok(frame) => frame,
            Err(ProtocolError::Closed) => break,
            Err(err) => {
                log_warn!(Some(id), "exec client sent a bad frame: {err}");
                break;
            }
        };
        let result = match (&mut input, frame.kind) {
            (Input::Pipe(Some(stdin)), Kind::Stdin) => stdin.write_all(&frame.payload),
            (Input::Pipe(stdin), Kind::Eof) => {
                stdin.take();
                Ok(())
            }
            (Input::Pty(master), Kind::Stdin) => master.write_all(&frame.payload),
            (Input::Pty(master), Kind::Eof) => master.write_all(&[0x04]),
            (Input::Pty(master), Kind::Resize) => match proto::parse_resize(&frame.payload) {
                Some((rows, cols)) => {
                    crate::platform::pty::set_window_size(master.as_raw_fd(), rows, cols)
                }
                None => Ok(()),
            },
            _ => Ok(()),
        };
        if result.is_err() {
            break;
        }
    }
    // The client closed the connection or sent an invalid frame before the
    // process ended. Its output has no reader any more, so hang up its
    // process group.
    if !finished.load(Ordering::SeqCst) {
        // SAFETY: kill takes no pointers.
        unsafe { libc::kill(-pid, libc::SIGHUP) };
    }
}

fn wait(child: &mut Child) -> i32 {
    use std::os::unix::process::ExitStatusExt;
    match child.wait() {
        Ok(status) => status
            .code()
            .unwrap_or_else(|| 128 + status.signal().unwrap_or(127)),
        Err(_) => 255,
    }
}
