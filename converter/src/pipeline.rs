//! The whole conversion: open both ends, read the image, process layers with a bound on
//! parallelism, then write configs, manifests, the index and the tag.

use std::collections::HashMap;
use std::future::Future;
use std::sync::Arc;
use std::time::Instant;

use tokio::sync::Semaphore;
use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;

use crate::assemble::write_image;
use crate::error::ConvertError;
use crate::image_ref::ImageRef;
use crate::layer::{JobContext, LayerJob, LayerResult, run_job};
use crate::options::ConvertOptions;
use crate::progress::Progress;
use crate::report::{ConvertReport, LayerReport};
use crate::resolve::{plan_layers, resolve};
use crate::store::registry;
use crate::store::{Destination, Source};

/// Converts `options.source` into an eStargz image at `options.destination`.
///
/// `cancel` stops the conversion (for Ctrl-C): running layers stop at their next buffer, their
/// temporary files are deleted, and the function returns [`ConvertError::Cancelled`] without
/// tagging anything. The same happens to the other layers when one layer fails; the first error
/// is returned.
pub async fn convert(
    options: ConvertOptions,
    cancel: CancellationToken,
) -> Result<ConvertReport, ConvertError> {
    options.validate()?;
    let started = Instant::now();
    let options = Arc::new(options);
    let client = registry::client(plain_http_registries(&options));

    let (source, destination, image) = cancellable(&cancel, async {
        let source = Source::open(&options.source, &client).await?;
        let destination = Destination::open(&options.destination, &client).await?;
        let image = resolve(&source, &options).await?;
        Ok((source, destination, image))
    })
    .await?;
    tracing::info!(
        source = %options.source,
        manifests = image.manifests.len(),
        digest = %image.root_digest,
        "source image read"
    );

    let (jobs, mut results) = plan_layers(&image);
    let order: Vec<String> = jobs.iter().map(|j| j.descriptor.digest.clone()).collect();
    let source = Arc::new(source);
    let destination = Arc::new(destination);
    let context = Arc::new(JobContext {
        options: Arc::clone(&options),
        source,
        destination: Arc::clone(&destination),
        progress: Progress::new(options.progress),
        cancel: cancel.child_token(),
        count: jobs.len(),
    });
    results.extend(run_jobs(context, jobs, options.jobs).await?);
    warn_missing_prioritized(&options, &results);

    let written = cancellable(&cancel, write_image(&image, &results, &destination)).await?;
    let destination_text = match &options.destination {
        ImageRef::Registry(r) => format!(
            "{}/{}:{}",
            r.registry(),
            r.reference.repository(),
            destination.tag_name()
        ),
        other => other.to_string(),
    };
    tracing::info!(destination = %destination_text, digest = %written.root_digest, "destination tagged");

    let mut layers: Vec<LayerReport> = order
        .iter()
        .filter_map(|d| results.get(d))
        .map(LayerReport::from)
        .collect();
    // Foreign layers are not jobs; list them after the processed ones.
    layers.extend(
        results
            .values()
            .filter(|r| !order.contains(&r.source.digest))
            .map(LayerReport::from),
    );
    Ok(ConvertReport {
        source: options.source.to_string(),
        destination: destination_text,
        source_digest: image.root_digest,
        digest: written.root_digest,
        media_type: written.root_media_type.to_string(),
        manifests: written.manifests,
        layers,
        seconds: started.elapsed().as_secs_f64(),
    })
}

/// Runs the layer jobs, at most `limit` at a time. On the first failure the others are
/// cancelled and awaited, so their temporary files are gone before this returns.
async fn run_jobs(
    context: Arc<JobContext>,
    jobs: Vec<LayerJob>,
    limit: usize,
) -> Result<HashMap<String, LayerResult>, ConvertError> {
    let permits = Arc::new(Semaphore::new(limit));
    let mut running = JoinSet::new();
    for job in jobs {
        let (context, permits) = (Arc::clone(&context), Arc::clone(&permits));
        running.spawn(async move {
            let _permit = tokio::select! {
                permit = permits.acquire_owned() => permit.map_err(|e| ConvertError::Internal { what: "scheduling layers".into(), message: e.to_string() })?,
                () = context.cancel.cancelled() => return Err(ConvertError::Cancelled),
            };
            if context.cancel.is_cancelled() {
                return Err(ConvertError::Cancelled);
            }
            run_job(context, job).await
        });
    }

    let mut results = HashMap::new();
    let mut first_error: Option<ConvertError> = None;
    while let Some(joined) = running.join_next().await {
        let outcome = joined.unwrap_or_else(|e| {
            Err(ConvertError::Internal {
                what: "a layer task".into(),
                message: e.to_string(),
            })
        });
        match outcome {
            Ok(result) => {
                results.insert(result.source.digest.clone(), result);
            }
            Err(error) => {
                // Keep the first real error: the others are usually cancellations it caused.
                let replace = match &first_error {
                    None => true,
                    Some(ConvertError::Cancelled) => !matches!(error, ConvertError::Cancelled),
                    Some(_) => false,
                };
                if replace {
                    first_error = Some(error);
                }
                context.cancel.cancel();
            }
        }
    }
    match first_error {
        Some(error) => Err(error),
        None => Ok(results),
    }
}

/// Runs `work` unless `cancel` fires first.
async fn cancellable<T>(
    cancel: &CancellationToken,
    work: impl Future<Output = Result<T, ConvertError>>,
) -> Result<T, ConvertError> {
    tokio::select! {
        result = work => result,
        () = cancel.cancelled() => Err(ConvertError::Cancelled),
    }
}

/// Registries reached over plain HTTP: loopback ones, and all with `--insecure`.
fn plain_http_registries(options: &ConvertOptions) -> Vec<String> {
    [&options.source, &options.destination]
        .into_iter()
        .filter_map(|image| match image {
            ImageRef::Registry(r) if r.plain_http => Some(r.registry().to_string()),
            _ => None,
        })
        .collect()
}

/// Warns about prioritized paths that no converted layer contains (often a typo or a path
/// recorded from another image).
fn warn_missing_prioritized(options: &ConvertOptions, results: &HashMap<String, LayerResult>) {
    if options.prioritized.is_empty() {
        return;
    }
    let converted: Vec<&LayerResult> = results
        .values()
        .filter(|r| r.action == crate::layer::LayerAction::Converted)
        .collect();
    let Some(first) = converted.first() else {
        return;
    };
    let missing: Vec<&String> = first
        .prioritized_missing
        .iter()
        .filter(|path| {
            converted
                .iter()
                .all(|r| r.prioritized_missing.contains(path))
        })
        .collect();
    if !missing.is_empty() {
        let sample: Vec<&str> = missing.iter().take(5).map(|s| s.as_str()).collect();
        tracing::warn!(count = missing.len(), first = ?sample, "prioritized paths found in no layer");
    }
}
