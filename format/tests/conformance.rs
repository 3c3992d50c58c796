//! Conformance of written blobs: every input layer of the edge-case recipes converts into a blob
//! that GNU tar extracts to the same tree, that our reader and the upstream Go reader read
//! byte-exactly, whose TOC lists the tar entries in tar order, and that converts again into a blob
//! with exactly one TOC.

mod common;

use std::io::{Cursor, Read};

use common::*;
use estargz::blob::{BlobOptions, open_blob};
use estargz::build::BuildOptions;
use estargz::index::{NodeId, NodeKind};
use estargz::tar::scan::scan;
use estargz::{Compression, Limits};
use lazypull_testkit::gochecker;
use lazypull_testkit::tarbuild::recipes;
use lazypull_testkit::tarbuild::{Builder, Entry};
use lazypull_testkit::tree;

/// Runs every check on one input layer.
fn check_layer(name: &str, tar: &[u8], options: &BuildOptions) {
    if !require_root_and_tar() {
        return;
    }
    let converted = convert(tar, options);
    let compressed = options.compression == Compression::Gzip;
    let (_input_dir, expected) = extract(&converted.input_path(), false);
    let implied = tree::implied_parent_dirs(&converted.input_path()).unwrap();

    if compressed {
        let (_output_dir, actual) = extract(&converted.blob_path(), true);
        let differences = expected.diff_with(&actual, &diff_options(&converted.input_path()));
        assert!(
            differences.is_empty(),
            "{name}: GNU tar sees a different tree:\n{differences:#?}"
        );
        assert_eq!(
            actual.get("stargz.index.json").map(|n| n.kind),
            Some(tree::NodeKind::Regular),
            "{name}"
        );
    } else {
        let stream = decompress(&converted.blob, Compression::Zstd);
        let stream_path = converted.dir.path().join("stream.tar");
        std::fs::write(&stream_path, stream).unwrap();
        let (_output_dir, actual) = extract(&stream_path, false);
        let differences = expected.diff_with(&actual, &diff_options(&converted.input_path()));
        assert!(
            differences.is_empty(),
            "{name}: GNU tar sees a different tree:\n{differences:#?}"
        );
    }
    check_our_reader(&converted, &expected, options.compression, &implied);
    check_toc_matches_tar(&converted, options.compression);

    if compressed {
        // The upstream reader opens the blob, verifies the TOC and every chunk.
        let go = gochecker::go_check(
            &converted.blob_path(),
            &converted.out.toc_digest.to_string(),
        )
        .unwrap_or_else(|e| panic!("{name}: upstream reader rejected the blob: {e:#}"));
        for entry in go.iter().filter(|e| e.kind == "reg") {
            let path = entry.clean_name();
            if ADDED.contains(&path) {
                continue;
            }
            let node = expected
                .get(path)
                .unwrap_or_else(|| panic!("{name}: upstream lists unknown {path}"));
            assert_eq!(
                entry.sha256, node.sha256,
                "{name}: upstream content of {path}"
            );
        }

        // Converting the output again gives one TOC and the same tree.
        let stream = decompress(&converted.blob, Compression::Gzip);
        let again = convert(&stream, options);
        let restream = decompress(&again.blob, Compression::Gzip);
        let scanned = scan(Cursor::new(&restream), &Limits::default()).unwrap();
        let tocs = scanned
            .entries
            .iter()
            .filter(|e| e.meta.name == b"stargz.index.json")
            .count();
        assert_eq!(
            tocs, 1,
            "{name}: a reconverted blob must hold exactly one TOC"
        );
        let (_again_dir, again_tree) = extract(&again.blob_path(), true);
        let differences = expected.diff_with(&again_tree, &diff_options(&converted.input_path()));
        assert!(
            differences.is_empty(),
            "{name}: reconverted tree differs:\n{differences:#?}"
        );
    }
}

fn small_chunks() -> BuildOptions {
    BuildOptions {
        chunk_size: 64 << 10,
        threads: 2,
        ..BuildOptions::default()
    }
}

#[test]
fn hardlink_prioritized_keeps_target_before_link() {
    let options = BuildOptions {
        prioritized: recipes::HARDLINK_PRIORITIZED_LIST
            .iter()
            .map(|p| p.as_bytes().to_vec())
            .collect(),
        ..small_chunks()
    };
    check_layer(
        "hardlink_prioritized",
        &recipes::hardlink_prioritized(),
        &options,
    );
}

