//! One planned range request: fetch, decompress and verify its chunks, with bounded retries.

use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use estargz::index::Chunk;
use estargz::{ChunkError, Compression, Digest};

use crate::remote::{BlobSource, RemoteError};

use super::config::FetchConfig;
use super::error::FetchError;
use super::stats::{LayerStats, Purpose};

/// Maximum delay between two attempts.
const MAX_BACKOFF: Duration = Duration::from_secs(5);

/// Fetches chunks of one layer blob; borrowed pieces of a [`ChunkLoader`](super::loader::ChunkLoader).
pub(crate) struct RangeFetcher<'a> {
    pub(crate) source: &'a dyn BlobSource,
    pub(crate) layer: Digest,
    pub(crate) compression: Compression,
    pub(crate) config: &'a FetchConfig,
    pub(crate) stats: &'a LayerStats,
}

type ChunkResult = Result<Bytes, Arc<FetchError>>;

impl RangeFetcher<'_> {
    /// Fetches `chunks` with one range request covering their spans, decompresses and verifies
    /// each, and returns one result per chunk in input order.
    ///
    /// A failed request is retried when the source calls the error retryable; chunks that fail
    /// decompression or verification are requested again on their own. Both stop after
    /// `config.max_retries` retries.
    pub(crate) async fn fetch(&self, chunks: &[Chunk], purpose: Purpose) -> Vec<ChunkResult> {
        let mut results: Vec<Option<ChunkResult>> = (0..chunks.len()).map(|_| None).collect();
        let mut pending = Vec::with_capacity(chunks.len());
        for (i, chunk) in chunks.iter().enumerate() {
            if chunk.digest().is_some() {
                pending.push(i);
            } else {
                // Unverifiable bytes are never served, so there is nothing to fetch.
                let offset = chunk.comp_offset();
                let source = ChunkError::NoDigest { offset };
                results[i] = Some(Err(Arc::new(FetchError::Chunk {
                    layer: self.layer,
                    offset,
                    attempts: 0,
                    source,
                })));
            }
        }
        let mut attempt = 0u32;
        while !pending.is_empty() {
            attempt += 1;
            let last_attempt = attempt > self.config.max_retries;
            let start = pending
                .iter()
                .map(|&i| chunks[i].comp_offset())
                .min()
                .unwrap_or(0);
            let end = pending
                .iter()
                .map(|&i| chunks[i].comp_end())
                .max()
                .unwrap_or(0);
            LayerStats::add(&self.stats.requests, 1);
            let received = self.read_exact(start, end).await;
            let buffer = match received {
                Ok(buffer) => buffer,
                Err(error) => {
                    LayerStats::add(&self.stats.request_failures, 1);
                    if last_attempt || !error.root().is_retryable() {
                        let error = Arc::new(FetchError::Remote {
                            layer: self.layer,
                            start,
                            end,
                            attempts: attempt,
                            source: error,
                        });
                        for &i in &pending {
                            results[i] = Some(Err(error.clone()));
                        }
                        break;
                    }
                    tracing::warn!(layer = %self.layer, start, end, attempt, %error, "range request failed; retrying");
                    self.back_off(attempt).await;
                    continue;
                }
            };
            self.stats.add_fetched(purpose, buffer.len() as u64);

            let batch: Vec<Chunk> = pending.iter().map(|&i| chunks[i]).collect();
            let decoded = match decode_off_thread(buffer, start, batch, self.compression).await {
                Some(decoded) => decoded,
                None => {
                    let error = Arc::new(FetchError::DecodeTask {
                        layer: self.layer,
                        start,
                        end,
                    });
                    for &i in &pending {
                        results[i] = Some(Err(error.clone()));
                    }
                    break;
                }
            };
            let mut failed = Vec::new();
            for (&i, outcome) in pending.iter().zip(decoded) {
                match outcome {
                    Ok(bytes) => {
                        LayerStats::add(&self.stats.chunks_verified, 1);
                        results[i] = Some(Ok(Bytes::from(bytes)));
                    }
                    Err(error) => {
                        LayerStats::add(&self.stats.verification_failures, 1);
                        failed.push((i, error));
                    }
                }
            }
            if failed.is_empty() {
                break;
            }
            if last_attempt {
                for (i, source) in failed {
                    let offset = chunks[i].comp_offset();
                    results[i] = Some(Err(Arc::new(FetchError::Chunk {
                        layer: self.layer,
                        offset,
                        attempts: attempt,
                        source,
                    })));
                }
                break;
            }
            tracing::warn!(
                layer = %self.layer,
                chunks = failed.len(),
                first_offset = chunks[failed[0].0].comp_offset(),
                error = %failed[0].1,
                attempt,
                "fetched chunks failed verification; fetching them again"
            );
            pending = failed.into_iter().map(|(i, _)| i).collect();
            self.back_off(attempt).await;
        }
        results
            .into_iter()
            .map(|r| {
                r.unwrap_or_else(|| {
                    Err(Arc::new(FetchError::DecodeTask {
                        layer: self.layer,
                        start: 0,
                        end: 0,
                    }))
                })
            })
            .collect()
    }

    async fn read_exact(&self, start: u64, end: u64) -> Result<Bytes, RemoteError> {
        let buffer = self.source.read_range(start..end).await?;
        if buffer.len() as u64 != end - start {
            // The source promises exact lengths, so a short body is treated like one that broke off.
            return Err(RemoteError::ShortBody {
                host: self.source.id().to_string(),
                expected: end - start,
                received: buffer.len() as u64,
            });
        }
        Ok(buffer)
    }

    async fn back_off(&self, attempt: u32) {
        LayerStats::add(&self.stats.retries, 1);
        let factor = 1u32 << (attempt - 1).min(16);
        let delay = self
            .config
            .retry_backoff
            .saturating_mul(factor)
            .min(MAX_BACKOFF);
        tokio::time::sleep(delay).await;
    }
}

