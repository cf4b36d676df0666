//! The syntax tree: one node per instruction, its arguments split the way
//! Docker's parser splits them (moby/buildkit `frontend/dockerfile/parser`),
//! before any check of their meaning. `cblock parse --format dump` prints it.
//!
//! Four forms of the original Cblockfile language are read with the
//! original's meaning here, because Docker's would differ. `RUN "a b"` (one
//! double-quoted string) runs `a b`. `ENV KEY = VALUE` with a standalone `=`
//! sets KEY to VALUE. `COPY --FROM STAGE SRC DEST` takes the stage as the
//! next word. `CMD` and `ENTRYPOINT` lists may have unquoted items.

use nom::bytes::complete::{take_till1, take_while};
use nom::sequence::terminated;
use nom::IResult;

use super::error::{Error, Position, Reporter};
use super::heredoc::{self, Heredoc};
use super::lines::{LineReader, LogicalLine};
use super::word::{Lexer, NoVars};

/// One instruction as the parser split it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Node {
    /// The instruction keyword as written (`run`, `RUN`, ...).
    pub keyword: String,
    /// The `--name=value` flags before the arguments, as written.
    pub flags: Vec<String>,
    /// The arguments, split according to the instruction.
    pub args: Vec<String>,
    /// The instruction that `ONBUILD` registers.
    pub child: Option<Box<Node>>,
    /// Whether the arguments were written as a JSON array (exec form).
    pub json: bool,
    /// Heredoc bodies, in the order their markers appear.
    pub heredocs: Vec<Heredoc>,
    /// Byte offset of the keyword in `line.text`.
    pub keyword_offset: usize,
    /// Byte offset in `line.text` of the argument text that follows the flags.
    pub args_offset: usize,
    /// The argument text after the flags, before splitting.
    pub args_text: String,
    /// The instruction's text after joining continuation lines, with a map
    /// back to file positions.
    pub line: LogicalLine,
}

impl Node {
    /// Returns the file position of the keyword.
    pub fn position(&self) -> Position {
        self.line.position(self.keyword_offset)
    }

    /// Returns the file position of byte `offset` of the argument text.
    pub fn args_position(&self, offset: usize) -> Position {
        self.line.position(self.args_offset + offset)
    }

    /// Returns the keyword in upper case.
    pub fn name(&self) -> String {
        self.keyword.to_ascii_uppercase()
    }

    fn can_contain_heredoc(&self) -> bool {
        let node = match &self.child {
            Some(child) if self.keyword.eq_ignore_ascii_case("onbuild") => child,
            _ => self,
        };
        ["add", "copy", "run"].contains(&node.keyword.to_ascii_lowercase().as_str()) && !node.json
    }
}

/// The syntax tree of a whole file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SyntaxTree {
    pub nodes: Vec<Node>,
    /// The escape character in force at the end of the directives.
    pub escape: char,
    /// The value of the `syntax` parser directive.
    pub syntax: Option<String>,
}

/// Whitespace as Docker's `[\t\v\f\r ]` class, which separates words in
/// `FROM`, `EXPOSE`, `COPY` and `ADD`.
fn is_docker_blank(ch: char) -> bool {
    matches!(ch, '\t' | '\x0b' | '\x0c' | '\r' | ' ')
}

/// Splits the instruction keyword off `line` and skips the blanks after it.
/// Returns the rest and the keyword.
fn keyword(line: &str) -> (&str, &str) {
    let parsed: IResult<&str, &str> =
        terminated(take_till1(is_docker_blank), take_while(is_docker_blank))(line);
    // An empty line has no keyword; the caller reports it as unknown.
    parsed.unwrap_or(("", line))
}

/// Returns the byte offset of `inner` within `outer`; `inner` must be a slice
/// of `outer`.
fn offset_in(outer: &str, inner: &str) -> usize {
    (inner.as_ptr() as usize).saturating_sub(outer.as_ptr() as usize)
}

/// A reason an instruction line could not be split.
#[derive(Debug)]
struct LineProblem {
    /// Byte offset in the argument text.
    offset: usize,
    message: String,
    help: Option<String>,
}

fn problem(offset: usize, message: impl Into<String>, help: &str) -> LineProblem {
    LineProblem {
        offset,
        message: message.into(),
        help: (!help.is_empty()).then(|| help.to_string()),
    }
}