#[test]
fn hardlink_without_parent_dirs() {
    check_layer(
        "hardlink_no_parent_dirs",
        &recipes::hardlink_no_parent_dirs(),
        &small_chunks(),
    );
}

#[test]
fn directory_after_its_children() {
    check_layer(
        "dir_after_children",
        &recipes::dir_after_children(),
        &small_chunks(),
    );
}

#[test]
fn duplicate_paths_last_entry_wins() {
    check_layer(
        "duplicate_paths",
        &recipes::duplicate_paths(),
        &small_chunks(),
    );
}

#[test]
fn hardlink_keeps_replaced_target() {
    check_layer(
        "hardlinks_to_replaced_file",
        &recipes::hardlinks_to_replaced_file(),
        &small_chunks(),
    );
}

#[test]
fn zero_length_files_have_no_chunks() {
    check_layer(
        "zero_length_files",
        &recipes::zero_length_files(),
        &small_chunks(),
    );
}

#[test]
fn symlink_targets_of_every_length() {
    check_layer("symlinks", &recipes::symlinks(), &small_chunks());
}

#[test]
fn long_names_in_every_encoding() {
    check_layer("long_names", &recipes::long_names(), &small_chunks());
}

#[test]
fn whiteouts_pass_through() {
    check_layer(
        "whiteouts_lower",
        &recipes::whiteouts_lower(),
        &small_chunks(),
    );
    check_layer(
        "whiteouts_upper",
        &recipes::whiteouts_upper(),
        &small_chunks(),
    );
    check_layer(
        "whiteouts_upper_marker_last",
        &recipes::whiteouts_upper_marker_last(),
        &small_chunks(),
    );
    check_layer(
        "whiteouts_upper_only",
        &recipes::whiteouts_upper_only(),
        &small_chunks(),
    );
}

#[test]
fn xattrs_in_pax_records() {
    check_layer("xattrs_pax", &recipes::xattrs_pax(), &small_chunks());
}

#[test]
fn link_escapes_are_stored_literally() {
    // GNU tar refuses parts of these layers, so the oracle is the entry list itself: later entries
    // replace earlier ones, nothing is resolved through a link, and entries below a symlink are
    // kept in the tar but never reachable through the index.
    let converted = convert(&recipes::link_escape(), &small_chunks());
    let opened = open_blob(
        &converted.blob.as_slice(),
        &BlobOptions::verify_with(converted.out.toc_digest),
    )
    .unwrap();
    let index = &opened.index;
    let evil = index.lookup_path(b"evil").expect("evil");
    assert_eq!(
        index.node(evil).unwrap().kind,
        NodeKind::Reg,
        "the later regular file replaces the symlink"
    );
    let h = index.lookup_path(b"h").expect("h");
    assert_eq!(
        index.node(h).unwrap().kind,
        NodeKind::Reg,
        "the later regular file replaces the hard link"
    );
    assert_eq!(index.node(h).unwrap().nlink, 1);
    let up = index.lookup_path(b"up").expect("up");
    assert_eq!(index.node(up).unwrap().kind, NodeKind::Symlink);
    assert_eq!(index.symlink_target(up), b"..");
    assert_eq!(
        index.lookup_path(b"up/outside/dir/file"),
        None,
        "nothing is reachable below a symlink"
    );
    assert!(index.stats().skipped_below_non_dir >= 1);
    check_toc_matches_tar(&converted, Compression::Gzip);
    gochecker::go_check(
        &converted.blob_path(),
        &converted.out.toc_digest.to_string(),
    )
    .unwrap();
}

#[test]
fn bare_whiteouts_are_ordinary_files() {
    check_layer("bare_whiteout", &recipes::bare_whiteout(), &small_chunks());
    check_layer(
        "bare_whiteout_top_level",
        &recipes::bare_whiteout_top_level(),
        &small_chunks(),
    );
}

#[test]
fn every_entry_kind_including_sparse() {
    check_layer(
        "every_entry_kind",
        &recipes::every_entry_kind(),
        &small_chunks(),
    );
}

#[test]
fn every_entry_kind_as_zstd() {
    let options = BuildOptions {
        compression: Compression::Zstd,
        level: 3,
        ..small_chunks()
    };
    check_layer(
        "every_entry_kind_zstd",
        &recipes::every_entry_kind(),
        &options,
    );
}

