//! Gives every instruction of a syntax tree its meaning and checks it:
//! instruction names, flags, argument counts, stage names and references,
//! word syntax, and the exec forms that look like JSON but are not.

use std::time::Duration;

use nom::bytes::complete::take_while;
use nom::character::complete::{alpha1, digit1, satisfy};
use nom::combinator::{all_consuming, opt, recognize};
use nom::multi::many1;
use nom::sequence::{pair, preceded, tuple};
use nom::IResult;

use super::ast::*;
use super::error::{nearest, Error, Position, Reporter};
use super::heredoc;
use super::syntax::{parse_words, unquote_whole, Node, SyntaxTree};
use super::word::{Lexer, NoVars};

/// Every instruction keyword, in upper case.
pub const KEYWORDS: [&str; 21] = [
    "FROM",
    "RUN",
    "CMD",
    "LABEL",
    "MAINTAINER",
    "EXPOSE",
    "ENV",
    "ADD",
    "COPY",
    "ENTRYPOINT",
    "VOLUME",
    "USER",
    "WORKDIR",
    "ARG",
    "ONBUILD",
    "STOPSIGNAL",
    "HEALTHCHECK",
    "SHELL",
    "ROOTPIVOT",
    "OSRELEASE",
    "AUDITCFG",
];

/// Checks `tree` and returns the Cblockfile it describes.
pub fn check(tree: &SyntaxTree, reporter: &Reporter) -> Result<Cblockfile, Error> {
    let mut checker = Checker {
        reporter,
        escape: tree.escape,
        file: Cblockfile {
            file: reporter.file().to_string(),
            escape: tree.escape,
            syntax: tree.syntax.clone(),
            global_args: Vec::new(),
            stages: Vec::new(),
            entrypoint: None,
            cmd: None,
            osrelease: None,
            auditcfg: None,
        },
        shell: default_shell(),
        vars: Vec::new(),
        stage_names: tree
            .nodes
            .iter()
            .filter(|node| node.keyword.eq_ignore_ascii_case("from"))
            .enumerate()
            .filter_map(|(index, node)| match node.args.as_slice() {
                [_, as_word, name] if as_word.eq_ignore_ascii_case("as") => {
                    Some((name.to_ascii_lowercase(), index, node.position().line))
                }
                _ => None,
            })
            .collect(),
    };
    for node in &tree.nodes {
        checker.node(node)?;
    }
    if checker.file.stages.is_empty() {
        let position = tree
            .nodes
            .first()
            .map_or(Position::new(1, 1), Node::position);
        return Err(checker.error(
            position,
            "the file has no FROM instruction, so it builds nothing",
            "add FROM IMAGE (or FROM scratch) before the build steps",
        ));
    }
    Ok(checker.file)
}

fn default_shell() -> Vec<String> {
    DEFAULT_SHELL.iter().map(|part| part.to_string()).collect()
}

/// Kinds of instruction flags.
#[derive(Clone, Copy, PartialEq)]
enum FlagKind {
    /// `--name` or `--name=true|false`.
    Bool,
    /// `--name=value`, at most once.
    Value,
    /// `--name=value`, any number of times.
    List,
}

/// Flag values of one instruction.
#[derive(Default)]
struct Flags {
    values: Vec<(String, String, Position)>,
}

impl Flags {
    fn value(&self, name: &str) -> Option<(&str, Position)> {
        self.values
            .iter()
            .find(|(flag, _, _)| flag == name)
            .map(|(_, value, position)| (value.as_str(), *position))
    }

    fn list(&self, name: &str) -> Vec<(&str, Position)> {
        self.values
            .iter()
            .filter(|(flag, _, _)| flag == name)
            .map(|(_, value, position)| (value.as_str(), *position))
            .collect()
    }

    fn is_set(&self, name: &str) -> bool {
        self.value(name).is_some_and(|(value, _)| value == "true")
    }
}

struct Checker<'r, 'a> {
    reporter: &'r Reporter<'a>,
    escape: char,
    file: Cblockfile,
    /// The shell of the current stage.
    shell: Vec<String>,
    /// Variables known in the current stage, for previews.
    vars: Vec<(String, String)>,
    /// Every stage name of the file (lower case) with the stage's index and
    /// line, so that a reference to a later stage can be named as such.
    stage_names: Vec<(String, usize, usize)>,
}

impl Checker<'_, '_> {
    fn error(
        &self,
        position: Position,
        message: impl Into<String>,
        help: impl Into<String>,
    ) -> Error {
        let help = help.into();
        self.reporter
            .error(position, message, (!help.is_empty()).then_some(help))
    }

    /// Returns the position of `needle` in the node's text after the keyword,
    /// or of the keyword when it is not found.
    fn locate(&self, node: &Node, needle: &str) -> Position {
        let mut cursor = node.keyword_offset;
        self.locate_after(node, needle, &mut cursor)
    }

    /// Returns the position of `needle` in the node's text at or after byte
    /// `cursor`, and moves the cursor past it. Searching on from the cursor
    /// keeps a line of many words linear to check.
    fn locate_after(&self, node: &Node, needle: &str, cursor: &mut usize) -> Position {
        match find_ignore_ascii_case(&node.line.text, needle, *cursor) {
            Some(found) => {
                *cursor = found + needle.len();
                node.line.position(found)
            }
            None => node.position(),
        }
    }

