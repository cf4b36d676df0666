//! Word expansion with the shell-like rules Docker applies to the arguments
//! of `ENV`, `ARG`, `LABEL`, `COPY`, `ADD`, `WORKDIR`, `USER`, `EXPOSE`,
//! `VOLUME`, `STOPSIGNAL` and `FROM`. The rules cover single and double
//! quotes, the escape character, `$VAR`, `${VAR}`, `${VAR:-word}`, `${VAR-word}`,
//! `${VAR:+word}`, `${VAR+word}`, `${VAR:?message}`, `${VAR?message}`,
//! `${VAR#pattern}`, `${VAR##pattern}`, `${VAR%pattern}`, `${VAR%%pattern}`
//! and `${VAR/pattern/replacement}` (`//` replaces every match).
//!
//! `RUN`, `CMD` and `ENTRYPOINT` are not expanded here: their shell does it.
//! The rules follow Docker's `shell` lexer (moby/buildkit
//! `frontend/dockerfile/shell`), checked against its `envVarTest` and
//! `wordsTest` tables.

use std::collections::{BTreeMap, HashMap};
use std::hash::BuildHasher;

/// Variables a word is expanded against.
pub trait Vars {
    /// Returns the value of `name`, `None` when it is not set.
    fn var(&self, name: &str) -> Option<String>;
}

impl<S: BuildHasher> Vars for HashMap<String, String, S> {
    fn var(&self, name: &str) -> Option<String> {
        self.get(name).cloned()
    }
}

impl Vars for BTreeMap<String, String> {
    fn var(&self, name: &str) -> Option<String> {
        self.get(name).cloned()
    }
}

/// Ordered `NAME=value` pairs: the last pair of a name wins.
impl Vars for [(String, String)] {
    fn var(&self, name: &str) -> Option<String> {
        self.iter()
            .rev()
            .find(|(key, _)| key == name)
            .map(|(_, value)| value.clone())
    }
}

impl Vars for Vec<(String, String)> {
    fn var(&self, name: &str) -> Option<String> {
        self.as_slice().var(name)
    }
}

/// The empty set of variables.
pub struct NoVars;

impl Vars for NoVars {
    fn var(&self, _name: &str) -> Option<String> {
        None
    }
}

/// A word that could not be expanded: where, what and how to fix it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WordError {
    /// Byte offset in the word where the problem starts.
    pub offset: usize,
    pub message: String,
    pub help: Option<String>,
}

impl std::fmt::Display for WordError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}", self.message)?;
        if let Some(help) = &self.help {
            write!(f, " ({help})")?;
        }
        Ok(())
    }
}

/// Settings of one expansion. The defaults expand variables and remove
/// quotes and escape characters.
#[derive(Debug, Clone, Copy)]
pub struct Lexer {
    /// The escape character: `\` unless the file's `escape` directive sets `` ` ``.
    pub escape: char,
    /// Keep quote characters in the output.
    pub raw_quotes: bool,
    /// Keep escape characters in the output.
    pub raw_escapes: bool,
    /// Leave references to unset variables as written instead of expanding
    /// them to the empty string.
    pub skip_unset: bool,
    /// Treat quote characters as ordinary characters.
    pub skip_quotes: bool,
}

impl Lexer {
    /// Returns a lexer with the escape character `escape` and default settings.
    pub fn new(escape: char) -> Self {
        Lexer {
            escape,
            raw_quotes: false,
            raw_escapes: false,
            skip_unset: false,
            skip_quotes: false,
        }
    }

    /// Expands `word` into one string, keeping the blanks between its parts.
    pub fn expand_word(&self, word: &str, vars: &dyn Vars) -> Result<String, WordError> {
        let mut scan = Scanner::new(self, word, vars);
        scan.process_stop_on(None, self.raw_escapes)
            .map(|(result, _)| result)
    }

    /// Expands `word` and splits the result into words at unquoted blanks;
    /// blanks that come from a variable split too, as in the shell.
    pub fn expand_words(&self, word: &str, vars: &dyn Vars) -> Result<Vec<String>, WordError> {
        let mut scan = Scanner::new(self, word, vars);
        scan.process_stop_on(None, self.raw_escapes)
            .map(|(_, words)| words)
    }
}

/// Collects the words of an expansion.
#[derive(Default)]
struct Words {
    buf: String,
    words: Vec<String>,
    in_word: bool,
}

impl Words {
    fn add_char(&mut self, ch: char) {
        if ch.is_whitespace() {
            if self.in_word && !self.buf.is_empty() {
                self.words.push(std::mem::take(&mut self.buf));
                self.in_word = false;
            }
        } else {
            self.add_raw_char(ch);
        }
    }

