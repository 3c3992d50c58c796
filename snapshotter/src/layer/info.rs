//! [`LayerInfo`]: what opening a layer needs to know about it.

use estargz::{Digest, TOC_DIGEST_ANNOTATION};

use crate::remote::LayerDescriptor;

use super::error::LayerError;

/// Identity of a layer to open: its blob digest and size, the trusted TOC digest, and an
/// optional prefetch size from the containerd label `containerd.io/snapshot/remote/stargz.prefetch`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LayerInfo {
    /// Digest of the layer blob; it names the layer in the cache.
    pub digest: Digest,
    /// Size of the blob in bytes.
    pub size: u64,
    /// Digest of the TOC JSON, from the descriptor's annotation or a snapshot label.
    pub toc_digest: Option<Digest>,
    /// Blob bytes to prefetch when the layer has no landmark, overriding the configured default.
    pub prefetch_bytes: Option<u64>,
}

impl LayerInfo {
    /// Creates the identity of a layer without a prefetch override.
    pub fn new(digest: Digest, size: u64, toc_digest: Option<Digest>) -> Self {
        LayerInfo {
            digest,
            size,
            toc_digest,
            prefetch_bytes: None,
        }
    }

    /// Reads digest, size and the `containerd.io/snapshot/stargz/toc.digest` annotation from a
    /// manifest's layer descriptor.
    pub fn from_descriptor(descriptor: &LayerDescriptor) -> Result<Self, LayerError> {
        let toc_digest = match descriptor.annotations.get(TOC_DIGEST_ANNOTATION) {
            Some(value) => Some(
                value
                    .parse()
                    .map_err(|_| LayerError::InvalidTocAnnotation {
                        layer: descriptor.digest,
                        value: value.chars().take(100).collect(),
                    })?,
            ),
            None => None,
        };
        Ok(LayerInfo::new(
            descriptor.digest,
            descriptor.size,
            toc_digest,
        ))
    }
}
