//! A lazily read layer over a [`BlobSource`]: TOC at open, verified chunks on demand, a
//! bounded memory cache, a content-addressed disk cache and the prioritized prefetch.
//!
//! TODO: replace with the shared read path (`layer::Layer` with its chunk cache and fetcher)
//! once it lands in this crate. The mount code only needs `FileSource`, `wait_prefetch` and
//! the counters in [`LayerCounters`].

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use bytes::{Bytes, BytesMut};
use estargz::blob::{compression_of, decode_chunk, decode_toc, verify_toc};
use estargz::digest::Digest;
use estargz::footer::{FooterKind, MAX_FOOTER_SIZE, parse_footer};
use estargz::index::{Chunk, Landmark, LayerIndex, NodeId};
use estargz::{Compression, Limits};
use futures_util::future::{BoxFuture, try_join_all};
use tokio::sync::watch;

use crate::fs::{FileSource, FsReadError, overlay_index_options};
use crate::remote::BlobSource;

/// Errors of opening a layer.
#[derive(Debug, thiserror::Error)]
pub enum LayerOpenError {
    /// The blob has no eStargz footer.
    #[error("layer {digest} is not an eStargz blob; convert the image with `lazypull convert` first")]
    NotEstargz {
        /// Layer blob digest.
        digest: Digest,
        /// The footer parser's reasons.
        #[source]
        source: Box<estargz::FooterError>,
    },
    /// The layer descriptor has no TOC digest annotation to verify the TOC against.
    #[error(
        "layer {digest} has no {annotation} annotation, so its TOC cannot be verified; convert the image with `lazypull convert`"
    )]
    MissingTocDigest {
        /// Layer blob digest.
        digest: Digest,
        /// The annotation key.
        annotation: &'static str,
    },
    /// The TOC digest annotation is not a valid digest.
    #[error("layer {digest} has an invalid TOC digest annotation {value:?}")]
    InvalidTocDigest {
        /// Layer blob digest.
        digest: Digest,
        /// The annotation value.
        value: String,
    },
    /// The footer or TOC could not be fetched.
    #[error("failed to fetch the TOC of layer {digest}")]
    Fetch {
        /// Layer blob digest.
        digest: Digest,
        /// The remote failure.
        #[source]
        source: Box<crate::remote::RemoteError>,
    },
    /// The TOC is invalid or does not match its digest.
    #[error("invalid TOC in layer {digest}")]
    Toc {
        /// Layer blob digest.
        digest: Digest,
        /// The parse or verification failure.
        #[source]
        source: Box<estargz::TocError>,
    },
}

/// Counters of one layer. All are monotonic except the prefetch figures, which are set once.
#[derive(Debug, Default)]
pub struct LayerCounters {
    /// Range reads sent to the blob source (footer, TOC, prefetch and chunks).
    pub range_reads: AtomicU64,
    /// Compressed bytes those reads returned.
    pub bytes_fetched: AtomicU64,
    /// Chunk reads served from memory or disk.
    pub cache_hits: AtomicU64,
    /// Chunk reads that had to fetch.
    pub cache_misses: AtomicU64,
    /// Chunks fetched and verified (by reads and prefetch).
    pub chunks_fetched: AtomicU64,
    /// Reads that failed.
    pub read_errors: AtomicU64,
    /// Compressed bytes in the prioritized range.
    pub prefetch_total_bytes: AtomicU64,
    /// Compressed bytes of the prioritized range fetched so far.
    pub prefetch_done_bytes: AtomicU64,
}

/// Settings of a [`RemoteLayer`].
#[derive(Debug, Clone)]
pub struct RemoteLayerSettings {
    /// Byte budget of the in-memory chunk cache of this layer.
    pub memory_cache_bytes: u64,
    /// Directory of the shared on-disk chunk cache, or `None` for memory only.
    pub disk_cache: Option<PathBuf>,
    /// Fetch the prioritized range after opening.
    pub prefetch: bool,
}

impl Default for RemoteLayerSettings {
    fn default() -> Self {
        RemoteLayerSettings { memory_cache_bytes: 256 << 20, disk_cache: None, prefetch: true }
    }
}

