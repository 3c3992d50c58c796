//! The whole audit: open the image as `lazypull convert` does, stream each layer (two at a
//! time by default), merge, analyse and gate.

use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use futures_util::{StreamExt, TryStreamExt};
use lazypull_converter::descriptor::Descriptor;
use lazypull_converter::layer::input::{Decoder, HashingReader, detect, read_head};
use lazypull_converter::media::{self, LayerClass};
use lazypull_converter::progress::{LayerProgress, Phase, Progress};
use lazypull_converter::resolve::{ResolvedManifest, resolve};
use lazypull_converter::store::{Source, registry};
use lazypull_converter::{
    CancellationToken, ConvertError, ConvertOptions, ImageRef, Platform, ProgressMode,
};

use crate::analyze::{ScannedLayer, analyze};
use crate::error::AuditError;
use crate::gate::Thresholds;
use crate::history;
use crate::layer::{LayerScan, scan_layer};
use crate::report::{Report, SCHEMA};

/// Default number of files listed per layer.
pub const DEFAULT_TOP_FILES: usize = 10;

/// Image and settings of one audit.
#[derive(Debug, Clone)]
pub struct AuditOptions {
    /// The image: a registry reference or an OCI layout.
    pub image: ImageRef,
    /// Platform to pick from an index; `None` accepts an index with one image only, or picks
    /// linux on this machine's architecture.
    pub platform: Option<Platform>,
    /// Gate thresholds.
    pub thresholds: Thresholds,
    /// Files listed per layer.
    pub top_files: usize,
    /// Layers read at the same time.
    pub jobs: usize,
    /// Directory for downloaded blobs (registry images only); `None` is the system default.
    pub tmpdir: Option<PathBuf>,
    /// Progress display.
    pub progress: ProgressMode,
}

impl AuditOptions {
    /// Options with defaults: no thresholds, 10 files per layer, 2 layers at a time, no progress.
    pub fn new(image: ImageRef) -> Self {
        AuditOptions {
            image,
            platform: None,
            thresholds: Thresholds::default(),
            top_files: DEFAULT_TOP_FILES,
            jobs: 2,
            tmpdir: None,
            progress: ProgressMode::Quiet,
        }
    }
}

/// Audits one image and returns the report; the gate's verdict is in `report.gate`.
pub async fn audit(options: AuditOptions) -> Result<Report, AuditError> {
    let plain_http = match &options.image {
        ImageRef::Registry(r) if r.plain_http => vec![r.registry().to_string()],
        _ => Vec::new(),
    };
    let client = registry::client(plain_http);
    let source = Source::open(&options.image, &client).await?;
    let mut resolve_options = ConvertOptions::new(options.image.clone(), options.image.clone());
    resolve_options.platforms = options.platform.iter().cloned().collect();
    let image = resolve(&source, &resolve_options).await?;
    let manifest = pick_manifest(image.manifests)?;
    tracing::info!(image = %options.image, manifest = %manifest.digest, layers = manifest.view.layers.len(), "auditing image");

    let descriptors = manifest.view.layers.clone();
    let created_by = history::created_by(&manifest.config_bytes, descriptors.len());
    let source = Arc::new(source);
    let progress = Progress::new(options.progress);
    let tmpdir = options.tmpdir.clone().unwrap_or_else(std::env::temp_dir);
    let count = descriptors.len();
    let scans: Vec<LayerScan> = futures_util::stream::iter(descriptors.iter().cloned().enumerate())
        .map(|(index, descriptor)| {
            let layer_progress = progress.layer(&descriptor.digest, index, count);
            read_layer(
                Arc::clone(&source),
                descriptor,
                tmpdir.clone(),
                layer_progress,
            )
        })
        .buffered(options.jobs.max(1))
        .try_collect()
        .await?;

    let layers: Vec<ScannedLayer> = descriptors
        .into_iter()
        .zip(scans)
        .zip(created_by)
        .map(|((descriptor, scan), created_by)| ScannedLayer {
            digest: descriptor.digest,
            media_type: descriptor.media_type,
            compressed_bytes: descriptor.size,
            created_by,
            scan,
        })
        .collect();
    let analysis = analyze(&layers, options.top_files);
    let gate = options
        .thresholds
        .check(&analysis.totals, &analysis.secrets);
    Ok(Report {
        schema: SCHEMA,
        image: options.image.to_string(),
        manifest_digest: manifest.digest.clone(),
        platform: manifest.platform().map(Platform::to_string),
        layers: analysis.layers,
        totals: analysis.totals,
        wasted: analysis.wasted,
        findings: analysis.findings,
        secrets: analysis.secrets,
        gate,
    })
}

