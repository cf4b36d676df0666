//! `cblock console`: attach to a running container's console. Also holds
//! what `launch` and `exec` share with it: connecting to cblockd and the
//! interactive session (raw mode, detach keys, window size, exit status).

use std::io::{self, Write};
use std::os::fd::{AsFd, AsRawFd, OwnedFd};
use std::os::unix::net::UnixStream;
use std::process::ExitCode;
use std::sync::{Arc, Mutex};
use std::thread;

use argh::FromArgs;
use nix::sys::termios::{self, SetArg, Termios};

use super::{Error, Globals};
use crate::daemon::protocol::{self as proto, Kind, ProtocolError, Request, Response, WindowSize};

/// The detach sequence when `--detach-keys` is not given: Ctrl+Q.
pub const DEFAULT_DETACH_KEYS: &str = "ctrl-q";

#[derive(FromArgs)]
#[argh(subcommand, name = "console")]
/// attach to a running container's console; the scrollback is replayed
/// first, Ctrl+Q detaches and leaves the container running
pub struct Args {
    /// instance id (any unique prefix) or name
    #[argh(option, short = 'n')]
    name: String,

    /// key sequence that detaches, such as ctrl-p,ctrl-q (default: ctrl-q)
    #[argh(option, long = "detach-keys")]
    detach_keys: Option<String>,
}

pub fn run(globals: &Globals, args: Args) -> crate::Result<ExitCode> {
    let detach = parse_detach_keys(args.detach_keys.as_deref().unwrap_or(DEFAULT_DETACH_KEYS))?;
    let request = Request::Attach {
        id: args.name.clone(),
        window: window_size(),
        replay: true,
    };
    let (stream, response) = request_response(globals, &request)?;
    let id = match response {
        Response::Attached { id } => id,
        other => return Err(unexpected(&other).into()),
    };
    run_session(
        stream,
        &Session {
            id,
            detach,
            raw: true,
        },
    )
}

/// Connects to cblockd on the socket chosen in `globals`.
pub(super) fn connect(globals: &Globals) -> Result<UnixStream, Error> {
    UnixStream::connect(&globals.socket).map_err(|source| Error::Io {
        context: format!(
            "cannot connect to cblockd at {}; start cblockd, or pass -U/--unix-sock or set $CBLOCK_SOCKET",
            globals.socket.display()
        ),
        source,
    })
}

/// Sends `request` on a new connection and reads the response.
pub(super) fn request_response(
    globals: &Globals,
    request: &Request,
) -> Result<(UnixStream, Response), Error> {
    let mut stream = connect(globals)?;
    let sent = proto::write_json(&mut stream, Kind::Request, request);
    // cblockd may reject a connection (permission denied) and close it
    // before the request is written; its error message is still readable.
    let response = proto::read_json(&mut stream, Kind::Response);
    match (sent, response) {
        (_, Err(ProtocolError::Remote(message))) => Err(ProtocolError::Remote(message).into()),
        (Err(err), _) => Err(err.into()),
        (Ok(()), response) => Ok((stream, response?)),
    }
}

/// Returns the error for a response of the wrong type.
pub(super) fn unexpected(response: &Response) -> Error {
    Error::Protocol(ProtocolError::Invalid(format!(
        "unexpected response from cblockd: {response:?}"
    )))
}

/// Returns the window size of the terminal on standard input or output,
/// or zeros when neither is a terminal.
pub(super) fn window_size() -> WindowSize {
    for fd in [io::stdin().as_fd(), io::stdout().as_fd()] {
        if let Ok((rows, cols)) = crate::platform::pty::window_size(fd) {
            if rows > 0 && cols > 0 {
                return WindowSize { rows, cols };
            }
        }
    }
    WindowSize::default()
}

/// Converts an instance's exit status to this process's exit status.
pub(super) fn exit_code(status: i32) -> ExitCode {
    ExitCode::from(u8::try_from(status).unwrap_or(255))
}

/// Parses a detach sequence: comma-separated keys, each `ctrl-X` or one
/// character. An empty string turns detaching off.
pub(super) fn parse_detach_keys(spec: &str) -> Result<Vec<u8>, Error> {
    if spec.is_empty() {
        return Ok(Vec::new());
    }
    let invalid = |key: &str| {
        Error::Usage(format!(
            "invalid --detach-keys key {key:?}; use a comma-separated list such as ctrl-p,ctrl-q"
        ))
    };
    spec.split(',')
        .map(|key| {
            let lower = key.to_ascii_lowercase();
            if let Some(rest) = lower.strip_prefix("ctrl-") {
                match rest.as_bytes() {
                    [c @ b'a'..=b'z'] => Ok(c - b'a' + 1),
                    [c @ (b'@' | b'[' | b'\\' | b']' | b'^' | b'_')] => Ok(c - b'@'),
                    _ => Err(invalid(key)),
                }
            } else {
                match key.as_bytes() {
                    [c] if c.is_ascii_graphic() => Ok(*c),
                    _ => Err(invalid(key)),
                }
            }
        })
        .collect()
}