#[derive(Clone)]
struct ChunkWeighter;

impl quick_cache::Weighter<(u64, u64), Bytes> for ChunkWeighter {
    fn weight(&self, _key: &(u64, u64), value: &Bytes) -> u64 {
        value.len().max(1) as u64
    }
}

/// One layer read lazily from its blob.
pub struct RemoteLayer {
    digest: Digest,
    source: Arc<dyn BlobSource>,
    compression: Compression,
    index: LayerIndex,
    memory: quick_cache::sync::Cache<(u64, u64), Bytes, ChunkWeighter>,
    disk: Option<DiskCache>,
    counters: LayerCounters,
    prefetched: watch::Sender<bool>,
}

impl std::fmt::Debug for RemoteLayer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RemoteLayer").field("digest", &self.digest).finish_non_exhaustive()
    }
}

impl RemoteLayer {
    /// Reads the footer and TOC of `source`, checks the TOC against `toc_digest`, and builds
    /// the inode table. With `settings.prefetch`, the prioritized range is then fetched in the
    /// background; [`RemoteLayer::wait_prefetch`] waits for it.
    pub async fn open(
        digest: Digest,
        toc_digest: Digest,
        source: Arc<dyn BlobSource>,
        settings: &RemoteLayerSettings,
    ) -> Result<Arc<RemoteLayer>, LayerOpenError> {
        let fetch_error = |source| LayerOpenError::Fetch { digest, source: Box::new(source) };
        let toc_error = |source| LayerOpenError::Toc { digest, source: Box::new(source) };
        let counters = LayerCounters::default();
        let size = source.size();
        let tail_len = size.min(MAX_FOOTER_SIZE as u64);
        let tail = counted_read(&*source, &counters, size - tail_len..size).await.map_err(fetch_error)?;
        let location = parse_footer(&tail, size).map_err(|source| LayerOpenError::NotEstargz { digest, source: Box::new(source) })?;
        let limits = Limits::default();
        let toc_range = location.offset..location.offset + location.compressed_len;
        let compressed = counted_read(&*source, &counters, toc_range).await.map_err(fetch_error)?;
        let json = decode_toc(&compressed, &location, &limits).map_err(toc_error)?;
        verify_toc(&json, Some(toc_digest)).map_err(toc_error)?;
        let payload_end = match location.kind {
            // zstd:chunked: the skippable frame header sits 8 bytes before the compressed TOC.
            FooterKind::ZstdChunked => location.offset.saturating_sub(8),
            _ => location.offset,
        };
        let index = LayerIndex::from_toc_json(&json, payload_end, &overlay_index_options()).map_err(toc_error)?;
        drop(json);

        let (prefetched, _) = watch::channel(false);
        let layer = Arc::new(RemoteLayer {
            digest,
            source,
            compression: compression_of(location.kind),
            index,
            memory: quick_cache::sync::Cache::with_weighter(4096, settings.memory_cache_bytes.max(1), ChunkWeighter),
            disk: settings.disk_cache.clone().map(DiskCache::new),
            counters,
            prefetched,
        });
        match (settings.prefetch, layer.index.landmark()) {
            (true, Some(Landmark::Prefetch { offset })) if offset > 0 => {
                layer.counters.prefetch_total_bytes.store(offset, Ordering::Relaxed);
                let task = Arc::clone(&layer);
                tokio::spawn(async move { task.prefetch(offset).await });
            }
            _ => {
                layer.prefetched.send_replace(true);
            }
        }
        Ok(layer)
    }

    /// Returns the layer blob digest.
    pub fn digest(&self) -> Digest {
        self.digest
    }

    /// Returns the blob source, whose client counts HTTP requests.
    pub fn source(&self) -> &Arc<dyn BlobSource> {
        &self.source
    }

    /// Counters of this layer.
    pub fn counters(&self) -> &LayerCounters {
        &self.counters
    }

