//! Heredocs: `RUN <<EOF`, `COPY <<-"EOT" /dest` and friends. The marker is
//! found among the words of the instruction line; the body is read from the
//! lines after it up to the terminator.

use nom::bytes::complete::{tag, take_while};
use nom::character::complete::{char, digit0};
use nom::combinator::{opt, rest, verify};
use nom::sequence::tuple;
use nom::IResult;

use super::word::{Lexer, NoVars};

/// One heredoc attached to an instruction.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct Heredoc {
    /// The terminator word, with quotes removed.
    pub name: String,
    /// The file descriptor before `<<` (`3<<EOF`), 0 when none is given.
    pub fd: u32,
    /// Whether variables in the body are expanded: only when no part of the
    /// terminator word is quoted.
    pub expand: bool,
    /// Whether leading tabs are removed from the body's lines (`<<-`).
    pub chomp: bool,
    /// The body, each line ending in `\n`.
    pub content: String,
}

/// `^(\d*)<<(-?)\s*([^<]*)$`: descriptor, chomp flag and terminator word.
fn marker(input: &str) -> IResult<&str, (&str, Option<char>, &str)> {
    let (input, (fd, _, chomp, _, word)) = tuple((
        digit0,
        tag("<<"),
        opt(char('-')),
        take_while(|ch: char| matches!(ch, ' ' | '\t' | '\n' | '\x0c' | '\r')),
        verify(rest, |word: &str| !word.contains('<')),
    ))(input)?;
    Ok((input, (fd, chomp, word)))
}

/// Reads one word of an instruction line as a heredoc marker, `None` when it
/// is not one.
pub fn parse_marker(word: &str) -> Option<Heredoc> {
    let (_, (fd, chomp, rest)) = marker(word).ok()?;
    if rest.is_empty() {
        return None;
    }

    let lexer = Lexer {
        skip_unset: true,
        ..Lexer::new('\\')
    };
    let words = lexer.expand_words(rest, &NoVars).ok()?;
    let [name] = words.as_slice() else {
        return None;
    };
    let raw = Lexer {
        raw_quotes: true,
        ..lexer
    }
    .expand_words(rest, &NoVars)
    .ok()?;
    let quotes = |text: &str| text.chars().filter(|&ch| ch == '\'' || ch == '"').count();
    let expand = raw.len() == 1 && quotes(name) == quotes(&raw[0]);

    Some(Heredoc {
        name: name.clone(),
        fd: fd.parse().unwrap_or(0),
        expand,
        chomp: chomp.is_some(),
        content: String::new(),
    })
}

/// Finds the heredoc markers among the words of an instruction line.
pub fn markers_in_line(line: &str) -> Vec<Heredoc> {
    let lexer = Lexer {
        raw_quotes: true,
        raw_escapes: true,
        skip_unset: true,
        ..Lexer::new('\\')
    };
    let words = lexer.expand_words(line, &NoVars).unwrap_or_default();
    words.iter().filter_map(|word| parse_marker(word)).collect()
}

/// Removes the leading tabs of every line of `content`, as `<<-` requests.
pub fn chomp_tabs(content: &str) -> String {
    content
        .split_inclusive('\n')
        .map(|line| line.trim_start_matches('\t'))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn markers_found_with_flags() {
        let docs = markers_in_line("RUN 3<<-\"EOT\" cat <<EOF x<<y");
        let names: Vec<_> = docs.iter().map(|doc| doc.name.as_str()).collect();
        assert_eq!(names, ["EOT", "EOF"]);
        assert_eq!(
            (docs[0].fd, docs[0].chomp, docs[0].expand),
            (3, true, false)
        );
        assert_eq!(
            (docs[1].fd, docs[1].chomp, docs[1].expand),
            (0, false, true)
        );
    }

    #[test]
    fn marker_with_space() {
        let docs = markers_in_line("COPY << EOF /dest");
        assert_eq!(docs.len(), 1);
        assert_eq!(docs[0].name, "EOF");
    }

    #[test]
    fn chomp_removes_leading_tabs() {
        assert_eq!(chomp_tabs("\t\ta\n\tb\tc\n"), "a\nb\tc\n");
    }
}
