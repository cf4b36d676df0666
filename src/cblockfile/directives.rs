//! Parser directives: `# escape=X`, `# syntax=IMAGE` and `# check=...`
//! comments at the very top of the file, before any instruction, blank line
//! or other comment.

use nom::bytes::complete::{tag, take_while};
use nom::character::complete::{char, satisfy};
use nom::combinator::{recognize, rest};
use nom::sequence::{pair, tuple};
use nom::IResult;

/// One parser directive as written: its lower-cased name and its value.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Directive {
    pub name: String,
    pub value: String,
}

/// The directive names Docker defines. A comment with any other name ends
/// the directive section.
const KNOWN: [&str; 3] = ["syntax", "escape", "check"];

fn is_regex_space(ch: char) -> bool {
    // Go's `\s`: ASCII blanks only.
    matches!(ch, ' ' | '\t' | '\n' | '\x0c' | '\r')
}

fn directive(input: &str) -> IResult<&str, (&str, &str)> {
    let name = recognize(pair(
        satisfy(|ch| ch.is_ascii_alphabetic()),
        take_while(|ch: char| ch.is_ascii_alphanumeric()),
    ));
    let (input, (_, _, name, _, _, _, value)) = tuple((
        tag("#"),
        take_while(char::is_whitespace),
        name,
        take_while(is_regex_space),
        char('='),
        take_while(is_regex_space),
        rest,
    ))(input)?;
    Ok((input, (name, value)))
}

/// Tracks the directive section at the top of a file.
#[derive(Debug, Default)]
pub struct DirectiveParser {
    done: bool,
    seen: Vec<Directive>,
}

/// The kind of a line, as far as directives are concerned.
#[derive(Debug, PartialEq, Eq)]
pub enum LineKind {
    /// A directive; it has been recorded.
    Directive(Directive),
    /// Anything else.
    Other,
}

impl DirectiveParser {
    /// Looks at the next line of the file (without its line ending). Once a
    /// line is not a directive, no later line is one either.
    pub fn parse_line(&mut self, line: &str) -> Result<LineKind, String> {
        if self.done {
            return Ok(LineKind::Other);
        }
        let Ok((_, (name, value))) = directive(line) else {
            self.done = true;
            return Ok(LineKind::Other);
        };
        let value = value.trim_end_matches(is_regex_space);
        let name = name.to_ascii_lowercase();
        if value.is_empty() || !KNOWN.contains(&name.as_str()) {
            self.done = true;
            return Ok(LineKind::Other);
        }
        if self.seen.iter().any(|seen| seen.name == name) {
            return Err(format!("the {name} parser directive is given twice"));
        }
        if name == "escape" && value != "\\" && value != "`" {
            return Err(format!(
                "invalid escape character {value:?} in the escape directive; use \\ or `"
            ));
        }
        let directive = Directive {
            name,
            value: value.to_string(),
        };
        self.seen.push(directive.clone());
        Ok(LineKind::Directive(directive))
    }

    /// Returns the value of directive `name`, if the file gave it.
    pub fn value(&self, name: &str) -> Option<&str> {
        self.seen
            .iter()
            .find(|directive| directive.name == name)
            .map(|directive| directive.value.as_str())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn escape_directive_forms() {
        for line in ["#escape=`", "# escape = `", "#  ESCAPE=`  "] {
            let mut parser = DirectiveParser::default();
            assert!(
                matches!(parser.parse_line(line), Ok(LineKind::Directive(_))),
                "{line:?}"
            );
            assert_eq!(parser.value("escape"), Some("`"), "{line:?}");
        }
    }

    #[test]
    fn section_ends_at_other_comment() {
        let mut parser = DirectiveParser::default();
        assert_eq!(parser.parse_line("# Comment here"), Ok(LineKind::Other));
        assert_eq!(parser.parse_line("# escape = `"), Ok(LineKind::Other));
        assert_eq!(parser.value("escape"), None);
    }

    #[test]
    fn bad_escape_and_repeat_rejected() {
        let mut parser = DirectiveParser::default();
        assert!(parser.parse_line("# escape = x").is_err());
        let mut parser = DirectiveParser::default();
        assert!(parser.parse_line("# syntax = a").is_ok());
        assert!(parser.parse_line("# syntax = b").is_err());
    }
}
