//! A blob source that keeps the footer and TOC bytes of a layer on local disk, so a restarted
//! daemon opens its layers again without the registry.
//!
//! While a layer opens, [`PersistedSource`] records the ranges it reads from the network (the
//! tail with footer and TOC, and the rest of a large TOC). [`PersistedSource::persist`] writes
//! them to `<dir>/tail.bin` with their offsets in `<dir>/tail.json`, each through a synced
//! temporary file and a rename, the JSON last. Later reads that lie inside a persisted span are
//! served from the file; everything else goes to the wrapped source. Every network read is
//! timed into the daemon's fetch metrics.

use std::ops::Range;
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::Instant;

use bytes::{Bytes, BytesMut};
use futures_util::future::BoxFuture;
use serde::{Deserialize, Serialize};

use crate::metrics::Metrics;
use crate::remote::{BlobSource, RemoteError, RemoteStats};

const INDEX_FILE: &str = "tail.json";
const DATA_FILE: &str = "tail.bin";

/// Contents of `tail.json`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TailIndex {
    /// Size of the blob the spans belong to.
    pub blob_size: u64,
    /// Persisted ranges in file order: span `i` starts in `tail.bin` after the bytes of spans
    /// `0..i`.
    pub spans: Vec<Span>,
}

/// One persisted range of the blob.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Span {
    /// Offset in the blob.
    pub offset: u64,
    /// Length in bytes.
    pub len: u64,
}

impl TailIndex {
    /// Reads `tail.json` from `dir`; `None` when it is missing or unreadable.
    pub fn load(dir: &Path) -> Option<TailIndex> {
        let text = std::fs::read(dir.join(INDEX_FILE)).ok()?;
        let index: TailIndex = serde_json::from_slice(&text).ok()?;
        let data_len = std::fs::metadata(dir.join(DATA_FILE)).ok()?.len();
        (index.spans.iter().map(|span| span.len).sum::<u64>() == data_len).then_some(index)
    }

    /// Returns where `range` starts in `tail.bin`, when one span contains all of it.
    fn locate(&self, range: &Range<u64>) -> Option<u64> {
        let mut file_offset = 0;
        for span in &self.spans {
            if span.offset <= range.start && range.end <= span.offset + span.len {
                return Some(file_offset + (range.start - span.offset));
            }
            file_offset += span.len;
        }
        None
    }
}

/// A [`BlobSource`] with locally persisted footer and TOC bytes.
pub struct PersistedSource {
    inner: Arc<dyn BlobSource>,
    dir: PathBuf,
    metrics: Option<Arc<Metrics>>,
    state: Mutex<State>,
}

#[derive(Default)]
struct State {
    persisted: Option<TailIndex>,
    /// Network reads since [`PersistedSource::new`], kept until [`PersistedSource::persist`].
    recorded: Option<Vec<(u64, Bytes)>>,
}

impl std::fmt::Debug for PersistedSource {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PersistedSource")
            .field("source", &self.inner.id())
            .field("dir", &self.dir)
            .finish_non_exhaustive()
    }
}

impl PersistedSource {
    /// Wraps `inner`, serving whatever `dir` already holds for a blob of this size, and
    /// recording network reads until [`PersistedSource::persist`].
    pub fn new(
        inner: Arc<dyn BlobSource>,
        dir: PathBuf,
        metrics: Option<Arc<Metrics>>,
    ) -> PersistedSource {
        let persisted = TailIndex::load(&dir).filter(|index| index.blob_size == inner.size());
        let state = State {
            persisted,
            recorded: Some(Vec::new()),
        };
        PersistedSource {
            inner,
            dir,
            metrics,
            state: Mutex::new(state),
        }
    }

