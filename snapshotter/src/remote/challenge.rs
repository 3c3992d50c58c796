//! Parsing of `WWW-Authenticate` challenges (RFC 7235 section 4.1).

use std::collections::HashMap;

/// The authentication scheme a registry requires.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Challenge {
    /// `Basic realm=...`: send the user name and password with every request.
    Basic,
    /// `Bearer realm=...,service=...`: fetch a token from `realm`.
    Bearer {
        /// Token endpoint URL.
        realm: String,
        /// Value of the `service` query parameter, if given.
        service: Option<String>,
    },
}

/// Picks the challenge to respond to from all `WWW-Authenticate` header values.
///
/// Bearer wins over Basic when a registry offers both, because a token is scoped to one
/// repository and the password then goes only to the token realm. Unknown schemes and
/// Bearer challenges without a realm are ignored.
pub(crate) fn select_challenge<'a>(values: impl IntoIterator<Item = &'a str>) -> Option<Challenge> {
    let mut basic = false;
    for value in values {
        for (scheme, params) in parse(value) {
            if scheme.eq_ignore_ascii_case("bearer") {
                if let Some(realm) = params.get("realm").filter(|realm| !realm.is_empty()) {
                    return Some(Challenge::Bearer {
                        realm: realm.clone(),
                        service: params.get("service").cloned(),
                    });
                }
            } else if scheme.eq_ignore_ascii_case("basic") {
                basic = true;
            }
        }
    }
    basic.then_some(Challenge::Basic)
}

/// Splits one header value into challenges: scheme plus lower-cased parameter names.
fn parse(value: &str) -> Vec<(String, HashMap<String, String>)> {
    let mut cursor = Cursor { rest: value };
    let mut challenges = Vec::new();
    loop {
        cursor.skip_separators();
        let scheme = cursor.token();
        if scheme.is_empty() {
            break;
        }
        let mut params = HashMap::new();
        loop {
            let before_param = cursor.rest;
            cursor.skip_separators();
            let name = cursor.token();
            cursor.skip_spaces();
            if name.is_empty() || !cursor.eat('=') {
                // Not `name=value`: either the end or the next challenge's scheme.
                cursor.rest = before_param;
                break;
            }
            cursor.skip_spaces();
            let value = cursor.value();
            params.insert(name.to_ascii_lowercase(), value);
        }
        challenges.push((scheme.to_owned(), params));
    }
    challenges
}

struct Cursor<'a> {
    rest: &'a str,
}

impl<'a> Cursor<'a> {
    fn skip_spaces(&mut self) {
        self.rest = self.rest.trim_start_matches([' ', '\t']);
    }

    fn skip_separators(&mut self) {
        self.rest = self.rest.trim_start_matches([' ', '\t', ',']);
    }

    fn eat(&mut self, expected: char) -> bool {
        match self.rest.strip_prefix(expected) {
            Some(rest) => {
                self.rest = rest;
                true
            }
            None => false,
        }
    }

    /// Reads an RFC 7230 token.
    fn token(&mut self) -> &'a str {
        let end = self
            .rest
            .find(|c: char| !(c.is_ascii_alphanumeric() || "!#$%&'*+-.^_`|~".contains(c)))
            .unwrap_or(self.rest.len());
        let (token, rest) = self.rest.split_at(end);
        self.rest = rest;
        token
    }

    /// Reads a token or a quoted string with backslash escapes.
    fn value(&mut self) -> String {
        if !self.eat('"') {
            return self.token().to_owned();
        }
        let mut out = String::new();
        let mut chars = self.rest.char_indices();
        while let Some((index, c)) = chars.next() {
            match c {
                '"' => {
                    self.rest = &self.rest[index + 1..];
                    return out;
                }
                '\\' => {
                    if let Some((_, escaped)) = chars.next() {
                        out.push(escaped);
                    }
                }
                other => out.push(other),
            }
        }
        // Unterminated quote: take the rest.
        self.rest = "";
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bearer_challenge_from_distribution() {
        let header = r#"Bearer realm="https://auth.example/token",service="registry.example",scope="repository:lib/app:pull""#;
        assert_eq!(
            select_challenge([header]),
            Some(Challenge::Bearer {
                realm: "https://auth.example/token".into(),
                service: Some("registry.example".into()),
            })
        );
    }

    #[test]
    fn bearer_preferred_over_basic_in_one_header() {
        let header = r#"Basic realm="x", Bearer realm="https://a/t", service=svc"#;
        assert_eq!(
            select_challenge([header]),
            Some(Challenge::Bearer {
                realm: "https://a/t".into(),
                service: Some("svc".into())
            })
        );
    }

    #[test]
    fn bearer_preferred_over_basic_across_headers() {
        let headers = [r#"Basic realm="x""#, r#"Bearer realm="https://a/t""#];
        assert_eq!(
            select_challenge(headers),
            Some(Challenge::Bearer {
                realm: "https://a/t".into(),
                service: None
            })
        );
    }

    #[test]
    fn basic_challenge_alone() {
        assert_eq!(
            select_challenge([r#"Basic realm="Registry Realm""#]),
            Some(Challenge::Basic)
        );
        assert_eq!(select_challenge(["basic"]), Some(Challenge::Basic));
    }

    #[test]
    fn quoted_values_keep_escapes_and_commas() {
        let header = r#"Bearer realm="https://a/t?x=1,y=2", service="say \"hi\"""#;
        assert_eq!(
            select_challenge([header]),
            Some(Challenge::Bearer {
                realm: "https://a/t?x=1,y=2".into(),
                service: Some(r#"say "hi""#.into())
            })
        );
    }

    #[test]
    fn unusable_headers_yield_nothing() {
        assert_eq!(select_challenge(["Negotiate abc=="]), None);
        assert_eq!(select_challenge([r#"Bearer service="s""#]), None);
        assert_eq!(select_challenge([""]), None);
        assert_eq!(
            select_challenge([r#"Bearer realm="unterminated"#]),
            Some(Challenge::Bearer {
                realm: "unterminated".into(),
                service: None
            })
        );
    }
}
