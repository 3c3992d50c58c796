//! The result of a conversion: a serializable report and its table form.

use std::fmt::Write;

use indicatif::HumanBytes;
use serde::Serialize;

use crate::layer::{LayerAction, LayerResult, ratio};
use crate::progress::short_digest;

/// Summary of a conversion, which `--json` prints with serde.
#[derive(Debug, Clone, Serialize)]
pub struct ConvertReport {
    /// The source reference as given.
    pub source: String,
    /// The destination reference, with its tag.
    pub destination: String,
    /// Digest of the source's top-level manifest or index.
    pub source_digest: String,
    /// Digest of the tagged manifest or index.
    pub digest: String,
    /// Its media type.
    pub media_type: String,
    /// One entry per converted platform manifest.
    pub manifests: Vec<ManifestReport>,
    /// One entry per unique layer, in image order.
    pub layers: Vec<LayerReport>,
    /// Wall-clock time of the whole conversion, in seconds.
    pub seconds: f64,
}

/// One converted manifest.
#[derive(Debug, Clone, Serialize)]
pub struct ManifestReport {
    /// `os/arch[/variant]`, when known.
    pub platform: Option<String>,
    /// Digest of the source manifest.
    pub source_digest: String,
    /// Digest of the new manifest.
    pub digest: String,
    /// Digest of the new config.
    pub config_digest: String,
}

/// One layer.
#[derive(Debug, Clone, Serialize)]
pub struct LayerReport {
    /// Digest of the source blob.
    pub source_digest: String,
    /// Size of the source blob.
    pub source_size: u64,
    /// Media type of the source descriptor.
    pub source_media_type: String,
    /// Action taken.
    pub action: LayerAction,
    /// Digest of the stored blob.
    pub digest: String,
    /// Size of the stored blob.
    pub size: u64,
    /// Media type of the new descriptor.
    pub media_type: String,
    /// diffID in the new config.
    pub diff_id: String,
    /// TOC digest, for eStargz layers.
    pub toc_digest: Option<String>,
    /// Decompressed length, for eStargz layers.
    pub uncompressed_size: Option<u64>,
    /// Number of TOC entries, for eStargz layers.
    pub toc_entries: Option<usize>,
    /// Prioritized paths found in this layer.
    pub prioritized_found: usize,
    /// Seconds spent on the layer.
    pub seconds: f64,
}

impl ConvertReport {
    /// Encodes the report as indented JSON.
    pub fn to_json(&self) -> String {
        // The report holds only strings, numbers and options, so encoding cannot fail.
        serde_json::to_string_pretty(self).unwrap_or_default()
    }
}

impl From<&LayerResult> for LayerReport {
    fn from(result: &LayerResult) -> Self {
        LayerReport {
            source_digest: result.source.digest.clone(),
            source_size: result.source.size,
            source_media_type: result.source.media_type.clone(),
            action: result.action,
            digest: result.digest.clone(),
            size: result.size,
            media_type: result.media_type.clone(),
            diff_id: result.diff_id.clone(),
            toc_digest: result.toc_digest.clone(),
            uncompressed_size: result.uncompressed_size,
            toc_entries: result.toc_entries,
            prioritized_found: result.prioritized_found,
            seconds: result.seconds,
        }
    }
}

/// Renders the report as a plain-text table for stdout.
pub fn render_table(report: &ConvertReport) -> String {
    let mut out = String::new();
    let _ = writeln!(
        out,
        "{:<3} {:<14} {:<12} {:>10}    {:<12} {:>10} {:>6} {:>11} {:>8}",
        "#", "ACTION", "SOURCE", "SIZE", "RESULT", "SIZE", "RATIO", "TOC ENTRIES", "TIME"
    );
    for (i, layer) in report.layers.iter().enumerate() {
        let action = match layer.action {
            LayerAction::Converted => "converted",
            LayerAction::PassedThrough => "passed-through",
            LayerAction::Foreign => "foreign",
        };
        let _ = writeln!(
            out,
            "{:<3} {:<14} {:<12} {:>10} -> {:<12} {:>10} {:>6.3} {:>11} {:>7.1}s",
            i + 1,
            action,
            short_digest(&layer.source_digest),
            HumanBytes(layer.source_size).to_string(),
            short_digest(&layer.digest),
            HumanBytes(layer.size).to_string(),
            ratio(layer.size, layer.source_size),
            layer.toc_entries.map_or("-".to_string(), |n| n.to_string()),
            layer.seconds,
        );
    }
    for manifest in &report.manifests {
        let _ = writeln!(
            out,
            "manifest {}: {} -> {}",
            manifest.platform.as_deref().unwrap_or("(no platform)"),
            manifest.source_digest,
            manifest.digest
        );
    }
    let total_old: u64 = report.layers.iter().map(|l| l.source_size).sum();
    let total_new: u64 = report.layers.iter().map(|l| l.size).sum();
    let _ = writeln!(
        out,
        "{} -> {}: {} ({} -> {}, {:.1}s)",
        report.source,
        report.destination,
        report.digest,
        HumanBytes(total_old),
        HumanBytes(total_new),
        report.seconds
    );
    out
}
