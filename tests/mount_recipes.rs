//! Byte-exactness of real FUSE + overlayfs mounts for every tar edge case: each recipe is
//! converted to eStargz, mounted with `lazypull mount`, and compared with GNU tar's extraction
//! of the original layers merged the way overlayfs stacks them.

mod mount_util;

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};

use estargz::build::BuildOptions;
use lazypull_testkit::tarbuild::recipes;
use lazypull_testkit::tree::{DiffOptions, extract_layers_merged, implied_parent_dirs, snapshot};
use lazypull_testkit::{Prereq, require_or_skip};
use mount_util::{Mount, path_str, write_estargz_layout};

fn prerequisites() -> [Prereq; 5] {
    [
        Prereq::Root,
        Prereq::Fuse,
        Prereq::Overlayfs,
        Prereq::Binary("tar"),
        Prereq::Binary("fusermount3"),
    ]
}

/// Mounts `layers` (uncompressed tars, bottom first) and diffs the mount against GNU tar.
fn assert_mount_matches_tar(name: &str, layers: &[Vec<u8>], options: &BuildOptions) {
    let layout = tempfile::Builder::new()
        .prefix("lazypull-layout-")
        .tempdir()
        .unwrap();
    let converted = write_estargz_layout(layout.path(), "latest", layers, options).unwrap();
    let archives: Vec<PathBuf> = converted.iter().map(|layer| layer.tar.clone()).collect();
    let pairs: Vec<(&Path, bool)> = archives
        .iter()
        .map(|path| (path.as_path(), false))
        .collect();
    let expected = extract_layers_merged(&pairs).unwrap();

    let image = format!("oci:{}:latest", path_str(layout.path()));
    let mount =
        Mount::start(&image, &["--no-disk-cache"]).unwrap_or_else(|e| panic!("{name}: {e:#}"));
    let actual =
        snapshot(mount.path()).unwrap_or_else(|e| panic!("{name}: {e:#}\nlog:\n{}", mount.log()));

    let mut implied = BTreeSet::new();
    for archive in &archives {
        implied.extend(implied_parent_dirs(archive).unwrap());
    }
    // GNU tar leaves a directory's mtime at extraction time when it creates an entry in it after
    // restoring the directory (hard links are made last), so directory mtimes are not compared.
    let diff_options = DiffOptions {
        ignore_dir_metadata: implied,
        ignore_dir_mtimes: true,
        ..DiffOptions::default()
    };
    let differences = expected.diff_with(&actual, &diff_options);
    assert!(
        differences.is_empty(),
        "{name}: mount differs from tar -x:\n{}",
        differences.join("\n")
    );
    mount.unmount().unwrap();
}

#[test]
fn tar_edge_recipes_mount_byte_exact() {
    require_or_skip!(
        prerequisites()[0],
        prerequisites()[1],
        prerequisites()[2],
        prerequisites()[3],
        prerequisites()[4]
    );
    let cases: Vec<(&str, Vec<Vec<u8>>)> = vec![
        (
            "hardlink_prioritized",
            vec![recipes::hardlink_prioritized()],
        ),
        (
            "hardlink_no_parent_dirs",
            vec![recipes::hardlink_no_parent_dirs()],
        ),
        ("dir_after_children", vec![recipes::dir_after_children()]),
        ("duplicate_paths", vec![recipes::duplicate_paths()]),
        (
            "hardlinks_to_replaced_file",
            vec![recipes::hardlinks_to_replaced_file()],
        ),
        ("zero_length_files", vec![recipes::zero_length_files()]),
        ("symlinks", vec![recipes::symlinks()]),
        ("long_names", vec![recipes::long_names()]),
        (
            "whiteouts",
            vec![recipes::whiteouts_lower(), recipes::whiteouts_upper()],
        ),
        (
            "whiteouts_marker_last",
            vec![
                recipes::whiteouts_lower(),
                recipes::whiteouts_upper_marker_last(),
            ],
        ),
        (
            "whiteouts_only",
            vec![recipes::whiteouts_lower(), recipes::whiteouts_upper_only()],
        ),
        (
            "whiteout_then_recreate",
            vec![
                recipes::whiteouts_lower(),
                recipes::whiteout_then_recreate(false),
            ],
        ),
        (
            "recreate_then_whiteout",
            vec![
                recipes::whiteouts_lower(),
                recipes::whiteout_then_recreate(true),
            ],
        ),
        ("xattrs_pax", vec![recipes::xattrs_pax()]),
        (
            "bare_whiteout",
            vec![recipes::bare_whiteout_lower(), recipes::bare_whiteout()],
        ),
        (
            "bare_whiteout_top_level",
            vec![
                recipes::bare_whiteout_lower(),
                recipes::bare_whiteout_top_level(),
            ],
        ),
        (
            "bare_whiteout_dots",
            vec![
                recipes::bare_whiteout_lower(),
                recipes::bare_whiteout_dots(),
            ],
        ),
    ];
    for (name, layers) in &cases {
        let started = std::time::Instant::now();
        assert_mount_matches_tar(name, layers, &BuildOptions::default());
        eprintln!(
            "{name}: matched in {:.2} s",
            started.elapsed().as_secs_f64()
        );
    }
}

#[test]
fn prioritized_hardlink_mounts_byte_exact() {
    require_or_skip!(
        prerequisites()[0],
        prerequisites()[1],
        prerequisites()[2],
        prerequisites()[3],
        prerequisites()[4]
    );
    let options = BuildOptions {
        prioritized: recipes::HARDLINK_PRIORITIZED_LIST
            .iter()
            .map(|p| p.as_bytes().to_vec())
            .collect(),
        ..BuildOptions::default()
    };
    assert_mount_matches_tar(
        "hardlink_prioritized with prefetch",
        &[recipes::hardlink_prioritized()],
        &options,
    );
}

#[test]
fn small_chunks_mount_byte_exact() {
    require_or_skip!(
        prerequisites()[0],
        prerequisites()[1],
        prerequisites()[2],
        prerequisites()[3],
        prerequisites()[4]
    );
    let options = BuildOptions {
        chunk_size: 4096,
        ..BuildOptions::default()
    };
    assert_mount_matches_tar(
        "hardlink_prioritized in 4 KiB chunks",
        &[recipes::hardlink_prioritized()],
        &options,
    );
}
