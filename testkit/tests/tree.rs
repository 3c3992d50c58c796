//! Snapshots record what GNU tar extracted, merges follow overlayfs rules, and diffs
//! report each difference.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};

use lazypull_testkit::image::python_image;
use lazypull_testkit::tarbuild::{Builder, Entry, recipes};
use lazypull_testkit::tree::{
    DiffOptions, NodeKind, Tree, extract_layers_merged, extract_with_gnu_tar, implied_parent_dirs,
    merge_layers, snapshot,
};
use lazypull_testkit::{Prereq, require_or_skip};

fn extract_bytes(tar: &[u8]) -> (tempfile::TempDir, Tree) {
    let dir = tempfile::tempdir().unwrap();
    let archive = dir.path().join("layer.tar");
    std::fs::write(&archive, tar).unwrap();
    let dest = dir.path().join("root");
    std::fs::create_dir(&dest).unwrap();
    extract_with_gnu_tar(&archive, &dest, false).expect("extract");
    let tree = snapshot(&dest).expect("snapshot");
    (dir, tree)
}

fn paths(tree: &Tree) -> Vec<String> {
    tree.paths()
        .iter()
        .map(|path| path.display().to_string())
        .collect()
}

#[test]
fn snapshot_records_every_entry_kind() {
    require_or_skip!(Prereq::Root, Prereq::Binary("tar"));
    let (_dir, tree) = extract_bytes(&recipes::every_entry_kind());

    let regular = tree.get("all/regular").unwrap();
    assert_eq!(regular.kind, NodeKind::Regular);
    assert_eq!(regular.mode, 0o644);
    assert_eq!(regular.size, 8);
    assert_eq!(regular.mtime_ns, 1_700_000_000_000_000_000);

    assert_eq!(tree.get("all/setuid").unwrap().mode, 0o4755);
    assert_eq!(tree.get("all/sticky").unwrap().mode, 0o1777);
    let bigids = tree.get("all/bigids").unwrap();
    assert_eq!((bigids.uid, bigids.gid), (3_000_000, 4_000_000));
    assert_eq!(
        tree.get("all/fraction").unwrap().mtime_ns,
        1_700_000_000_123_456_789
    );

    let null = tree.get("all/null").unwrap();
    assert_eq!(null.kind, NodeKind::CharDevice);
    assert_eq!(null.device, Some((1, 3)));
    let loop0 = tree.get("all/loop0").unwrap();
    assert_eq!(loop0.kind, NodeKind::BlockDevice);
    assert_eq!(loop0.device, Some((7, 0)));
    assert_eq!(tree.get("all/fifo").unwrap().kind, NodeKind::Fifo);

    let symlink = tree.get("all/symlink").unwrap();
    assert_eq!(symlink.link_target.as_deref(), Some(&b"regular"[..]));
    assert_eq!(symlink.size, 7);

    let xattr = tree.get("all/xattr").unwrap();
    assert_eq!(
        xattr.xattrs.get("user.key").map(Vec::as_slice),
        Some(&[0x00, 0xff, 0x0a][..])
    );

    let sparse_expected = recipes::sparse_expand(recipes::SPARSE_SIZE, &recipes::sparse_segments());
    let sparse_sha = hex::encode(<sha2::Sha256 as sha2::Digest>::digest(&sparse_expected));
    for (name, _) in recipes::SPARSE_FORMATS {
        let node = tree.get(format!("all/sparse-{name}")).unwrap();
        assert_eq!(
            node.sha256.as_deref(),
            Some(sparse_sha.as_str()),
            "sparse-{name}"
        );
    }

    let groups = tree.hardlink_groups();
    let expected: BTreeSet<PathBuf> = ["all/hardlink", "all/regular"]
        .iter()
        .map(PathBuf::from)
        .collect();
    assert_eq!(groups, BTreeSet::from([expected]));
    assert_eq!(tree.get("all/hardlink").unwrap().nlink, 2);
}

#[test]
fn snapshot_reads_binary_capability_xattr() {
    require_or_skip!(Prereq::Root, Prereq::Binary("tar"));
    let (_dir, tree) = extract_bytes(&recipes::xattrs_pax());
    let ping = tree.get("usr/bin/ping").unwrap();
    assert_eq!(
        ping.xattrs.get("security.capability").map(Vec::as_slice),
        Some(&recipes::CAP_NET_RAW_EP[..])
    );
    assert_eq!(
        ping.xattrs.get("user.note").map(Vec::as_slice),
        Some(&b"hello"[..])
    );
    assert_eq!(ping.mtime_ns, 1_700_000_000_500_000_000);
    assert_eq!(tree.get("srv/shared").unwrap().mode, 0o2775);
    assert_eq!(tree.get("srv/shared").unwrap().gid, 50);
}