/// Finds the detach sequence in keystrokes. Bytes that could start the
/// sequence are held back until it is clear whether they complete it.
struct DetachMatcher {
    keys: Vec<u8>,
    held: usize,
}

impl DetachMatcher {
    /// Feeds input; returns the bytes to send and whether to detach.
    fn feed(&mut self, input: &[u8]) -> (Vec<u8>, bool) {
        let mut out = Vec::with_capacity(input.len());
        if self.keys.is_empty() {
            out.extend_from_slice(input);
            return (out, false);
        }
        for &byte in input {
            if byte == self.keys[self.held] {
                self.held += 1;
                if self.held == self.keys.len() {
                    return (out, true);
                }
                continue;
            }
            out.extend_from_slice(&self.keys[..self.held]);
            self.held = 0;
            if byte == self.keys[0] {
                self.held = 1;
                if self.keys.len() == 1 {
                    return (out, true);
                }
            } else {
                out.push(byte);
            }
        }
        (out, false)
    }
}

/// Options of an interactive session.
pub(super) struct Session {
    pub id: String,
    /// The detach sequence; empty for none.
    pub detach: Vec<u8>,
    /// Whether to put a terminal on standard input into raw mode.
    pub raw: bool,
}

/// Puts the terminal into raw mode and restores it when dropped.
struct RawMode {
    saved: Termios,
}

impl RawMode {
    fn enter() -> Result<RawMode, Error> {
        let stdin = io::stdin();
        let saved = termios::tcgetattr(stdin.as_fd()).map_err(|err| Error::Io {
            context: "read the terminal settings".into(),
            source: err.into(),
        })?;
        let mut raw = saved.clone();
        termios::cfmakeraw(&mut raw);
        termios::tcsetattr(stdin.as_fd(), SetArg::TCSANOW, &raw).map_err(|err| Error::Io {
            context: "put the terminal into raw mode".into(),
            source: err.into(),
        })?;
        Ok(RawMode { saved })
    }
}

impl Drop for RawMode {
    fn drop(&mut self) {
        let _ = termios::tcsetattr(io::stdin().as_fd(), SetArg::TCSANOW, &self.saved);
    }
}

/// The end of a session's output side.
enum Outcome {
    Exit(i32),
    Closed,
    Failed(String),
}

/// Runs an attached session on `stream` until the instance exits (and
/// returns its exit status) or the user detaches (and returns 0).
pub(super) fn run_session(stream: UnixStream, session: &Session) -> crate::Result<ExitCode> {
    let stdin_tty = nix::unistd::isatty(io::stdin().as_raw_fd()).unwrap_or(false);
    // SIGWINCH is blocked before any thread starts, so that only the
    // resize thread receives it, as soon as it arrives.
    let winch = block_sigwinch()?;
    let raw = if stdin_tty && session.raw {
        Some(RawMode::enter()?)
    } else {
        None
    };

    let io_err = |context: &'static str| {
        move |source| Error::Io {
            context: context.into(),
            source,
        }
    };
    let writer = Arc::new(Mutex::new(
        stream.try_clone().map_err(io_err("clone the socket"))?,
    ));
    let (wake_read, wake_write) =
        nix::unistd::pipe().map_err(|err| io_err("create a pipe")(err.into()))?;

    spawn_resize_thread(winch, writer.clone())?;
    let output = thread::Builder::new()
        .name("console-out".into())
        .spawn(move || {
            let outcome = copy_output(stream);
            let _ = nix::unistd::write(&wake_write, b"x");
            outcome
        })
        .map_err(io_err("start the output thread"))?;

    let detached = copy_input(&writer, &wake_read, &session.detach, stdin_tty)?;
    if detached {
        drop(raw);
        eprintln!("\r\n[detached from instance {}]\r", session.id);
        return Ok(ExitCode::SUCCESS);
    }

    let outcome = output.join().unwrap_or(Outcome::Closed);
    drop(raw);
    match outcome {
        Outcome::Exit(status) => Ok(exit_code(status)),
        Outcome::Closed => Err(Error::Failed(format!(
            "the connection to cblockd closed before instance {} exited; check cblockd's log",
            session.id
        ))
        .into()),
        Outcome::Failed(message) => Err(Error::Failed(message).into()),
    }
}

fn block_sigwinch() -> Result<nix::sys::signal::SigSet, Error> {
    use nix::sys::signal::{SigSet, Signal};
    let mut set = SigSet::empty();
    set.add(Signal::SIGWINCH);
    set.thread_block().map_err(|err| Error::Io {
        context: "block SIGWINCH".into(),
        source: err.into(),
    })?;
    Ok(set)
}

fn spawn_resize_thread(
    set: nix::sys::signal::SigSet,
    writer: Arc<Mutex<UnixStream>>,
) -> Result<(), Error> {
    thread::Builder::new()
        .name("resize".into())
        .spawn(move || loop {
            if set.wait().is_err() {
                return;
            }
            let size = window_size();
            if size.rows == 0 {
                continue;
            }
            let payload = proto::resize_payload(size.rows, size.cols);
            let mut stream = writer.lock().unwrap_or_else(|e| e.into_inner());
            if proto::write_frame(&mut *stream, Kind::Resize, &payload).is_err() {
                return;
            }
        })
        .map(drop)
        .map_err(|source| Error::Io {
            context: "start the resize thread".into(),
            source,
        })
}

