//! The container's terminal and the console-socket protocol.
//!
//! When `process.terminal` is set, the container's init opens a PTY in the
//! container's own devpts instance and makes the slave its standard streams
//! and controlling terminal. It sends the master to the caller over a UNIX
//! socket as an SCM_RIGHTS message whose data is the PTY's name. This is
//! runc's `--console-socket` protocol, which conmon and containerd use.

use std::io::{self, IoSlice, IoSliceMut};
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};
use std::os::unix::net::UnixStream;
use std::path::Path;

use nix::sys::socket::{recvmsg, sendmsg, ControlMessage, ControlMessageOwned, MsgFlags};

use crate::oci::runtime_spec::ConsoleSize;
use crate::runtime::Error;

fn os_error(context: &str) -> Error {
    Error::Io {
        context: context.to_string(),
        source: io::Error::last_os_error(),
    }
}

/// Connects to the console socket at `path`.
pub fn connect(path: &Path) -> Result<UnixStream, Error> {
    UnixStream::connect(path).map_err(|e| Error::Io {
        context: format!(
            "connecting to console socket {}; make sure the caller listens there",
            path.display()
        ),
        source: e,
    })
}

/// A PTY opened inside the container.
pub struct Pty {
    pub master: OwnedFd,
    pub slave: OwnedFd,
    pub name: String,
}

/// Opens a PTY from `/dev/ptmx` of the current mount namespace.
pub fn open_pty(size: Option<ConsoleSize>) -> Result<Pty, Error> {
    // SAFETY: the path is a valid C string; the result is checked.
    let master = unsafe {
        libc::open(
            c"/dev/ptmx".as_ptr(),
            libc::O_RDWR | libc::O_NOCTTY | libc::O_CLOEXEC,
        )
    };
    if master < 0 {
        return Err(os_error(
            "opening /dev/ptmx for the terminal; mount devpts with newinstance on /dev/pts",
        ));
    }
    // SAFETY: master was just opened.
    let master = unsafe { OwnedFd::from_raw_fd(master) };

    // SAFETY: unlockpt and ioctl on a valid PTY master.
    if unsafe { libc::unlockpt(master.as_raw_fd()) } != 0 {
        return Err(os_error("unlocking the terminal (unlockpt)"));
    }
    let mut number: libc::c_uint = 0;
    // SAFETY: TIOCGPTN writes one unsigned int.
    if unsafe { libc::ioctl(master.as_raw_fd(), libc::TIOCGPTN, &mut number) } != 0 {
        return Err(os_error("reading the terminal number (TIOCGPTN)"));
    }

    let name = format!("/dev/pts/{number}");
    let c_name = std::ffi::CString::new(name.clone()).unwrap_or_default();
    // SAFETY: c_name is a valid C string.
    let slave = unsafe { libc::open(c_name.as_ptr(), libc::O_RDWR | libc::O_NOCTTY) };
    if slave < 0 {
        return Err(os_error(&format!("opening terminal {name}")));
    }
    // SAFETY: slave was just opened.
    let slave = unsafe { OwnedFd::from_raw_fd(slave) };

    if let Some(size) = size {
        let winsize = libc::winsize {
            ws_row: size.height,
            ws_col: size.width,
            ws_xpixel: 0,
            ws_ypixel: 0,
        };
        // SAFETY: TIOCSWINSZ reads one winsize.
        unsafe { libc::ioctl(slave.as_raw_fd(), libc::TIOCSWINSZ, &winsize) };
    }
    Ok(Pty {
        master,
        slave,
        name,
    })
}

/// Makes `slave` the standard streams and controlling terminal of the
/// calling process, which must lead its session.
pub fn make_controlling(slave: RawFd) -> Result<(), Error> {
    for target in 0..3 {
        // SAFETY: dup2 on valid descriptors.
        if unsafe { libc::dup2(slave, target) } < 0 {
            return Err(os_error("connecting the terminal to standard streams"));
        }
    }
    // SAFETY: TIOCSCTTY takes an integer.
    if unsafe { libc::ioctl(0, libc::TIOCSCTTY, 0) } != 0 {
        return Err(os_error("making the terminal the controlling terminal"));
    }
    Ok(())
}

/// Sends `fd` over `socket` with `name` as the message data.
pub fn send_fd(socket: RawFd, name: &str, fd: RawFd) -> Result<(), Error> {
    let fds = [fd];
    let control = [ControlMessage::ScmRights(&fds)];
    let data = [IoSlice::new(name.as_bytes())];
    sendmsg::<()>(socket, &data, &control, MsgFlags::empty(), None).map_err(|e| Error::Io {
        context: "sending the terminal master over the console socket".into(),
        source: io::Error::from(e),
    })?;
    Ok(())
}

/// Receives one descriptor sent with [`send_fd`].
pub fn receive_fd(socket: RawFd) -> Result<OwnedFd, Error> {
    let mut data = [0u8; 4096];
    let mut buffers = [IoSliceMut::new(&mut data)];
    let mut space = nix::cmsg_space!([RawFd; 1]);
    let message = recvmsg::<()>(
        socket,
        &mut buffers,
        Some(&mut space),
        MsgFlags::MSG_CMSG_CLOEXEC,
    )
    .map_err(|e| Error::Io {
        context: "receiving the terminal master".into(),
        source: io::Error::from(e),
    })?;
    let cmsgs = message.cmsgs().map_err(|e| Error::Io {
        context: "reading the terminal master message".into(),
        source: io::Error::from(e),
    })?;
    for cmsg in cmsgs {
        if let ControlMessageOwned::ScmRights(fds) = cmsg {
            if let Some(&fd) = fds.first() {
                // SAFETY: the kernel installed this descriptor for us.
                return Ok(unsafe { OwnedFd::from_raw_fd(fd) });
            }
        }
    }
    Err(Error::Setup(
        "the container closed the console socket without sending a terminal".into(),
    ))
}
