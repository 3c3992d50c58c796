//! One layer from source to destination: fetch, recognise, convert or verify, store.
//!
//! [`run_job`] is the async driver; the CPU and file work runs on a blocking thread through
//! [`process`]. A layer ends in one of three ways, see [`LayerAction`].

pub mod convert;
pub mod input;
pub mod passthrough;

use std::sync::Arc;
use std::time::Instant;

use serde::Serialize;
use tokio_util::sync::CancellationToken;

use crate::descriptor::Descriptor;
use crate::error::ConvertError;
use crate::media;
use crate::options::{ConvertOptions, ProgressMode};
use crate::progress::{LayerProgress, Progress};
use crate::store::{BlobFile, Destination, LocalBlob, Source, run_blocking};
use convert::ConvertedBlob;
use input::{InputFormat, detect, read_head};
use passthrough::{FooterCheck, PassedLayer, check_footer};

/// Outcome of one layer.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum LayerAction {
    /// Rewritten as a new eStargz blob.
    Converted,
    /// Already eStargz: verified and kept byte for byte.
    PassedThrough,
    /// Non-distributable or foreign: kept as it is, not fetched.
    Foreign,
}

/// One unique source layer to process.
#[derive(Debug, Clone)]
pub struct LayerJob {
    /// Position among the unique layers of the image, for display.
    pub position: usize,
    /// The source descriptor (its first occurrence).
    pub descriptor: Descriptor,
    /// The diffID the source config gives it.
    pub config_diff_id: String,
}

/// The outcome of one layer.
#[derive(Debug, Clone)]
pub struct LayerResult {
    /// The source descriptor.
    pub source: Descriptor,
    /// Action taken.
    pub action: LayerAction,
    /// Media type of the new descriptor.
    pub media_type: String,
    /// Digest of the stored blob.
    pub digest: String,
    /// Size of the stored blob.
    pub size: u64,
    /// The layer's diffID in the new config.
    pub diff_id: String,
    /// Annotations to set on the new descriptor.
    pub annotations: Vec<(String, String)>,
    /// TOC digest, for eStargz results.
    pub toc_digest: Option<String>,
    /// Length of the decompressed blob, for eStargz results.
    pub uncompressed_size: Option<u64>,
    /// Number of TOC entries, for eStargz results.
    pub toc_entries: Option<usize>,
    /// Prioritized paths this layer did not contain (converted layers only).
    pub prioritized_missing: Vec<String>,
    /// Prioritized paths this layer contained (converted layers only).
    pub prioritized_found: usize,
    /// Wall-clock time spent on the layer, in seconds.
    pub seconds: f64,
}

impl LayerResult {
    /// Builds the result for a foreign layer, which is kept without being fetched.
    pub fn foreign(descriptor: &Descriptor, config_diff_id: &str) -> LayerResult {
        LayerResult {
            source: descriptor.clone(),
            action: LayerAction::Foreign,
            media_type: media::oci_foreign_layer(&descriptor.media_type).to_string(),
            digest: descriptor.digest.clone(),
            size: descriptor.size,
            diff_id: config_diff_id.to_string(),
            annotations: Vec::new(),
            toc_digest: None,
            uncompressed_size: None,
            toc_entries: None,
            prioritized_missing: Vec::new(),
            prioritized_found: 0,
            seconds: 0.0,
        }
    }
}

/// Everything the layer jobs share.
pub struct JobContext {
    /// Conversion options.
    pub options: Arc<ConvertOptions>,
    /// Layer source.
    pub source: Arc<Source>,
    /// Layer destination.
    pub destination: Arc<Destination>,
    /// The progress display.
    pub progress: Progress,
    /// Cancelled on Ctrl-C or when another layer fails.
    pub cancel: CancellationToken,
    /// Number of unique layers, for display.
    pub count: usize,
}

/// Processes one layer from start to finish.
pub async fn run_job(context: Arc<JobContext>, job: LayerJob) -> Result<LayerResult, ConvertError> {
    let progress = context
        .progress
        .layer(&job.descriptor.digest, job.position, context.count);
    let started = Instant::now();
    tracing::debug!(layer = %job.descriptor.digest, size = job.descriptor.size, media_type = %job.descriptor.media_type, "layer started");
    let result = run_inner(&context, &job, &progress, started).await;
    match &result {
        Ok(done) => {
            progress.finish(&summary(done));
            // With bars on the terminal the bar shows this; a log line would break the display.
            if context.options.progress != ProgressMode::Bars {
                log_finished(done);
            }
        }
        Err(_) => progress.abandon(),
    }
    result
}

