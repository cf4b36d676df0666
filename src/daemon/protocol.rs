//! The wire protocol between `cblock`, cblockd and the per-instance
//! supervisors.
//!
//! Every message is a frame with an 8-byte header: the magic `CB`, the
//! protocol version, the frame kind and the payload length as a big-endian
//! `u32`. Each kind has its own maximum payload size, checked before a byte
//! of the payload is read, so a peer can never make the reader allocate more
//! than that limit.
//!
//! Requests and responses are JSON (serde_json) inside `Request` and
//! `Response` frames. JSON is self-describing, so a decoding error names the
//! field at fault, and these messages are small and rare. Console bytes, the
//! hot path, travel raw in `Stdin`, `Output` and `Stderr` frames with no
//! encoding cost. After decoding, every request is checked field by field
//! against the limits below (`Request::validate`).
//!
//! Nothing in a request is ever handed to a shell: commands are argv
//! vectors that reach `execve` as they are.

use std::io::{self, Read, Write};

use serde::{Deserialize, Serialize};

/// Version of this protocol. A peer that sends another version gets an
/// `Error` frame that names the versions of both ends.
pub const VERSION: u8 = 1;
/// First two bytes of every frame.
pub const MAGIC: [u8; 2] = *b"CB";
/// Size of the frame header in bytes.
pub const HEADER_LEN: usize = 8;

/// Maximum size of a JSON request body.
pub const MAX_REQUEST: usize = 256 * 1024;
/// Maximum size of a JSON response body (a listing of many instances).
pub const MAX_RESPONSE: usize = 16 * 1024 * 1024;
/// Maximum size of an error message.
pub const MAX_ERROR: usize = 4096;
/// Maximum size of one chunk of console or process output.
pub const MAX_CHUNK: usize = 64 * 1024;

/// Maximum length of a name, image reference, path or environment entry.
pub const MAX_FIELD: usize = 4096;
/// Maximum number of entries in a list field (arguments, volumes, ports).
pub const MAX_LIST: usize = 1024;
/// Maximum total size of an argument vector in bytes.
pub const MAX_ARGV_BYTES: usize = 128 * 1024;

/// The kind of a frame, the fourth header byte.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(u8)]
pub enum Kind {
    /// A JSON request, the first frame of every connection.
    Request = 1,
    /// A JSON response.
    Response = 2,
    /// A UTF-8 error message; the connection ends after it.
    Error = 3,
    /// Keystrokes or input bytes for the instance or process.
    Stdin = 4,
    /// Console or standard output bytes.
    Output = 5,
    /// Standard error bytes of a process run without a terminal.
    Stderr = 6,
    /// A window size: rows and columns as big-endian `u16`.
    Resize = 7,
    /// The exit status of the instance or process as a big-endian `i32`.
    Exit = 8,
    /// End of input: the client has no more stdin, or upload bytes, to send.
    Eof = 9,
    /// Bytes of an upload: the build context's tar stream.
    Data = 10,
}

impl Kind {
    fn from_byte(byte: u8) -> Option<Kind> {
        Some(match byte {
            1 => Kind::Request,
            2 => Kind::Response,
            3 => Kind::Error,
            4 => Kind::Stdin,
            5 => Kind::Output,
            6 => Kind::Stderr,
            7 => Kind::Resize,
            8 => Kind::Exit,
            9 => Kind::Eof,
            10 => Kind::Data,
            _ => return None,
        })
    }

    /// Returns the maximum payload size of this kind in bytes.
    pub fn max_len(self) -> usize {
        match self {
            Kind::Request => MAX_REQUEST,
            Kind::Response => MAX_RESPONSE,
            Kind::Error => MAX_ERROR,
            Kind::Stdin | Kind::Output | Kind::Stderr | Kind::Data => MAX_CHUNK,
            Kind::Resize | Kind::Exit => 4,
            Kind::Eof => 0,
        }
    }
}