    fn add_raw_char(&mut self, ch: char) {
        self.buf.push(ch);
        self.in_word = true;
    }

    fn add_string(&mut self, text: &str) {
        for ch in text.chars() {
            self.add_char(ch);
        }
    }

    fn add_raw_string(&mut self, text: &str) {
        self.buf.push_str(text);
        self.in_word = true;
    }

    fn finish(mut self) -> Vec<String> {
        if !self.buf.is_empty() {
            self.words.push(std::mem::take(&mut self.buf));
        }
        self.words
    }
}

struct Scanner<'a> {
    lexer: &'a Lexer,
    src: &'a str,
    pos: usize,
    vars: &'a dyn Vars,
    raw_escapes: bool,
}

fn error(offset: usize, message: impl Into<String>, help: &str) -> WordError {
    WordError {
        offset,
        message: message.into(),
        help: (!help.is_empty()).then(|| help.to_string()),
    }
}

impl<'a> Scanner<'a> {
    fn new(lexer: &'a Lexer, src: &'a str, vars: &'a dyn Vars) -> Self {
        Scanner {
            lexer,
            src,
            pos: 0,
            vars,
            raw_escapes: lexer.raw_escapes,
        }
    }

    fn peek(&self) -> Option<char> {
        self.src[self.pos..].chars().next()
    }

    fn next(&mut self) -> Option<char> {
        let ch = self.peek()?;
        self.pos += ch.len_utf8();
        Some(ch)
    }

    /// Processes characters up to `stop` (consumed) or the end of the word,
    /// returning the expanded text and its words.
    fn process_stop_on(
        &mut self,
        stop: Option<char>,
        raw_escapes: bool,
    ) -> Result<(String, Vec<String>), WordError> {
        let saved_raw_escapes = std::mem::replace(&mut self.raw_escapes, raw_escapes);
        let outcome = self.process_until(stop);
        self.raw_escapes = saved_raw_escapes;
        outcome
    }

    fn process_until(&mut self, stop: Option<char>) -> Result<(String, Vec<String>), WordError> {
        let start = self.pos;
        let mut result = String::new();
        let mut words = Words::default();

        while let Some(ch) = self.peek() {
            if stop == Some(ch) {
                self.next();
                return Ok((result, words.finish()));
            }
            match ch {
                '$' => {
                    let value = self.process_dollar()?;
                    result.push_str(&value);
                    words.add_string(&value);
                }
                '<' => {
                    let value = self.process_possible_heredoc();
                    result.push_str(&value);
                    words.add_raw_string(&value);
                }
                '\'' if !self.lexer.skip_quotes => {
                    let value = self.process_single_quote()?;
                    result.push_str(&value);
                    words.add_raw_string(&value);
                }
                '"' if !self.lexer.skip_quotes => {
                    let value = self.process_double_quote()?;
                    result.push_str(&value);
                    words.add_raw_string(&value);
                }
                _ => {
                    self.next();
                    if ch == self.lexer.escape {
                        if self.raw_escapes {
                            words.add_raw_char(ch);
                            result.push(ch);
                        }
                        // An escape character at the end of the word is dropped.
                        let Some(escaped) = self.next() else { break };
                        words.add_raw_char(escaped);
                        result.push(escaped);
                    } else {
                        words.add_char(ch);
                        result.push(ch);
                    }
                }
            }
        }

        if let Some(stop) = stop {
            return Err(error(
                start,
                format!("missing {stop:?} before the end of the word"),
                &format!("add {stop:?}"),
            ));
        }
        Ok((result, words.finish()))
    }

    fn process_single_quote(&mut self) -> Result<String, WordError> {
        // Everything between single quotes is literal; a single quote cannot
        // be escaped inside them.
        let start = self.pos;
        let mut result = String::new();
        let quote = self.next().unwrap_or('\'');
        if self.lexer.raw_quotes {
            result.push(quote);
        }
        loop {
            match self.next() {
                None => {
                    return Err(error(
                        start,
                        "unterminated single-quoted string",
                        "add the closing ' or escape the opening one",
                    ))
                }
                Some('\'') => {
                    if self.lexer.raw_quotes {
                        result.push('\'');
                    }
                    return Ok(result);
                }
                Some(ch) => result.push(ch),
            }
        }
    }

