//! Settings of the chunk cache, and the pieces every read-path config shares.

use std::path::PathBuf;
use std::time::Duration;

use serde::{Deserialize, Serialize};

/// Default byte budget of the memory tier: 256 MiB of decompressed chunks.
pub const DEFAULT_MEMORY_BYTES: u64 = 256 << 20;
/// Default byte budget of the disk tier: 10 GiB.
pub const DEFAULT_DISK_BYTES: u64 = 10 << 30;
/// Default pause of disk writes after one failed (a full disk, for example).
pub const DEFAULT_DISK_WRITE_BACKOFF: Duration = Duration::from_secs(1);
/// Default limit of chunk bytes waiting to be written to disk; above it, writes are skipped.
pub const DEFAULT_DISK_WRITE_QUEUE_BYTES: u64 = 256 << 20;

/// Settings of [`ChunkCache`](super::ChunkCache).
///
/// ```
/// use lazypull_snapshotter::cache::CacheConfig;
///
/// let config: CacheConfig = toml::from_str(r#"
///     memory_bytes = 67108864
///     disk_dir = "/var/lib/lazypull/chunks"
///     disk_write_backoff = "500ms"
/// "#).unwrap();
/// assert_eq!(config.memory_bytes, 64 << 20);
/// assert_eq!(config.disk_bytes, 10 << 30);
/// config.validate().unwrap();
/// ```
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct CacheConfig {
    /// Budget of the memory tier in bytes of decompressed chunk data; 0 turns the tier off.
    pub memory_bytes: u64,
    /// Directory of the disk tier; without it, chunks are cached in memory only.
    pub disk_dir: Option<PathBuf>,
    /// Budget of the disk tier in bytes, shared by all layers.
    pub disk_bytes: u64,
    /// How long disk writes pause after one failed, so a full disk costs one failed write per
    /// pause instead of one per chunk.
    #[serde(with = "duration_text")]
    pub disk_write_backoff: Duration,
    /// Chunk bytes that may wait for their disk write; further writes are skipped (and counted)
    /// while the disk is slower than the network.
    pub disk_write_queue_bytes: u64,
    /// Whether to check the SHA-256 of every chunk read from the disk tier. When off, a chunk
    /// file is checked the first time this process reads it, unless the process wrote it after
    /// verifying it. When on, every read is checked, which also catches a file damaged while the
    /// process runs, at the cost of hashing every warm read.
    pub reverify_disk_reads: bool,
}

impl Default for CacheConfig {
    fn default() -> Self {
        CacheConfig {
            memory_bytes: DEFAULT_MEMORY_BYTES,
            disk_dir: None,
            disk_bytes: DEFAULT_DISK_BYTES,
            disk_write_backoff: DEFAULT_DISK_WRITE_BACKOFF,
            disk_write_queue_bytes: DEFAULT_DISK_WRITE_QUEUE_BYTES,
            reverify_disk_reads: false,
        }
    }
}

impl CacheConfig {
    /// Checks that the values can work together.
    pub fn validate(&self) -> Result<(), ConfigError> {
        if self.disk_dir.is_some() && self.disk_bytes == 0 {
            return Err(ConfigError::new(
                "cache.disk_bytes",
                "must be above 0 when cache.disk_dir is set",
            ));
        }
        if self
            .disk_dir
            .as_ref()
            .is_some_and(|dir| dir.as_os_str().is_empty())
        {
            return Err(ConfigError::new("cache.disk_dir", "must not be empty"));
        }
        Ok(())
    }
}

/// A configuration value that is out of range.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid read-path configuration: {field} {reason}")]
pub struct ConfigError {
    /// Dotted path of the field, such as `fetch.max_request_bytes`.
    pub field: &'static str,
    /// What the value must be.
    pub reason: String,
}

impl ConfigError {
    pub(crate) fn new(field: &'static str, reason: impl Into<String>) -> Self {
        ConfigError {
            field,
            reason: reason.into(),
        }
    }
}

/// Durations written as an integer with a unit (`"250ms"`, `"30s"`, `"2m"`), the form the
/// registry settings use too.
pub(crate) mod duration_text {
    use std::time::Duration;

    use serde::{Deserialize, Deserializer, Serializer, de::Error as _};

    pub(crate) fn serialize<S: Serializer>(value: &Duration, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(&format_args!("{}ms", value.as_millis()))
    }

    pub(crate) fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Duration, D::Error> {
        let text = String::deserialize(d)?;
        parse(&text).ok_or_else(|| {
            D::Error::custom(format!(
                "invalid duration {text:?}: expected an integer followed by ms, s or m, such as \"500ms\""
            ))
        })
    }

    pub(crate) fn parse(text: &str) -> Option<Duration> {
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
    fn unknown_fields_are_rejected() {
        let err = toml::from_str::<CacheConfig>("memory = 5").unwrap_err();
        assert!(err.to_string().contains("unknown field"), "{err}");
    }

    #[test]
    fn durations_round_trip_through_toml() {
        let config = CacheConfig {
            disk_write_backoff: Duration::from_millis(1500),
            ..CacheConfig::default()
        };
        let text = toml::to_string(&config).unwrap();
        assert!(text.contains("disk_write_backoff = \"1500ms\""), "{text}");
        assert_eq!(toml::from_str::<CacheConfig>(&text).unwrap(), config);
    }

    #[test]
    fn disk_dir_without_budget_is_invalid() {
        let config = CacheConfig {
            disk_dir: Some("/tmp/x".into()),
            disk_bytes: 0,
            ..CacheConfig::default()
        };
        assert_eq!(config.validate().unwrap_err().field, "cache.disk_bytes");
    }

    #[test]
    fn duration_text_needs_a_unit() {
        assert_eq!(duration_text::parse("2s"), Some(Duration::from_secs(2)));
        assert_eq!(duration_text::parse("2"), None);
        assert_eq!(duration_text::parse("2h"), None);
    }
}
