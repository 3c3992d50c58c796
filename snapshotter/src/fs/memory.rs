//! An in-memory layer for tests and tools: an eStargz blob held in a `Vec`, read synchronously.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};

use bytes::{Bytes, BytesMut};
use estargz::Compression;
use estargz::blob::{BlobOptions, OpenedBlob, open_blob, read_chunk};
use estargz::build::{BuildOptions, build};
use estargz::index::{IndexOptions, LayerIndex, NodeId};
use futures_util::future::BoxFuture;

use super::source::{FileSource, FsReadError};

/// A layer whose whole blob is in memory.
///
/// Reads decode and verify the chunks on every call, so they exercise the same chunk mapping as
/// a remote layer. [`MemorySource::set_failing`] makes every read fail as a dead registry would.
#[derive(Debug)]
pub struct MemorySource {
    blob: Vec<u8>,
    compression: Compression,
    index: LayerIndex,
    failing: AtomicBool,
    reads: AtomicU64,
}

/// Index options for a layer that overlayfs stacks: whiteouts as 0/0 devices, landmarks hidden.
pub fn overlay_index_options() -> IndexOptions {
    IndexOptions {
        overlay_whiteouts: true,
        hide_landmarks: true,
        ..IndexOptions::default()
    }
}

impl MemorySource {
    /// Converts an uncompressed tar into an eStargz blob with `options` and opens it with
    /// [`overlay_index_options`].
    pub fn from_tar(
        tar: &[u8],
        options: &BuildOptions,
    ) -> Result<MemorySource, Box<dyn std::error::Error + Send + Sync>> {
        let mut blob = Vec::new();
        let out = build(std::io::Cursor::new(tar), &mut blob, options)?;
        let opened = open_blob(
            &blob.as_slice(),
            &BlobOptions {
                toc_digest: Some(out.toc_digest),
                index: overlay_index_options(),
            },
        )?;
        Ok(Self::from_opened(blob, opened))
    }

    /// Wraps a blob that was already opened.
    pub fn from_opened(blob: Vec<u8>, opened: OpenedBlob) -> MemorySource {
        MemorySource {
            blob,
            compression: opened.compression,
            index: opened.index,
            failing: AtomicBool::new(false),
            reads: AtomicU64::new(0),
        }
    }

    /// Makes every later read fail (`true`) or succeed again (`false`).
    pub fn set_failing(&self, failing: bool) {
        self.failing.store(failing, Ordering::Relaxed);
    }

    /// Number of reads that reached this source.
    pub fn reads(&self) -> u64 {
        self.reads.load(Ordering::Relaxed)
    }

    fn read_sync(&self, node: NodeId, offset: u64, len: u64) -> Result<Bytes, FsReadError> {
        self.reads.fetch_add(1, Ordering::Relaxed);
        let end = offset + len;
        let mut out = BytesMut::with_capacity(len as usize);
        for chunk in self.index.chunks_in(node, offset..end) {
            if self.failing.load(Ordering::Relaxed) {
                return Err(FsReadError::Fetch {
                    node: node.0,
                    offset: chunk.comp_offset(),
                    end: chunk.comp_end(),
                    source: "the in-memory source is set to fail".into(),
                });
            }
            let bytes =
                read_chunk(&self.blob.as_slice(), chunk, self.compression).map_err(|error| {
                    FsReadError::Verify {
                        node: node.0,
                        offset: chunk.comp_offset(),
                        source: Box::new(error),
                    }
                })?;
            let from = offset.max(chunk.file_offset()) - chunk.file_offset();
            let to = end.min(chunk.file_offset() + chunk.size()) - chunk.file_offset();
            out.extend_from_slice(&bytes[from as usize..to as usize]);
        }
        Ok(out.freeze())
    }
}

impl FileSource for MemorySource {
    fn index(&self) -> &LayerIndex {
        &self.index
    }

    fn read(
        &self,
        node: NodeId,
        offset: u64,
        len: u64,
    ) -> BoxFuture<'_, Result<Bytes, FsReadError>> {
        let result = self.read_sync(node, offset, len);
        Box::pin(async move { result })
    }
}
