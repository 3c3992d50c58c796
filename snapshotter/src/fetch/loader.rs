//! [`ChunkLoader`]: chunks of one layer from the memory tier, a waiting fetch, the disk tier or
//! the network, in that order.

use std::ops::Range;
use std::sync::Arc;

use bytes::Bytes;
use estargz::index::{Chunk, LayerIndex};
use estargz::{Compression, Digest};
use futures_util::StreamExt;
use futures_util::future::join_all;

use crate::cache::{ChunkCache, ChunkKey, FillError, FillGuard, Lookup, Origin, WaitOutcome};
use crate::remote::BlobSource;

use super::config::FetchConfig;
use super::fetcher::RangeFetcher;
use estargz::range_plan::{MergeRule, plan_requests};
use super::progress::BlobOrder;
use super::stats::{LayerStats, Purpose};

/// Everything needed to obtain the chunks of one layer. Shared by the layer's readers and its
/// prefetch and background tasks.
pub(crate) struct ChunkLoader {
    pub(crate) layer: Digest,
    pub(crate) source: Arc<dyn BlobSource>,
    pub(crate) cache: Arc<ChunkCache>,
    pub(crate) index: Arc<LayerIndex>,
    pub(crate) compression: Compression,
    pub(crate) config: FetchConfig,
    pub(crate) stats: LayerStats,
    pub(crate) progress: BlobOrder,
}

/// Options of one [`ChunkLoader::load`] call.
#[derive(Debug, Clone, Copy)]
pub(crate) struct LoadOptions {
    /// Whose bytes these are, for the counters.
    pub(crate) purpose: Purpose,
    /// Wait for chunks another caller is fetching; otherwise skip them.
    pub(crate) wait_for_others: bool,
    /// Return the bytes; otherwise only fill the cache.
    pub(crate) collect: bool,
    /// Merge rule for the missing chunks.
    pub(crate) rule: MergeRule,
    /// Range requests that may run at once.
    pub(crate) parallel: usize,
    /// Chunks at positions from this one on are read-ahead: fetched if nobody else is, never
    /// waited for, and their failures do not fail the load.
    pub(crate) required: usize,
}

impl LoadOptions {
    /// Options of a demand read under `config`.
    pub(crate) fn demand(config: &FetchConfig) -> Self {
        LoadOptions {
            purpose: Purpose::Demand,
            wait_for_others: true,
            collect: true,
            rule: config.merge_rule(),
            parallel: config.parallel_requests,
            required: usize::MAX,
        }
    }
}

impl ChunkLoader {
    pub(crate) fn key(&self, chunk: &Chunk) -> ChunkKey {
        ChunkKey::new(self.layer, chunk)
    }

    /// Returns whether a cache tier contains `chunk`, without file I/O, and if so marks it obtained.
    /// Read-ahead for a demand read of `chunks`: the chunks stored after the last one, whose
    /// compressed spans end within `readahead_bytes` of it and that are neither obtained nor
    /// cached. Empty when every chunk of the read is obtained or cached, since then no request
    /// is made.
    pub(crate) fn readahead(&self, chunks: &[Chunk]) -> Vec<Chunk> {
        let all = self.index.all_chunks();
        let obtained = |c: &Chunk| self.progress.is_chunk_obtained(all, c) || self.cached(c);
        if self.config.readahead_bytes == 0 || chunks.iter().all(obtained) {
            return Vec::new();
        }
        let Some(last) = chunks.iter().max_by_key(|c| c.comp_offset()) else {
            return Vec::new();
        };
        let limit = last
            .comp_end()
            .saturating_add(self.config.readahead_bytes)
            .min(self.index.payload_end());
        // Chunks a cache tier holds are skipped: they cost no request, and reading them now would
        // only repeat a disk read.
        self.progress
            .following(all, last.comp_offset(), limit)
            .filter(|c| !self.cached(c))
            .copied()
            .collect()
    }

    /// Loads the chunks of `file` that follow `last` (up to `sequential_chunks` of them) into
    /// memory on a background task, unless they are there already or being fetched. Failures
    /// are ignored: the chunks are loaded again when they are read.
    pub(crate) fn load_following(self: &Arc<Self>, file: &[Chunk], last: &Chunk) {
        let count = self.config.sequential_chunks;
        if count == 0 {
            return;
        }
        let start = file.partition_point(|c| c.file_offset() <= last.file_offset());
        let next: Vec<Chunk> = file[start..]
            .iter()
            .take(count)
            .filter(|c| !self.cache.in_memory_or_flight(&self.key(c)))
            .copied()
            .collect();
        if next.is_empty() {
            return;
        }
        let loader = Arc::clone(self);
        tokio::spawn(async move {
            let options = LoadOptions {
                purpose: Purpose::Demand,
                wait_for_others: false,
                collect: false,
                rule: loader.config.merge_rule(),
                parallel: 2,
                required: 0,
            };
            if let Err(error) = loader.load(&next, options).await {
                tracing::debug!(layer = %loader.layer, %error, "sequential read-ahead failed");
            }
        });
    }

    pub(crate) fn cached(&self, chunk: &Chunk) -> bool {
        let cached = self.cache.contains(&self.key(chunk));
        if cached {
            self.progress.mark(self.index.all_chunks(), chunk);
        }
        cached
    }

