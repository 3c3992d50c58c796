//! Media types of manifests, indexes, configs and layers, OCI and Docker schema 2.

/// OCI image manifest.
pub const OCI_MANIFEST: &str = "application/vnd.oci.image.manifest.v1+json";
/// OCI image index.
pub const OCI_INDEX: &str = "application/vnd.oci.image.index.v1+json";
/// OCI image config.
pub const OCI_CONFIG: &str = "application/vnd.oci.image.config.v1+json";
/// OCI uncompressed layer.
pub const OCI_LAYER_TAR: &str = "application/vnd.oci.image.layer.v1.tar";
/// OCI gzip layer.
pub const OCI_LAYER_GZIP: &str = "application/vnd.oci.image.layer.v1.tar+gzip";
/// OCI zstd layer.
pub const OCI_LAYER_ZSTD: &str = "application/vnd.oci.image.layer.v1.tar+zstd";
/// OCI non-distributable layers (deprecated by the spec, still found in Windows images).
const OCI_NONDISTRIBUTABLE_TAR: &str = "application/vnd.oci.image.layer.nondistributable.v1.tar";
const OCI_NONDISTRIBUTABLE_GZIP: &str =
    "application/vnd.oci.image.layer.nondistributable.v1.tar+gzip";
const OCI_NONDISTRIBUTABLE_ZSTD: &str =
    "application/vnd.oci.image.layer.nondistributable.v1.tar+zstd";

/// Docker schema 2 manifest.
pub const DOCKER_MANIFEST: &str = "application/vnd.docker.distribution.manifest.v2+json";
/// Docker manifest list.
pub const DOCKER_MANIFEST_LIST: &str = "application/vnd.docker.distribution.manifest.list.v2+json";
/// Docker schema 1 manifests, which carry no config and are not supported.
const DOCKER_SCHEMA1: [&str; 2] = [
    "application/vnd.docker.distribution.manifest.v1+json",
    "application/vnd.docker.distribution.manifest.v1+prettyjws",
];
/// Docker image config.
pub const DOCKER_CONFIG: &str = "application/vnd.docker.container.image.v1+json";
/// Docker gzip layer.
const DOCKER_LAYER_GZIP: &str = "application/vnd.docker.image.rootfs.diff.tar.gzip";
/// Docker uncompressed layer (rare, but written by some tools).
const DOCKER_LAYER_TAR: &str = "application/vnd.docker.image.rootfs.diff.tar";
/// Docker zstd layer (written by BuildKit with `compression=zstd` on Docker media types).
const DOCKER_LAYER_ZSTD: &str = "application/vnd.docker.image.rootfs.diff.tar.zstd";
/// Docker foreign layer (Windows base layers served from elsewhere).
const DOCKER_FOREIGN_GZIP: &str = "application/vnd.docker.image.rootfs.foreign.diff.tar.gzip";

/// Every manifest and index type this converter reads, for the registry's `Accept` header.
pub const ACCEPTED_MANIFESTS: [&str; 4] = [
    OCI_MANIFEST,
    OCI_INDEX,
    DOCKER_MANIFEST,
    DOCKER_MANIFEST_LIST,
];

/// Kind of a top-level document.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DocumentKind {
    /// An image manifest (OCI or Docker schema 2).
    Manifest,
    /// An image index or manifest list.
    Index,
}

/// Classifies a manifest or index media type. Returns `None` for anything else.
pub fn document_kind(media_type: &str) -> Option<DocumentKind> {
    match media_type {
        OCI_MANIFEST | DOCKER_MANIFEST => Some(DocumentKind::Manifest),
        OCI_INDEX | DOCKER_MANIFEST_LIST => Some(DocumentKind::Index),
        _ => None,
    }
}

/// True for Docker schema 1 manifests.
pub fn is_schema1(media_type: &str) -> bool {
    DOCKER_SCHEMA1.contains(&media_type)
}

/// True for the config media types this converter rewrites.
pub fn is_image_config(media_type: &str) -> bool {
    media_type == OCI_CONFIG || media_type == DOCKER_CONFIG
}

/// Handling of a layer, decided from its media type.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LayerClass {
    /// A tar layer that may be converted (its compression is detected from its bytes).
    Convertible,
    /// A non-distributable or foreign layer: kept as it is, never fetched or pushed.
    Foreign,
}

/// Classifies a layer media type. Returns `None` for types that are not filesystem layers.
pub fn layer_class(media_type: &str) -> Option<LayerClass> {
    match media_type {
        OCI_LAYER_TAR | OCI_LAYER_GZIP | OCI_LAYER_ZSTD | DOCKER_LAYER_GZIP | DOCKER_LAYER_TAR
        | DOCKER_LAYER_ZSTD => Some(LayerClass::Convertible),
        OCI_NONDISTRIBUTABLE_TAR
        | OCI_NONDISTRIBUTABLE_GZIP
        | OCI_NONDISTRIBUTABLE_ZSTD
        | DOCKER_FOREIGN_GZIP => Some(LayerClass::Foreign),
        _ => None,
    }
}

/// Returns the OCI media type to write for a kept foreign layer. Docker's foreign type becomes
/// the OCI non-distributable gzip type, and every other type stays.
pub fn oci_foreign_layer(media_type: &str) -> &str {
    if media_type == DOCKER_FOREIGN_GZIP {
        OCI_NONDISTRIBUTABLE_GZIP
    } else {
        media_type
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn docker_and_oci_documents_are_classified() {
        assert_eq!(document_kind(DOCKER_MANIFEST), Some(DocumentKind::Manifest));
        assert_eq!(document_kind(OCI_INDEX), Some(DocumentKind::Index));
        assert_eq!(document_kind(OCI_CONFIG), None);
        assert!(is_schema1(
            "application/vnd.docker.distribution.manifest.v1+prettyjws"
        ));
    }

    #[test]
    fn layers_are_classified() {
        assert_eq!(
            layer_class(DOCKER_LAYER_GZIP),
            Some(LayerClass::Convertible)
        );
        assert_eq!(layer_class(OCI_LAYER_ZSTD), Some(LayerClass::Convertible));
        assert_eq!(layer_class(DOCKER_FOREIGN_GZIP), Some(LayerClass::Foreign));
        assert_eq!(layer_class("application/vnd.in-toto+json"), None);
        assert_eq!(
            oci_foreign_layer(DOCKER_FOREIGN_GZIP),
            OCI_NONDISTRIBUTABLE_GZIP
        );
    }
}
