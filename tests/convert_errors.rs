//! `lazypull convert` on broken input: every failure exits non-zero with a message that names
//! the problem, creates no destination tag, and leaves no temporary file behind.

mod convert_support;

use std::path::Path;

use convert_support::*;
use estargz::build::{BuildOptions, build};
use lazypull_testkit::registry::Registry;
use lazypull_testkit::tarbuild::{Builder, Entry, pattern};
use lazypull_testkit::{Prereq, require_or_skip};
use serde_json::json;

fn oci(dir: &Path, tag: &str) -> String {
    format!("oci:{}:{tag}", dir.display())
}

fn small_tar(seed: u64) -> Vec<u8> {
    let mut tar = Builder::new();
    tar.append(&Entry::dir("data"));
    tar.append(&Entry::file("data/a.bin", pattern(200_000, seed)));
    tar.append(&Entry::file("data/b.txt", "hello\n"));
    tar.finish()
}

/// Runs a conversion that must fail, and checks exit status, message, tag and temporary files.
/// Returns stderr.
fn assert_conversion_fails(
    source: &str,
    destination: &str,
    args: &[&str],
    expected: &[&str],
) -> String {
    let tmp = scratch("lazypull-convert-tmp-");
    let output = convert(source, destination, args, tmp.path());
    let stderr = String::from_utf8_lossy(&output.stderr).into_owned();
    assert!(
        !output.status.success(),
        "conversion of {source} succeeded:\n{stderr}"
    );
    assert_eq!(
        output.status.code(),
        Some(1),
        "unexpected exit status: {stderr}"
    );
    for text in expected {
        assert!(stderr.contains(text), "stderr lacks {text:?}:\n{stderr}");
    }
    assert!(
        !stderr.contains("panicked"),
        "the converter panicked:\n{stderr}"
    );
    assert!(
        output.stdout.is_empty(),
        "a failed conversion printed a report"
    );
    assert_dir_empty(tmp.path());
    stderr
}

/// Writes a layout whose second layer is `bad` (with `media_type`). The first layer is fine, so
/// the failure also has to stop and clean up a good layer converting at the same time.
fn layout_with_bad_layer(
    dir: &Path,
    bad: Vec<u8>,
    media_type: &str,
    extra: serde_json::Value,
) -> String {
    let good = small_tar(1);
    let mut bad_layer = SourceLayer::new(bad, media_type, small_tar(2));
    bad_layer.extra = extra;
    write_layout(
        dir,
        "v1",
        &[
            SourceLayer::new(gzip(&good), LAYER_GZIP, good.clone()),
            bad_layer,
        ],
    );
    sha256(&std::fs::read(dir.join("index.json")).unwrap())
}

/// Destination layout with another image already tagged, which a failure must not disturb.
fn destination_with_other_image(dir: &Path) -> Vec<u8> {
    let tar = small_tar(9);
    write_layout(
        dir,
        "other",
        &[SourceLayer::new(gzip(&tar), LAYER_GZIP, tar.clone())],
    );
    std::fs::read(dir.join("index.json")).unwrap()
}

fn assert_destination_untouched(dir: &Path, index_before: &[u8]) {
    assert_eq!(
        std::fs::read(dir.join("index.json")).unwrap(),
        index_before,
        "index.json of the destination changed"
    );
    assert!(tagged(dir, "esgz").is_none());
}

#[test]
fn truncated_gzip_layer_is_reported() {
    let work = scratch("lazypull-convert-work-");
    let source = work.path().join("source");
    let full = gzip(&small_tar(2));
    layout_with_bad_layer(
        &source,
        full[..full.len() / 2].to_vec(),
        LAYER_GZIP,
        json!({}),
    );
    let destination = work.path().join("out");
    let before = destination_with_other_image(&destination);
    assert_conversion_fails(
        &oci(&source, "v1"),
        &oci(&destination, "esgz"),
        &[],
        &["is truncated", "gzip stream ends after"],
    );
    assert_destination_untouched(&destination, &before);
}