/// A decoded frame.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Frame {
    pub kind: Kind,
    pub payload: Vec<u8>,
}

/// Errors of reading, writing and decoding frames.
#[derive(Debug, thiserror::Error)]
pub enum ProtocolError {
    #[error("connection closed")]
    Closed,
    #[error("socket i/o failed: {0}")]
    Io(#[from] io::Error),
    #[error("malformed frame: header starts with {0:02x?} instead of \"CB\"; the peer is not a cblock client or daemon")]
    BadMagic([u8; 2]),
    #[error("protocol version {theirs} is not supported (this end speaks version {ours}); use a cblock client and cblockd of the same release")]
    Version { theirs: u8, ours: u8 },
    #[error("malformed frame: unknown frame kind {0}")]
    UnknownKind(u8),
    #[error("{kind:?} frame of {len} bytes exceeds the limit of {max} bytes")]
    TooLarge { kind: Kind, len: usize, max: usize },
    #[error("{kind:?} frame must be {expected} bytes, got {len}")]
    BadLength {
        kind: Kind,
        len: usize,
        expected: usize,
    },
    #[error("invalid {what}: {source}")]
    Json {
        what: &'static str,
        source: serde_json::Error,
    },
    #[error("expected a {expected:?} frame, got {got:?}")]
    Unexpected { expected: Kind, got: Kind },
    #[error("{0}")]
    Remote(String),
    #[error("invalid request: {0}")]
    Invalid(String),
}

/// Encodes one frame into `out`.
pub fn encode(kind: Kind, payload: &[u8], out: &mut Vec<u8>) {
    out.extend_from_slice(&MAGIC);
    out.push(VERSION);
    out.push(kind as u8);
    out.extend_from_slice(&(payload.len() as u32).to_be_bytes());
    out.extend_from_slice(payload);
}

/// Writes one frame with a single `write_all`, so frames from one writer
/// never interleave on the stream. Payloads over the kind's limit are
/// rejected here too, so this end never sends what the peer must drop.
pub fn write_frame<W: Write + ?Sized>(
    writer: &mut W,
    kind: Kind,
    payload: &[u8],
) -> Result<(), ProtocolError> {
    if payload.len() > kind.max_len() {
        return Err(ProtocolError::TooLarge {
            kind,
            len: payload.len(),
            max: kind.max_len(),
        });
    }
    let mut buf = Vec::with_capacity(HEADER_LEN + payload.len());
    encode(kind, payload, &mut buf);
    writer.write_all(&buf)?;
    Ok(())
}

/// Reads one frame. A clean end of stream before the header is
/// `ProtocolError::Closed`; a stream that ends inside a frame is an I/O error.
pub fn read_frame<R: Read + ?Sized>(reader: &mut R) -> Result<Frame, ProtocolError> {
    let mut header = [0u8; HEADER_LEN];
    let mut filled = 0;
    while filled < HEADER_LEN {
        match reader.read(&mut header[filled..]) {
            Ok(0) if filled == 0 => return Err(ProtocolError::Closed),
            Ok(0) => return Err(io::Error::from(io::ErrorKind::UnexpectedEof).into()),
            Ok(n) => filled += n,
            Err(err) if err.kind() == io::ErrorKind::Interrupted => {}
            Err(err) => return Err(err.into()),
        }
    }

    let (kind, len) = parse_header(&header)?;
    let mut payload = vec![0u8; len];
    reader.read_exact(&mut payload)?;
    Ok(Frame { kind, payload })
}

/// Checks a frame header and returns its kind and payload length.
pub fn parse_header(header: &[u8; HEADER_LEN]) -> Result<(Kind, usize), ProtocolError> {
    if header[..2] != MAGIC {
        return Err(ProtocolError::BadMagic([header[0], header[1]]));
    }
    if header[2] != VERSION {
        return Err(ProtocolError::Version {
            theirs: header[2],
            ours: VERSION,
        });
    }
    let kind = Kind::from_byte(header[3]).ok_or(ProtocolError::UnknownKind(header[3]))?;
    let len = u32::from_be_bytes([header[4], header[5], header[6], header[7]]) as usize;
    if len > kind.max_len() {
        return Err(ProtocolError::TooLarge {
            kind,
            len,
            max: kind.max_len(),
        });
    }
    let fixed = matches!(kind, Kind::Resize | Kind::Exit | Kind::Eof);
    if fixed && len != kind.max_len() {
        return Err(ProtocolError::BadLength {
            kind,
            len,
            expected: kind.max_len(),
        });
    }
    Ok((kind, len))
}

/// Writes a JSON value as a frame of `kind`.
pub fn write_json<W: Write + ?Sized, T: Serialize>(
    writer: &mut W,
    kind: Kind,
    value: &T,
) -> Result<(), ProtocolError> {
    let body = serde_json::to_vec(value).map_err(|source| ProtocolError::Json {
        what: "message",
        source,
    })?;
    write_frame(writer, kind, &body)
}

/// Reads a frame that must be `kind` with a JSON body. An `Error` frame in
/// its place becomes `ProtocolError::Remote` with the peer's message.
pub fn read_json<R: Read + ?Sized, T: for<'de> Deserialize<'de>>(
    reader: &mut R,
    kind: Kind,
) -> Result<T, ProtocolError> {
    let frame = read_frame(reader)?;
    if frame.kind == Kind::Error {
        return Err(ProtocolError::Remote(
            String::from_utf8_lossy(&frame.payload).into_owned(),
        ));
    }
    if frame.kind != kind {
        return Err(ProtocolError::Unexpected {
            expected: kind,
            got: frame.kind,
        });
    }
    let what = if kind == Kind::Request {
        "request"
    } else {
        "response"
    };
    serde_json::from_slice(&frame.payload).map_err(|source| ProtocolError::Json { what, source })
}

/// Writes an `Error` frame, cut to the size limit at a character boundary.
pub fn write_error<W: Write + ?Sized>(writer: &mut W, message: &str) -> Result<(), ProtocolError> {
    let mut end = message.len().min(MAX_ERROR);
    while !message.is_char_boundary(end) {
        end -= 1;
    }
    write_frame(writer, Kind::Error, &message.as_bytes()[..end])
}

/// Encodes a window size for a `Resize` frame.
pub fn resize_payload(rows: u16, cols: u16) -> [u8; 4] {
    let r = rows.to_be_bytes();
    let c = cols.to_be_bytes();
    [r[0], r[1], c[0], c[1]]
}

/// Decodes a `Resize` payload into rows and columns.
pub fn parse_resize(payload: &[u8]) -> Option<(u16, u16)> {
    let bytes: [u8; 4] = payload.try_into().ok()?;
    Some((
        u16::from_be_bytes([bytes[0], bytes[1]]),
        u16::from_be_bytes([bytes[2], bytes[3]]),
    ))
}

/// Decodes an `Exit` payload.
pub fn parse_exit(payload: &[u8]) -> Option<i32> {
    Some(i32::from_be_bytes(payload.try_into().ok()?))
}

/// A window size as the client's terminal reports it.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct WindowSize {
    pub rows: u16,
    pub cols: u16,
}

