//! Secret detection on file contents. Only the kind and the path leave this module: no
//! function here returns or logs any byte of a value it matched.

use serde::Serialize;

/// Largest file whose whole content is checked for credentials (`.git/config`, `.npmrc`, `.env`).
pub const MAX_CHECKED_FILE: u64 = 1 << 20;

/// Bytes at the start of every file that are checked for a PEM private-key header.
pub const HEAD_BYTES: usize = 4096;

/// Kind of secret found in a file.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum SecretKind {
    /// A `.git/config` with a remote URL carrying a user name and password or token.
    GitCredentials,
    /// An `.npmrc` with `_authToken`, `_auth` or `_password`.
    NpmToken,
    /// A `.env` file assigning a value to a key that names a token, password, secret or key.
    #[serde(rename = "dotenv")]
    DotEnv,
    /// A PEM private key (`-----BEGIN ... PRIVATE KEY-----`).
    PrivateKey,
}

impl SecretKind {
    /// Lower-case name for text output.
    pub fn name(self) -> &'static str {
        match self {
            SecretKind::GitCredentials => "git-credentials",
            SecretKind::NpmToken => "npm-token",
            SecretKind::DotEnv => "dotenv",
            SecretKind::PrivateKey => "private-key",
        }
    }
}

/// Returns the kind of credential file that `path` names, if any. Those files are read whole.
pub fn credential_file(path: &[u8]) -> Option<SecretKind> {
    let name = path.rsplit(|&b| b == b'/').next().unwrap_or(path);
    if path == b".git/config" || path.ends_with(b"/.git/config") {
        Some(SecretKind::GitCredentials)
    } else if name == b".npmrc" {
        Some(SecretKind::NpmToken)
    } else if name == b".env" || name.starts_with(b".env.") {
        Some(SecretKind::DotEnv)
    } else {
        None
    }
}

/// Checks a whole credential file of `kind` for a credential.
pub fn credential_in(kind: SecretKind, content: &[u8]) -> bool {
    let text = String::from_utf8_lossy(content);
    match kind {
        SecretKind::GitCredentials => text.lines().any(url_has_credentials),
        SecretKind::NpmToken => text.lines().any(|line| {
            let line = line.trim();
            ["_authToken", "_auth", "_password"].iter().any(|key| {
                line.split_once('=').is_some_and(|(k, v)| {
                    (k.trim().ends_with(key) || k.trim().ends_with(&format!(":{key}")))
                        && !v.trim().is_empty()
                })
            })
        }),
        SecretKind::DotEnv => text.lines().any(dotenv_secret),
        SecretKind::PrivateKey => private_key_in(content),
    }
}

/// Tells whether `head`, the start of a file, contains a PEM private-key header.
pub fn private_key_in(head: &[u8]) -> bool {
    let Some(start) = find(head, b"-----BEGIN ") else {
        return false;
    };
    let rest = &head[start + 11..];
    let line_end = rest.iter().position(|&b| b == b'\n').unwrap_or(rest.len());
    let label = &rest[..line_end];
    find(label, b"PRIVATE KEY-----").is_some()
}

/// Tells whether a git config line is `url = scheme://user:secret@host/...`, or a URL whose
/// user part alone is a token.
fn url_has_credentials(line: &str) -> bool {
    let Some((key, value)) = line.trim().split_once('=') else {
        return false;
    };
    if !key.trim().eq_ignore_ascii_case("url") && !key.trim().eq_ignore_ascii_case("pushurl") {
        return false;
    }
    let value = value.trim();
    let Some((_, after_scheme)) = value.split_once("://") else {
        return false;
    };
    let authority = after_scheme.split('/').next().unwrap_or("");
    match authority.rsplit_once('@') {
        Some((userinfo, _)) => userinfo.contains(':') || userinfo.len() >= 20,
        None => false,
    }
}

fn dotenv_secret(line: &str) -> bool {
    let line = line.trim();
    let line = line.strip_prefix("export ").unwrap_or(line);
    let Some((key, value)) = line.split_once('=') else {
        return false;
    };
    if key.starts_with('#') {
        return false;
    }
    let key = key.trim().to_ascii_uppercase();
    let value = value.trim().trim_matches(|c| c == '"' || c == '\'');
    !value.is_empty()
        && [
            "TOKEN",
            "SECRET",
            "PASSWORD",
            "PASSWD",
            "KEY",
            "CREDENTIAL",
            "AUTH",
        ]
        .iter()
        .any(|word| key.contains(word))
}

fn find(haystack: &[u8], needle: &[u8]) -> Option<usize> {
    haystack.windows(needle.len()).position(|w| w == needle)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn git_config_url_token_detected() {
        let config = b"[remote \"origin\"]\n\turl = https://user:ghp_abcdef@example.test/r.git\n";
        assert!(credential_in(SecretKind::GitCredentials, config));
        let clean = b"[remote \"origin\"]\n\turl = https://example.test/r.git\n";
        assert!(!credential_in(SecretKind::GitCredentials, clean));
        let ssh = b"\turl = git@example.test:r.git\n";
        assert!(!credential_in(SecretKind::GitCredentials, ssh));
    }

    #[test]
    fn npmrc_auth_token_is_a_secret() {
        let rc = b"registry=https://r.test/\n//r.test/:_authToken=abc123\n";
        assert!(credential_in(SecretKind::NpmToken, rc));
        assert!(!credential_in(
            SecretKind::NpmToken,
            b"registry=https://r.test/\n"
        ));
    }

    #[test]
    fn dotenv_with_password_value_is_a_secret() {
        assert!(credential_in(SecretKind::DotEnv, b"DB_PASSWORD=hunter2\n"));
        assert!(!credential_in(
            SecretKind::DotEnv,
            b"PORT=8080\n# API_KEY=\nAPI_KEY=\n"
        ));
    }

    #[test]
    fn pem_private_key_not_certificate() {
        assert!(private_key_in(
            b"-----BEGIN OPENSSH PRIVATE KEY-----\nb3Bl\n"
        ));
        assert!(private_key_in(b"junk\n-----BEGIN RSA PRIVATE KEY-----\n"));
        assert!(!private_key_in(b"-----BEGIN CERTIFICATE-----\nMII\n"));
    }

    #[test]
    fn json_kind_matches_text_name() {
        for kind in [
            SecretKind::GitCredentials,
            SecretKind::NpmToken,
            SecretKind::DotEnv,
            SecretKind::PrivateKey,
        ] {
            let json = serde_json::to_value(kind).unwrap();
            assert_eq!(json, serde_json::Value::from(kind.name()), "{kind:?}");
        }
    }

    #[test]
    fn credential_files_are_recognised_by_path() {
        assert_eq!(
            credential_file(b"app/.git/config"),
            Some(SecretKind::GitCredentials)
        );
        assert_eq!(credential_file(b"root/.npmrc"), Some(SecretKind::NpmToken));
        assert_eq!(
            credential_file(b"app/.env.production"),
            Some(SecretKind::DotEnv)
        );
        assert_eq!(credential_file(b"app/config"), None);
    }
}
