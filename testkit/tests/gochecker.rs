//! The Go checker builds offline, reads blobs that upstream wrote, and rejects corrupt ones.

use std::collections::BTreeMap;
use std::path::Path;
use std::time::Instant;

use lazypull_testkit::gochecker::{
    GoBuildOptions, GoEntry, checker_binary, go_build_estargz, go_check,
};
use lazypull_testkit::tarbuild::{Builder, pattern, recipes};
use lazypull_testkit::{Prereq, require_or_skip};
use sha2::{Digest, Sha256};

/// Builds a layer with a large file, a hard link, a symlink, binary xattrs, an empty
/// file and a device.
fn mixed_layer() -> Vec<u8> {
    use lazypull_testkit::tarbuild::Entry;
    let mut builder = Builder::new();
    builder.append(&Entry::dir("usr"));
    builder.append(&Entry::dir("usr/bin"));
    builder.append(&Entry::file("usr/bin/python3.8", pattern(300_000, 1)).mode(0o755));
    builder.append(&Entry::hardlink("usr/bin/python3", "usr/bin/python3.8"));
    builder.append(&Entry::symlink("usr/bin/py", "python3"));
    builder.append(
        &Entry::file("usr/bin/ping", pattern(512, 6))
            .mode(0o4755)
            .xattr("security.capability", recipes::CAP_NET_RAW_EP)
            .xattr("user.note", "hello"),
    );
    builder.append(&Entry::file("usr/empty", b""));
    builder.append(&Entry::char_device("usr/null", 1, 3));
    builder.finish()
}

fn by_name(entries: &[GoEntry]) -> BTreeMap<String, GoEntry> {
    entries
        .iter()
        .map(|entry| (entry.clean_name().to_string(), entry.clone()))
        .collect()
}

fn hex_sha256(bytes: &[u8]) -> String {
    hex::encode(Sha256::digest(bytes))
}

fn build_blob(dir: &Path, tar: &[u8], options: &GoBuildOptions) -> (std::path::PathBuf, String) {
    let tar_path = dir.join("layer.tar");
    std::fs::write(&tar_path, tar).unwrap();
    let blob = dir.join("layer.estargz");
    let built = go_build_estargz(&tar_path, &blob, options).expect("upstream build");
    assert_eq!(built.size, std::fs::metadata(&blob).unwrap().len());
    (blob, built.toc_digest)
}

#[test]
fn checker_builds_offline() {
    require_or_skip!(Prereq::Binary("go"));
    let started = Instant::now();
    let binary = checker_binary().expect("build checker");
    eprintln!(
        "checker ready in {:?}: {}",
        started.elapsed(),
        binary.display()
    );
    assert!(binary.is_file());
    // The second call returns the cached binary.
    assert_eq!(checker_binary().unwrap(), binary);
}

#[test]
fn checker_reports_entries_of_upstream_blob() {
    require_or_skip!(Prereq::Binary("go"));
    let dir = tempfile::tempdir().unwrap();
    let options = GoBuildOptions {
        chunk_size: 64 * 1024,
        ..GoBuildOptions::default()
    };
    let (blob, toc_digest) = build_blob(dir.path(), &mixed_layer(), &options);
    let entries = go_check(&blob, &toc_digest).expect("check blob");
    let entries = by_name(&entries);

    let python = &entries["usr/bin/python3.8"];
    assert_eq!(python.kind, "reg");
    assert_eq!(python.size, 300_000);
    assert_eq!(python.mode & 0o7777, 0o755);
    assert_eq!(python.chunks, 5);
    assert_eq!(
        python.sha256.as_deref(),
        Some(hex_sha256(&pattern(300_000, 1)).as_str())
    );

    let link = &entries["usr/bin/python3"];
    assert_eq!(link.kind, "hardlink");
    assert_eq!(link.link_name.trim_start_matches("./"), "usr/bin/python3.8");

    let symlink = &entries["usr/bin/py"];
    assert_eq!(symlink.kind, "symlink");
    assert_eq!(symlink.link_name, "python3");

    let ping = &entries["usr/bin/ping"];
    assert_eq!(ping.mode & 0o7777, 0o4755);
    assert_eq!(
        ping.xattrs["security.capability"],
        recipes::CAP_NET_RAW_EP.to_vec()
    );
    assert_eq!(ping.xattrs["user.note"], b"hello".to_vec());

    let empty = &entries["usr/empty"];
    assert_eq!(empty.size, 0);
    assert_eq!(empty.sha256.as_deref(), Some(hex_sha256(b"").as_str()));

    let null = &entries["usr/null"];
    assert_eq!(null.kind, "char");
    assert_eq!((null.dev_major, null.dev_minor), (1, 3));
}

#[test]
fn checker_reads_zstd_chunked_blob() {
    require_or_skip!(Prereq::Binary("go"));
    let dir = tempfile::tempdir().unwrap();
    let options = GoBuildOptions {
        zstd: true,
        ..GoBuildOptions::default()
    };
    let (blob, toc_digest) = build_blob(dir.path(), &recipes::symlinks(), &options);
    let entries = by_name(&go_check(&blob, &toc_digest).expect("check zstd blob"));
    assert_eq!(
        entries["usr/lib/deep"].link_name,
        recipes::long_symlink_target()
    );
    assert_eq!(entries["usr/lib/libpq.so"].link_name, "libpq.so.5.13");
}

#[test]
fn checker_rejects_wrong_toc_digest() {
    require_or_skip!(Prereq::Binary("go"));
    let dir = tempfile::tempdir().unwrap();
    let (blob, _) = build_blob(
        dir.path(),
        &recipes::zero_length_files(),
        &GoBuildOptions::default(),
    );
    let wrong = format!("sha256:{}", "0".repeat(64));
    let error = go_check(&blob, &wrong).expect_err("wrong digest must fail");
    assert!(format!("{error:#}").contains("verify TOC"), "{error:#}");
}

#[test]
fn checker_rejects_corrupt_chunk() {
    require_or_skip!(Prereq::Binary("go"));
    let dir = tempfile::tempdir().unwrap();
    // Level 0 stores the file bytes uncompressed, so a flipped byte changes the content
    // while the gzip framing stays readable until its CRC check.
    let options = GoBuildOptions {
        level: 0,
        ..GoBuildOptions::default()
    };
    let content = pattern(200_000, 9);
    let mut builder = Builder::new();
    builder.append(&lazypull_testkit::tarbuild::Entry::file(
        "big.bin", &content,
    ));
    let (blob, toc_digest) = build_blob(dir.path(), &builder.finish(), &options);

    let mut bytes = std::fs::read(&blob).unwrap();
    let position = bytes
        .windows(64)
        .position(|window| window == &content[100_000..100_064])
        .expect("stored content is visible at level 0");
    bytes[position] ^= 0xff;
    std::fs::write(&blob, &bytes).unwrap();

    let error = go_check(&blob, &toc_digest).expect_err("corrupt chunk must fail");
    let message = format!("{error:#}");
    eprintln!("corrupt chunk error: {message}");
    assert!(message.contains("big.bin"), "{message}");
}
