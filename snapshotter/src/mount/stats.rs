//! Counters of a mount, per layer and in total, written as JSON to the state directory.

use std::path::Path;
use std::sync::Arc;
use std::time::{SystemTime, UNIX_EPOCH};

use serde::{Deserialize, Serialize};

use crate::fetch::PrefetchState;
use crate::layer::Layer;

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
    /// Range requests sent to the blob source, footer, TOC and retries included.
    pub requests: u64,
    /// Range requests that failed.
    pub request_failures: u64,
    /// HTTP requests the registry client sent for this blob, token and redirect requests
    /// included (0 for local layouts).
    pub http_requests: u64,
    /// Chunk lookups served from memory, from disk, or by waiting for another reader's fetch.
    pub cache_hits: u64,
    /// Chunk lookups that had to fetch from the blob source.
    pub cache_misses: u64,
    /// Chunks fetched, decompressed and verified.
    pub chunks_fetched: u64,
    /// Fetched chunks that failed decompression or verification.
    pub verification_failures: u64,
    /// Compressed bytes fetched by the prioritized prefetch.
    pub prefetch_bytes: u64,
    /// Layers whose prioritized prefetch finished (1 or 0 for one layer).
    pub prefetch_done: u64,
    /// Prefetch state of the layer: `running`, `done`, `failed` or `cancelled` (empty for
    /// the total).
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub prefetch_state: String,
    /// Share of the compressed payload fetched or found in the cache, from 0 to 1000 (per
    /// mille, so the stats stay integers).
    pub fetched_per_mille: u64,
}

impl LayerStats {
    fn add(&mut self, other: &LayerStats) {
        self.blob_size += other.blob_size;
        self.bytes_fetched += other.bytes_fetched;
        self.requests += other.requests;
        self.request_failures += other.request_failures;
        self.http_requests += other.http_requests;
        self.cache_hits += other.cache_hits;
        self.cache_misses += other.cache_misses;
        self.chunks_fetched += other.chunks_fetched;
        self.verification_failures += other.verification_failures;
        self.prefetch_bytes += other.prefetch_bytes;
        self.prefetch_done += other.prefetch_done;
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
pub fn collect(layers: &[Arc<Layer>]) -> MountStats {
    let mut stats = MountStats {
        updated_unix_ms: SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| d.as_millis() as u64),
        ..MountStats::default()
    };
    for layer in layers {
        let counters = layer.stats();
        let hits = counters.memory_hits + counters.disk_hits + counters.waits;
        // Every lookup that missed memory was a wait, a disk hit, or a fetch.
        let misses = counters
            .memory_misses
            .saturating_sub(counters.waits + counters.disk_hits);
        let state = layer.prefetch_state();
        let blob_size = layer.source().size();
        let one = LayerStats {
            digest: layer.digest().to_string(),
            blob_size,
            bytes_fetched: counters.bytes_fetched,
            requests: counters.requests,
            request_failures: counters.request_failures,
            http_requests: layer.source().stats().snapshot().requests,
            cache_hits: hits,
            cache_misses: misses,
            chunks_fetched: counters.chunks_verified,
            verification_failures: counters.verification_failures,
            prefetch_bytes: counters.prefetch_bytes,
            prefetch_done: u64::from(!matches!(state, PrefetchState::Running)),
            prefetch_state: prefetch_state_name(state).to_owned(),
            fetched_per_mille: (counters.fetched_fraction.clamp(0.0, 1.0) * 1000.0).round() as u64,
        };
        stats.total.add(&one);
        stats.layers.push(one);
    }
    // The total weighs each layer by its blob size.
    let weighted: u128 = stats
        .layers
        .iter()
        .map(|l| u128::from(l.fetched_per_mille) * u128::from(l.blob_size))
        .sum();
    stats.total.fetched_per_mille = (weighted / u128::from(stats.total.blob_size.max(1))) as u64;
    stats
}

fn prefetch_state_name(state: PrefetchState) -> &'static str {
    match state {
        PrefetchState::Running => "running",
        PrefetchState::Done { .. } => "done",
        PrefetchState::Failed { .. } => "failed",
        PrefetchState::Cancelled => "cancelled",
    }
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