    /// Waits until the prioritized range is fetched (or failed), at most `timeout`. Returns
    /// whether it finished.
    pub async fn wait_prefetch(&self, timeout: Duration) -> bool {
        let mut done = self.prefetched.subscribe();
        tokio::time::timeout(timeout, done.wait_for(|finished| *finished)).await.is_ok()
    }

    /// Fetches `[0, end)` in one request and caches every chunk that lies wholly inside it.
    async fn prefetch(self: Arc<Self>, end: u64) {
        let started = std::time::Instant::now();
        match counted_read(&*self.source, &self.counters, 0..end).await {
            Ok(bytes) => {
                self.counters.prefetch_done_bytes.store(end, Ordering::Relaxed);
                let mut chunks = 0u64;
                for chunk in self.index.all_chunks().iter().filter(|c| c.comp_end <= end) {
                    let span = &bytes[chunk.comp_offset as usize..chunk.comp_end as usize];
                    match decode_chunk(span, chunk, self.compression) {
                        Ok(data) => {
                            let data = Bytes::from(data);
                            if let Some(disk) = &self.disk {
                                disk.store(chunk, &data).await;
                            }
                            self.memory.insert(chunk_key(chunk), data);
                            self.counters.chunks_fetched.fetch_add(1, Ordering::Relaxed);
                            chunks += 1;
                        }
                        Err(error) => {
                            tracing::warn!(layer = %self.digest, offset = chunk.comp_offset, %error, "prefetched chunk failed verification");
                        }
                    }
                }
                tracing::info!(layer = %self.digest, bytes = end, chunks, elapsed_ms = started.elapsed().as_millis() as u64, "prefetch finished");
            }
            Err(error) => {
                tracing::warn!(layer = %self.digest, bytes = end, %error, "prefetch failed; files will be fetched on demand");
            }
        }
        self.prefetched.send_replace(true);
    }

    async fn chunk(&self, node: NodeId, chunk: &Chunk) -> Result<Bytes, FsReadError> {
        let key = chunk_key(chunk);
        if let Some(bytes) = self.memory.get(&key) {
            self.counters.cache_hits.fetch_add(1, Ordering::Relaxed);
            return Ok(bytes);
        }
        // Concurrent readers of one chunk wait for a single fetch; a failure is not cached.
        self.memory
            .get_or_insert_async(&key, async {
                if let Some(bytes) = self.load_from_disk(chunk).await {
                    self.counters.cache_hits.fetch_add(1, Ordering::Relaxed);
                    return Ok(bytes);
                }
                self.counters.cache_misses.fetch_add(1, Ordering::Relaxed);
                let span = counted_read(&*self.source, &self.counters, chunk.comp_range()).await.map_err(|source| FsReadError::Fetch {
                    node: node.0,
                    offset: chunk.comp_offset,
                    end: chunk.comp_end,
                    source: Box::new(source),
                })?;
                let compression = self.compression;
                let chunk_copy = *chunk;
                let decoded = tokio::task::spawn_blocking(move || decode_chunk(&span, &chunk_copy, compression))
                    .await
                    .map_err(|join| FsReadError::Verify { node: node.0, offset: chunk.comp_offset, source: Box::new(join) })?
                    .map_err(|error| FsReadError::Verify { node: node.0, offset: chunk.comp_offset, source: Box::new(error) })?;
                let bytes = Bytes::from(decoded);
                self.counters.chunks_fetched.fetch_add(1, Ordering::Relaxed);
                if let Some(disk) = &self.disk {
                    disk.store(chunk, &bytes).await;
                }
                Ok(bytes)
            })
            .await
    }

    async fn load_from_disk(&self, chunk: &Chunk) -> Option<Bytes> {
        self.disk.as_ref()?.load(chunk).await
    }

