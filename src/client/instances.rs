//! `cblock instances`: list, stop and kill containers.

use std::process::ExitCode;

use argh::FromArgs;

use super::Globals;

#[derive(FromArgs)]
#[argh(subcommand, name = "instances")]
/// list, stop and kill containers
pub struct Args {}

pub fn run(_globals: &Globals, _args: Args) -> crate::Result<ExitCode> {
    Err(crate::Error::NotImplemented("cblock instances"))
}
