//! The dump format of `cblock parse --format dump`: one S-expression per
//! instruction, `(keyword ["--flag" ...] "arg" ...)`, the keyword in lower
//! case and strings quoted with Go's `strconv.Quote` rules, so that the
//! output matches what Docker's own parser test files expect.

use super::syntax::Node;

/// Returns the dump of `nodes`, one line per instruction, each ending in `\n`.
pub fn dump(nodes: &[Node]) -> String {
    let mut out = String::new();
    for node in nodes {
        out.push('(');
        out.push_str(&dump_node(node));
        out.push_str(")\n");
    }
    out
}

fn dump_node(node: &Node) -> String {
    let mut out = node.keyword.to_lowercase();
    if !node.flags.is_empty() {
        let flags: Vec<String> = node.flags.iter().map(|flag| quote(flag)).collect();
        out.push_str(" [");
        out.push_str(&flags.join(" "));
        out.push(']');
    }
    if let Some(child) = &node.child {
        out.push_str(" (");
        out.push_str(&dump_node(child));
        out.push(')');
    }
    for arg in &node.args {
        out.push(' ');
        out.push_str(&quote(arg));
    }
    out
}

/// Quotes `text` as Go's `strconv.Quote` does: printable characters as they
/// are, `\a \b \f \n \r \t \v \\ \"` as escapes, other control characters as
/// `\xNN`, other non-printable characters as `\uNNNN` or `\UNNNNNNNN`.
pub fn quote(text: &str) -> String {
    let mut out = String::with_capacity(text.len() + 2);
    out.push('"');
    for ch in text.chars() {
        match ch {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\x07' => out.push_str("\\a"),
            '\x08' => out.push_str("\\b"),
            '\x0c' => out.push_str("\\f"),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            '\x0b' => out.push_str("\\v"),
            _ if is_printable(ch) => out.push(ch),
            _ if (ch as u32) < 0x20 || ch == '\x7f' => {
                out.push_str(&format!("\\x{:02x}", ch as u32));
            }
            _ if (ch as u32) < 0x10000 => out.push_str(&format!("\\u{:04x}", ch as u32)),
            _ => out.push_str(&format!("\\U{:08x}", ch as u32)),
        }
    }
    out.push('"');
    out
}

/// Approximates Go's `unicode.IsPrint`: graphic characters and the ASCII
/// space. Control, format, separator (other than U+0020) and private-use
/// characters are not printable.
// NOTE: Rust's standard library has no Unicode general category, so
// unassigned code points count as printable here while Go escapes them.
fn is_printable(ch: char) -> bool {
    if ch == ' ' {
        return true;
    }
    if ch.is_control() || ch.is_whitespace() {
        return false;
    }
    let code = ch as u32;
    let format = matches!(code,
        0xad | 0x600..=0x605 | 0x61c | 0x6dd | 0x70f | 0x180e | 0x200b..=0x200f
        | 0x202a..=0x202e | 0x2060..=0x2064 | 0x2066..=0x206f | 0xfeff | 0xfff9..=0xfffb
        | 0x110bd | 0x1d173..=0x1d17a | 0xe0001 | 0xe0020..=0xe007f);
    let private = matches!(code, 0xe000..=0xf8ff | 0xf0000..=0xffffd | 0x100000..=0x10fffd);
    let noncharacter = matches!(code, 0xfdd0..=0xfdef) || code & 0xfffe == 0xfffe;
    !(format || private || noncharacter)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn quote_matches_go() {
        assert_eq!(
            quote("\" \\ / \x08 \x0c \n \r \t \0"),
            r#""\" \\ / \b \f \n \r \t \x00""#
        );
        assert_eq!(quote("☃ é"), "\"☃ é\"");
        assert_eq!(quote("\u{a0}\u{200b}\u{7f}"), r#""\u00a0\u200b\x7f""#);
        assert_eq!(quote("\u{f0000}"), r#""\U000f0000""#);
    }
}
