//! `cblock build`: build an image from a Cblockfile or Dockerfile.

use std::process::ExitCode;

use argh::FromArgs;

use super::Globals;

#[derive(FromArgs)]
#[argh(subcommand, name = "build")]
/// build an image from a Cblockfile or Dockerfile
pub struct Args {}

pub fn run(_globals: &Globals, _args: Args) -> crate::Result<ExitCode> {
    Err(crate::Error::NotImplemented("cblock build"))
}
