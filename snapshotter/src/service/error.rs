//! Why a remote layer could not be mounted.

use std::path::PathBuf;
use std::time::Duration;

use estargz::Digest;

use crate::layer::LayerError;
use crate::remote::RemoteError;

/// Why a remote layer could not be mounted. Each failure of a Prepare falls back to an
/// ordinary snapshot; a failure at restart marks the snapshot unavailable until a later
/// attempt succeeds.
#[derive(Debug, thiserror::Error)]
pub enum RemoteLayerError {
    /// The blob could not be located in the registry (size probe, auth).
    #[error("failed to resolve layer {digest} in {image}")]
    Resolve {
        /// Layer blob digest.
        digest: Digest,
        /// Image reference.
        image: String,
        /// The cause.
        #[source]
        source: RemoteError,
    },
    /// The layer could not be opened (not eStargz, TOC invalid or unreachable).
    #[error("failed to open layer {digest}")]
    Open {
        /// Layer blob digest.
        digest: Digest,
        /// The cause.
        #[source]
        source: LayerError,
    },
    /// The layer opened ahead of its Prepare has another TOC than the label names.
    #[error("layer {digest} has TOC {found}, but its label names TOC {expected}")]
    TocMismatch {
        /// Layer blob digest.
        digest: Digest,
        /// TOC digest from the label.
        expected: Digest,
        /// TOC digest of the blob.
        found: Digest,
    },
    /// Resolving and opening did not finish in time.
    #[error("resolving layer {digest} took longer than {limit:?}")]
    Timeout {
        /// Layer blob digest.
        digest: Digest,
        /// The limit.
        limit: Duration,
    },
    /// The FUSE mount failed.
    #[error("failed to mount layer {digest} at {path}")]
    Fuse {
        /// Layer blob digest.
        digest: Digest,
        /// Mount point.
        path: PathBuf,
        /// The cause.
        #[source]
        source: std::io::Error,
    },
    /// The stored labels of a remote snapshot no longer describe a layer.
    #[error("the stored labels of snapshot {name:?} do not describe a remote layer: {reason}")]
    Labels {
        /// Snapshot name.
        name: String,
        /// Why.
        reason: String,
    },
    /// A shared resolution failed; the first caller's error, shared.
    #[error(transparent)]
    Shared(std::sync::Arc<RemoteLayerError>),
}

impl RemoteLayerError {
    /// Whether the blob itself cannot be mounted lazily (not eStargz, external or mismatched
    /// TOC), as opposed to a failure that may pass (network, timeout).
    pub fn is_not_lazy(&self) -> bool {
        match self {
            RemoteLayerError::Open { source, .. } => source.is_not_lazy_pullable(),
            RemoteLayerError::TocMismatch { .. } => true,
            RemoteLayerError::Shared(inner) => inner.is_not_lazy(),
            _ => false,
        }
    }
}
