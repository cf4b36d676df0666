//! `cblock rmi`: remove images.

use std::path::PathBuf;
use std::process::ExitCode;

use argh::FromArgs;

use super::Globals;
use crate::image::{Removed, Store};

#[derive(FromArgs)]
#[argh(subcommand, name = "rmi")]
/// remove images
pub struct Args {
    /// remove images even when containers or builds use them
    #[argh(switch, short = 'f')]
    force: bool,

    /// data directory of the store (default: the platform's cblockd data directory)
    #[argh(
        option,
        short = 'd',
        long = "data-directory",
        default = "PathBuf::from(crate::platform::DEFAULT_DATA_DIR)"
    )]
    data_directory: PathBuf,

    /// images to remove, as NAME[:TAG] or an image ID
    #[argh(positional, greedy)]
    images: Vec<String>,
}

pub fn run(_globals: &Globals, args: Args) -> crate::Result<ExitCode> {
    if args.images.is_empty() {
        eprintln!("cblock rmi: name at least one image, as NAME[:TAG] or an image ID");
        return Ok(ExitCode::from(crate::role::EXIT_USAGE));
    }
    let store = Store::open_recorded(&args.data_directory)?;

    // Every image is tried, so one failure does not leave the rest behind.
    let mut failed = false;
    for spec in &args.images {
        match store.remove(spec, args.force) {
            Ok(Removed::Untagged(name)) => println!("Untagged: {name}"),
            Ok(Removed::Deleted { name, id }) => {
                if let Some(name) = name {
                    println!("Untagged: {name}");
                }
                println!("Deleted: {id}");
            }
            Err(err) => {
                eprintln!("cblock rmi: {err}");
                failed = true;
            }
        }
    }
    Ok(if failed {
        ExitCode::from(crate::role::EXIT_FAILURE)
    } else {
        ExitCode::SUCCESS
    })
}
