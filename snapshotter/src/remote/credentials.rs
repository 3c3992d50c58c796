//! Where registry credentials come from.
//!
//! The auth code queries a [`Credentials`] provider every time it needs a new token or basic
//! header, never caching the result itself, so credentials rotated by a helper or an edited
//! `config.json` are picked up at the next refresh.

use std::collections::HashMap;
use std::fmt;
use std::path::{Path, PathBuf};

use futures_util::future::BoxFuture;

/// A secret for one registry.
#[derive(Clone, PartialEq, Eq)]
pub enum Credential {
    /// User name and password (or personal access token), sent as basic auth.
    UsernamePassword {
        /// User name.
        username: String,
        /// Password or access token.
        password: String,
    },
    /// An OAuth2 refresh token (docker's "identity token"), exchanged at the token realm.
    IdentityToken(String),
}

impl fmt::Debug for Credential {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Credential::UsernamePassword { username, .. } => f
                .debug_struct("UsernamePassword")
                .field("username", username)
                .field("password", &"<redacted>")
                .finish(),
            Credential::IdentityToken(_) => f.write_str("IdentityToken(<redacted>)"),
        }
    }
}

/// Failure to obtain credentials. Messages never contain secrets.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum CredentialError {
    /// The lookup did not finish within the request timeout.
    #[error("credential lookup timed out")]
    TimedOut,
    /// The registry requires credentials and the provider has none for it.
    #[error("the registry requires credentials and none are configured")]
    Missing,
    /// The credential kind does not fit the registry's challenge.
    #[error("an identity token cannot answer a Basic challenge")]
    IdentityTokenForBasic,
    /// `config.json` exists but could not be read or parsed.
    #[error("cannot read docker config {path}")]
    ConfigUnreadable {
        /// Path of the config file.
        path: PathBuf,
    },
    /// A credential helper failed.
    #[error("credential helper failed: {reason}")]
    Helper {
        /// Helper name and failure, without its output (it may contain secrets).
        reason: String,
    },
    /// Another provider failed.
    #[error("{0}")]
    Other(String),
}

/// A source of registry credentials.
///
/// `lookup` returns `Ok(None)` when no credentials are configured for the host, which means
/// anonymous access. Implementations may block in a helper process: the caller applies the
/// request timeout to each lookup.
pub trait Credentials: Send + Sync {
    /// Looks up credentials for `host` (the registry host with port, as in image references;
    /// `docker.io` for Docker Hub).
    fn lookup<'a>(
        &'a self,
        host: &'a str,
    ) -> BoxFuture<'a, Result<Option<Credential>, CredentialError>>;
}

/// Anonymous access everywhere.
#[derive(Debug, Clone, Copy, Default)]
pub struct Anonymous;

impl Credentials for Anonymous {
    fn lookup<'a>(
        &'a self,
        _host: &'a str,
    ) -> BoxFuture<'a, Result<Option<Credential>, CredentialError>> {
        Box::pin(async { Ok(None) })
    }
}

/// Fixed credentials per host; hosts not listed are anonymous.
#[derive(Clone, Default)]
pub struct StaticCredentials {
    by_host: HashMap<String, Credential>,
}

impl fmt::Debug for StaticCredentials {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_set().entries(self.by_host.keys()).finish()
    }
}

impl StaticCredentials {
    /// No credentials.
    pub fn new() -> Self {
        Self::default()
    }

    /// Adds or replaces the credential for `host`.
    pub fn with(mut self, host: impl Into<String>, credential: Credential) -> Self {
        self.by_host.insert(host.into(), credential);
        self
    }
}

impl Credentials for StaticCredentials {
    fn lookup<'a>(
        &'a self,
        host: &'a str,
    ) -> BoxFuture<'a, Result<Option<Credential>, CredentialError>> {
        let found = self.by_host.get(host).cloned();
        Box::pin(async move { Ok(found) })
    }
}

/// Credentials from docker's `config.json`, read again at every lookup.
///
/// Handles `auths` entries, `credsStore` and `credHelpers` through the `docker_credential`
/// crate. A missing file or a host without an entry means anonymous access. Docker Hub is
/// looked up under `https://index.docker.io/v1/`, the key `docker login` writes.
#[derive(Debug, Clone, Default)]
pub struct DockerConfigCredentials {
    path: Option<PathBuf>,
}

impl DockerConfigCredentials {
    /// Uses `$DOCKER_CONFIG/config.json`, else `~/.docker/config.json`, resolved at each lookup.
    pub fn new() -> Self {
        Self::default()
    }

    /// Uses the config file at `path`.
    pub fn at(path: impl Into<PathBuf>) -> Self {
        DockerConfigCredentials {
            path: Some(path.into()),
        }
    }
}

impl Credentials for DockerConfigCredentials {
    fn lookup<'a>(
        &'a self,
        host: &'a str,
    ) -> BoxFuture<'a, Result<Option<Credential>, CredentialError>> {
        let key = docker_config_key(host);
        let path = self.path.clone().or_else(default_docker_config_path);
        Box::pin(async move {
            let Some(path) = path else {
                return Ok(None);
            };
            // Helpers are external processes and the crate's API is blocking.
            tokio::task::spawn_blocking(move || lookup_docker_config(&path, &key))
                .await
                .map_err(|join| {
                    CredentialError::Other(format!("credential lookup task failed: {join}"))
                })?
        })
    }
}

