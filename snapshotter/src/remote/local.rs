//! Range reads of a blob file in a local OCI image layout.

use std::fs::File;
use std::ops::Range;
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use bytes::Bytes;
use futures_util::future::BoxFuture;

use super::BlobSource;
use super::error::RemoteError;
use super::stats::RemoteStats;

/// A blob file read with positional reads on the blocking thread pool.
///
/// The file is opened once; reads do not move a shared cursor, so concurrent reads are safe.
/// The size comes from the file's metadata at open time.
#[derive(Debug)]
pub struct LocalBlobSource {
    file: Arc<File>,
    path: PathBuf,
    id: String,
    size: u64,
    stats: RemoteStats,
}

impl LocalBlobSource {
    /// Opens the blob at `path`; `expected_size` (from the descriptor), when given, must match
    /// the file size.
    pub async fn open(
        path: impl Into<PathBuf>,
        id: impl Into<String>,
        expected_size: Option<u64>,
    ) -> Result<Self, RemoteError> {
        let path = path.into();
        let io_error = |source| RemoteError::Io {
            path: path.clone(),
            source,
        };
        let file = tokio::fs::File::open(&path).await.map_err(io_error)?;
        let metadata = file.metadata().await.map_err(io_error)?;
        let id = id.into();
        if let Some(expected) = expected_size
            && expected != metadata.len()
        {
            return Err(RemoteError::SizeMismatch {
                what: "blob file",
                digest: id,
                expected,
                actual: metadata.len(),
            });
        }
        Ok(LocalBlobSource {
            file: Arc::new(file.into_std().await),
            size: metadata.len(),
            path,
            id,
            stats: RemoteStats::default(),
        })
    }

    /// Returns the path of the file being read.
    pub fn path(&self) -> &Path {
        &self.path
    }
}

impl BlobSource for LocalBlobSource {
    fn size(&self) -> u64 {
        self.size
    }

    fn read_range(&self, range: Range<u64>) -> BoxFuture<'_, Result<Bytes, RemoteError>> {
        Box::pin(async move {
            let result = self.read(range).await;
            if let Err(err) = &result {
                self.stats.add_error(err.kind());
            }
            result
        })
    }

    fn check(&self) -> BoxFuture<'_, Result<(), RemoteError>> {
        Box::pin(async move {
            // The file may have been deleted or truncated since open.
            let metadata =
                tokio::fs::metadata(&self.path)
                    .await
                    .map_err(|source| RemoteError::Io {
                        path: self.path.clone(),
                        source,
                    })?;
            if metadata.len() != self.size {
                return Err(RemoteError::SizeMismatch {
                    what: "blob file",
                    digest: self.id.clone(),
                    expected: self.size,
                    actual: metadata.len(),
                });
            }
            Ok(())
        })
    }

    fn id(&self) -> &str {
        &self.id
    }

    fn stats(&self) -> &RemoteStats {
        &self.stats
    }
}

impl LocalBlobSource {
    async fn read(&self, range: Range<u64>) -> Result<Bytes, RemoteError> {
        if range.start > range.end || range.end > self.size {
            return Err(RemoteError::RangeOutOfBounds {
                blob: self.id.clone(),
                start: range.start,
                end: range.end,
                size: self.size,
            });
        }
        if range.is_empty() {
            return Ok(Bytes::new());
        }
        let len = usize::try_from(range.end - range.start).map_err(|_| {
            RemoteError::RangeOutOfBounds {
                blob: self.id.clone(),
                start: range.start,
                end: range.end,
                size: self.size,
            }
        })?;

        let file = Arc::clone(&self.file);
        self.stats.add_request();
        let read = tokio::task::spawn_blocking(move || {
            let mut buf = vec![0u8; len];
            let mut filled = 0;
            while filled < len {
                match file.read_at(&mut buf[filled..], range.start + filled as u64) {
                    Ok(0) => break,
                    Ok(n) => filled += n,
                    Err(err) if err.kind() == std::io::ErrorKind::Interrupted => {}
                    Err(err) => return Err(err),
                }
            }
            buf.truncate(filled);
            Ok(buf)
        })
        .await
        .map_err(|join| RemoteError::Io {
            path: self.path.clone(),
            source: std::io::Error::other(join),
        })?;

        let buf = read.map_err(|source| RemoteError::Io {
            path: self.path.clone(),
            source,
        })?;
        if buf.len() != len {
            let message = format!(
                "file shrank after open: read {} of {len} bytes at offset {}",
                buf.len(),
                range.start
            );
            let source = std::io::Error::new(std::io::ErrorKind::UnexpectedEof, message);
            return Err(RemoteError::Io {
                path: self.path.clone(),
                source,
            });
        }
        self.stats.add_bytes(len as u64);
        Ok(Bytes::from(buf))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    async fn source_with(content: &[u8]) -> (tempfile::TempDir, LocalBlobSource) {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("blob");
        std::fs::write(&path, content).unwrap();
        let source = LocalBlobSource::open(&path, "blob", Some(content.len() as u64))
            .await
            .unwrap();
        (dir, source)
    }

    #[tokio::test]
    async fn reads_exact_ranges() {
        let content: Vec<u8> = (0..=255u8).cycle().take(10_000).collect();
        let (_dir, source) = source_with(&content).await;
        assert_eq!(source.size(), 10_000);
        for range in [0..1, 0..10_000, 4_095..4_097, 9_999..10_000, 500..500] {
            let got = source.read_range(range.clone()).await.unwrap();
            assert_eq!(
                &got[..],
                &content[range.start as usize..range.end as usize],
                "{range:?}"
            );
        }
        assert_eq!(source.stats().snapshot().bytes_fetched, 1 + 10_000 + 2 + 1);
    }

    #[tokio::test]
    async fn range_past_end_is_rejected() {
        let (_dir, source) = source_with(b"0123456789").await;
        let err = source.read_range(5..11).await.unwrap_err();
        assert!(
            matches!(
                err,
                RemoteError::RangeOutOfBounds {
                    start: 5,
                    end: 11,
                    size: 10,
                    ..
                }
            ),
            "{err:?}"
        );
    }

    #[tokio::test]
    async fn descriptor_size_must_match_file() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("blob");
        std::fs::write(&path, b"abc").unwrap();
        let err = LocalBlobSource::open(&path, "blob", Some(4))
            .await
            .unwrap_err();
        assert!(
            matches!(
                err,
                RemoteError::SizeMismatch {
                    expected: 4,
                    actual: 3,
                    ..
                }
            ),
            "{err:?}"
        );
    }

    #[tokio::test]
    async fn check_notices_a_truncated_file() {
        let (dir, source) = source_with(b"0123456789").await;
        source.check().await.unwrap();
        std::fs::write(dir.path().join("blob"), b"01234").unwrap();
        assert!(source.check().await.is_err());
        let err = source.read_range(0..10).await.unwrap_err();
        match err {
            RemoteError::Io { source, .. } => {
                assert_eq!(source.kind(), std::io::ErrorKind::UnexpectedEof)
            }
            other => panic!("expected an I/O error, got {other:?}"),
        }
    }
}
