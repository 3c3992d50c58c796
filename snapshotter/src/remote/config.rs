//! Registry access settings: timeouts, retries, mirrors and plain-HTTP hosts.

use std::collections::HashMap;
use std::time::Duration;

use serde::Deserialize;

use super::error::RemoteError;

/// Default time one attempt (request and body) may take.
pub const DEFAULT_REQUEST_TIMEOUT: Duration = Duration::from_secs(30);
/// Default number of retries after the first attempt.
pub const DEFAULT_MAX_RETRIES: u32 = 5;
/// Default delay before the first retry; later delays double.
pub const DEFAULT_MIN_BACKOFF: Duration = Duration::from_millis(30);
/// Default cap for one retry delay, including delays asked for by `Retry-After`.
pub const DEFAULT_MAX_BACKOFF: Duration = Duration::from_secs(10);

/// Settings for talking to registries.
///
/// Deserializes from TOML or JSON; unknown fields are rejected. Durations are written as an
/// integer with a unit: `"250ms"`, `"30s"`, `"2m"`.
///
/// ```
/// use lazypull_snapshotter::remote::RegistryConfig;
///
/// let cfg: RegistryConfig = serde_json::from_str(r#"{
///     "request_timeout": "10s",
///     "hosts": { "docker.io": { "mirrors": [{ "host": "mirror.local:5000", "insecure": true }] } }
/// }"#).unwrap();
/// assert_eq!(cfg.max_retries, 5);
/// assert_eq!(cfg.hosts["docker.io"].mirrors[0].host, "mirror.local:5000");
/// ```
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct RegistryConfig {
    /// Time limit for one attempt, covering connection, headers and body.
    #[serde(with = "duration_text")]
    pub request_timeout: Duration,
    /// Retries after the first attempt for retryable failures (transport errors, timeouts,
    /// truncated bodies, 429, 5xx except 501).
    pub max_retries: u32,
    /// Delay before the first retry. Each later retry doubles it, with jitter.
    #[serde(with = "duration_text")]
    pub min_backoff: Duration,
    /// Upper bound of one retry delay, also applied to `Retry-After`.
    #[serde(with = "duration_text")]
    pub max_backoff: Duration,
    /// Per-registry settings, keyed by the registry name as written in image references
    /// (`docker.io`, `ghcr.io`, `localhost:5000`).
    pub hosts: HashMap<String, HostConfig>,
}

/// Settings for one registry.
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct HostConfig {
    /// Hosts tried in order before the registry itself.
    pub mirrors: Vec<Mirror>,
    /// Use plain HTTP for this registry. Loopback hosts always use plain HTTP.
    pub insecure: bool,
}

/// A mirror that serves the same repositories as the registry it is listed under.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Mirror {
    /// Host name with optional port, without scheme or path.
    pub host: String,
    /// Use plain HTTP for this mirror.
    #[serde(default)]
    pub insecure: bool,
}

impl Default for RegistryConfig {
    fn default() -> Self {
        RegistryConfig {
            request_timeout: DEFAULT_REQUEST_TIMEOUT,
            max_retries: DEFAULT_MAX_RETRIES,
            min_backoff: DEFAULT_MIN_BACKOFF,
            max_backoff: DEFAULT_MAX_BACKOFF,
            hosts: HashMap::new(),
        }
    }
}

impl RegistryConfig {
    /// Checks values that deserialize but cannot work; the error names the field.
    pub fn validate(&self) -> Result<(), RemoteError> {
        if self.request_timeout.is_zero() {
            return Err(invalid("request_timeout", "must be greater than zero"));
        }
        if self.min_backoff > self.max_backoff {
            return Err(invalid("min_backoff", "must not exceed max_backoff"));
        }
        for (registry, host) in &self.hosts {
            for (index, mirror) in host.mirrors.iter().enumerate() {
                if let Some(reason) = host_name_problem(&mirror.host) {
                    let field = format!("hosts.{registry}.mirrors[{index}].host");
                    return Err(invalid(&field, reason));
                }
            }
        }
        Ok(())
    }

    /// Settings for `registry`, or the defaults when none are configured.
    pub fn host(&self, registry: &str) -> HostConfig {
        self.hosts.get(registry).cloned().unwrap_or_default()
    }
}

fn invalid(field: &str, reason: &str) -> RemoteError {
    RemoteError::InvalidConfig {
        field: field.to_owned(),
        reason: reason.to_owned(),
    }
}

fn host_name_problem(host: &str) -> Option<&'static str> {
    if host.is_empty() {
        Some("must not be empty")
    } else if host.contains("://") {
        Some("must be a host name without scheme")
    } else if host.contains('/') {
        Some("must be a host name without path")
    } else {
        None
    }
}

/// Durations written as `<integer><unit>` with unit `ms`, `s` or `m`.
mod duration_text {
    use std::time::Duration;

    use serde::{Deserialize, Deserializer, de::Error as _};

    pub(super) fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Duration, D::Error> {
        let text = String::deserialize(d)?;
        parse(&text).ok_or_else(|| {
            D::Error::custom(format!(
                "invalid duration {text:?}: expected an integer followed by ms, s or m, such as \"30s\""
            ))
        })
    }

    pub(super) fn parse(text: &str) -> Option<Duration> {
        let digits_end = text.find(|c: char| !c.is_ascii_digit())?;
        let (number, unit) = text.split_at(digits_end);
        let number: u64 = number.parse().ok()?;
        match unit {
            "ms" => Some(Duration::from_millis(number)),
            "s" => Some(Duration::from_secs(number)),
            "m" => Some(Duration::from_secs(number.checked_mul(60)?)),
            _ => None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn duration_text_accepts_units() {
        assert_eq!(
            duration_text::parse("250ms"),
            Some(Duration::from_millis(250))
        );
        assert_eq!(duration_text::parse("30s"), Some(Duration::from_secs(30)));
        assert_eq!(duration_text::parse("2m"), Some(Duration::from_secs(120)));
        assert_eq!(duration_text::parse("30"), None);
        assert_eq!(duration_text::parse("s"), None);
        assert_eq!(duration_text::parse("1h"), None);
    }

    #[test]
    fn config_rejects_unknown_fields() {
        let err = serde_json::from_str::<RegistryConfig>(r#"{"request_timeot": "1s"}"#);
        assert!(err.is_err());
        let err = serde_json::from_str::<RegistryConfig>(
            r#"{"hosts": {"a": {"mirrors": [{"host": "m", "insecur": true}]}}}"#,
        );
        assert!(err.is_err());
    }

    #[test]
    fn empty_config_uses_defaults() {
        let cfg: RegistryConfig = serde_json::from_str("{}").unwrap();
        assert_eq!(cfg, RegistryConfig::default());
        assert!(cfg.validate().is_ok());
    }

    #[test]
    fn validate_names_bad_mirror_field() {
        let cfg: RegistryConfig = serde_json::from_str(
            r#"{"hosts": {"ghcr.io": {"mirrors": [{"host": "https://m.example"}]}}}"#,
        )
        .unwrap();
        let err = cfg.validate().unwrap_err();
        assert!(
            err.to_string().contains("hosts.ghcr.io.mirrors[0].host"),
            "{err}"
        );
    }

    #[test]
    fn validate_rejects_inverted_backoff() {
        let cfg = RegistryConfig {
            min_backoff: Duration::from_secs(5),
            max_backoff: Duration::from_secs(1),
            ..RegistryConfig::default()
        };
        assert!(cfg.validate().is_err());
    }
}
