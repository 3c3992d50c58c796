//! The production [`FileSource`]: a lazily read [`Layer`].

use bytes::Bytes;
use estargz::index::{LayerIndex, NodeId};
use futures_util::future::BoxFuture;

use super::source::{FileSource, FsReadError};
use crate::layer::Layer;

impl FileSource for Layer {
    fn index(&self) -> &LayerIndex {
        Layer::index(self)
    }

    fn read(
        &self,
        node: NodeId,
        offset: u64,
        len: u64,
    ) -> BoxFuture<'_, Result<Bytes, FsReadError>> {
        // FUSE reads are at most `MAX_READ` bytes, far below `u32::MAX`.
        let len = u32::try_from(len).unwrap_or(u32::MAX);
        Box::pin(async move {
            Layer::read(self, node, offset, len)
                .await
                .map_err(|error| FsReadError::Layer {
                    node: node.0,
                    source: Box::new(error),
                })
        })
    }
}