/// Parses `text`, the contents of `reporter`'s file, into its syntax tree.
pub fn parse(text: &str, reporter: &Reporter) -> Result<SyntaxTree, Error> {
    let mut reader = LineReader::new(text);
    let mut nodes = Vec::new();

    loop {
        let line = match reader.next_logical() {
            Ok(Some(line)) => line,
            Ok(None) => break,
            Err(err) => return Err(reporter.error(err.position, err.message, err.help)),
        };
        let escape = reader.escape();
        let mut node = match node_from_line(&line, 0, escape) {
            Ok(node) => node,
            Err(err) => {
                let position = line.position(err.offset);
                return Err(reporter.error(position, err.message, err.help));
            }
        };

        if node.can_contain_heredoc() && line.text.contains("<<") {
            for mut doc in heredoc::markers_in_line(&line.text) {
                let Some(body) = reader.read_heredoc(&doc.name, doc.chomp) else {
                    let offset = line
                        .text
                        .find(&format!("<<{}", doc.name))
                        .or_else(|| line.text.find("<<"));
                    return Err(reporter.error(
                        line.position(offset.unwrap_or(0)),
                        format!("unterminated heredoc: no line {:?} after it", doc.name),
                        Some(format!(
                            "end the heredoc with a line that holds only {}",
                            doc.name
                        )),
                    ));
                };
                doc.content = if doc.chomp {
                    heredoc::chomp_tabs(&body)
                } else {
                    body
                };
                node.heredocs.push(doc);
            }
            node.line.end_line = reader.lines_read();
        }
        nodes.push(node);
    }

    if nodes.is_empty() {
        let position = Position::new(reader.lines_read().max(1), 1);
        return Err(reporter.error(
            position,
            "the file has no instructions",
            Some("start it with FROM IMAGE".to_string()),
        ));
    }

    Ok(SyntaxTree {
        nodes,
        escape: reader.escape(),
        syntax: reader.directive("syntax").map(str::to_string),
    })
}

/// Splits one instruction. `start` is the byte offset in `line.text` where
/// the instruction begins (after `ONBUILD` for its child).
fn node_from_line(line: &LogicalLine, start: usize, escape: char) -> Result<Node, LineProblem> {
    let text = &line.text[start..];
    let trimmed = text.trim();
    let (after_keyword, keyword) = keyword(trimmed);
    let (mut args_text, mut flags) = if after_keyword.is_empty() {
        ("", Vec::new())
    } else {
        extract_flags(after_keyword, escape)
    };
    args_text = args_text.trim();
    let keyword_offset = start + offset_in(text, keyword);
    let mut args_offset = if args_text.is_empty() {
        line.text.len()
    } else {
        start + offset_in(text, args_text)
    };

    let lower = keyword.to_ascii_lowercase();
    if lower == "copy" {
        // The original `COPY --FROM STAGE SRC DEST`: the stage is the next word.
        if let Some(last) = flags
            .last_mut()
            .filter(|flag| flag.eq_ignore_ascii_case("--from"))
        {
            if let Some(end) = args_text.find(is_docker_blank) {
                *last = format!("--from={}", &args_text[..end]);
                let rest = args_text[end..].trim_start_matches(is_docker_blank);
                args_offset += offset_in(args_text, rest);
                args_text = rest;
            }
        }
    }

    let mut node = Node {
        keyword: keyword.to_string(),
        flags,
        args: Vec::new(),
        child: None,
        json: false,
        heredocs: Vec::new(),
        keyword_offset,
        args_offset,
        args_text: args_text.to_string(),
        line: line.clone(),
    };

    let split = match lower.as_str() {
        "add" | "copy" | "volume" => maybe_json_to_list(args_text),
        "arg" => Ok(Split::words(parse_words(args_text, escape))),
        "cmd" | "entrypoint" => maybe_json(args_text).map(|split| original_list(split, args_text)),
        "shell" => maybe_json(args_text),
        "run" => maybe_json(args_text).map(|split| original_quoted_run(split, args_text)),
        "env" => parse_env(args_text, escape),
        "label" => parse_name_value(args_text, "LABEL", escape),
        "expose" | "from" => Ok(Split::plain(split_blanks(args_text))),
        "healthcheck" => parse_health_config(args_text),
        "maintainer" | "stopsignal" | "user" | "workdir" | "rootpivot" | "osrelease"
        | "auditcfg" => Ok(Split::plain(
            (!args_text.is_empty())
                .then(|| args_text.to_string())
                .into_iter()
                .collect(),
        )),
        "onbuild" => {
            if !args_text.is_empty() {
                let child = node_from_line(line, args_offset, escape)?;
                node.child = Some(Box::new(child));
            }
            Ok(Split::plain(Vec::new()))
        }
        // Unknown instructions keep no arguments; the check reports them.
        _ => Ok(Split::plain(Vec::new())),
    };
    let split = split.map_err(|problem| LineProblem {
        offset: args_offset + problem.offset,
        ..problem
    });
    let split = split?;
    node.args = split.args;
    node.json = split.json;
    Ok(node)
}

