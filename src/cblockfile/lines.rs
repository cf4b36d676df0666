//! Turns the text of a Cblockfile into logical lines, one per instruction.
//! Comments and blank lines are dropped and parser directives applied. Line
//! continuations (the escape character at the end of a line) are joined, and
//! so is a double-quoted string that stays open at the end of a line: the
//! line break becomes one space. Every logical line keeps a map from its
//! bytes back to lines and columns of the file.

use super::directives::{DirectiveParser, LineKind};
use super::error::Position;

/// Maps byte offsets of a logical line to positions in the file.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct LineMap {
    segments: Vec<Segment>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
struct Segment {
    /// Byte offset in the logical line where the segment starts.
    offset: usize,
    /// Position of its first character in the file.
    position: Position,
    /// Byte offsets in the logical line, about `CHECKPOINT_BYTES` apart, each
    /// with the number of characters from the segment start to it. A column
    /// is counted from the nearest checkpoint, so a long line of many words
    /// stays linear to check.
    checkpoints: Vec<(usize, usize)>,
}

const CHECKPOINT_BYTES: usize = 1024;

impl LineMap {
    /// Returns the file position of byte `offset` of `text`, the logical line
    /// this map belongs to.
    pub fn position(&self, text: &str, offset: usize) -> Position {
        let offset = offset.min(text.len());
        let index = self
            .segments
            .partition_point(|segment| segment.offset <= offset)
            .saturating_sub(1);
        let Some(segment) = self.segments.get(index) else {
            return Position::new(1, 1);
        };
        let checkpoint = segment
            .checkpoints
            .partition_point(|&(byte, _)| byte <= offset)
            .checked_sub(1)
            .map_or((segment.offset, 0), |at| segment.checkpoints[at]);
        let counted = checkpoint.1
            + text
                .get(checkpoint.0..offset)
                .map_or(0, |part| part.chars().count());
        Position::new(segment.position.line, segment.position.column + counted)
    }
}

/// One instruction's text after continuations are joined.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct LogicalLine {
    pub text: String,
    pub map: LineMap,
    /// The first and last line of the file it was read from.
    pub start_line: usize,
    pub end_line: usize,
}

impl LogicalLine {
    fn push(&mut self, part: &str, position: Position) {
        let offset = self.text.len();
        let mut checkpoints = Vec::new();
        let mut next = CHECKPOINT_BYTES;
        for (count, (byte, _)) in part.char_indices().enumerate() {
            if byte >= next {
                checkpoints.push((offset + byte, count));
                next = byte + CHECKPOINT_BYTES;
            }
        }
        self.map.segments.push(Segment {
            offset,
            position,
            checkpoints,
        });
        self.text.push_str(part);
    }

    /// Returns the file position of byte `offset` of the text.
    pub fn position(&self, offset: usize) -> Position {
        self.map.position(&self.text, offset)
    }
}

/// A problem found while reading lines.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LineError {
    pub position: Position,
    pub message: String,
    pub help: Option<String>,
}

/// Reads logical lines and heredoc bodies from the text of a file.
pub struct LineReader<'a> {
    lines: Vec<&'a str>,
    next: usize,
    escape: char,
    directives: DirectiveParser,
}

/// Removes every trailing `\r` and `\n`, as Docker does.
pub fn trim_newline(line: &str) -> &str {
    line.trim_end_matches(['\r', '\n'])
}

fn is_comment(line: &str) -> bool {
    line.trim_start().starts_with('#')
}

/// Strips a line-continuation escape character (and blanks after it) from
/// the end of `line`. Returns the rest and whether the line continues. An
/// escape character that is itself escaped does not continue the line.
pub fn trim_continuation(line: &str, escape: char) -> (&str, bool) {
    let body = line.trim_end_matches([' ', '\t']);
    let Some(before) = body.strip_suffix(escape) else {
        return (line, false);
    };
    if before.ends_with(escape) {
        return (line, false);
    }
    (before, true)
}