#[test]
fn layer_that_is_not_a_tar_is_reported() {
    let work = scratch("lazypull-convert-work-");
    let source = work.path().join("source");
    let bad = gzip(&pattern(50_000, 3));
    let digest = sha256(&bad);
    layout_with_bad_layer(&source, bad, LAYER_GZIP, json!({}));
    let destination = work.path().join("out");
    let before = destination_with_other_image(&destination);
    assert_conversion_fails(
        &oci(&source, "v1"),
        &oci(&destination, "esgz"),
        &[],
        &[&digest, "is not a tar archive"],
    );
    assert_destination_untouched(&destination, &before);
}

#[test]
fn unsupported_compression_is_reported() {
    let work = scratch("lazypull-convert-work-");
    let source = work.path().join("source");
    layout_with_bad_layer(
        &source,
        b"BZh91AY&SY fake bzip2".to_vec(),
        LAYER_TAR,
        json!({}),
    );
    assert_conversion_fails(
        &oci(&source, "v1"),
        &oci(&work.path().join("out"), "esgz"),
        &[],
        &["bzip2", "not supported"],
    );
}

#[test]
fn estargz_layer_with_lying_toc_annotation_is_reported() {
    let work = scratch("lazypull-convert-work-");
    let source = work.path().join("source");
    let mut blob = Vec::new();
    let built = build(
        std::io::Cursor::new(small_tar(2)),
        &mut blob,
        &BuildOptions::default(),
    )
    .unwrap();
    let lie = sha256(b"not the TOC");
    layout_with_bad_layer(
        &source,
        blob.clone(),
        LAYER_GZIP,
        json!({ "annotations": { TOC_DIGEST: lie } }),
    );
    // The config's diffID must match for the TOC check to be reached.
    let index: serde_json::Value =
        serde_json::from_slice(&std::fs::read(source.join("index.json")).unwrap()).unwrap();
    let manifest_digest = index["manifests"][0]["digest"]
        .as_str()
        .unwrap()
        .to_string();
    let image = LayoutImage::read(&source, &manifest_digest);
    let mut config = image.config.clone();
    config["rootfs"]["diff_ids"][1] = json!(built.diff_id.to_string());
    let config_bytes = serde_json::to_vec(&config).unwrap();
    let mut manifest = image.manifest.clone();
    manifest["config"]["digest"] = json!(write_blob(&source, &config_bytes));
    manifest["config"]["size"] = json!(config_bytes.len());
    let manifest_bytes = serde_json::to_vec(&manifest).unwrap();
    write_index(
        &source,
        &[(
            write_blob(&source, &manifest_bytes),
            manifest_bytes.len(),
            OCI_MANIFEST.into(),
            None,
            Some("v1".into()),
        )],
    );

    let destination = work.path().join("out");
    assert_conversion_fails(
        &oci(&source, "v1"),
        &oci(&destination, "esgz"),
        &[],
        &[&lie, &built.toc_digest.to_string(), "--reconvert"],
    );
    assert!(tagged(&destination, "esgz").is_none());

    // The same layer converts with --reconvert, which ignores the annotation.
    let tmp = scratch("lazypull-convert-tmp-");
    convert_ok(
        &oci(&source, "v1"),
        &oci(&destination, "esgz"),
        &["--reconvert"],
        tmp.path(),
    );
    assert_dir_empty(tmp.path());
}

