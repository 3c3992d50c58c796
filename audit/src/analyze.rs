//! From scanned layers to the report's figures: the overlay merge, wasted bytes, findings and
//! secrets. Pure: no I/O, so the unit tests feed it hand-made layers.

use std::collections::{BTreeMap, HashMap};

use crate::layer::{EntryKind, LayerScan};
use crate::overlay::{BlobId, Overlay, Removal};
use crate::report::{
    Finding, FindingKind, LayerReport, PathBytes, Secret, Totals, WasteReason, WastedFile, absolute,
};
use crate::rules;

/// Reference size of a slim distribution base layer, uncompressed (debian:bookworm-slim is
/// about 75 MiB).
pub const SLIM_BASE_BYTES: u64 = 80 << 20;

/// A bottom layer above this size is reported as a large base layer (twice the slim base).
pub const LARGE_BASE_BYTES: u64 = 2 * SLIM_BASE_BYTES;

/// Most paths listed per finding.
const PATHS_PER_FINDING: usize = 20;

/// A scanned layer with its manifest descriptor and config history entry.
pub struct ScannedLayer {
    /// Blob digest.
    pub digest: String,
    /// Blob media type.
    pub media_type: String,
    /// Blob size.
    pub compressed_bytes: u64,
    /// `created_by` from the config history.
    pub created_by: Option<String>,
    /// Result of the tar scan.
    pub scan: LayerScan,
}

/// The figures of a report, all but the image's identity and the gate.
pub struct Analysis {
    /// Per layer.
    pub layers: Vec<LayerReport>,
    /// Image-wide figures.
    pub totals: Totals,
    /// Wasted files, largest first.
    pub wasted: Vec<WastedFile>,
    /// Findings, largest first.
    pub findings: Vec<Finding>,
    /// Secrets in layer order.
    pub secrets: Vec<Secret>,
}

/// Merges the layers and computes every figure. `top_files` is the number of files listed per
/// layer.
pub fn analyze(layers: &[ScannedLayer], top_files: usize) -> Analysis {
    let mut overlay = Overlay::default();
    for (index, layer) in layers.iter().enumerate() {
        overlay.apply(index, &layer.scan);
    }
    let final_blobs = overlay.final_blobs();
    let groups = overlay.duplicate_groups(&final_blobs);

    let shipped: u64 = overlay.blobs.iter().map(|b| b.size).sum();
    let final_bytes: u64 = final_blobs.keys().map(|&b| overlay.blobs[b].size).sum();
    let mut wasted = Vec::new();
    for (_, blob) in overlay.hidden_blobs(&final_blobs) {
        let (reason, by_layer) = match blob.removal {
            Some(Removal::Deleted { layer }) => (WasteReason::Deleted, layer),
            Some(Removal::Overwritten { layer }) => (WasteReason::Overwritten, layer),
            None => (WasteReason::Overwritten, blob.layer),
        };
        if blob.size > 0 {
            wasted.push(WastedFile {
                path: absolute(&blob.path),
                bytes: blob.size,
                layer: blob.layer,
                reason,
                by_layer: Some(by_layer),
                same_as: None,
            });
        }
    }
    let mut duplicate_bytes = 0;
    let mut duplicate_paths = Vec::new();
    for group in &groups {
        // The copy shipped first (lowest layer, then stream order) is kept; later ones are
        // waste. Groups list their blobs in that order.
        let kept = absolute(final_blobs[&group[0]]);
        for &id in &group[1..] {
            let path = final_blobs[&id];
            let blob = &overlay.blobs[id];
            duplicate_bytes += blob.size;
            duplicate_paths.push(PathBytes {
                path: absolute(path),
                bytes: blob.size,
            });
            wasted.push(WastedFile {
                path: absolute(path),
                bytes: blob.size,
                layer: blob.layer,
                reason: WasteReason::Duplicate,
                by_layer: None,
                same_as: Some(kept.clone()),
            });
        }
    }
    wasted.sort_by(|a, b| b.bytes.cmp(&a.bytes).then_with(|| a.path.cmp(&b.path)));
    let hidden_bytes = shipped - final_bytes;
    let wasted_bytes = hidden_bytes + duplicate_bytes;
    let totals = Totals {
        compressed_bytes: layers.iter().map(|l| l.compressed_bytes).sum(),
        uncompressed_bytes: layers.iter().map(|l| l.scan.tar_bytes).sum(),
        shipped_bytes: shipped,
        final_bytes,
        hidden_bytes,
        duplicate_bytes,
        wasted_bytes,
        wasted_percent: ratio(wasted_bytes, shipped) * 100.0,
        efficiency: if shipped == 0 {
            1.0
        } else {
            1.0 - ratio(wasted_bytes, shipped)
        },
    };

    let mut findings = path_findings(&overlay);
    findings.extend(dev_dependency_finding(layers, &overlay, &final_blobs));
    let deleted: Vec<PathBytes> = wasted
        .iter()
        .filter(|w| w.reason == WasteReason::Deleted && w.by_layer > Some(w.layer))
        .map(|w| PathBytes {
            path: w.path.clone(),
            bytes: w.bytes,
        })
        .collect();
    findings.extend(list_finding(FindingKind::DeletedLater, deleted));
    findings.extend(list_finding(FindingKind::DuplicateContent, duplicate_paths));
    if let Some(base) = layers.first()
        && base.scan.tar_bytes > LARGE_BASE_BYTES
    {
        findings.push(Finding {
            kind: FindingKind::LargeBaseLayer,
            bytes: base.scan.tar_bytes - SLIM_BASE_BYTES,
            files: 0,
            paths: Vec::new(),
        });
    }
    findings.sort_by(|a, b| b.bytes.cmp(&a.bytes).then(a.kind.cmp(&b.kind)));

    let mut secrets = Vec::new();
    for (index, layer) in layers.iter().enumerate() {
        for hit in &layer.scan.secrets {
            secrets.push(Secret {
                path: absolute(&hit.path),
                kind: hit.kind,
                layer: index,
                hidden_later: overlay.final_layer_of(&hit.path) != Some(index),
            });
        }
    }

    Analysis {
        layers: layers
            .iter()
            .enumerate()
            .map(|(i, l)| layer_report(i, l, top_files))
            .collect(),
        totals,
        wasted,
        findings,
        secrets,
    }
}

