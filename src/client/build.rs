//! `cblock build`: build an image from a Cblockfile or Dockerfile. With
//! `--no-exec` it only reads and checks the file (and the context's ignore
//! file), so it needs no daemon.

use std::path::PathBuf;
use std::process::ExitCode;
use std::str::FromStr;

use argh::FromArgs;

use super::Globals;
use crate::cblockfile::{self, ignore::Patterns, Cblockfile};

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

    /// data directory of the image store, for a build run without the
    /// daemon (default: /var/lib/cblocks)
    #[argh(option, short = 'd')]
    pub data_directory: Option<PathBuf>,

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

fn parse_name(text: &str) -> Result<(String, Option<String>), String> {
    let (name, tag) = match text.split_once(':') {
        Some((name, tag)) => (name, Some(parse_tag(tag)?)),
        None => (text, None),
    };
    let valid = !name.is_empty()
        && name.starts_with(|ch: char| ch.is_ascii_lowercase() || ch.is_ascii_digit())
        && name
            .chars()
            .all(|ch| ch.is_ascii_lowercase() || ch.is_ascii_digit() || "._-/".contains(ch));
    if !valid {
        return Err(format!(
            "invalid image name {name:?}: use lower-case letters, digits, '.', '_', '-' and '/', starting with a letter or digit"
        ));
    }
    Ok((name.to_string(), tag))
}

fn parse_tag(text: &str) -> Result<String, String> {
    let valid = (1..=128).contains(&text.len())
        && !text.starts_with(['.', '-'])
        && text
            .chars()
            .all(|ch| ch.is_ascii_alphanumeric() || "._-".contains(ch));
    if !valid {
        return Err(format!(
            "invalid tag {text:?}: use up to 128 letters, digits, '.', '_' and '-', not starting with '.' or '-'"
        ));
    }
    Ok(text.to_string())
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

pub fn run(_globals: &Globals, args: Args) -> crate::Result<ExitCode> {
    let file = check(&args)?;
    if !args.no_exec {
        // TODO: send the context to cblockd and stream its output instead,
        // so that a build can be detached from and re-attached to.
        return build_here(&args, &file);
    }
    if !args.quiet {
        println!("{}", summary(&args, &file)?);
    }
    Ok(ExitCode::SUCCESS)
}

/// Builds in this process against the store in the data directory.
fn build_here(args: &Args, file: &Cblockfile) -> crate::Result<ExitCode> {
    use crate::build::{self, context, runner::RuntimeRunner, Options, Output};
    use crate::image::{Reference, Store};

    let started = std::time::Instant::now();
    let data_dir = args
        .data_directory
        .clone()
        .unwrap_or_else(|| PathBuf::from(crate::platform::DEFAULT_DATA_DIR));
    let store = Store::open_recorded(&data_dir)?;
    let id = random_id()?;

    let names = match &args.name {
        Some((name, _)) => vec![Reference::parse(&format!("{name}:{}", args.image_tag()))?],
        None => Vec::new(),
    };
    let options = Options {
        names,
        build_args: args.build_arg.iter().cloned().collect(),
        target: args.target.clone(),
        network: match args.network {
            BuildNetwork::Host => build::Network::Host,
            BuildNetwork::None => build::Network::None,
        },
        no_cache: args.no_cache,
        file_integrity: args.file_integrity,
        quiet: args.quiet,
    };

    // The build reads a copy of the context without the ignored files, made
    // through the same tar stream the daemon will receive.
    let context_dir = data_dir.join("builds").join(format!("{id}-context"));
    let result = (|| {
        std::fs::create_dir_all(&context_dir).map_err(|source| crate::Error::Io {
            path: context_dir.clone(),
            source,
        })?;
        let patterns = Patterns::load(&args.path)?;
        if !args.quiet {
            println!(
                "-- Preparing the build context from {}",
                args.path.display()
            );
        }
        context::stage(&args.path, &patterns, &context_dir).map_err(build::Error::from)?;

        let runner = RuntimeRunner {
            state_root: PathBuf::from(crate::runtime::DEFAULT_ROOT),
            runtime_exe: None,
        };
        let output: Output = std::sync::Mutex::new(Box::new(std::io::stdout()));
        Ok::<_, crate::Error>(build::build(
            &store,
            &runner,
            file,
            &context_dir,
            &options,
            &id,
            &output,
        )?)
    })();
    let _ = std::fs::remove_dir_all(&context_dir);

    let built = result?;
    if args.quiet {
        println!("{}", built.image.id);
    } else {
        println!(
            "-- Build finished in {:.1} seconds: {} steps run, {} from the cache",
            started.elapsed().as_secs_f64(),
            built.executed_steps,
            built.cached_steps
        );
    }
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