/// Follows quoting through a logical line to tell whether a double-quoted
/// string is still open at its end. Single quotes, the escape character and
/// shell comments (`#` at the start of a word) are taken into account, so that
/// a `"` inside them does not count.
#[derive(Debug, Clone, Copy)]
struct QuoteScanner {
    escape: char,
    state: QuoteState,
    escaped: bool,
    at_word_start: bool,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum QuoteState {
    Plain,
    Double,
    Single,
    Comment,
}

impl QuoteScanner {
    fn new(escape: char) -> Self {
        QuoteScanner {
            escape,
            state: QuoteState::Plain,
            escaped: false,
            at_word_start: true,
        }
    }

    fn feed(&mut self, text: &str) {
        for ch in text.chars() {
            if self.escaped {
                self.escaped = false;
                self.at_word_start = false;
                continue;
            }
            match self.state {
                QuoteState::Plain => {
                    if ch == self.escape {
                        self.escaped = true;
                    } else if ch == '"' {
                        self.state = QuoteState::Double;
                    } else if ch == '\'' {
                        self.state = QuoteState::Single;
                    } else if ch == '#' && self.at_word_start {
                        self.state = QuoteState::Comment;
                    }
                    self.at_word_start = ch.is_whitespace();
                }
                QuoteState::Double => {
                    if ch == self.escape {
                        self.escaped = true;
                    } else if ch == '"' {
                        self.state = QuoteState::Plain;
                        self.at_word_start = false;
                    }
                }
                QuoteState::Single => {
                    if ch == '\'' {
                        self.state = QuoteState::Plain;
                        self.at_word_start = false;
                    }
                }
                QuoteState::Comment => {}
            }
        }
    }

    fn in_double_quotes(&self) -> bool {
        self.state == QuoteState::Double
    }
}

impl<'a> LineReader<'a> {
    /// Returns a reader over `text`, which must not start with a byte order mark.
    pub fn new(text: &'a str) -> Self {
        LineReader {
            lines: text.split_inclusive('\n').collect(),
            next: 0,
            escape: '\\',
            directives: DirectiveParser::default(),
        }
    }

    /// Returns the escape character in force.
    pub fn escape(&self) -> char {
        self.escape
    }

    /// Returns the value of parser directive `name` (`syntax`, `escape`,
    /// `check`), if the file gave it.
    pub fn directive(&self, name: &str) -> Option<&str> {
        self.directives.value(name)
    }

    /// Returns the number of lines read so far.
    pub fn lines_read(&self) -> usize {
        self.next
    }

    fn take_line(&mut self) -> Option<&'a str> {
        let line = self.lines.get(self.next).copied()?;
        self.next += 1;
        Some(line)
    }

    /// Reads the next logical line, `None` at the end of the file.
    pub fn next_logical(&mut self) -> Result<Option<LogicalLine>, LineError> {
        while let Some(raw) = self.take_line() {
            let number = self.next;
            let text = trim_newline(raw);
            let trimmed = text.trim_start();
            let lead = text[..text.len() - trimmed.len()].chars().count();

            match self.directives.parse_line(trimmed) {
                Err(message) => {
                    return Err(LineError {
                        position: Position::new(number, 1 + lead),
                        message,
                        help: None,
                    })
                }
                Ok(LineKind::Directive(directive)) if directive.name == "escape" => {
                    self.escape = directive.value.chars().next().unwrap_or('\\');
                }
                Ok(_) => {}
            }

            let content = if is_comment(trimmed) { "" } else { trimmed };
            let (content, mut continues) = trim_continuation(content, self.escape);
            if !continues && content.is_empty() {
                continue;
            }

            let mut line = LogicalLine {
                start_line: number,
                ..LogicalLine::default()
            };
            line.push(content, Position::new(number, 1 + lead));
            let mut quotes = QuoteScanner::new(self.escape);
            quotes.feed(content);
            let mut last_line_text = text;

            loop {
                if continues {
                    let Some(raw) = self.take_line() else { break };
                    let text = trim_newline(raw);
                    if is_comment(text) || text.trim_start().is_empty() {
                        continue;
                    }
                    let (content, more) = trim_continuation(text, self.escape);
                    line.push(content, Position::new(self.next, 1));
                    quotes.feed(content);
                    continues = more;
                    last_line_text = text;
                    continue;
                }
                if quotes.in_double_quotes() && self.next < self.lines.len() {
                    // The original Cblockfile language lets a double-quoted
                    // string run over several lines; the break becomes a space.
                    let end_column = 1 + last_line_text.chars().count();
                    line.push(" ", Position::new(self.next, end_column));
                    let raw = self.take_line().unwrap_or_default();
                    let text = trim_newline(raw);
                    let (content, more) = trim_continuation(text, self.escape);
                    line.push(content, Position::new(self.next, 1));
                    quotes.feed(" ");
                    quotes.feed(content);
                    continues = more;
                    last_line_text = text;
                    continue;
                }
                break;
            }

            line.end_line = self.next;
            return Ok(Some(line));
        }
        Ok(None)
    }

