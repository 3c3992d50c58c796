//! Metrics read at scrape time from the layers, the chunk cache and the snapshot store.

use std::sync::Arc;

use prometheus_client::collector::Collector;
use prometheus_client::encoding::{
    DescriptorEncoder, EncodeCounterValue, EncodeGaugeValue, EncodeLabelSet, NoLabelSet,
};
use prometheus_client::metrics::MetricType;

use super::layers::LayerManager;
use crate::cache::ChunkCache;
use crate::snapshot::{Filters, Kind, OverlaySnapshotter};

/// Reports per-layer fetch figures, cache counters and snapshot counts at each scrape.
pub struct DaemonCollector {
    /// The remote layers.
    pub layers: LayerManager,
    /// The shared chunk cache.
    pub cache: Arc<ChunkCache>,
    /// The snapshot store.
    pub core: OverlaySnapshotter,
}

fn counter<L: EncodeLabelSet, V: EncodeCounterValue>(
    encoder: &mut DescriptorEncoder,
    name: &str,
    help: &str,
    values: &[(L, V)],
) -> Result<(), std::fmt::Error> {
    let mut metric = encoder.encode_descriptor(name, help, None, MetricType::Counter)?;
    for (labels, value) in values {
        metric
            .encode_family(labels)?
            .encode_counter::<NoLabelSet, _, u64>(value, None)?;
    }
    Ok(())
}

fn gauge<L: EncodeLabelSet, V: EncodeGaugeValue>(
    encoder: &mut DescriptorEncoder,
    name: &str,
    help: &str,
    values: &[(L, V)],
) -> Result<(), std::fmt::Error> {
    let mut metric = encoder.encode_descriptor(name, help, None, MetricType::Gauge)?;
    for (labels, value) in values {
        metric.encode_family(labels)?.encode_gauge(value)?;
    }
    Ok(())
}

type Layer = [(&'static str, String); 1];

fn no_labels() -> [(&'static str, &'static str); 0] {
    []
}
type Tier = [(&'static str, &'static str); 1];

impl std::fmt::Debug for DaemonCollector {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("DaemonCollector")
            .field("layers", &self.layers)
            .finish_non_exhaustive()
    }
}

impl Collector for DaemonCollector {
    fn encode(&self, mut encoder: DescriptorEncoder) -> Result<(), std::fmt::Error> {
        let reports = self.layers.reports();
        let per_layer = |value: &dyn Fn(&super::layers::LayerReport) -> u64| -> Vec<(Layer, u64)> {
            reports
                .iter()
                .map(|report| ([("layer", report.digest.to_string())], value(report)))
                .collect()
        };
        let e = &mut encoder;
        counter(
            e,
            "lazypull_layer_fetched_bytes",
            "Compressed bytes fetched for the layer",
            &per_layer(&|r| r.stats.bytes_fetched),
        )?;
        let fractions: Vec<(Layer, f64)> = reports
            .iter()
            .map(|report| {
                (
                    [("layer", report.digest.to_string())],
                    report.stats.fetched_fraction,
                )
            })
            .collect();
        gauge(
            e,
            "lazypull_layer_fetched_ratio",
            "Share of the layer's payload obtained so far, 0 to 1",
            &fractions,
        )?;
        gauge(
            e,
            "lazypull_layer_size_bytes",
            "Compressed size of the layer blob",
            &per_layer(&|r| r.size),
        )?;
        gauge(
            e,
            "lazypull_layer_mounts",
            "Remote snapshots mounting the layer",
            &per_layer(&|r| r.mounts as u64),
        )?;
        counter(
            e,
            "lazypull_layer_requests",
            "Range requests sent for the layer",
            &per_layer(&|r| r.stats.requests),
        )?;
        counter(
            e,
            "lazypull_layer_request_failures",
            "Range requests for the layer that failed",
            &per_layer(&|r| r.stats.request_failures),
        )?;
        counter(
            e,
            "lazypull_layer_reads",
            "File reads served by the layer",
            &per_layer(&|r| r.stats.reads),
        )?;
        counter(
            e,
            "lazypull_layer_verification_failures",
            "Fetched chunks of the layer that failed verification",
            &per_layer(&|r| r.stats.verification_failures),
        )?;
        let hits: Vec<([(&str, String); 2], u64)> = reports
            .iter()
            .flat_map(|r| {
                let layer = r.digest.to_string();
                [
                    (
                        [("layer", layer.clone()), ("tier", "memory".to_owned())],
                        r.stats.memory_hits,
                    ),
                    (
                        [("layer", layer), ("tier", "disk".to_owned())],
                        r.stats.disk_hits,
                    ),
                ]
            })
            .collect();
        counter(
            e,
            "lazypull_layer_cache_hits",
            "Chunk lookups of the layer answered by a cache tier",
            &hits,
        )?;
        let misses: Vec<([(&str, String); 2], u64)> = reports
            .iter()
            .flat_map(|r| {
                let layer = r.digest.to_string();
                [
                    (
                        [("layer", layer.clone()), ("tier", "memory".to_owned())],
                        r.stats.memory_misses,
                    ),
                    (
                        [("layer", layer), ("tier", "disk".to_owned())],
                        r.stats.disk_misses,
                    ),
                ]
            })
            .collect();
        counter(
            e,
            "lazypull_layer_cache_misses",
            "Chunk lookups of the layer a cache tier could not answer",
            &misses,
        )?;

        let cache = self.cache.stats();
        let tiers = |memory: u64, disk: u64| -> Vec<(Tier, u64)> {
            vec![([("tier", "memory")], memory), ([("tier", "disk")], disk)]
        };
        counter(
            e,
            "lazypull_cache_hits",
            "Chunk lookups answered by the cache",
            &tiers(cache.memory_hits, cache.disk_hits),
        )?;
        counter(
            e,
            "lazypull_cache_misses",
            "Chunk lookups the cache could not answer",
            &tiers(cache.memory_misses, cache.disk_misses),
        )?;
        counter(
            e,
            "lazypull_cache_evictions",
            "Chunks evicted to stay within budget",
            &tiers(cache.memory_evictions, cache.disk_evictions),
        )?;
        gauge(
            e,
            "lazypull_cache_bytes",
            "Bytes held by the cache",
            &tiers(cache.memory_bytes, cache.disk_bytes),
        )?;
        counter(
            e,
            "lazypull_cache_disk_write_failures",
            "Chunk writes to disk that failed",
            &[(no_labels(), cache.disk_write_failures)],
        )?;
        counter(
            e,
            "lazypull_cache_disk_corrupt",
            "Disk chunks that failed verification",
            &[(no_labels(), cache.disk_corrupt)],
        )?;
        counter(
            e,
            "lazypull_cache_disk_verified",
            "Disk chunk reads whose SHA-256 was checked and matched",
            &[(no_labels(), cache.disk_verified)],
        )?;

        let infos = self.core.walk(&Filters::default());
        let count = |kind: Kind| infos.iter().filter(|info| info.kind == kind).count() as u64;
        let kinds: Vec<([(&str, &str); 1], u64)> = [Kind::Active, Kind::View, Kind::Committed]
            .into_iter()
            .map(|kind| ([("kind", kind.as_str())], count(kind)))
            .collect();
        gauge(e, "lazypull_snapshots", "Snapshots by kind", &kinds)?;
        let (mounted, failed) = self.layers.counts();
        gauge(
            e,
            "lazypull_remote_snapshots",
            "Remote snapshots by state: mounted, or failed to mount at restart",
            &[
                ([("state", "mounted")], mounted as u64),
                ([("state", "failed")], failed as u64),
            ],
        )?;
        Ok(())
    }
}
