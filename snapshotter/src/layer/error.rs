//! The error type of lazily read layers.

use estargz::{Digest, TocError};

use crate::cache::{ConfigError, FillError};
use crate::fetch::FetchError;
use crate::remote::RemoteError;

/// Opening or reading a layer failed.
///
/// The FUSE adapter maps [`LayerError::Fetch`] to `EIO`, [`LayerError::NoSuchNode`] to `ENOENT`
/// and [`LayerError::NotARegularFile`] to `EISDIR` or `EINVAL`. The containerd plugin pulls a
/// layer normally when [`LayerError::is_not_lazy_pullable`] is true.
#[derive(Debug, thiserror::Error)]
pub enum LayerError {
    /// The configuration is invalid.
    #[error(transparent)]
    InvalidConfig(#[from] ConfigError),
    /// The descriptor's TOC-digest annotation is not a valid digest.
    #[error("layer {layer} has an invalid TOC digest annotation {value:?}")]
    InvalidTocAnnotation {
        /// Layer blob digest.
        layer: Digest,
        /// The annotation's value, cut to 100 characters.
        value: String,
    },
    /// The layer has no TOC digest and unverified layers are not allowed.
    #[error("layer {layer} has no TOC digest; set allow_unverified to mount it without one")]
    MissingTocDigest {
        /// Layer blob digest.
        layer: Digest,
    },
    /// The blob source reports another size than the descriptor.
    #[error(
        "layer {layer} is {actual} bytes in the blob source, but its descriptor says {expected}"
    )]
    SizeMismatch {
        /// Layer blob digest.
        layer: Digest,
        /// Size from the descriptor.
        expected: u64,
        /// Size from the source.
        actual: u64,
    },
    /// Reading the footer or the TOC failed.
    #[error("reading bytes {start}..{end} of layer {layer} ({what}) failed")]
    Remote {
        /// Layer blob digest.
        layer: Digest,
        /// Part of the blob being read.
        what: &'static str,
        /// First blob byte requested.
        start: u64,
        /// One past the last blob byte requested.
        end: u64,
        /// The failure.
        #[source]
        source: Box<RemoteError>,
    },
    /// The blob has no eStargz, legacy stargz or zstd:chunked footer.
    #[error("layer {layer} is not eStargz: {reasons}")]
    NotEstargz {
        /// Layer blob digest.
        layer: Digest,
        /// The reason each footer variant was rejected.
        reasons: String,
    },
    /// The descriptor has a TOC digest, so the layer was built as eStargz, but the blob has no
    /// footer. The blob is truncated or corrupt, or the registry served other bytes.
    #[error(
        "layer {layer} is annotated with TOC digest {toc_digest}, but the end of its {size}-byte blob \
         holds no eStargz footer ({reasons}). The blob looks truncated or corrupt: check that the \
         registry serves it with the descriptor's size and digest, or push the image again"
    )]
    DamagedBlob {
        /// Layer blob digest.
        layer: Digest,
        /// Blob size from the descriptor.
        size: u64,
        /// TOC digest from the descriptor.
        toc_digest: Digest,
        /// The reason each footer variant was rejected.
        reasons: String,
    },
    /// The blob keeps its TOC in a separate image, which is not supported.
    #[error("layer {layer} uses an external TOC, which lazy reads do not support")]
    ExternalToc {
        /// Layer blob digest.
        layer: Digest,
    },
    /// The TOC could not be decoded, failed verification or is invalid.
    #[error("the TOC of layer {layer} is unusable")]
    Toc {
        /// Layer blob digest.
        layer: Digest,
        /// The failure.
        #[source]
        source: TocError,
    },
    /// The TOC decoding task panicked or was cancelled.
    #[error("decoding the TOC of layer {layer} did not finish")]
    TocTask {
        /// Layer blob digest.
        layer: Digest,
    },
    /// No node has this id.
    #[error("layer {layer} has no node {node}")]
    NoSuchNode {
        /// Layer blob digest.
        layer: Digest,
        /// The node id.
        node: u32,
    },
    /// The node is not a regular file, so it has no content to read.
    #[error("node {node} of layer {layer} is not a regular file")]
    NotARegularFile {
        /// Layer blob digest.
        layer: Digest,
        /// The node id.
        node: u32,
    },
    /// A chunk needed by the read could not be fetched and verified.
    #[error("reading {len} bytes at offset {offset} of node {node} of layer {layer} failed")]
    Fetch {
        /// Layer blob digest.
        layer: Digest,
        /// The node id.
        node: u32,
        /// File offset of the read.
        offset: u64,
        /// Length of the read.
        len: u32,
        /// The failure, shared with every reader of the chunk.
        #[source]
        source: FillError,
    },
    /// A cached chunk has another length than the index records, so the cache or the index is broken.
    #[error(
        "chunk of node {node} of layer {layer} at file offset {file_offset} has {found} bytes, expected {expected}"
    )]
    ChunkLength {
        /// Layer blob digest.
        layer: Digest,
        /// The node id.
        node: u32,
        /// File offset of the chunk.
        file_offset: u64,
        /// Length from the index.
        expected: u64,
        /// Length of the bytes obtained.
        found: u64,
    },
}

impl LayerError {
    /// Whether the layer cannot be read lazily at all (not eStargz, a damaged blob, external TOC,
    /// or a TOC that does not match its digest), so the caller should pull it normally. A full
    /// pull verifies the blob digest, so it also copes with a registry that serves wrong ranges.
    pub fn is_not_lazy_pullable(&self) -> bool {
        match self {
            LayerError::NotEstargz { .. }
            | LayerError::DamagedBlob { .. }
            | LayerError::ExternalToc { .. } => true,
            LayerError::Toc { source, .. } => matches!(source, TocError::DigestMismatch { .. }),
            _ => false,
        }
    }

    /// Returns the fetch failure behind a [`LayerError::Fetch`], when it came from the fetcher.
    pub fn fetch_error(&self) -> Option<&FetchError> {
        match self {
            LayerError::Fetch { source, .. } => source.downcast_ref::<FetchError>(),
            _ => None,
        }
    }
}