/// A bind mount or volume of a launch.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Volume {
    /// Mount type: `bind` for `SRC:DST[:ro]`, or the original's `TYPE`.
    pub kind: String,
    /// Host path (absolute).
    pub source: String,
    /// Path inside the container root (absolute, resolved inside the root).
    pub target: String,
    pub read_only: bool,
}

/// A published port: host port to container port.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Port {
    pub host: u16,
    pub container: u16,
    /// `tcp` or `udp`.
    pub protocol: String,
    /// True for the original's `H:C:public` form (bound on the egress
    /// interface instead of loopback).
    pub public: bool,
}

/// The settings of a `cblock launch` request.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct LaunchRequest {
    pub image: String,
    pub tag: String,
    /// Arguments after `--`; they replace the image's CMD.
    pub args: Vec<String>,
    pub entrypoint: Option<Vec<String>>,
    pub env: Vec<String>,
    pub workdir: Option<String>,
    pub user: Option<String>,
    pub hostname: Option<String>,
    /// `host` for `--host-networking`; other network modes plug in by name.
    pub network: String,
    pub volumes: Vec<Volume>,
    pub ports: Vec<Port>,
    pub tmpfs: Vec<String>,
    pub read_only: bool,
    pub memory_bytes: Option<u64>,
    pub pids_limit: Option<u64>,
    /// CPU limit in thousandths of a CPU.
    pub cpu_millis: Option<u64>,
    pub remove: bool,
    /// Whether the client attaches right after the launch on this connection.
    pub attach: bool,
    pub term: String,
    pub window: WindowSize,
}

