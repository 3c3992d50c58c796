//! Read-only views of descriptors, manifests and indexes, and the checks done on them.
//!
//! The documents themselves are edited through [`crate::json_edit::RawObject`] so unknown
//! members survive; these types only decode what the converter needs to read.

use std::collections::BTreeMap;

use serde::Deserialize;

use crate::error::ConvertError;
use crate::json_edit::RawObject;
use crate::media::{self, DocumentKind};
use crate::platform::Platform;

/// Largest manifest or index accepted, in bytes. Registries commonly cap manifests at 4 MiB.
pub const MAX_MANIFEST_BYTES: u64 = 16 << 20;
/// Largest image config accepted, in bytes.
pub const MAX_CONFIG_BYTES: u64 = 64 << 20;

/// An OCI content descriptor.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Descriptor {
    /// Media type of the referenced content.
    pub media_type: String,
    /// `sha256:<hex>` digest of the content.
    pub digest: String,
    /// Size of the content in bytes.
    pub size: u64,
    /// Descriptor annotations.
    #[serde(default)]
    pub annotations: BTreeMap<String, String>,
    /// Platform of an index entry.
    #[serde(default)]
    pub platform: Option<Platform>,
}

impl Descriptor {
    /// Checks that the digest is a well-formed `sha256:` digest, the only algorithm handled.
    pub fn check_digest(&self, what: &'static str) -> Result<(), ConvertError> {
        self.digest
            .parse::<estargz::Digest>()
            .map(|_| ())
            .map_err(|_| ConvertError::UnsupportedMediaType {
                what,
                digest: self.digest.clone(),
                media_type: self.media_type.clone(),
                hint: "; only sha256 digests are supported",
            })
    }
}

/// The fields of an image manifest the converter reads.
#[derive(Debug, Clone)]
pub struct ManifestView {
    /// The config descriptor.
    pub config: Descriptor,
    /// Layer descriptors, bottom first.
    pub layers: Vec<Descriptor>,
    /// The whole document, for rewriting.
    pub object: RawObject,
}

/// The fields of an index the converter reads.
#[derive(Debug, Clone)]
pub struct IndexView {
    /// Entries in document order.
    pub manifests: Vec<Descriptor>,
    /// The whole document, for rewriting.
    pub object: RawObject,
}

/// Determines whether `bytes` is a manifest or an index, from its `mediaType` member, or from its
/// shape when the member is absent (OCI allows that).
pub fn classify(bytes: &[u8], what: &str) -> Result<(DocumentKind, RawObject), ConvertError> {
    let invalid = |reason: String| ConvertError::InvalidDocument {
        what: "manifest",
        digest: what.to_string(),
        reason,
    };
    let object = RawObject::parse(bytes).map_err(invalid)?;
    let media_type: Option<String> = object.get_as("mediaType").map_err(invalid)?;
    let schema: Option<i64> = object.get_as("schemaVersion").map_err(invalid)?;
    if let Some(media_type) = &media_type {
        if media::is_schema1(media_type) || schema == Some(1) {
            return Err(ConvertError::UnsupportedMediaType {
                what: "manifest",
                digest: what.to_string(),
                media_type: media_type.clone(),
                hint: "; Docker schema 1 images must be converted to schema 2 first (skopeo copy --format v2s2)",
            });
        }
        return match media::document_kind(media_type) {
            Some(kind) => Ok((kind, object)),
            None => Err(ConvertError::UnsupportedMediaType {
                what: "manifest",
                digest: what.to_string(),
                media_type: media_type.clone(),
                hint: "",
            }),
        };
    }
    if schema == Some(1) {
        return Err(ConvertError::UnsupportedMediaType {
            what: "manifest",
            digest: what.to_string(),
            media_type: "schemaVersion 1".into(),
            hint: "; Docker schema 1 images must be converted to schema 2 first (skopeo copy --format v2s2)",
        });
    }
    if object.get("manifests").is_some() {
        Ok((DocumentKind::Index, object))
    } else if object.get("layers").is_some() && object.get("config").is_some() {
        Ok((DocumentKind::Manifest, object))
    } else {
        Err(invalid(
            "it has no mediaType and neither manifests nor config and layers".into(),
        ))
    }
}

