//! [`Layer`]: an opened eStargz layer whose file contents are fetched on demand.

use std::sync::Arc;
use std::time::Duration;

use bytes::{Bytes, BytesMut};
use estargz::index::{Chunk, Landmark, LayerIndex, NodeId, NodeKind};
use estargz::{Compression, Digest};

use crate::cache::ChunkCache;
use crate::fetch::loader::{ChunkLoader, LoadOptions};
use crate::fetch::progress::BlobOrder;
use crate::fetch::{BackgroundState, LayerStats, LayerStatsSnapshot, PrefetchState, Prefetcher};
use crate::remote::BlobSource;

use super::config::LayerConfig;
use super::error::LayerError;
use super::info::LayerInfo;
use super::sequential::SequentialReads;
use super::toc::load_toc;

/// An opened layer: its inode table, and reads of file contents through the chunk cache.
///
/// Created by [`Layer::open`], which also starts the layer's prefetch and background fetch.
/// Dropping the last `Arc<Layer>` (or calling [`Layer::close`]) stops those tasks; the cached
/// chunks stay in the [`ChunkCache`] until evicted or removed with
/// [`ChunkCache::remove_layer`].
pub struct Layer {
    info: LayerInfo,
    toc_digest: Digest,
    loader: Arc<ChunkLoader>,
    prefetcher: Prefetcher,
    sequential: SequentialReads,
}

impl std::fmt::Debug for Layer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Layer")
            .field("digest", &self.info.digest)
            .field("source", &self.loader.source.id())
            .finish()
    }
}

impl Layer {
    /// Opens a layer: reads the footer and TOC (one range request for most layers, two when the
    /// TOC is larger than `config.toc_tail_bytes`), verifies the TOC against
    /// `info.toc_digest`, builds the index with overlayfs whiteouts and hidden landmarks, and
    /// starts prefetch and background fetch. Must be called inside a Tokio runtime.
    ///
    /// Fails with [`LayerError::MissingTocDigest`] before any I/O when there is no TOC digest
    /// and `config.allow_unverified` is off, and with [`LayerError::NotEstargz`] (carrying the
    /// reason each footer variant was rejected) when the blob is not eStargz. A blob without a
    /// footer whose `info` has a TOC digest fails with [`LayerError::DamagedBlob`] instead.
    pub async fn open(
        info: &LayerInfo,
        source: Arc<dyn BlobSource>,
        cache: Arc<ChunkCache>,
        config: &LayerConfig,
    ) -> Result<Arc<Layer>, LayerError> {
        config.validate()?;
        let started = std::time::Instant::now();
        let stats = LayerStats::default();
        let loaded = load_toc(info, source.as_ref(), config, &stats).await?;
        let index = Arc::new(loaded.index);
        let progress = BlobOrder::new(index.all_chunks());

        let prefetch_end = prefetch_end(&index, info, config);
        let content_bytes: u64 = index.all_chunks().iter().map(|c| c.size()).sum();
        let background = config.prefetch.background
            && (cache.has_disk() || cache.memory_budget() >= content_bytes);
        if config.prefetch.background && !background {
            tracing::info!(
                layer = %info.digest,
                content_bytes,
                "background fetch off: no disk cache and the memory cache cannot hold the layer"
            );
        }

        let loader = Arc::new(ChunkLoader {
            layer: info.digest,
            source,
            cache,
            index,
            compression: loaded.compression,
            config: config.fetch.clone(),
            stats,
            progress,
        });
        tracing::info!(
            layer = %info.digest,
            source = loader.source.id(),
            toc_json_bytes = loaded.json_len,
            nodes = loader.index.node_count(),
            chunks = loader.index.all_chunks().len(),
            index_heap_bytes = loader.index.heap_bytes(),
            prefetch_end,
            background,
            ms = started.elapsed().as_millis() as u64,
            "layer opened"
        );
        let stats = loader.index.stats();
        if stats.skipped_long_names + stats.skipped_below_non_dir + stats.dangling_hardlinks > 0 {
            tracing::warn!(
                layer = %info.digest,
                skipped_long_names = stats.skipped_long_names,
                skipped_below_non_dir = stats.skipped_below_non_dir,
                dangling_hardlinks = stats.dangling_hardlinks,
                "some TOC entries cannot exist in a file system and are not shown, as tar -x \
                 would fail on them"
            );
        }
        let prefetcher = Prefetcher::start(
            loader.clone(),
            prefetch_end,
            background,
            config.prefetch.clone(),
        );
        Ok(Arc::new(Layer {
            info: info.clone(),
            toc_digest: loaded.toc_digest,
            loader,
            prefetcher,
            sequential: SequentialReads::default(),
        }))
    }

    /// Digest of the layer blob.
    pub fn digest(&self) -> Digest {
        self.info.digest
    }

    /// Returns what the layer was opened with.
    pub fn info(&self) -> &LayerInfo {
        &self.info
    }

    /// Digest of the TOC JSON found in the blob (equal to `info().toc_digest` when one was given).
    pub fn toc_digest(&self) -> Digest {
        self.toc_digest
    }

    /// Compression of the blob's members.
    pub fn compression(&self) -> Compression {
        self.loader.compression
    }

    /// Returns the inode table.
    pub fn index(&self) -> &LayerIndex {
        &self.loader.index
    }