    fn node(&mut self, node: &Node) -> Result<(), Error> {
        let keyword = node.name();
        match keyword.as_str() {
            "FROM" => return self.from(node),
            "OSRELEASE" => return self.osrelease(node),
            "AUDITCFG" => return self.auditcfg(node),
            _ => {}
        }
        if !KEYWORDS.contains(&keyword.as_str()) {
            return Err(self.unknown_instruction(node));
        }

        if self.file.stages.is_empty() {
            return self.before_first_stage(node);
        }
        let instruction = self.instruction(node, &node.heredocs, false)?;
        if let Some(stage) = self.file.stages.last_mut() {
            stage.instructions.push(instruction);
        }
        Ok(())
    }

    fn unknown_instruction(&self, node: &Node) -> Error {
        let help = match nearest(&node.keyword, &KEYWORDS) {
            Some(keyword) => format!("did you mean {keyword}?"),
            None => format!("the instructions are {}", KEYWORDS.join(", ")),
        };
        self.error(
            node.position(),
            format!("unknown instruction {:?}", node.keyword),
            help,
        )
    }

    /// `ARG`, `ENTRYPOINT` and `CMD` may come before the first `FROM`.
    fn before_first_stage(&mut self, node: &Node) -> Result<(), Error> {
        let position = node.position();
        if matches!(node.name().as_str(), "ARG" | "ENTRYPOINT" | "CMD") {
            self.no_flags(node)?;
        }
        match node.name().as_str() {
            "ARG" => {
                let args = self.args(node)?;
                for arg in &args {
                    if let Some(default) = &arg.default {
                        self.vars.push((arg.name.clone(), default.preview.clone()));
                    }
                }
                self.file.global_args.extend(args);
            }
            "ENTRYPOINT" => {
                let command = self.command(node)?;
                self.file.entrypoint = Some(Located { position, value: command });
            }
            "CMD" => {
                let command = self.command(node)?;
                self.file.cmd = Some(Located { position, value: command });
            }
            _ => {
                return Err(self.error(
                    position,
                    format!("{} before the first FROM", node.name()),
                    "start the stage with FROM IMAGE; only ARG, ENTRYPOINT, CMD, OSRELEASE and AUDITCFG may come before it",
                ))
            }
        }
        Ok(())
    }

    fn from(&mut self, node: &Node) -> Result<(), Error> {
        let flags = self.flags(node, &[("platform", FlagKind::Value)])?;
        let position = node.position();
        let (image, name) = match node.args.as_slice() {
            [image] => (image, None),
            [image, as_word, name] if as_word.eq_ignore_ascii_case("as") => (image, Some(name)),
            [] => {
                return Err(self.error(
                    position,
                    "FROM has no image",
                    "write FROM IMAGE[:TAG] [AS NAME], or FROM scratch for an empty base",
                ))
            }
            _ => {
                return Err(self.error(
                    self.locate(node, &node.args_text),
                    format!("FROM takes IMAGE [AS NAME], not {:?}", node.args_text),
                    "write FROM IMAGE[:TAG] [AS NAME]",
                ))
            }
        };

        // Global ARGs are the only variables a FROM line can use.
        self.vars = self
            .file
            .global_args
            .iter()
            .filter_map(|arg| Some((arg.name.clone(), arg.default.as_ref()?.preview.clone())))
            .collect();
        self.shell = default_shell();
        let image = self.word(node, image)?;
        let platform = match flags.value("platform") {
            Some((value, at)) => Some(self.word_at(value, at)?),
            None => None,
        };

        let name = match name {
            Some(name) => Some(self.stage_name(node, name)?),
            None => None,
        };
        let stage_index = self.file.stages.len();
        let base = image.preview.to_ascii_lowercase();
        let base_stage = self
            .file
            .stages
            .iter()
            .find(|stage| stage.name.as_deref() == Some(base.as_str()))
            .map(|stage| stage.index);

        self.vars.clear();
        self.file.stages.push(Stage {
            index: stage_index,
            name,
            from: From {
                image,
                platform,
                stage: base_stage,
            },
            position,
            instructions: Vec::new(),
        });
        Ok(())
    }

    fn stage_name(&self, node: &Node, name: &str) -> Result<String, Error> {
        let at = self.locate(node, name);
        let lower = name.to_ascii_lowercase();
        if all_consuming(stage_name_syntax)(&lower).is_err() {
            return Err(self.error(
                at,
                format!("invalid stage name {name:?}"),
                "a stage name starts with a letter and has only letters, digits, '-', '_' and '.'",
            ));
        }
        if let Some(stage) = self
            .file
            .stages
            .iter()
            .find(|stage| stage.name.as_deref() == Some(lower.as_str()))
        {
            return Err(self.error(
                at,
                format!(
                    "stage name {name:?} is already used by the stage at line {}",
                    stage.position.line
                ),
                "give each stage its own name",
            ));
        }
        Ok(lower)
    }