/// Decodes the manifest fields the converter needs.
pub fn manifest_view(object: RawObject, digest: &str) -> Result<ManifestView, ConvertError> {
    let invalid = |reason: String| ConvertError::InvalidDocument {
        what: "manifest",
        digest: digest.to_string(),
        reason,
    };
    let config: Descriptor = object
        .get_as("config")
        .map_err(invalid)?
        .ok_or_else(|| invalid("no config".into()))?;
    let layers: Vec<Descriptor> = object
        .get_as("layers")
        .map_err(invalid)?
        .unwrap_or_default();
    config.check_digest("config")?;
    for layer in &layers {
        layer.check_digest("layer")?;
    }
    Ok(ManifestView {
        config,
        layers,
        object,
    })
}

/// Decodes the index fields the converter needs.
pub fn index_view(object: RawObject, digest: &str) -> Result<IndexView, ConvertError> {
    let invalid = |reason: String| ConvertError::InvalidDocument {
        what: "index",
        digest: digest.to_string(),
        reason,
    };
    let manifests: Vec<Descriptor> = object
        .get_as("manifests")
        .map_err(invalid)?
        .ok_or_else(|| invalid("no manifests".into()))?;
    for entry in &manifests {
        entry.check_digest("manifest")?;
    }
    Ok(IndexView { manifests, object })
}

/// Checks fetched bytes against the descriptor they were requested by.
pub fn verify_content(
    what: &'static str,
    descriptor_digest: &str,
    expected_size: Option<u64>,
    bytes: &[u8],
) -> Result<(), ConvertError> {
    let actual = estargz::Digest::of(bytes);
    if actual.to_string() != descriptor_digest {
        return Err(ConvertError::DigestMismatch {
            what,
            expected: descriptor_digest.to_string(),
            actual,
        });
    }
    if let Some(expected) = expected_size
        && expected != bytes.len() as u64
    {
        return Err(ConvertError::SizeMismatch {
            what,
            digest: descriptor_digest.to_string(),
            expected,
            actual: bytes.len() as u64,
        });
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn index_without_media_type_is_recognised_by_shape() {
        let (kind, _) = classify(br#"{"schemaVersion":2,"manifests":[]}"#, "x").unwrap();
        assert_eq!(kind, DocumentKind::Index);
        let (kind, _) = classify(br#"{"schemaVersion":2,"config":{},"layers":[]}"#, "x").unwrap();
        assert_eq!(kind, DocumentKind::Manifest);
    }

    #[test]
    fn schema1_is_rejected_with_advice() {
        let err = classify(br#"{"schemaVersion":1,"fsLayers":[]}"#, "x").unwrap_err();
        assert!(
            err.to_string().contains("skopeo copy --format v2s2"),
            "{err}"
        );
    }

    #[test]
    fn unknown_media_type_is_rejected() {
        let err = classify(br#"{"mediaType":"application/vnd.example+json"}"#, "x").unwrap_err();
        assert!(
            matches!(err, ConvertError::UnsupportedMediaType { .. }),
            "{err}"
        );
    }

    #[test]
    fn non_sha256_layer_digest_is_rejected() {
        let doc = br#"{"mediaType":"application/vnd.oci.image.manifest.v1+json","config":{"mediaType":"a","digest":"sha256:0000000000000000000000000000000000000000000000000000000000000000","size":1},"layers":[{"mediaType":"b","digest":"sha512:00","size":1}]}"#;
        let (_, object) = classify(doc, "x").unwrap();
        assert!(manifest_view(object, "x").is_err());
    }

    #[test]
    fn content_with_wrong_digest_is_rejected() {
        let digest = estargz::Digest::of(b"abc").to_string();
        assert!(verify_content("manifest", &digest, Some(3), b"abc").is_ok());
        assert!(matches!(
            verify_content("manifest", &digest, None, b"abd"),
            Err(ConvertError::DigestMismatch { .. })
        ));
        assert!(matches!(
            verify_content("manifest", &digest, Some(4), b"abc"),
            Err(ConvertError::SizeMismatch { .. })
        ));
    }
}
