//! Counters of the chunk cache, shared by all layers.

use std::sync::atomic::{AtomicU64, Ordering};

/// Monotonic counters of a [`ChunkCache`](super::ChunkCache).
///
/// Each counter is exact; a [`CacheStatsSnapshot`] taken while the cache works may mix values
/// from slightly different moments.
#[derive(Debug, Default)]
pub(crate) struct CacheStats {
    pub(crate) memory_hits: AtomicU64,
    pub(crate) memory_misses: AtomicU64,
    pub(crate) memory_evictions: AtomicU64,
    pub(crate) disk_hits: AtomicU64,
    pub(crate) disk_misses: AtomicU64,
    pub(crate) disk_evictions: AtomicU64,
    pub(crate) disk_corrupt: AtomicU64,
    pub(crate) disk_verified: AtomicU64,
    pub(crate) disk_writes: AtomicU64,
    pub(crate) disk_bytes_written: AtomicU64,
    pub(crate) disk_write_failures: AtomicU64,
    pub(crate) disk_writes_skipped: AtomicU64,
    pub(crate) waits: AtomicU64,
}

pub(crate) fn bump(counter: &AtomicU64) {
    counter.fetch_add(1, Ordering::Relaxed);
}

/// A copy of the cache counters at one moment.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct CacheStatsSnapshot {
    /// Lookups answered by the memory tier.
    pub memory_hits: u64,
    /// Lookups the memory tier could not answer.
    pub memory_misses: u64,
    /// Entries dropped from the memory tier to stay within budget (or too large to admit).
    pub memory_evictions: u64,
    /// Decompressed bytes held in the memory tier.
    pub memory_bytes: u64,
    /// Reads served by the disk tier.
    pub disk_hits: u64,
    /// Disk reads that found nothing usable.
    pub disk_misses: u64,
    /// Files deleted from the disk tier to stay within budget or to make room on a full disk.
    pub disk_evictions: u64,
    /// Disk files that failed verification (wrong length or digest) and were deleted.
    pub disk_corrupt: u64,
    /// Disk reads whose SHA-256 was checked and matched: the first read of a file this process
    /// did not write, or every read with `reverify_disk_reads`.
    pub disk_verified: u64,
    /// Chunks written to the disk tier.
    pub disk_writes: u64,
    /// Bytes written to the disk tier.
    pub disk_bytes_written: u64,
    /// Disk writes that failed (a full disk, a quota, an I/O error).
    pub disk_write_failures: u64,
    /// Disk writes not attempted: writes paused after a failure, queue full, chunk above budget.
    pub disk_writes_skipped: u64,
    /// Bytes held by the disk tier, including writes in progress.
    pub disk_bytes: u64,
    /// Lookups that waited for another caller's fetch of the same chunk.
    pub waits: u64,
}

impl CacheStats {
    pub(crate) fn snapshot(&self, memory_bytes: u64, disk_bytes: u64) -> CacheStatsSnapshot {
        let load = |c: &AtomicU64| c.load(Ordering::Relaxed);
        CacheStatsSnapshot {
            memory_hits: load(&self.memory_hits),
            memory_misses: load(&self.memory_misses),
            memory_evictions: load(&self.memory_evictions),
            memory_bytes,
            disk_hits: load(&self.disk_hits),
            disk_misses: load(&self.disk_misses),
            disk_evictions: load(&self.disk_evictions),
            disk_corrupt: load(&self.disk_corrupt),
            disk_verified: load(&self.disk_verified),
            disk_writes: load(&self.disk_writes),
            disk_bytes_written: load(&self.disk_bytes_written),
            disk_write_failures: load(&self.disk_write_failures),
            disk_writes_skipped: load(&self.disk_writes_skipped),
            disk_bytes,
            waits: load(&self.waits),
        }
    }
}