fn copy_output(mut stream: UnixStream) -> Outcome {
    let mut stdout = io::stdout();
    loop {
        let frame = match proto::read_frame(&mut stream) {
            Ok(frame) => frame,
            Err(ProtocolError::Closed) => return Outcome::Closed,
            Err(err) => return Outcome::Failed(format!("console stream from cblockd: {err}")),
        };
        match frame.kind {
            Kind::Output => {
                let written = stdout
                    .write_all(&frame.payload)
                    .and_then(|()| stdout.flush());
                if written.is_err() {
                    return Outcome::Closed;
                }
            }
            Kind::Stderr => {
                let _ = io::stderr().write_all(&frame.payload);
            }
            Kind::Exit => return Outcome::Exit(proto::parse_exit(&frame.payload).unwrap_or(255)),
            Kind::Error => {
                return Outcome::Failed(String::from_utf8_lossy(&frame.payload).into_owned())
            }
            _ => {}
        }
    }
}

/// Copies standard input to the daemon until the output side ends (the
/// wake pipe becomes readable) or the user detaches; returns whether the
/// user detached.
fn copy_input(
    writer: &Mutex<UnixStream>,
    wake: &OwnedFd,
    detach: &[u8],
    stdin_tty: bool,
) -> Result<bool, Error> {
    use nix::poll::{poll, PollFd, PollFlags, PollTimeout};

    let stdin = io::stdin();
    let mut matcher = DetachMatcher {
        keys: if stdin_tty {
            detach.to_vec()
        } else {
            Vec::new()
        },
        held: 0,
    };
    let mut stdin_open = true;
    let mut buf = [0u8; 4096];
    let send = |kind: Kind, payload: &[u8]| {
        let mut stream = writer.lock().unwrap_or_else(|e| e.into_inner());
        proto::write_frame(&mut *stream, kind, payload)
    };

    loop {
        let stdin_fd = stdin.as_fd();
        let mut fds = vec![PollFd::new(wake.as_fd(), PollFlags::POLLIN)];
        if stdin_open {
            fds.push(PollFd::new(stdin_fd, PollFlags::POLLIN));
        }
        match poll(&mut fds, PollTimeout::NONE) {
            Ok(_) => {}
            Err(nix::errno::Errno::EINTR) => continue,
            Err(err) => {
                return Err(Error::Io {
                    context: "wait for input".into(),
                    source: err.into(),
                })
            }
        }
        if fds[0].revents().is_some_and(|r| !r.is_empty()) {
            return Ok(false);
        }
        if !stdin_open || !matches!(fds[1].revents(), Some(r) if !r.is_empty()) {
            continue;
        }

        // Read the descriptor itself: std's buffered stdin could keep bytes
        // that poll no longer reports.
        let n = match nix::unistd::read(stdin.as_raw_fd(), &mut buf) {
            Ok(n) => n,
            Err(nix::errno::Errno::EINTR) => continue,
            Err(_) => 0,
        };
        if n == 0 {
            stdin_open = false;
            let _ = send(Kind::Eof, &[]);
            continue;
        }
        let (forward, detached) = matcher.feed(&buf[..n]);
        if !forward.is_empty() && send(Kind::Stdin, &forward).is_err() {
            return Ok(false);
        }
        if detached {
            return Ok(true);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn detach_keys_parse() {
        assert_eq!(parse_detach_keys("ctrl-q").unwrap(), vec![0x11]);
        assert_eq!(
            parse_detach_keys("ctrl-p,ctrl-q").unwrap(),
            vec![0x10, 0x11]
        );
        assert_eq!(parse_detach_keys("ctrl-[,x").unwrap(), vec![0x1b, b'x']);
        assert!(parse_detach_keys("").unwrap().is_empty());
        assert!(parse_detach_keys("ctrl-").is_err());
        assert!(parse_detach_keys("ab").is_err());
    }

    #[test]
    fn matcher_single_key() {
        let mut matcher = DetachMatcher {
            keys: vec![0x11],
            held: 0,
        };
        assert_eq!(matcher.feed(b"ab"), (b"ab".to_vec(), false));
        assert_eq!(matcher.feed(b"c\x11d"), (b"c".to_vec(), true));
    }

    #[test]
    fn matcher_sequence_across_reads() {
        let mut matcher = DetachMatcher {
            keys: vec![0x10, 0x11],
            held: 0,
        };
        assert_eq!(matcher.feed(b"a\x10"), (b"a".to_vec(), false));
        assert_eq!(matcher.feed(b"\x11"), (Vec::new(), true));
    }

    #[test]
    fn matcher_releases_partial_sequence() {
        let mut matcher = DetachMatcher {
            keys: vec![0x10, 0x11],
            held: 0,
        };
        assert_eq!(matcher.feed(b"\x10x"), (b"\x10x".to_vec(), false));
        assert_eq!(matcher.feed(b"\x10\x10\x11"), (b"\x10".to_vec(), true));
    }
}
