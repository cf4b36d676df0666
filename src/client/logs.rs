//! `cblock logs`: print a container's console log.

use std::io::Write;
use std::process::ExitCode;

use argh::FromArgs;

use super::console::{request_response, unexpected};
use super::{Error, Globals};
use crate::daemon::protocol::{self as proto, Kind, ProtocolError, Request, Response};

#[derive(FromArgs)]
#[argh(subcommand, name = "logs")]
/// print a container's console log
pub struct Args {
    /// keep printing new output until the container exits
    #[argh(switch, short = 'f')]
    follow: bool,

    /// instance id (any unique prefix) or name
    #[argh(positional)]
    id: String,
}

pub fn run(globals: &Globals, args: Args) -> crate::Result<ExitCode> {
    let request = Request::Logs {
        id: args.id,
        follow: args.follow,
    };
    let (mut stream, response) = request_response(globals, &request)?;
    if response != Response::Streaming {
        return Err(unexpected(&response).into());
    }

    let mut stdout = std::io::stdout().lock();
    loop {
        let frame = match proto::read_frame(&mut stream) {
            Ok(frame) => frame,
            Err(ProtocolError::Closed) => break,
            Err(err) => return Err(Error::from(err).into()),
        };
        match frame.kind {
            Kind::Output => {
                let written = stdout
                    .write_all(&frame.payload)
                    .and_then(|()| stdout.flush());
                if written.is_err() {
                    // The reader went away (a closed pipe); that is not an error.
                    break;
                }
            }
            Kind::Exit => break,
            Kind::Error => {
                return Err(
                    Error::Usage(String::from_utf8_lossy(&frame.payload).into_owned()).into(),
                )
            }
            _ => {}
        }
    }
    Ok(ExitCode::SUCCESS)
}
