//! Parsing image manifests and indexes, and choosing a platform from an index.

use std::fmt;

use oci_spec::image::{Descriptor, ImageIndex, ImageManifest};
use serde::Deserialize;

use super::error::RemoteError;

/// OCI image manifest.
pub(crate) const OCI_MANIFEST: &str = "application/vnd.oci.image.manifest.v1+json";
/// OCI image index.
pub(crate) const OCI_INDEX: &str = "application/vnd.oci.image.index.v1+json";
/// Docker image manifest, schema 2.
pub(crate) const DOCKER_MANIFEST: &str = "application/vnd.docker.distribution.manifest.v2+json";
/// Docker manifest list.
pub(crate) const DOCKER_MANIFEST_LIST: &str =
    "application/vnd.docker.distribution.manifest.list.v2+json";

/// The `Accept` header for manifest requests: every type this module parses.
pub(crate) const MANIFEST_ACCEPT: &str = "application/vnd.oci.image.manifest.v1+json, \
     application/vnd.oci.image.index.v1+json, \
     application/vnd.docker.distribution.manifest.v2+json, \
     application/vnd.docker.distribution.manifest.list.v2+json";

/// A parsed manifest-like document.
#[derive(Debug)]
pub(crate) enum Document {
    /// A single-platform image manifest.
    Manifest(Box<ImageManifest>),
    /// An index (or Docker manifest list) of per-platform manifests.
    Index(Box<ImageIndex>),
}

/// Parses `bytes` as a manifest or an index.
///
/// The type comes from the document's `mediaType`, else from the `Content-Type` it was served
/// with, else from its shape (`manifests` means an index).
pub(crate) fn parse_document(
    bytes: &[u8],
    content_type: Option<&str>,
) -> Result<Document, RemoteError> {
    #[derive(Deserialize)]
    #[serde(rename_all = "camelCase")]
    struct Probe {
        schema_version: Option<u32>,
        media_type: Option<String>,
        manifests: Option<serde::de::IgnoredAny>,
    }
    let probe: Probe = serde_json::from_slice(bytes).map_err(|err| invalid("manifest", err))?;
    if probe.schema_version != Some(2) {
        return Err(RemoteError::InvalidManifest {
            what: "manifest",
            reason: format!(
                "schemaVersion {:?} is not supported, only 2",
                probe.schema_version
            ),
        });
    }
    let declared = probe
        .media_type
        .as_deref()
        .or_else(|| content_type.map(|value| value.split(';').next().unwrap_or("").trim()));
    let is_index = match declared {
        Some(OCI_INDEX | DOCKER_MANIFEST_LIST) => true,
        Some(OCI_MANIFEST | DOCKER_MANIFEST) => false,
        _ => probe.manifests.is_some(),
    };
    if is_index {
        let index: ImageIndex =
            serde_json::from_slice(bytes).map_err(|err| invalid("image index", err))?;
        Ok(Document::Index(Box::new(index)))
    } else {
        let manifest: ImageManifest =
            serde_json::from_slice(bytes).map_err(|err| invalid("image manifest", err))?;
        Ok(Document::Manifest(Box::new(manifest)))
    }
}

fn invalid(what: &'static str, err: serde_json::Error) -> RemoteError {
    RemoteError::InvalidManifest {
        what,
        reason: err.to_string(),
    }
}

/// An operating system, architecture and optional CPU variant, as in OCI descriptors.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Platform {
    /// Operating system in Go's GOOS terms, such as `linux`.
    pub os: String,
    /// Architecture in Go's GOARCH terms, such as `amd64` or `arm64`.
    pub architecture: String,
    /// CPU variant, such as `v8`; `None` accepts any variant.
    pub variant: Option<String>,
}

impl Platform {
    /// Linux on the architecture this program was built for.
    pub fn host() -> Self {
        let architecture = match std::env::consts::ARCH {
            "x86_64" => "amd64",
            "x86" => "386",
            "aarch64" => "arm64",
            "arm" => "arm",
            "powerpc64" if cfg!(target_endian = "little") => "ppc64le",
            "powerpc64" => "ppc64",
            "s390x" => "s390x",
            "riscv64" => "riscv64",
            "loongarch64" => "loong64",
            other => other,
        };
        Platform {
            os: "linux".into(),
            architecture: architecture.into(),
            variant: None,
        }
    }

    /// Parses `os/arch[/variant]`.
    pub fn parse(text: &str) -> Option<Self> {
        let mut parts = text.split('/');
        let os = parts.next().filter(|part| !part.is_empty())?;
        let architecture = parts.next().filter(|part| !part.is_empty())?;
        let variant = parts.next().map(str::to_owned);
        if parts.next().is_some() || variant.as_deref() == Some("") {
            return None;
        }
        Some(Platform {
            os: os.into(),
            architecture: architecture.into(),
            variant,
        })
    }

