//! [`ChunkCache`]: the memory and disk tiers behind one lookup, with single-flight fetching.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use bytes::Bytes;
use estargz::Digest;
use tokio::sync::watch;

use super::config::CacheConfig;
use super::disk::{DiskRead, DiskTier};
use super::error::CacheError;
use super::inflight::{FillGuard, InflightMap, Origin, SlotState, Waiter};
use super::key::ChunkKey;
use super::memory::MemoryTier;
use super::priority::PriorityGate;
use super::stats::{CacheStats, CacheStatsSnapshot, bump};
use super::writer::DiskWriter;

/// Verified, decompressed chunks of every layer of a process.
///
/// Created once (usually as `Arc<ChunkCache>`) and shared by all layers. Lookups check the
/// memory tier, then chunks being fetched by someone else; the caller that misses both gets a
/// [`FillGuard`] and is expected to try [`ChunkCache::read_disk`] and then the network. Bytes
/// given to the cache must already be verified against their chunk digest; the disk tier checks
/// them again when reading them back.
///
/// The cache also carries the [`PriorityGate`] that background fetches of all its layers yield
/// to, since those layers share the process's network link.
pub struct ChunkCache {
    memory: Option<MemoryTier>,
    disk: Option<DiskTier>,
    pub(crate) inflight: InflightMap,
    stats: Arc<CacheStats>,
    writes: Arc<WriteQueue>,
    write_queue_limit: u64,
    /// Present with the disk tier.
    writer: Option<DiskWriter>,
    gate: PriorityGate,
}

/// Disk writes handed to the writer thread and not finished yet.
struct WriteQueue {
    pending: watch::Sender<usize>,
    bytes: AtomicU64,
}

impl WriteQueue {
    fn finish(&self, size: u64) {
        self.bytes.fetch_sub(size, Ordering::Relaxed);
        self.pending.send_modify(|n| *n -= 1);
    }
}

/// The result of [`ChunkCache::lookup`].
#[derive(Debug)]
pub enum Lookup<'a> {
    /// The memory tier holds the chunk.
    Hit(Bytes),
    /// Another caller is fetching it; wait for them.
    Wait(Waiter),
    /// Nobody has it: the caller must fetch it and complete the guard.
    Fill(FillGuard<'a>),
}

impl ChunkCache {
    /// Creates the cache, opening the disk tier if `config.disk_dir` is set. The disk tier's
    /// accounting is rebuilt from the files already there (blocking file I/O).
    pub fn new(config: &CacheConfig) -> Result<Self, CacheError> {
        config.validate()?;
        let stats = Arc::new(CacheStats::default());
        let memory =
            (config.memory_bytes > 0).then(|| MemoryTier::new(config.memory_bytes, stats.clone()));
        let disk = match &config.disk_dir {
            Some(dir) => Some(DiskTier::open(
                dir,
                config.disk_bytes,
                config.disk_write_backoff,
                config.reverify_disk_reads,
                stats.clone(),
            )?),
            None => None,
        };
        let gate = PriorityGate::new();
        let (pending, _) = watch::channel(0);
        let writes = Arc::new(WriteQueue {
            pending,
            bytes: AtomicU64::new(0),
        });
        let writer = match (&disk, &config.disk_dir) {
            (Some(_), Some(dir)) => {
                let queued = writes.clone();
                let backlog = move || queued.bytes.load(Ordering::Relaxed);
                let limit = config.disk_write_queue_bytes / 4;
                let started = DiskWriter::start(gate.probe(), backlog, limit);
                Some(started.map_err(|source| CacheError::Io {
                    path: dir.clone(),
                    source,
                })?)
            }
            _ => None,
        };
        Ok(ChunkCache {
            memory,
            disk,
            inflight: InflightMap::default(),
            stats,
            writes,
            write_queue_limit: config.disk_write_queue_bytes,
            writer,
            gate,
        })
    }