#[test]
fn merge_applies_whiteouts_and_opaque_dirs() {
    require_or_skip!(Prereq::Binary("tar"));
    let (_lower_dir, lower) = extract_bytes(&recipes::whiteouts_lower());
    let expected = ["etc", "etc/hosts", "etc/network", "etc/network/newfile"];
    for upper_tar in [
        recipes::whiteouts_upper(),
        recipes::whiteouts_upper_marker_last(),
    ] {
        let (_upper_dir, upper) = extract_bytes(&upper_tar);
        let merged = merge_layers(&[lower.clone(), upper]);
        assert_eq!(paths(&merged), expected);
    }
    let (_only_dir, only) = extract_bytes(&recipes::whiteouts_upper_only());
    let merged = merge_layers(&[lower.clone(), only]);
    assert_eq!(paths(&merged), ["etc", "etc/hosts", "etc/network"]);
}

#[test]
fn merge_keeps_bare_whiteouts_as_files() {
    require_or_skip!(Prereq::Binary("tar"));
    let (_lower_dir, lower) = extract_bytes(&recipes::bare_whiteout_lower());
    let (_upper_dir, upper) = extract_bytes(&recipes::bare_whiteout());
    let merged = merge_layers(&[lower.clone(), upper]);
    assert_eq!(
        paths(&merged),
        ["etc", "etc/.wh.", "etc/hosts", "etc/passwd"]
    );

    let (_top_dir, top) = extract_bytes(&recipes::bare_whiteout_top_level());
    let merged = merge_layers(&[lower.clone(), top]);
    assert!(merged.get("etc/passwd").is_some());
    assert!(merged.get(".wh.").is_some());

    let (_dots_dir, dots) = extract_bytes(&recipes::bare_whiteout_dots());
    let merged = merge_layers(&[lower, dots]);
    assert_eq!(
        paths(&merged),
        [
            "etc",
            "etc/.wh..",
            "etc/.wh...",
            "etc/.wh.../x",
            "etc/hosts",
            "etc/passwd"
        ]
    );
}

#[test]
fn merge_replaces_file_with_directory_and_back() {
    require_or_skip!(Prereq::Binary("tar"));
    let mut lower = Builder::new();
    lower.append(&Entry::file("a", "file"));
    lower.append(&Entry::dir("b"));
    lower.append(&Entry::file("b/inner", "x"));
    let mut upper = Builder::new();
    upper.append(&Entry::file("a/child", "now a dir"));
    upper.append(&Entry::file("b", "now a file"));
    let (_l, lower) = extract_bytes(&lower.finish());
    let (_u, upper) = extract_bytes(&upper.finish());
    let merged = merge_layers(&[lower, upper]);
    assert_eq!(paths(&merged), ["a", "a/child", "b"]);
    assert_eq!(merged.get("a").unwrap().kind, NodeKind::Directory);
    assert_eq!(merged.get("b").unwrap().kind, NodeKind::Regular);
}

#[test]
fn diff_reports_each_difference() {
    require_or_skip!(Prereq::Binary("tar"));
    let (_dir, expected) = extract_bytes(&recipes::symlinks());
    let mut actual = expected.clone();
    actual
        .nodes
        .get_mut(Path::new("usr/lib/libpq.so.5.13"))
        .unwrap()
        .sha256 = Some("00".into());
    actual
        .nodes
        .get_mut(Path::new("usr/lib/libpq.so"))
        .unwrap()
        .size = 0;
    actual.nodes.get_mut(Path::new("usr/lib")).unwrap().mode = 0o700;
    actual.nodes.remove(Path::new("usr/lib/mounts"));
    let mut extra = actual.nodes[Path::new("usr/lib/libpq.so.5.13")].clone();
    extra.inode.1 += 1_000_000;
    actual.nodes.insert(PathBuf::from("usr/extra"), extra);

    let differences = expected.diff(&actual);
    assert_eq!(differences.len(), 5, "{differences:#?}");
    assert!(
        differences
            .iter()
            .any(|line| line.starts_with("usr/lib: mode 755 != 700"))
    );
    assert!(
        differences
            .iter()
            .any(|line| line.starts_with("usr/lib/libpq.so: size 13 != 0"))
    );
    assert!(
        differences
            .iter()
            .any(|line| line.contains("usr/lib/libpq.so.5.13: content sha256"))
    );
    assert!(
        differences
            .iter()
            .any(|line| line == "usr/lib/mounts: missing (expected Symlink)")
    );
    assert!(
        differences
            .iter()
            .any(|line| line == "usr/extra: unexpected Regular")
    );

    let options = DiffOptions {
        ignore_paths: vec![PathBuf::from("usr/extra"), PathBuf::from("usr/lib/mounts")],
        ignore_dir_metadata: BTreeSet::from([PathBuf::from("usr/lib")]),
        ..DiffOptions::default()
    };
    assert_eq!(expected.diff_with(&actual, &options).len(), 2);
}

