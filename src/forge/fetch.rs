//! `fetch`: downloads a URL to a file, for RUN steps in images built from the
//! forge. The cblocks binary acts as this tool when started under the name
//! `fetch`; its command line follows FreeBSD's fetch(1) for the options it
//! has.

use std::fs;
use std::io;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::Duration;

use argh::FromArgs;

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
    #[error("unsupported URL {0:?}: only http:// and https:// URLs can be fetched")]
    UnsupportedUrl(String),
    #[error("cannot derive a file name from {0:?}; give one with -o FILE")]
    NoFileName(String),
    #[error("fetching {url}: {reason}")]
    Request { url: String, reason: String },
    #[error("writing {path}: {source}")]
    Write { path: PathBuf, source: io::Error },
}

/// Runs the `fetch` role.
pub fn main(args: &[String]) -> crate::Result<ExitCode> {
    let args = crate::parse_or_exit!(Args, &["fetch"], args);
    fetch(args).map_err(|err| crate::Error::Forge(super::Error::Fetch(err)))
}

fn fetch(args: Args) -> Result<ExitCode, Error> {
    let lower = args.url.to_ascii_lowercase();
    if !lower.starts_with("http://") && !lower.starts_with("https://") {
        return Err(Error::UnsupportedUrl(args.url));
    }

    let remote_name = url_file_name(&args.url);
    let output = match args.output {
        Some(path) if path.is_dir() => {
            path.join(remote_name.ok_or_else(|| Error::NoFileName(args.url.clone()))?)
        }
        Some(path) => path,
        None => PathBuf::from(remote_name.ok_or_else(|| Error::NoFileName(args.url.clone()))?),
    };

    let bytes = download(&args.url, Duration::from_secs(args.timeout), &output)?;
    if !args.quiet {
        eprintln!("{}: {} bytes", output.display(), bytes);
    }
    Ok(ExitCode::SUCCESS)
}

/// Returns the last non-empty path segment of `url`, without its query.
fn url_file_name(url: &str) -> Option<String> {
    let after_scheme = url.split_once("://").map(|(_, rest)| rest)?;
    let path = after_scheme.split(['?', '#']).next()?;
    let (_, path) = path.split_once('/')?;
    path.rsplit('/')
        .find(|segment| !segment.is_empty())
        .map(str::to_string)
}

/// Downloads `url` into a temporary file beside `output`, renamed into
/// place once complete, so that a failed download leaves no partial file.
fn download(url: &str, timeout: Duration, output: &Path) -> Result<u64, Error> {
    let request_error = |reason: String| Error::Request {
        url: url.to_string(),
        reason,
    };
    let agent = ureq::AgentBuilder::new()
        .timeout_connect(timeout)
        .timeout_read(timeout)
        .build();
    let response = agent
        .get(url)
        .call()
        .map_err(|err| request_error(err.to_string()))?;

    let write_error = |source| Error::Write {
        path: output.to_path_buf(),
        source,
    };
    let file_name = output
        .file_name()
        .map(|name| name.to_string_lossy().into_owned())
        .unwrap_or_default();
    let partial = output.with_file_name(format!(".{file_name}.part"));
    let mut file = fs::File::create(&partial).map_err(write_error)?;

    let copied = io::copy(&mut response.into_reader(), &mut file)
        .and_then(|n| file.sync_all().map(|()| n))
        .and_then(|n| fs::rename(&partial, output).map(|()| n));
    match copied {
        Ok(n) => Ok(n),
        Err(err) => {
            let _ = fs::remove_file(&partial);
            Err(request_error(err.to_string()))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn file_name_from_url() {
        let cases = [
            ("https://example.org/a/b.tar.gz", Some("b.tar.gz")),
            ("http://example.org/a/b/?x=1", Some("b")),
            ("https://example.org", None),
            ("https://example.org/", None),
        ];
        for (url, expected) in cases {
            assert_eq!(url_file_name(url).as_deref(), expected, "url {url}");
        }
    }
}