/// The settings of a `cblock build` request. The build context follows the
/// request as `Data` frames of an uncompressed tar stream, ended by `Eof`.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct BuildRequest {
    /// The Cblockfile's name for messages, and its text.
    pub file_name: String,
    pub file_text: String,
    /// `name:tag` references the image gets.
    pub names: Vec<String>,
    pub build_args: Vec<(String, String)>,
    pub target: Option<String>,
    /// `host` or `none`.
    pub network: String,
    pub no_cache: bool,
    pub file_integrity: bool,
    pub quiet: bool,
    /// Whether the client attaches to the build's console right away.
    pub attach: bool,
    pub window: WindowSize,
    /// Whether the client accepts the response to a build whose every step
    /// is in the build cache: `Streaming`, the build's output in `Output`
    /// frames and an `Exit` frame, with no build instance. Absent (false)
    /// from older clients, which always get `Launched`.
    #[serde(default)]
    pub accept_cached: bool,
}

/// Maximum size of a Cblockfile sent with a build request.
pub const MAX_CBLOCKFILE: usize = 192 * 1024;

impl BuildRequest {
    fn validate(&self) -> Result<(), ProtocolError> {
        check_text("Cblockfile name", &self.file_name)?;
        if self.file_text.len() > MAX_CBLOCKFILE {
            return Err(ProtocolError::Invalid(format!(
                "the Cblockfile is {} bytes long, the limit is {MAX_CBLOCKFILE}",
                self.file_text.len()
            )));
        }
        check_list("image names", &self.names)?;
        let args: Vec<String> = self
            .build_args
            .iter()
            .map(|(name, value)| format!("{name}={value}"))
            .collect();
        check_env(&args)?;
        if let Some(target) = &self.target {
            check_text("target", target)?;
        }
        if self.network != "host" && self.network != "none" {
            return Err(ProtocolError::Invalid(format!(
                "build network {:?} is not host or none",
                self.network
            )));
        }
        Ok(())
    }
}

/// Starts a plain host process under a supervisor, without an image. Used
/// only by the test suite to exercise consoles, listings and recovery
/// before the container runtime exists; cblockd rejects it unless started
/// with `--enable-test-processes`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct TestProcessRequest {
    pub argv: Vec<String>,
    pub env: Vec<String>,
    pub name: Option<String>,
    /// Whether to start the process now instead of at the first attach.
    pub start: bool,
    pub remove: bool,
    pub window: WindowSize,
}