/// The arguments of one instruction and whether they were a JSON array.
struct Split {
    args: Vec<String>,
    json: bool,
}

impl Split {
    fn plain(args: Vec<String>) -> Self {
        Split { args, json: false }
    }

    fn words(words: Vec<SpannedWord>) -> Self {
        Split::plain(words.into_iter().map(|word| word.text).collect())
    }
}

/// Splits the flags (`--name=value` words) off the front of `line` and
/// returns the rest. A `--` word ends the flags. Quotes in a flag are removed.
fn extract_flags(line: &str, escape: char) -> (&str, Vec<String>) {
    #[derive(PartialEq)]
    enum Phase {
        Spaces,
        Word,
        Quote,
    }
    let chars: Vec<(usize, char)> = line.char_indices().collect();
    let mut flags = Vec::new();
    let mut phase = Phase::Spaces;
    let mut word = String::new();
    let mut quote = '\0';
    let mut blank_ok = false;
    let mut i = 0;

    loop {
        let at_end = i == chars.len();
        let mut ch = chars.get(i).map_or('\0', |&(_, ch)| ch);
        if phase == Phase::Spaces {
            if at_end {
                break;
            }
            if ch.is_whitespace() {
                i += 1;
                continue;
            }
            let starts_flag = ch == '-' && chars.get(i + 1).is_some_and(|&(_, next)| next == '-');
            if !starts_flag {
                return (&line[chars[i].0..], flags);
            }
            phase = Phase::Word;
        }
        if at_end {
            if word != "--" && (blank_ok || !word.is_empty()) {
                flags.push(word);
            }
            break;
        }
        if phase == Phase::Word {
            if ch.is_whitespace() {
                phase = Phase::Spaces;
                if word == "--" {
                    return (&line[chars[i].0..], flags);
                }
                if blank_ok || !word.is_empty() {
                    flags.push(std::mem::take(&mut word));
                }
                blank_ok = false;
                i += 1;
                continue;
            }
            if ch == '\'' || ch == '"' {
                quote = ch;
                blank_ok = true;
                phase = Phase::Quote;
                i += 1;
                continue;
            }
            if ch == escape {
                if i + 1 == chars.len() {
                    i += 1;
                    continue;
                }
                i += 1;
                ch = chars[i].1;
            }
            word.push(ch);
            i += 1;
            continue;
        }
        // Inside quotes.
        if ch == quote {
            phase = Phase::Word;
            i += 1;
            continue;
        }
        if ch == escape {
            if i + 1 == chars.len() {
                phase = Phase::Word;
                i += 1;
                continue;
            }
            i += 1;
            ch = chars[i].1;
        }
        word.push(ch);
        i += 1;
    }
    ("", flags)
}

/// A word of an instruction with quotes and escapes kept, and where it is.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SpannedWord {
    pub text: String,
    /// Byte range in the argument text.
    pub start: usize,
    pub end: usize,
}

