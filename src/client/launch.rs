//! `cblock launch`: start a container from an image.

use std::process::ExitCode;

use argh::FromArgs;

use super::Globals;

#[derive(FromArgs)]
#[argh(subcommand, name = "launch")]
/// start a container from an image
pub struct Args {}

pub fn run(_globals: &Globals, _args: Args) -> crate::Result<ExitCode> {
    Err(crate::Error::NotImplemented("cblock launch"))
}
