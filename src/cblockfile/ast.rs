//! The checked Cblockfile: stages of typed instructions, each with its
//! position and its meaning resolved as far as the file alone allows.
//!
//! Words that Docker expands when the build reaches them (`ENV` values,
//! `COPY` paths, `WORKDIR`, ...) are kept as [`Word`]s: the text as written
//! plus a preview expanded with the variables the file itself defines. The
//! builder expands [`Word::raw`] against the build's full environment with
//! [`Word::expand`].

use std::time::Duration;

use serde::Serialize;

use super::error::Position;
use super::heredoc::Heredoc;
use super::word::{Lexer, Vars, WordError};

/// The shell of shell-form commands when no `SHELL` instruction sets one.
pub const DEFAULT_SHELL: [&str; 2] = ["/bin/sh", "-c"];

/// A parsed and checked Cblockfile.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Cblockfile {
    /// The file name as given.
    pub file: String,
    /// The escape character (`\`, or `` ` `` after `# escape=``).
    pub escape: char,
    /// The `# syntax=` parser directive, if any.
    pub syntax: Option<String>,
    /// `ARG`s before the first `FROM`: usable in `FROM` lines, and inside a
    /// stage after an `ARG NAME` without a value.
    pub global_args: Vec<ArgDecl>,
    pub stages: Vec<Stage>,
    /// `ENTRYPOINT` given before the first `FROM` (an original Cblockfile
    /// form): it applies to the final image unless its stage sets its own.
    pub entrypoint: Option<Located<CommandLine>>,
    /// `CMD` given before the first `FROM`, like `entrypoint`.
    pub cmd: Option<Located<CommandLine>>,
    /// `OSRELEASE`: the operating system release the image reports; it
    /// applies to every stage and the image, wherever it appears.
    pub osrelease: Option<Located<Word>>,
    /// `AUDITCFG`: the audit classes of the image's containers.
    pub auditcfg: Option<Located<AuditConfig>>,
}

/// A value with the position of the instruction that gave it.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Located<T> {
    pub position: Position,
    pub value: T,
}

/// One build stage: a `FROM` and the instructions up to the next `FROM`.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Stage {
    /// 0-based index in the file, as `COPY --from=N` counts.
    pub index: usize,
    /// The `AS` name in lower case (stage names are case-insensitive).
    pub name: Option<String>,
    pub from: From,
    /// Position of the `FROM` keyword.
    pub position: Position,
    pub instructions: Vec<Instruction>,
}

impl Stage {
    /// Returns the earlier stages this stage reads: its `FROM` stage and the
    /// stages of its `COPY --from` instructions, without repeats.
    pub fn depends_on(&self) -> Vec<usize> {
        let mut stages: Vec<usize> = self.from.stage.into_iter().collect();
        for instruction in &self.instructions {
            if let InstructionKind::Copy(Copy {
                from: Some(CopySource::Stage { index, .. }),
                ..
            }) = &instruction.kind
            {
                stages.push(*index);
            }
        }
        stages.sort_unstable();
        stages.dedup();
        stages
    }
}

/// The base of a stage.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct From {
    /// The image reference, or the name of an earlier stage, or `scratch`.
    pub image: Word,
    /// `--platform`.
    pub platform: Option<Word>,
    /// The earlier stage whose name the image equals (case-insensitively).
    /// The original system preferred an existing image of that name over the
    /// stage. The builder makes that choice because it has the image store.
    pub stage: Option<usize>,
}

/// One instruction inside a stage.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Instruction {
    /// Position of the keyword.
    pub position: Position,
    /// Last line of the file the instruction (with its heredocs) takes.
    pub end_line: usize,
    /// The instruction as written, continuation lines joined.
    pub text: String,
    pub kind: InstructionKind,
}

