//! Lifecycle hooks: programs run with the container's state as JSON on
//! their standard input.

use std::io::Write;
use std::os::unix::process::CommandExt;
use std::process::{Command, Stdio};
use std::thread;
use std::time::{Duration, Instant};

use super::Error;
use crate::oci::runtime_spec::{Hook, State};

/// Runs `hooks` in order and stops at the first that fails. `kind` is the
/// hook point's name as the specification spells it, for messages.
pub fn run_all(hooks: &[Hook], kind: &str, state: &State) -> Result<(), Error> {
    for hook in hooks {
        run(hook, kind, state)?;
    }
    Ok(())
}

/// Runs `hooks` in order, logging failures to standard error and going on,
/// as the specification requires for poststart and poststop hooks.
pub fn run_all_warn(hooks: &[Hook], kind: &str, state: &State) {
    for hook in hooks {
        if let Err(err) = run(hook, kind, state) {
            eprintln!("cblock-runtime: warning: {err}");
        }
    }
}

fn run(hook: &Hook, kind: &str, state: &State) -> Result<(), Error> {
    let failed = |reason: String| Error::Hook {
        kind: kind.to_string(),
        path: hook.path.clone(),
        reason,
    };
    let mut command = Command::new(&hook.path);
    if let Some((first, rest)) = hook.args.split_first() {
        command.arg0(first).args(rest);
    }
    command.env_clear();
    for entry in &hook.env {
        if let Some((key, value)) = entry.split_once('=') {
            command.env(key, value);
        }
    }
    command.stdin(Stdio::piped());
    let mut child = command
        .spawn()
        .map_err(|e| failed(format!("could not start it: {e}")))?;

    let input = serde_json::to_vec(state).map_err(|e| failed(e.to_string()))?;
    if let Some(mut stdin) = child.stdin.take() {
        // A hook may exit without reading its input; that is not an error.
        let _ = stdin.write_all(&input);
    }

    if hook.timeout.filter(|t| *t > 0).is_none() {
        let status = child
            .wait()
            .map_err(|e| failed(format!("waiting for it failed: {e}")))?;
        if status.success() {
            return Ok(());
        }
        return Err(failed(format!("it exited with {status}")));
    }
    let deadline = hook
        .timeout
        .filter(|t| *t > 0)
        .map(|t| Instant::now() + Duration::from_secs(t as u64));
    loop {
        match child.try_wait() {
            Ok(Some(status)) if status.success() => return Ok(()),
            Ok(Some(status)) => return Err(failed(format!("it exited with {status}"))),
            Ok(None) => {}
            Err(e) => return Err(failed(format!("waiting for it failed: {e}"))),
        }
        if deadline.is_some_and(|d| Instant::now() >= d) {
            let _ = child.kill();
            let _ = child.wait();
            return Err(failed(format!(
                "it did not finish within its timeout of {} s",
                hook.timeout.unwrap_or_default()
            )));
        }
        thread::sleep(Duration::from_millis(5));
    }
}