async fn run_inner(
    context: &JobContext,
    job: &LayerJob,
    progress: &LayerProgress,
    started: Instant,
) -> Result<LayerResult, ConvertError> {
    let options = &context.options;
    let tmpdir = options.tmpdir();
    let blob = context
        .source
        .layer(&job.descriptor, &tmpdir, progress, &context.cancel)
        .await?;

    let outcome = {
        let (job, options, progress, cancel) = (
            job.clone(),
            Arc::clone(options),
            progress.clone(),
            context.cancel.clone(),
        );
        let what = format!("layer {}", job.descriptor.digest);
        run_blocking(&what, move || {
            let mut blob = blob;
            let outcome = process(&mut blob, &job, &options, &progress, &cancel)?;
            Ok((outcome, blob))
        })
        .await?
    };
    let source_registry = context.source.registry();
    let result = match outcome {
        (Outcome::Converted(converted, extra), _blob) => {
            let output = &converted.output;
            let digest = output.blob_digest.to_string();
            if !output.dangling_links.is_empty() {
                let sample: Vec<&str> = output
                    .dangling_links
                    .iter()
                    .take(5)
                    .map(String::as_str)
                    .collect();
                tracing::warn!(
                    layer = %job.descriptor.digest,
                    count = output.dangling_links.len(),
                    first = ?sample,
                    "dropped hard links whose target is not a file of this layer; tar -x creates no file for them either"
                );
            }
            context
                .destination
                .put_layer(
                    BlobFile {
                        digest: &digest,
                        size: output.blob_size,
                        path: &converted.blob,
                        consume: true,
                    },
                    None,
                    progress,
                    &context.cancel,
                )
                .await?;
            let mut annotations = vec![
                (
                    estargz::TOC_DIGEST_ANNOTATION.to_string(),
                    output.toc_digest.to_string(),
                ),
                (
                    estargz::UNCOMPRESSED_SIZE_ANNOTATION.to_string(),
                    output.uncompressed_size.to_string(),
                ),
            ];
            annotations.extend(extra);
            LayerResult {
                source: job.descriptor.clone(),
                action: LayerAction::Converted,
                media_type: layer_media_type(options.compression).to_string(),
                digest,
                size: output.blob_size,
                diff_id: output.diff_id.to_string(),
                annotations,
                toc_digest: Some(output.toc_digest.to_string()),
                uncompressed_size: Some(output.uncompressed_size),
                toc_entries: Some(output.toc_entries),
                prioritized_missing: output.prioritized_missing.clone(),
                prioritized_found: output.prioritized_found,
                seconds: started.elapsed().as_secs_f64(),
            }
        }
        (Outcome::Passed(passed), blob) => {
            let descriptor = &job.descriptor;
            let consume = blob.temp.is_some();
            context
                .destination
                .put_layer(
                    BlobFile {
                        digest: &descriptor.digest,
                        size: descriptor.size,
                        path: &blob.path,
                        consume,
                    },
                    source_registry,
                    progress,
                    &context.cancel,
                )
                .await?;
            LayerResult {
                source: descriptor.clone(),
                action: LayerAction::PassedThrough,
                media_type: layer_media_type(passed.compression).to_string(),
                digest: descriptor.digest.clone(),
                size: descriptor.size,
                diff_id: job.config_diff_id.clone(),
                annotations: vec![
                    (
                        estargz::TOC_DIGEST_ANNOTATION.to_string(),
                        passed.toc_digest.to_string(),
                    ),
                    (
                        estargz::UNCOMPRESSED_SIZE_ANNOTATION.to_string(),
                        passed.uncompressed_size.to_string(),
                    ),
                ],
                toc_digest: Some(passed.toc_digest.to_string()),
                uncompressed_size: Some(passed.uncompressed_size),
                toc_entries: Some(passed.toc_entries),
                prioritized_missing: Vec::new(),
                prioritized_found: 0,
                seconds: started.elapsed().as_secs_f64(),
            }
        }
    };
    Ok(result)
}

