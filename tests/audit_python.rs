//! `lazypull audit` on the real python test image, cross-checked against GNU tar: each layer is
//! unpacked, snapshotted and merged with overlay rules, and the sizes of that tree must equal
//! the audit's figures. Prints the time of both for the record (the audit reads the same
//! blobs without writing a file).

mod audit_support;

use std::collections::{BTreeMap, BTreeSet};
use std::io::Read;
use std::time::Instant;

use lazypull_testkit::image::{PYTHON_IMAGE_TAG, python_image};
use lazypull_testkit::tree::{NodeKind, Tree, extract_with_gnu_tar, merge_layers, snapshot};
use lazypull_testkit::{Prereq, require_or_skip};
use serde_json::Value;

/// Content bytes of a tree, each inode once.
fn file_bytes(tree: &Tree) -> u64 {
    let mut seen = BTreeSet::new();
    tree.nodes
        .values()
        .filter(|n| n.kind == NodeKind::Regular && seen.insert(n.inode))
        .map(|n| n.size)
        .sum()
}

/// Bytes of extra copies of identical non-empty content, each inode once.
fn duplicate_bytes(tree: &Tree) -> u64 {
    let mut seen = BTreeSet::new();
    let mut copies: BTreeMap<(String, u64), u64> = BTreeMap::new();
    for node in tree.nodes.values() {
        if node.kind == NodeKind::Regular && node.size > 0 && seen.insert(node.inode) {
            let digest = node.sha256.clone().unwrap_or_default();
            *copies.entry((digest, node.size)).or_default() += 1;
        }
    }
    copies
        .iter()
        .map(|((_, size), count)| size * (count - 1))
        .sum()
}

#[test]
fn python_image_figures_match_gnu_tar_unpacking() {
    require_or_skip!(Prereq::Binary("tar"));
    let layout = python_image().unwrap();
    cross_check(&layout, PYTHON_IMAGE_TAG);
}

/// Checks the node and ML benchmark images of `scripts/build-bench-images.sh` the same way.
/// Ignored by default: unpacking the ML image takes about a minute and 1 GB of disk. Run with
/// `cargo test --release --test audit_python -- --ignored --nocapture` after building them.
#[test]
#[ignore]
fn bench_images_figures_match_gnu_tar_unpacking() {
    for name in ["node", "ml"] {
        let layout = lazypull_testkit::image::cache_dir()
            .join("images")
            .join(name);
        assert!(
            layout.join("index.json").is_file(),
            "{} is missing; run scripts/build-bench-images.sh {name}",
            layout.display()
        );
        cross_check(&layout, "latest");
    }
}

/// Audits the image `tag` of `layout` and checks its figures against GNU tar.
fn cross_check(layout: &std::path::Path, tag: &str) {
    let image = format!("oci:{}:{tag}", layout.display());

    let started = Instant::now();
    let (code, report, output) = audit_support::audit_json(&image, &[]);
    let audit_seconds = started.elapsed().as_secs_f64();
    assert_eq!(code, 0, "{}", String::from_utf8_lossy(&output.stderr));

    let layers = report["layers"].as_array().unwrap();
    let mut trees = Vec::new();
    let mut tar_seconds = 0.0;
    let mut shipped = 0;
    let work = tempfile::tempdir().unwrap();
    for layer in layers {
        let digest = layer["digest"].as_str().unwrap();
        let blob = layout.join("blobs/sha256").join(&digest["sha256:".len()..]);
        let dir = work.path().join(&digest[7..19]);
        std::fs::create_dir(&dir).unwrap();
        let started = Instant::now();
        extract_with_gnu_tar(&blob, &dir, true).unwrap();
        tar_seconds += started.elapsed().as_secs_f64();
        let tree = snapshot(&dir).unwrap();

        let mut tar_len = 0u64;
        let mut decoder = flate2::read::MultiGzDecoder::new(std::fs::File::open(&blob).unwrap());
        let mut buffer = vec![0u8; 1 << 20];
        loop {
            let n = decoder.read(&mut buffer).unwrap();
            if n == 0 {
                break;
            }
            tar_len += n as u64;
        }
        assert_eq!(layer["uncompressed_bytes"], tar_len, "layer {digest}");
        assert_eq!(
            layer["file_bytes"],
            file_bytes(&tree),
            "content bytes of layer {digest}"
        );
        shipped += file_bytes(&tree);
        trees.push(tree);
    }
    let merged = merge_layers(&trees);
    let totals = &report["totals"];
    let final_bytes = file_bytes(&merged);
    let duplicates = duplicate_bytes(&merged);
    assert_eq!(totals["shipped_bytes"], shipped);
    assert_eq!(totals["final_bytes"], final_bytes);
    assert_eq!(totals["hidden_bytes"], shipped - final_bytes);
    assert_eq!(totals["duplicate_bytes"], duplicates);
    assert_eq!(totals["wasted_bytes"], shipped - final_bytes + duplicates);
    let wasted: u64 = report["wasted"]
        .as_array()
        .unwrap()
        .iter()
        .map(|w| w["bytes"].as_u64().unwrap())
        .sum();
    assert_eq!(totals["wasted_bytes"], wasted);
    assert!(
        report["layers"][0]["created_by"].is_string(),
        "the python image's history names its layers"
    );
    let _: &Value = &report["findings"];
    eprintln!(
        "{image}: shipped {shipped} B, final {final_bytes} B, hidden {} B, duplicate {duplicates} B; audit {audit_seconds:.2} s, GNU tar -x {tar_seconds:.2} s",
        shipped - final_bytes
    );
}
