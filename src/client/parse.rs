//! `cblock parse`: print the parse of a Cblockfile, as the syntax tree in
//! Docker's dump format or as checked stages and instructions in JSON.

use std::io::Write;
use std::path::PathBuf;
use std::process::ExitCode;
use std::str::FromStr;

use argh::FromArgs;

use super::Globals;
use crate::cblockfile;

#[derive(FromArgs)]
#[argh(subcommand, name = "parse")]
/// print the parse of a Cblockfile
pub struct Args {
    /// output format: dump (one S-expression per instruction, the syntax
    /// before any check) or json (the checked stages and instructions with
    /// their meaning); default dump
    #[argh(option, default = "Format::Dump")]
    pub format: Format,

    /// the Cblockfile or Dockerfile to read
    #[argh(positional)]
    pub file: PathBuf,
}

/// Output formats of `cblock parse`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Format {
    Dump,
    Json,
}

impl FromStr for Format {
    type Err = String;

    fn from_str(text: &str) -> Result<Self, Self::Err> {
        match text {
            "dump" => Ok(Format::Dump),
            "json" => Ok(Format::Json),
            _ => Err(format!("invalid format {text:?}: use dump or json")),
        }
    }
}

pub fn run(_globals: &Globals, args: Args) -> crate::Result<ExitCode> {
    let bytes = std::fs::read(&args.file).map_err(|source| cblockfile::Error::Io {
        context: format!("cannot read {}", args.file.display()),
        source,
    })?;
    let name = args.file.display().to_string();

    let output = match args.format {
        Format::Dump => {
            let tree = cblockfile::parse_syntax(&name, &bytes)?;
            cblockfile::dump::dump(&tree.nodes)
        }
        Format::Json => {
            let file = cblockfile::parse(&name, &bytes)?;
            let mut text = to_json(&file);
            text.push('\n');
            text
        }
    };

    let mut stdout = std::io::stdout().lock();
    match stdout
        .write_all(output.as_bytes())
        .and_then(|()| stdout.flush())
    {
        Ok(()) => Ok(ExitCode::SUCCESS),
        // A reader that stops early (`| head`) is not a failure.
        Err(err) if err.kind() == std::io::ErrorKind::BrokenPipe => Ok(ExitCode::SUCCESS),
        Err(source) => Err(crate::Error::Io {
            path: PathBuf::from("<stdout>"),
            source,
        }),
    }
}

/// Returns the JSON of `file`, with an `image` section that resolves what the
/// final stage's image runs.
pub fn to_json(file: &cblockfile::Cblockfile) -> String {
    let image = file.final_stage().map(|stage| {
        serde_json::json!({
            "stage": stage.index,
            "entrypoint": file.image_entrypoint(stage).map(|command| &command.argv),
            "cmd": file.image_cmd(stage).map(|command| &command.argv),
        })
    });
    let mut value = serde_json::to_value(file).unwrap_or_default();
    if let Some(object) = value.as_object_mut() {
        object.insert("image".to_string(), image.unwrap_or_default());
    }
    serde_json::to_string_pretty(&value).unwrap_or_default()
}
