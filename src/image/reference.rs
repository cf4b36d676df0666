//! Image names: `name[:tag]`, with `latest` as the default tag.

use std::fmt;

use super::Error;

/// Tag used when a reference names none.
pub const DEFAULT_TAG: &str = "latest";
/// Maximum length of a name, and of a tag, in characters.
pub const MAX_PART_LEN: usize = 128;

/// A validated `name:tag`.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Reference {
    pub name: String,
    pub tag: String,
}

impl Reference {
    /// Parses `name[:tag]`, rejecting what could act as a path or confuse a
    /// terminal, with the rule that was broken in the error.
    pub fn parse(text: &str) -> Result<Self, Error> {
        let invalid = |rule: &str| Error::InvalidReference {
            reference: text.to_string(),
            rule: rule.to_string(),
        };

        if text.is_empty() {
            return Err(invalid("the name is empty"));
        }
        if text.chars().any(char::is_control) {
            return Err(invalid("control characters are not allowed"));
        }
        if text.contains('/') || text.contains('\\') {
            return Err(invalid("path separators ('/', '\\') are not allowed"));
        }
        if text.contains("..") {
            return Err(invalid("'..' is not allowed"));
        }

        let (name, tag) = match text.split_once(':') {
            Some((_, tag)) if tag.contains(':') => {
                return Err(invalid("only one ':' may separate name and tag"))
            }
            Some((name, tag)) => (name, tag),
            None => (text, DEFAULT_TAG),
        };

        if name.is_empty() {
            return Err(invalid("the name before ':' is empty"));
        }
        if tag.is_empty() {
            return Err(invalid("the tag after ':' is empty"));
        }
        if name.chars().count() > MAX_PART_LEN {
            return Err(invalid(&format!(
                "the name is longer than {MAX_PART_LEN} characters"
            )));
        }
        if tag.chars().count() > MAX_PART_LEN {
            return Err(invalid(&format!(
                "the tag is longer than {MAX_PART_LEN} characters"
            )));
        }

        let name_ok = name.starts_with(|c: char| c.is_ascii_lowercase() || c.is_ascii_digit())
            && name.chars().all(|c| {
                c.is_ascii_lowercase() || c.is_ascii_digit() || matches!(c, '.' | '_' | '-')
            });
        if !name_ok {
            return Err(invalid(
                "a name starts with a lower-case letter or digit and contains only those, '.', '_' and '-'",
            ));
        }

        let tag_ok = tag.starts_with(|c: char| c.is_ascii_alphanumeric() || c == '_')
            && tag
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-'));
        if !tag_ok {
            return Err(invalid(
                "a tag starts with a letter, digit or '_' and contains only those, '.' and '-'",
            ));
        }
        Ok(Reference {
            name: name.to_string(),
            tag: tag.to_string(),
        })
    }

    /// Parses a name from another tool's archive, dropping the registry
    /// prefixes Podman and Docker give local images (`localhost/`,
    /// `docker.io/library/`).
    pub fn parse_foreign(text: &str) -> Result<Self, Error> {
        let short = ["localhost/", "docker.io/library/"]
            .iter()
            .find_map(|prefix| text.strip_prefix(prefix))
            .unwrap_or(text);
        Reference::parse(short)
    }
}

impl fmt::Display for Reference {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}:{}", self.name, self.tag)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rule(text: &str) -> String {
        match Reference::parse(text) {
            Err(Error::InvalidReference { rule, .. }) => rule,
            other => panic!("{text:?} was accepted: {other:?}"),
        }
    }

    #[test]
    fn reference_default_tag() {
        let r = Reference::parse("busybox").unwrap();
        assert_eq!((r.name.as_str(), r.tag.as_str()), ("busybox", "latest"));
        let r = Reference::parse("web-1.2_x:v1.0-rc_2").unwrap();
        assert_eq!(r.to_string(), "web-1.2_x:v1.0-rc_2");
    }

    #[test]
    fn reference_rules_named() {
        assert!(rule("").contains("empty"));
        assert!(rule("a/b").contains("path separators"));
        assert!(rule("a\\b").contains("path separators"));
        assert!(rule("a..b").contains(".."));
        assert!(rule("a\nb").contains("control"));
        assert!(rule(":tag").contains("name before"));
        assert!(rule("name:").contains("tag after"));
        assert!(rule("a:b:c").contains("only one"));
        assert!(rule(&"x".repeat(129)).contains("longer than 128"));
        assert!(rule(&format!("x:{}", "t".repeat(129))).contains("tag is longer"));
        assert!(rule("Upper").contains("lower-case"));
        assert!(rule("-dash").contains("starts with"));
        assert!(rule("x:.tag").contains("a tag starts"));
    }

    #[test]
    fn foreign_prefixes_dropped() {
        assert_eq!(
            Reference::parse_foreign("localhost/app:1")
                .unwrap()
                .to_string(),
            "app:1"
        );
        assert_eq!(
            Reference::parse_foreign("docker.io/library/busybox")
                .unwrap()
                .to_string(),
            "busybox:latest"
        );
        assert!(Reference::parse_foreign("quay.io/x/y:1").is_err());
    }
}
