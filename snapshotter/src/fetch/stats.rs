//! Counters of one layer's read path.

use std::sync::atomic::{AtomicU64, Ordering};

/// Why chunks are being loaded; fetched bytes are counted per purpose.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Purpose {
    /// A read by a user of the mount.
    Demand,
    /// The prioritized range fetched at open.
    Prefetch,
    /// Everything else, fetched at low priority.
    Background,
}

/// Monotonic counters of one layer. Each is exact; a snapshot taken while reads run may mix
/// values from slightly different moments.
#[derive(Debug, Default)]
pub struct LayerStats {
    pub(crate) reads: AtomicU64,
    pub(crate) read_bytes: AtomicU64,
    pub(crate) requests: AtomicU64,
    pub(crate) request_failures: AtomicU64,
    pub(crate) retries: AtomicU64,
    pub(crate) bytes_fetched: AtomicU64,
    pub(crate) demand_bytes: AtomicU64,
    pub(crate) prefetch_bytes: AtomicU64,
    pub(crate) background_bytes: AtomicU64,
    pub(crate) background_interruptions: AtomicU64,
    pub(crate) memory_hits: AtomicU64,
    pub(crate) memory_misses: AtomicU64,
    pub(crate) disk_hits: AtomicU64,
    pub(crate) disk_misses: AtomicU64,
    pub(crate) waits: AtomicU64,
    pub(crate) chunks_verified: AtomicU64,
    pub(crate) verification_failures: AtomicU64,
}

/// A copy of a layer's counters at one moment.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct LayerStatsSnapshot {
    /// Calls of `Layer::read`.
    pub reads: u64,
    /// File bytes returned by those calls.
    pub read_bytes: u64,
    /// Range requests sent to the blob source (footer and TOC included), retries included.
    pub requests: u64,
    /// Range requests that failed.
    pub request_failures: u64,
    /// Range requests repeated after a failure or a chunk that failed verification.
    pub retries: u64,
    /// Compressed bytes received from the blob source.
    pub bytes_fetched: u64,
    /// Part of `bytes_fetched` requested by demand reads (and the open).
    pub demand_bytes: u64,
    /// Part of `bytes_fetched` requested by prefetch.
    pub prefetch_bytes: u64,
    /// Part of `bytes_fetched` requested by background fetch.
    pub background_bytes: u64,
    /// Background requests abandoned because a demand read started.
    pub background_interruptions: u64,
    /// Chunk lookups answered from memory.
    pub memory_hits: u64,
    /// Chunk lookups not answered from memory.
    pub memory_misses: u64,
    /// Chunks read from disk after verification.
    pub disk_hits: u64,
    /// Chunks not found (or not valid) on disk, so fetched from the network.
    pub disk_misses: u64,
    /// Chunk lookups that waited for another reader's fetch.
    pub waits: u64,
    /// Chunks fetched, decompressed and verified.
    pub chunks_verified: u64,
    /// Fetched chunks that failed decompression or verification.
    pub verification_failures: u64,
    /// Share of the layer's compressed payload obtained so far (from the network or a cache),
    /// from 0.0 to 1.0.
    pub fetched_fraction: f64,
}

impl LayerStats {
    pub(crate) fn add(counter: &AtomicU64, value: u64) {
        counter.fetch_add(value, Ordering::Relaxed);
    }

    pub(crate) fn add_fetched(&self, purpose: Purpose, bytes: u64) {
        Self::add(&self.bytes_fetched, bytes);
        let by_purpose = match purpose {
            Purpose::Demand => &self.demand_bytes,
            Purpose::Prefetch => &self.prefetch_bytes,
            Purpose::Background => &self.background_bytes,
        };
        Self::add(by_purpose, bytes);
    }

    /// Copies the counters; `fetched_fraction` comes from the layer.
    pub(crate) fn snapshot(&self, fetched_fraction: f64) -> LayerStatsSnapshot {
        let load = |c: &AtomicU64| c.load(Ordering::Relaxed);
        LayerStatsSnapshot {
            reads: load(&self.reads),
            read_bytes: load(&self.read_bytes),
            requests: load(&self.requests),
            request_failures: load(&self.request_failures),
            retries: load(&self.retries),
            bytes_fetched: load(&self.bytes_fetched),
            demand_bytes: load(&self.demand_bytes),
            prefetch_bytes: load(&self.prefetch_bytes),
            background_bytes: load(&self.background_bytes),
            background_interruptions: load(&self.background_interruptions),
            memory_hits: load(&self.memory_hits),
            memory_misses: load(&self.memory_misses),
            disk_hits: load(&self.disk_hits),
            disk_misses: load(&self.disk_misses),
            waits: load(&self.waits),
            chunks_verified: load(&self.chunks_verified),
            verification_failures: load(&self.verification_failures),
            fetched_fraction,
        }
    }
}