/// A request, the first frame of each connection to cblockd.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case", deny_unknown_fields)]
pub enum Request {
    /// Checks that the daemon is up and speaks this protocol.
    Ping,
    Launch(Box<LaunchRequest>),
    /// Builds an image; the context follows as `Data` frames.
    Build(Box<BuildRequest>),
    /// Attaches a console; the connection then carries console frames.
    Attach {
        id: String,
        window: WindowSize,
        /// Whether to replay the scrollback first.
        replay: bool,
    },
    List {
        all: bool,
    },
    /// Sends `signal` (the instance's stop signal when absent), then
    /// SIGKILL after `timeout_secs` if the instance is still running.
    Stop {
        id: String,
        signal: Option<i32>,
        timeout_secs: u64,
    },
    Kill {
        id: String,
    },
    Prune,
    Logs {
        id: String,
        follow: bool,
    },
    Exec {
        id: String,
        argv: Vec<String>,
        tty: bool,
        env: Vec<String>,
        window: WindowSize,
    },
    TestProcess(TestProcessRequest),
    /// Panics in the connection's thread, to show that the daemon survives
    /// it. Test suite only, like `TestProcess`.
    TestPanic,
}

/// One row of `cblock instances`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct InstanceInfo {
    pub id: String,
    pub name: Option<String>,
    pub image: String,
    /// `assembled` for a launched container, `building` for a build job.
    pub kind: String,
    /// `created`, `running`, `exited` or `lost` (the supervisor died).
    pub state: String,
    pub tty: Option<String>,
    pub pid: Option<i32>,
    /// Seconds since the Unix epoch.
    pub created: u64,
    pub started: Option<u64>,
    pub exit_status: Option<i32>,
}

/// A response of cblockd.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum Response {
    Pong {
        version: u8,
    },
    /// An instance was created; for an attaching launch, console frames follow.
    Launched {
        id: String,
    },
    /// The console is attached; console frames follow.
    Attached {
        id: String,
    },
    Instances {
        instances: Vec<InstanceInfo>,
    },
    Stopped {
        id: String,
        status: i32,
    },
    Pruned {
        ids: Vec<String>,
    },
    /// Output frames of logs, of an exec or of a build from the cache alone
    /// follow, ended by an `Exit` frame.
    Streaming,
}

fn check_text(field: &str, value: &str) -> Result<(), ProtocolError> {
    if value.len() > MAX_FIELD {
        return Err(ProtocolError::Invalid(format!(
            "{field} is {} bytes long, the limit is {MAX_FIELD}",
            value.len()
        )));
    }
    if value.contains('\0') {
        return Err(ProtocolError::Invalid(format!(
            "{field} {value:?} contains a NUL byte"
        )));
    }
    Ok(())
}

fn check_list(field: &str, values: &[String]) -> Result<(), ProtocolError> {
    if values.len() > MAX_LIST {
        return Err(ProtocolError::Invalid(format!(
            "{field} has {} entries, the limit is {MAX_LIST}",
            values.len()
        )));
    }
    let total: usize = values.iter().map(|v| v.len() + 1).sum();
    if total > MAX_ARGV_BYTES {
        return Err(ProtocolError::Invalid(format!(
            "{field} is {total} bytes long, the limit is {MAX_ARGV_BYTES}"
        )));
    }
    values.iter().try_for_each(|v| check_text(field, v))
}

fn check_env(values: &[String]) -> Result<(), ProtocolError> {
    check_list("environment", values)?;
    for entry in values {
        match entry.split_once('=') {
            Some((key, _)) if !key.is_empty() => {}
            _ => {
                return Err(ProtocolError::Invalid(format!(
                    "environment entry {entry:?} is not KEY=VALUE"
                )))
            }
        }
    }
    Ok(())
}

/// Checks an instance id or prefix: 1 to 64 characters of `[0-9a-zA-Z_.-]`.
pub fn check_id(id: &str) -> Result<(), ProtocolError> {
    let valid = !id.is_empty()
        && id.len() <= 64
        && id
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"_.-".contains(&b));
    if valid {
        Ok(())
    } else {
        let shown: String = id.chars().take(64).collect();
        let more = if shown.len() < id.len() { "..." } else { "" };
        Err(ProtocolError::Invalid(format!(
            "instance {shown:?}{more} is not a valid id or name; use the id shown by `cblock instances`"
        )))
    }
}

