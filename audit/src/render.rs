//! The text form of a report, for people. Secrets appear by path and kind only, as in JSON.

use std::fmt::Write as _;

use crate::report::{Report, WasteReason};

/// Files listed in the wasted-bytes section of the text form (JSON lists all).
const WASTED_SHOWN: usize = 20;

/// Renders the report as text.
pub fn render_text(report: &Report) -> String {
    let mut out = String::new();
    let t = &report.totals;
    let _ = writeln!(out, "Image:       {}", report.image);
    let _ = writeln!(out, "Manifest:    {}", report.manifest_digest);
    if let Some(platform) = &report.platform {
        let _ = writeln!(out, "Platform:    {platform}");
    }
    let _ = writeln!(
        out,
        "Size:        {} compressed, {} uncompressed, {} of file content shipped",
        human(t.compressed_bytes),
        human(t.uncompressed_bytes),
        human(t.shipped_bytes)
    );
    let _ = writeln!(
        out,
        "Wasted:      {} ({:.2} %): {} hidden by later layers, {} duplicate content",
        human(t.wasted_bytes),
        t.wasted_percent,
        human(t.hidden_bytes),
        human(t.duplicate_bytes)
    );
    let _ = writeln!(out, "Efficiency:  {:.4}", t.efficiency);

    let _ = writeln!(out, "\nLayers:");
    for layer in &report.layers {
        let _ = writeln!(
            out,
            "  {:>2}  {}  {:>10} compressed  {:>10} uncompressed  {} entries",
            layer.index,
            short(&layer.digest),
            human(layer.compressed_bytes),
            human(layer.uncompressed_bytes),
            layer.entries
        );
        if let Some(command) = &layer.created_by {
            let _ = writeln!(out, "      created by: {}", one_line(command, 100));
        }
        for file in &layer.top_files {
            let _ = writeln!(out, "      {:>10}  {}", human(file.bytes), file.path);
        }
    }

    if !report.wasted.is_empty() {
        let _ = writeln!(out, "\nWasted files ({} in all):", report.wasted.len());
        for w in report.wasted.iter().take(WASTED_SHOWN) {
            let why = match (w.reason, w.by_layer, &w.same_as) {
                (WasteReason::Duplicate, _, Some(kept)) => format!("duplicate of {kept}"),
                (WasteReason::Deleted, Some(by), _) => format!("deleted by layer {by}"),
                (WasteReason::Overwritten, Some(by), _) => format!("overwritten by layer {by}"),
                _ => "wasted".to_string(),
            };
            let _ = writeln!(
                out,
                "  {:>10}  layer {:>2}  {}  ({why})",
                human(w.bytes),
                w.layer,
                w.path
            );
        }
    }

    if !report.findings.is_empty() {
        let _ = writeln!(out, "\nFindings:");
        for f in &report.findings {
            let _ = writeln!(
                out,
                "  {:<18} {:>10}  {} files",
                f.kind.name(),
                human(f.bytes),
                f.files
            );
            for p in f.paths.iter().take(5) {
                let _ = writeln!(out, "      {:>10}  {}", human(p.bytes), p.path);
            }
        }
    }

    if !report.secrets.is_empty() {
        let _ = writeln!(out, "\nSecrets (values not shown):");
        for s in &report.secrets {
            let hidden = if s.hidden_later {
                ", hidden by a later layer but still in the blob"
            } else {
                ""
            };
            let _ = writeln!(
                out,
                "  {:<16} layer {:>2}  {}{hidden}",
                s.kind.name(),
                s.layer,
                s.path
            );
        }
    }

    if report.gate.passed {
        let _ = writeln!(out, "\nGate: PASS");
    } else {
        let _ = writeln!(out, "\nGate: FAIL");
        for f in &report.gate.failures {
            let _ = writeln!(out, "  {}: {}", f.rule, f.message);
        }
    }
    out
}

/// Renders the report as pretty-printed JSON (schema [`crate::report::SCHEMA`]), with a final
/// newline.
pub fn render_json(report: &Report) -> String {
    let mut text = serde_json::to_string_pretty(report)
        .unwrap_or_else(|e| format!("{{\"error\": \"cannot encode the report: {e}\"}}"));
    text.push('\n');
    text
}

/// Bytes with a binary unit.
pub fn human(bytes: u64) -> String {
    const UNITS: [&str; 5] = ["B", "KiB", "MiB", "GiB", "TiB"];
    let mut value = bytes as f64;
    let mut unit = 0;
    while value >= 1024.0 && unit < UNITS.len() - 1 {
        value /= 1024.0;
        unit += 1;
    }
    if unit == 0 {
        format!("{bytes} B")
    } else {
        format!("{value:.1} {}", UNITS[unit])
    }
}

fn short(digest: &str) -> &str {
    let hex = digest.strip_prefix("sha256:").unwrap_or(digest);
    hex.get(..12).unwrap_or(hex)
}

fn one_line(text: &str, width: usize) -> String {
    let flat: String = text.split_whitespace().collect::<Vec<_>>().join(" ");
    if flat.chars().count() > width {
        let cut: String = flat.chars().take(width).collect();
        format!("{cut}...")
    } else {
        flat
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn human_sizes_use_binary_units() {
        assert_eq!(human(512), "512 B");
        assert_eq!(human(1536), "1.5 KiB");
        assert_eq!(human(20 << 20), "20.0 MiB");
    }
}
