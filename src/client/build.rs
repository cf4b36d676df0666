//! `cblock build`: build an image from a Cblockfile or Dockerfile. With
//! `--no-exec` it only reads and checks the file (and the context's ignore
//! file), so it needs no daemon.

use std::path::PathBuf;
use std::process::ExitCode;
use std::str::FromStr;

use argh::FromArgs;

use super::Globals;
use crate::cblockfile::{self, ignore::Patterns, Cblockfile};
use crate::image::Reference;

/// File names looked for in the context when `-f` is not given, in order.
pub const DEFAULT_FILES: [&str; 2] = ["Cblockfile", "Dockerfile"];

#[derive(FromArgs)]
#[argh(subcommand, name = "build")]
/// build an image from a Cblockfile or Dockerfile
pub struct Args {
    /// image name, optionally with a tag: NAME[:TAG]
    #[argh(option, short = 'n', from_str_fn(parse_name))]
    pub name: Option<(String, Option<String>)>,

    /// image tag (default latest); a tag given in --name takes precedence
    #[argh(option, short = 't', from_str_fn(parse_tag))]
    pub tag: Option<String>,

    /// the Cblockfile, relative to PATH, else to the current directory
    /// (default: PATH/Cblockfile, else PATH/Dockerfile)
    #[argh(option, short = 'f')]
    pub file: Option<PathBuf>,

    /// only parse and check the file; needs no daemon
    #[argh(switch, short = 'N')]
    pub no_exec: bool,

    /// run every step again instead of taking it from the build cache
    #[argh(switch)]
    pub no_cache: bool,

    /// build argument NAME=VALUE for ARG instructions; repeatable
    #[argh(option, from_str_fn(parse_build_arg))]
    pub build_arg: Vec<(String, String)>,

    /// stage to build, by name or 0-based index (default: the last stage)
    #[argh(option)]
    pub target: Option<String>,

    /// network of RUN steps: host (default) or none
    #[argh(option, default = "BuildNetwork::Host")]
    pub network: BuildNetwork,

    /// write an mtree file-integrity specification (sha256) into the image
    #[argh(switch, short = 'F')]
    pub file_integrity: bool,

    /// print only the image id
    #[argh(switch, short = 'q')]
    pub quiet: bool,

    /// build in this process against the image store in this data
    /// directory, without cblockd (the build cannot be detached from)
    #[argh(option, short = 'd')]
    pub data_directory: Option<PathBuf>,

    /// key sequence that detaches from the build's console, such as
    /// ctrl-p,ctrl-q (default: ctrl-q)
    #[argh(option, long = "detach-keys")]
    pub detach_keys: Option<String>,

    /// the build context: the directory whose files ADD and COPY read
    #[argh(positional)]
    pub path: PathBuf,
}

/// Network of the build's RUN steps.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BuildNetwork {
    Host,
    None,
}

impl FromStr for BuildNetwork {
    type Err = String;

    fn from_str(text: &str) -> Result<Self, Self::Err> {
        match text {
            "host" => Ok(BuildNetwork::Host),
            "none" => Ok(BuildNetwork::None),
            _ => Err(format!("invalid network {text:?}: use host or none")),
        }
    }
}

/// Parses `NAME[:TAG]` with the image store's naming rules, and returns the
/// tag only when one was given, so that `-t` can supply it otherwise.
fn parse_name(text: &str) -> Result<(String, Option<String>), String> {
    let reference = Reference::parse(text).map_err(|err| err.to_string())?;
    let tag = text.contains(':').then_some(reference.tag);
    Ok((reference.name, tag))
}

/// Parses `-t TAG` with the image store's rules for a tag.
fn parse_tag(text: &str) -> Result<String, String> {
    Reference::parse(&format!("image:{text}"))
        .map(|reference| reference.tag)
        .map_err(|_| {
            format!(
                "invalid tag {text:?}: use up to 128 letters, digits, '.', '_' and '-', starting with a letter, digit or '_'"
            )
        })
}

fn parse_build_arg(text: &str) -> Result<(String, String), String> {
    match text.split_once('=') {
        Some((name, value)) if !name.is_empty() => Ok((name.to_string(), value.to_string())),
        _ => Err(format!("invalid build argument {text:?}: write NAME=VALUE")),
    }
}