/// Picks one image manifest: the only one, or the one for this machine's architecture.
fn pick_manifest(mut manifests: Vec<ResolvedManifest>) -> Result<ResolvedManifest, AuditError> {
    if manifests.len() == 1 {
        return Ok(manifests.remove(0));
    }
    let here = Platform {
        os: "linux".into(),
        architecture: match std::env::consts::ARCH {
            "x86_64" => "amd64",
            "aarch64" => "arm64",
            other => other,
        }
        .into(),
        variant: String::new(),
    };
    if let Some(position) = manifests.iter().position(|m| {
        m.platform()
            .is_some_and(|p| p.os == here.os && p.architecture == here.architecture)
    }) {
        return Ok(manifests.remove(position));
    }
    Err(AuditError::AmbiguousPlatform {
        count: manifests.len(),
        available: manifests
            .iter()
            .map(|m| m.platform().map_or("unknown".into(), Platform::to_string))
            .collect::<Vec<_>>()
            .join(", "),
    })
}

/// Streams one layer: download (registry) or open (layout), then decompress, scan and verify
/// the blob digest on a blocking thread.
async fn read_layer(
    source: Arc<Source>,
    descriptor: Descriptor,
    tmpdir: PathBuf,
    progress: LayerProgress,
) -> Result<LayerScan, AuditError> {
    if media::layer_class(&descriptor.media_type) == Some(LayerClass::Foreign) {
        tracing::warn!(layer = %descriptor.digest, media_type = %descriptor.media_type, "skipping a non-distributable layer: it is not fetched");
        progress.finish("skipped (non-distributable)");
        return Ok(LayerScan::default());
    }
    let blob = source
        .layer(&descriptor, &tmpdir, &progress, &CancellationToken::new())
        .await?;
    let scanned = tokio::task::spawn_blocking(move || {
        let result = scan_blob(blob, &descriptor, &progress);
        match &result {
            Ok(scan) => progress.finish(&format!("{} entries", scan.records.len())),
            Err(_) => progress.abandon(),
        }
        result
    })
    .await
    .map_err(|e| AuditError::Internal {
        what: "reading a layer",
        message: e.to_string(),
    })??;
    Ok(scanned)
}

fn scan_blob(
    blob: lazypull_converter::store::LocalBlob,
    descriptor: &Descriptor,
    progress: &LayerProgress,
) -> Result<LayerScan, AuditError> {
    let digest = descriptor.digest.as_str();
    let mut file = blob.file;
    let head = read_head(&mut file, 16).map_err(|e| read_error(&blob.path, e))?;
    let format = detect(&head).map_err(|compression| AuditError::UnsupportedCompression {
        layer: digest.to_string(),
        compression,
    })?;
    let read = Arc::new(AtomicU64::new(0));
    let decoder = Decoder::new(format, HashingReader::new(file, Arc::clone(&read)))
        .map_err(|e| read_error(&blob.path, e))?;
    progress.phase(Phase::Decompress, descriptor.size);
    let is_estargz = descriptor
        .annotations
        .contains_key(estargz::TOC_DIGEST_ANNOTATION);
    let (scan, decoder) = scan_layer(decoder, digest, is_estargz, || {
        progress.set(read.load(Ordering::Relaxed));
    })?;
    decoder
        .into_input()
        .finish(digest, descriptor.size, &blob.path)?;
    progress.set(descriptor.size);
    tracing::debug!(
        layer = digest,
        entries = scan.records.len(),
        bytes = scan.tar_bytes,
        "layer read"
    );
    // `blob.temp`, a downloaded copy, is removed here.
    drop(blob.temp);
    Ok(scan)
}

fn read_error(path: &std::path::Path, source: std::io::Error) -> ConvertError {
    ConvertError::Io {
        action: "reading",
        path: path.to_path_buf(),
        source,
    }
}
