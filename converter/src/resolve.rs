//! Reading the source image: the top-level manifest or index, the selected platform manifests,
//! their configs, and the list of unique layers to process.

use std::collections::HashMap;

use crate::config::{ConfigView, read_config};
use crate::descriptor::{Descriptor, IndexView, ManifestView, classify, index_view, manifest_view};
use crate::error::ConvertError;
use crate::layer::{LayerJob, LayerResult};
use crate::media::{self, DocumentKind, LayerClass};
use crate::options::ConvertOptions;
use crate::platform::{self, Platform};
use crate::store::Source;

/// Annotation BuildKit puts on index entries that hold attestations rather than images.
const REFERENCE_TYPE_ANNOTATION: &str = "vnd.docker.reference.type";

/// The source image as read.
pub struct ResolvedImage {
    /// Digest of the top-level document.
    pub root_digest: String,
    /// Bytes of the top-level document.
    pub root_bytes: Vec<u8>,
    /// The top-level index, when the reference names one.
    pub index: Option<IndexView>,
    /// The image manifests to convert, in index order.
    pub manifests: Vec<ResolvedManifest>,
}

/// One image manifest with its config.
pub struct ResolvedManifest {
    /// Its entry in the index, when there is an index.
    pub entry: Option<Descriptor>,
    /// Position of that entry in the index's `manifests`.
    pub entry_position: Option<usize>,
    /// Digest of the manifest.
    pub digest: String,
    /// The original bytes.
    pub bytes: Vec<u8>,
    /// The decoded manifest.
    pub view: ManifestView,
    /// The original config bytes.
    pub config_bytes: Vec<u8>,
    /// The decoded config.
    pub config: ConfigView,
}

impl ResolvedManifest {
    /// Returns the platform, from the index entry or else from the config.
    pub fn platform(&self) -> Option<&Platform> {
        self.entry
            .as_ref()
            .and_then(|e| e.platform.as_ref())
            .or(self.config.platform.as_ref())
    }
}

/// Fetches and checks everything but the layer blobs.
pub async fn resolve(
    source: &Source,
    options: &ConvertOptions,
) -> Result<ResolvedImage, ConvertError> {
    let root = source.root().await?;
    let (kind, object) = classify(&root.bytes, &root.digest)?;
    match kind {
        DocumentKind::Manifest => {
            let manifest = resolve_manifest(
                source,
                None,
                root.digest.clone(),
                root.bytes.clone(),
                object,
            )
            .await?;
            if !platform::selected(&options.platforms, manifest.config.platform.as_ref()) {
                return Err(ConvertError::PlatformNotFound {
                    reference: options.source.to_string(),
                    requested: platforms_text(&options.platforms),
                    available: manifest
                        .config
                        .platform
                        .as_ref()
                        .map_or("unknown".into(), Platform::to_string),
                });
            }
            Ok(ResolvedImage {
                root_digest: root.digest,
                root_bytes: root.bytes,
                index: None,
                manifests: vec![manifest],
            })
        }
        DocumentKind::Index => {
            let index = index_view(object, &root.digest)?;
            let mut manifests = Vec::new();
            for (position, entry) in select_entries(&index, &root.digest, options)? {
                let bytes = source.manifest(&entry).await?;
                let (kind, object) = classify(&bytes, &entry.digest)?;
                if kind != DocumentKind::Manifest {
                    return Err(nested_index(&entry.digest));
                }
                let digest = entry.digest.clone();
                let mut manifest =
                    resolve_manifest(source, Some(entry), digest, bytes, object).await?;
                manifest.entry_position = Some(position);
                manifests.push(manifest);
            }
            Ok(ResolvedImage {
                root_digest: root.digest,
                root_bytes: root.bytes,
                index: Some(index),
                manifests,
            })
        }
    }
}