impl Args {
    /// Returns the image tag: from `--name NAME:TAG`, else `--tag`, else `latest`.
    pub fn image_tag(&self) -> &str {
        self.name
            .as_ref()
            .and_then(|(_, tag)| tag.as_deref())
            .or(self.tag.as_deref())
            .unwrap_or("latest")
    }

    /// Returns the path of the Cblockfile to read.
    pub fn cblockfile_path(&self) -> Result<PathBuf, crate::Error> {
        if let Some(file) = &self.file {
            let in_context = self.path.join(file);
            if file.is_absolute() || in_context.exists() || !file.exists() {
                return Ok(in_context);
            }
            return Ok(file.clone());
        }
        let found = DEFAULT_FILES
            .iter()
            .map(|name| self.path.join(name))
            .find(|path| path.exists());
        found.ok_or_else(|| crate::Error::Io {
            path: self.path.clone(),
            source: std::io::Error::new(
                std::io::ErrorKind::NotFound,
                "the build context has no Cblockfile or Dockerfile; add one or pass -f FILE",
            ),
        })
    }
}

pub fn run(globals: &Globals, args: Args) -> crate::Result<ExitCode> {
    let file = check(&args)?;
    if !args.no_exec {
        return match args.data_directory {
            Some(_) => build_here(&args, &file),
            None => build_with_daemon(globals, &args, &file),
        };
    }
    if !args.quiet {
        println!("{}", summary(&args, &file)?);
    }
    Ok(ExitCode::SUCCESS)
}

/// Sends the build to cblockd with its context, then attaches to the
/// build's console until it ends (its exit status is the client's) or the
/// user detaches. When cblockd builds from the cache alone there is no
/// console: the client prints the output it gets back.
fn build_with_daemon(globals: &Globals, args: &Args, file: &Cblockfile) -> crate::Result<ExitCode> {
    use super::console::{self, Session};
    use crate::daemon::protocol::{
        self as proto, BuildRequest, Kind, ProtocolError, Request, Response,
    };

    let detach = console::parse_detach_keys(
        args.detach_keys
            .as_deref()
            .unwrap_or(console::DEFAULT_DETACH_KEYS),
    )?;
    let path = args.cblockfile_path()?;
    let file_text = std::fs::read_to_string(&path).map_err(|source| crate::Error::Io {
        path: path.clone(),
        source,
    })?;
    let patterns = Patterns::load(&args.path)?;
    let request = BuildRequest {
        file_name: file.file.clone(),
        file_text,
        names: match &args.name {
            Some((name, _)) => vec![format!("{name}:{}", args.image_tag())],
            None => Vec::new(),
        },
        build_args: args.build_arg.clone(),
        target: args.target.clone(),
        network: match args.network {
            BuildNetwork::Host => "host".into(),
            BuildNetwork::None => "none".into(),
        },
        no_cache: args.no_cache,
        file_integrity: args.file_integrity,
        quiet: args.quiet,
        attach: true,
        window: console::window_size(),
        accept_cached: true,
    };

    let mut stream = console::connect(globals)?;
    let sent = proto::write_json(
        &mut stream,
        Kind::Request,
        &Request::Build(Box::new(request)),
    )
    .map_err(super::Error::from)
    .and_then(|()| send_context(&mut stream, args, &patterns));
    // cblockd may reject the request or the context and close the
    // connection; its error message is still readable.
    let response = proto::read_json::<_, Response>(&mut stream, Kind::Response);
    let id = match (sent, response) {
        (_, Err(ProtocolError::Remote(message))) => {
            return Err(super::Error::from(ProtocolError::Remote(message)).into())
        }
        (Err(err), _) => return Err(err.into()),
        (Ok(()), Err(err)) => return Err(super::Error::from(err).into()),
        (Ok(()), Ok(Response::Launched { id })) => id,
        (Ok(()), Ok(Response::Streaming)) => return print_cached_build(&mut stream),
        (Ok(()), Ok(other)) => return Err(console::unexpected(&other).into()),
    };
    if !args.quiet {
        eprintln!(
            "-- Build {id} started; Ctrl+Q detaches, `cblock console --name {id}` re-attaches"
        );
    }
    console::run_session(
        stream,
        &Session {
            id,
            detach,
            raw: true,
        },
    )
}

