//! Context exclusion: `.cblockignore`, or `.dockerignore` when there is no
//! `.cblockignore`, with Docker's pattern rules. Each non-comment line is a
//! pattern relative to the context root. `*` and `?` match within one path
//! component, `[a-z]` and `[^a-z]` match a class, and `\` escapes. A `**`
//! component matches any number of components, and `!` before a pattern
//! re-includes what it matches. The last pattern that matches a path
//! decides, and a pattern that matches a directory also matches everything
//! in it.

use std::path::Path;

use super::error::{Error, Position, Reporter};

/// The ignore files looked for in a context directory, in order.
pub const IGNORE_FILES: [&str; 2] = [".cblockignore", ".dockerignore"];

/// The patterns of one ignore file.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Patterns {
    patterns: Vec<Pattern>,
}

/// One pattern line.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Pattern {
    /// The pattern after cleaning, without its `!`.
    pub text: String,
    /// Whether the line started with `!`: a match re-includes the path.
    pub exception: bool,
    components: Vec<Component>,
}

/// One `/`-separated part of a pattern.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Component {
    /// `**`: any number of path components.
    AnyDepth,
    Glob(Vec<GlobToken>),
}

/// One element of a component pattern.
#[derive(Debug, Clone, PartialEq, Eq)]
enum GlobToken {
    /// `*`
    Star,
    /// `?`
    AnyChar,
    /// `[...]` or `[^...]`: inclusive character ranges.
    Class {
        negated: bool,
        ranges: Vec<(char, char)>,
    },
    Literal(char),
}

impl Patterns {
    /// Parses the text of an ignore file named `file`.
    pub fn parse_file(file: &str, text: &str) -> Result<Self, Error> {
        let reporter = Reporter::new(file, text);
        let mut patterns = Vec::new();
        for (index, line) in text.lines().enumerate() {
            if line.starts_with('#') {
                continue;
            }
            let mut pattern = line.trim();
            if pattern.is_empty() {
                continue;
            }
            let exception = pattern.starts_with('!');
            if exception {
                pattern = pattern[1..].trim();
                if pattern.is_empty() {
                    return Err(reporter.error(
                        Position::new(index + 1, 1),
                        "'!' without a pattern",
                        Some("write !PATTERN to re-include the paths PATTERN matches".to_string()),
                    ));
                }
            }
            let text = clean(pattern);
            let components = match text.split('/').map(compile_component).collect() {
                Ok(components) => components,
                Err(problem) => {
                    let column = 1 + line
                        .find(pattern)
                        .map_or(0, |at| line[..at].chars().count());
                    return Err(reporter.error(
                        Position::new(index + 1, column),
                        format!("invalid pattern {pattern:?}: {problem}"),
                        Some(
                            "close every '[' with ']' and do not end a pattern with '\\'"
                                .to_string(),
                        ),
                    ));
                }
            };
            patterns.push(Pattern {
                text,
                exception,
                components,
            });
        }
        Ok(Patterns { patterns })
    }

    /// Parses ignore patterns given as text, for tests and tools.
    pub fn parse(text: &str) -> Result<Self, Error> {
        Self::parse_file(IGNORE_FILES[0], text)
    }

    /// Reads `.cblockignore` in `context`, else `.dockerignore`; no file
    /// means no patterns.
    pub fn load(context: &Path) -> Result<Self, Error> {
        for name in IGNORE_FILES {
            let path = context.join(name);
            match std::fs::read(&path) {
                Ok(bytes) => {
                    let shown = path.display().to_string();
                    let text = super::decode(&shown, &bytes)?;
                    return Self::parse_file(&shown, text);
                }
                Err(err) if err.kind() == std::io::ErrorKind::NotFound => continue,
                Err(source) => {
                    return Err(Error::Io {
                        context: format!("cannot read ignore file {}", path.display()),
                        source,
                    })
                }
            }
        }
        Ok(Patterns::default())
    }

    /// Returns the patterns in file order.
    pub fn patterns(&self) -> &[Pattern] {
        &self.patterns
    }

    /// Reports whether `path`, relative to the context root with `/`
    /// separators, is excluded from the context.
    pub fn is_excluded(&self, path: &str) -> bool {
        let path = clean(path);
        let components: Vec<&str> = path.split('/').collect();
        let mut excluded = false;
        for pattern in &self.patterns {
            if pattern.exception == excluded && pattern.matches_or_parent(&components) {
                excluded = !pattern.exception;
            }
        }
        excluded
    }
}

impl Pattern {
    /// Matches `components` or any of its leading parts (a parent directory).
    fn matches_or_parent(&self, components: &[&str]) -> bool {
        (1..=components.len()).any(|len| match_components(&self.components, &components[..len]))
    }
}

/// Cleans a path or pattern as Go's `filepath.Clean` does and drops the
/// leading `/`: patterns are relative to the context root.
fn clean(path: &str) -> String {
    let mut parts: Vec<&str> = Vec::new();
    for part in path.split('/') {
        match part {
            "" | "." => {}
            ".." => {
                if parts.last().is_some_and(|last| *last != "..") {
                    parts.pop();
                } else if !path.starts_with('/') {
                    parts.push("..");
                }
            }
            _ => parts.push(part),
        }
    }
    if parts.is_empty() {
        return ".".to_string();
    }
    parts.join("/")
}