    fn osrelease(&mut self, node: &Node) -> Result<(), Error> {
        self.no_flags(node)?;
        if let Some(first) = &self.file.osrelease {
            return Err(self.error(
                node.position(),
                format!(
                    "OSRELEASE is given twice; the first is at line {}",
                    first.position.line
                ),
                "keep one OSRELEASE",
            ));
        }
        let word = self.single_word(node, "OSRELEASE", "OSRELEASE 14.3-RELEASE")?;
        self.file.osrelease = Some(Located {
            position: node.position(),
            value: word,
        });
        Ok(())
    }

    fn auditcfg(&mut self, node: &Node) -> Result<(), Error> {
        self.no_flags(node)?;
        if let Some(first) = &self.file.auditcfg {
            return Err(self.error(
                node.position(),
                format!(
                    "AUDITCFG is given twice; the first is at line {}",
                    first.position.line
                ),
                "keep one AUDITCFG with all classes, separated by commas",
            ));
        }
        let word = self.single_word(node, "AUDITCFG", "AUDITCFG \"ex,pc\"")?;
        let classes: Vec<String> = word
            .preview
            .split(',')
            .map(str::trim)
            .filter(|class| !class.is_empty())
            .map(str::to_string)
            .collect();
        if let Some(bad) = classes.iter().find(|class| {
            !class
                .chars()
                .all(|ch| ch.is_ascii_alphanumeric() || ch == '_')
        }) {
            return Err(self.error(
                word.position,
                format!("invalid audit class {bad:?} in AUDITCFG"),
                "list audit class names such as ex,pc separated by commas",
            ));
        }
        self.file.auditcfg = Some(Located {
            position: node.position(),
            value: AuditConfig { word, classes },
        });
        Ok(())
    }

    /// Checks one instruction of a stage (or the trigger of an `ONBUILD`).
    fn instruction(
        &mut self,
        node: &Node,
        heredocs: &[heredoc::Heredoc],
        trigger: bool,
    ) -> Result<Instruction, Error> {
        let position = node.position();
        let keyword = node.name();
        let kind = match keyword.as_str() {
            "RUN" => InstructionKind::Run(self.run(node, heredocs)?),
            "CMD" => {
                self.no_flags(node)?;
                InstructionKind::Cmd(self.command(node)?)
            }
            "ENTRYPOINT" => {
                self.no_flags(node)?;
                InstructionKind::Entrypoint(self.command(node)?)
            }
            "SHELL" => {
                self.no_flags(node)?;
                if !node.json || node.args.is_empty() {
                    return Err(self.error(
                        position,
                        "SHELL needs a JSON array with at least one string",
                        "write SHELL [\"/bin/sh\", \"-c\"]",
                    ));
                }
                self.shell = node.args.clone();
                InstructionKind::Shell(node.args.clone())
            }
            "ENV" => {
                self.no_flags(node)?;
                let pairs = self.key_values(node, "ENV")?;
                for pair in &pairs {
                    self.vars
                        .push((pair.key.clone(), pair.value.preview.clone()));
                }
                InstructionKind::Env(pairs)
            }
            "LABEL" => {
                self.no_flags(node)?;
                InstructionKind::Label(self.key_values(node, "LABEL")?)
            }
            "ARG" => {
                self.no_flags(node)?;
                let args = self.args(node)?;
                for arg in &args {
                    let value = match &arg.default {
                        Some(default) => Some(default.preview.clone()),
                        None => self
                            .file
                            .global_args
                            .iter()
                            .rev()
                            .find(|global| global.name == arg.name)
                            .and_then(|global| global.default.as_ref())
                            .map(|default| default.preview.clone()),
                    };
                    if let Some(value) = value {
                        self.vars.push((arg.name.clone(), value));
                    }
                }
                InstructionKind::Arg(args)
            }
            "MAINTAINER" => {
                self.no_flags(node)?;
                if trigger {
                    return Err(self.error(
                        position,
                        "MAINTAINER cannot be an ONBUILD trigger",
                        "use LABEL maintainer=NAME",
                    ));
                }
                if node.args_text.is_empty() {
                    return Err(self.error(
                        position,
                        "MAINTAINER has no name",
                        "write MAINTAINER NAME, or better LABEL maintainer=NAME",
                    ));
                }
                InstructionKind::Maintainer(node.args_text.clone())
            }
            "EXPOSE" => {
                self.no_flags(node)?;
                InstructionKind::Expose(self.expose(node)?)
            }
            "ADD" | "COPY" => self.copy(node, &keyword, heredocs)?,
            "VOLUME" => {
                self.no_flags(node)?;
                let volumes = self.list_words(node)?;
                if volumes.is_empty() || volumes.iter().any(|volume| volume.preview.is_empty()) {
                    return Err(self.error(
                        position,
                        "VOLUME needs at least one non-empty path",
                        "write VOLUME /data",
                    ));
                }
                InstructionKind::Volume(volumes)
            }
            "USER" => {
                self.no_flags(node)?;
                InstructionKind::User(self.single_word(node, "USER", "USER NAME[:GROUP]")?)
            }
            "WORKDIR" => {
                self.no_flags(node)?;
                InstructionKind::Workdir(self.single_word(node, "WORKDIR", "WORKDIR /path")?)
            }
            "STOPSIGNAL" => {
                self.no_flags(node)?;
                InstructionKind::StopSignal(self.single_word(
                    node,
                    "STOPSIGNAL",
                    "STOPSIGNAL SIGTERM",
                )?)
            }
            "ROOTPIVOT" => {
                self.no_flags(node)?;
                InstructionKind::RootPivot(self.single_word(node, "ROOTPIVOT", "ROOTPIVOT DIR")?)
            }
            "HEALTHCHECK" => InstructionKind::Healthcheck(self.healthcheck(node)?),
            "ONBUILD" => InstructionKind::Onbuild(Box::new(self.onbuild(node, heredocs)?)),
            _ => return Err(self.unknown_instruction(node)),
        };
        Ok(Instruction {
            position,
            end_line: node.line.end_line,
            text: node.line.text[node.keyword_offset..].to_string(),
            kind,
        })
    }

