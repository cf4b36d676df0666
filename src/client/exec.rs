//! `cblock exec`: run a command in a running container.

use std::process::ExitCode;

use argh::FromArgs;

use super::console::{request_response, run_session, unexpected, window_size, Session};
use super::{Error, Globals};
use crate::daemon::protocol::{Request, Response};

#[derive(FromArgs)]
#[argh(subcommand, name = "exec")]
/// run a command in a running container and exit with its status
pub struct Args {
    /// give the command a terminal (raw mode when stdin is a terminal)
    #[argh(switch, short = 't')]
    tty: bool,

    /// environment variable KEY=VALUE (repeatable)
    #[argh(option, short = 'e', long = "env")]
    env: Vec<String>,

    /// instance id (any unique prefix) or name
    #[argh(positional)]
    id: String,

    /// the command and its arguments, after `--`
    #[argh(positional, greedy)]
    command: Vec<String>,
}

pub fn run(globals: &Globals, args: Args) -> crate::Result<ExitCode> {
    if args.command.is_empty() {
        return Err(Error::Usage(
            "no command given; use cblock exec ID -- COMMAND [ARGS...]".into(),
        )
        .into());
    }
    let request = Request::Exec {
        id: args.id.clone(),
        argv: args.command,
        tty: args.tty,
        env: args.env,
        window: window_size(),
    };
    let (stream, response) = request_response(globals, &request)?;
    if response != Response::Streaming {
        return Err(unexpected(&response).into());
    }
    run_session(
        stream,
        &Session {
            id: args.id,
            detach: Vec::new(),
            raw: args.tty,
        },
    )
}
