//! The audit report: what `--format json` prints, field for field (schema `lazypull-audit/1`,
//! documented in docs/audit.md). Paths are absolute, as inside the container.

use serde::Serialize;

use crate::rules::PathRule;
use crate::secrets::SecretKind;

/// Version tag of the JSON schema.
pub const SCHEMA: &str = "lazypull-audit/1";

/// A whole audit.
#[derive(Debug, Clone, Serialize)]
pub struct Report {
    /// Always [`SCHEMA`].
    pub schema: &'static str,
    /// The image as given.
    pub image: String,
    /// Digest of the image manifest audited.
    pub manifest_digest: String,
    /// Platform of that manifest, when known.
    pub platform: Option<String>,
    /// Layers, bottom first.
    pub layers: Vec<LayerReport>,
    /// Image-wide figures.
    pub totals: Totals,
    /// Content that is shipped but wasted, largest first.
    pub wasted: Vec<WastedFile>,
    /// Findings, largest cost first.
    pub findings: Vec<Finding>,
    /// Secrets, by path and kind only.
    pub secrets: Vec<Secret>,
    /// The CI gate's verdict.
    pub gate: GateResult,
}

/// One layer.
#[derive(Debug, Clone, Serialize)]
pub struct LayerReport {
    /// Position, 0 for the bottom layer.
    pub index: usize,
    /// Digest of the blob.
    pub digest: String,
    /// Media type of the blob.
    pub media_type: String,
    /// Blob size (what a pull downloads).
    pub compressed_bytes: u64,
    /// Size of the decompressed tar stream.
    pub uncompressed_bytes: u64,
    /// Sum of the regular files' sizes in the layer.
    pub file_bytes: u64,
    /// Number of entries (whiteouts included).
    pub entries: usize,
    /// `created_by` of the matching config history entry.
    pub created_by: Option<String>,
    /// Largest regular files of the layer.
    pub top_files: Vec<PathBytes>,
}

/// A path and a byte count.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct PathBytes {
    /// Absolute path.
    pub path: String,
    /// Bytes.
    pub bytes: u64,
}

/// Image-wide figures. Byte counts are of file content, uncompressed, unless named otherwise.
#[derive(Debug, Clone, Serialize)]
pub struct Totals {
    /// Sum of the layer blob sizes.
    pub compressed_bytes: u64,
    /// Sum of the decompressed layer sizes.
    pub uncompressed_bytes: u64,
    /// Content of every regular file of every layer (hard links count nothing).
    pub shipped_bytes: u64,
    /// Content that reaches the final filesystem, each hard-linked file once.
    pub final_bytes: u64,
    /// Shipped content hidden by a later entry: overwritten or deleted.
    pub hidden_bytes: u64,
    /// Extra copies of identical content in the final filesystem.
    pub duplicate_bytes: u64,
    /// `hidden_bytes + duplicate_bytes`.
    pub wasted_bytes: u64,
    /// `wasted_bytes / shipped_bytes × 100`.
    pub wasted_percent: f64,
    /// `(shipped_bytes - wasted_bytes) / shipped_bytes`; 1 for an image without content.
    pub efficiency: f64,
}

/// Cause of a file's wasted bytes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum WasteReason {
    /// A later entry for the same path replaced it.
    Overwritten,
    /// A whiteout or opaque directory deleted it.
    Deleted,
    /// The same content is stored at another path of the final filesystem.
    Duplicate,
}

/// One wasted file.
#[derive(Debug, Clone, Serialize)]
pub struct WastedFile {
    /// Absolute path.
    pub path: String,
    /// Wasted bytes.
    pub bytes: u64,
    /// Layer that ships the bytes.
    pub layer: usize,
    /// Cause of the waste.
    pub reason: WasteReason,
    /// Layer that overwrote or deleted it (not set for duplicates).
    pub by_layer: Option<usize>,
    /// For a duplicate: the path of the copy that is kept (the first in path order).
    pub same_as: Option<String>,
}

/// Subject of a finding.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum FindingKind {
    /// Packages an application lists in `devDependencies`, installed in its `node_modules`.
    DevDependencies,
    /// Files a later layer deletes (they are still downloaded).
    DeletedLater,
    /// Identical content stored more than once.
    DuplicateContent,
    /// The bottom layer is much larger than a slim distribution base.
    LargeBaseLayer,
    /// A path rule matched.
    #[serde(untagged)]
    Path(PathRule),
}

impl FindingKind {
    /// Lower-case name for text output.
    pub fn name(self) -> &'static str {
        match self {
            FindingKind::Path(rule) => rule.name(),
            FindingKind::DevDependencies => "dev-dependencies",
            FindingKind::DeletedLater => "deleted-later",
            FindingKind::DuplicateContent => "duplicate-content",
            FindingKind::LargeBaseLayer => "large-base-layer",
        }
    }
}

/// A finding and what it costs.
#[derive(Debug, Clone, Serialize)]
pub struct Finding {
    /// Subject.
    pub kind: FindingKind,
    /// Uncompressed bytes it costs.
    pub bytes: u64,
    /// Files involved.
    pub files: u64,
    /// The directories or files blamed, largest first (at most 20).
    pub paths: Vec<PathBytes>,
}

/// A secret, by path and kind only: its value is never part of a report.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Secret {
    /// Absolute path.
    pub path: String,
    /// Kind of secret.
    pub kind: SecretKind,
    /// Layer whose blob contains it.
    pub layer: usize,
    /// True when a later layer hides it: it is still in the downloaded blob.
    pub hidden_later: bool,
}

/// The gate's verdict.
#[derive(Debug, Clone, Serialize)]
pub struct GateResult {
    /// True when every configured threshold holds.
    pub passed: bool,
    /// The thresholds that failed.
    pub failures: Vec<GateFailure>,
}

/// One failed threshold.
#[derive(Debug, Clone, Serialize)]
pub struct GateFailure {
    /// The config key (`lowest-efficiency`, `highest-wasted-bytes`, ...).
    pub rule: &'static str,
    /// The configured limit.
    pub limit: f64,
    /// The image's value.
    pub actual: f64,
    /// One sentence for people.
    pub message: String,
}

/// Renders a cleaned path as an absolute one.
pub fn absolute(path: &[u8]) -> String {
    format!("/{}", String::from_utf8_lossy(path))
}