    /// Checks `RUN`: its flags and its command.
    fn run(&self, node: &Node, heredocs: &[heredoc::Heredoc]) -> Result<Run, Error> {
        let flags = self.flags(
            node,
            &[
                ("mount", FlagKind::List),
                ("network", FlagKind::Value),
                ("security", FlagKind::Value),
            ],
        )?;
        let network = match flags.value("network") {
            None | Some(("default", _)) => RunNetwork::Default,
            Some(("none", _)) => RunNetwork::None,
            Some(("host", _)) => RunNetwork::Host,
            Some((other, at)) => {
                return Err(self.error(
                    at,
                    format!("invalid RUN --network value {other:?}"),
                    "use --network=default, --network=none or --network=host",
                ))
            }
        };
        let security = match flags.value("security") {
            None => None,
            Some((value @ ("sandbox" | "insecure"), _)) => Some(value.to_string()),
            Some((other, at)) => {
                return Err(self.error(
                    at,
                    format!("invalid RUN --security value {other:?}"),
                    "use --security=sandbox or --security=insecure",
                ))
            }
        };
        Ok(Run {
            command: self.command(node)?,
            mounts: flags
                .list("mount")
                .into_iter()
                .map(|(value, _)| value.to_string())
                .collect(),
            network,
            security,
            heredocs: heredocs.to_vec(),
        })
    }

    /// Checks `ONBUILD` and the instruction it registers.
    fn onbuild(
        &mut self,
        node: &Node,
        heredocs: &[heredoc::Heredoc],
    ) -> Result<Instruction, Error> {
        self.no_flags(node)?;
        let Some(child) = &node.child else {
            return Err(self.error(
                node.position(),
                "ONBUILD has no instruction",
                "write ONBUILD INSTRUCTION, for example ONBUILD RUN make",
            ));
        };
        let name = child.name();
        if !KEYWORDS.contains(&name.as_str()) {
            return Err(self.unknown_instruction(child));
        }
        if matches!(name.as_str(), "FROM" | "ONBUILD" | "OSRELEASE" | "AUDITCFG") {
            return Err(self.error(
                child.position(),
                format!("{name} cannot be an ONBUILD trigger"),
                "move it out of the ONBUILD",
            ));
        }
        let saved = (self.shell.clone(), self.vars.clone());
        let inner = self.instruction(child, heredocs, true);
        (self.shell, self.vars) = saved;
        inner
    }

    /// Reads the flags of `node`, rejecting any not in `allowed`.
    fn flags(&self, node: &Node, allowed: &[(&str, FlagKind)]) -> Result<Flags, Error> {
        let mut flags = Flags::default();
        for flag in &node.flags {
            let at = self.locate(node, flag.split('=').next().unwrap_or(flag));
            let body = flag.strip_prefix("--").unwrap_or(flag);
            let (name, value) = match body.split_once('=') {
                Some((name, value)) => (name.to_ascii_lowercase(), Some(value)),
                None => (body.to_ascii_lowercase(), None),
            };
            let Some(&(_, kind)) = allowed.iter().find(|(known, _)| *known == name) else {
                let names: Vec<&str> = allowed.iter().map(|(known, _)| *known).collect();
                let help = match nearest(&name, &names) {
                    Some(known) => format!("did you mean --{known}?"),
                    None if names.is_empty() => format!("{} takes no flags", node.name()),
                    None => format!("{} takes --{}", node.name(), names.join(", --")),
                };
                return Err(self.error(
                    at,
                    format!("unknown flag {flag:?} for {}", node.name()),
                    help,
                ));
            };
            let value = match (kind, value) {
                (FlagKind::Bool, None) => "true".to_string(),
                (FlagKind::Bool, Some(value)) => match value.to_ascii_lowercase().as_str() {
                    "true" | "false" => value.to_ascii_lowercase(),
                    _ => {
                        return Err(self.error(
                            at,
                            format!("invalid value {value:?} for --{name}"),
                            format!("write --{name}, --{name}=true or --{name}=false"),
                        ))
                    }
                },
                (_, Some(value)) if !value.is_empty() => value.to_string(),
                (_, _) => {
                    return Err(self.error(
                        at,
                        format!("flag --{name} has no value"),
                        format!("write --{name}=VALUE"),
                    ))
                }
            };
            if kind != FlagKind::List && flags.value(&name).is_some() {
                return Err(self.error(at, format!("flag --{name} is given twice"), "keep one"));
            }
            flags.values.push((name, value, at));
        }
        Ok(flags)
    }