/// Copies the output of a build that cblockd completed from the build cache
/// to standard output, and returns the build's exit status.
fn print_cached_build(stream: &mut std::os::unix::net::UnixStream) -> crate::Result<ExitCode> {
    use crate::daemon::protocol::{self as proto, Kind};
    use std::io::Write;

    let mut stdout = std::io::stdout().lock();
    loop {
        let frame = proto::read_frame(stream).map_err(super::Error::from)?;
        match frame.kind {
            Kind::Output => {
                // A closed standard output loses the output, not the build.
                let _ = stdout
                    .write_all(&frame.payload)
                    .and_then(|()| stdout.flush());
            }
            Kind::Exit => {
                let status = proto::parse_exit(&frame.payload).unwrap_or(255);
                return Ok(super::console::exit_code(status));
            }
            Kind::Error => {
                let message = String::from_utf8_lossy(&frame.payload).into_owned();
                return Err(super::Error::Failed(message).into());
            }
            _ => {}
        }
    }
}

/// Sends the context as a tar stream in `Data` frames, then `Eof`, showing
/// progress on a terminal for contexts over a few megabytes.
fn send_context(
    stream: &mut std::os::unix::net::UnixStream,
    args: &Args,
    patterns: &Patterns,
) -> Result<(), super::Error> {
    use crate::daemon::protocol::{self as proto, Kind, MAX_CHUNK};
    use std::io::{IsTerminal, Write};

    /// Cuts a byte stream into `Data` frames.
    struct Framer<'a> {
        stream: &'a mut std::os::unix::net::UnixStream,
        buffer: Vec<u8>,
    }

    impl Write for Framer<'_> {
        fn write(&mut self, bytes: &[u8]) -> std::io::Result<usize> {
            let room = MAX_CHUNK - self.buffer.len();
            let taken = bytes.len().min(room);
            self.buffer.extend_from_slice(&bytes[..taken]);
            if self.buffer.len() == MAX_CHUNK {
                self.flush()?;
            }
            Ok(taken)
        }

        fn flush(&mut self) -> std::io::Result<()> {
            if !self.buffer.is_empty() {
                proto::write_frame(self.stream, Kind::Data, &self.buffer)
                    .map_err(|err| std::io::Error::other(err.to_string()))?;
                self.buffer.clear();
            }
            Ok(())
        }
    }

    const PROGRESS_FROM: u64 = 8 << 20;
    let show = std::io::stderr().is_terminal() && !args.quiet;
    let mut shown = false;
    let mut progress = |packed: crate::build::context::Packed| {
        if show && packed.bytes >= PROGRESS_FROM && packed.files.is_multiple_of(64) {
            eprint!(
                "\r-- Sending the build context: {} files, {:.1} MB",
                packed.files,
                packed.bytes as f64 / 1e6
            );
            shown = true;
        }
    };
    let mut framer = Framer {
        stream,
        buffer: Vec::with_capacity(MAX_CHUNK),
    };
    let packed = crate::build::context::pack(&args.path, patterns, &mut framer, &mut progress)
        .map_err(|err| super::Error::Failed(err.to_string()))?;
    if shown {
        eprintln!(
            "\r-- Sent the build context: {} files, {:.1} MB",
            packed.files,
            packed.bytes as f64 / 1e6
        );
    }
    proto::write_frame(framer.stream, Kind::Eof, &[]).map_err(super::Error::from)
}

