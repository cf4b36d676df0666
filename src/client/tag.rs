//! `cblock tag`: give an image another name.

use std::path::PathBuf;
use std::process::ExitCode;

use argh::FromArgs;

use super::Globals;
use crate::image::{Reference, Store};

#[derive(FromArgs)]
#[argh(subcommand, name = "tag")]
/// give an image another name
pub struct Args {
    /// data directory of the store (default: the platform's cblockd data directory)
    #[argh(
        option,
        short = 'd',
        long = "data-directory",
        default = "PathBuf::from(crate::platform::DEFAULT_DATA_DIR)"
    )]
    data_directory: PathBuf,

    /// the image, as NAME[:TAG] or an image ID
    #[argh(positional)]
    source: String,

    /// the new name, as NAME[:TAG]
    #[argh(positional)]
    target: String,
}

pub fn run(_globals: &Globals, args: Args) -> crate::Result<ExitCode> {
    let target = Reference::parse(&args.target)?;
    let store = Store::open_recorded(&args.data_directory)?;
    store.tag(&args.source, &target)?;
    Ok(ExitCode::SUCCESS)
}