fn ratio(part: u64, whole: u64) -> f64 {
    if whole == 0 {
        0.0
    } else {
        part as f64 / whole as f64
    }
}

fn layer_report(index: usize, layer: &ScannedLayer, top: usize) -> LayerReport {
    let files = layer
        .scan
        .records
        .iter()
        .filter(|r| r.kind == EntryKind::File);
    let file_bytes = files.clone().map(|r| r.size).sum();
    let mut largest: Vec<PathBytes> = files
        .map(|r| PathBytes {
            path: absolute(&r.path),
            bytes: r.size,
        })
        .collect();
    largest.sort_by(|a, b| b.bytes.cmp(&a.bytes).then_with(|| a.path.cmp(&b.path)));
    largest.truncate(top);
    LayerReport {
        index,
        digest: layer.digest.clone(),
        media_type: layer.media_type.clone(),
        compressed_bytes: layer.compressed_bytes,
        uncompressed_bytes: layer.scan.tar_bytes,
        file_bytes,
        entries: layer.scan.records.len(),
        created_by: layer.created_by.clone(),
        top_files: largest,
    }
}

/// Path-rule findings over every shipped blob, by the path that ships it.
fn path_findings(overlay: &Overlay) -> Vec<Finding> {
    let mut by_rule: BTreeMap<rules::PathRule, (u64, BTreeMap<Vec<u8>, u64>)> = BTreeMap::new();
    for blob in &overlay.blobs {
        if let Some((rule, dir)) = rules::classify(&blob.path) {
            let (files, dirs) = by_rule.entry(rule).or_default();
            *files += 1;
            *dirs.entry(dir.to_vec()).or_default() += blob.size;
        }
    }
    by_rule
        .into_iter()
        .map(|(rule, (files, dirs))| {
            let mut paths: Vec<PathBytes> = dirs
                .into_iter()
                .map(|(dir, bytes)| PathBytes {
                    path: absolute(&dir),
                    bytes,
                })
                .collect();
            let bytes = paths.iter().map(|p| p.bytes).sum();
            sort_truncate(&mut paths);
            Finding {
                kind: FindingKind::Path(rule),
                bytes,
                files,
                paths,
            }
        })
        // Empty files (an apt `lock`) cost nothing worth reporting.
        .filter(|f| f.bytes > 0)
        .collect()
}