    fn no_flags(&self, node: &Node) -> Result<(), Error> {
        self.flags(node, &[]).map(|_| ())
    }

    /// Makes a word of `raw`, found in the node's text.
    fn word(&self, node: &Node, raw: &str) -> Result<Word, Error> {
        let position = self.locate(node, raw);
        self.word_at(raw, position)
    }

    /// Makes a word of `raw` at `position`: checks its syntax and previews it.
    fn word_at(&self, raw: &str, position: Position) -> Result<Word, Error> {
        let lexer = Lexer {
            skip_unset: true,
            ..Lexer::new(self.escape)
        };
        if let Err(err) = lexer.expand_word(raw, &NoVars) {
            let before = raw.get(..err.offset).unwrap_or("");
            let at = Position::new(position.line, position.column + before.chars().count());
            return Err(self.error(
                at,
                format!("{} in {raw:?}", err.message),
                err.help.unwrap_or_default(),
            ));
        }
        let preview = lexer
            .expand_word(raw, &self.vars)
            .unwrap_or_else(|_| raw.to_string());
        Ok(Word {
            raw: raw.to_string(),
            preview,
            escape: self.escape,
            position,
        })
    }

    /// Returns the whole argument text as one word.
    fn single_word(&self, node: &Node, keyword: &str, example: &str) -> Result<Word, Error> {
        if node.args_text.is_empty() {
            return Err(self.error(
                node.position(),
                format!("{keyword} has no value"),
                format!("write {example}"),
            ));
        }
        let word = self.word_at(&node.args_text, node.args_position(0))?;
        if word.preview.is_empty() {
            return Err(self.error(
                word.position,
                format!("{keyword} has an empty value"),
                format!("write {example}"),
            ));
        }
        Ok(word)
    }

    /// Words of a JSON array, or of the argument text split at blanks
    /// outside quotes.
    fn list_words(&self, node: &Node) -> Result<Vec<Word>, Error> {
        if node.json {
            // Docker expands the strings of the JSON form like any other word.
            let position = node.args_position(0);
            return node
                .args
                .iter()
                .map(|arg| self.word_at(arg, position))
                .collect();
        }
        parse_words(&node.args_text, self.escape)
            .into_iter()
            .map(|word| self.word_at(&word.text, node.args_position(word.start)))
            .collect()
    }

    fn key_values(&self, node: &Node, keyword: &str) -> Result<Vec<KeyValue>, Error> {
        if node.args.is_empty() {
            return Err(self.error(
                node.position(),
                format!("{keyword} has no NAME=VALUE pair"),
                format!("write {keyword} NAME=VALUE"),
            ));
        }
        let mut pairs = Vec::new();
        let mut vars = self.vars.clone();
        let mut cursor = node.args_offset;
        for triple in node.args.chunks(3) {
            let [key, value, _] = triple else { continue };
            let key_at = self.locate_after(node, key, &mut cursor);
            if key.is_empty() {
                return Err(self.error(
                    key_at,
                    format!("{keyword} has an empty name"),
                    format!("write {keyword} NAME=VALUE"),
                ));
            }
            let key_word = self.word_at(key, key_at)?;
            let value_at = self.locate_after(node, value, &mut cursor);
            let mut word = self.word_at(value, value_at)?;
            // Later pairs of one ENV see the earlier ones, as in Docker.
            if keyword == "ENV" {
                let lexer = Lexer {
                    skip_unset: true,
                    ..Lexer::new(self.escape)
                };
                word.preview = lexer.expand_word(value, &vars).unwrap_or(word.preview);
                vars.push((key_word.preview.clone(), word.preview.clone()));
            }
            pairs.push(KeyValue {
                key: key_word.preview,
                value: word,
            });
        }
        Ok(pairs)
    }

    fn args(&self, node: &Node) -> Result<Vec<ArgDecl>, Error> {
        if node.args.is_empty() {
            return Err(self.error(
                node.position(),
                "ARG has no name",
                "write ARG NAME or ARG NAME=DEFAULT",
            ));
        }
        let mut cursor = node.args_offset;
        node.args
            .iter()
            .map(|arg| {
                let at = self.locate_after(node, arg, &mut cursor);
                let (name, default) = match arg.split_once('=') {
                    Some((name, default)) => (name, Some(self.word_at(default, at)?)),
                    None => (arg.as_str(), None),
                };
                let name = self.word_at(name, at)?.preview;
                if name.is_empty() || name.contains(char::is_whitespace) {
                    return Err(self.error(
                        at,
                        format!("invalid ARG name {name:?}"),
                        "write ARG NAME or ARG NAME=DEFAULT",
                    ));
                }
                Ok(ArgDecl { name, default })
            })
            .collect()
    }

