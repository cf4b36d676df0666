//! Starting the setup process: `clone3` straight into the container's
//! cgroup2 cgroup where the kernel allows it, then exec of the runtime
//! binary from a descriptor.
//!
//! `std::process::Command` cannot pass `CLONE_INTO_CGROUP`, and placing
//! the process afterwards through `cgroup.procs` costs an RCU grace period
//! (see `cgroups::Placement`).

use std::ffi::{CStr, CString};
use std::io;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};
use std::path::Path;

use nix::sys::wait::{waitpid, WaitStatus};
use nix::unistd::Pid;

use crate::runtime::Error;

/// Flags of `clone3(2)` that the libc crate does not define for every
/// target (values from `linux/sched.h`).
const CLONE_CLEAR_SIGHAND: u64 = 0x1_0000_0000;
const CLONE_INTO_CGROUP: u64 = 0x2_0000_0000;
const CLONE_NEWPID: u64 = libc::CLONE_NEWPID as u64;

/// The argument block of `clone3(2)` up to `cgroup`, the layout of
/// `struct clone_args` version 2 (Linux 5.7).
#[repr(C)]
#[derive(Default)]
struct CloneArgs {
    flags: u64,
    pidfd: u64,
    child_tid: u64,
    parent_tid: u64,
    exit_signal: u64,
    stack: u64,
    stack_size: u64,
    tls: u64,
    set_tid: u64,
    set_tid_size: u64,
    cgroup: u64,
}

/// A process to start from the runtime binary.
pub struct Spawn<'a> {
    /// The binary, open for reading (see `exe`).
    pub exe: &'a OwnedFd,
    pub args: &'a [&'a CStr],
    /// Standard input, output and error; the caller's own when `None`.
    pub stdio: Option<[OwnedFd; 3]>,
    /// Close-on-exec descriptors that the new process keeps.
    pub inherit: &'a [RawFd],
    /// A cgroup2 directory to start the process in.
    pub cgroup: Option<&'a Path>,
    /// Starts the process as PID 1 of a new PID namespace.
    pub new_pid_namespace: bool,
}

/// A started process, which the caller must wait for.
#[derive(Debug)]
pub struct Child {
    pub pid: i32,
    /// Whether the process started in `Spawn::cgroup`. When false, the
    /// caller places it there.
    pub in_cgroup: bool,
    /// Whether the process started in a new PID namespace, as
    /// `Spawn::new_pid_namespace` requests. When false, it was not created.
    pub in_new_pid_namespace: bool,
    /// The read end of the pipe that reports a failed exec.
    exec_report: Option<std::fs::File>,
    /// Set once the process was reaped: its pid may then name another
    /// process, which `kill` must not hit.
    reaped: std::cell::Cell<bool>,
}

impl Child {
    /// Waits until the process has executed the binary, and returns the
    /// error of a failed exec.
    pub fn wait_exec(&mut self) -> Result<(), Error> {
        let Some(mut report) = self.exec_report.take() else {
            return Ok(());
        };
        // The pipe closes without data when the exec succeeds, and carries
        // the exec's errno when it fails.
        let mut errno = [0u8; 4];
        match io::Read::read(&mut report, &mut errno) {
            Ok(0) => Ok(()),
            Ok(_) => {
                let _ = self.wait();
                Err(Error::Io {
                    context: "executing the runtime binary for the setup process".into(),
                    source: io::Error::from_raw_os_error(i32::from_ne_bytes(errno)),
                })
            }
            Err(e) => {
                self.kill();
                Err(Error::Io {
                    context: "reading the setup process's exec result".into(),
                    source: e,
                })
            }
        }
    }

    /// Waits for the process to end and returns whether it exited with 0,
    /// or a description of how it ended.
    pub fn wait(&self) -> Result<Result<(), String>, Error> {
        loop {
            let status = waitpid(Pid::from_raw(self.pid), None);
            if matches!(
                status,
                Ok(WaitStatus::Exited(..)) | Ok(WaitStatus::Signaled(..))
            ) {
                self.reaped.set(true);
            }
            match status {
                Ok(WaitStatus::Exited(_, 0)) => return Ok(Ok(())),
                Ok(WaitStatus::Exited(_, code)) => return Ok(Err(format!("exit status {code}"))),
                Ok(WaitStatus::Signaled(_, signal, _)) => {
                    return Ok(Err(format!("signal {signal}")))
                }
                Ok(_) | Err(nix::errno::Errno::EINTR) => continue,
                Err(e) => {
                    return Err(Error::Io {
                        context: format!("waiting for the setup process {}", self.pid),
                        source: e.into(),
                    })
                }
            }
        }
    }

    /// Kills the process and reaps it, unless it was reaped already.
    pub fn kill(&self) {
        if self.reaped.get() {
            return;
        }
        // SAFETY: kill(2) has no memory effects.
        unsafe { libc::kill(self.pid, libc::SIGKILL) };
        let _ = self.wait();
    }
}