/// Splits `rest` into words at blanks outside quotes, keeping the quotes and
/// escape characters in the words (they are removed when a word is expanded).
pub fn parse_words(rest: &str, escape: char) -> Vec<SpannedWord> {
    #[derive(PartialEq)]
    enum Phase {
        Spaces,
        Word,
        Quote,
    }
    let mut words = Vec::new();
    let mut phase = Phase::Spaces;
    let mut quote = '\0';
    let mut blank_ok = false;
    let mut word = String::new();
    let mut word_start = 0;
    let mut pos = 0;

    loop {
        let at_end = pos == rest.len();
        let mut ch = rest[pos..].chars().next().unwrap_or('\0');
        let mut width = ch.len_utf8();
        if phase == Phase::Spaces {
            if at_end {
                break;
            }
            if ch.is_whitespace() {
                pos += width;
                continue;
            }
            phase = Phase::Word;
            word_start = pos;
        }
        if at_end {
            if blank_ok || !word.is_empty() {
                words.push(SpannedWord {
                    text: word,
                    start: word_start,
                    end: pos,
                });
            }
            break;
        }
        if phase == Phase::Word {
            if ch.is_whitespace() {
                phase = Phase::Spaces;
                if blank_ok || !word.is_empty() {
                    words.push(SpannedWord {
                        text: std::mem::take(&mut word),
                        start: word_start,
                        end: pos,
                    });
                }
                word.clear();
                blank_ok = false;
                pos += width;
                continue;
            }
            if ch == '\'' || ch == '"' {
                quote = ch;
                blank_ok = true;
                phase = Phase::Quote;
            }
            if ch == escape {
                if pos + width == rest.len() {
                    // An escape character at the end of the line is dropped.
                    pos += width;
                    continue;
                }
                word.push(ch);
                pos += width;
                ch = rest[pos..].chars().next().unwrap_or('\0');
                width = ch.len_utf8();
            }
            word.push(ch);
            pos += width;
            continue;
        }
        // Inside quotes: the escape character works except in single quotes.
        if ch == quote {
            phase = Phase::Word;
        }
        if ch == escape && quote != '\'' {
            if pos + width == rest.len() {
                phase = Phase::Word;
                pos += width;
                continue;
            }
            pos += width;
            word.push(ch);
            ch = rest[pos..].chars().next().unwrap_or('\0');
            width = ch.len_utf8();
        }
        word.push(ch);
        pos += width;
    }
    words
}

/// Splits at runs of Docker's blanks.
fn split_blanks(rest: &str) -> Vec<String> {
    if rest.is_empty() {
        return Vec::new();
    }
    rest.split(is_docker_blank)
        .filter(|part| !part.is_empty())
        .map(str::to_string)
        .collect()
}

/// Parses `ENV` arguments; adds the original `KEY = VALUE` form to Docker's.
fn parse_env(rest: &str, escape: char) -> Result<Split, LineProblem> {
    let words = parse_words(rest, escape);
    if let [key, equals, value, ..] = words.as_slice() {
        if equals.text == "=" && !key.text.contains('=') {
            let lexer = Lexer {
                skip_unset: true,
                ..Lexer::new(escape)
            };
            let name = lexer.expand_word(&key.text, &NoVars).map_err(|err| {
                problem(
                    key.start + err.offset,
                    err.message,
                    err.help.as_deref().unwrap_or(""),
                )
            })?;
            let value_text = strip_comment(&rest[value.start..]).to_string();
            return Ok(Split::plain(vec![name, value_text, "=".to_string()]));
        }
    }
    if let [key, equals] = words.as_slice() {
        if equals.text == "=" && !key.text.contains('=') {
            return Err(problem(
                equals.start,
                format!("ENV {} = has no value after the '='", key.text),
                "write ENV NAME = VALUE, or ENV NAME=\"\" for an empty value",
            ));
        }
    }
    parse_name_value(rest, "ENV", escape)
}

/// Parses `ENV` and `LABEL` arguments: `name value` or `name=value ...`.
/// Each pair becomes three arguments: name, value and the separator (`=` or
/// the empty string for the `name value` form).
fn parse_name_value(rest: &str, keyword: &str, escape: char) -> Result<Split, LineProblem> {
    let words = parse_words(rest, escape);
    let Some(first) = words.first() else {
        return Ok(Split::plain(Vec::new()));
    };

    if !first.text.contains('=') {
        let Some(end) = rest.find(is_docker_blank) else {
            return Err(problem(
                0,
                format!("{keyword} {rest} has no value"),
                &format!("write {keyword} {rest}=VALUE"),
            ));
        };
        let value = rest[end..].trim_start_matches(is_docker_blank);
        return Ok(Split::plain(vec![
            rest[..end].to_string(),
            value.to_string(),
            String::new(),
        ]));
    }

    let mut args = Vec::new();
    for word in &words {
        let Some((name, value)) = word.text.split_once('=') else {
            return Err(problem(
                word.start,
                format!("{keyword} argument {:?} has no '='", word.text),
                &format!(
                    "write {}=VALUE; every pair in this {keyword} needs the NAME=VALUE form",
                    word.text
                ),
            ));
        };
        args.extend([name.to_string(), value.to_string(), "=".to_string()]);
    }
    Ok(Split::plain(args))
}

