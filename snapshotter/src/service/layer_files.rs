//! The file contents of an opened [`Layer`] as a [`FileSource`] for the FUSE filesystem.

use std::sync::Arc;

use bytes::Bytes;
use estargz::index::{LayerIndex, NodeId};
use futures_util::future::BoxFuture;

use crate::fs::{FileSource, FsReadError};
use crate::layer::{Layer, LayerError};

/// Reads of one layer's files, for [`FsCore`](crate::fs::FsCore).
#[derive(Debug, Clone)]
pub struct LayerFiles(pub Arc<Layer>);

impl FileSource for LayerFiles {
    fn index(&self) -> &LayerIndex {
        self.0.index()
    }

    fn read(&self, node: NodeId, offset: u64, len: u64) -> BoxFuture<'_, Result<Bytes, FsReadError>> {
        Box::pin(async move {
            // The filesystem core asks for at most one FUSE read (1 MiB) at a time.
            let len32 = u32::try_from(len).unwrap_or(u32::MAX);
            self.0.read(node, offset, len32).await.map_err(|error| self.read_error(node, offset, len, error))
        })
    }
}

impl LayerFiles {
    /// Every failure becomes EIO at the FUSE edge; the variant keeps a fetch failure apart from
    /// bytes that do not match the index, for logs and counters. Offsets are the compressed
    /// range of the chunks the read needed.
    fn read_error(&self, node: NodeId, offset: u64, len: u64, error: LayerError) -> FsReadError {
        let chunks = self.0.index().chunks_in(node, offset..offset.saturating_add(len));
        let start = chunks.first().map_or(0, |chunk| chunk.comp_offset);
        let end = chunks.last().map_or(0, |chunk| chunk.comp_end);
        match error {
            LayerError::ChunkLength { .. } => FsReadError::Verify { node: node.0, offset: start, source: Box::new(error) },
            other => FsReadError::Fetch { node: node.0, offset: start, end, source: Box::new(other) },
        }
    }
}