    /// Returns the command of `RUN`, `CMD` and `ENTRYPOINT`.
    fn command(&self, node: &Node) -> Result<CommandLine, Error> {
        if node.json {
            return Ok(CommandLine::new(
                Command::Exec(node.args.clone()),
                &self.shell,
            ));
        }
        let Some(text) = node.args.first() else {
            return Err(self.error(
                node.position(),
                format!("{} has no command", node.name()),
                format!(
                    "write {} COMMAND or {} [\"EXECUTABLE\", \"ARG\"]",
                    node.name(),
                    node.name()
                ),
            ));
        };
        self.check_exec_like(node, &node.args_text)?;
        Ok(CommandLine::new(Command::Shell(text.clone()), &self.shell))
    }

    /// Rejects text that starts like an exec-form JSON array or an original
    /// quoted command but is cut short: Docker would pass it to the shell,
    /// which fails on it.
    fn check_exec_like(&self, node: &Node, text: &str) -> Result<(), Error> {
        if text.starts_with('[') {
            if let Err(err) = serde_json::from_str::<serde_json::Value>(text) {
                if err.classify() == serde_json::error::Category::Eof {
                    return Err(match open_json_string(text) {
                        Some(quote) => self.error(
                            node.args_position(quote),
                            "unterminated string in the JSON array",
                            "add the closing \" (and the ']' after the last element)",
                        ),
                        None => self.error(
                            node.args_position(text.len()),
                            "unterminated JSON array: missing ']'",
                            format!("add ']' to end the array, or write the command without '[' for shell form ({})", node.name()),
                        ),
                    });
                }
            }
        }
        if text.starts_with('"')
            && unquote_whole(text).is_none()
            && open_json_string(text) == Some(0)
        {
            return Err(self.error(
                node.args_position(0),
                "unterminated double-quoted command",
                "add the closing \" at the end of the command",
            ));
        }
        Ok(())
    }

    fn copy(
        &mut self,
        node: &Node,
        keyword: &str,
        heredocs: &[heredoc::Heredoc],
    ) -> Result<InstructionKind, Error> {
        let is_copy = keyword == "COPY";
        let allowed: &[(&str, FlagKind)] = if is_copy {
            &[
                ("from", FlagKind::Value),
                ("chown", FlagKind::Value),
                ("chmod", FlagKind::Value),
                ("link", FlagKind::Bool),
                ("parents", FlagKind::Bool),
                ("exclude", FlagKind::List),
            ]
        } else {
            &[
                ("chown", FlagKind::Value),
                ("chmod", FlagKind::Value),
                ("link", FlagKind::Bool),
                ("checksum", FlagKind::Value),
                ("keep-git-dir", FlagKind::Bool),
                ("exclude", FlagKind::List),
            ]
        };
        let flags = self.flags(node, allowed)?;
        let mut words = self.list_words(node)?;
        if words.len() < 2 {
            return Err(self.error(
                node.position(),
                format!("{keyword} needs a source and a destination"),
                format!("write {keyword} SOURCE... DEST"),
            ));
        }
        let dest = words
            .pop()
            .unwrap_or_else(|| unreachable!("two words checked above"));
        if heredoc::parse_marker(&dest.raw).is_some() {
            return Err(self.error(
                dest.position,
                format!("the destination of {keyword} cannot be a heredoc"),
                format!("write {keyword} <<EOF DEST with a path as the destination"),
            ));
        }

        // Sources written as heredoc markers take their content from the
        // heredoc bodies; the rest are paths.
        let mut contents = Vec::new();
        let mut sources = Vec::new();
        for word in words {
            match heredoc::parse_marker(&word.raw) {
                Some(marker) => {
                    let body = heredocs.iter().find(|doc| doc.name == marker.name);
                    contents.push(body.cloned().unwrap_or(marker));
                }
                None => sources.push(word),
            }
        }
        let value_word = |name: &str| -> Result<Option<Word>, Error> {
            match flags.value(name) {
                Some((value, at)) => Ok(Some(self.word_at(value, at)?)),
                None => Ok(None),
            }
        };
        let from = match flags.value("from") {
            Some((value, at)) => Some(self.copy_source(value, at)?),
            None => None,
        };
        let copy = Copy {
            sources,
            dest,
            from,
            chown: value_word("chown")?,
            chmod: value_word("chmod")?,
            link: flags.is_set("link"),
            parents: flags.is_set("parents"),
            checksum: value_word("checksum")?,
            keep_git_dir: flags.is_set("keep-git-dir"),
            excludes: flags
                .list("exclude")
                .into_iter()
                .map(|(value, at)| self.word_at(value, at))
                .collect::<Result<_, _>>()?,
            contents,
        };
        Ok(if is_copy {
            InstructionKind::Copy(copy)
        } else {
            InstructionKind::Add(copy)
        })
    }