/// The meaning of an instruction.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(tag = "instruction", content = "meaning", rename_all = "lowercase")]
pub enum InstructionKind {
    Run(Run),
    Cmd(CommandLine),
    Entrypoint(CommandLine),
    /// `SHELL`: the new shell prefix of shell-form commands.
    Shell(Vec<String>),
    Env(Vec<KeyValue>),
    Label(Vec<KeyValue>),
    Arg(Vec<ArgDecl>),
    /// `MAINTAINER`: the text as written.
    Maintainer(String),
    /// `EXPOSE`: port specifications such as `80`, `53/udp`, `8000-8010/tcp`.
    Expose(Vec<Word>),
    Add(Copy),
    Copy(Copy),
    Volume(Vec<Word>),
    User(Word),
    Workdir(Word),
    #[serde(rename = "stopsignal")]
    StopSignal(Word),
    Healthcheck(Healthcheck),
    /// `ONBUILD`: an instruction recorded for builds that use this image.
    Onbuild(Box<Instruction>),
    /// `ROOTPIVOT DIR`: the image's root becomes this directory of the stage.
    #[serde(rename = "rootpivot")]
    RootPivot(Word),
}

/// A command of `RUN`, `CMD`, `ENTRYPOINT` or `HEALTHCHECK`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Command {
    /// Exec form: the JSON array, run without a shell.
    Exec(Vec<String>),
    /// Shell form: the text, run by the stage's shell.
    Shell(String),
}

/// A command and the argument vector it runs as.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct CommandLine {
    pub command: Command,
    /// The exec-form array, or the stage's shell followed by the text.
    pub argv: Vec<String>,
}

impl CommandLine {
    /// Returns the command with its argument vector under `shell`.
    pub fn new(command: Command, shell: &[String]) -> Self {
        let argv = match &command {
            Command::Exec(args) => args.clone(),
            Command::Shell(text) => {
                let mut argv = shell.to_vec();
                argv.push(text.clone());
                argv
            }
        };
        CommandLine { command, argv }
    }
}

/// `RUN`.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Run {
    pub command: CommandLine,
    /// `--mount` values as written, in order.
    pub mounts: Vec<String>,
    pub network: RunNetwork,
    /// `--security` (`sandbox` or `insecure`).
    pub security: Option<String>,
    pub heredocs: Vec<Heredoc>,
}

/// `RUN --network`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum RunNetwork {
    /// The build's network (`cblock build --network`).
    #[default]
    Default,
    None,
    Host,
}

/// `ADD` and `COPY`.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Copy {
    /// Source paths (in the context, the `--from` stage, or URLs for `ADD`).
    pub sources: Vec<Word>,
    pub dest: Word,
    /// `COPY --from`: where the sources come from instead of the context.
    pub from: Option<CopySource>,
    pub chown: Option<Word>,
    pub chmod: Option<Word>,
    pub link: bool,
    /// `COPY --parents`.
    pub parents: bool,
    /// `ADD --checksum`.
    pub checksum: Option<Word>,
    /// `ADD --keep-git-dir`.
    pub keep_git_dir: bool,
    /// `--exclude` patterns.
    pub excludes: Vec<Word>,
    /// Sources given as heredocs (`COPY <<EOF /dest`): each becomes a file
    /// named after its terminator with the body as content.
    pub contents: Vec<Heredoc>,
}

/// The source of `COPY --from`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum CopySource {
    /// An earlier stage, given by name or 0-based index.
    Stage { index: usize, name: Option<String> },
    /// An image reference (it has a tag, digest or registry path).
    Image(String),
}

/// `NAME=value` of `ENV` and `LABEL`.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct KeyValue {
    pub key: String,
    pub value: Word,
}

/// One name of `ARG`, with its default.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ArgDecl {
    pub name: String,
    pub default: Option<Word>,
}

/// `HEALTHCHECK`.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Healthcheck {
    /// `HEALTHCHECK NONE`: turn off a check inherited from the base image.
    None,
    Check(HealthCheckCommand),
}

/// `HEALTHCHECK [flags] CMD command`; unset durations keep the defaults.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct HealthCheckCommand {
    pub command: CommandLine,
    pub interval: Option<Duration>,
    pub timeout: Option<Duration>,
    pub start_period: Option<Duration>,
    pub start_interval: Option<Duration>,
    pub retries: Option<u32>,
}

