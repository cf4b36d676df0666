//! The starter: a child that the supervisor forks while it is still
//! single-threaded, and that starts the payload on the supervisor's request.
//!
//! Starting a container runs the whole runtime (configuration parsing,
//! cgroups, namespaces, seccomp), and every page of code that runs stays
//! mapped in the process that ran it. In the starter that code is mapped
//! only for the few milliseconds until it exits, so the supervisor, which
//! lives as long as its container, maps only the console's code. The
//! payload's processes become the supervisor's children when the starter
//! exits, because the supervisor is their subreaper.

use std::io::{self, IoSlice, IoSliceMut, Read, Write};
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};
use std::os::unix::net::UnixStream;

use nix::sys::socket::{recvmsg, sendmsg, ControlMessage, ControlMessageOwned, MsgFlags};
use serde::{Deserialize, Serialize};

use super::payload::Payload;
use crate::daemon::protocol::WindowSize;

/// A payload that the starter started; the supervisor waits for `pid`.
pub struct Launched {
    pub master: OwnedFd,
    pub pid: i32,
    pub tty: String,
}

/// The starter's reply, sent with the terminal's master descriptor when
/// the payload started.
#[derive(Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
enum Reply {
    Started { pid: i32, tty: String },
    Failed { error: String },
}

/// The supervisor's handle on its starter.
pub struct Starter {
    channel: UnixStream,
    pid: i32,
}

impl Starter {
    /// Forks the starter, which then waits for [`Starter::start`]. Must be
    /// called while the process is single-threaded, so that the child is a
    /// complete copy of it.
    pub fn spawn(payload: &dyn Payload) -> io::Result<Starter> {
        let (ours, theirs) = UnixStream::pair()?;
        // SAFETY: the caller guarantees that no other thread exists.
        match unsafe { nix::unistd::fork() }.map_err(io::Error::from)? {
            nix::unistd::ForkResult::Parent { child } => {
                drop(theirs);
                Ok(Starter {
                    channel: ours,
                    pid: child.as_raw(),
                })
            }
            nix::unistd::ForkResult::Child => {
                drop(ours);
                // The starter keeps none of the supervisor's files: its
                // socket, logs and the readiness pipe, whose reader waits
                // for the end of the file. The log goes to standard error
                // first, so that no log line lands in a file that reuses
                // the log's descriptor number.
                let _ = crate::daemon::log::init(None, false);
                if crate::platform::close_descriptors_except(theirs.as_raw_fd()).is_ok() {
                    serve(payload, theirs);
                }
                // SAFETY: ends the starter without running the destructors
                // and exit handlers of the supervisor it was copied from.
                unsafe { libc::_exit(0) }
            }
        }
    }

    /// Has the starter start the payload on a terminal of `window` size,
    /// and returns the payload's terminal and pid once the starter exited.
    pub fn start(mut self, window: WindowSize) -> io::Result<Launched> {
        let mut request = [0u8; 4];
        request[..2].copy_from_slice(&window.rows.to_le_bytes());
        request[2..].copy_from_slice(&window.cols.to_le_bytes());
        let outcome = self
            .channel
            .write_all(&request)
            .and_then(|()| receive_reply(self.channel.as_raw_fd()));
        self.reap();
        outcome
    }

    /// Waits for the starter to exit, once it replied or failed.
    fn reap(&mut self) {
        let pid = nix::unistd::Pid::from_raw(self.pid);
        while let Err(nix::errno::Errno::EINTR) = nix::sys::wait::waitpid(pid, None) {}
    }
}

impl Drop for Starter {
    /// Closing the channel ends a starter that was never asked to start.
    fn drop(&mut self) {
        let _ = self.channel.shutdown(std::net::Shutdown::Both);
    }
}

/// Runs in the starter: waits for the window size, starts the payload and
/// sends the reply. Returns when the supervisor closed the channel
/// without asking.
fn serve(payload: &dyn Payload, mut channel: UnixStream) {
    let mut request = [0u8; 4];
    if channel.read_exact(&mut request).is_err() {
        return;
    }
    let window = WindowSize {
        rows: u16::from_le_bytes([request[0], request[1]]),
        cols: u16::from_le_bytes([request[2], request[3]]),
    };
    let (reply, master) = match payload.start(window) {
        Ok(started) => (
            Reply::Started {
                pid: started.pid,
                tty: started.tty,
            },
            Some(started.master),
        ),
        Err(err) => (
            Reply::Failed {
                error: err.to_string(),
            },
            None,
        ),
    };
    let Ok(body) = serde_json::to_vec(&reply) else {
        return;
    };
    let fds: Vec<RawFd> = master.iter().map(|fd| fd.as_raw_fd()).collect();
    let control = [ControlMessage::ScmRights(&fds)];
    let control: &[ControlMessage] = if fds.is_empty() { &[] } else { &control };
    // A failed send closes the channel, which the supervisor reports.
    let _ = sendmsg::<()>(
        channel.as_raw_fd(),
        &[IoSlice::new(&body)],
        control,
        MsgFlags::empty(),
        None,
    );
}

/// Receives the starter's reply and the terminal's master.
fn receive_reply(socket: RawFd) -> io::Result<Launched> {
    let mut data = vec![0u8; 64 * 1024];
    let mut space = nix::cmsg_space!([RawFd; 1]);
    let (received, master) = {
        let mut buffers = [IoSliceMut::new(&mut data)];
        let message = recvmsg::<()>(
            socket,
            &mut buffers,
            Some(&mut space),
            MsgFlags::MSG_CMSG_CLOEXEC,
        )
        .map_err(io::Error::from)?;
        let mut master = None;
        for cmsg in message.cmsgs().map_err(io::Error::from)? {
            if let ControlMessageOwned::ScmRights(fds) = cmsg {
                for fd in fds {
                    // SAFETY: the kernel installed this descriptor for us.
                    let owned = unsafe { OwnedFd::from_raw_fd(fd) };
                    master.get_or_insert(owned);
                }
            }
        }
        (message.bytes, master)
    };
    if received == 0 {
        return Err(io::Error::other(
            "the payload starter exited without a reply; see the supervisor log",
        ));
    }
    let reply: Reply = serde_json::from_slice(&data[..received])
        .map_err(|err| io::Error::new(io::ErrorKind::InvalidData, err))?;
    match (reply, master) {
        (Reply::Started { pid, tty }, Some(master)) => Ok(Launched { master, pid, tty }),
        (Reply::Started { .. }, None) => Err(io::Error::other(
            "the payload starter sent no terminal with its reply",
        )),
        (Reply::Failed { error }, _) => Err(io::Error::other(error)),
    }
}