/// Builds in this process against the store in the data directory.
fn build_here(args: &Args, file: &Cblockfile) -> crate::Result<ExitCode> {
    use crate::build::{self, context, job::Job};

    let data_dir = args
        .data_directory
        .clone()
        .unwrap_or_else(|| PathBuf::from(crate::platform::DEFAULT_DATA_DIR));
    let id = random_id()?;

    // The build reads a copy of the context without the ignored files, made
    // through the same tar stream the daemon will receive.
    let context_dir = data_dir.join("builds").join(format!("{id}-context"));
    std::fs::create_dir_all(&context_dir).map_err(|source| crate::Error::Io {
        path: context_dir.clone(),
        source,
    })?;
    let staged = (|| {
        let patterns = Patterns::load(&args.path)?;
        if !args.quiet {
            println!(
                "-- Preparing the build context from {}",
                args.path.display()
            );
        }
        context::stage(&args.path, &patterns, &context_dir).map_err(build::Error::from)?;
        Ok::<_, crate::Error>(())
    })();
    if let Err(err) = staged {
        let _ = std::fs::remove_dir_all(&context_dir);
        return Err(err);
    }

    let path = args.cblockfile_path()?;
    let job = Job {
        id,
        data_dir,
        context_dir,
        file_name: file.file.clone(),
        file_text: std::fs::read_to_string(&path).map_err(|source| crate::Error::Io {
            path: path.clone(),
            source,
        })?,
        names: match &args.name {
            Some((name, _)) => vec![format!("{name}:{}", args.image_tag())],
            None => Vec::new(),
        },
        build_args: args.build_arg.iter().cloned().collect(),
        target: args.target.clone(),
        network: match args.network {
            BuildNetwork::Host => "host".into(),
            BuildNetwork::None => "none".into(),
        },
        no_cache: args.no_cache,
        file_integrity: args.file_integrity,
        quiet: args.quiet,
        remove_context: true,
    };
    build::job::run(&job)?;
    Ok(ExitCode::SUCCESS)
}

/// Returns 10 random hex digits, the form of build and instance ids.
fn random_id() -> crate::Result<String> {
    use std::io::Read;
    let mut bytes = [0u8; 5];
    std::fs::File::open("/dev/urandom")
        .and_then(|mut random| random.read_exact(&mut bytes))
        .map_err(|source| crate::Error::Io {
            path: "/dev/urandom".into(),
            source,
        })?;
    Ok(bytes.iter().map(|b| format!("{b:02x}")).collect())
}

/// Describes what a build with `args` would do with `file`.
fn summary(args: &Args, file: &Cblockfile) -> crate::Result<String> {
    let instructions: usize = file
        .stages
        .iter()
        .map(|stage| stage.instructions.len())
        .sum();
    let target = target_stage(file, args.target.as_deref())?;
    let target_name = match &target.name {
        Some(name) => format!("{} ({name})", target.index),
        None => target.index.to_string(),
    };
    let image = match &args.name {
        Some((name, _)) => format!("{name}:{}", args.image_tag()),
        None => "an unnamed image".to_string(),
    };
    let mut options = vec![format!(
        "network {}",
        match args.network {
            BuildNetwork::Host => "host",
            BuildNetwork::None => "none",
        }
    )];
    if !args.build_arg.is_empty() {
        options.push(format!("{} build arguments", args.build_arg.len()));
    }
    if args.no_cache {
        options.push("no cache".to_string());
    }
    if args.file_integrity {
        options.push("file integrity".to_string());
    }
    Ok(format!(
        "{}: {} stages, {} instructions: checked; would build {image} from stage {target_name} (line {}) with {}",
        file.file,
        file.stages.len(),
        instructions,
        target.position.line,
        options.join(", ")
    ))
}

/// Reads and checks everything a build needs before it starts: the context
/// directory, its ignore file, the Cblockfile and the target stage.
pub fn check(args: &Args) -> crate::Result<Cblockfile> {
    if !args.path.is_dir() {
        return Err(crate::Error::Io {
            path: args.path.clone(),
            source: std::io::Error::new(
                std::io::ErrorKind::InvalidInput,
                "the build context must be a directory; pass the directory that holds the Cblockfile",
            ),
        });
    }
    Patterns::load(&args.path)?;
    let path = args.cblockfile_path()?;
    let file = cblockfile::parse_file(&path)?;
    target_stage(&file, args.target.as_deref())?;
    Ok(file)
}

/// Returns the stage `--target` names, or the last stage.
fn target_stage<'a>(
    file: &'a Cblockfile,
    target: Option<&str>,
) -> crate::Result<&'a cblockfile::Stage> {
    let found = match target {
        Some(target) => file.stage(target),
        None => file.final_stage(),
    };
    found.ok_or_else(|| {
        let stages: Vec<String> = file
            .stages
            .iter()
            .map(|stage| match &stage.name {
                Some(name) => format!("{} ({name})", stage.index),
                None => stage.index.to_string(),
            })
            .collect();
        cblockfile::Error::UnknownTarget {
            target: target.unwrap_or("").to_string(),
            file: file.file.clone(),
            stages: stages.join(", "),
        }
        .into()
    })
}