    /// Returns the chunk cache the layer shares with the other layers of its process.
    pub fn cache(&self) -> &Arc<ChunkCache> {
        &self.loader.cache
    }

    /// Returns the blob source, for liveness checks.
    pub fn source(&self) -> &Arc<dyn BlobSource> {
        &self.loader.source
    }

    /// Reads `[offset, min(offset + len, size))` of regular file `node`.
    ///
    /// Returns no bytes at or after the end of the file; empty files never touch the network.
    /// Each chunk overlapping the range comes from memory, from a fetch already in flight, from
    /// disk, or from a coalesced range request, and is verified against its SHA-256 before it is
    /// cached or returned. Demand reads pause background fetching while they run.
    pub async fn read(&self, node: NodeId, offset: u64, len: u32) -> Result<Bytes, LayerError> {
        let layer = self.info.digest;
        let index = &self.loader.index;
        let Some(file) = index.node(node) else {
            return Err(LayerError::NoSuchNode {
                layer,
                node: node.0,
            });
        };
        if file.kind != NodeKind::Reg {
            return Err(LayerError::NotARegularFile {
                layer,
                node: node.0,
            });
        }

        let stats = &self.loader.stats;
        LayerStats::add(&stats.reads, 1);
        let end = offset.saturating_add(u64::from(len)).min(file.size);
        if offset >= end {
            return Ok(Bytes::new());
        }

        let chunks = index.chunks_in(node, offset..end);
        let ahead = self.loader.readahead(chunks);
        let mut wanted = chunks.to_vec();
        wanted.extend(ahead);
        let options = LoadOptions {
            required: chunks.len(),
            ..LoadOptions::demand(&self.loader.config)
        };
        let parts = {
            let _priority = self.loader.cache.priority_gate().enter();
            self.loader
                .load(&wanted, options)
                .await
                .map_err(|source| LayerError::Fetch {
                    layer,
                    node: node.0,
                    offset,
                    len,
                    source,
                })?
        };
        if self.sequential.record(node, offset, end)
            && let Some(last) = chunks.last()
        {
            self.loader.load_following(index.chunks(node), last);
        }
        let bytes = assemble(layer, node, chunks, parts, offset, end)?;
        LayerStats::add(&stats.read_bytes, bytes.len() as u64);
        Ok(bytes)
    }

    /// Waits up to `timeout` for the prefetch started by `open` and returns its state
    /// ([`PrefetchState::Running`] on timeout).
    pub async fn wait_prefetch(&self, timeout: Duration) -> PrefetchState {
        self.prefetcher.wait(timeout).await
    }

    /// Returns the prefetch state.
    pub fn prefetch_state(&self) -> PrefetchState {
        self.prefetcher.state()
    }

    /// Waits up to `timeout` for background fetch to end and returns its state.
    pub async fn wait_background(&self, timeout: Duration) -> BackgroundState {
        self.prefetcher.wait_background(timeout).await
    }

    /// Stops prefetch and background fetch. Reads keep working.
    pub fn close(&self) {
        self.prefetcher.cancel();
    }

    /// Returns a copy of the layer's counters.
    pub fn stats(&self) -> LayerStatsSnapshot {
        self.loader.stats.snapshot(self.fetched_fraction())
    }

    /// Share of the compressed payload obtained since open, from the network or a cache.
    pub fn fetched_fraction(&self) -> f64 {
        self.loader.progress.fraction()
    }

    /// Heap bytes of the layer's metadata: the index and the blob-order table.
    pub fn heap_bytes(&self) -> usize {
        self.loader.index.heap_bytes() + self.loader.progress.heap_bytes()
    }
}

/// End of the prefetch range: the landmark's offset, nothing for `.no.prefetch.landmark`, else
/// the label or configured size, never past the payload.
fn prefetch_end(index: &LayerIndex, info: &LayerInfo, config: &LayerConfig) -> u64 {
    if !config.prefetch.enabled {
        return 0;
    }
    let end = match index.landmark() {
        Some(Landmark::Prefetch { offset }) => offset,
        Some(Landmark::NoPrefetch) => 0,
        None => info
            .prefetch_bytes
            .unwrap_or(config.prefetch.prefetch_default_bytes),
    };
    end.min(index.payload_end())
}

/// Cuts `[offset, end)` of the file out of its chunks' bytes.
fn assemble(
    layer: Digest,
    node: NodeId,
    chunks: &[Chunk],
    parts: Vec<Option<Bytes>>,
    offset: u64,
    end: u64,
) -> Result<Bytes, LayerError> {
    let mut pieces = Vec::with_capacity(chunks.len());
    for (chunk, part) in chunks.iter().zip(parts) {
        let part = part.unwrap_or_default();
        if part.len() as u64 != chunk.size() {
            return Err(LayerError::ChunkLength {
                layer,
                node: node.0,
                file_offset: chunk.file_offset(),
                expected: chunk.size(),
                found: part.len() as u64,
            });
        }
        let from = offset.max(chunk.file_offset()) - chunk.file_offset();
        let to = end.min(chunk.file_offset() + chunk.size()) - chunk.file_offset();
        pieces.push(part.slice(from as usize..to as usize));
    }
    if pieces.len() == 1 {
        return Ok(pieces.swap_remove(0));
    }
    let mut out = BytesMut::with_capacity((end - offset) as usize);
    for piece in pieces {
        out.extend_from_slice(&piece);
    }
    Ok(out.freeze())
}