fn check_argv(argv: &[String]) -> Result<(), ProtocolError> {
    if argv.is_empty() {
        return Err(ProtocolError::Invalid(
            "the command is empty; give it after `--`".into(),
        ));
    }
    check_list("command", argv)
}

impl LaunchRequest {
    fn validate(&self) -> Result<(), ProtocolError> {
        check_text("image", &self.image)?;
        check_text("tag", &self.tag)?;
        if self.image.is_empty() {
            return Err(ProtocolError::Invalid(
                "the image name is empty; pass --name IMAGE[:TAG]".into(),
            ));
        }

        check_list("arguments", &self.args)?;
        if let Some(entrypoint) = &self.entrypoint {
            check_list("entrypoint", entrypoint)?;
        }
        check_env(&self.env)?;
        for (field, value) in [
            ("working directory", &self.workdir),
            ("user", &self.user),
            ("hostname", &self.hostname),
        ] {
            if let Some(value) = value {
                check_text(field, value)?;
            }
        }
        check_text("network", &self.network)?;
        check_text("terminal type", &self.term)?;

        check_list("tmpfs", &self.tmpfs)?;
        if self.volumes.len() > MAX_LIST || self.ports.len() > MAX_LIST {
            return Err(ProtocolError::Invalid(format!(
                "too many volumes or ports, the limit is {MAX_LIST} each"
            )));
        }
        for volume in &self.volumes {
            check_text("volume type", &volume.kind)?;
            check_text("volume source", &volume.source)?;
            check_text("volume target", &volume.target)?;
            if !volume.target.starts_with('/') {
                return Err(ProtocolError::Invalid(format!(
                    "volume target {:?} is not an absolute path",
                    volume.target
                )));
            }
        }
        for port in &self.ports {
            check_text("port protocol", &port.protocol)?;
        }
        Ok(())
    }
}