#[test]
fn tampered_manifest_is_rejected() {
    let work = scratch("lazypull-convert-work-");
    let source = work.path().join("source");
    let tar = small_tar(4);
    let digest = write_layout(
        &source,
        "v1",
        &[SourceLayer::new(gzip(&tar), LAYER_GZIP, tar.clone())],
    );
    // Change one byte of the manifest but keep the file name, as a corrupted store would.
    let path = blob_path(&source, &digest);
    let text = std::fs::read_to_string(&path)
        .unwrap()
        .replace("\"yes\"", "\"no!\"");
    std::fs::write(&path, text).unwrap();
    let destination = work.path().join("out");
    let before = destination_with_other_image(&destination);
    assert_conversion_fails(
        &oci(&source, "v1"),
        &oci(&destination, "esgz"),
        &[],
        &["manifest", &digest, "corrupt or was modified"],
    );
    assert_destination_untouched(&destination, &before);
}

#[test]
fn tampered_layer_blob_is_rejected() {
    let work = scratch("lazypull-convert-work-");
    let source = work.path().join("source");
    let tar = small_tar(5);
    let blob = gzip(&tar);
    let digest = sha256(&blob);
    write_layout(
        &source,
        "v1",
        &[SourceLayer::new(blob.clone(), LAYER_GZIP, tar.clone())],
    );
    let mut altered = blob;
    let middle = altered.len() / 2;
    altered[middle] ^= 0xff;
    std::fs::write(blob_path(&source, &digest), &altered).unwrap();
    assert_conversion_fails(
        &oci(&source, "v1"),
        &oci(&work.path().join("out"), "esgz"),
        &[],
        &["layer", &digest, "corrupt or was modified"],
    );
}

#[test]
fn unreachable_registry_names_host_and_hint() {
    // A port that was free a moment ago: nothing listens on it.
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let work = scratch("lazypull-convert-work-");
    let unreachable = format!("127.0.0.1:{port}/app:v1");
    assert_conversion_fails(
        &unreachable,
        &oci(&work.path().join("out"), "esgz"),
        &[],
        &[&format!("127.0.0.1:{port}"), "port is right"],
    );
    assert!(!work.path().join("out").join("index.json").exists());

    let source = work.path().join("source");
    let tar = small_tar(6);
    write_layout(
        &source,
        "v1",
        &[SourceLayer::new(gzip(&tar), LAYER_GZIP, tar.clone())],
    );
    assert_conversion_fails(
        &oci(&source, "v1"),
        &unreachable,
        &[],
        &["cannot connect to registry", &format!("127.0.0.1:{port}")],
    );
}

#[test]
fn missing_tag_and_repository_are_reported() {
    require_or_skip!(Prereq::Binary("docker-registry"), Prereq::Binary("skopeo"));
    let registry = Registry::start().unwrap();
    let work = scratch("lazypull-convert-work-");
    let source = work.path().join("source");
    let tar = small_tar(7);
    write_layout(
        &source,
        "v1",
        &[SourceLayer::new(gzip(&tar), LAYER_GZIP, tar.clone())],
    );
    registry.push_oci_layout(&source, "v1", "app:v1").unwrap();
    let host = registry.host();

    let destination = format!("{host}/app:esgz");
    assert_conversion_fails(
        &format!("{host}/app:nope"),
        &destination,
        &[],
        &["app:nope", "not found"],
    );
    assert_conversion_fails(
        &format!("{host}/missing:v1"),
        &destination,
        &[],
        &["missing:v1", "not found"],
    );
    assert!(
        skopeo_inspect_raw(&destination).is_none(),
        "a failed conversion created the destination tag"
    );

    assert_conversion_fails(
        &oci(&source, "nope"),
        &oci(&work.path().join("out"), "esgz"),
        &[],
        &["\"nope\"", "tags present: v1"],
    );
}

#[test]
fn failed_layer_leaves_no_registry_tag() {
    require_or_skip!(Prereq::Binary("docker-registry"), Prereq::Binary("skopeo"));
    let registry = Registry::start().unwrap();
    let work = scratch("lazypull-convert-work-");
    let source = work.path().join("source");
    layout_with_bad_layer(&source, gzip(&pattern(10_000, 8)), LAYER_GZIP, json!({}));
    let destination = format!("{}/app:esgz", registry.host());
    assert_conversion_fails(
        &oci(&source, "v1"),
        &destination,
        &[],
        &["is not a tar archive"],
    );
    assert!(
        skopeo_inspect_raw(&destination).is_none(),
        "a failed conversion created the destination tag"
    );
}

