//! Helpers shared by the format crate's integration tests.
#![allow(dead_code)]

use std::collections::{BTreeMap, BTreeSet};
use std::io::{Cursor, Read};
use std::path::{Path, PathBuf};

use estargz::blob::{BlobOptions, open_blob, read_chunk};
use estargz::build::{BuildOptions, BuildOutput, build};
use estargz::index::{IndexOptions, NodeId, NodeKind};
use estargz::tar::scan::scan;
use estargz::{Compression, Digest, Limits};
use lazypull_testkit::prereq::Prereq;
use lazypull_testkit::tree::{self, DiffOptions, Tree};

/// Names every converted layer gains.
pub const ADDED: [&str; 3] = [
    ".no.prefetch.landmark",
    ".prefetch.landmark",
    "stargz.index.json",
];

pub struct Converted {
    pub dir: tempfile::TempDir,
    pub blob: Vec<u8>,
    pub out: BuildOutput,
}

impl Converted {
    pub fn blob_path(&self) -> PathBuf {
        self.dir.path().join("blob")
    }
    pub fn input_path(&self) -> PathBuf {
        self.dir.path().join("input.tar")
    }
}

pub fn convert(tar: &[u8], options: &BuildOptions) -> Converted {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("input.tar"), tar).unwrap();
    let mut blob = Vec::new();
    let out = build(Cursor::new(tar), &mut blob, options).unwrap();
    std::fs::write(dir.path().join("blob"), &blob).unwrap();
    Converted { dir, blob, out }
}

pub fn decompress(blob: &[u8], compression: Compression) -> Vec<u8> {
    let mut out = Vec::new();
    match compression {
        Compression::Gzip => flate2::read::MultiGzDecoder::new(blob)
            .read_to_end(&mut out)
            .unwrap(),
        Compression::Zstd => zstd::stream::read::Decoder::new(blob)
            .unwrap()
            .read_to_end(&mut out)
            .unwrap(),
    };
    out
}

pub fn extract(archive: &Path, compressed: bool) -> (tempfile::TempDir, Tree) {
    let dir = tempfile::tempdir().unwrap();
    tree::extract_with_gnu_tar(archive, dir.path(), compressed).unwrap();
    let snapshot = tree::snapshot(dir.path()).unwrap();
    (dir, snapshot)
}

pub fn diff_options(input: &Path) -> DiffOptions {
    DiffOptions {
        ignore_paths: ADDED.iter().map(PathBuf::from).collect(),
        ignore_dir_metadata: tree::implied_parent_dirs(input).unwrap(),
        // GNU tar restores a directory's mtime when the archive leaves it, and a later entry in
        // it changes it again, so extracted directory mtimes depend on entry order.
        ignore_dir_mtimes: true,
        ..DiffOptions::default()
    }
}

/// Reads every path of `expected` through our reader and compares content and attributes.
pub fn check_our_reader(
    converted: &Converted,
    expected: &Tree,
    compression: Compression,
    implied: &BTreeSet<PathBuf>,
) {
    check_blob_reads_like(
        &converted.blob,
        converted.out.toc_digest,
        expected,
        compression,
        implied,
        MtimePrecision::Exact,
    );
}

/// How precisely a blob's TOC keeps modification times.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MtimePrecision {
    /// Nanoseconds, as our writer keeps them.
    Exact,
    /// Whole seconds, rounded: the upstream writer formats `modtime` without a fraction.
    Seconds,
}

