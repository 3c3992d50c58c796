//! Image references and their resolution to a manifest, a config and layer descriptors.

use std::collections::BTreeMap;
use std::fmt;
use std::path::{Path, PathBuf};
use std::str::FromStr;
use std::sync::Arc;

use bytes::Bytes;
use estargz::digest::Digest;
use oci_client::Reference;
use oci_spec::image::{Descriptor, ImageManifest};

use super::client::RegistryClient;
use super::config::RegistryConfig;
use super::credentials::Credentials;
use super::error::RemoteError;
use super::fetch::Repo;
use super::layout::Layout;
use super::local::LocalBlobSource;
use super::manifest::{Document, Platform, parse_document, select_platform};
use super::registry::RegistryBlobSource;
use super::{BlobSource, parse_digest};

/// Largest manifest or index accepted, as in containerd.
const MAX_MANIFEST: u64 = 4 << 20;
/// Largest image config accepted.
const MAX_CONFIG: u64 = 16 << 20;
/// Tag used when an `oci:DIR` reference names none.
const DEFAULT_TAG: &str = "latest";
/// Prefix of OCI layout references.
const LAYOUT_PREFIX: &str = "oci:";

/// Location of an image: a registry reference or a tag in an OCI layout directory.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ImageRef {
    /// `registry/repository:tag` or `registry/repository@sha256:...`; Docker Hub names
    /// (`alpine`, `user/app`) are expanded to `docker.io/...`.
    Registry(Reference),
    /// `oci:DIR[:TAG]`: the manifest tagged `TAG` (default `latest`) in `DIR/index.json`.
    Layout {
        /// Layout directory.
        dir: PathBuf,
        /// Value of the `org.opencontainers.image.ref.name` annotation to look for.
        tag: String,
    },
}

impl ImageRef {
    /// Parses a registry reference or `oci:DIR[:TAG]`.
    pub fn parse(text: &str) -> Result<Self, RemoteError> {
        let invalid = |reason: String| RemoteError::InvalidReference {
            input: text.to_owned(),
            reason,
        };
        if let Some(rest) = text.strip_prefix(LAYOUT_PREFIX) {
            let (dir, tag) = match rest.rsplit_once(':') {
                Some((dir, tag)) if is_tag(tag) => (dir, tag),
                _ => (rest, DEFAULT_TAG),
            };
            if dir.is_empty() {
                return Err(invalid("the layout directory is empty".into()));
            }
            return Ok(ImageRef::Layout {
                dir: PathBuf::from(dir),
                tag: tag.to_owned(),
            });
        }
        let reference = Reference::try_from(text).map_err(|err| invalid(err.to_string()))?;
        if let Some(digest) = reference.digest() {
            parse_digest(digest)?;
        }
        Ok(ImageRef::Registry(reference))
    }
}

/// Checks that `text` is a tag as the distribution spec allows: `[A-Za-z0-9_][A-Za-z0-9_.-]{0,127}`.
fn is_tag(text: &str) -> bool {
    let mut chars = text.chars();
    let first_ok = chars
        .next()
        .is_some_and(|c| c.is_ascii_alphanumeric() || c == '_');
    first_ok && text.len() <= 128 && chars.all(|c| c.is_ascii_alphanumeric() || "_.-".contains(c))
}

impl FromStr for ImageRef {
    type Err = RemoteError;

    fn from_str(text: &str) -> Result<Self, Self::Err> {
        ImageRef::parse(text)
    }
}

impl fmt::Display for ImageRef {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ImageRef::Registry(reference) => write!(f, "{reference}"),
            ImageRef::Layout { dir, tag } => write!(f, "{LAYOUT_PREFIX}{}:{tag}", dir.display()),
        }
    }
}

/// One layer of a resolved image, from the manifest.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LayerDescriptor {
    /// Digest of the (compressed) layer blob.
    pub digest: Digest,
    /// Blob size in bytes.
    pub size: u64,
    /// Media type, such as `application/vnd.oci.image.layer.v1.tar+gzip`.
    pub media_type: String,
    /// Descriptor annotations, such as the eStargz TOC digest.
    pub annotations: BTreeMap<String, String>,
}

