//! `cblock instances`: list, stop and kill containers, and prune exited
//! ones.

use std::process::ExitCode;

use argh::FromArgs;

use super::console::{request_response, unexpected};
use super::{Error, Globals};
use crate::daemon::protocol::{InstanceInfo, Request, Response};

#[derive(FromArgs)]
#[argh(subcommand, name = "instances")]
/// list, stop and kill containers
pub struct Args {
    /// leave out the header line
    #[argh(switch, short = 'q')]
    quiet: bool,

    /// list exited and lost instances too
    #[argh(switch, short = 'a')]
    all: bool,

    /// output format: table (default) or json
    #[argh(option)]
    format: Option<String>,

    /// send the instance's stop signal, then SIGKILL after --time seconds
    #[argh(option, short = 's')]
    stop: Option<String>,

    /// kill the instance with SIGKILL
    #[argh(option, short = 'k')]
    kill: Option<String>,

    /// seconds --stop waits before SIGKILL (default: 10)
    #[argh(option, default = "10")]
    time: u64,

    /// remove every instance that has exited
    #[argh(switch, short = 'p')]
    prune: bool,
}

pub fn run(globals: &Globals, args: Args) -> crate::Result<ExitCode> {
    let json = match args.format.as_deref() {
        None | Some("table") => false,
        Some("json") => true,
        Some(other) => {
            return Err(Error::Usage(format!(
                "--format {other:?} is not known; use table or json"
            ))
            .into())
        }
    };
    if args.stop.is_some() && args.kill.is_some() {
        return Err(Error::Usage("--stop and --kill conflict; give one of them".into()).into());
    }

    // The original's precedence: signals first, then prune, then listing.
    let target = args
        .stop
        .map(|id| Request::Stop {
            id,
            signal: None,
            timeout_secs: args.time,
        })
        .or_else(|| args.kill.map(|id| Request::Kill { id }));
    if let Some(request) = target {
        let (_, response) = request_response(globals, &request)?;
        return match response {
            Response::Stopped { id, status } => {
                println!("{id} exited with status {status}");
                Ok(ExitCode::SUCCESS)
            }
            other => Err(unexpected(&other).into()),
        };
    }

    if args.prune {
        let (_, response) = request_response(globals, &Request::Prune)?;
        return match response {
            Response::Pruned { ids } => {
                for id in ids {
                    println!("Removing stale instance: {id}");
                }
                Ok(ExitCode::SUCCESS)
            }
            other => Err(unexpected(&other).into()),
        };
    }

    let (_, response) = request_response(globals, &Request::List { all: args.all })?;
    let Response::Instances { instances } = response else {
        return Err(unexpected(&response).into());
    };
    if json {
        let text = serde_json::to_string_pretty(&instances).map_err(|err| {
            Error::Failed(format!("failed to format the instance list as JSON: {err}"))
        })?;
        println!("{text}");
    } else {
        print!(
            "{}",
            table(&instances, !args.quiet, crate::console::now_secs())
        );
    }
    Ok(ExitCode::SUCCESS)
}

/// Formats the original's columns: INSTANCE IMAGE TTY PID TYPE UP. UP is
/// the uptime in seconds, or `exited(N)`, `created` or `lost`.
fn table(instances: &[InstanceInfo], header: bool, now: u64) -> String {
    let mut out = String::new();
    if header {
        out.push_str(&format!(
            "{:<10}  {:<15} {:<12} {:<7} {:<11} {:>10}\n",
            "INSTANCE", "IMAGE", "TTY", "PID", "TYPE", "UP"
        ));
    }
    for instance in instances {
        let up = match (
            instance.state.as_str(),
            instance.started,
            instance.exit_status,
        ) {
            ("running", Some(started), _) => format!("{}s", now.saturating_sub(started)),
            ("exited", _, Some(status)) => format!("exited({status})"),
            (state, _, _) => state.to_string(),
        };
        let image: String = instance.image.chars().take(15).collect();
        out.push_str(&format!(
            "{:<10}  {:<15} {:<12} {:<7} {:<11} {:>10}\n",
            &instance.id[..instance.id.len().min(10)],
            image,
            instance.tty.as_deref().unwrap_or("-"),
            instance.pid.map_or("-".to_string(), |pid| pid.to_string()),
            instance.kind,
            up
        ));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn table_columns() {
        let instance = InstanceInfo {
            id: "0123456789".into(),
            name: None,
            image: "alpine-with-a-long-name".into(),
            kind: "assembled".into(),
            state: "running".into(),
            tty: Some("/dev/pts/3".into()),
            pid: Some(42),
            created: 100,
            started: Some(100),
            exit_status: None,
        };
        let text = table(&[instance], true, 130);
        let lines: Vec<&str> = text.lines().collect();
        assert_eq!(
            lines[0],
            "INSTANCE    IMAGE           TTY          PID     TYPE                UP"
        );
        assert_eq!(
            lines[1],
            "0123456789  alpine-with-a-l /dev/pts/3   42      assembled          30s"
        );
        assert_eq!(table(&[], false, 0), "");
    }
}