    fn process_double_quote(&mut self) -> Result<String, WordError> {
        // Inside double quotes `$` expands, and the escape character escapes
        // only `"`, `$` and itself; before anything else it stays literal.
        let start = self.pos;
        let mut result = String::new();
        let quote = self.next().unwrap_or('"');
        if self.lexer.raw_quotes {
            result.push(quote);
        }
        loop {
            match self.peek() {
                None => {
                    return Err(error(
                        start,
                        "unterminated double-quoted string",
                        "add the closing \" or escape the opening one",
                    ))
                }
                Some('"') => {
                    self.next();
                    if self.lexer.raw_quotes {
                        result.push('"');
                    }
                    return Ok(result);
                }
                Some('$') => {
                    let value = self.process_dollar()?;
                    result.push_str(&value);
                }
                Some(_) => {
                    let mut ch = self.next().unwrap_or_default();
                    if ch == self.lexer.escape {
                        if self.raw_escapes {
                            result.push(ch);
                        }
                        match self.peek() {
                            None => continue,
                            Some(next)
                                if next == '"' || next == '$' || next == self.lexer.escape =>
                            {
                                ch = next;
                                self.next();
                            }
                            Some(_) => {}
                        }
                    }
                    result.push(ch);
                }
            }
        }
    }

    fn process_dollar(&mut self) -> Result<String, WordError> {
        let start = self.pos;
        self.next();

        if self.peek() != Some('{') {
            let name = self.process_name();
            if name.is_empty() {
                return Ok("$".to_string());
            }
            return Ok(match self.vars.var(&name) {
                Some(value) => value,
                None if self.lexer.skip_unset => format!("${name}"),
                None => String::new(),
            });
        }

        self.next();
        match self.peek() {
            None => {
                return Err(error(start, "missing '}' in variable reference", "add '}'"));
            }
            Some('{' | '}' | ':') => {
                return Err(error(
                    start,
                    "bad substitution: a variable name must follow '${'",
                    "write ${NAME} with a name of letters, digits and '_'",
                ));
            }
            Some(_) => {}
        }

        let name = self.process_name();
        let Some(mut modifier) = self.next() else {
            return Err(error(start, "missing '}' in variable reference", "add '}'"));
        };
        let mut modifier_text = modifier.to_string();
        let mut null_is_unset = false;

        match modifier {
            '}' => {
                return Ok(match self.vars.var(&name) {
                    Some(value) => value,
                    None if self.lexer.skip_unset => format!("${{{name}}}"),
                    None => String::new(),
                });
            }
            '/' => return self.process_replacement(start, &name),
            ':' => {
                null_is_unset = true;
                match self.next() {
                    Some(ch) => {
                        modifier = ch;
                        modifier_text.push(ch);
                    }
                    None => {
                        return Err(error(start, "missing '}' in variable reference", "add '}'"))
                    }
                }
            }
            '+' | '-' | '?' | '#' | '%' => {}
            _ => return Err(unsupported_modifier(start, &modifier_text)),
        }

        let pattern_escapes = modifier == '#' || modifier == '%';
        if null_is_unset && pattern_escapes {
            return Err(unsupported_modifier(start, &modifier_text));
        }
        let word = match self.process_stop_on(Some('}'), pattern_escapes) {
            Ok((word, _)) => word,
            Err(err) if self.peek().is_none() => {
                return Err(WordError {
                    offset: start,
                    ..err
                });
            }
            Err(err) => return Err(err),
        };

        let value = self.vars.var(&name);
        if self.lexer.skip_unset && value.is_none() {
            return Ok(format!("${{{name}{modifier_text}{word}}}"));
        }
        let unset = value.is_none() || (null_is_unset && value.as_deref() == Some(""));

        match modifier {
            '-' => Ok(if unset {
                word
            } else {
                value.unwrap_or_default()
            }),
            '+' => Ok(if unset { String::new() } else { word }),
            '?' => {
                if value.is_none() || unset {
                    let what = if value.is_none() { "unset" } else { "empty" };
                    let message = if word.is_empty() {
                        format!("variable {name} is {what}")
                    } else {
                        format!("variable {name} is {what}: {word}")
                    };
                    return Err(error(
                        start,
                        message,
                        &format!("set {name}, for example with --build-arg {name}=VALUE"),
                    ));
                }
                Ok(value.unwrap_or_default())
            }
            '%' | '#' => {
                let value = value.unwrap_or_default();
                let (pattern, longest) = match word.strip_prefix(modifier) {
                    Some(rest) => (rest.to_string(), true),
                    None => (word, false),
                };
                let pattern = Pattern::parse(&pattern).map_err(|message| {
                    error(start, message, "escape only '*', '?' and '\\' in a pattern")
                })?;
                Ok(if modifier == '#' {
                    pattern.trim_prefix(&value, longest)
                } else {
                    pattern.trim_suffix(&value, longest)
                })
            }
            _ => Err(unsupported_modifier(start, &modifier_text)),
        }
    }