/// Compiles one component of a pattern, or returns why it is invalid.
fn compile_component(component: &str) -> Result<Component, &'static str> {
    if component == "**" {
        return Ok(Component::AnyDepth);
    }
    let mut tokens = Vec::new();
    let mut chars = component.chars();
    while let Some(ch) = chars.next() {
        let token = match ch {
            '*' => GlobToken::Star,
            '?' => GlobToken::AnyChar,
            '\\' => GlobToken::Literal(chars.next().ok_or("'\\' at the end")?),
            '[' => compile_class(&mut chars)?,
            _ => GlobToken::Literal(ch),
        };
        tokens.push(token);
    }
    Ok(Component::Glob(tokens))
}

/// Compiles the class after a `[`, consuming its closing `]`.
fn compile_class(chars: &mut std::str::Chars) -> Result<GlobToken, &'static str> {
    let mut negated = false;
    let mut ranges = Vec::new();
    let mut first = true;
    loop {
        let mut ch = chars.next().ok_or("'[' without ']'")?;
        if first && ch == '^' {
            negated = true;
            ch = chars.next().ok_or("'[' without ']'")?;
        }
        if ch == ']' && !first {
            return Ok(GlobToken::Class { negated, ranges });
        }
        first = false;
        if ch == '\\' {
            ch = chars.next().ok_or("'[' without ']'")?;
        }
        let mut lookahead = chars.clone();
        let end = match (lookahead.next(), lookahead.next()) {
            (Some('-'), Some(end)) if end != ']' => {
                chars.next();
                chars.next();
                if end == '\\' {
                    chars.next().ok_or("'[' without ']'")?
                } else {
                    end
                }
            }
            _ => ch,
        };
        if end < ch {
            return Err("a range in '[...]' ends before it starts");
        }
        ranges.push((ch, end));
    }
}

fn match_components(pattern: &[Component], path: &[&str]) -> bool {
    super::word::wildcard_match(
        pattern,
        path,
        |component| *component == Component::AnyDepth,
        |component, name| match component {
            Component::AnyDepth => false,
            Component::Glob(tokens) => glob(tokens, name),
        },
    )
}

/// Matches one path component against one compiled pattern component.
fn glob(tokens: &[GlobToken], name: &str) -> bool {
    let chars: Vec<char> = name.chars().collect();
    super::word::wildcard_match(
        tokens,
        &chars,
        |token| *token == GlobToken::Star,
        |token, &ch| match token {
            GlobToken::Star => false,
            GlobToken::AnyChar => true,
            GlobToken::Literal(literal) => *literal == ch,
            GlobToken::Class { negated, ranges } => {
                ranges.iter().any(|&(start, end)| start <= ch && ch <= end) != *negated
            }
        },
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn excluded(patterns: &str, path: &str) -> bool {
        Patterns::parse(patterns).unwrap().is_excluded(path)
    }

    #[test]
    fn star_stays_in_component() {
        assert!(excluded("*.go", "main.go"));
        assert!(!excluded("*.go", "cmd/main.go"));
        assert!(excluded("*/*.go", "cmd/main.go"));
    }

    #[test]
    fn double_star_spans_components() {
        assert!(excluded("**/*.go", "main.go"));
        assert!(excluded("**/*.go", "a/b/c/main.go"));
        assert!(excluded("a/**/z", "a/z"));
        assert!(excluded("a/**/z", "a/b/c/z"));
        assert!(!excluded("a/**/z", "b/z"));
    }

    #[test]
    fn directory_match_covers_contents() {
        assert!(excluded("node_modules", "node_modules/x/y.js"));
        assert!(excluded("/build/", "build/out"));
    }

    #[test]
    fn exception_reincludes() {
        let patterns = "*.md\n!README.md\n# comment\n\n";
        assert!(excluded(patterns, "CHANGES.md"));
        assert!(!excluded(patterns, "README.md"));
        assert!(excluded("docs\n!docs/keep.txt", "docs/other.txt"));
        assert!(!excluded("docs\n!docs/keep.txt", "docs/keep.txt"));
        // The last match wins.
        assert!(excluded("!a.txt\n*.txt", "a.txt"));
    }

    #[test]
    fn classes_and_escapes() {
        assert!(excluded("file[0-9].txt", "file7.txt"));
        assert!(!excluded("file[^0-9].txt", "file7.txt"));
        assert!(excluded("a\\*b", "a*b"));
        assert!(!excluded("a\\*b", "axb"));
        assert!(excluded("?.log", "x.log"));
        assert!(excluded("[]a]", "]"));
        assert!(!excluded(
            "x/**/**/**/**/**/**/**/y",
            "x/a/b/c/d/e/f/g/h/i/j/k/z"
        ));
    }

    #[test]
    fn bad_pattern_rejected_with_line() {
        let err = Patterns::parse("ok\n  bad[\n").unwrap_err();
        let diagnostic = err.diagnostic().unwrap();
        assert_eq!(diagnostic.position, Position::new(2, 3));
        assert!(diagnostic.message.contains("'[' without ']'"), "{err}");
        assert!(Patterns::parse("!\n").is_err());
    }
}
