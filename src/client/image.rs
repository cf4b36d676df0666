//! `cblock image`: inspect, save and load images.

use std::fs::{self, File};
use std::io::{BufReader, BufWriter};
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use argh::FromArgs;

use super::Globals;
use crate::image::Store;

#[derive(FromArgs)]
#[argh(subcommand, name = "image")]
/// inspect, save and load images
pub struct Args {
    /// data directory of the store (default: the platform's cblockd data directory)
    #[argh(
        option,
        short = 'd',
        long = "data-directory",
        default = "PathBuf::from(crate::platform::DEFAULT_DATA_DIR)"
    )]
    data_directory: PathBuf,

    #[argh(subcommand)]
    command: Command,
}

#[derive(FromArgs)]
#[argh(subcommand)]
enum Command {
    Inspect(Inspect),
    Save(Save),
    Load(Load),
}

#[derive(FromArgs)]
#[argh(subcommand, name = "inspect")]
/// print an image's record, manifest and configuration as JSON
struct Inspect {
    /// the image, as NAME[:TAG] or an image ID
    #[argh(positional)]
    image: String,
}

#[derive(FromArgs)]
#[argh(subcommand, name = "save")]
/// write images to an OCI image layout archive
struct Save {
    /// archive file to write
    #[argh(option, short = 'o')]
    output: PathBuf,

    /// images to save, as NAME[:TAG] or an image ID
    #[argh(positional, greedy)]
    images: Vec<String>,
}

#[derive(FromArgs)]
#[argh(subcommand, name = "load")]
/// load images from an OCI archive or a docker-archive
struct Load {
    /// archive file to read
    #[argh(option, short = 'i')]
    input: PathBuf,
}

pub fn run(_globals: &Globals, args: Args) -> crate::Result<ExitCode> {
    let store = Store::open_recorded(&args.data_directory)?;
    match args.command {
        Command::Inspect(inspect) => {
            let json = inspect_json(&store, &inspect.image)?;
            println!(
                "{}",
                serde_json::to_string_pretty(&json).expect("JSON values serialise")
            );
        }
        Command::Save(save) => {
            if save.images.is_empty() {
                eprintln!("cblock image save: name at least one image to save");
                return Ok(ExitCode::from(crate::role::EXIT_USAGE));
            }
            save_to(&store, &save.images, &save.output)?;
        }
        Command::Load(load) => {
            let file = File::open(&load.input).map_err(|source| crate::Error::Io {
                path: load.input.clone(),
                source,
            })?;
            let report =
                store.load(&mut BufReader::new(file), &load.input.display().to_string())?;
            for skipped in &report.skipped_names {
                eprintln!("cblock image load: {skipped}");
            }
            for (id, names) in &report.images {
                let names: Vec<String> = names.iter().map(|n| n.to_string()).collect();
                println!("Loaded image: {id} {}", names.join(" "));
            }
        }
    }
    Ok(ExitCode::SUCCESS)
}

/// Returns the JSON `cblock image inspect` prints.
pub fn inspect_json(store: &Store, spec: &str) -> crate::Result<serde_json::Value> {
    let image = store.resolve(spec)?;
    let names: Vec<String> = store
        .images()?
        .into_iter()
        .find(|s| s.image.id == image.id)
        .map(|s| s.names.iter().map(|n| n.to_string()).collect())
        .unwrap_or_default();
    let mut layers = Vec::new();
    for chain_id in &image.layers {
        layers.push(serde_json::to_value(store.layer(chain_id)?).expect("layers serialise"));
    }
    Ok(serde_json::json!({
        "Id": image.id,
        "Names": names,
        "Created": image.created,
        "Added": image.added,
        "Size": image.size,
        "Users": store.users(&image.id)?,
        "Manifest": store.manifest(&image)?,
        "Config": store.config(&image)?,
        "Layers": layers,
    }))
}

/// Writes the archive to a temporary file beside `output` and renames it, so
/// a failed save leaves no partial archive.
fn save_to(store: &Store, images: &[String], output: &Path) -> crate::Result<()> {
    let mut temp = output.as_os_str().to_owned();
    temp.push(".partial");
    let temp = PathBuf::from(temp);
    let io_error = |source| crate::Error::Io {
        path: temp.clone(),
        source,
    };
    let specs: Vec<&str> = images.iter().map(String::as_str).collect();
    let result = (|| {
        let mut writer = BufWriter::new(File::create(&temp).map_err(io_error)?);
        store.save(&specs, &mut writer)?;
        let file = writer.into_inner().map_err(|e| io_error(e.into_error()))?;
        file.sync_all().map_err(io_error)?;
        fs::rename(&temp, output).map_err(io_error)
    })();
    if result.is_err() {
        let _ = fs::remove_file(&temp);
    }
    result
}
