//! The error of a chunk fetch.

use estargz::{ChunkError, Digest};

use crate::remote::RemoteError;

/// A chunk could not be fetched and verified, after the configured retries.
///
/// Shared (in an `Arc`) by every reader that waited for the chunk. Nothing about it is cached.
#[derive(Debug, thiserror::Error)]
pub enum FetchError {
    /// The range request failed.
    #[error("reading bytes {start}..{end} of layer {layer} failed after {attempts} attempts")]
    Remote {
        /// Layer blob digest.
        layer: Digest,
        /// First blob byte requested.
        start: u64,
        /// One past the last blob byte requested.
        end: u64,
        /// Attempts made, the first included.
        attempts: u32,
        /// The last failure.
        #[source]
        source: RemoteError,
    },
    /// The bytes arrived but the chunk did not decompress or did not match its digest.
    #[error("chunk at blob offset {offset} of layer {layer} is invalid after {attempts} attempts")]
    Chunk {
        /// Layer blob digest.
        layer: Digest,
        /// Blob offset of the chunk's member.
        offset: u64,
        /// Attempts made, the first included.
        attempts: u32,
        /// The last failure.
        #[source]
        source: ChunkError,
    },
    /// The decompression task panicked or was cancelled.
    #[error("decompressing bytes {start}..{end} of layer {layer} did not finish")]
    DecodeTask {
        /// Layer blob digest.
        layer: Digest,
        /// First blob byte of the request.
        start: u64,
        /// One past the last blob byte of the request.
        end: u64,
    },
}

impl FetchError {
    /// Returns whether the chunk failed its digest check (the source served wrong bytes).
    pub fn is_verification_failure(&self) -> bool {
        matches!(
            self,
            FetchError::Chunk {
                source: ChunkError::DigestMismatch { .. },
                ..
            }
        )
    }
}