/// The ways a JSON-looking argument can fail to parse.
enum JsonProblem {
    /// Not a JSON array: the argument is shell form.
    NotJson,
    /// A JSON array with something other than strings in it.
    NotStrings,
}

fn parse_json(rest: &str) -> Result<Vec<String>, JsonProblem> {
    let rest = rest.trim_start();
    if !rest.starts_with('[') {
        return Err(JsonProblem::NotJson);
    }
    let values: Vec<serde_json::Value> =
        serde_json::from_str(rest).map_err(|_| JsonProblem::NotJson)?;
    values
        .into_iter()
        .map(|value| match value {
            serde_json::Value::String(text) => Ok(text),
            _ => Err(JsonProblem::NotStrings),
        })
        .collect()
}

fn not_strings() -> LineProblem {
    problem(
        0,
        "a JSON array of arguments may hold only strings",
        "quote every element, for example [\"sh\", \"-c\", \"echo 1\"]",
    )
}

/// `RUN`, `CMD`, `ENTRYPOINT`, `SHELL`: a JSON array, or else the whole text.
fn maybe_json(rest: &str) -> Result<Split, LineProblem> {
    if rest.is_empty() {
        return Ok(Split::plain(Vec::new()));
    }
    match parse_json(rest) {
        Ok(args) => Ok(Split { args, json: true }),
        Err(JsonProblem::NotStrings) => Err(not_strings()),
        Err(JsonProblem::NotJson) => {
            // The original language allowed a comment after the array.
            let stripped = strip_comment(rest);
            match parse_json(stripped) {
                Ok(args) if stripped.len() < rest.len() => Ok(Split { args, json: true }),
                _ => Ok(Split::plain(vec![rest.to_string()])),
            }
        }
    }
}

/// Returns `text` without a trailing comment, which the original language
/// allowed after an instruction: a `#` that starts a word outside quotes, and
/// everything after it.
fn strip_comment(text: &str) -> &str {
    let mut quote = None;
    let mut escaped = false;
    let mut after_blank = false;
    for (index, ch) in text.char_indices() {
        if escaped {
            escaped = false;
            after_blank = false;
            continue;
        }
        match quote {
            Some(open) => {
                if ch == '\\' && open == '"' {
                    escaped = true;
                } else if ch == open {
                    quote = None;
                }
            }
            None => {
                if ch == '\\' {
                    escaped = true;
                } else if ch == '"' || ch == '\'' {
                    quote = Some(ch);
                } else if ch == '#' && after_blank {
                    return text[..index].trim_end();
                }
            }
        }
        after_blank = quote.is_none() && ch.is_whitespace();
    }
    text
}

/// `ADD`, `COPY`, `VOLUME`: a JSON array, or else words split at blanks.
fn maybe_json_to_list(rest: &str) -> Result<Split, LineProblem> {
    match parse_json(rest) {
        Ok(args) => Ok(Split { args, json: true }),
        Err(JsonProblem::NotStrings) => Err(not_strings()),
        Err(JsonProblem::NotJson) => Ok(Split::plain(split_blanks(rest))),
    }
}

/// Reads the original `RUN "command"`: when the whole argument is one
/// double-quoted string, the command is its content, with `\"` and `\\`
/// unescaped and every other character (including `$`) passed to the shell.
fn original_quoted_run(split: Split, rest: &str) -> Split {
    if split.json {
        return split;
    }
    match unquote_whole(strip_comment(rest)) {
        Some(command) => Split::plain(vec![command]),
        None => split,
    }
}

/// Reads the original list form of `CMD` and `ENTRYPOINT`,
/// `[ /bin/sh , -c , "echo hi" ]`, whose items may be unquoted words. It
/// applies only to text that is not JSON, has at least one comma and has
/// only plain words or whole double-quoted strings as items, because such
/// text would fail as a shell command anyway. Empty items are dropped, as
/// the original did.
fn original_list(split: Split, rest: &str) -> Split {
    if split.json {
        return split;
    }
    let text = strip_comment(rest);
    let Some(inner) = text
        .strip_prefix('[')
        .and_then(|text| text.strip_suffix(']'))
    else {
        return split;
    };
    if !inner.contains(',') {
        return split;
    }
    let mut items = Vec::new();
    for item in inner.split(',') {
        let item = item.trim();
        if item.is_empty() {
            continue;
        }
        if let Some(content) = unquote_whole(item) {
            items.push(content);
        } else if item.contains(|ch: char| ch.is_whitespace() || "\"'[]".contains(ch)) {
            return split;
        } else {
            items.push(item.to_string());
        }
    }
    Split {
        args: items,
        json: true,
    }
}