/// Picks the index entries to convert: image manifests of the requested platforms.
fn select_entries(
    index: &IndexView,
    digest: &str,
    options: &ConvertOptions,
) -> Result<Vec<(usize, Descriptor)>, ConvertError> {
    let mut selected = Vec::new();
    for (position, entry) in index.manifests.iter().enumerate() {
        match media::document_kind(&entry.media_type) {
            Some(DocumentKind::Manifest) => {}
            Some(DocumentKind::Index) => return Err(nested_index(&entry.digest)),
            None => {
                tracing::warn!(entry = %entry.digest, media_type = %entry.media_type, "skipping an index entry that is not an image manifest");
                continue;
            }
        }
        let attestation = entry
            .annotations
            .get(REFERENCE_TYPE_ANNOTATION)
            .is_some_and(|t| t == "attestation-manifest")
            || entry.platform.as_ref().is_some_and(Platform::is_unknown);
        if attestation {
            tracing::info!(entry = %entry.digest, "dropping an attestation manifest: it describes the unconverted image");
            continue;
        }
        if platform::selected(&options.platforms, entry.platform.as_ref()) {
            selected.push((position, entry.clone()));
        }
    }
    if selected.is_empty() {
        let available: Vec<String> = index
            .manifests
            .iter()
            .filter_map(|e| e.platform.as_ref())
            .map(Platform::to_string)
            .collect();
        if options.platforms.is_empty() {
            return Err(ConvertError::InvalidDocument {
                what: "index",
                digest: digest.to_string(),
                reason: "it lists no image manifest".into(),
            });
        }
        return Err(ConvertError::PlatformNotFound {
            reference: options.source.to_string(),
            requested: platforms_text(&options.platforms),
            available: if available.is_empty() {
                "none".into()
            } else {
                available.join(", ")
            },
        });
    }
    Ok(selected)
}

async fn resolve_manifest(
    source: &Source,
    entry: Option<Descriptor>,
    digest: String,
    bytes: Vec<u8>,
    object: crate::json_edit::RawObject,
) -> Result<ResolvedManifest, ConvertError> {
    let view = manifest_view(object, &digest)?;
    if !media::is_image_config(&view.config.media_type) {
        return Err(ConvertError::UnsupportedMediaType {
            what: "config of manifest",
            digest: digest.clone(),
            media_type: view.config.media_type.clone(),
            hint: "; only container images (OCI or Docker image configs) can be converted",
        });
    }
    for layer in &view.layers {
        if media::layer_class(&layer.media_type).is_none() {
            return Err(ConvertError::UnsupportedMediaType {
                what: "layer",
                digest: layer.digest.clone(),
                media_type: layer.media_type.clone(),
                hint: "; only tar layers (uncompressed, gzip or zstd) can be converted",
            });
        }
    }
    let config_bytes = source.config(&view.config).await?;
    let config = read_config(&config_bytes, &view.config.digest)?;
    if config.diff_ids.len() != view.layers.len() {
        return Err(ConvertError::LayerCountMismatch {
            manifest: digest,
            layers: view.layers.len(),
            diff_ids: config.diff_ids.len(),
        });
    }
    Ok(ResolvedManifest {
        entry,
        entry_position: None,
        digest,
        bytes,
        view,
        config_bytes,
        config,
    })
}

/// Lists the unique layers to fetch, in image order, and returns the results of foreign layers,
/// which are kept without fetching.
pub fn plan_layers(image: &ResolvedImage) -> (Vec<LayerJob>, HashMap<String, LayerResult>) {
    let mut jobs: Vec<LayerJob> = Vec::new();
    let mut foreign = HashMap::new();
    for manifest in &image.manifests {
        for (layer, diff_id) in manifest.view.layers.iter().zip(&manifest.config.diff_ids) {
            if jobs.iter().any(|j| j.descriptor.digest == layer.digest)
                || foreign.contains_key(&layer.digest)
            {
                continue;
            }
            match media::layer_class(&layer.media_type) {
                Some(LayerClass::Foreign) => {
                    tracing::info!(layer = %layer.digest, media_type = %layer.media_type, "keeping a non-distributable layer as it is");
                    foreign.insert(layer.digest.clone(), LayerResult::foreign(layer, diff_id));
                }
                _ => jobs.push(LayerJob {
                    position: jobs.len(),
                    descriptor: layer.clone(),
                    config_diff_id: diff_id.clone(),
                }),
            }
        }
    }
    (jobs, foreign)
}

fn nested_index(digest: &str) -> ConvertError {
    ConvertError::UnsupportedMediaType {
        what: "index entry",
        digest: digest.to_string(),
        media_type: media::OCI_INDEX.to_string(),
        hint: "; nested indexes are not supported, convert the inner index by its digest",
    }
}

fn platforms_text(platforms: &[Platform]) -> String {
    platforms
        .iter()
        .map(Platform::to_string)
        .collect::<Vec<_>>()
        .join(", ")
}
