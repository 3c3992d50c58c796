//! Settings of chunk fetching, prefetch and background fetch.

use std::time::Duration;

use serde::{Deserialize, Serialize};

use crate::cache::ConfigError;
use crate::cache::config::duration_text;

use estargz::range_plan::MergeRule;

/// Settings of demand fetches: retries and how neighbouring chunks share a range request.
///
/// The merge defaults come from the table printed by `benches/read_path.rs`; the figures are
/// in the module documentation of [`super::plan`].
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct FetchConfig {
    /// Retries of a range request after the first attempt, when the source reports a retryable
    /// error or a chunk fails decompression or verification. The blob source has retries of its
    /// own for HTTP failures; these also cover corrupt bytes.
    pub max_retries: u32,
    /// Delay before the first retry; later delays double, up to 5 s.
    #[serde(with = "duration_text")]
    pub retry_backoff: Duration,
    /// Largest gap, in compressed bytes, between two missing chunks that are still fetched in
    /// one request (the gap bytes are downloaded and discarded).
    pub merge_gap_bytes: u64,
    /// Largest merged range request in bytes. A single chunk larger than this is still fetched
    /// whole.
    pub max_request_bytes: u64,
    /// Range requests of one read that may run at once.
    pub parallel_requests: usize,
    /// Compressed bytes after a demand miss that are fetched with it, whole chunks only. Files
    /// stored next to each other are often read together (a package's modules, a library and
    /// its data), so one request brings the neighbours a workload is about to open. 0 turns
    /// read-ahead off.
    pub readahead_bytes: u64,
    /// Chunks after the last one a read touches, in the same file, that are loaded into memory in
    /// the background (from the disk tier or the network) when the read starts where the previous
    /// read of that file ended, so a sequential reader finds them ready. Random reads load
    /// nothing ahead. 0 turns it off.
    pub sequential_chunks: usize,
}

/// Default [`FetchConfig::merge_gap_bytes`]: 256 KiB.
pub const DEFAULT_MERGE_GAP_BYTES: u64 = 256 << 10;
/// Default [`FetchConfig::max_request_bytes`]: 8 MiB.
pub const DEFAULT_MAX_REQUEST_BYTES: u64 = 8 << 20;
/// Default [`FetchConfig::readahead_bytes`]: 512 KiB.
pub const DEFAULT_READAHEAD_BYTES: u64 = 512 << 10;

impl Default for FetchConfig {
    fn default() -> Self {
        FetchConfig {
            max_retries: 2,
            retry_backoff: Duration::from_millis(100),
            merge_gap_bytes: DEFAULT_MERGE_GAP_BYTES,
            max_request_bytes: DEFAULT_MAX_REQUEST_BYTES,
            parallel_requests: 4,
            readahead_bytes: DEFAULT_READAHEAD_BYTES,
            sequential_chunks: 4,
        }
    }
}

impl FetchConfig {
    /// Returns the merge rule of demand reads.
    pub fn merge_rule(&self) -> MergeRule {
        MergeRule {
            max_gap: self.merge_gap_bytes,
            max_request: self.max_request_bytes,
        }
    }

    /// Checks every value.
    pub fn validate(&self) -> Result<(), ConfigError> {
        if self.max_retries > 20 {
            return Err(ConfigError::new("fetch.max_retries", "must be at most 20"));
        }
        if self.max_request_bytes == 0 {
            return Err(ConfigError::new(
                "fetch.max_request_bytes",
                "must be above 0",
            ));
        }
        if self.parallel_requests == 0 {
            return Err(ConfigError::new(
                "fetch.parallel_requests",
                "must be at least 1",
            ));
        }
        Ok(())
    }
}

/// Settings of prefetch (at open) and background fetch (afterwards).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct PrefetchConfig {
    /// Prefetch at open: the prioritized range of a `.prefetch.landmark`, or
    /// `prefetch_default_bytes` when the layer has no landmark.
    pub enabled: bool,
    /// Blob bytes to prefetch from offset 0 when the layer has no landmark. The containerd
    /// label `containerd.io/snapshot/remote/stargz.prefetch` overrides it per layer.
    pub prefetch_default_bytes: u64,
    /// Size of one prefetch range request in bytes.
    pub request_bytes: u64,
    /// Prefetch range requests that may run at once.
    pub concurrency: usize,
    /// After prefetch, fetch every other chunk of the layer into the cache at low priority.
    /// Skipped when the cache has no disk tier and its memory tier cannot hold the layer.
    pub background: bool,
    /// Background range requests that may run at once (per layer).
    pub background_concurrency: usize,
    /// Size of one background range request in bytes.
    pub background_request_bytes: u64,
    /// Time without demand reads or prefetch before background requests start again.
    #[serde(with = "duration_text")]
    pub background_quiet: Duration,
    /// Bandwidth limit of background fetching per layer in bytes per second; 0 means none.
    pub background_bytes_per_sec: u64,
}

impl Default for PrefetchConfig {
    fn default() -> Self {
        PrefetchConfig {
            enabled: true,
            prefetch_default_bytes: 0,
            request_bytes: 4 << 20,
            concurrency: 4,
            background: true,
            background_concurrency: 2,
            background_request_bytes: 8 << 20,
            background_quiet: Duration::from_secs(1),
            background_bytes_per_sec: 0,
        }
    }
}

impl PrefetchConfig {
    /// Checks every value.
    pub fn validate(&self) -> Result<(), ConfigError> {
        if self.request_bytes == 0 {
            return Err(ConfigError::new(
                "prefetch.request_bytes",
                "must be above 0",
            ));
        }
        if self.concurrency == 0 {
            return Err(ConfigError::new(
                "prefetch.concurrency",
                "must be at least 1",
            ));
        }
        if self.background_concurrency == 0 {
            return Err(ConfigError::new(
                "prefetch.background_concurrency",
                "must be at least 1",
            ));
        }
        if self.background_request_bytes == 0 {
            return Err(ConfigError::new(
                "prefetch.background_request_bytes",
                "must be above 0",
            ));
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_are_valid() {
        FetchConfig::default().validate().unwrap();
        PrefetchConfig::default().validate().unwrap();
    }

    #[test]
    fn toml_overrides_single_fields() {
        let config: PrefetchConfig =
            toml::from_str("prefetch_default_bytes = 10485760\nbackground_quiet = \"5s\"").unwrap();
        assert_eq!(config.prefetch_default_bytes, 10 << 20);
        assert_eq!(config.background_quiet, Duration::from_secs(5));
        assert!(config.background);
    }

    #[test]
    fn zero_request_size_is_invalid() {
        let config = FetchConfig {
            max_request_bytes: 0,
            ..FetchConfig::default()
        };
        assert_eq!(
            config.validate().unwrap_err().field,
            "fetch.max_request_bytes"
        );
    }
}
