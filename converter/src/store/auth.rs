//! Registry credentials from the docker config (`$DOCKER_CONFIG/config.json`, else
//! `~/.docker/config.json`): `auths` entries, `credsStore` and `credHelpers`.
//!
//! Secrets never appear in logs or errors; only the registry name and the helper name do.

use docker_credential::{CredentialRetrievalError, DockerCredential};
use oci_client::secrets::RegistryAuth;

use crate::error::ConvertError;

/// Key under which the docker CLI stores Docker Hub credentials.
const DOCKER_HUB_KEY: &str = "https://index.docker.io/v1/";

/// Looks up credentials for `registry` (`host[:port]`, as resolved by the reference).
///
/// No docker config, or no entry for this registry, means anonymous access. An identity token
/// (an OAuth2 refresh token) cannot be used by the registry client, so it also falls back to
/// anonymous access, with a warning.
pub fn registry_auth(registry: &str) -> Result<RegistryAuth, ConvertError> {
    // docker_credential reports a missing file as unreadable, so check for it first.
    if !docker_config_file().is_some_and(|path| path.is_file()) {
        return Ok(RegistryAuth::Anonymous);
    }
    let mut keys = vec![registry.to_string()];
    if matches!(
        registry,
        "index.docker.io" | "docker.io" | "registry-1.docker.io"
    ) {
        keys.push(DOCKER_HUB_KEY.to_string());
    }
    for key in &keys {
        match docker_credential::get_credential(key) {
            Ok(DockerCredential::UsernamePassword(user, password)) => {
                tracing::debug!(registry, "using credentials from the docker config");
                return Ok(RegistryAuth::Basic(user, password));
            }
            Ok(DockerCredential::IdentityToken(_)) => {
                tracing::warn!(
                    registry,
                    "the docker config holds an identity token for this registry, which lazypull cannot use; \
                     trying anonymous access"
                );
                return Ok(RegistryAuth::Anonymous);
            }
            Err(
                CredentialRetrievalError::NoCredentialConfigured
                | CredentialRetrievalError::ConfigNotFound,
            ) => {}
            Err(CredentialRetrievalError::HelperFailure { helper, stdout, .. }) => {
                // Helpers report a missing entry this way ("credentials not found in native keychain").
                if stdout.contains("not found") {
                    continue;
                }
                return Err(ConvertError::Credentials {
                    registry: registry.to_string(),
                    reason: format!("credential helper docker-credential-{helper} failed"),
                });
            }
            Err(other) => {
                return Err(ConvertError::Credentials {
                    registry: registry.to_string(),
                    reason: other.to_string(),
                });
            }
        }
    }
    Ok(RegistryAuth::Anonymous)
}

/// `$DOCKER_CONFIG/config.json`, else `$HOME/.docker/config.json`, as the docker CLI reads it.
fn docker_config_file() -> Option<std::path::PathBuf> {
    let dir = std::env::var_os("DOCKER_CONFIG")
        .map(std::path::PathBuf::from)
        .or_else(|| {
            std::env::var_os("HOME").map(|home| std::path::Path::new(&home).join(".docker"))
        })?;
    Some(dir.join("config.json"))
}

#[cfg(test)]
mod tests {
    use super::*;

    // One test changes DOCKER_CONFIG, so the cases share one function instead of racing.
    #[test]
    fn docker_config_entries_are_used() {
        let dir = tempfile::tempdir().unwrap();
        // "user:secret" in base64.
        std::fs::write(
            dir.path().join("config.json"),
            r#"{"auths":{"registry.example.com:5000":{"auth":"dXNlcjpzZWNyZXQ="},"tok.example.com":{"identitytoken":"x"}}}"#,
        )
        .unwrap();
        // SAFETY: no other test in this crate reads or writes DOCKER_CONFIG.
        unsafe { std::env::set_var("DOCKER_CONFIG", dir.path()) };
        let auth = registry_auth("registry.example.com:5000").unwrap();
        let RegistryAuth::Basic(user, password) = auth else {
            panic!("expected Basic credentials")
        };
        assert_eq!(user, "user");
        assert_eq!(password, "secret");
        assert!(matches!(
            registry_auth("other.example.com").unwrap(),
            RegistryAuth::Anonymous
        ));
        assert!(matches!(
            registry_auth("tok.example.com").unwrap(),
            RegistryAuth::Anonymous
        ));

        std::fs::write(dir.path().join("config.json"), "{not json").unwrap();
        let err = registry_auth("registry.example.com:5000").unwrap_err();
        assert!(
            err.to_string().contains("registry.example.com:5000"),
            "{err}"
        );

        std::fs::remove_file(dir.path().join("config.json")).unwrap();
        assert!(matches!(
            registry_auth("registry.example.com:5000").unwrap(),
            RegistryAuth::Anonymous
        ));
        // SAFETY: as above.
        unsafe { std::env::remove_var("DOCKER_CONFIG") };
    }
}