    fn matches(&self, os: &str, architecture: &str, variant: Option<&str>) -> bool {
        if self.os != os || self.architecture != architecture {
            return false;
        }
        match (&self.variant, variant) {
            (None, _) => true,
            (Some(wanted), Some(found)) => wanted == found,
            // arm64 images often omit the implied variant v8.
            (Some(wanted), None) => architecture == "arm64" && wanted == "v8",
        }
    }
}

impl fmt::Display for Platform {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.os, self.architecture)?;
        if let Some(variant) = &self.variant {
            write!(f, "/{variant}")?;
        }
        Ok(())
    }
}

/// Picks the manifest for `wanted` from `index`; the error lists the platforms offered.
pub(crate) fn select_platform<'a>(
    index: &'a ImageIndex,
    wanted: &Platform,
) -> Result<&'a Descriptor, RemoteError> {
    let mut available = Vec::new();
    for entry in index.manifests() {
        let Some(platform) = entry.platform() else {
            continue;
        };
        let os = platform.os().to_string();
        let architecture = platform.architecture().to_string();
        let variant = platform.variant().as_deref();
        if wanted.matches(&os, &architecture, variant) {
            return Ok(entry);
        }
        let offered = Platform {
            os,
            architecture,
            variant: variant.map(str::to_owned),
        };
        available.push(offered.to_string());
    }
    Err(RemoteError::NoMatchingPlatform {
        wanted: wanted.to_string(),
        available,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    const INDEX: &str = r#"{
        "schemaVersion": 2,
        "mediaType": "application/vnd.oci.image.index.v1+json",
        "manifests": [
            {"mediaType": "application/vnd.oci.image.manifest.v1+json", "size": 10,
             "digest": "sha256:1111111111111111111111111111111111111111111111111111111111111111",
             "platform": {"os": "linux", "architecture": "amd64"}},
            {"mediaType": "application/vnd.oci.image.manifest.v1+json", "size": 10,
             "digest": "sha256:2222222222222222222222222222222222222222222222222222222222222222",
             "platform": {"os": "linux", "architecture": "arm64", "variant": "v8"}},
            {"mediaType": "application/vnd.oci.image.manifest.v1+json", "size": 10,
             "digest": "sha256:3333333333333333333333333333333333333333333333333333333333333333",
             "platform": {"os": "unknown", "architecture": "unknown"}}
        ]
    }"#;

    fn index() -> ImageIndex {
        match parse_document(INDEX.as_bytes(), None).unwrap() {
            Document::Index(index) => *index,
            other => panic!("expected an index, got {other:?}"),
        }
    }

    #[test]
    fn platform_selection_by_arch_and_variant() {
        let index = index();
        let amd64 = select_platform(&index, &Platform::parse("linux/amd64").unwrap()).unwrap();
        assert!(amd64.digest().to_string().starts_with("sha256:1111"));
        let arm64 = select_platform(&index, &Platform::parse("linux/arm64/v8").unwrap()).unwrap();
        assert!(arm64.digest().to_string().starts_with("sha256:2222"));
    }

    #[test]
    fn missing_platform_error_names_the_offered_ones() {
        let err = select_platform(&index(), &Platform::parse("linux/s390x").unwrap()).unwrap_err();
        let text = err.to_string();
        assert!(text.contains("linux/s390x"), "{text}");
        assert!(text.contains("linux/amd64"), "{text}");
        assert!(text.contains("linux/arm64/v8"), "{text}");
    }

    #[test]
    fn host_platform_is_linux() {
        let host = Platform::host();
        assert_eq!(host.os, "linux");
        assert!(!host.architecture.is_empty());
    }

    #[test]
    fn platform_text_forms() {
        assert_eq!(
            Platform::parse("linux/arm/v7").unwrap().to_string(),
            "linux/arm/v7"
        );
        assert!(Platform::parse("linux").is_none());
        assert!(Platform::parse("linux/amd64/").is_none());
        assert!(Platform::parse("a/b/c/d").is_none());
    }

    #[test]
    fn document_type_from_content_type_or_shape() {
        let manifest = r#"{"schemaVersion": 2, "config": {"mediaType": "application/vnd.docker.container.image.v1+json", "size": 2, "digest": "sha256:1111111111111111111111111111111111111111111111111111111111111111"}, "layers": []}"#;
        assert!(matches!(
            parse_document(manifest.as_bytes(), Some(DOCKER_MANIFEST)).unwrap(),
            Document::Manifest(_)
        ));
        assert!(matches!(
            parse_document(manifest.as_bytes(), None).unwrap(),
            Document::Manifest(_)
        ));
        let index = r#"{"schemaVersion": 2, "manifests": []}"#;
        assert!(matches!(
            parse_document(index.as_bytes(), None).unwrap(),
            Document::Index(_)
        ));
    }

    #[test]
    fn schema1_and_garbage_are_rejected() {
        assert!(parse_document(br#"{"schemaVersion": 1, "fsLayers": []}"#, None).is_err());
        assert!(parse_document(b"<html>", None).is_err());
    }
}