    /// Resolves `COPY --from`: an earlier stage by name or 0-based index, or
    /// an image reference that carries a tag, digest or registry path.
    fn copy_source(&self, value: &str, at: Position) -> Result<CopySource, Error> {
        let current = self.file.stages.len().saturating_sub(1);
        let earlier: Vec<String> = self.file.stages[..current]
            .iter()
            .map(|stage| match &stage.name {
                Some(name) => format!("{} ({name})", stage.index),
                None => stage.index.to_string(),
            })
            .collect();
        let earlier_list = if earlier.is_empty() {
            "there is no earlier stage".to_string()
        } else {
            format!("the earlier stages are {}", earlier.join(", "))
        };

        if let Ok(index) = value.parse::<usize>() {
            if index < current {
                let name = self.file.stages[index].name.clone();
                return Ok(CopySource::Stage { index, name });
            }
            let what = if index == current {
                "this stage itself"
            } else {
                "a later stage"
            };
            return Err(self.error(
                at,
                format!("COPY --from={value} refers to {what}"),
                format!("copy only from an earlier stage; {earlier_list}"),
            ));
        }

        let lower = value.to_ascii_lowercase();
        if let Some(stage) = self
            .file
            .stages
            .iter()
            .find(|stage| stage.name.as_deref() == Some(lower.as_str()))
        {
            if stage.index < current {
                return Ok(CopySource::Stage {
                    index: stage.index,
                    name: stage.name.clone(),
                });
            }
            return Err(self.error(
                at,
                format!("COPY --from={value} refers to this stage itself"),
                format!("copy only from an earlier stage; {earlier_list}"),
            ));
        }
        if let Some((_, index, line)) = self.stage_names.iter().find(|(name, _, _)| *name == lower)
        {
            return Err(self.error(
                at,
                format!("COPY --from={value} refers to a later stage ({index}, line {line})"),
                format!("copy only from an earlier stage, or move stage {value} before this one; {earlier_list}"),
            ));
        }
        // Any other name is an image, as in Docker; the build names the
        // stages when no such image exists.
        Ok(CopySource::Image(value.to_string()))
    }

    fn expose(&self, node: &Node) -> Result<Vec<Word>, Error> {
        let ports = self.list_words(node)?;
        if ports.is_empty() {
            return Err(self.error(
                node.position(),
                "EXPOSE has no port",
                "write EXPOSE 80 or EXPOSE 53/udp",
            ));
        }
        for port in &ports {
            if !port.preview.contains('$') && all_consuming(port_spec)(&port.preview).is_err() {
                return Err(self.error(
                    port.position,
                    format!("invalid port {:?} in EXPOSE", port.preview),
                    "write PORT, PORT/tcp, PORT/udp, PORT/sctp or a range such as 8000-8010/tcp",
                ));
            }
        }
        Ok(ports)
    }

    fn healthcheck(&self, node: &Node) -> Result<Healthcheck, Error> {
        let flags = self.flags(
            node,
            &[
                ("interval", FlagKind::Value),
                ("timeout", FlagKind::Value),
                ("start-period", FlagKind::Value),
                ("start-interval", FlagKind::Value),
                ("retries", FlagKind::Value),
            ],
        )?;
        let example = "write HEALTHCHECK NONE or HEALTHCHECK [--interval=30s] CMD COMMAND";
        let Some(kind) = node.args.first() else {
            return Err(self.error(node.position(), "HEALTHCHECK has no CMD or NONE", example));
        };
        if kind.eq_ignore_ascii_case("none") {
            if node.args.len() > 1 || !node.flags.is_empty() {
                return Err(self.error(
                    node.position(),
                    "HEALTHCHECK NONE takes no flags or arguments",
                    example,
                ));
            }
            return Ok(Healthcheck::None);
        }
        if !kind.eq_ignore_ascii_case("cmd") {
            return Err(self.error(
                self.locate(node, kind),
                format!("HEALTHCHECK takes CMD or NONE, not {kind:?}"),
                example,
            ));
        }
        let command = match (&node.args[1..], node.json) {
            ([], _) => {
                return Err(self.error(node.position(), "HEALTHCHECK CMD has no command", example))
            }
            (args, true) => CommandLine::new(Command::Exec(args.to_vec()), &self.shell),
            ([text, ..], false) => CommandLine::new(Command::Shell(text.clone()), &self.shell),
        };
        let duration = |name: &str| -> Result<Option<Duration>, Error> {
            let Some((value, at)) = flags.value(name) else {
                return Ok(None);
            };
            parse_duration(value).map(Some).ok_or_else(|| {
                self.error(
                    at,
                    format!("invalid duration {value:?} for --{name}"),
                    "write a duration such as 30s, 1m30s or 500ms",
                )
            })
        };
        let retries = match flags.value("retries") {
            None => None,
            Some((value, at)) => Some(value.parse::<u32>().map_err(|_| {
                self.error(
                    at,
                    format!("invalid --retries value {value:?}"),
                    "write a whole number such as --retries=3",
                )
            })?),
        };
        Ok(Healthcheck::Check(HealthCheckCommand {
            command,
            interval: duration("interval")?,
            timeout: duration("timeout")?,
            start_period: duration("start-period")?,
            start_interval: duration("start-interval")?,
            retries,
        }))
    }
}