/// The image config blob, verified against its digest.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConfigBlob {
    /// Digest from the manifest.
    pub digest: Digest,
    /// The exact bytes, as stored.
    pub bytes: Bytes,
}

/// An image reference resolved to one platform's manifest.
///
/// Holds the client (or layout directory) it came from, so that [`Self::open_layer`] reuses
/// its connections and tokens.
pub struct ResolvedImage {
    /// The reference that was resolved.
    pub reference: ImageRef,
    /// Digest of the platform manifest (not of the index that led to it).
    pub manifest_digest: Digest,
    /// The platform manifest's exact bytes.
    pub manifest: Bytes,
    /// The image config.
    pub config: ConfigBlob,
    /// Layers, bottom first.
    pub layers: Vec<LayerDescriptor>,
    origin: Origin,
}

enum Origin {
    Registry {
        client: RegistryClient,
        registry: String,
        repository: String,
    },
    Layout(Layout),
}

impl fmt::Debug for ResolvedImage {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ResolvedImage")
            .field("reference", &self.reference)
            .field("manifest_digest", &self.manifest_digest)
            .field("config", &self.config.digest)
            .field("layers", &self.layers)
            .finish_non_exhaustive()
    }
}

impl ResolvedImage {
    /// Opens a blob source for `layer`, with its size taken from the descriptor.
    pub async fn open_layer(
        &self,
        layer: &LayerDescriptor,
    ) -> Result<Arc<dyn BlobSource>, RemoteError> {
        match &self.origin {
            Origin::Registry {
                client,
                registry,
                repository,
            } => {
                let source = RegistryBlobSource::open(
                    client,
                    registry,
                    repository,
                    &layer.digest,
                    Some(layer.size),
                )
                .await?;
                Ok(Arc::new(source))
            }
            Origin::Layout(layout) => Ok(Arc::new(
                open_layout_blob(layout, &layer.digest, Some(layer.size)).await?,
            )),
        }
    }
}

/// Resolves `image` for linux on this machine's architecture, with a new client.
///
/// Prefer [`resolve_with`] and one long-lived [`RegistryClient`] when resolving several
/// images, so that they share connections and tokens.
pub async fn resolve(
    image: &ImageRef,
    config: &RegistryConfig,
    credentials: Arc<dyn Credentials>,
) -> Result<ResolvedImage, RemoteError> {
    let client = RegistryClient::new(config.clone(), credentials)?;
    resolve_with(&client, image, &Platform::host()).await
}

/// Resolves `image` to the manifest for `platform`, its config and its layers.
///
/// An index is followed to the manifest for `platform` (the error lists the platforms it
/// offers). Every document is checked against the digest that named it: the reference's
/// digest when pinned, the index entry, the manifest's config descriptor.
pub async fn resolve_with(
    client: &RegistryClient,
    image: &ImageRef,
    platform: &Platform,
) -> Result<ResolvedImage, RemoteError> {
    let (origin, top) = match image {
        ImageRef::Registry(reference) => {
            let (registry, repository) = (reference.registry(), reference.repository());
            let top = fetch_top_from_registry(
                Repo {
                    client,
                    registry,
                    repository,
                },
                reference,
            )
            .await?;
            let origin = Origin::Registry {
                client: client.clone(),
                registry: registry.to_owned(),
                repository: repository.to_owned(),
            };
            (origin, top)
        }
        ImageRef::Layout { dir, tag } => {
            let layout = Layout::new(dir);
            let descriptor = layout.find_tag(tag).await?;
            let origin = Origin::Layout(layout);
            let top = fetch_by_descriptor(&origin, &descriptor, Kind::Manifest).await?;
            (origin, top)
        }
    };

    let (manifest_digest, manifest_bytes, manifest) =
        match parse_document(&top.bytes, top.content_type.as_deref())? {
            Document::Manifest(manifest) => (top.digest, top.bytes, manifest),
            Document::Index(index) => {
                let entry = select_platform(&index, platform)?;
                let child = fetch_by_descriptor(&origin, entry, Kind::Manifest).await?;
                match parse_document(&child.bytes, child.content_type.as_deref())? {
                    Document::Manifest(manifest) => (child.digest, child.bytes, manifest),
                    Document::Index(_) => {
                        return Err(RemoteError::InvalidManifest {
                            what: "image index",
                            reason: format!(
                                "entry {} for {platform} is another index",
                                child.digest
                            ),
                        });
                    }
                }
            }
        };

    let config = fetch_by_descriptor(&origin, manifest.config(), Kind::Config).await?;
    let layers = layer_descriptors(&manifest)?;
    Ok(ResolvedImage {
        reference: image.clone(),
        manifest_digest,
        manifest: manifest_bytes,
        config: ConfigBlob {
            digest: config.digest,
            bytes: config.bytes,
        },
        layers,
        origin,
    })
}