#[test]
fn multi_member_gzip_input_is_read_whole() {
    let layer = recipes::multi_member_gzip(24 << 20, 4 << 20);
    let mut tar = Vec::new();
    flate2::read::MultiGzDecoder::new(&layer.gzip[..])
        .read_to_end(&mut tar)
        .unwrap();
    check_layer(
        "multi_member_gzip",
        &tar,
        &BuildOptions {
            chunk_size: 1 << 20,
            threads: 2,
            ..BuildOptions::default()
        },
    );
}

#[test]
fn empty_layer_gets_landmark_and_toc() {
    check_layer("empty", &[0u8; 1024], &BuildOptions::default());
    let converted = convert(&[], &BuildOptions::default());
    let opened = open_blob(
        &converted.blob.as_slice(),
        &BlobOptions::verify_with(converted.out.toc_digest),
    )
    .unwrap();
    assert_eq!(
        opened.index.child_count(NodeId::ROOT),
        1,
        "only the landmark"
    );
}

#[test]
fn chunk_boundaries_follow_the_reference_rules() {
    // Files of size C-1, C, C+1, 2C and 2.5C with C = 64 KiB.
    let c = 64usize << 10;
    let sizes = [c - 1, c, c + 1, 2 * c, 5 * c / 2];
    let mut builder = lazypull_testkit::tarbuild::Builder::new();
    for (i, size) in sizes.iter().enumerate() {
        builder.append(&lazypull_testkit::tarbuild::Entry::file(
            format!("f{i}"),
            lazypull_testkit::tarbuild::pattern(*size, i as u64),
        ));
    }
    let tar = builder.finish();
    let converted = convert(&tar, &small_chunks());
    let loc = estargz::blob::locate_toc(&converted.blob.as_slice()).unwrap();
    let json = estargz::blob::decode_toc(
        &converted.blob[loc.offset as usize..(loc.offset + loc.compressed_len) as usize],
        &loc,
        &Limits::default(),
    )
    .unwrap();
    let toc = estargz::toc::parse_toc(&json, &Limits::default()).unwrap();
    let sizes_of = |name: &str| -> Vec<(u64, u64)> {
        toc.entries
            .iter()
            .filter(|e| e.name == name)
            .map(|e| (e.chunk_offset, e.chunk_size))
            .collect()
    };
    let c = c as u64;
    assert_eq!(
        sizes_of("f0"),
        vec![(0, 0)],
        "smaller than a chunk: no chunkSize"
    );
    assert_eq!(
        sizes_of("f1"),
        vec![(0, c)],
        "exactly one chunk: chunkSize set"
    );
    assert_eq!(sizes_of("f2"), vec![(0, c), (c, 0)]);
    assert_eq!(
        sizes_of("f3"),
        vec![(0, c), (c, c)],
        "a whole last chunk keeps its size"
    );
    assert_eq!(sizes_of("f4"), vec![(0, c), (c, c), (2 * c, 0)]);
    // Every payload starts a gzip member that decodes on its own.
    for entry in toc.entries.iter().filter(|e| e.offset > 0) {
        let mut one = flate2::read::GzDecoder::new(&converted.blob[entry.offset as usize..]);
        let mut byte = [0u8; 1];
        one.read_exact(&mut byte).unwrap();
    }
    check_layer("chunk_boundaries", &tar, &small_chunks());
}

#[test]
fn hard_links_to_nothing_are_dropped() {
    if !require_root_and_tar() {
        return;
    }
    let mut builder = Builder::new();
    for entry in [
        Entry::file("f", "content\n"),
        Entry::hardlink("self", "self"),
        Entry::hardlink("lower", "usr/bin/only-in-a-lower-layer"),
        Entry::hardlink("cycle-a", "cycle-b"),
        Entry::hardlink("cycle-b", "cycle-a"),
        Entry::hardlink("good", "f"),
    ] {
        builder.append(&entry);
    }
    let tar = builder.finish();
    let converted = convert(&tar, &small_chunks());
    let mut dropped = converted.out.dangling_links.clone();
    dropped.sort();
    assert_eq!(dropped, ["cycle-a", "cycle-b", "lower", "self"]);

    // GNU tar extracts the output without an error, and the output contains the two good names.
    let (_dir, actual) = extract(&converted.blob_path(), true);
    assert_eq!(actual.get("good").map(|n| n.nlink), Some(2));
    assert!(actual.get("self").is_none());
    // The upstream reader opens it too (it loops on a self link).
    let go = gochecker::go_check(
        &converted.blob_path(),
        &converted.out.toc_digest.to_string(),
    )
    .unwrap_or_else(|e| panic!("upstream reader rejected the blob: {e:#}"));
    assert!(go.iter().any(|entry| entry.clean_name() == "good"));
}
