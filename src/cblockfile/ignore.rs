//! Context exclusion: `.cblockignore`, or `.dockerignore` when there is no
//! `.cblockignore`, with Docker's pattern rules. Each non-comment line is a
//! pattern relative to the context root; `*` and `?` match within one path
//! component, `[a-z]` and `[^a-z]` match a class, `\` escapes, a `**`
//! component matches any number of components, and `!` before a pattern
//! re-includes what it matches. The last pattern that matches a path
//! decides; a pattern that matches a directory also matches everything in it.

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
    components: Vec<String>,
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
            let components: Vec<String> = text.split('/').map(str::to_string).collect();
            if let Some(problem) = components
                .iter()
                .find_map(|component| check_component(component))
            {
                let column = 1 + line
                    .find(pattern)
                    .map_or(0, |at| line[..at].chars().count());
                return Err(reporter.error(
                    Position::new(index + 1, column),
                    format!("invalid pattern {pattern:?}: {problem}"),
                    Some("close every '[' with ']' and do not end a pattern with '\\'".to_string()),
                ));
            }
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

fn check_component(component: &str) -> Option<&'static str> {
    let mut chars = component.chars();
    while let Some(ch) = chars.next() {
        match ch {
            '\\' => {
                chars.next()?;
            }
            '[' => {
                let mut closed = false;
                let mut first = true;
                while let Some(inner) = chars.next() {
                    if inner == ']' && !first {
                        closed = true;
                        break;
                    }
                    if inner == '\\' && chars.next().is_none() {
                        return Some("'\\' at the end");
                    }
                    first = false;
                }
                if !closed {
                    return Some("'[' without ']'");
                }
            }
            _ => {}
        }
    }
    if component.ends_with('\\') && !component.ends_with("\\\\") {
        return Some("'\\' at the end");
    }
    None
}

fn match_components(pattern: &[String], path: &[&str]) -> bool {
    match pattern.split_first() {
        None => path.is_empty(),
        Some((first, rest)) if first == "**" => {
            (0..=path.len()).any(|skip| match_components(rest, &path[skip..]))
        }
        Some((first, rest)) => match path.split_first() {
            Some((component, path_rest)) => {
                let pattern_chars: Vec<char> = first.chars().collect();
                let text_chars: Vec<char> = component.chars().collect();
                glob(&pattern_chars, &text_chars) && match_components(rest, path_rest)
            }
            None => false,
        },
    }
}

/// Matches one path component against one pattern component.
fn glob(pattern: &[char], text: &[char]) -> bool {
    match pattern.split_first() {
        None => text.is_empty(),
        Some(('*', rest)) => (0..=text.len()).any(|skip| glob(rest, &text[skip..])),
        Some(('?', rest)) => !text.is_empty() && glob(rest, &text[1..]),
        Some(('[', rest)) => {
            let Some((&ch, text_rest)) = text.split_first() else {
                return false;
            };
            match match_class(rest, ch) {
                Some((true, after)) => glob(after, text_rest),
                _ => false,
            }
        }
        Some(('\\', rest)) => match rest.split_first() {
            Some((escaped, after)) => text.first() == Some(escaped) && glob(after, &text[1..]),
            None => false,
        },
        Some((literal, rest)) => text.first() == Some(literal) && glob(rest, &text[1..]),
    }
}

/// Matches `ch` against the class after a `[`; returns whether it matched
/// and the pattern after the closing `]`.
fn match_class(pattern: &[char], ch: char) -> Option<(bool, &[char])> {
    let (negated, mut rest) = match pattern.split_first() {
        Some(('^', rest)) => (true, rest),
        _ => (false, pattern),
    };
    let mut matched = false;
    let mut first = true;
    loop {
        let (&start, after) = rest.split_first()?;
        if start == ']' && !first {
            return Some((matched != negated, after));
        }
        first = false;
        let (start, after) = if start == '\\' {
            let (&escaped, after) = after.split_first()?;
            (escaped, after)
        } else {
            (start, after)
        };
        rest = after;
        let end = if rest.first() == Some(&'-') && rest.get(1).is_some_and(|&next| next != ']') {
            let (end, after) = if rest[1] == '\\' {
                (*rest.get(2)?, &rest[3.min(rest.len())..])
            } else {
                (rest[1], &rest[2..])
            };
            rest = after;
            end
        } else {
            start
        };
        if start <= ch && ch <= end {
            matched = true;
        }
    }
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