/// Kind of content a descriptor names. In a registry, manifests and blobs have different URLs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind {
    Manifest,
    Config,
}

impl Kind {
    fn label(self) -> &'static str {
        match self {
            Kind::Manifest => "manifest",
            Kind::Config => "config",
        }
    }

    fn limit(self) -> u64 {
        match self {
            Kind::Manifest => MAX_MANIFEST,
            Kind::Config => MAX_CONFIG,
        }
    }
}

/// A fetched and verified document.
struct Verified {
    digest: Digest,
    bytes: Bytes,
    content_type: Option<String>,
}

async fn fetch_top_from_registry(
    repo: Repo<'_>,
    reference: &Reference,
) -> Result<Verified, RemoteError> {
    let pinned = reference.digest().map(parse_digest).transpose()?;
    let name = match (&pinned, reference.tag()) {
        (Some(digest), _) => digest.to_string(),
        (None, Some(tag)) => tag.to_owned(),
        (None, None) => DEFAULT_TAG.to_owned(),
    };
    let fetched = repo.manifest(&name, MAX_MANIFEST).await?;
    let digest = Digest::of(&fetched.bytes);
    if let Some(pinned) = pinned
        && pinned != digest
    {
        return Err(RemoteError::DigestMismatch {
            what: "manifest",
            expected: pinned.to_string(),
            actual: digest.to_string(),
        });
    }
    Ok(Verified {
        digest,
        bytes: fetched.bytes,
        content_type: fetched.content_type,
    })
}

/// Fetches what `descriptor` names (a manifest by digest, or a config blob) and checks its
/// size and digest.
async fn fetch_by_descriptor(
    origin: &Origin,
    descriptor: &Descriptor,
    kind: Kind,
) -> Result<Verified, RemoteError> {
    let (what, limit) = (kind.label(), kind.limit());
    let digest = parse_digest(descriptor.digest().as_ref())?;
    let expected_size = descriptor.size();
    if expected_size > limit {
        return Err(RemoteError::BodyTooLarge {
            from: format!("descriptor {digest}"),
            what,
            limit,
        });
    }
    let (bytes, content_type) = match origin {
        Origin::Registry {
            client,
            registry,
            repository,
        } => {
            let repo = Repo {
                client,
                registry,
                repository,
            };
            match kind {
                Kind::Manifest => {
                    let fetched = repo.manifest(&digest.to_string(), limit).await?;
                    (fetched.bytes, fetched.content_type)
                }
                Kind::Config => (repo.blob(&digest.to_string(), limit).await?, None),
            }
        }
        Origin::Layout(layout) => {
            let bytes = layout.read_blob(&digest, limit, what).await?;
            (bytes, Some(descriptor.media_type().to_string()))
        }
    };
    if bytes.len() as u64 != expected_size {
        return Err(RemoteError::SizeMismatch {
            what,
            digest: digest.to_string(),
            expected: expected_size,
            actual: bytes.len() as u64,
        });
    }
    let actual = Digest::of(&bytes);
    if actual != digest {
        return Err(RemoteError::DigestMismatch {
            what,
            expected: digest.to_string(),
            actual: actual.to_string(),
        });
    }
    Ok(Verified {
        digest,
        bytes,
        content_type,
    })
}