/// Returns the `auths` key docker uses for a registry host.
fn docker_config_key(host: &str) -> String {
    match host {
        "docker.io" | "index.docker.io" | "registry-1.docker.io" => {
            "https://index.docker.io/v1/".to_owned()
        }
        other => other.to_owned(),
    }
}

fn default_docker_config_path() -> Option<PathBuf> {
    let dir = std::env::var_os("DOCKER_CONFIG")
        .map(PathBuf::from)
        .or_else(|| std::env::var_os("HOME").map(|home| PathBuf::from(home).join(".docker")))?;
    Some(dir.join("config.json"))
}

fn lookup_docker_config(path: &Path, key: &str) -> Result<Option<Credential>, CredentialError> {
    use docker_credential::{CredentialRetrievalError as E, DockerCredential};

    let file = match std::fs::File::open(path) {
        Ok(file) => file,
        Err(err) if err.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(_) => {
            return Err(CredentialError::ConfigUnreadable {
                path: path.to_owned(),
            });
        }
    };
    match docker_credential::get_credential_from_reader(std::io::BufReader::new(file), key) {
        Ok(DockerCredential::UsernamePassword(username, password)) => {
            Ok(Some(Credential::UsernamePassword { username, password }))
        }
        Ok(DockerCredential::IdentityToken(token)) => Ok(Some(Credential::IdentityToken(token))),
        Err(E::NoCredentialConfigured | E::ConfigNotFound) => Ok(None),
        Err(E::ConfigReadError) => Err(CredentialError::ConfigUnreadable {
            path: path.to_owned(),
        }),
        // Helpers report a missing entry on stdout and exit non-zero; docker's own client
        // treats that text as "no credentials" (docker-credential-helpers, credentials.go).
        Err(E::HelperFailure { stdout, .. }) if stdout.contains("credentials not found") => {
            Ok(None)
        }
        Err(E::HelperFailure { helper, stderr, .. }) => Err(CredentialError::Helper {
            reason: format!("{helper} exited with an error: {}", first_line(&stderr)),
        }),
        Err(other) => Err(CredentialError::Helper {
            reason: other.to_string(),
        }),
    }
}

fn first_line(text: &str) -> &str {
    text.lines().next().unwrap_or("").trim()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn debug_output_redacts_secrets() {
        let basic = Credential::UsernamePassword {
            username: "u".into(),
            password: "hunter2".into(),
        };
        let token = Credential::IdentityToken("tok-secret".into());
        assert!(!format!("{basic:?}").contains("hunter2"));
        assert!(!format!("{token:?}").contains("tok-secret"));
    }

    #[test]
    fn docker_hub_uses_legacy_config_key() {
        assert_eq!(
            docker_config_key("docker.io"),
            "https://index.docker.io/v1/"
        );
        assert_eq!(
            docker_config_key("registry-1.docker.io"),
            "https://index.docker.io/v1/"
        );
        assert_eq!(docker_config_key("localhost:5000"), "localhost:5000");
    }

    #[tokio::test]
    async fn docker_config_is_reread_at_each_lookup() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("config.json");
        let creds = DockerConfigCredentials::at(&path);
        assert_eq!(
            creds.lookup("r.example:5000").await.unwrap(),
            None,
            "missing file is anonymous"
        );

        // base64("alice:one") and base64("alice:two")
        std::fs::write(
            &path,
            r#"{"auths":{"r.example:5000":{"auth":"YWxpY2U6b25l"}}}"#,
        )
        .unwrap();
        let first = creds.lookup("r.example:5000").await.unwrap();
        std::fs::write(
            &path,
            r#"{"auths":{"r.example:5000":{"auth":"YWxpY2U6dHdv"}}}"#,
        )
        .unwrap();
        let second = creds.lookup("r.example:5000").await.unwrap();

        let expect = |password: &str| {
            Some(Credential::UsernamePassword {
                username: "alice".into(),
                password: password.into(),
            })
        };
        assert_eq!(first, expect("one"));
        assert_eq!(second, expect("two"));
        assert_eq!(creds.lookup("other.example").await.unwrap(), None);
    }

    #[tokio::test]
    async fn docker_config_invalid_json_is_error() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("config.json");
        std::fs::write(&path, "not json").unwrap();
        let err = DockerConfigCredentials::at(&path)
            .lookup("r.example")
            .await
            .unwrap_err();
        assert!(
            matches!(err, CredentialError::ConfigUnreadable { .. }),
            "{err:?}"
        );
    }

    #[tokio::test]
    async fn static_credentials_are_per_host() {
        let creds = StaticCredentials::new().with(
            "r.example",
            Credential::UsernamePassword {
                username: "a".into(),
                password: "b".into(),
            },
        );
        assert!(creds.lookup("r.example").await.unwrap().is_some());
        assert!(creds.lookup("other.example").await.unwrap().is_none());
    }
}
