//! Downloads for `ADD URL`: one file over HTTP or HTTPS (certificates are
//! checked against the Mozilla roots that ureq carries), into a temporary
//! file that is renamed into place only when it is complete and matches its
//! `--checksum`.

use std::fs;
use std::io::{self, Read, Write};
use std::path::{Path, PathBuf};
use std::time::Duration;

use sha2::{Digest, Sha256};

/// Errors of a download.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("unsupported URL {0:?}: ADD fetches only http:// and https:// URLs")]
    UnsupportedUrl(String),
    #[error("invalid checksum {0:?}: write it as sha256:<64 hex digits>")]
    InvalidChecksum(String),
    #[error("fetching {url}: the server answered {status} {reason}")]
    Status {
        url: String,
        status: u16,
        reason: String,
    },
    #[error("fetching {url}: no data for {seconds} seconds; check that the server is up or raise the timeout")]
    TimedOut { url: String, seconds: u64 },
    #[error("fetching {url}: {reason}")]
    Transport { url: String, reason: String },
    #[error("fetching {url}: larger than the limit of {limit} bytes")]
    TooLarge { url: String, limit: u64 },
    #[error("checksum mismatch for {url}: expected sha256:{expected}, got sha256:{actual}")]
    ChecksumMismatch {
        url: String,
        expected: String,
        actual: String,
    },
    #[error("writing {path}: {source}")]
    Write { path: PathBuf, source: io::Error },
}

/// An expected SHA-256 digest, from `ADD --checksum=sha256:HEX`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Checksum(String);

impl Checksum {
    /// Parses `sha256:` followed by 64 hex digits (either case).
    pub fn parse(text: &str) -> Result<Checksum, Error> {
        let hex = text
            .strip_prefix("sha256:")
            .ok_or_else(|| Error::InvalidChecksum(text.to_string()))?;
        if hex.len() != 64 || !hex.bytes().all(|b| b.is_ascii_hexdigit()) {
            return Err(Error::InvalidChecksum(text.to_string()));
        }
        Ok(Checksum(hex.to_ascii_lowercase()))
    }

    /// Returns the digest as 64 lower-case hex digits.
    pub fn hex(&self) -> &str {
        &self.0
    }
}

/// Settings of one download.
#[derive(Debug, Clone)]
pub struct Request<'a> {
    pub url: &'a str,
    /// Longest wait for a connection or for the next bytes.
    pub timeout: Duration,
    pub checksum: Option<&'a Checksum>,
    /// Largest body accepted, in bytes.
    pub max_bytes: u64,
}

/// What a finished download delivered.
#[derive(Debug, Clone)]
pub struct Downloaded {
    pub bytes: u64,
    /// Hex SHA-256 digest of the body.
    pub sha256: String,
}

/// Returns true when `url` has a scheme that `download` accepts.
pub fn is_url(text: &str) -> bool {
    let lower = text.to_ascii_lowercase();
    lower.starts_with("http://") || lower.starts_with("https://")
}

/// Returns the last non-empty segment of the URL's path, without query or
/// fragment: the file name that `ADD URL DIR/` gives the download.
pub fn file_name(url: &str) -> Option<String> {
    let rest = url.split_once("://").map(|(_, rest)| rest)?;
    let path = rest.split(['?', '#']).next()?;
    let (_, path) = path.split_once('/')?;
    path.rsplit('/')
        .find(|segment| !segment.is_empty() && *segment != "." && *segment != "..")
        .map(str::to_string)
}

