//! The Cblockfile language: a superset of the Dockerfile, parsed with nom
//! into stages and instructions with source positions.
//!
//! Parsing has two layers. [`syntax`] splits the file into instructions and
//! their arguments the way Docker's parser does (plus the original
//! Cblockfile forms); its tree is what `cblock parse --format dump` prints.
//! [`check`] then gives every instruction its meaning and checks it: the
//! result is a [`Cblockfile`] of stages and typed instructions (see [`ast`]),
//! which the builder consumes. Word expansion (`$VAR`, quotes) is in
//! [`word`]; the builder calls it with the build's variables, since Docker
//! expands most arguments only when the build reaches them.

pub mod ast;
pub mod check;
pub mod directives;
pub mod dump;
mod error;
pub mod heredoc;
pub mod ignore;
pub mod lines;
pub mod syntax;
pub mod word;

use std::path::Path;

pub use ast::*;
pub use error::{nearest, Diagnostic, Error, Position, Reporter};

/// Decodes the bytes of a file as UTF-8 text without NUL bytes, dropping a
/// leading byte order mark. The error names the position of the bad byte.
pub fn decode<'a>(file: &str, bytes: &'a [u8]) -> Result<&'a str, Error> {
    let bytes = bytes.strip_prefix(b"\xef\xbb\xbf").unwrap_or(bytes);
    let valid = match std::str::from_utf8(bytes) {
        Ok(text) => text,
        Err(err) => {
            let good = std::str::from_utf8(&bytes[..err.valid_up_to()]).unwrap_or("");
            let position = error::position_of_offset(good, good.len());
            let text = String::from_utf8_lossy(bytes);
            return Err(Reporter::new(file, &text).error(
                position,
                format!("invalid UTF-8 byte 0x{:02x}", bytes[err.valid_up_to()]),
                Some("save the file as UTF-8".to_string()),
            ));
        }
    };
    if let Some(nul) = valid.find('\0') {
        let position = error::position_of_offset(valid, nul);
        return Err(Reporter::new(file, valid).error(
            position,
            "NUL byte in the file",
            Some("remove it; a Cblockfile is text, not UTF-16 or binary".to_string()),
        ));
    }
    Ok(valid)
}

/// Parses the bytes of a file named `file` into its syntax tree, without
/// checking the meaning of its instructions.
pub fn parse_syntax(file: &str, bytes: &[u8]) -> Result<syntax::SyntaxTree, Error> {
    let text = decode(file, bytes)?;
    syntax::parse(text, &Reporter::new(file, text))
}

/// Parses and checks the bytes of a file named `file`.
pub fn parse(file: &str, bytes: &[u8]) -> Result<Cblockfile, Error> {
    let text = decode(file, bytes)?;
    let reporter = Reporter::new(file, text);
    let tree = syntax::parse(text, &reporter)?;
    check::check(&tree, &reporter)
}

/// Reads, parses and checks the file at `path`.
pub fn parse_file(path: &Path) -> Result<Cblockfile, Error> {
    let bytes = std::fs::read(path).map_err(|source| Error::Io {
        context: format!("cannot read Cblockfile {}", path.display()),
        source,
    })?;
    parse(&path.display().to_string(), &bytes)
}
