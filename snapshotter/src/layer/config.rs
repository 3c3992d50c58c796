//! [`LayerConfig`]: every read-path setting in one place, as the daemon's TOML embeds it.

use serde::{Deserialize, Serialize};

use crate::cache::{CacheConfig, ConfigError};
use crate::fetch::{FetchConfig, PrefetchConfig};

/// Default number of bytes read from the end of a blob at open: 512 KiB, which contains the footer
/// and the whole TOC of most layers, so opening costs one request.
pub const DEFAULT_TOC_TAIL_BYTES: u64 = 512 << 10;
/// Largest accepted [`LayerConfig::toc_tail_bytes`].
const MAX_TOC_TAIL_BYTES: u64 = 64 << 20;

/// Settings of lazily read layers.
///
/// `cache` configures the process-wide [`ChunkCache`](crate::cache::ChunkCache) and is read by
/// the code that creates the cache; [`Layer::open`](super::Layer::open) uses the other sections.
///
/// ```
/// use lazypull_snapshotter::layer::LayerConfig;
///
/// let config: LayerConfig = toml::from_str(r#"
///     allow_unverified = false
///     [cache]
///     memory_bytes = 134217728
///     [fetch]
///     max_retries = 3
///     [prefetch]
///     prefetch_default_bytes = 10485760
///     background = false
/// "#).unwrap();
/// config.validate().unwrap();
/// assert_eq!(config.fetch.max_retries, 3);
/// assert!(!config.prefetch.background);
/// ```
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct LayerConfig {
    /// Open layers without a TOC digest, trusting whatever TOC the blob holds. Chunks are still
    /// verified against the digests in that TOC.
    pub allow_unverified: bool,
    /// Bytes read from the end of the blob in the first request of an open. A TOC that does not
    /// fit costs a second request for the missing part.
    pub toc_tail_bytes: u64,
    /// The chunk cache.
    pub cache: CacheConfig,
    /// Demand fetches.
    pub fetch: FetchConfig,
    /// Prefetch and background fetch.
    pub prefetch: PrefetchConfig,
}

impl LayerConfig {
    /// Checks every value, nested sections included.
    pub fn validate(&self) -> Result<(), ConfigError> {
        let footer = estargz::footer::MAX_FOOTER_SIZE as u64;
        if !(footer..=MAX_TOC_TAIL_BYTES).contains(&self.toc_tail_bytes) {
            return Err(ConfigError::new(
                "toc_tail_bytes",
                format!("must be between {footer} and {MAX_TOC_TAIL_BYTES}"),
            ));
        }
        self.cache.validate()?;
        self.fetch.validate()?;
        self.prefetch.validate()
    }
}

impl Default for LayerConfig {
    /// Verified TOCs only, a 512 KiB tail read, and the defaults of each section.
    fn default() -> Self {
        LayerConfig {
            allow_unverified: false,
            toc_tail_bytes: DEFAULT_TOC_TAIL_BYTES,
            cache: CacheConfig::default(),
            fetch: FetchConfig::default(),
            prefetch: PrefetchConfig::default(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn empty_toml_gives_defaults() {
        let config: LayerConfig = toml::from_str("").unwrap();
        assert_eq!(config, LayerConfig::default());
        config.validate().unwrap();
    }

    #[test]
    fn tiny_tail_is_invalid() {
        let config = LayerConfig {
            toc_tail_bytes: 10,
            ..LayerConfig::default()
        };
        assert_eq!(config.validate().unwrap_err().field, "toc_tail_bytes");
    }

    #[test]
    fn nested_errors_name_their_section() {
        let mut config = LayerConfig::default();
        config.prefetch.concurrency = 0;
        assert_eq!(config.validate().unwrap_err().field, "prefetch.concurrency");
    }
}