#[test]
fn diff_of_identical_extractions_is_empty() {
    require_or_skip!(Prereq::Binary("tar"));
    let (_a, first) = extract_bytes(&recipes::long_names());
    let (_b, second) = extract_bytes(&recipes::long_names());
    // Implied parents are created at extraction time, so their mtimes differ.
    let options = DiffOptions {
        ignore_dir_mtimes: true,
        ..DiffOptions::default()
    };
    assert_eq!(first.diff_with(&second, &options), Vec::<String>::new());
    // Hard link groups are compared by membership, not by inode numbers.
    assert_eq!(first.hardlink_groups().len(), 1);
}

#[test]
fn implied_parents_are_listed() {
    require_or_skip!(Prereq::Binary("tar"));
    let dir = tempfile::tempdir().unwrap();
    let archive = dir.path().join("layer.tar");
    std::fs::write(&archive, recipes::hardlink_no_parent_dirs()).unwrap();
    let implied = implied_parent_dirs(&archive).unwrap();
    let expected: BTreeSet<PathBuf> = [
        "bin",
        "bin/app.runfiles",
        "bin/app.runfiles/_main",
        "bin/app.runfiles/_main/app_",
    ]
    .iter()
    .map(PathBuf::from)
    .collect();
    assert_eq!(implied, expected);

    std::fs::write(&archive, recipes::whiteouts_lower()).unwrap();
    assert!(implied_parent_dirs(&archive).unwrap().is_empty());
}

#[test]
fn python_image_layers_merge_with_whiteouts_applied() {
    require_or_skip!(
        Prereq::Root,
        Prereq::Binary("tar"),
        Prereq::Binary("jq"),
        Prereq::Binary("mmdebstrap"),
        Prereq::Binary("umoci")
    );
    let layout = python_image().expect("python image");
    let index: serde_json::Value =
        serde_json::from_slice(&std::fs::read(layout.join("index.json")).unwrap()).unwrap();
    let manifest_digest = index["manifests"][0]["digest"].as_str().unwrap();
    let blob = |digest: &str| {
        layout
            .join("blobs/sha256")
            .join(digest.trim_start_matches("sha256:"))
    };
    let manifest: serde_json::Value =
        serde_json::from_slice(&std::fs::read(blob(manifest_digest)).unwrap()).unwrap();
    let layers: Vec<PathBuf> = manifest["layers"]
        .as_array()
        .unwrap()
        .iter()
        .map(|layer| blob(layer["digest"].as_str().unwrap()))
        .collect();
    assert_eq!(layers.len(), 2);

    let started = std::time::Instant::now();
    let archives: Vec<(&Path, bool)> = layers.iter().map(|path| (path.as_path(), true)).collect();
    let merged = extract_layers_merged(&archives).expect("merge layers");
    eprintln!(
        "extracted and merged {} paths in {:?}",
        merged.nodes.len(),
        started.elapsed()
    );

    assert!(merged.get("usr/bin/python3.11").is_some());
    assert!(
        merged
            .get("usr/lib/x86_64-linux-gnu/libsqlite3.so.0")
            .is_some()
    );
    assert!(merged.get("usr/share/doc/bash/copyright").is_some());
    let changelogs = merged
        .paths()
        .into_iter()
        .filter(|path| path.starts_with("usr/share/doc"))
        .filter(|path| {
            path.file_name()
                .is_some_and(|name| name.to_string_lossy().starts_with("changelog"))
        })
        .count();
    assert_eq!(changelogs, 0, "layer 2 whiteouts must hide every changelog");
    assert!(
        !merged
            .paths()
            .iter()
            .any(|path| path.to_string_lossy().contains(".wh."))
    );
}
