//! What the filesystem core reads file bytes from.

use bytes::Bytes;
use estargz::index::{LayerIndex, NodeId};
use futures_util::future::BoxFuture;

/// Why a read of file bytes failed. Every variant becomes `EIO` at the FUSE edge; the
/// variants exist so logs and counters can tell a dead registry from corrupt data.
#[derive(Debug, thiserror::Error)]
pub enum FsReadError {
    /// The bytes could not be fetched (network, registry, timeout).
    #[error("failed to fetch blob bytes {offset}..{end} of node {node}")]
    Fetch {
        /// Node being read.
        node: u32,
        /// Compressed start offset in the blob.
        offset: u64,
        /// Compressed end offset in the blob.
        end: u64,
        /// The underlying failure.
        #[source]
        source: Box<dyn std::error::Error + Send + Sync>,
    },
    /// Fetched bytes did not decompress or did not match their digest.
    #[error("chunk at blob offset {offset} of node {node} failed verification")]
    Verify {
        /// Node being read.
        node: u32,
        /// Compressed start offset of the chunk.
        offset: u64,
        /// The decode or digest failure.
        #[source]
        source: Box<dyn std::error::Error + Send + Sync>,
    },
    /// The layer's read path failed (fetch, verification or cache).
    #[error("failed to read node {node} from its layer")]
    Layer {
        /// Node being read.
        node: u32,
        /// The read path's error.
        #[source]
        source: Box<dyn std::error::Error + Send + Sync>,
    },
    /// The read did not finish within the configured time.
    #[error("read of node {node} timed out after {seconds} s")]
    Timeout {
        /// Node being read.
        node: u32,
        /// The limit that passed.
        seconds: u64,
    },
}

/// Read access to one layer: its inode table and the verified bytes of its files.
///
/// Implementations own fetching, caching and verification; the filesystem core only checks
/// the node type and clamps ranges before calling [`FileSource::read`].
pub trait FileSource: Send + Sync + 'static {
    /// The layer's inode table.
    fn index(&self) -> &LayerIndex;

    /// Reads `len` bytes of regular file `node` starting at `offset`.
    ///
    /// The caller guarantees that `node` is a regular file and that `offset + len` does not
    /// exceed its size, so a successful read returns exactly `len` bytes.
    fn read(
        &self,
        node: NodeId,
        offset: u64,
        len: u64,
    ) -> BoxFuture<'_, Result<Bytes, FsReadError>>;
}
