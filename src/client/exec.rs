//! `cblock exec`: run a command in a running container.

use std::process::ExitCode;

use argh::FromArgs;

use super::Globals;

#[derive(FromArgs)]
#[argh(subcommand, name = "exec")]
/// run a command in a running container
pub struct Args {}

pub fn run(_globals: &Globals, _args: Args) -> crate::Result<ExitCode> {
    Err(crate::Error::NotImplemented("cblock exec"))
}
