//! The minimal init (`cblock _init PROGRAM ARGS...`): PID 1 of a container
//! that runs one program, forwards signals to it and reaps every orphaned
//! process, so that no zombies pile up. It exits with the program's exit
//! status, or 128 plus the signal that killed it.

use std::ffi::CString;
use std::process::ExitCode;

use nix::sys::signal::{SigSet, SigmaskHow, Signal};
use nix::sys::wait::{waitpid, WaitPidFlag, WaitStatus};
use nix::unistd::{fork, ForkResult, Pid};

/// Runs the init role.
pub fn init_main(args: &[String]) -> crate::Result<ExitCode> {
    if args.is_empty() || args[0] == "--help" {
        eprintln!("usage: cblock _init PROGRAM [ARGS...]");
        return Ok(ExitCode::from(crate::role::EXIT_USAGE));
    }
    let argv: Vec<CString> = args
        .iter()
        .map(|a| CString::new(a.as_bytes()).unwrap_or_default())
        .collect();

    // Every signal is taken synchronously with sigwait, so none is lost
    // between the fork and the wait loop.
    let all = SigSet::all();
    let mut previous = SigSet::empty();
    nix::sys::signal::pthread_sigmask(SigmaskHow::SIG_SETMASK, Some(&all), Some(&mut previous))
        .map_err(|e| io_error("blocking signals", e))?;

    // SAFETY: the process is single-threaded here.
    let child = match unsafe { fork() }.map_err(|e| io_error("forking the program", e))? {
        ForkResult::Child => {
            let _ =
                nix::sys::signal::pthread_sigmask(SigmaskHow::SIG_SETMASK, Some(&previous), None);
            let err = nix::unistd::execvp(&argv[0], &argv).unwrap_err();
            eprintln!("cblock-init: executing {}: {err}", args[0]);
            // SAFETY: ends the child without running the parent's destructors.
            unsafe { libc::_exit(127) };
        }
        ForkResult::Parent { child } => child,
    };

    loop {
        let signal = match all.wait() {
            Ok(signal) => signal,
            Err(_) => continue,
        };
        if signal != Signal::SIGCHLD {
            let _ = nix::sys::signal::kill(child, signal);
            continue;
        }
        if let Some(code) = reap(child) {
            return Ok(ExitCode::from(code));
        }
    }
}

/// Reaps every exited child; returns the exit status once `main` is gone.
fn reap(main: Pid) -> Option<u8> {
    let mut main_status = None;
    loop {
        match waitpid(None::<Pid>, Some(WaitPidFlag::WNOHANG)) {
            Ok(WaitStatus::Exited(pid, code)) if pid == main => main_status = Some(code as u8),
            Ok(WaitStatus::Signaled(pid, signal, _)) if pid == main => {
                main_status = Some(128u8.wrapping_add(signal as u8))
            }
            Ok(WaitStatus::StillAlive) | Err(_) => break,
            Ok(_) => {}
        }
    }
    main_status
}

fn io_error(step: &str, err: nix::Error) -> crate::Error {
    crate::Error::Runtime(super::Error::Io {
        context: format!("cblock-init: {step}"),
        source: err.into(),
    })
}