    fn process_replacement(&mut self, start: usize, name: &str) -> Result<String, WordError> {
        let replace_all = self.peek() == Some('/');
        if replace_all {
            self.next();
        }
        let pattern = match self.process_stop_on(Some('/'), true) {
            Ok((pattern, _)) => pattern,
            Err(err) if self.peek().is_none() => {
                return Err(WordError {
                    offset: start,
                    message: "missing '/' after the pattern in ${NAME/pattern/replacement}".into(),
                    ..err
                })
            }
            Err(err) => return Err(err),
        };
        let replacement = match self.process_stop_on(Some('}'), true) {
            Ok((replacement, _)) => replacement,
            Err(err) if self.peek().is_none() => {
                return Err(WordError {
                    offset: start,
                    ..err
                })
            }
            Err(err) => return Err(err),
        };

        let Some(value) = self.vars.var(name) else {
            if self.lexer.skip_unset {
                return Ok(format!("${{{name}/{pattern}/{replacement}}}"));
            }
            return Ok(String::new());
        };
        let pattern = Pattern::parse(&pattern).map_err(|message| {
            error(start, message, "escape only '*', '?' and '\\' in a pattern")
        })?;
        Ok(pattern.replace(&value, &replacement, replace_all))
    }

    /// Reads a variable name: letters, digits and `_`; or a run of digits
    /// (a positional parameter); or one special parameter character.
    fn process_name(&mut self) -> String {
        let mut name = String::new();
        while let Some(ch) = self.peek() {
            if name.is_empty() && ch.is_ascii_digit() {
                while let Some(digit) = self.peek().filter(char::is_ascii_digit) {
                    name.push(digit);
                    self.next();
                }
                return name;
            }
            if name.is_empty() && matches!(ch, '@' | '*' | '#' | '?' | '-' | '$' | '!' | '0') {
                self.next();
                return ch.to_string();
            }
            if !ch.is_alphanumeric() && ch != '_' {
                break;
            }
            self.next();
            name.push(ch);
        }
        name
    }

    fn process_possible_heredoc(&mut self) -> String {
        self.next();
        if self.peek() != Some('<') {
            return "<".to_string();
        }
        self.next();
        let mut result = "<<".to_string();
        while let Some(ch) = self.peek().filter(|&ch| ch == ' ' || ch == '\t') {
            result.push(ch);
            self.next();
        }
        result
    }
}

/// Matches `text` against `pattern`. A token for which `is_star` returns
/// true matches any run of elements, and any other token matches one element
/// for which `matches_one` returns true. Takes O(pattern × text) steps: on a
/// mismatch only the most recent star is retried, which is enough because a
/// star matches anything.
pub(crate) fn wildcard_match<P, T>(
    pattern: &[P],
    text: &[T],
    is_star: impl Fn(&P) -> bool,
    matches_one: impl Fn(&P, &T) -> bool,
) -> bool {
    let (mut p, mut t) = (0, 0);
    let mut retry: Option<(usize, usize)> = None;
    while t < text.len() {
        if p < pattern.len() && is_star(&pattern[p]) {
            retry = Some((p, t));
            p += 1;
        } else if p < pattern.len() && matches_one(&pattern[p], &text[t]) {
            p += 1;
            t += 1;
        } else if let Some((star, start)) = retry {
            // Let the last star take one more element and try again.
            p = star + 1;
            t = start + 1;
            retry = Some((star, start + 1));
        } else {
            return false;
        }
    }
    while p < pattern.len() && is_star(&pattern[p]) {
        p += 1;
    }
    p == pattern.len()
}

fn unsupported_modifier(offset: usize, modifier: &str) -> WordError {
    error(
        offset,
        format!("unsupported modifier {modifier:?} in variable reference"),
        "use one of :- - :+ + :? ? # ## % %% / //",
    )
}

/// A shell pattern of `${VAR#pattern}` and friends: `*` matches any run of
/// characters, `?` one character, `\` makes the next `*`, `?` or `\` literal.
#[derive(Debug)]
struct Pattern {
    tokens: Vec<Token>,
}

#[derive(Debug, Clone, Copy, PartialEq)]
enum Token {
    Any,
    One,
    Char(char),
}

