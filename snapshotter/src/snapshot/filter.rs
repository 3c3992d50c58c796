//! Walk filters in containerd's filter syntax.
//!
//! A filter is a comma-separated list of selectors that must all match (AND). A list of
//! filters matches when any of them does (OR), and an empty list matches everything. A selector
//! is a field path, optionally followed by an operator and a value:
//!
//! ```text
//! selector  := fieldpath [ ("==" | "!=" | "~=") value ]
//! fieldpath := field ("." field)*
//! field     := quoted | [A-Za-z0-9_-]+
//! value     := quoted | any characters up to the next ","
//! quoted    := "..." with backslash escapes, or /.../ or |...| taken literally
//! ```
//!
//! The fields of a snapshot are `name`, `parent`, `kind` and `labels.<key>`, where the key is
//! the rest of the path joined with dots (quote it when it contains other characters:
//! `labels."containerd.io/snapshot.ref"==sha256:...`). A bare field path tests presence: name,
//! parent and kind are always present (a base snapshot's parent is `""`), a label when its key
//! exists. `==` needs the field present and equal,
//! `!=` matches when it is absent or different, `~=` is a regular expression search in the
//! value (the empty string when absent). containerd's unpacker finds a remote snapshot with
//! `labels."containerd.io/snapshot.ref"==<chain ID>,parent==<parent>`, and with `parent==""`
//! for the bottom layer.

use regex::Regex;

use super::error::SnapshotError;
use super::types::Info;

/// A parsed filter list.
#[derive(Debug, Clone, Default)]
pub struct Filters {
    any_of: Vec<Vec<Selector>>,
}

#[derive(Debug, Clone)]
struct Selector {
    path: Vec<String>,
    test: Test,
}

#[derive(Debug, Clone)]
enum Test {
    Present,
    Equal(String),
    NotEqual(String),
    Matches(Regex),
}

impl Filters {
    /// Parses each filter string; an empty list (or only empty strings) matches everything.
    pub fn parse<S: AsRef<str>>(filters: &[S]) -> Result<Filters, SnapshotError> {
        let mut any_of = Vec::new();
        for filter in filters {
            let text = filter.as_ref();
            if text.trim().is_empty() {
                continue;
            }
            any_of.push(Parser::new(text).filter()?);
        }
        Ok(Filters { any_of })
    }

    /// Tells whether `info` passes.
    pub fn matches(&self, info: &Info) -> bool {
        self.any_of.is_empty()
            || self
                .any_of
                .iter()
                .any(|all| all.iter().all(|selector| selector.matches(info)))
    }
}

impl Selector {
    fn matches(&self, info: &Info) -> bool {
        let value = field(info, &self.path);
        match &self.test {
            Test::Present => value.is_some(),
            Test::Equal(expected) => value == Some(expected.as_str()),
            Test::NotEqual(expected) => value != Some(expected.as_str()),
            Test::Matches(regex) => regex.is_match(value.unwrap_or("")),
        }
    }
}

/// Returns the value of a field path, `None` when absent. As in containerd's snapshot adaptor, name,
/// parent and kind are always present (an empty parent is the empty string) and a label is
/// present when the key exists.
fn field<'a>(info: &'a Info, path: &[String]) -> Option<&'a str> {
    let (first, rest) = path.split_first()?;
    match (first.as_str(), rest) {
        ("name", []) => Some(info.name.as_str()),
        ("parent", []) => Some(info.parent.as_deref().unwrap_or("")),
        ("kind", []) => Some(info.kind.as_str()),
        ("labels", [_, ..]) => info.labels.get(&rest.join(".")).map(String::as_str),
        _ => None,
    }
}

struct Parser<'a> {
    text: &'a str,
    position: usize,
}

impl<'a> Parser<'a> {
    fn new(text: &'a str) -> Self {
        Parser { text, position: 0 }
    }

    fn error(&self, reason: impl Into<String>) -> SnapshotError {
        SnapshotError::InvalidFilter {
            filter: self.text.to_owned(),
            position: self.position,
            reason: reason.into(),
        }
    }