    /// A cache with a memory tier of `memory_bytes` and no disk tier.
    pub fn in_memory(memory_bytes: u64) -> Self {
        let config = CacheConfig {
            memory_bytes,
            disk_dir: None,
            ..CacheConfig::default()
        };
        match Self::new(&config) {
            Ok(cache) => cache,
            Err(_) => unreachable!("a memory-only configuration is always valid"),
        }
    }

    /// Whether chunks can be kept on disk.
    pub fn has_disk(&self) -> bool {
        self.disk.is_some()
    }

    /// Budget of the memory tier in bytes (0 when it is off).
    pub fn memory_budget(&self) -> u64 {
        self.memory.as_ref().map_or(0, MemoryTier::capacity)
    }

    /// The gate that background fetches yield to.
    pub fn priority_gate(&self) -> &PriorityGate {
        &self.gate
    }

    /// Looks `key` up in memory and among chunks being fetched; see [`Lookup`].
    pub fn lookup(&self, key: &ChunkKey) -> Lookup<'_> {
        if let Some(bytes) = self.memory_get(key) {
            bump(&self.stats.memory_hits);
            return Lookup::Hit(bytes);
        }
        let mut slots = self.inflight.lock();
        if let Some(rx) = slots.get(key) {
            bump(&self.stats.memory_misses);
            bump(&self.stats.waits);
            return Lookup::Wait(Waiter { rx: rx.clone() });
        }
        // A fetch may have completed between the memory check and taking the lock; it stored
        // its bytes before removing its slot, so this second check sees them.
        if let Some(bytes) = self.memory_get(key) {
            bump(&self.stats.memory_hits);
            return Lookup::Hit(bytes);
        }
        bump(&self.stats.memory_misses);
        let (sender, rx) = watch::channel(SlotState::Pending);
        slots.insert(*key, rx);
        Lookup::Fill(FillGuard {
            cache: self,
            key: *key,
            sender: Some(sender),
        })
    }

    fn memory_get(&self, key: &ChunkKey) -> Option<Bytes> {
        self.memory.as_ref().and_then(|m| m.get(key))
    }

    /// Whether either tier holds `key`, without reading any file or counting a lookup.
    /// Whether the memory tier holds `key` or a fetch of it is in flight: reading it now needs
    /// neither a disk read nor a request.
    pub fn in_memory_or_flight(&self, key: &ChunkKey) -> bool {
        self.memory.as_ref().is_some_and(|m| m.contains(key))
            || self.inflight.lock().contains_key(key)
    }

    pub fn contains(&self, key: &ChunkKey) -> bool {
        self.memory.as_ref().is_some_and(|m| m.contains(key))
            || self.disk.as_ref().is_some_and(|d| d.contains(key))
    }

    /// Reads `key` from the disk tier and verifies it against `digest`; `None` when the tier is
    /// off, has no file, or the file failed verification (it is then deleted).
    pub async fn read_disk(&self, key: &ChunkKey, digest: Digest) -> Option<Bytes> {
        let disk = self.disk.as_ref()?;
        match disk.read(*key, digest).await {
            DiskRead::Hit(bytes) => Some(bytes),
            DiskRead::Miss => None,
        }
    }

    /// Puts verified bytes into the memory tier and, for bytes from the network, queues a disk
    /// write. Called by [`FillGuard::complete`].
    pub(crate) fn store(&self, key: ChunkKey, bytes: Bytes, origin: Origin) {
        if let Some(memory) = &self.memory {
            memory.insert(key, bytes.clone());
        }
        if origin == Origin::Network {
            self.queue_write(key, bytes);
        }
    }

    fn queue_write(&self, key: ChunkKey, bytes: Bytes) {
        let Some(disk) = &self.disk else { return };
        let size = bytes.len() as u64;
        let queued = self.writes.bytes.fetch_add(size, Ordering::Relaxed);
        if queued + size > self.write_queue_limit {
            self.writes.bytes.fetch_sub(size, Ordering::Relaxed);
            bump(&self.stats.disk_writes_skipped);
            return;
        }
        self.writes.pending.send_modify(|n| *n += 1);
        let epoch = disk.layer_epoch(&key.layer);
        let disk = disk.clone();
        let writes = self.writes.clone();
        let write = move || {
            disk.write_queued(key, &bytes, epoch);
            writes.finish(size);
        };
        let rejected = match &self.writer {
            Some(writer) => writer.submit(Box::new(write)).err(),
            None => Some(Box::new(write) as _),
        };
        if let Some(write) = rejected {
            tracing::warn!("disk writer thread is gone; writing on the caller's thread");
            write();
        }
    }

    /// Waits until every queued disk write has finished (or failed).
    pub async fn flush(&self) {
        let mut rx = self.writes.pending.subscribe();
        let _ = rx.wait_for(|n| *n == 0).await;
    }

    /// Drops every chunk of `layer` from both tiers and deletes its disk directory. Disk writes
    /// of that layer still running are discarded when they finish.
    pub async fn remove_layer(&self, layer: &Digest) -> Result<(), CacheError> {
        if let Some(memory) = &self.memory {
            memory.remove_layer(layer);
        }
        let Some(disk) = self.disk.clone() else {
            return Ok(());
        };
        let layer = *layer;
        tokio::task::spawn_blocking(move || disk.remove_layer_blocking(&layer))
            .await
            .map_err(|_| CacheError::Task {
                what: "removing a layer's chunk files",
            })?
    }

    /// The counters, with the current sizes of both tiers.
    pub fn stats(&self) -> CacheStatsSnapshot {
        let memory = self.memory.as_ref().map_or(0, MemoryTier::weight);
        let disk = self.disk.as_ref().map_or(0, DiskTier::used);
        self.stats.snapshot(memory, disk)
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
            size: 3,
        }
    }

    #[tokio::test]
    async fn second_lookup_waits_for_first_fill() {
        let cache = ChunkCache::in_memory(1 << 20);
        let Lookup::Fill(guard) = cache.lookup(&key(1)) else {
            panic!("expected a fill guard")
        };
        let Lookup::Wait(waiter) = cache.lookup(&key(1)) else {
            panic!("expected a waiter")
        };
        guard.complete(Bytes::from_static(b"abc"), Origin::Network);
        assert!(matches!(waiter.wait().await, WaitOutcome::Ready(b) if b == "abc"));
        assert!(matches!(cache.lookup(&key(1)), Lookup::Hit(_)));
    }

    #[tokio::test]
    async fn failure_reaches_waiters_and_is_not_remembered() {
        let cache = ChunkCache::in_memory(1 << 20);
        let Lookup::Fill(guard) = cache.lookup(&key(1)) else {
            panic!("expected a fill guard")
        };
        let Lookup::Wait(waiter) = cache.lookup(&key(1)) else {
            panic!("expected a waiter")
        };
        guard.fail(Arc::new(std::io::Error::other("boom")));
        assert!(matches!(waiter.wait().await, WaitOutcome::Failed(_)));
        assert!(matches!(cache.lookup(&key(1)), Lookup::Fill(_)));
    }

    #[tokio::test]
    async fn dropped_guard_abandons_waiters() {
        let cache = ChunkCache::in_memory(1 << 20);
        let Lookup::Fill(guard) = cache.lookup(&key(1)) else {
            panic!("expected a fill guard")
        };
        let Lookup::Wait(waiter) = cache.lookup(&key(1)) else {
            panic!("expected a waiter")
        };
        drop(guard);
        assert!(matches!(waiter.wait().await, WaitOutcome::Abandoned));
        assert!(matches!(cache.lookup(&key(1)), Lookup::Fill(_)));
    }

    #[tokio::test]
    async fn without_memory_tier_waiters_still_get_bytes() {
        let cache = ChunkCache::in_memory(0);
        let Lookup::Fill(guard) = cache.lookup(&key(1)) else {
            panic!("expected a fill guard")
        };
        let Lookup::Wait(waiter) = cache.lookup(&key(1)) else {
            panic!("expected a waiter")
        };
        guard.complete(Bytes::from_static(b"abc"), Origin::Network);
        assert!(matches!(waiter.wait().await, WaitOutcome::Ready(_)));
    }

    use super::super::inflight::WaitOutcome;
}