/// Opens `blob` with our reader (verifying its TOC) and compares every path of `expected`.
pub fn check_blob_reads_like(
    blob: &[u8],
    toc_digest: Digest,
    expected: &Tree,
    compression: Compression,
    implied: &BTreeSet<PathBuf>,
    precision: MtimePrecision,
) {
    let options = BlobOptions {
        toc_digest: Some(toc_digest),
        index: IndexOptions::default(),
    };
    let opened = open_blob(&blob, &options).unwrap();
    assert_eq!(opened.compression, compression);
    let index = &opened.index;
    for (path, node) in &expected.nodes {
        let id = index
            .lookup_path(path.as_os_str().as_encoded_bytes())
            .unwrap_or_else(|| panic!("{} is missing from the index", path.display()));
        let got = index.node(id).unwrap();
        let what = path.display();
        let kind = match node.kind {
            tree::NodeKind::Regular => NodeKind::Reg,
            tree::NodeKind::Directory => NodeKind::Dir,
            tree::NodeKind::Symlink => NodeKind::Symlink,
            tree::NodeKind::CharDevice => NodeKind::Char,
            tree::NodeKind::BlockDevice => NodeKind::Block,
            tree::NodeKind::Fifo => NodeKind::Fifo,
            tree::NodeKind::Socket => panic!("sockets cannot come from tar"),
        };
        assert_eq!(got.kind, kind, "{what}: kind");
        if implied.contains(path) {
            continue;
        }
        assert_eq!(got.mode, node.mode, "{what}: mode");
        assert_eq!((got.uid, got.gid), (node.uid, node.gid), "{what}: owner");
        let mtime_ns = i128::from(got.mtime.secs) * 1_000_000_000 + i128::from(got.mtime.nanos);
        if kind != NodeKind::Dir && kind != NodeKind::Symlink {
            match precision {
                MtimePrecision::Exact => assert_eq!(mtime_ns, node.mtime_ns, "{what}: mtime"),
                MtimePrecision::Seconds => {
                    assert!(
                        (mtime_ns - node.mtime_ns).abs() < 1_000_000_000,
                        "{what}: mtime {mtime_ns} vs {}",
                        node.mtime_ns
                    )
                }
            }
        }
        let xattrs: BTreeMap<String, Vec<u8>> = index
            .xattrs(id)
            .map(|(k, v)| (String::from_utf8_lossy(k).into_owned(), v.to_vec()))
            .collect();
        assert_eq!(xattrs, node.xattrs, "{what}: xattrs");
        match kind {
            NodeKind::Reg => {
                assert_eq!(got.size, node.size, "{what}: size");
                let mut content = Vec::new();
                for chunk in index.chunks(id) {
                    content.extend(read_chunk(&blob, chunk, compression).unwrap());
                }
                assert_eq!(
                    Some(Digest::of(&content).hex()),
                    node.sha256,
                    "{what}: content"
                );
            }
            NodeKind::Symlink => {
                assert_eq!(
                    Some(index.symlink_target(id).to_vec()),
                    node.link_target,
                    "{what}: target"
                );
                assert_eq!(got.size, node.size, "{what}: symlink size");
            }
            NodeKind::Char | NodeKind::Block => {
                assert_eq!(
                    Some((got.dev_major, got.dev_minor)),
                    node.device,
                    "{what}: device"
                );
            }
            _ => {}
        }
    }
    // Hard links share one node.
    for group in expected.hardlink_groups() {
        let ids: Vec<NodeId> = group
            .iter()
            .map(|p| index.lookup_path(p.as_os_str().as_encoded_bytes()).unwrap())
            .collect();
        assert!(
            ids.windows(2).all(|w| w[0] == w[1]),
            "hard links {group:?} must share a node"
        );
        assert_eq!(
            index.node(ids[0]).unwrap().nlink as usize,
            group.len(),
            "nlink of {group:?}"
        );
    }
}

/// The TOC lists the tar entries of the decompressed blob in the same order (chunks aside).
pub fn check_toc_matches_tar(converted: &Converted, compression: Compression) {
    let stream = decompress(&converted.blob, compression);
    let scanned = scan(Cursor::new(&stream), &Limits::default()).unwrap();
    let tar_names: Vec<Vec<u8>> = scanned
        .entries
        .iter()
        .map(|e| e.meta.name.clone())
        .collect();
    let opened_json = {
        let loc = estargz::blob::locate_toc(&converted.blob.as_slice()).unwrap();
        let compressed =
            &converted.blob[loc.offset as usize..(loc.offset + loc.compressed_len) as usize];
        estargz::blob::decode_toc(compressed, &loc, &Limits::default()).unwrap()
    };
    let toc = estargz::toc::parse_toc(&opened_json, &Limits::default()).unwrap();
    let toc_names: Vec<Vec<u8>> = toc
        .entries
        .iter()
        .filter(|e| e.kind != estargz::toc::EntryKind::Chunk)
        .map(|e| e.raw_name().into_owned())
        .collect();
    let mut expected = toc_names.clone();
    if compression == Compression::Gzip {
        expected.push(b"stargz.index.json".to_vec());
    }
    assert_eq!(tar_names, expected, "tar order and TOC order differ");
    assert_eq!(Digest::of(&opened_json), converted.out.toc_digest);
    assert_eq!(
        Digest::of(&stream),
        converted.out.diff_id,
        "diffID is the digest of the decompressed blob"
    );
    assert_eq!(stream.len() as u64, converted.out.uncompressed_size);
    assert_eq!(Digest::of(&converted.blob), converted.out.blob_digest);
}

pub fn require_root_and_tar() -> bool {
    lazypull_testkit::prereq::require(Prereq::Root)
        && lazypull_testkit::prereq::require(Prereq::Binary("tar"))
}
