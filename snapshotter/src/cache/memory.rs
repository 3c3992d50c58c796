//! The memory tier: decompressed chunks in a byte-budgeted S3-FIFO cache (quick_cache).

use std::sync::Arc;

use bytes::Bytes;
use estargz::Digest;
use quick_cache::sync::Cache;
use quick_cache::{DefaultHashBuilder, Lifecycle, OptionsBuilder, Weighter};

use super::key::ChunkKey;
use super::stats::{CacheStats, bump};

/// Smallest budget of one shard. quick_cache refuses items heavier than about 97% of a shard's
/// budget, so shards must stay several times larger than the largest chunk (4 MiB by default).
const MIN_SHARD_BYTES: u64 = 32 << 20;
/// Upper bound of the shard count; more shards only help with many cores.
const MAX_SHARDS: u64 = 16;
/// Average chunk size assumed when sizing quick_cache's tables.
const ASSUMED_CHUNK_BYTES: u64 = 256 << 10;

#[derive(Debug, Clone, Copy)]
struct ByteWeighter;

impl Weighter<ChunkKey, Bytes> for ByteWeighter {
    fn weight(&self, _key: &ChunkKey, value: &Bytes) -> u64 {
        // Zero-weight items are never evicted; chunks are never empty, but stay safe.
        (value.len() as u64).max(1)
    }
}

/// Counts evictions; quick_cache calls it for entries it drops and for entries too heavy to admit.
#[derive(Debug, Clone)]
struct CountEvictions(Arc<CacheStats>);

impl Lifecycle<ChunkKey, Bytes> for CountEvictions {
    type RequestState = ();

    fn on_evict(&self, _state: &mut (), _key: ChunkKey, _value: Bytes) {
        bump(&self.0.memory_evictions);
    }
}

/// The memory tier. Lookups and inserts take a shard lock for a few microseconds, never across
/// I/O.
pub(crate) struct MemoryTier {
    cache: Cache<ChunkKey, Bytes, ByteWeighter, DefaultHashBuilder, CountEvictions>,
}

impl MemoryTier {
    /// A tier holding at most `budget` bytes; `budget` must be above 0.
    pub(crate) fn new(budget: u64, stats: Arc<CacheStats>) -> Self {
        let mut shards = 1;
        while shards * 2 <= MAX_SHARDS && budget / (shards * 2) >= MIN_SHARD_BYTES {
            shards *= 2;
        }
        let items = (budget / ASSUMED_CHUNK_BYTES).max(64) as usize;
        let options = OptionsBuilder::new()
            .estimated_items_capacity(items)
            .weight_capacity(budget)
            .shards(shards as usize)
            .build()
            .unwrap_or_else(|_| unreachable!("capacities are set"));
        MemoryTier {
            cache: Cache::with_options(
                options,
                ByteWeighter,
                DefaultHashBuilder::default(),
                CountEvictions(stats),
            ),
        }
    }

    pub(crate) fn get(&self, key: &ChunkKey) -> Option<Bytes> {
        self.cache.get(key)
    }

    pub(crate) fn contains(&self, key: &ChunkKey) -> bool {
        self.cache.contains_key(key)
    }

    pub(crate) fn insert(&self, key: ChunkKey, value: Bytes) {
        self.cache.insert(key, value);
    }

    pub(crate) fn remove_layer(&self, layer: &Digest) {
        self.cache.retain(|key, _| key.layer != *layer);
    }

    pub(crate) fn capacity(&self) -> u64 {
        self.cache.capacity()
    }

    pub(crate) fn weight(&self) -> u64 {
        self.cache.weight()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key(offset: u64) -> ChunkKey {
        ChunkKey {
            layer: Digest::of(b"l"),
            comp_offset: offset,
            inner_offset: 0,
            size: 1 << 20,
        }
    }

    #[test]
    fn budget_is_respected_and_evictions_counted() {
        let stats = Arc::new(CacheStats::default());
        let tier = MemoryTier::new(8 << 20, stats.clone());
        for i in 0..20 {
            tier.insert(key(i), Bytes::from(vec![0u8; 1 << 20]));
        }
        assert!(tier.weight() <= 8 << 20, "weight {}", tier.weight());
        assert!(
            stats
                .memory_evictions
                .load(std::sync::atomic::Ordering::Relaxed)
                >= 12
        );
    }

    #[test]
    fn four_mib_chunk_fits_a_small_budget() {
        let tier = MemoryTier::new(8 << 20, Arc::new(CacheStats::default()));
        tier.insert(key(0), Bytes::from(vec![1u8; 4 << 20]));
        assert!(tier.get(&key(0)).is_some());
    }

    #[test]
    fn remove_layer_drops_only_that_layer() {
        let tier = MemoryTier::new(64 << 20, Arc::new(CacheStats::default()));
        let other = ChunkKey {
            layer: Digest::of(b"other"),
            ..key(1)
        };
        tier.insert(key(1), Bytes::from_static(b"a"));
        tier.insert(other, Bytes::from_static(b"b"));
        tier.remove_layer(&key(1).layer);
        assert!(tier.get(&key(1)).is_none());
        assert!(tier.get(&other).is_some());
    }
}