    fn rest(&self) -> &'a str {
        &self.text[self.position..]
    }

    fn skip_spaces(&mut self) {
        let trimmed = self.rest().trim_start();
        self.position = self.text.len() - trimmed.len();
    }

    fn eat(&mut self, token: &str) -> bool {
        if self.rest().starts_with(token) {
            self.position += token.len();
            true
        } else {
            false
        }
    }

    fn filter(&mut self) -> Result<Vec<Selector>, SnapshotError> {
        let mut selectors = vec![self.selector()?];
        loop {
            self.skip_spaces();
            if self.rest().is_empty() {
                return Ok(selectors);
            }
            if !self.eat(",") {
                return Err(self.error("expected `,` or the end of the filter"));
            }
            selectors.push(self.selector()?);
        }
    }

    fn selector(&mut self) -> Result<Selector, SnapshotError> {
        let mut path = vec![self.field()?];
        while self.eat(".") {
            path.push(self.field()?);
        }
        self.skip_spaces();
        let test = if self.eat("==") {
            Test::Equal(self.value()?)
        } else if self.eat("!=") {
            Test::NotEqual(self.value()?)
        } else if self.eat("~=") {
            let pattern = self.value()?;
            let regex = Regex::new(&pattern)
                .map_err(|error| self.error(format!("invalid regular expression: {error}")))?;
            Test::Matches(regex)
        } else {
            Test::Present
        };
        Ok(Selector { path, test })
    }

    fn field(&mut self) -> Result<String, SnapshotError> {
        self.skip_spaces();
        if let Some(quoted) = self.quoted()? {
            return Ok(quoted);
        }
        let len = self
            .rest()
            .find(|c: char| !(c.is_ascii_alphanumeric() || c == '_' || c == '-'))
            .unwrap_or(self.rest().len());
        if len == 0 {
            return Err(self.error("expected a field name"));
        }
        let name = self.rest()[..len].to_owned();
        self.position += len;
        Ok(name)
    }

    fn value(&mut self) -> Result<String, SnapshotError> {
        self.skip_spaces();
        if let Some(quoted) = self.quoted()? {
            return Ok(quoted);
        }
        let len = self.rest().find(',').unwrap_or(self.rest().len());
        let value = self.rest()[..len].trim_end().to_owned();
        if value.is_empty() {
            return Err(self.error("expected a value"));
        }
        self.position += len;
        Ok(value)
    }

    /// Reads a quoted string when one starts here.
    fn quoted(&mut self) -> Result<Option<String>, SnapshotError> {
        let Some(quote) = self
            .rest()
            .chars()
            .next()
            .filter(|c| matches!(c, '"' | '/' | '|'))
        else {
            return Ok(None);
        };
        let start = self.position;
        self.position += 1;
        let mut out = String::new();
        let mut chars = self.rest().char_indices();
        while let Some((offset, c)) = chars.next() {
            if c == quote {
                self.position += offset + 1;
                return Ok(Some(out));
            }
            if c == '\\' && quote == '"' {
                let Some((_, escaped)) = chars.next() else {
                    break;
                };
                out.push(match escaped {
                    'n' => '\n',
                    't' => '\t',
                    other => other,
                });
                continue;
            }
            out.push(c);
        }
        self.position = start;
        Err(self.error(format!("unterminated quoted string starting with {quote}")))
    }
}

#[cfg(test)]
mod tests {
    use std::time::SystemTime;

    use super::*;
    use crate::snapshot::types::{Kind, Labels};

    fn info(name: &str, parent: Option<&str>, kind: Kind, labels: &[(&str, &str)]) -> Info {
        let labels: Labels = labels
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        Info {
            name: name.into(),
            parent: parent.map(str::to_owned),
            kind,
            labels,
            created: SystemTime::UNIX_EPOCH,
            updated: SystemTime::UNIX_EPOCH,
        }
    }

    fn matches(filters: &[&str], info: &Info) -> bool {
        Filters::parse(filters).unwrap().matches(info)
    }

    #[test]
    fn unpacker_filter_matches_label_and_parent() {
        let remote = info(
            "sha256:c2",
            Some("sha256:c1"),
            Kind::Committed,
            &[("containerd.io/snapshot.ref", "sha256:c2")],
        );
        let filter = r#"labels."containerd.io/snapshot.ref"==sha256:c2,parent==sha256:c1"#;
        assert!(matches(&[filter], &remote));
        let other_parent = r#"labels."containerd.io/snapshot.ref"==sha256:c2,parent==sha256:c0"#;
        assert!(!matches(&[other_parent], &remote));
    }

    #[test]
    fn empty_list_matches_everything() {
        assert!(matches(&[], &info("a", None, Kind::Active, &[])));
        assert!(matches(&[""], &info("a", None, Kind::Active, &[])));
    }

    #[test]
    fn list_is_or_and_commas_are_and() {
        let a = info("a", None, Kind::Active, &[("x", "1")]);
        assert!(matches(&["name==b", "name==a"], &a));
        assert!(!matches(&["name==a,kind==committed"], &a));
        assert!(matches(&["name==a,kind==active"], &a));
    }

    #[test]
    fn empty_parent_matches_quoted_empty_string() {
        let base = info(
            "sha256:c1",
            None,
            Kind::Committed,
            &[("containerd.io/snapshot.ref", "sha256:c1")],
        );
        assert!(matches(
            &[r##"labels."containerd.io/snapshot.ref"==sha256:c1,parent=="""##],
            &base
        ));
        let child = info("sha256:c2", Some("sha256:c1"), Kind::Committed, &[]);
        assert!(!matches(&[r##"parent=="""##], &child));
    }

    #[test]
    fn presence_and_inequality() {
        let base = info("base", None, Kind::Committed, &[("x", "1"), ("empty", "")]);
        assert!(matches(&["parent"], &base));
        assert!(matches(&["labels.empty"], &base));
        assert!(matches(&["labels.x"], &base));
        assert!(!matches(&["labels.y"], &base));
        assert!(matches(&["labels.y!=1"], &base));
        assert!(!matches(&["labels.x!=1"], &base));
    }

    #[test]
    fn unquoted_label_key_joins_with_dots() {
        let a = info("a", None, Kind::Active, &[("foo.bar", "v")]);
        assert!(matches(&["labels.foo.bar==v"], &a));
    }

    #[test]
    fn regex_and_quoted_values() {
        let a = info("ns/1/sha256:abc", None, Kind::Active, &[("k", "a,b")]);
        assert!(matches(&["name~=^ns/[0-9]+/"], &a));
        assert!(matches(&[r#"labels.k=="a,b""#], &a));
        assert!(matches(&["name~=/sha256:a.c$/"], &a));
    }

    #[test]
    fn malformed_filters_are_rejected() {
        for bad in [
            "==x",
            "name==",
            "name=a",
            "labels.\"open",
            "name~=(",
            "name==a,",
        ] {
            let error = Filters::parse(&[bad]).unwrap_err();
            assert!(
                matches!(error, SnapshotError::InvalidFilter { .. }),
                "{bad}: {error}"
            );
        }
    }
}