#[test]
fn interrupted_conversion_removes_temporary_files() {
    let python = lazypull_testkit::image::python_image().unwrap();
    let work = scratch("lazypull-convert-work-");
    let tmp = scratch("lazypull-convert-tmp-");
    let destination = work.path().join("out");
    let mut child = lazypull()
        .arg("convert")
        .arg(oci(&python, "latest"))
        .arg(oci(&destination, "esgz"))
        .args(["--progress", "none", "--tmpdir"])
        .arg(tmp.path())
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();

    // Interrupt once the layers are being spooled to temporary files.
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(120);
    while std::fs::read_dir(tmp.path()).unwrap().next().is_none() {
        assert!(
            std::time::Instant::now() < deadline,
            "no temporary file appeared"
        );
        assert!(
            child.try_wait().unwrap().is_none(),
            "the conversion ended before it could be interrupted"
        );
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
    let status = std::process::Command::new("kill")
        .args(["-INT", &child.id().to_string()])
        .status()
        .unwrap();
    assert!(status.success());
    let output = child.wait_with_output().unwrap();
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert_eq!(output.status.code(), Some(1), "{stderr}");
    assert!(stderr.contains("cancelled"), "{stderr}");
    assert_dir_empty(tmp.path());
    assert!(
        tagged(&destination, "esgz").is_none(),
        "an interrupted conversion tagged the destination"
    );
}

#[test]
fn layout_path_without_prefix_suggests_oci() {
    let work = scratch("lazypull-convert-work-");
    let destination = oci(&work.path().join("out"), "esgz");
    let absolute = work.path().join("layout");
    std::fs::create_dir(&absolute).unwrap();
    let absolute = absolute.to_str().unwrap().to_owned();
    assert_conversion_fails(
        &absolute,
        &destination,
        &[],
        &[&format!("write oci:{absolute} for an OCI image layout")],
    );
    assert_conversion_fails(
        "./layout",
        &destination,
        &[],
        &["write oci:./layout for an OCI image layout"],
    );

    // A directory named without ./ whose name is no valid repository (upper case).
    std::fs::create_dir(work.path().join("My_Layout")).unwrap();
    let tmp = scratch("lazypull-convert-tmp-");
    let output = lazypull()
        .current_dir(work.path())
        .args(["convert", "My_Layout", &destination, "--tmpdir"])
        .arg(tmp.path())
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(!output.status.success(), "{stderr}");
    assert!(
        stderr.contains("write oci:My_Layout for an OCI image layout"),
        "{stderr}"
    );
}

#[test]
fn zero_chunk_size_gives_valid_range() {
    let work = scratch("lazypull-convert-work-");
    let stderr = assert_conversion_fails(
        &oci(&work.path().join("in"), "v1"),
        &oci(&work.path().join("out"), "esgz"),
        &["--chunk-size", "0"],
        &["1..=1073741824 bytes"],
    );
    assert_eq!(
        stderr.trim(),
        "error: invalid option --chunk-size: 0 is outside 1..=1073741824 bytes"
    );
}

#[test]
fn directory_read_as_registry_gets_warning() {
    let work = scratch("lazypull-convert-work-");
    // `localhost/app` is a valid registry reference and, here, a directory too.
    std::fs::create_dir_all(work.path().join("localhost/app")).unwrap();
    let tmp = scratch("lazypull-convert-tmp-");
    let output = lazypull()
        .current_dir(work.path())
        .args(["convert", "oci:missing:v1", "localhost/app", "--tmpdir"])
        .arg(tmp.path())
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(!output.status.success(), "{stderr}");
    assert!(
        stderr.contains("write oci:localhost/app for an OCI image layout"),
        "{stderr}"
    );
}