impl Request {
    /// Checks every field against its limit. The daemon calls this before
    /// acting on a request.
    pub fn validate(&self) -> Result<(), ProtocolError> {
        match self {
            Request::Ping | Request::Prune | Request::List { .. } | Request::TestPanic => Ok(()),
            Request::Launch(launch) => launch.validate(),
            Request::Build(build) => build.validate(),
            Request::Attach { id, .. } | Request::Kill { id } | Request::Logs { id, .. } => {
                check_id(id)
            }
            Request::Stop {
                id, timeout_secs, ..
            } => {
                check_id(id)?;
                if *timeout_secs > 24 * 3600 {
                    return Err(ProtocolError::Invalid(format!(
                        "stop timeout of {timeout_secs} seconds is over the limit of one day"
                    )));
                }
                Ok(())
            }
            Request::Exec { id, argv, env, .. } => {
                check_id(id)?;
                check_argv(argv)?;
                check_env(env)
            }
            Request::TestProcess(spawn) => {
                check_argv(&spawn.argv)?;
                check_env(&spawn.env)?;
                if let Some(name) = &spawn.name {
                    check_id(name)?;
                }
                Ok(())
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn frame_round_trip() {
        let mut buf = Vec::new();
        write_frame(&mut buf, Kind::Output, b"hello").unwrap();
        write_frame(&mut buf, Kind::Resize, &resize_payload(24, 80)).unwrap();
        let mut reader = &buf[..];
        let first = read_frame(&mut reader).unwrap();
        assert_eq!(first.kind, Kind::Output);
        assert_eq!(first.payload, b"hello");
        let second = read_frame(&mut reader).unwrap();
        assert_eq!(parse_resize(&second.payload), Some((24, 80)));
        assert!(matches!(
            read_frame(&mut reader),
            Err(ProtocolError::Closed)
        ));
    }

    #[test]
    fn header_rejects_other_version() {
        let header = [b'C', b'B', VERSION + 1, Kind::Request as u8, 0, 0, 0, 2];
        let err = parse_header(&header).unwrap_err();
        assert!(matches!(err, ProtocolError::Version { .. }), "{err}");
        assert!(err.to_string().contains("version 2"), "{err}");
    }

    #[test]
    fn header_rejects_oversized_payload() {
        let len = (MAX_CHUNK as u32 + 1).to_be_bytes();
        let header = [
            b'C',
            b'B',
            VERSION,
            Kind::Stdin as u8,
            len[0],
            len[1],
            len[2],
            len[3],
        ];
        assert!(matches!(
            parse_header(&header),
            Err(ProtocolError::TooLarge { .. })
        ));
    }

    #[test]
    fn header_rejects_bad_magic_and_kind() {
        let header = [b'G', b'E', b'T', b' ', b'/', 0, 0, 0];
        assert!(matches!(
            parse_header(&header),
            Err(ProtocolError::BadMagic(_))
        ));
        let header = [b'C', b'B', VERSION, 99, 0, 0, 0, 0];
        assert!(matches!(
            parse_header(&header),
            Err(ProtocolError::UnknownKind(99))
        ));
        let header = [b'C', b'B', VERSION, Kind::Resize as u8, 0, 0, 0, 3];
        assert!(matches!(
            parse_header(&header),
            Err(ProtocolError::BadLength { .. })
        ));
    }

    #[test]
    fn write_rejects_oversized_payload() {
        let mut buf = Vec::new();
        let big = vec![0u8; MAX_CHUNK + 1];
        assert!(write_frame(&mut buf, Kind::Output, &big).is_err());
        assert!(buf.is_empty());
    }

    #[test]
    fn request_json_round_trip() {
        let request = Request::Stop {
            id: "ab12".into(),
            signal: Some(15),
            timeout_secs: 10,
        };
        let mut buf = Vec::new();
        write_json(&mut buf, Kind::Request, &request).unwrap();
        let decoded: Request = read_json(&mut &buf[..], Kind::Request).unwrap();
        assert_eq!(decoded, request);
    }

    #[test]
    fn build_request_without_accept_cached() {
        // The request of a client from before `accept_cached` existed.
        let json = r#"{"type":"build","file_name":"Cblockfile","file_text":"FROM scratch\n",
            "names":["app:latest"],"build_args":[],"target":null,"network":"host",
            "no_cache":false,"file_integrity":false,"quiet":false,"attach":true,
            "window":{"rows":24,"cols":80}}"#;
        let request: Request = serde_json::from_str(json).unwrap();
        let Request::Build(build) = request else {
            panic!("expected a build request, got {request:?}");
        };
        assert!(!build.accept_cached);
        assert_eq!(build.names, ["app:latest"]);
    }

    #[test]
    fn validate_rejects_long_and_bad_fields() {
        let long = Request::Attach {
            id: "a".repeat(65),
            window: WindowSize::default(),
            replay: true,
        };
        assert!(long.validate().is_err());

        let spawn = Request::TestProcess(TestProcessRequest {
            argv: vec!["x".repeat(MAX_FIELD + 1)],
            ..Default::default()
        });
        assert!(spawn.validate().is_err());

        let env = Request::Exec {
            id: "ab".into(),
            argv: vec!["true".into()],
            tty: false,
            env: vec!["NOEQUALS".into()],
            window: WindowSize::default(),
        };
        assert!(env.validate().is_err());

        let nul = Request::Exec {
            id: "ab".into(),
            argv: vec!["a\0b".into()],
            tty: false,
            env: vec![],
            window: WindowSize::default(),
        };
        assert!(nul.validate().is_err());
    }

    #[test]
    fn error_frame_becomes_remote_error() {
        let mut buf = Vec::new();
        write_error(&mut buf, "instance abc not found").unwrap();
        let result: Result<Response, _> = read_json(&mut &buf[..], Kind::Response);
        match result {
            Err(ProtocolError::Remote(message)) => assert_eq!(message, "instance abc not found"),
            other => panic!("expected a remote error, got {other:?}"),
        }
    }
}
