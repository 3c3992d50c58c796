//! Counters of a mount, per layer and in total, written as JSON to the state directory.

use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::{SystemTime, UNIX_EPOCH};

use serde::{Deserialize, Serialize};

use super::remote_layer::RemoteLayer;

/// Counters of one layer, or their sum over all layers.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct LayerStats {
    /// Layer blob digest (empty for the total).
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub digest: String,
    /// Size of the layer blob, in bytes.
    pub blob_size: u64,
    /// Compressed bytes read from the registry or layout, footer and TOC included.
    pub bytes_fetched: u64,
    /// Range reads of the blob (each may take several HTTP requests when retried).
    pub requests: u64,
    /// HTTP requests the registry client sent for this blob, token and redirect requests and
    /// retries included (0 for local layouts).
    pub http_requests: u64,
    /// Chunk reads served from the memory or disk cache.
    pub cache_hits: u64,
    /// Chunk reads that had to fetch.
    pub cache_misses: u64,
    /// Chunks fetched and verified.
    pub chunks_fetched: u64,
    /// Reads that failed with `EIO`.
    pub read_errors: u64,
    /// Compressed bytes of the prioritized range.
    pub prefetch_total_bytes: u64,
    /// Compressed bytes of the prioritized range fetched so far.
    pub prefetch_done_bytes: u64,
}

impl LayerStats {
    fn add(&mut self, other: &LayerStats) {
        self.blob_size += other.blob_size;
        self.bytes_fetched += other.bytes_fetched;
        self.requests += other.requests;
        self.http_requests += other.http_requests;
        self.cache_hits += other.cache_hits;
        self.cache_misses += other.cache_misses;
        self.chunks_fetched += other.chunks_fetched;
        self.read_errors += other.read_errors;
        self.prefetch_total_bytes += other.prefetch_total_bytes;
        self.prefetch_done_bytes += other.prefetch_done_bytes;
    }
}

/// The stats file of a mount.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct MountStats {
    /// When the counters were read, in milliseconds since the Unix epoch.
    pub updated_unix_ms: u64,
    /// Sum over all layers.
    pub total: LayerStats,
    /// Each layer, bottom first.
    pub layers: Vec<LayerStats>,
}

impl MountStats {
    /// Formats the stats as indented JSON, the format of the stats file.
    pub fn to_json_pretty(&self) -> String {
        serde_json::to_string_pretty(self).unwrap_or_default()
    }
}

/// Reads the counters of `layers` now.
pub fn collect(layers: &[Arc<RemoteLayer>]) -> MountStats {
    let mut stats = MountStats {
        updated_unix_ms: SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |d| d.as_millis() as u64),
        ..MountStats::default()
    };
    for layer in layers {
        let remote = layer.source().stats().snapshot();
        let counters = layer.counters();
        let one = LayerStats {
            digest: layer.digest().to_string(),
            blob_size: layer.source().size(),
            bytes_fetched: counters.bytes_fetched.load(Ordering::Relaxed),
            requests: counters.range_reads.load(Ordering::Relaxed),
            http_requests: remote.requests,
            cache_hits: counters.cache_hits.load(Ordering::Relaxed),
            cache_misses: counters.cache_misses.load(Ordering::Relaxed),
            chunks_fetched: counters.chunks_fetched.load(Ordering::Relaxed),
            read_errors: counters.read_errors.load(Ordering::Relaxed),
            prefetch_total_bytes: counters.prefetch_total_bytes.load(Ordering::Relaxed),
            prefetch_done_bytes: counters.prefetch_done_bytes.load(Ordering::Relaxed),
        };
        stats.total.add(&one);
        stats.layers.push(one);
    }
    stats
}

/// Writes `stats` to `path` through a temporary file and a rename, so readers never see a
/// partial file.
pub fn write_stats(path: &Path, stats: &MountStats) -> std::io::Result<()> {
    let json = serde_json::to_vec_pretty(stats).map_err(std::io::Error::other)?;
    let temp = path.with_extension("json.tmp");
    std::fs::write(&temp, json)?;
    std::fs::rename(&temp, path)
}

/// Reads a stats file.
pub fn read_stats(path: &Path) -> std::io::Result<MountStats> {
    let bytes = std::fs::read(path)?;
    serde_json::from_slice(&bytes).map_err(std::io::Error::other)
}