/// Returns the content of `text` when all of it is one double-quoted string.
pub fn unquote_whole(text: &str) -> Option<String> {
    let inner = text.strip_prefix('"')?;
    let mut content = String::new();
    let mut chars = inner.char_indices();
    while let Some((index, ch)) = chars.next() {
        match ch {
            '\\' => match chars.next() {
                Some((_, next @ ('"' | '\\'))) => content.push(next),
                Some((_, next)) => {
                    content.push('\\');
                    content.push(next);
                }
                None => return None,
            },
            '"' => return (index + 1 == inner.len()).then_some(content),
            _ => content.push(ch),
        }
    }
    None
}

/// `HEALTHCHECK NONE` or `HEALTHCHECK [flags] CMD command`.
fn parse_health_config(rest: &str) -> Result<Split, LineProblem> {
    let sep = rest
        .find(|ch: char| ch.is_whitespace())
        .unwrap_or(rest.len());
    if sep == 0 {
        return Ok(Split::plain(Vec::new()));
    }
    let kind = &rest[..sep];
    let command_text = rest[sep..].trim_start();
    let offset = offset_in(rest, command_text);
    let command = maybe_json(command_text).map_err(|problem| LineProblem {
        offset: offset + problem.offset,
        ..problem
    })?;
    let mut args = vec![kind.to_string()];
    args.extend(command.args);
    Ok(Split {
        args,
        json: command.json,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn words(text: &str) -> Vec<String> {
        parse_words(text, '\\')
            .into_iter()
            .map(|word| word.text)
            .collect()
    }

    #[test]
    fn words_keep_quotes() {
        assert_eq!(words("abc=\"123 456\" def"), ["abc=\"123 456\"", "def"]);
        assert_eq!(words("a\\ b  'c d'"), ["a\\ b", "'c d'"]);
    }

    #[test]
    fn flags_split_off() {
        assert_eq!(
            extract_flags("--user=me --doit=true foo /tmp/", '\\'),
            (
                "foo /tmp/",
                vec!["--user=me".to_string(), "--doit=true".to_string()]
            )
        );
        assert_eq!(extract_flags("-- foo", '\\'), (" foo", vec![]));
        assert_eq!(
            extract_flags("--doit -- [ ]", '\\'),
            (" [ ]", vec!["--doit".to_string()])
        );
    }

    #[test]
    fn original_unquoted_list() {
        let read = |text: &str| {
            let split = original_list(maybe_json(text).ok().unwrap(), text);
            (split.args, split.json)
        };
        assert_eq!(
            read("[ /bin/sh , -c, \"echo hi\" ]"),
            (
                vec![
                    "/bin/sh".to_string(),
                    "-c".to_string(),
                    "echo hi".to_string()
                ],
                true
            )
        );
        assert!(!read("[ -d /x ]").1);
        assert!(!read("['echo','x']").1);
        assert!(!read("[ a b, c ]").1);
    }

    #[test]
    fn trailing_comment_stripped() {
        assert_eq!(strip_comment("\"a # b\"  # note"), "\"a # b\"");
        assert_eq!(strip_comment("x#y 'z # w'"), "x#y 'z # w'");
        assert_eq!(strip_comment("[\"a\"] # c"), "[\"a\"]");
        assert_eq!(strip_comment("a \\# b"), "a \\# b");
    }

    #[test]
    fn quoted_run_unquoted() {
        assert_eq!(
            unquote_whole("\"pkg install h2o\"").as_deref(),
            Some("pkg install h2o")
        );
        assert_eq!(
            unquote_whole("\"a \\\"b\\\" \\$c\"").as_deref(),
            Some("a \"b\" \\$c")
        );
        assert_eq!(unquote_whole("\"a\" \"b\""), None);
        assert_eq!(unquote_whole("\"open"), None);
    }
}