    async fn read_range(&self, node: NodeId, offset: u64, len: u64) -> Result<Bytes, FsReadError> {
        let end = offset + len;
        let chunks = self.index.chunks_in(node, offset..end);
        let parts = try_join_all(chunks.iter().map(|chunk| self.chunk(node, chunk))).await;
        let parts = match parts {
            Ok(parts) => parts,
            Err(error) => {
                self.counters.read_errors.fetch_add(1, Ordering::Relaxed);
                return Err(error);
            }
        };
        if let [only] = parts.as_slice() {
            let chunk = &chunks[0];
            let from = (offset - chunk.file_offset) as usize;
            let to = (end.min(chunk.file_offset + chunk.size) - chunk.file_offset) as usize;
            return Ok(only.slice(from..to));
        }
        let mut out = BytesMut::with_capacity(len as usize);
        for (chunk, bytes) in chunks.iter().zip(&parts) {
            let from = (offset.max(chunk.file_offset) - chunk.file_offset) as usize;
            let to = (end.min(chunk.file_offset + chunk.size) - chunk.file_offset) as usize;
            out.extend_from_slice(&bytes[from..to]);
        }
        Ok(out.freeze())
    }
}

impl FileSource for RemoteLayer {
    fn index(&self) -> &LayerIndex {
        &self.index
    }

    fn read(&self, node: NodeId, offset: u64, len: u64) -> BoxFuture<'_, Result<Bytes, FsReadError>> {
        Box::pin(self.read_range(node, offset, len))
    }
}

/// Reads a range and counts the request and the bytes returned.
async fn counted_read(
    source: &dyn BlobSource,
    counters: &LayerCounters,
    range: std::ops::Range<u64>,
) -> Result<Bytes, crate::remote::RemoteError> {
    counters.range_reads.fetch_add(1, Ordering::Relaxed);
    let bytes = source.read_range(range).await?;
    counters.bytes_fetched.fetch_add(bytes.len() as u64, Ordering::Relaxed);
    Ok(bytes)
}

fn chunk_key(chunk: &Chunk) -> (u64, u64) {
    (chunk.comp_offset, chunk.inner_offset)
}

/// Verified chunks on disk, one file per chunk named by the digest of its uncompressed bytes.
///
/// Content addressing makes the cache safe to share between layers and mounts: a file is used
/// only when its bytes hash to the name, so a torn or altered file is a miss, never bad data.
#[derive(Debug, Clone)]
struct DiskCache {
    dir: PathBuf,
}

impl DiskCache {
    fn new(dir: PathBuf) -> DiskCache {
        DiskCache { dir }
    }

    fn path(&self, digest: &Digest) -> PathBuf {
        let hex = digest.hex();
        self.dir.join(&hex[..2]).join(hex)
    }

    async fn load(&self, chunk: &Chunk) -> Option<Bytes> {
        let digest = chunk.digest?;
        let bytes = tokio::fs::read(self.path(&digest)).await.ok()?;
        (bytes.len() as u64 == chunk.size && Digest::of(&bytes) == digest).then(|| Bytes::from(bytes))
    }

    /// Writes a chunk through a temporary file and a rename, so readers never see a partial
    /// file. Failures (a full disk) only cost a later refetch, so they are logged.
    async fn store(&self, chunk: &Chunk, bytes: &Bytes) {
        let Some(digest) = chunk.digest else { return };
        let path = self.path(&digest);
        if tokio::fs::try_exists(&path).await.unwrap_or(false) {
            return;
        }
        if let Err(error) = write_atomically(&path, bytes).await {
            tracing::warn!(path = %path.display(), %error, "failed to store a chunk in the disk cache");
        }
    }
}

async fn write_atomically(path: &Path, bytes: &Bytes) -> std::io::Result<()> {
    let dir = path.parent().ok_or_else(|| std::io::Error::other("cache path has no parent"))?;
    tokio::fs::create_dir_all(dir).await?;
    let temp = dir.join(format!(".tmp-{}-{:x}", std::process::id(), rand_suffix()));
    tokio::fs::write(&temp, bytes).await?;
    match tokio::fs::rename(&temp, path).await {
        Ok(()) => Ok(()),
        Err(error) => {
            let _ = tokio::fs::remove_file(&temp).await;
            Err(error)
        }
    }
}

/// Returns a per-process sequence number that keeps temporary names of concurrent writers apart.
fn rand_suffix() -> u64 {
    static NEXT: AtomicU64 = AtomicU64::new(0);
    NEXT.fetch_add(1, Ordering::Relaxed)
}
