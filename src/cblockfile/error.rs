//! Parse errors with their place in the file, the offending text and a fix.

use std::fmt;

/// A place in a Cblockfile: 1-based line and column, the column counted in
/// characters (a tab counts as one).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Default, serde::Serialize)]
pub struct Position {
    pub line: usize,
    pub column: usize,
}

impl Position {
    /// Returns the position of `line` and `column`, both 1-based.
    pub fn new(line: usize, column: usize) -> Self {
        Position { line, column }
    }
}

impl fmt::Display for Position {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}:{}", self.line, self.column)
    }
}

/// One problem in a Cblockfile, reported as `FILE:LINE:COLUMN: message`,
/// followed by the source line with a caret under the column and the fix.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Diagnostic {
    /// The file name as the user gave it.
    pub file: String,
    pub position: Position,
    /// Description of the problem, in lower case.
    pub message: String,
    /// The source line that contains the position, without its line ending.
    pub source_line: String,
    /// How to fix it, when there is a suggestion.
    pub help: Option<String>,
}

impl fmt::Display for Diagnostic {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}:{}: {}", self.file, self.position, self.message)?;
        if !self.source_line.is_empty() {
            let shown = self.source_line.replace('\t', " ");
            let caret_at = self.position.column.saturating_sub(1);
            write!(f, "\n    {}\n    {}^", shown, " ".repeat(caret_at))?;
        }
        if let Some(help) = &self.help {
            write!(f, "\n  help: {help}")?;
        }
        Ok(())
    }
}

/// Errors of the Cblockfile module.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The file could not be read.
    #[error("{context}: {source}")]
    Io {
        context: String,
        source: std::io::Error,
    },
    /// The file was read but is not a valid Cblockfile.
    #[error("{0}")]
    Syntax(Box<Diagnostic>),
    /// `--target` names no stage of the file.
    #[error("build target {target:?} is not a stage of {file}; its stages are {stages}: pass one of them to --target")]
    UnknownTarget {
        target: String,
        file: String,
        stages: String,
    },
}

impl Error {
    /// Returns the diagnostic of a syntax error, `None` for an I/O error.
    pub fn diagnostic(&self) -> Option<&Diagnostic> {
        match self {
            Error::Syntax(diagnostic) => Some(diagnostic),
            Error::Io { .. } | Error::UnknownTarget { .. } => None,
        }
    }
}

/// Builder of diagnostics for one file. It stores the file's name and text,
/// so a caller supplies only the position, the message and the fix.
#[derive(Debug, Clone)]
pub struct Reporter<'a> {
    file: &'a str,
    text: &'a str,
}

impl<'a> Reporter<'a> {
    /// Returns a reporter for the file `file` whose text is `text`.
    pub fn new(file: &'a str, text: &'a str) -> Self {
        Reporter { file, text }
    }

    /// Returns the name of the file.
    pub fn file(&self) -> &'a str {
        self.file
    }

    /// Returns a syntax error at `position`.
    pub fn error(
        &self,
        position: Position,
        message: impl Into<String>,
        help: Option<String>,
    ) -> Error {
        let source_line = self
            .text
            .split('\n')
            .nth(position.line.saturating_sub(1))
            .unwrap_or("")
            .trim_end_matches('\r')
            .to_string();
        Error::Syntax(Box::new(Diagnostic {
            file: self.file.to_string(),
            position,
            message: message.into(),
            source_line,
            help,
        }))
    }
}

/// Returns the position of byte `offset` in `text`, counting lines and
/// characters.
pub fn position_of_offset(text: &str, offset: usize) -> Position {
    let before = &text.as_bytes()[..offset.min(text.len())];
    let line = 1 + before.iter().filter(|&&b| b == b'\n').count();
    let line_start = before
        .iter()
        .rposition(|&b| b == b'\n')
        .map_or(0, |i| i + 1);
    let column = 1 + String::from_utf8_lossy(&before[line_start..])
        .chars()
        .count();
    Position { line, column }
}

/// Returns the candidate nearest to `word` by edit distance (ignoring case),
/// when it is close enough to be a likely typing mistake.
pub fn nearest<'c>(word: &str, candidates: &[&'c str]) -> Option<&'c str> {
    let word = word.to_ascii_lowercase();
    let limit = (word.chars().count() / 3).max(1) + 1;
    candidates
        .iter()
        .map(|candidate| {
            (
                edit_distance(&word, &candidate.to_ascii_lowercase()),
                *candidate,
            )
        })
        .filter(|(distance, _)| *distance <= limit)
        .min_by_key(|(distance, _)| *distance)
        .map(|(_, candidate)| candidate)
}

/// Returns the Levenshtein distance between `a` and `b`, counted in characters.
fn edit_distance(a: &str, b: &str) -> usize {
    let b: Vec<char> = b.chars().collect();
    let mut previous: Vec<usize> = (0..=b.len()).collect();
    for (i, ca) in a.chars().enumerate() {
        let mut current = vec![i + 1; b.len() + 1];
        for (j, cb) in b.iter().enumerate() {
            let substitution = previous[j] + usize::from(ca != *cb);
            current[j + 1] = substitution.min(previous[j + 1] + 1).min(current[j] + 1);
        }
        previous = current;
    }
    previous[b.len()]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn nearest_keyword_for_typo() {
        let keywords = ["RUN", "COPY", "ENTRYPOINT", "WORKDIR"];
        assert_eq!(nearest("RUM", &keywords), Some("RUN"));
        assert_eq!(nearest("entrypiont", &keywords), Some("ENTRYPOINT"));
        assert_eq!(nearest("workdri", &keywords), Some("WORKDIR"));
        assert_eq!(nearest("xyzzyplugh", &keywords), None);
    }

    #[test]
    fn offset_to_position() {
        let text = "ab\ncé\tx\n";
        assert_eq!(position_of_offset(text, 0), Position::new(1, 1));
        assert_eq!(position_of_offset(text, 3), Position::new(2, 1));
        // "é" is two bytes but one column.
        assert_eq!(position_of_offset(text, 7), Position::new(2, 4));
    }

    #[test]
    fn diagnostic_shows_line_and_caret() {
        let text = "FROM a\nRUM x\n";
        let reporter = Reporter::new("Cblockfile", text);
        let err = reporter.error(
            Position::new(2, 1),
            "unknown instruction \"RUM\"",
            Some("did you mean RUN?".into()),
        );
        let shown = err.to_string();
        assert!(
            shown.starts_with("Cblockfile:2:1: unknown instruction \"RUM\""),
            "{shown}"
        );
        assert!(shown.contains("\n    RUM x\n    ^"), "{shown}");
        assert!(shown.ends_with("help: did you mean RUN?"), "{shown}");
    }
}
