//! `cblock forge`: create the forge image that FROM forge starts from.

use std::process::ExitCode;

use argh::FromArgs;

use super::Globals;

#[derive(FromArgs)]
#[argh(subcommand, name = "forge")]
/// create the forge image that FROM forge starts from
pub struct Args {}

pub fn run(_globals: &Globals, _args: Args) -> crate::Result<ExitCode> {
    Err(crate::Error::NotImplemented("cblock forge"))
}
