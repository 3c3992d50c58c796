//! zstd:chunked blobs written by lazypull, read by other implementations: the upstream Go reader
//! (Debian's stargz-snapshotter 0.12 `estargz` package with its zstdchunked decompressor) and
//! `zstd -dc | tar -x` (the zstd program and GNU tar).

use std::collections::BTreeSet;
use std::io::Cursor;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use estargz::Compression;
use estargz::build::{BuildOptions, BuildOutput, build};
use lazypull_testkit::gochecker::go_check;
use lazypull_testkit::tarbuild::recipes;
use lazypull_testkit::tree::{
    DiffOptions, NodeKind, Tree, extract_with_gnu_tar, implied_parent_dirs, snapshot,
};
use lazypull_testkit::{Prereq, require_or_skip};

/// Entries that conversion adds to every layer.
const ADDED: [&str; 2] = [".no.prefetch.landmark", ".prefetch.landmark"];

/// Input layers that cover every entry type, PAX records, long names, hard links and files of
/// several chunks (64 KiB chunks).
fn layers() -> Vec<(&'static str, Vec<u8>)> {
    vec![
        ("every_entry_kind", recipes::every_entry_kind()),
        ("xattrs_pax", recipes::xattrs_pax()),
        ("long_names", recipes::long_names()),
        ("hardlink_prioritized", recipes::hardlink_prioritized()),
        ("zero_length_files", recipes::zero_length_files()),
    ]
}

fn zstd_options() -> BuildOptions {
    BuildOptions {
        chunk_size: 64 << 10,
        compression: Compression::Zstd,
        level: 3,
        threads: 2,
        ..BuildOptions::default()
    }
}

/// Writes `tar` and its zstd:chunked conversion under `dir`.
fn convert(dir: &Path, tar: &[u8]) -> (PathBuf, PathBuf, BuildOutput) {
    let tar_path = dir.join("input.tar");
    std::fs::write(&tar_path, tar).unwrap();
    let mut blob = Vec::new();
    let out = build(Cursor::new(tar), &mut blob, &zstd_options()).expect("recipe converts");
    let blob_path = dir.join("layer.tar.zst");
    std::fs::write(&blob_path, &blob).unwrap();
    (tar_path, blob_path, out)
}

fn extract_input(tar_path: &Path, dir: &Path) -> Tree {
    let dest = dir.join("expected");
    std::fs::create_dir(&dest).unwrap();
    extract_with_gnu_tar(tar_path, &dest, false).unwrap();
    snapshot(&dest).unwrap()
}

#[test]
fn go_reader_reads_zstd_output_byte_exact() {
    require_or_skip!(Prereq::Binary("go"), Prereq::Binary("tar"));
    for (name, tar) in layers() {
        let work = tempfile::tempdir().unwrap();
        let (tar_path, blob_path, out) = convert(work.path(), &tar);
        let expected = extract_input(&tar_path, work.path());

        // The checker verifies the TOC digest, every chunk digest and every file digest.
        let entries = go_check(&blob_path, &out.toc_digest.to_string())
            .unwrap_or_else(|e| panic!("{name}: upstream reader rejected the blob: {e:#}"));
        let mut seen = BTreeSet::new();
        for entry in entries.iter().filter(|e| e.kind == "reg") {
            let path = entry.clean_name();
            if ADDED.contains(&path) {
                continue;
            }
            let node = expected
                .get(path)
                .unwrap_or_else(|| panic!("{name}: upstream lists {path}, which tar lacks"));
            assert_eq!(entry.sha256, node.sha256, "{name}: content of {path}");
            assert_eq!(entry.size, node.size, "{name}: size of {path}");
            seen.insert(PathBuf::from(path));
        }
        let regular: BTreeSet<PathBuf> = expected
            .nodes
            .iter()
            .filter(|(_, n)| n.kind == NodeKind::Regular)
            .map(|(p, _)| p.clone())
            .collect();
        // Hard links are `hardlink` entries upstream, so only one name per inode is `reg`.
        let missing: Vec<_> = regular
            .difference(&seen)
            .filter(|p| expected.nodes[*p].nlink == 1)
            .collect();
        assert!(
            missing.is_empty(),
            "{name}: upstream lists no reg entry for {missing:?}"
        );
    }
}

#[test]
fn zstd_and_gnu_tar_extract_the_source_tree() {
    require_or_skip!(
        Prereq::Binary("bash"),
        Prereq::Binary("zstd"),
        Prereq::Binary("tar")
    );
    for (name, tar) in layers() {
        let work = tempfile::tempdir().unwrap();
        let (tar_path, blob_path, _) = convert(work.path(), &tar);
        let expected = extract_input(&tar_path, work.path());

        let dest = work.path().join("actual");
        std::fs::create_dir(&dest).unwrap();
        let pipeline = format!(
            "zstd -dcq '{}' | tar --xattrs '--xattrs-include=*' --numeric-owner --same-owner -xpf - -C '{}'",
            blob_path.display(),
            dest.display()
        );
        let output = Command::new("bash")
            .args(["-e", "-o", "pipefail", "-c", &pipeline])
            .env("LC_ALL", "C")
            .stdin(Stdio::null())
            .output()
            .unwrap();
        assert!(
            output.status.success(),
            "{name}: `{pipeline}` failed: {}",
            String::from_utf8_lossy(&output.stderr)
        );
        let mut actual = snapshot(&dest).unwrap();
        for added in ADDED {
            actual.nodes.remove(Path::new(added));
        }
        let options = DiffOptions {
            ignore_dir_metadata: implied_parent_dirs(&tar_path).unwrap(),
            // Prioritized files move ahead of their siblings, and GNU tar sets a directory's
            // mtime when the stream leaves it, so directory mtimes depend on entry order.
            ignore_dir_mtimes: true,
            ..DiffOptions::default()
        };
        let differences = expected.diff_with(&actual, &options);
        assert!(
            differences.is_empty(),
            "{name}: zstd -dc | tar -x differs from the source:\n{differences:#?}"
        );
    }
}