/// Returns the byte offset of the first match of `needle` in `haystack` at or
/// after byte `from`, comparing ASCII letters without regard to case (keywords
/// and flags are case-insensitive). The offset is a character boundary,
/// because a match starts with the same byte as `needle`'s first character.
fn find_ignore_ascii_case(haystack: &str, needle: &str, from: usize) -> Option<usize> {
    let (haystack, needle) = (haystack.as_bytes(), needle.as_bytes());
    if needle.is_empty() || from > haystack.len() || needle.len() > haystack.len() {
        return None;
    }
    (from..=haystack.len() - needle.len())
        .find(|&start| haystack[start..start + needle.len()].eq_ignore_ascii_case(needle))
}

/// Returns the byte offset of the opening quote of a double-quoted string
/// that is still open at the end of `text`, if there is one.
fn open_json_string(text: &str) -> Option<usize> {
    let mut open = None;
    let mut escaped = false;
    for (index, ch) in text.char_indices() {
        if escaped {
            escaped = false;
        } else if open.is_some() && ch == '\\' {
            escaped = true;
        } else if ch == '"' {
            open = match open {
                Some(_) => None,
                None => Some(index),
            };
        }
    }
    open
}

/// A stage name in lower case: a letter, then letters, digits, `-`, `_`, `.`.
fn stage_name_syntax(input: &str) -> IResult<&str, &str> {
    recognize(pair(
        satisfy(|ch| ch.is_ascii_lowercase()),
        take_while(|ch: char| ch.is_ascii_lowercase() || ch.is_ascii_digit() || "-_.".contains(ch)),
    ))(input)
}

/// `PORT`, `PORT-PORT`, each optionally followed by `/tcp`, `/udp` or `/sctp`.
fn port_spec(input: &str) -> IResult<&str, &str> {
    recognize(tuple((
        digit1,
        opt(preceded(nom::character::complete::char('-'), digit1)),
        opt(preceded(nom::character::complete::char('/'), alpha1)),
    )))(input)
    .and_then(|(rest, spec)| {
        let protocol = spec.split('/').nth(1).unwrap_or("tcp").to_ascii_lowercase();
        if ["tcp", "udp", "sctp"].contains(&protocol.as_str()) {
            Ok((rest, spec))
        } else {
            Err(nom::Err::Error(nom::error::Error::new(
                input,
                nom::error::ErrorKind::Verify,
            )))
        }
    })
}

/// Parses a Go-style duration: one or more `NUMBER UNIT` parts, the units
/// `ns`, `us`, `µs`, `ms`, `s`, `m`, `h`, as in `1m30s`.
pub fn parse_duration(text: &str) -> Option<Duration> {
    fn part(input: &str) -> IResult<&str, (&str, &str)> {
        pair(
            recognize(pair(
                digit1,
                opt(pair(nom::character::complete::char('.'), digit1)),
            )),
            nom::branch::alt((
                nom::bytes::complete::tag("ns"),
                nom::bytes::complete::tag("us"),
                nom::bytes::complete::tag("µs"),
                nom::bytes::complete::tag("ms"),
                nom::bytes::complete::tag("s"),
                nom::bytes::complete::tag("m"),
                nom::bytes::complete::tag("h"),
            )),
        )(input)
    }
    if text == "0" {
        return Some(Duration::ZERO);
    }
    let (_, parts) = all_consuming(many1(part))(text).ok()?;
    let mut total = 0f64;
    for (number, unit) in parts {
        let seconds_per_unit = match unit {
            "ns" => 1e-9,
            "us" | "µs" => 1e-6,
            "ms" => 1e-3,
            "s" => 1.0,
            "m" => 60.0,
            _ => 3600.0,
        };
        total += number.parse::<f64>().ok()? * seconds_per_unit;
    }
    Duration::try_from_secs_f64(total).ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn case_insensitive_find() {
        assert_eq!(
            find_ignore_ascii_case("COPY --FROM x", "--from", 0),
            Some(5)
        );
        assert_eq!(find_ignore_ascii_case("é --from", "--from", 1), Some(3));
        assert_eq!(find_ignore_ascii_case("a", "ab", 0), None);
        assert_eq!(find_ignore_ascii_case("ab", "b", 3), None);
    }

    #[test]
    fn durations() {
        assert_eq!(parse_duration("30s"), Some(Duration::from_secs(30)));
        assert_eq!(parse_duration("1m30s"), Some(Duration::from_secs(90)));
        assert_eq!(parse_duration("500ms"), Some(Duration::from_millis(500)));
        assert_eq!(parse_duration("0"), Some(Duration::ZERO));
        assert_eq!(parse_duration("30"), None);
        assert_eq!(parse_duration("s"), None);
    }

    #[test]
    fn port_specs() {
        for good in ["80", "53/udp", "8000-8010/tcp", "9/SCTP"] {
            assert!(all_consuming(port_spec)(good).is_ok(), "{good}");
        }
        for bad in ["http", "80/xyz", "-1", "80/"] {
            assert!(all_consuming(port_spec)(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn open_string_found() {
        assert_eq!(open_json_string("[\"a\", \"b"), Some(6));
        assert_eq!(open_json_string("[\"a\\\"\", \"b\"]"), None);
    }
}