    /// Tells whether some bytes are served from disk.
    pub fn has_persisted(&self) -> bool {
        self.lock().persisted.is_some()
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, State> {
        self.state
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// Writes the ranges read from the network since creation (merged with what was persisted
    /// before) and stops recording. Does nothing when no network read happened.
    pub fn persist(&self) -> std::io::Result<()> {
        let (recorded, previous) = {
            let mut state = self.lock();
            let recorded = state.recorded.take().unwrap_or_default();
            (recorded, state.persisted.clone())
        };
        if recorded.is_empty() {
            return Ok(());
        }
        let mut pieces: Vec<(u64, Bytes)> = recorded;
        if let Some(previous) = &previous {
            let data = std::fs::read(self.dir.join(DATA_FILE))?;
            let mut at = 0usize;
            for span in &previous.spans {
                let len = usize::try_from(span.len).map_err(std::io::Error::other)?;
                let bytes = data.get(at..at + len).ok_or_else(|| {
                    std::io::Error::other("tail.bin is shorter than the spans in tail.json")
                })?;
                pieces.push((span.offset, Bytes::copy_from_slice(bytes)));
                at += len;
            }
        }
        let (index, data) = merge(self.inner.size(), pieces);
        std::fs::create_dir_all(&self.dir)?;
        write_synced(&self.dir.join(DATA_FILE), &data)?;
        write_synced(
            &self.dir.join(INDEX_FILE),
            &serde_json::to_vec(&index).map_err(std::io::Error::other)?,
        )?;
        std::fs::File::open(&self.dir)?.sync_all()?;
        self.lock().persisted = Some(index);
        Ok(())
    }

    async fn read_local(&self, file_offset: u64, len: u64) -> Option<Bytes> {
        let path = self.dir.join(DATA_FILE);
        let len = usize::try_from(len).ok()?;
        let read = tokio::task::spawn_blocking(move || -> std::io::Result<Vec<u8>> {
            let file = std::fs::File::open(&path)?;
            let mut buffer = vec![0u8; len];
            file.read_exact_at(&mut buffer, file_offset)?;
            Ok(buffer)
        })
        .await;
        match read {
            Ok(Ok(bytes)) => Some(Bytes::from(bytes)),
            Ok(Err(error)) => {
                tracing::warn!(dir = %self.dir.display(), %error, "failed to read persisted TOC bytes; reading from the registry");
                None
            }
            Err(_) => None,
        }
    }

    async fn read(&self, range: Range<u64>) -> Result<Bytes, RemoteError> {
        let local = self
            .lock()
            .persisted
            .as_ref()
            .and_then(|index| index.locate(&range));
        if let Some(file_offset) = local
            && let Some(bytes) = self.read_local(file_offset, range.end - range.start).await
        {
            return Ok(bytes);
        }
        let started = Instant::now();
        let result = self.inner.read_range(range.clone()).await;
        if let Some(metrics) = &self.metrics {
            let bytes = result.as_ref().map_or(0, |bytes| bytes.len() as u64);
            metrics.observe_fetch(result.is_ok(), bytes, started.elapsed());
        }
        if let Ok(bytes) = &result
            && let Some(recorded) = self.lock().recorded.as_mut()
        {
            recorded.push((range.start, bytes.clone()));
        }
        result
    }
}

impl BlobSource for PersistedSource {
    fn size(&self) -> u64 {
        self.inner.size()
    }

    fn read_range(&self, range: Range<u64>) -> BoxFuture<'_, Result<Bytes, RemoteError>> {
        Box::pin(self.read(range))
    }

    fn check(&self) -> BoxFuture<'_, Result<(), RemoteError>> {
        self.inner.check()
    }

    fn id(&self) -> &str {
        self.inner.id()
    }

    fn stats(&self) -> &RemoteStats {
        self.inner.stats()
    }
}

/// Merges overlapping and adjacent pieces into sorted spans and their concatenated bytes.
fn merge(blob_size: u64, mut pieces: Vec<(u64, Bytes)>) -> (TailIndex, Vec<u8>) {
    pieces.sort_by_key(|(offset, bytes)| (*offset, std::cmp::Reverse(bytes.len())));
    let mut spans: Vec<(u64, BytesMut)> = Vec::new();
    for (offset, bytes) in pieces {
        let end = offset + bytes.len() as u64;
        match spans.last_mut() {
            Some((start, data)) if offset <= *start + data.len() as u64 => {
                let current_end = *start + data.len() as u64;
                if end > current_end {
                    let skip = usize::try_from(current_end - offset).unwrap_or(usize::MAX);
                    data.extend_from_slice(&bytes[skip..]);
                }
            }
            _ => spans.push((offset, BytesMut::from(&bytes[..]))),
        }
    }
    let index = TailIndex {
        blob_size,
        spans: spans
            .iter()
            .map(|(offset, data)| Span {
                offset: *offset,
                len: data.len() as u64,
            })
            .collect(),
    };
    let data = spans.into_iter().flat_map(|(_, data)| data).collect();
    (index, data)
}