/// Starts `request.exe` with `request.args` and an empty environment.
/// Returns after the fork; `Child::wait_exec` then waits for the exec.
pub fn spawn(request: Spawn<'_>) -> Result<Child, Error> {
    let mut argv: Vec<*const libc::c_char> = request.args.iter().map(|a| a.as_ptr()).collect();
    argv.push(std::ptr::null());
    let envp: [*const libc::c_char; 1] = [std::ptr::null()];
    let stdio: Option<[RawFd; 3]> = request
        .stdio
        .as_ref()
        .map(|fds| [fds[0].as_raw_fd(), fds[1].as_raw_fd(), fds[2].as_raw_fd()]);

    let cgroup_dir = match request.cgroup {
        Some(dir) => Some(open_directory(dir)?),
        None => None,
    };
    let (report_read, report_write) =
        nix::unistd::pipe2(nix::fcntl::OFlag::O_CLOEXEC).map_err(|e| Error::Io {
            context: "creating the pipe for exec errors".into(),
            source: e.into(),
        })?;

    let child = ChildSetup {
        exe: request.exe.as_raw_fd(),
        argv: argv.as_ptr(),
        envp: envp.as_ptr(),
        stdio,
        inherit: request.inherit,
        report: report_write.as_raw_fd(),
    };
    let (pid, cloned) = fork_child(&child, cgroup_dir.as_ref(), request.new_pid_namespace)?;
    Ok(Child {
        pid,
        in_cgroup: cloned && cgroup_dir.is_some(),
        in_new_pid_namespace: cloned && request.new_pid_namespace,
        exec_report: Some(std::fs::File::from(report_read)),
        reaped: std::cell::Cell::new(false),
    })
}

fn open_directory(dir: &Path) -> Result<OwnedFd, Error> {
    let path = CString::new(dir.as_os_str().as_encoded_bytes())
        .map_err(|_| Error::Config(format!("cgroup path {} contains a NUL byte", dir.display())))?;
    // SAFETY: path is a valid C string; the result is checked.
    let fd = unsafe {
        libc::open(
            path.as_ptr(),
            libc::O_PATH | libc::O_DIRECTORY | libc::O_CLOEXEC,
        )
    };
    if fd < 0 {
        return Err(Error::Io {
            context: format!("opening cgroup {}", dir.display()),
            source: io::Error::last_os_error(),
        });
    }
    // SAFETY: fd was just opened and is owned by nothing else.
    Ok(unsafe { OwnedFd::from_raw_fd(fd) })
}

/// The child's work between the fork and the exec, prepared before the
/// fork so that the child allocates nothing.
struct ChildSetup<'a> {
    exe: RawFd,
    argv: *const *const libc::c_char,
    envp: *const *const libc::c_char,
    stdio: Option<[RawFd; 3]>,
    inherit: &'a [RawFd],
    report: RawFd,
}

/// Forks with `clone3`, into `cgroup` and a new PID namespace when asked,
/// and falls back to a plain `fork` when the kernel rejects that (before
/// Linux 5.7, or a cgroup that cannot take processes). Returns the child's
/// pid and whether `clone3` started it.
fn fork_child(
    child: &ChildSetup<'_>,
    cgroup: Option<&OwnedFd>,
    new_pid_namespace: bool,
) -> Result<(i32, bool), Error> {
    if cgroup.is_some() || new_pid_namespace {
        let mut args = CloneArgs {
            flags: CLONE_CLEAR_SIGHAND,
            exit_signal: libc::SIGCHLD as u64,
            ..CloneArgs::default()
        };
        if let Some(dir) = cgroup {
            args.flags |= CLONE_INTO_CGROUP;
            args.cgroup = dir.as_raw_fd() as u64;
        }
        if new_pid_namespace {
            args.flags |= CLONE_NEWPID;
        }
        // SAFETY: args is a valid clone_args block of the given size. The
        // child runs only async-signal-safe calls before it execs or exits.
        let rc = unsafe {
            libc::syscall(
                libc::SYS_clone3,
                &mut args as *mut CloneArgs,
                std::mem::size_of::<CloneArgs>(),
            )
        };
        match rc {
            0 => unsafe { run_child(child) },
            pid if pid > 0 => return Ok((pid as i32, true)),
            _ => {}
        }
    }
    // SAFETY: as above, the child runs only async-signal-safe calls.
    match unsafe { libc::fork() } {
        0 => unsafe { run_child(child) },
        pid if pid > 0 => Ok((pid, false)),
        _ => Err(Error::Io {
            context: "forking the setup process".into(),
            source: io::Error::last_os_error(),
        }),
    }
}

/// Runs in the new child: sets up its descriptors and signals, executes
/// the binary, and reports the errno of a failed exec.
///
/// # Safety
/// Must be called only in a freshly forked child, which may be the copy of
/// a multi-threaded process, so only async-signal-safe calls are allowed.
unsafe fn run_child(child: &ChildSetup<'_>) -> ! {
    let fail = |report: RawFd| -> ! {
        let errno = *libc::__errno_location();
        let bytes = errno.to_ne_bytes();
        libc::write(report, bytes.as_ptr().cast(), bytes.len());
        libc::_exit(127)
    };

    // The runtime blocks or ignores signals that a new program must see:
    // Rust ignores SIGPIPE, and the daemon blocks some in its threads.
    let mut empty: libc::sigset_t = std::mem::zeroed();
    libc::sigemptyset(&mut empty);
    libc::sigprocmask(libc::SIG_SETMASK, &empty, std::ptr::null_mut());
    libc::signal(libc::SIGPIPE, libc::SIG_DFL);

    if let Some(fds) = child.stdio {
        for (target, fd) in fds.into_iter().enumerate() {
            let target = target as RawFd;
            let rc = if fd == target {
                libc::fcntl(fd, libc::F_SETFD, 0)
            } else {
                libc::dup2(fd, target)
            };
            if rc < 0 {
                fail(child.report);
            }
        }
    }
    for &fd in child.inherit {
        if libc::fcntl(fd, libc::F_SETFD, 0) < 0 {
            fail(child.report);
        }
    }
    libc::syscall(
        libc::SYS_execveat,
        child.exe,
        c"".as_ptr(),
        child.argv,
        child.envp,
        libc::AT_EMPTY_PATH,
    );
    fail(child.report)
}