    /// Reads the body of a heredoc up to the line `terminator` (after removing
    /// leading tabs when `chomp` is set). Returns the body with `\n` line
    /// endings, or `None` when the file ends first.
    pub fn read_heredoc(&mut self, terminator: &str, chomp: bool) -> Option<String> {
        let mut body = String::new();
        while let Some(raw) = self.take_line() {
            let text = trim_newline(raw);
            let candidate = if chomp {
                text.trim_start_matches('\t')
            } else {
                text
            };
            if candidate == terminator {
                return Some(body);
            }
            body.push_str(text);
            if raw.ends_with('\n') {
                body.push('\n');
            }
        }
        None
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn logical_lines(text: &str) -> Vec<String> {
        let mut reader = LineReader::new(text);
        let mut lines = Vec::new();
        while let Some(line) = reader.next_logical().unwrap() {
            lines.push(line.text);
        }
        lines
    }

    #[test]
    fn continuation_joins_and_skips_comments() {
        let text = "RUN a \\\n# comment\n\n  b\nRUN c\n";
        assert_eq!(logical_lines(text), ["RUN a   b", "RUN c"]);
    }

    #[test]
    fn escaped_escape_does_not_continue() {
        assert_eq!(trim_continuation("a \\\\", '\\'), ("a \\\\", false));
        assert_eq!(trim_continuation("a \\  ", '\\'), ("a ", true));
        assert_eq!(trim_continuation("\\", '\\'), ("", true));
    }

    #[test]
    fn open_double_quote_continues() {
        let text = "RUN \"pkg install\n  h2o\"\nRUN echo 'it\"s'\nRUN x\n";
        assert_eq!(
            logical_lines(text),
            ["RUN \"pkg install   h2o\"", "RUN echo 'it\"s'", "RUN x"]
        );
    }

    #[test]
    fn quote_in_shell_comment_ignored() {
        let text = "RUN make # say \"hi\nRUN x\n";
        assert_eq!(logical_lines(text), ["RUN make # say \"hi", "RUN x"]);
    }

    #[test]
    fn positions_follow_joined_lines() {
        let mut reader = LineReader::new("  RUN a \\\n\tb\n");
        let line = reader.next_logical().unwrap().unwrap();
        assert_eq!(line.text, "RUN a \tb");
        assert_eq!(line.position(0), Position::new(1, 3));
        assert_eq!(line.position(7), Position::new(2, 2));
        assert_eq!((line.start_line, line.end_line), (1, 2));
    }

    #[test]
    fn columns_past_checkpoints() {
        let text = format!("RUN {}x{}", "é".repeat(3000), "a".repeat(5000));
        let mut reader = LineReader::new(&text);
        let line = reader.next_logical().unwrap().unwrap();
        let x = line.text.find('x').unwrap();
        assert_eq!(line.position(x), Position::new(1, 3005));
        assert_eq!(line.position(line.text.len()), Position::new(1, 8006));
    }

    #[test]
    fn heredoc_body_until_terminator() {
        let mut reader = LineReader::new("RUN <<EOF\r\necho hi\r\n\tEOF\r\nEOF\r\nRUN x\n");
        reader.next_logical().unwrap();
        assert_eq!(
            reader.read_heredoc("EOF", false).as_deref(),
            Some("echo hi\n\tEOF\n")
        );
        let mut reader = LineReader::new("RUN <<EOF\necho\n");
        reader.next_logical().unwrap();
        assert_eq!(reader.read_heredoc("EOF", false), None);
    }
}