fn layer_descriptors(manifest: &ImageManifest) -> Result<Vec<LayerDescriptor>, RemoteError> {
    manifest
        .layers()
        .iter()
        .map(|layer| {
            Ok(LayerDescriptor {
                digest: parse_digest(layer.digest().as_ref())?,
                size: layer.size(),
                media_type: layer.media_type().to_string(),
                annotations: layer
                    .annotations()
                    .clone()
                    .unwrap_or_default()
                    .into_iter()
                    .collect(),
            })
        })
        .collect()
}

/// Opens the blob `digest` of `image` without fetching its manifest, for callers that already
/// know the layer digest (for example from snapshot labels).
///
/// For a registry, `size` should come from the layer descriptor; without it the size is
/// probed with a ranged GET. For an OCI layout, the blob file is opened and `size`, when
/// given, must match it.
pub async fn open_blob(
    client: &RegistryClient,
    image: &ImageRef,
    digest: &Digest,
    size: Option<u64>,
) -> Result<Arc<dyn BlobSource>, RemoteError> {
    match image {
        ImageRef::Registry(reference) => {
            let source = RegistryBlobSource::open(
                client,
                reference.registry(),
                reference.repository(),
                digest,
                size,
            )
            .await?;
            Ok(Arc::new(source))
        }
        ImageRef::Layout { dir, .. } => Ok(Arc::new(
            open_layout_blob(&Layout::new(dir), digest, size).await?,
        )),
    }
}

async fn open_layout_blob(
    layout: &Layout,
    digest: &Digest,
    size: Option<u64>,
) -> Result<LocalBlobSource, RemoteError> {
    let id = format!("{LAYOUT_PREFIX}{}@{digest}", layout.dir().display());
    LocalBlobSource::open(layout.blob_path(digest), id, size).await
}

/// Returns the directory of an `oci:` reference, or `None` for a registry reference.
pub fn layout_dir(image: &ImageRef) -> Option<&Path> {
    match image {
        ImageRef::Layout { dir, .. } => Some(dir),
        ImageRef::Registry(_) => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn registry_references_parse() {
        let image = ImageRef::parse("127.0.0.1:5000/lib/app:v1").unwrap();
        let ImageRef::Registry(reference) = &image else {
            panic!("{image:?}")
        };
        assert_eq!(reference.registry(), "127.0.0.1:5000");
        assert_eq!(reference.repository(), "lib/app");
        assert_eq!(reference.tag(), Some("v1"));

        let ImageRef::Registry(hub) = ImageRef::parse("alpine").unwrap() else {
            panic!()
        };
        assert_eq!(hub.registry(), "docker.io");
        assert_eq!(hub.repository(), "library/alpine");
        assert_eq!(hub.tag(), Some("latest"));

        let pinned = format!("ghcr.io/o/app@sha256:{}", "a".repeat(64));
        let ImageRef::Registry(reference) = ImageRef::parse(&pinned).unwrap() else {
            panic!()
        };
        assert_eq!(
            reference.digest(),
            Some(format!("sha256:{}", "a".repeat(64)).as_str())
        );
    }

    #[test]
    fn invalid_references_are_rejected() {
        for text in ["", "lib/UPPER", "a/b@sha256:abc", "a/b@sha512:00"] {
            assert!(ImageRef::parse(text).is_err(), "{text:?}");
        }
        assert!(ImageRef::parse("oci:").is_err());
        assert!(ImageRef::parse("oci::v1").is_err());
    }

    #[test]
    fn layout_references_parse() {
        assert_eq!(
            ImageRef::parse("oci:/tmp/img:v1.2").unwrap(),
            ImageRef::Layout {
                dir: "/tmp/img".into(),
                tag: "v1.2".into()
            }
        );
        assert_eq!(
            ImageRef::parse("oci:/tmp/img").unwrap(),
            ImageRef::Layout {
                dir: "/tmp/img".into(),
                tag: "latest".into()
            }
        );
        // The part after the last colon is not a tag, so it belongs to the path.
        assert_eq!(
            ImageRef::parse("oci:./a:b/c").unwrap(),
            ImageRef::Layout {
                dir: "./a:b/c".into(),
                tag: "latest".into()
            }
        );
        assert_eq!(
            ImageRef::parse("oci:/tmp/img:v1").unwrap().to_string(),
            "oci:/tmp/img:v1"
        );
    }
}
