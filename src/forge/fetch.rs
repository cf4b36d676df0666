//! `fetch`: downloads a URL to a file, for RUN steps in images built from the
//! forge. The cblocks binary acts as this tool when started under the name
//! `fetch`; its command line follows FreeBSD's fetch(1) for the options it
//! has.

use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use argh::FromArgs;

use crate::build::download;

#[derive(FromArgs)]
/// Download a URL over HTTP or HTTPS (certificates are checked).
struct Args {
    /// write to this file (default: the last part of the URL's path; a
    /// directory receives the file under that name)
    #[argh(option, short = 'o')]
    output: Option<PathBuf>,

    /// print nothing but errors
    #[argh(switch, short = 'q')]
    quiet: bool,

    /// give up when the server sends nothing for this many seconds (default 60)
    #[argh(option, short = 'T', default = "60")]
    timeout: u64,

    /// the URL to download
    #[argh(positional)]
    url: String,
}

/// Errors of the fetch tool.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("cannot derive a file name from {0:?}; give one with -o FILE")]
    NoFileName(String),
    #[error(transparent)]
    Download(#[from] download::Error),
}

/// Runs the `fetch` role.
pub fn main(args: &[String]) -> crate::Result<ExitCode> {
    let args = crate::parse_or_exit!(Args, &["fetch"], args);
    fetch(args).map_err(|err| crate::Error::Forge(super::Error::Fetch(err)))
}

fn fetch(args: Args) -> Result<ExitCode, Error> {
    let remote_name = download::file_name(&args.url);
    let no_name = || Error::NoFileName(args.url.clone());
    let output = match args.output {
        Some(path) if path.is_dir() => path.join(remote_name.ok_or_else(no_name)?),
        Some(path) => path,
        None => PathBuf::from(remote_name.ok_or_else(no_name)?),
    };

    let request = download::Request {
        url: &args.url,
        timeout: Duration::from_secs(args.timeout),
        checksum: None,
        max_bytes: u64::MAX,
    };
    let done = download::download(&request, &output, &mut |_, _| {})?;
    if !args.quiet {
        eprintln!("{}: {} bytes", output.display(), done.bytes);
    }
    Ok(ExitCode::SUCCESS)
}