/// Downloads `request.url` to `output`. `progress` is called with the bytes
/// received so far and the length the server announced, if any.
pub fn download(
    request: &Request,
    output: &Path,
    progress: &mut dyn FnMut(u64, Option<u64>),
) -> Result<Downloaded, Error> {
    if !is_url(request.url) {
        return Err(Error::UnsupportedUrl(request.url.to_string()));
    }
    let url = request.url.to_string();
    let agent = ureq::AgentBuilder::new()
        .timeout_connect(request.timeout)
        .timeout_read(request.timeout)
        .timeout_write(request.timeout)
        .build();

    let response = match agent.get(&url).call() {
        Ok(response) => response,
        Err(ureq::Error::Status(status, response)) => {
            return Err(Error::Status {
                url,
                status,
                reason: response.status_text().to_string(),
            })
        }
        Err(ureq::Error::Transport(transport)) => {
            return Err(transport_error(
                &url,
                request.timeout,
                &transport.to_string(),
            ))
        }
    };
    let announced = response
        .header("Content-Length")
        .and_then(|value| value.parse::<u64>().ok());
    if let Some(length) = announced {
        if length > request.max_bytes {
            return Err(Error::TooLarge {
                url,
                limit: request.max_bytes,
            });
        }
    }

    let partial = partial_path(output);
    let result = receive(
        request,
        response.into_reader(),
        &partial,
        announced,
        progress,
    )
    .and_then(|downloaded| {
        fs::rename(&partial, output).map_err(|source| Error::Write {
            path: output.to_path_buf(),
            source,
        })?;
        Ok(downloaded)
    });
    if result.is_err() {
        let _ = fs::remove_file(&partial);
    }
    result
}

fn partial_path(output: &Path) -> PathBuf {
    let name = output
        .file_name()
        .map(|name| name.to_string_lossy().into_owned())
        .unwrap_or_default();
    output.with_file_name(format!(".{name}.part"))
}

fn transport_error(url: &str, timeout: Duration, reason: &str) -> Error {
    if reason.contains("timed out") || reason.contains("WouldBlock") {
        Error::TimedOut {
            url: url.to_string(),
            seconds: timeout.as_secs(),
        }
    } else {
        Error::Transport {
            url: url.to_string(),
            reason: reason.to_string(),
        }
    }
}

fn receive(
    request: &Request,
    mut body: impl Read,
    partial: &Path,
    announced: Option<u64>,
    progress: &mut dyn FnMut(u64, Option<u64>),
) -> Result<Downloaded, Error> {
    let write_error = |source| Error::Write {
        path: partial.to_path_buf(),
        source,
    };
    let mut file = fs::File::create(partial).map_err(write_error)?;
    let mut hasher = Sha256::new();
    let mut buffer = vec![0u8; 64 * 1024];
    let mut total: u64 = 0;

    loop {
        let n = match body.read(&mut buffer) {
            Ok(0) => break,
            Ok(n) => n,
            Err(err) if err.kind() == io::ErrorKind::Interrupted => continue,
            Err(err) => {
                return Err(transport_error(
                    request.url,
                    request.timeout,
                    &err.to_string(),
                ))
            }
        };
        total += n as u64;
        if total > request.max_bytes {
            return Err(Error::TooLarge {
                url: request.url.to_string(),
                limit: request.max_bytes,
            });
        }
        hasher.update(&buffer[..n]);
        file.write_all(&buffer[..n]).map_err(write_error)?;
        progress(total, announced);
    }
    file.sync_all().map_err(write_error)?;

    let sha256 = format!("{:x}", hasher.finalize());
    if let Some(expected) = request.checksum {
        if expected.hex() != sha256 {
            return Err(Error::ChecksumMismatch {
                url: request.url.to_string(),
                expected: expected.hex().to_string(),
                actual: sha256,
            });
        }
    }
    Ok(Downloaded {
        bytes: total,
        sha256,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn checksum_parse_cases() {
        let good = format!("sha256:{}", "A".repeat(64));
        assert_eq!(Checksum::parse(&good).unwrap().hex(), "a".repeat(64));
        for bad in [
            "sha256:abc",
            "md5:00",
            &format!("sha256:{}", "g".repeat(64)),
        ] {
            let err = Checksum::parse(bad).unwrap_err().to_string();
            assert!(err.contains("sha256:<64 hex digits>"), "{bad}: {err}");
        }
    }

    #[test]
    fn file_name_of_urls() {
        let cases = [
            ("https://h/a/b.tar.gz?sig=1", Some("b.tar.gz")),
            ("https://h/dir/", Some("dir")),
            ("https://h/a/..", Some("a")),
            ("https://h", None),
        ];
        for (url, expected) in cases {
            assert_eq!(file_name(url).as_deref(), expected, "{url}");
        }
    }
}
