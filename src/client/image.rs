//! `cblock image`: inspect, save and load images.

use std::process::ExitCode;

use argh::FromArgs;

use super::Globals;

#[derive(FromArgs)]
#[argh(subcommand, name = "image")]
/// inspect, save and load images
pub struct Args {}

pub fn run(_globals: &Globals, _args: Args) -> crate::Result<ExitCode> {
    Err(crate::Error::NotImplemented("cblock image"))
}