fn write_synced(path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    use std::io::Write;
    let temp = path.with_extension("tmp");
    let mut file = std::fs::File::create(&temp)?;
    file.write_all(bytes)?;
    file.sync_all()?;
    drop(file);
    std::fs::rename(&temp, path)
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::{AtomicU64, Ordering};

    use super::*;

    /// A blob in memory that counts reads and can be switched off.
    struct Counting {
        blob: Vec<u8>,
        reads: AtomicU64,
        offline: std::sync::atomic::AtomicBool,
        stats: RemoteStats,
    }

    impl Counting {
        fn new(blob: Vec<u8>) -> Arc<Counting> {
            Arc::new(Counting {
                blob,
                reads: AtomicU64::new(0),
                offline: false.into(),
                stats: RemoteStats::default(),
            })
        }
    }

    impl BlobSource for Counting {
        fn size(&self) -> u64 {
            self.blob.len() as u64
        }
        fn read_range(&self, range: Range<u64>) -> BoxFuture<'_, Result<Bytes, RemoteError>> {
            self.reads.fetch_add(1, Ordering::Relaxed);
            let result = if self.offline.load(Ordering::Relaxed) {
                Err(RemoteError::InvalidConfig {
                    field: "test".into(),
                    reason: "offline".into(),
                })
            } else {
                Ok(Bytes::copy_from_slice(
                    &self.blob[range.start as usize..range.end as usize],
                ))
            };
            Box::pin(async move { result })
        }
        fn check(&self) -> BoxFuture<'_, Result<(), RemoteError>> {
            Box::pin(async { Ok(()) })
        }
        fn id(&self) -> &str {
            "counting"
        }
        fn stats(&self) -> &RemoteStats {
            &self.stats
        }
    }

    fn blob() -> Vec<u8> {
        (0..10_000u32).map(|n| (n % 251) as u8).collect()
    }

    #[tokio::test]
    async fn persisted_ranges_are_served_offline() {
        let dir = tempfile::tempdir().unwrap();
        let inner = Counting::new(blob());
        let first = PersistedSource::new(inner.clone(), dir.path().join("layer"), None);
        let tail = first.read_range(9_000..10_000).await.unwrap();
        let toc = first.read_range(8_500..9_200).await.unwrap();
        first.persist().unwrap();
        assert_eq!(inner.reads.load(Ordering::Relaxed), 2);

        inner.offline.store(true, Ordering::Relaxed);
        let second = PersistedSource::new(inner.clone(), dir.path().join("layer"), None);
        assert!(second.has_persisted());
        assert_eq!(second.read_range(9_000..10_000).await.unwrap(), tail);
        assert_eq!(second.read_range(8_500..9_200).await.unwrap(), toc);
        assert_eq!(
            second.read_range(8_600..8_601).await.unwrap()[0],
            blob()[8_600]
        );
        assert_eq!(
            inner.reads.load(Ordering::Relaxed),
            2,
            "no network read after the restart"
        );
        assert!(
            second.read_range(0..10).await.is_err(),
            "other ranges still go to the source"
        );
    }

    #[test]
    fn pieces_merge_into_sorted_spans() {
        let piece = |offset: u64, len: u64| {
            (
                offset,
                Bytes::from(blob()[offset as usize..(offset + len) as usize].to_vec()),
            )
        };
        let (index, data) = merge(
            10_000,
            vec![
                piece(9_000, 1_000),
                piece(100, 10),
                piece(8_500, 700),
                piece(105, 10),
            ],
        );
        assert_eq!(
            index.spans,
            [
                Span {
                    offset: 100,
                    len: 15
                },
                Span {
                    offset: 8_500,
                    len: 1_500
                }
            ]
        );
        assert_eq!(data.len(), 1_515);
        assert_eq!(&data[15..], &blob()[8_500..]);
    }

    #[test]
    fn index_for_another_blob_size_is_ignored() {
        let dir = tempfile::tempdir().unwrap();
        let source = PersistedSource::new(Counting::new(blob()), dir.path().to_path_buf(), None);
        futures_util::FutureExt::now_or_never(source.read_range(9_000..10_000))
            .unwrap()
            .unwrap();
        source.persist().unwrap();
        let other = PersistedSource::new(
            Counting::new(vec![0; 20_000]),
            dir.path().to_path_buf(),
            None,
        );
        assert!(!other.has_persisted());
    }
}