/// Decompresses and verifies `chunks` from `buffer` (blob bytes starting at `start`) on the
/// blocking pool, spread over one task per core when there are several chunks. Returns `None`
/// if a task panicked or was cancelled.
async fn decode_off_thread(
    buffer: Bytes,
    start: u64,
    chunks: Vec<Chunk>,
    compression: Compression,
) -> Option<Vec<Result<Vec<u8>, ChunkError>>> {
    let workers = decode_workers(chunks.len());
    let chunks = Arc::new(chunks);
    let mut tasks = Vec::with_capacity(workers);
    for worker in 0..workers {
        let (buffer, chunks) = (buffer.clone(), chunks.clone());
        // Worker w takes chunks w, w + workers, ...: neighbouring chunks often differ in size
        // (a file's last chunk is short), so interleaving balances the work better than ranges.
        tasks.push(tokio::task::spawn_blocking(move || {
            (worker..chunks.len())
                .step_by(workers)
                .map(|i| decode_one(&buffer, start, &chunks[i], compression))
                .collect::<Vec<_>>()
        }));
    }
    let mut per_worker = Vec::with_capacity(workers);
    for task in tasks {
        per_worker.push(task.await.ok()?.into_iter());
    }
    let mut results = Vec::with_capacity(chunks.len());
    for i in 0..chunks.len() {
        results.push(per_worker[i % workers].next()?);
    }
    Some(results)
}

/// Number of blocking tasks for a batch of `chunks` chunks: one per core, never more than the
/// chunks, at least one.
fn decode_workers(chunks: usize) -> usize {
    let cores = std::thread::available_parallelism().map_or(1, std::num::NonZeroUsize::get);
    chunks.clamp(1, cores.max(1))
}

fn decode_one(
    buffer: &[u8],
    start: u64,
    chunk: &Chunk,
    compression: Compression,
) -> Result<Vec<u8>, ChunkError> {
    // The request covers every chunk's span, so both bounds lie inside the buffer.
    let from = (chunk.comp_offset() - start) as usize;
    let to = ((chunk.comp_end() - start) as usize).min(buffer.len());
    estargz::blob::decode_chunk(&buffer[from..to], chunk, compression)
}