/// Result of the blocking step.
enum Outcome {
    /// A new blob, plus annotations beyond the TOC digest and uncompressed size.
    Converted(ConvertedBlob, Vec<(String, String)>),
    /// The source blob, verified.
    Passed(PassedLayer),
}

/// Recognises the blob and converts or verifies it. Runs on a blocking thread.
fn process(
    blob: &mut LocalBlob,
    job: &LayerJob,
    options: &ConvertOptions,
    progress: &LayerProgress,
    cancel: &CancellationToken,
) -> Result<Outcome, ConvertError> {
    let descriptor = &job.descriptor;
    let layer = descriptor.digest.as_str();
    let head =
        read_head(&mut blob.file, 16).map_err(|e| ConvertError::io("reading", &blob.path, e))?;
    let format = detect(&head).map_err(|format| ConvertError::UnsupportedCompression {
        layer: layer.to_string(),
        format,
    })?;
    let declared = declared_format(&descriptor.media_type);
    if declared != format {
        tracing::warn!(
            layer,
            media_type = %descriptor.media_type,
            detected = format.name(),
            "the media type does not match the blob's magic bytes; using the detected format"
        );
    }

    if !options.reconvert {
        match check_footer(blob) {
            FooterCheck::Estargz(location) => {
                let passed = passthrough::verify(
                    blob,
                    descriptor,
                    &location,
                    &job.config_diff_id,
                    progress,
                    cancel,
                )?;
                if !options.prioritized.is_empty() {
                    tracing::warn!(
                        layer,
                        "layer is already eStargz and keeps its file order; pass --reconvert to apply --prioritize"
                    );
                }
                return Ok(Outcome::Passed(passed));
            }
            FooterCheck::ConvertAnyway(reason) => {
                tracing::info!(
                    layer,
                    reason,
                    "converting a stargz variant this converter does not pass through"
                );
            }
            FooterCheck::NotEstargz(reason) => {
                if let Some(annotated) = descriptor.annotations.get(estargz::TOC_DIGEST_ANNOTATION)
                {
                    return Err(ConvertError::AnnotatedButNotEstargz {
                        layer: layer.to_string(),
                        annotated: annotated.clone(),
                        reason,
                    });
                }
            }
        }
    }

    let build_options = options.build_options();
    let converted = convert::convert(
        blob,
        descriptor,
        format,
        &build_options,
        &options.tmpdir(),
        progress,
        cancel,
    )?;
    let extra = match options.compression {
        estargz::Compression::Zstd => convert::zstd_chunked_annotations(&converted.blob)?,
        estargz::Compression::Gzip => Vec::new(),
    };
    Ok(Outcome::Converted(converted, extra))
}

/// Returns the compression a layer media type announces.
fn declared_format(media_type: &str) -> InputFormat {
    if media_type.ends_with("gzip") {
        InputFormat::Gzip
    } else if media_type.ends_with("zstd") {
        InputFormat::Zstd
    } else {
        InputFormat::Tar
    }
}

/// Returns the OCI layer media type for a compression.
pub fn layer_media_type(compression: estargz::Compression) -> &'static str {
    match compression {
        estargz::Compression::Gzip => media::OCI_LAYER_GZIP,
        estargz::Compression::Zstd => media::OCI_LAYER_ZSTD,
    }
}

/// Returns the new size divided by the old size (0 for an empty old size).
pub fn ratio(new: u64, old: u64) -> f64 {
    if old == 0 {
        0.0
    } else {
        new as f64 / old as f64
    }
}

fn log_finished(done: &LayerResult) {
    tracing::info!(
        layer = %done.source.digest,
        action = ?done.action,
        source_size = done.source.size,
        digest = %done.digest,
        size = done.size,
        ratio = format_args!("{:.3}", ratio(done.size, done.source.size)),
        toc_entries = done.toc_entries.unwrap_or(0),
        seconds = format_args!("{:.2}", done.seconds),
        "layer finished"
    );
}

fn summary(result: &LayerResult) -> String {
    match result.action {
        LayerAction::Converted => {
            format!(
                "converted {} -> {}",
                indicatif::HumanBytes(result.source.size),
                indicatif::HumanBytes(result.size)
            )
        }
        LayerAction::PassedThrough => "kept (already eStargz)".to_string(),
        LayerAction::Foreign => "kept (foreign)".to_string(),
    }
}
