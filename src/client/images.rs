//! `cblock images`: list images, or prune the unused ones.

use std::path::PathBuf;
use std::process::ExitCode;

use argh::FromArgs;

use super::Globals;
use crate::image::{ImageSummary, Store};

#[derive(FromArgs)]
#[argh(subcommand, name = "images")]
/// list images
pub struct Args {
    /// print only image IDs
    #[argh(switch, short = 'q')]
    quiet: bool,

    /// output format: table (default) or json
    #[argh(option, default = "String::from(\"table\")")]
    format: String,

    /// remove images without a name that nothing uses, and unused layers
    #[argh(switch, short = 'p')]
    prune: bool,

    /// data directory of the store (default: the platform's cblockd data directory)
    #[argh(
        option,
        short = 'd',
        long = "data-directory",
        default = "PathBuf::from(crate::platform::DEFAULT_DATA_DIR)"
    )]
    data_directory: PathBuf,
}

pub fn run(_globals: &Globals, args: Args) -> crate::Result<ExitCode> {
    if args.format != "table" && args.format != "json" {
        eprintln!(
            "cblock images: invalid --format {:?}; use table or json",
            args.format
        );
        return Ok(ExitCode::from(crate::role::EXIT_USAGE));
    }
    // NOTE: runs against the data directory in-process until cblockd serves
    // image commands over its socket.
    let store = match Store::open_recorded(&args.data_directory) {
        Ok(store) => store,
        // A data directory without a store has no images to list or prune.
        Err(crate::image::Error::NoStore(_)) if !args.prune => {
            if args.format == "json" {
                println!("[]");
            } else if !args.quiet {
                print!("{}", table(&[]));
            }
            return Ok(ExitCode::SUCCESS);
        }
        Err(err) => return Err(err.into()),
    };

    if args.prune {
        let report = store.prune()?;
        for id in &report.images {
            println!("Removing un-referenced image: {id}");
        }
        println!(
            "removed {} images, {} layers and {} blobs, freed {}",
            report.images.len(),
            report.layers.len(),
            report.blobs,
            format_size(report.bytes_freed)
        );
        return Ok(ExitCode::SUCCESS);
    }

    let images = store.images()?;
    if args.quiet {
        for summary in &images {
            println!("{}", summary.image.short_id());
        }
    } else if args.format == "json" {
        println!(
            "{}",
            serde_json::to_string_pretty(&images).expect("image summaries serialise")
        );
    } else {
        print!("{}", table(&images));
    }
    Ok(ExitCode::SUCCESS)
}

/// Formats the listing: one row per name, and one `<none>` row for an image
/// without names.
pub fn table(images: &[ImageSummary]) -> String {
    let mut out = format!(
        "{:<16} {:<16} {:<12} {:>12} {}\n",
        "IMAGE", "TAG", "ID", "SIZE", "CREATED"
    );
    for summary in images {
        let image = &summary.image;
        let created = image.created.as_deref().unwrap_or(&image.added);
        let created = created.replacen('T', " ", 1);
        let created = created.get(..19).unwrap_or(&created);
        let rows: Vec<(&str, &str)> = if summary.names.is_empty() {
            vec![("<none>", "<none>")]
        } else {
            summary
                .names
                .iter()
                .map(|n| (n.name.as_str(), n.tag.as_str()))
                .collect()
        };
        for (name, tag) in rows {
            out.push_str(&format!(
                "{:<16} {:<16} {:<12} {:>12} {}\n",
                name,
                tag,
                image.short_id(),
                format_size(image.size),
                created
            ));
        }
    }
    out
}

/// Formats a size with decimal units and two decimals, as `975.58M`.
pub fn format_size(bytes: u64) -> String {
    let units = ["B", "K", "M", "G", "T"];
    let mut value = bytes as f64;
    let mut unit = 0;
    while value >= 1000.0 && unit < units.len() - 1 {
        value /= 1000.0;
        unit += 1;
    }
    format!("{value:.2}{}", units[unit])
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sizes_use_decimal_units() {
        assert_eq!(format_size(0), "0.00B");
        assert_eq!(format_size(975_580_000), "975.58M");
        assert_eq!(format_size(1_500), "1.50K");
    }
}
