//! Writing the converted image after its layers: configs, platform manifests, the index, and
//! last the tag, so a failure at any step leaves the destination tag untouched.

use std::collections::HashMap;

use serde_json::value::RawValue;

use crate::config::rewrite_diff_ids;
use crate::error::ConvertError;
use crate::layer::{LayerAction, LayerResult};
use crate::media;
use crate::report::ManifestReport;
use crate::resolve::{ResolvedImage, ResolvedManifest};
use crate::rewrite::{NewDescriptor, rewrite_index, rewrite_manifest};
use crate::store::Destination;

/// Digests of the written image.
pub struct Written {
    /// Digest of the tagged manifest or index.
    pub root_digest: String,
    /// Its media type.
    pub root_media_type: &'static str,
    /// One entry per converted manifest.
    pub manifests: Vec<ManifestReport>,
}

/// Stores configs, manifests and the index, then sets the tag.
pub async fn write_image(
    image: &ResolvedImage,
    results: &HashMap<String, LayerResult>,
    destination: &Destination,
) -> Result<Written, ConvertError> {
    let mut written = Vec::with_capacity(image.manifests.len());
    let mut reports = Vec::with_capacity(image.manifests.len());
    for manifest in &image.manifests {
        let (descriptor, bytes, report) = write_manifest(manifest, results, destination).await?;
        reports.push(report);
        written.push((manifest.entry_position, descriptor, bytes));
    }

    let Some(index) = &image.index else {
        let Some((_, descriptor, bytes)) = written.pop() else {
            return Err(ConvertError::Internal {
                what: "writing the image".into(),
                message: "no manifest was written".into(),
            });
        };
        destination
            .tag(&descriptor.digest, &bytes, media::OCI_MANIFEST)
            .await?;
        return Ok(Written {
            root_digest: descriptor.digest,
            root_media_type: media::OCI_MANIFEST,
            manifests: reports,
        });
    };

    let invalid = |reason: String| ConvertError::InvalidDocument {
        what: "index",
        digest: image.root_digest.clone(),
        reason,
    };
    let raw_entries: Vec<Box<RawValue>> = index
        .object
        .get_as("manifests")
        .map_err(invalid)?
        .unwrap_or_default();
    let mut entries = Vec::with_capacity(written.len());
    for (position, descriptor, _) in written {
        let raw = position
            .and_then(|p| raw_entries.get(p))
            .ok_or_else(|| invalid("an index entry vanished while converting".into()))?;
        entries.push((raw.clone(), descriptor));
    }
    let dropped = entries.len() != raw_entries.len();
    let index_bytes = rewrite_index(
        &image.root_bytes,
        &index.object,
        &image.root_digest,
        &entries,
        dropped,
    )?;
    let index_digest = estargz::Digest::of(&index_bytes).to_string();
    destination
        .put_manifest(&index_digest, &index_bytes, media::OCI_INDEX)
        .await?;
    destination
        .tag(&index_digest, &index_bytes, media::OCI_INDEX)
        .await?;
    Ok(Written {
        root_digest: index_digest,
        root_media_type: media::OCI_INDEX,
        manifests: reports,
    })
}

async fn write_manifest(
    manifest: &ResolvedManifest,
    results: &HashMap<String, LayerResult>,
    destination: &Destination,
) -> Result<(NewDescriptor, Vec<u8>, ManifestReport), ConvertError> {
    let mut layer_results = Vec::with_capacity(manifest.view.layers.len());
    for layer in &manifest.view.layers {
        let result = results
            .get(&layer.digest)
            .ok_or_else(|| ConvertError::Internal {
                what: format!("manifest {}", manifest.digest),
                message: format!("no result for layer {}", layer.digest),
            })?;
        // The same blob may appear with different annotations in other manifests.
        if let (LayerAction::PassedThrough, Some(annotated)) = (
            result.action,
            layer.annotations.get(estargz::TOC_DIGEST_ANNOTATION),
        ) && Some(annotated) != result.toc_digest.as_ref()
        {
            let actual = result
                .toc_digest
                .as_deref()
                .unwrap_or_default()
                .parse()
                .map_err(|_| ConvertError::Internal {
                    what: format!("layer {}", layer.digest),
                    message: "missing TOC digest".into(),
                })?;
            return Err(ConvertError::TocDigestMismatch {
                layer: layer.digest.clone(),
                annotated: annotated.clone(),
                actual,
            });
        }
        layer_results.push(result);
    }

    let diff_ids: Vec<String> = manifest
        .config
        .diff_ids
        .iter()
        .zip(&layer_results)
        .map(|(old, result)| {
            if result.action == LayerAction::Converted {
                result.diff_id.clone()
            } else {
                old.clone()
            }
        })
        .collect();
    let config_bytes = if diff_ids == manifest.config.diff_ids {
        manifest.config_bytes.clone()
    } else {
        rewrite_diff_ids(
            &manifest.config_bytes,
            &manifest.view.config.digest,
            &diff_ids,
        )?
    };
    let config_digest = estargz::Digest::of(&config_bytes).to_string();
    destination.put_small(&config_digest, &config_bytes).await?;

    let config = NewDescriptor {
        media_type: media::OCI_CONFIG.to_string(),
        digest: config_digest.clone(),
        size: config_bytes.len() as u64,
    };
    let bytes = rewrite_manifest(
        &manifest.bytes,
        &manifest.view.object,
        &manifest.digest,
        &config,
        &layer_results,
    )?;
    let digest = estargz::Digest::of(&bytes).to_string();
    destination
        .put_manifest(&digest, &bytes, media::OCI_MANIFEST)
        .await?;
    tracing::debug!(source = %manifest.digest, %digest, "manifest written");

    let report = ManifestReport {
        platform: manifest.platform().map(ToString::to_string),
        source_digest: manifest.digest.clone(),
        digest: digest.clone(),
        config_digest,
    };
    Ok((
        NewDescriptor {
            media_type: media::OCI_MANIFEST.to_string(),
            digest,
            size: bytes.len() as u64,
        },
        bytes,
        report,
    ))
}