impl Pattern {
    fn parse(text: &str) -> Result<Self, String> {
        let mut tokens = Vec::new();
        let mut chars = text.chars().peekable();
        while let Some(ch) = chars.next() {
            match ch {
                '*' => tokens.push(Token::Any),
                '?' => tokens.push(Token::One),
                '\\' => match chars.peek().copied() {
                    // `}` and `/` are escaped only to get them into `${}`.
                    Some('}' | '/') => {}
                    Some(next @ ('*' | '?' | '\\')) => {
                        chars.next();
                        tokens.push(Token::Char(next));
                    }
                    Some(next) => {
                        return Err(format!("invalid escape '\\{next}' in pattern {text:?}"))
                    }
                    None => return Err(format!("invalid escape at the end of pattern {text:?}")),
                },
                _ => tokens.push(Token::Char(ch)),
            }
        }
        Ok(Pattern { tokens })
    }

    /// Reports whether the pattern matches all of `text`.
    fn matches(&self, text: &[char]) -> bool {
        wildcard_match(
            &self.tokens,
            text,
            |token| *token == Token::Any,
            |token, ch| match token {
                Token::Any => false,
                Token::One => true,
                Token::Char(literal) => literal == ch,
            },
        )
    }

    fn trim_prefix(&self, value: &str, longest: bool) -> String {
        let chars: Vec<char> = value.chars().collect();
        let mut ends: Vec<usize> = (0..=chars.len()).collect();
        if longest {
            ends.reverse();
        }
        match ends.into_iter().find(|&end| self.matches(&chars[..end])) {
            Some(end) => chars[end..].iter().collect(),
            None => value.to_string(),
        }
    }

    fn trim_suffix(&self, value: &str, longest: bool) -> String {
        let chars: Vec<char> = value.chars().collect();
        let mut starts: Vec<usize> = (0..=chars.len()).rev().collect();
        if longest {
            starts.reverse();
        }
        match starts
            .into_iter()
            .find(|&start| self.matches(&chars[start..]))
        {
            Some(start) => chars[..start].iter().collect(),
            None => value.to_string(),
        }
    }

    /// Replaces the leftmost longest match (every match with `all`).
    fn replace(&self, value: &str, replacement: &str, all: bool) -> String {
        let chars: Vec<char> = value.chars().collect();
        let mut out = String::new();
        let mut start = 0;
        while start <= chars.len() {
            let found = (start..=chars.len()).find_map(|from| {
                (from..=chars.len())
                    .rev()
                    .find(|&to| self.matches(&chars[from..to]))
                    .map(|to| (from, to))
            });
            let Some((from, to)) = found else { break };
            out.extend(&chars[start..from]);
            out.push_str(replacement);
            if to == from {
                // An empty match: keep one character so that the loop advances.
                if let Some(ch) = chars.get(from) {
                    out.push(*ch);
                }
                start = from + 1;
            } else {
                start = to;
            }
            if !all {
                break;
            }
        }
        if start < chars.len() {
            out.extend(&chars[start..]);
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn vars() -> Vec<(String, String)> {
        vec![
            ("PATH".to_string(), "/usr/bin:/bin".to_string()),
            ("FILE".to_string(), "archive.tar.gz".to_string()),
        ]
    }

    #[test]
    fn pattern_trimming() {
        let lexer = Lexer::new('\\');
        let expand = |word: &str| lexer.expand_word(word, &vars()).unwrap();
        assert_eq!(expand("${FILE%.*}"), "archive.tar");
        assert_eq!(expand("${FILE%%.*}"), "archive");
        assert_eq!(expand("${FILE#*.}"), "tar.gz");
        assert_eq!(expand("${FILE##*.}"), "gz");
        assert_eq!(expand("${PATH/bin/sbin}"), "/usr/sbin:/bin");
        assert_eq!(expand("${PATH//bin/sbin}"), "/usr/sbin:/sbin");
    }

    #[test]
    fn many_stars_match_quickly() {
        let lexer = Lexer::new('\\');
        let vars = vec![("LONG".to_string(), "a".repeat(300))];
        let word = format!("${{LONG#{}b}}", "*".repeat(50));
        assert_eq!(lexer.expand_word(&word, &vars).unwrap(), "a".repeat(300));
    }

    #[test]
    fn error_points_at_opening_quote() {
        let lexer = Lexer::new('\\');
        let err = lexer.expand_word("ab\"cd", &NoVars).unwrap_err();
        assert_eq!(err.offset, 2);
        assert!(err.message.contains("unterminated double-quoted"), "{err}");
    }

    #[test]
    fn skip_unset_keeps_references() {
        let lexer = Lexer {
            skip_unset: true,
            ..Lexer::new('\\')
        };
        assert_eq!(
            lexer.expand_word("$A ${B} ${C:-x}", &NoVars).unwrap(),
            "$A ${B} ${C:-x}"
        );
    }
}