    /// Obtains every chunk of `chunks` and returns their verified bytes in order (all `None`
    /// unless `options.collect`; skipped chunks stay `None` too).
    ///
    /// Assumes nothing about the order of `chunks`. Chunks this call must fetch are completed
    /// (or failed) before it waits for chunks fetched by others, so two loads that need each
    /// other's chunks cannot deadlock. Returns the first failure after every chunk this call
    /// fetched has been published.
    pub(crate) async fn load(
        &self,
        chunks: &[Chunk],
        options: LoadOptions,
    ) -> Result<Vec<Option<Bytes>>, FillError> {
        let mut batch = Batch {
            out: vec![None; chunks.len()],
            settled: vec![false; chunks.len()],
            collect: options.collect,
            required: options.required,
        };
        loop {
            let mut leaders = Vec::new();
            let mut waiters = Vec::new();
            for (i, chunk) in chunks.iter().enumerate() {
                if batch.settled[i] {
                    continue;
                }
                match self.cache.lookup(&self.key(chunk)) {
                    Lookup::Hit(bytes) => {
                        LayerStats::add(&self.stats.memory_hits, 1);
                        self.settle(&mut batch, chunk, i, bytes);
                    }
                    Lookup::Wait(waiter) => {
                        LayerStats::add(&self.stats.memory_misses, 1);
                        if options.wait_for_others && i < options.required {
                            LayerStats::add(&self.stats.waits, 1);
                            waiters.push((i, waiter));
                        } else {
                            batch.settled[i] = true;
                        }
                    }
                    Lookup::Fill(guard) => {
                        LayerStats::add(&self.stats.memory_misses, 1);
                        leaders.push((i, guard));
                    }
                }
            }
            if !leaders.is_empty() {
                self.fill(chunks, leaders, &mut batch, options).await?;
            }
            let mut abandoned = false;
            for (i, waiter) in waiters {
                match waiter.wait().await {
                    WaitOutcome::Ready(bytes) => self.settle(&mut batch, &chunks[i], i, bytes),
                    WaitOutcome::Failed(error) => return Err(error),
                    WaitOutcome::Abandoned => abandoned = true,
                }
            }
            if !abandoned {
                return Ok(batch.out);
            }
        }
    }

    fn settle(&self, batch: &mut Batch, chunk: &Chunk, i: usize, bytes: Bytes) {
        self.progress.mark(self.index.all_chunks(), chunk);
        if batch.collect && i < batch.required {
            batch.out[i] = Some(bytes);
        }
        batch.settled[i] = true;
    }

    /// Obtains the chunks this call holds guards for: disk tier first, then range requests.
    async fn fill<'c>(
        &'c self,
        chunks: &[Chunk],
        leaders: Vec<(usize, FillGuard<'c>)>,
        batch: &mut Batch,
        options: LoadOptions,
    ) -> Result<(), FillError> {
        let remaining = self.fill_from_disk(chunks, leaders, batch).await;
        if remaining.is_empty() {
            return Ok(());
        }

        let positions: Vec<usize> = remaining.iter().map(|(i, _)| *i).collect();
        let mut guards: Vec<Option<FillGuard<'c>>> =
            remaining.into_iter().map(|(_, g)| Some(g)).collect();
        let spans: Vec<Range<u64>> = positions.iter().map(|&i| chunks[i].comp_range()).collect();
        let fetcher = RangeFetcher {
            source: self.source.as_ref(),
            layer: self.layer,
            compression: self.compression,
            config: &self.config,
            stats: &self.stats,
        };
        let fetcher = &fetcher;
        let requests = plan_requests(&spans, options.rule)
            .into_iter()
            .map(|request| {
                let members: Vec<Chunk> = request
                    .members
                    .iter()
                    .map(|&m| chunks[positions[m]])
                    .collect();
                async move {
                    (
                        request.members,
                        fetcher.fetch(&members, options.purpose).await,
                    )
                }
            });
        let mut requests =
            futures_util::stream::iter(requests).buffer_unordered(options.parallel.max(1));

        let mut first_error = None;
        while let Some((members, results)) = requests.next().await {
            for (m, result) in members.into_iter().zip(results) {
                let Some(guard) = guards[m].take() else {
                    continue;
                };
                match result {
                    Ok(bytes) => {
                        guard.complete(bytes.clone(), Origin::Network);
                        self.settle(batch, &chunks[positions[m]], positions[m], bytes);
                    }
                    Err(error) => {
                        let error: FillError = error;
                        guard.fail(error.clone());
                        if positions[m] < options.required {
                            first_error.get_or_insert(error);
                        } else {
                            // Read-ahead is a guess; the chunk is fetched again when it is read.
                            batch.settled[positions[m]] = true;
                            tracing::debug!(layer = %self.layer, %error, "read-ahead chunk failed");
                        }
                    }
                }
            }
        }
        first_error.map_or(Ok(()), Err)
    }

    /// Completes the guards whose chunk the disk tier holds; returns the others.
    async fn fill_from_disk<'c>(
        &self,
        chunks: &[Chunk],
        leaders: Vec<(usize, FillGuard<'c>)>,
        batch: &mut Batch,
    ) -> Vec<(usize, FillGuard<'c>)> {
        if !self.cache.has_disk() {
            return leaders;
        }
        let reads = leaders.iter().map(|(i, guard)| async move {
            match chunks[*i].digest() {
                Some(digest) => self.cache.read_disk(guard.key(), digest).await,
                None => None,
            }
        });
        let found = join_all(reads).await;
        let mut remaining = Vec::new();
        for ((i, guard), found) in leaders.into_iter().zip(found) {
            match found {
                Some(bytes) => {
                    LayerStats::add(&self.stats.disk_hits, 1);
                    guard.complete(bytes.clone(), Origin::Disk);
                    self.settle(batch, &chunks[i], i, bytes);
                }
                None => {
                    LayerStats::add(&self.stats.disk_misses, 1);
                    remaining.push((i, guard));
                }
            }
        }
        remaining
    }
}

struct Batch {
    out: Vec<Option<Bytes>>,
    settled: Vec<bool>,
    collect: bool,
    required: usize,
}
