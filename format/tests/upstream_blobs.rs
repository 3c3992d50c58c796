//! Our reader on blobs written by the upstream Go `estargz` package (Debian's
//! golang-github-containerd-stargz-snapshotter-dev, the library `ctr-remote image convert`
//! uses): every file reads byte-exactly as GNU tar extracts the input layer.

mod common;

use common::*;
use estargz::{Compression, Digest};
use lazypull_testkit::gochecker::{GoBuildOptions, go_build_estargz};
use lazypull_testkit::tarbuild::recipes;
use lazypull_testkit::tree;

fn check_upstream(name: &str, tar: &[u8], options: &GoBuildOptions) {
    if !require_root_and_tar() {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let input = dir.path().join("input.tar");
    let output = dir.path().join("blob");
    std::fs::write(&input, tar).unwrap();
    let built =
        go_build_estargz(&input, &output, options).unwrap_or_else(|e| panic!("{name}: {e:#}"));
    let blob = std::fs::read(&output).unwrap();
    let (_extracted, expected) = extract(&input, false);
    let implied = tree::implied_parent_dirs(&input).unwrap();
    let compression = if options.zstd {
        Compression::Zstd
    } else {
        Compression::Gzip
    };
    let digest: Digest = built.toc_digest.parse().unwrap();
    check_blob_reads_like(
        &blob,
        digest,
        &expected,
        compression,
        &implied,
        MtimePrecision::Seconds,
    );
}

fn small() -> GoBuildOptions {
    GoBuildOptions {
        chunk_size: 64 << 10,
        ..GoBuildOptions::default()
    }
}

#[test]
fn upstream_gzip_blobs_read_exactly() {
    let layers: [(&str, Vec<u8>); 9] = [
        ("hardlink_prioritized", recipes::hardlink_prioritized()),
        ("zero_length_files", recipes::zero_length_files()),
        ("symlinks", recipes::symlinks()),
        ("long_names", recipes::long_names()),
        ("whiteouts_upper", recipes::whiteouts_upper()),
        ("xattrs_pax", recipes::xattrs_pax()),
        ("duplicate_paths", recipes::duplicate_paths()),
        (
            "hardlink_no_parent_dirs",
            recipes::hardlink_no_parent_dirs(),
        ),
        ("dir_after_children", recipes::dir_after_children()),
    ];
    for (name, tar) in &layers {
        check_upstream(name, tar, &small());
    }
}

#[test]
fn upstream_prioritized_blob_reads_exactly() {
    let options = GoBuildOptions {
        prioritized: recipes::HARDLINK_PRIORITIZED_LIST
            .iter()
            .map(|p| p.to_string())
            .collect(),
        ..small()
    };
    check_upstream(
        "hardlink_prioritized",
        &recipes::hardlink_prioritized(),
        &options,
    );
}

#[test]
fn upstream_zstd_chunked_blob_reads_exactly() {
    let options = GoBuildOptions {
        zstd: true,
        ..small()
    };
    check_upstream("xattrs_pax", &recipes::xattrs_pax(), &options);
    check_upstream("long_names", &recipes::long_names(), &options);
}

#[test]
fn upstream_multi_part_blob_reads_exactly() {
    // A layer large enough that upstream splits it into parallel parts with extra member cuts.
    let layer = recipes::multi_member_gzip(24 << 20, 4 << 20);
    let mut tar = Vec::new();
    std::io::Read::read_to_end(
        &mut flate2::read::MultiGzDecoder::new(&layer.gzip[..]),
        &mut tar,
    )
    .unwrap();
    check_upstream(
        "multi_member",
        &tar,
        &GoBuildOptions {
            chunk_size: 1 << 20,
            ..GoBuildOptions::default()
        },
    );
}