/// `AUDITCFG "class,class"`.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct AuditConfig {
    pub word: Word,
    /// The non-empty class names of the comma-separated list, as previewed.
    pub classes: Vec<String>,
}

/// A word as written, expanded by the builder with Docker's rules.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Word {
    /// The text as written, quotes and `$` references included.
    pub raw: String,
    /// `raw` expanded with the variables the file defines before this point:
    /// ARG defaults and ENV values of the stage. References to any other
    /// variable are left as written.
    pub preview: String,
    /// The file's escape character.
    #[serde(skip)]
    pub escape: char,
    /// Position of the word's first character.
    pub position: Position,
}

impl Word {
    /// Expands the word against `vars`, the build's environment.
    pub fn expand(&self, vars: &dyn Vars) -> Result<String, WordError> {
        Lexer::new(self.escape).expand_word(&self.raw, vars)
    }

    /// Expands the word against `vars` and splits the result into words.
    pub fn expand_words(&self, vars: &dyn Vars) -> Result<Vec<String>, WordError> {
        Lexer::new(self.escape).expand_words(&self.raw, vars)
    }
}

impl Cblockfile {
    /// Returns the stage named `name` (case-insensitively) or with the
    /// 0-based index `name`.
    pub fn stage(&self, name: &str) -> Option<&Stage> {
        let lower = name.to_ascii_lowercase();
        self.stages
            .iter()
            .find(|stage| stage.name.as_deref() == Some(lower.as_str()))
            .or_else(|| {
                name.parse::<usize>()
                    .ok()
                    .and_then(|index| self.stages.get(index))
            })
    }

    /// Returns the indices of the stages that building stage `target` needs,
    /// `target` included, in ascending order. A stage needs the earlier stage
    /// it is built `FROM` and the stages its `COPY --from` instructions name.
    /// Those are always earlier stages, so ascending order is a valid build
    /// order.
    pub fn stages_for(&self, target: usize) -> Vec<usize> {
        let mut needed = vec![false; self.stages.len()];
        if target >= self.stages.len() {
            return Vec::new();
        }
        needed[target] = true;
        for stage in self.stages[..=target].iter().rev() {
            if !needed[stage.index] {
                continue;
            }
            for dependency in stage.depends_on() {
                if dependency < stage.index {
                    needed[dependency] = true;
                }
            }
        }
        (0..self.stages.len())
            .filter(|&index| needed[index])
            .collect()
    }

    /// Returns the last stage, which becomes the image unless a target is given.
    pub fn final_stage(&self) -> Option<&Stage> {
        self.stages.last()
    }

    /// Returns the entrypoint of the image built from `stage`: its last
    /// `ENTRYPOINT`, else that of the earlier stage it is built on, else the
    /// one given before the first `FROM`.
    pub fn image_entrypoint<'a>(&'a self, stage: &'a Stage) -> Option<&'a CommandLine> {
        self.inherited(stage, |kind| match kind {
            InstructionKind::Entrypoint(command) => Some(command),
            _ => None,
        })
        .or(self.entrypoint.as_ref().map(|located| &located.value))
    }

    /// Returns the command of the image built from `stage`, found as for
    /// [`Cblockfile::image_entrypoint`].
    pub fn image_cmd<'a>(&'a self, stage: &'a Stage) -> Option<&'a CommandLine> {
        self.inherited(stage, |kind| match kind {
            InstructionKind::Cmd(command) => Some(command),
            _ => None,
        })
        .or(self.cmd.as_ref().map(|located| &located.value))
    }

    fn inherited<'a>(
        &'a self,
        stage: &'a Stage,
        pick: impl Fn(&'a InstructionKind) -> Option<&'a CommandLine>,
    ) -> Option<&'a CommandLine> {
        let mut current = Some(stage);
        // Each step goes to an earlier stage, so the walk ends.
        while let Some(stage) = current {
            if let Some(found) = stage.instructions.iter().rev().find_map(|i| pick(&i.kind)) {
                return Some(found);
            }
            current = stage
                .from
                .stage
                .filter(|&index| index < stage.index)
                .and_then(|index| self.stages.get(index));
        }
        None
    }
}
