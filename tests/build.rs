//! Builder tests: ADD downloads from a loopback HTTP server.

use std::fs;
use std::io::{BufRead, BufReader, Write};
use std::net::{TcpListener, TcpStream};
use std::path::PathBuf;
use std::thread;
use std::time::Duration;

use cblocks::build::download::{self, Checksum, Error, Request};

/// A temporary directory removed on drop, even when the test fails.
struct TempDir(PathBuf);

impl TempDir {
    fn new(label: &str) -> TempDir {
        let path =
            std::env::temp_dir().join(format!("cblocks-test-{label}-{}", std::process::id()));
        let _ = fs::remove_dir_all(&path);
        fs::create_dir_all(&path).unwrap();
        TempDir(path)
    }

    fn entries(&self) -> Vec<String> {
        let mut names: Vec<String> = fs::read_dir(&self.0)
            .unwrap()
            .map(|entry| entry.unwrap().file_name().to_string_lossy().into_owned())
            .collect();
        names.sort();
        names
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = fs::remove_dir_all(&self.0);
    }
}

const BODY: &[u8] = b"file served over loopback\n";

/// Serves a few fixed paths on 127.0.0.1 from a background thread:
/// `/file.txt` (200 with `BODY`), `/hang` (reads the request, never
/// answers) and anything else (404).
fn serve() -> String {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let address = listener.local_addr().unwrap();
    thread::spawn(move || {
        for stream in listener.incoming() {
            let Ok(stream) = stream else { continue };
            thread::spawn(move || answer(stream));
        }
    });
    format!("http://{address}")
}

fn answer(mut stream: TcpStream) {
    let mut reader = BufReader::new(stream.try_clone().unwrap());
    let mut request_line = String::new();
    reader.read_line(&mut request_line).unwrap();
    loop {
        let mut header = String::new();
        if reader.read_line(&mut header).unwrap() == 0 || header == "\r\n" {
            break;
        }
    }
    let path = request_line.split(' ').nth(1).unwrap_or("/").to_string();

    match path.as_str() {
        "/file.txt" => {
            let head = format!(
                "HTTP/1.1 200 OK\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
                BODY.len()
            );
            let _ = stream.write_all(head.as_bytes());
            let _ = stream.write_all(BODY);
        }
        "/hang" => thread::sleep(Duration::from_secs(30)),
        _ => {
            let _ = stream.write_all(
                b"HTTP/1.1 404 Not Found\r\nContent-Length: 0\r\nConnection: close\r\n\r\n",
            );
        }
    }
}

fn request(url: &str) -> Request<'_> {
    Request {
        url,
        timeout: Duration::from_secs(2),
        checksum: None,
        max_bytes: 1 << 20,
    }
}

fn sha256_hex(bytes: &[u8]) -> String {
    use sha2::{Digest, Sha256};
    format!("{:x}", Sha256::digest(bytes))
}

#[test]
fn download_file_with_checksum() {
    let base = serve();
    let dir = TempDir::new("dl-ok");
    let url = format!("{base}/file.txt");
    let checksum = Checksum::parse(&format!("sha256:{}", sha256_hex(BODY))).unwrap();
    let mut request = request(&url);
    request.checksum = Some(&checksum);
    let mut last_progress = 0;

    let output = dir.0.join("file.txt");
    let done = download::download(&request, &output, &mut |received, _| {
        last_progress = received
    })
    .unwrap();

    assert_eq!(fs::read(&output).unwrap(), BODY);
    assert_eq!(done.bytes, BODY.len() as u64);
    assert_eq!(done.sha256, sha256_hex(BODY));
    assert_eq!(last_progress, BODY.len() as u64);
    assert_eq!(dir.entries(), vec!["file.txt"]);
}

#[test]
fn download_bad_checksum_leaves_nothing() {
    let base = serve();
    let dir = TempDir::new("dl-sum");
    let url = format!("{base}/file.txt");
    let checksum = Checksum::parse(&format!("sha256:{}", "0".repeat(64))).unwrap();
    let mut request = request(&url);
    request.checksum = Some(&checksum);

    let err = download::download(&request, &dir.0.join("file.txt"), &mut |_, _| {}).unwrap_err();

    assert!(matches!(err, Error::ChecksumMismatch { .. }), "{err:?}");
    assert!(err.to_string().contains(&sha256_hex(BODY)), "{err}");
    assert_eq!(dir.entries(), Vec::<String>::new());
}

#[test]
fn download_not_found_names_status() {
    let base = serve();
    let dir = TempDir::new("dl-404");
    let url = format!("{base}/missing.tar.gz");

    let err = download::download(&request(&url), &dir.0.join("x"), &mut |_, _| {}).unwrap_err();

    let message = err.to_string();
    assert!(message.contains("404 Not Found"), "{message}");
    assert!(message.contains(&url), "{message}");
    assert_eq!(dir.entries(), Vec::<String>::new());
}

#[test]
fn download_hanging_server_times_out() {
    let base = serve();
    let dir = TempDir::new("dl-hang");
    let url = format!("{base}/hang");

    let err = download::download(&request(&url), &dir.0.join("x"), &mut |_, _| {}).unwrap_err();

    assert!(matches!(err, Error::TimedOut { seconds: 2, .. }), "{err:?}");
    assert!(err.to_string().contains("no data for 2 seconds"), "{err}");
    assert_eq!(dir.entries(), Vec::<String>::new());
}

#[test]
fn download_rejects_other_schemes() {
    let dir = TempDir::new("dl-scheme");
    let err = download::download(
        &request("file:///etc/passwd"),
        &dir.0.join("x"),
        &mut |_, _| {},
    )
    .unwrap_err();
    assert!(matches!(err, Error::UnsupportedUrl(_)), "{err:?}");
}