/// Packages named in an application's `devDependencies` and present in its `node_modules` in
/// the final filesystem.
fn dev_dependency_finding(
    layers: &[ScannedLayer],
    overlay: &Overlay,
    final_blobs: &HashMap<BlobId, &[u8]>,
) -> Option<Finding> {
    // A later layer's manifest for the same directory replaces an earlier one.
    let mut manifests: BTreeMap<&[u8], &[String]> = BTreeMap::new();
    for layer in layers {
        for m in &layer.scan.manifests {
            manifests.insert(&m.dir, &m.dev_dependencies);
        }
    }
    let mut packages: BTreeMap<Vec<u8>, (u64, u64)> = BTreeMap::new();
    for (dir, names) in manifests {
        for name in names {
            let mut prefix = dir.to_vec();
            if !prefix.is_empty() {
                prefix.push(b'/');
            }
            prefix.extend_from_slice(b"node_modules/");
            prefix.extend_from_slice(name.as_bytes());
            packages.insert(prefix, (0, 0));
        }
    }
    if packages.is_empty() {
        return None;
    }
    for (&id, path) in final_blobs {
        for (prefix, (files, bytes)) in packages.iter_mut() {
            if path.starts_with(prefix) && path.get(prefix.len()) == Some(&b'/') {
                *files += 1;
                *bytes += overlay.blobs[id].size;
            }
        }
    }
    let files = packages.values().map(|(f, _)| f).sum();
    let mut paths: Vec<PathBytes> = packages
        .into_iter()
        .filter(|(_, (f, _))| *f > 0)
        .map(|(p, (_, bytes))| PathBytes {
            path: absolute(&p),
            bytes,
        })
        .collect();
    if paths.is_empty() {
        return None;
    }
    let bytes = paths.iter().map(|p| p.bytes).sum();
    sort_truncate(&mut paths);
    Some(Finding {
        kind: FindingKind::DevDependencies,
        bytes,
        files,
        paths,
    })
}

fn list_finding(kind: FindingKind, mut paths: Vec<PathBytes>) -> Option<Finding> {
    if paths.is_empty() {
        return None;
    }
    let bytes = paths.iter().map(|p| p.bytes).sum();
    let files = paths.len() as u64;
    sort_truncate(&mut paths);
    Some(Finding {
        kind,
        bytes,
        files,
        paths,
    })
}

fn sort_truncate(paths: &mut Vec<PathBytes>) {
    paths.sort_by(|a, b| b.bytes.cmp(&a.bytes).then_with(|| a.path.cmp(&b.path)));
    paths.truncate(PATHS_PER_FINDING);
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::layer::{DevManifest, Record};

    fn file(path: &str, size: u64, seed: u8) -> Record {
        Record {
            path: path.as_bytes().to_vec(),
            kind: EntryKind::File,
            size,
            digest: [seed; 32],
            link: Vec::new(),
        }
    }

    fn layer(records: Vec<Record>) -> ScannedLayer {
        ScannedLayer {
            digest: "sha256:0".into(),
            media_type: "tar".into(),
            compressed_bytes: 0,
            created_by: None,
            scan: LayerScan {
                records,
                ..LayerScan::default()
            },
        }
    }

    #[test]
    fn dev_dependencies_become_finding() {
        let mut app = layer(vec![
            file("app/package.json", 100, 1),
            file("app/node_modules/jest/index.js", 1000, 2),
            file("app/node_modules/jest/lib/a.js", 24, 3),
            file("app/node_modules/express/index.js", 500, 4),
        ]);
        app.scan.manifests.push(DevManifest {
            dir: b"app".to_vec(),
            dev_dependencies: vec!["jest".into(), "typescript".into()],
        });
        let analysis = analyze(&[app], 5);
        let dev = analysis
            .findings
            .iter()
            .find(|f| f.kind == FindingKind::DevDependencies)
            .unwrap();
        assert_eq!((dev.bytes, dev.files), (1024, 2));
        assert_eq!(dev.paths[0].path, "/app/node_modules/jest");
    }

    #[test]
    fn repeated_path_wastes_first_copy() {
        let analysis = analyze(
            &[layer(vec![file("etc/a", 10, 1), file("etc/a", 12, 2)])],
            5,
        );
        assert_eq!(analysis.totals.shipped_bytes, 22);
        assert_eq!(analysis.totals.hidden_bytes, 10);
        assert_eq!(analysis.wasted[0].reason, WasteReason::Overwritten);
    }

    #[test]
    fn file_over_directory_hides_tree() {
        let lower = layer(vec![file("opt/x/a", 7, 1), file("opt/x/b/c", 5, 2)]);
        let upper = layer(vec![file("opt/x", 3, 3)]);
        let analysis = analyze(&[lower, upper], 5);
        assert_eq!(analysis.totals.final_bytes, 3);
        assert_eq!(analysis.totals.hidden_bytes, 12);
    }
}
