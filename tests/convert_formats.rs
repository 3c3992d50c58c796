//! `lazypull convert` on every input shape: zstd, uncompressed, multi-member gzip, empty and
//! mislabelled layers, Docker schema 2 images, multi-platform indexes, prioritized files,
//! foreign layers and zstd output.

mod convert_support;

use std::path::Path;

use convert_support::*;
use lazypull_testkit::image::python_image;
use lazypull_testkit::registry::Registry;
use lazypull_testkit::tarbuild::{
    Builder, Entry, gzip_multi_member, pattern, recipes, text_pattern, zstd,
};
use lazypull_testkit::{Prereq, require_or_skip};
use serde_json::{Value, json};

fn oci(dir: &Path, tag: &str) -> String {
    format!("oci:{}:{tag}", dir.display())
}

/// Builds a layer with every entry type: directories, files across several chunks, a hard link, a
/// symlink, setuid with an xattr, a device, a FIFO, an empty file and a whiteout.
fn rich_tar(seed: u64) -> Vec<u8> {
    let mut tar = Builder::new();
    tar.append(&Entry::dir("etc"));
    tar.append(&Entry::file("etc/hostname", "box\n"));
    tar.append(&Entry::whiteout("etc/old.conf"));
    tar.append(&Entry::dir("usr"));
    tar.append(&Entry::dir("usr/bin"));
    tar.append(
        &Entry::file("usr/bin/tool", pattern(300_000, seed))
            .mode(0o755)
            .owner(1000, 1001),
    );
    tar.append(
        &Entry::hardlink("usr/bin/tool-again", "usr/bin/tool")
            .mode(0o755)
            .owner(1000, 1001),
    );
    tar.append(&Entry::symlink("usr/bin/alias", "tool"));
    tar.append(
        &Entry::file("usr/bin/ping", "ping")
            .mode(0o4755)
            .xattr("user.note", [0, 1, 2, 255]),
    );
    tar.append(&Entry::file(
        "usr/share-text",
        text_pattern(200_000, seed + 1),
    ));
    tar.append(&Entry::dir("dev"));
    tar.append(&Entry::char_device("dev/null", 1, 3));
    tar.append(&Entry::fifo("dev/pipe"));
    tar.append(&Entry::file("empty", ""));
    tar.finish()
}

/// Builds an empty layer as image builders write it: a tar of only the end-of-archive blocks.
fn empty_tar() -> Vec<u8> {
    Builder::new().finish()
}

#[test]
fn every_layer_encoding_converts_to_the_same_tree() {
    require_or_skip!(
        Prereq::Root,
        Prereq::Binary("tar"),
        Prereq::Binary("go"),
        Prereq::Binary("zstd")
    );
    let work = scratch("lazypull-convert-work-");
    let tmp = scratch("lazypull-convert-tmp-");
    let source = work.path().join("source");
    let tars: Vec<Vec<u8>> = (0..4).map(|seed| rich_tar(seed * 10)).collect();
    let layers = vec![
        SourceLayer::new(zstd(&tars[0], 3), LAYER_ZSTD, tars[0].clone()),
        SourceLayer::new(tars[1].clone(), LAYER_TAR, tars[1].clone()),
        // 64 KiB members: file payloads and headers straddle member boundaries.
        SourceLayer::new(
            gzip_multi_member(&tars[2], 64 << 10),
            LAYER_GZIP,
            tars[2].clone(),
        ),
        SourceLayer::new(gzip(&empty_tar()), LAYER_GZIP, empty_tar()),
        // A zero-byte blob is an empty tar stream too.
        SourceLayer::new(Vec::new(), LAYER_TAR, Vec::new()),
        // gzip bytes under a zstd media type: the magic bytes decide.
        SourceLayer::new(gzip(&tars[3]), LAYER_ZSTD, tars[3].clone()),
        SourceLayer::new(
            gzip(&recipes::duplicate_paths()),
            LAYER_GZIP,
            recipes::duplicate_paths(),
        ),
    ];
    write_layout(&source, "v1", &layers);

    let out = work.path().join("out");
    let report = convert_ok(
        &oci(&source, "v1"),
        &oci(&out, "esgz"),
        &["--chunk-size", "64K"],
        tmp.path(),
    );
    assert_dir_empty(tmp.path());
    let actions: Vec<&str> = report["layers"]
        .as_array()
        .unwrap()
        .iter()
        .map(|l| l["action"].as_str().unwrap())
        .collect();
    assert_eq!(actions, ["converted"; 7]);

    let original = LayoutImage::read_tag(&source, "v1");
    let converted = LayoutImage::read_tag(&out, "esgz");
    check_converted_image(&source, &original, &out, &converted, work.path());
    assert_config_changed_only_in_diff_ids(&original, &converted);
    assert_eq!(
        converted.manifest["annotations"]["org.example.keep"], "yes",
        "manifest annotations were dropped"
    );
    // 300 000 bytes in 64 KiB chunks: the tool file has 5 chunks.
    let toc_entries = report["layers"][0]["toc_entries"].as_u64().unwrap();
    assert!(
        toc_entries >= 18,
        "expected chunk entries in the TOC, got {toc_entries}"
    );
}

#[test]
fn docker_schema2_image_becomes_oci() {
    require_or_skip!(
        Prereq::Root,
        Prereq::Binary("docker-registry"),
        Prereq::Binary("skopeo"),
        Prereq::Binary("tar"),
        Prereq::Binary("go")
    );
    let registry = Registry::start().unwrap();
    let work = scratch("lazypull-convert-work-");
    let tmp = scratch("lazypull-convert-tmp-");
    let source = work.path().join("source");
    let tars = [rich_tar(1), rich_tar(2)];
    write_layout(
        &source,
        "v1",
        &[
            SourceLayer::new(gzip(&tars[0]), LAYER_GZIP, tars[0].to_vec()),
            SourceLayer::new(gzip(&tars[1]), LAYER_GZIP, tars[1].to_vec()),
        ],
    );
    let docker_ref = format!("{}/docker-image:v1", registry.host());
    let status = std::process::Command::new("skopeo")
        .args([
            "--insecure-policy",
            "copy",
            "--quiet",
            "--format",
            "v2s2",
            "--dest-tls-verify=false",
        ])
        .arg(format!("oci:{}:v1", source.display()))
        .arg(format!("docker://{docker_ref}"))
        .status()
        .unwrap();
    assert!(status.success(), "skopeo copy --format v2s2 failed");
    let raw: Value = serde_json::from_slice(&skopeo_inspect_raw(&docker_ref).unwrap()).unwrap();
    assert_eq!(
        raw["mediaType"], "application/vnd.docker.distribution.manifest.v2+json",
        "the source is not Docker schema 2"
    );

    let destination = format!("{}/docker-image:esgz", registry.host());
    convert_ok(&docker_ref, &destination, &[], tmp.path());
    assert_dir_empty(tmp.path());
    let raw: Value = serde_json::from_slice(&skopeo_inspect_raw(&destination).unwrap()).unwrap();
    assert_eq!(raw["mediaType"], OCI_MANIFEST);
    assert_eq!(raw["config"]["mediaType"], OCI_CONFIG);
    for layer in raw["layers"].as_array().unwrap() {
        assert_eq!(layer["mediaType"], LAYER_GZIP);
        assert!(
            layer["annotations"][TOC_DIGEST].is_string(),
            "layer without TOC digest: {layer}"
        );
    }

    // The Docker copy has the same layer bytes as the OCI layout, so compare with the layout.
    let pulled = work.path().join("pulled");
    pull_to_layout(&destination, &pulled, "esgz");
    let original = LayoutImage::read_tag(&source, "v1");
    let converted = LayoutImage::read_tag(&pulled, "esgz");
    check_converted_image(&source, &original, &pulled, &converted, work.path());
}

#[test]
fn multi_platform_index_converts_shared_layers_once() {
    require_or_skip!(Prereq::Root, Prereq::Binary("tar"), Prereq::Binary("go"));
    let python = python_image().unwrap();
    let work = scratch("lazypull-convert-work-");
    let tmp = scratch("lazypull-convert-tmp-");

    // Two platforms sharing the python layers: the arm64 config differs only in architecture.
    let source = work.path().join("multi");
    copy_layout(&python, &source).unwrap();
    let amd64 = LayoutImage::read_tag(&python, "latest");
    let mut arm_config = amd64.config.clone();
    arm_config["architecture"] = json!("arm64");
    arm_config["variant"] = json!("v8");
    let arm_config_bytes = serde_json::to_vec(&arm_config).unwrap();
    let arm_config_digest = write_blob(&source, &arm_config_bytes);
    let mut arm_manifest = amd64.manifest.clone();
    arm_manifest["config"]["digest"] = json!(arm_config_digest);
    arm_manifest["config"]["size"] = json!(arm_config_bytes.len());
    let arm_manifest_bytes = serde_json::to_vec(&arm_manifest).unwrap();
    let arm_manifest_digest = write_blob(&source, &arm_manifest_bytes);
    let amd64_size = std::fs::metadata(blob_path(&source, &amd64.digest))
        .unwrap()
        .len() as usize;
    let index = json!({
        "schemaVersion": 2,
        "mediaType": OCI_INDEX,
        "manifests": [
            { "mediaType": OCI_MANIFEST, "digest": amd64.digest, "size": amd64_size,
              "platform": { "os": "linux", "architecture": "amd64" } },
            { "mediaType": OCI_MANIFEST, "digest": arm_manifest_digest, "size": arm_manifest_bytes.len(),
              "platform": { "os": "linux", "architecture": "arm64", "variant": "v8" } },
        ],
        "annotations": { "org.example.index": "kept" },
    });
    let index_bytes = serde_json::to_vec(&index).unwrap();
    let index_digest = write_blob(&source, &index_bytes);
    write_index(
        &source,
        &[(
            index_digest,
            index_bytes.len(),
            OCI_INDEX.to_string(),
            None,
            Some("multi".into()),
        )],
    );

    let out = work.path().join("out");
    let report = convert_ok(
        &oci(&source, "multi"),
        &oci(&out, "esgz"),
        &["--compression-level", "1"],
        tmp.path(),
    );
    assert_dir_empty(tmp.path());
    assert_eq!(
        report["layers"].as_array().unwrap().len(),
        2,
        "shared layers must be converted once"
    );
    assert_eq!(report["manifests"].as_array().unwrap().len(), 2);

    let entry = tagged(&out, "esgz").unwrap();
    assert_eq!(entry["mediaType"], OCI_INDEX);
    let new_index = read_json(&out, entry["digest"].as_str().unwrap());
    assert_eq!(new_index["annotations"]["org.example.index"], "kept");
    let entries = new_index["manifests"].as_array().unwrap();
    assert_eq!(entries.len(), 2);
    assert_eq!(entries[1]["platform"]["variant"], "v8");
    let images: Vec<LayoutImage> = entries
        .iter()
        .map(|e| LayoutImage::read(&out, e["digest"].as_str().unwrap()))
        .collect();
    assert_eq!(
        images[0].layers(),
        images[1].layers(),
        "platforms do not share the converted layers"
    );
    assert_eq!(images[1].config["architecture"], "arm64");
    assert_eq!(images[0].diff_ids(), images[1].diff_ids());
    check_converted_image(&python, &amd64, &out, &images[0], work.path());

    // --platform selects one manifest of the (converted) index.
    let report = convert_ok(
        &oci(&out, "esgz"),
        &oci(&out, "arm64"),
        &["--platform", "linux/arm64"],
        tmp.path(),
    );
    assert_eq!(report["manifests"].as_array().unwrap().len(), 1);
    let arm_only = read_json(
        &out,
        tagged(&out, "arm64").unwrap()["digest"].as_str().unwrap(),
    );
    let arm_entries = arm_only["manifests"].as_array().unwrap();
    assert_eq!(arm_entries.len(), 1);
    assert_eq!(
        arm_entries[0]["digest"], entries[1]["digest"],
        "selecting a platform changed its manifest"
    );

    let output = convert(
        &oci(&out, "esgz"),
        &oci(&out, "s390x"),
        &["--platform", "linux/s390x"],
        tmp.path(),
    );
    assert!(!output.status.success());
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(stderr.contains("linux/s390x"), "{stderr}");
    assert!(stderr.contains("linux/arm64/v8"), "{stderr}");
    assert!(tagged(&out, "s390x").is_none());
}

#[test]
fn prioritized_files_come_first_with_their_hardlink_targets() {
    require_or_skip!(Prereq::Root, Prereq::Binary("tar"), Prereq::Binary("go"));
    let work = scratch("lazypull-convert-work-");
    let tmp = scratch("lazypull-convert-tmp-");
    let source = work.path().join("source");
    let tar = recipes::hardlink_prioritized();
    write_layout(
        &source,
        "v1",
        &[SourceLayer::new(gzip(&tar), LAYER_GZIP, tar.clone())],
    );
    let list = work.path().join("trace.txt");
    std::fs::write(
        &list,
        "# recorded by a test\n/usr/bin/python3\n\n/not/in/the/layer\n",
    )
    .unwrap();

    let out = work.path().join("out");
    let report = convert_ok(
        &oci(&source, "v1"),
        &oci(&out, "esgz"),
        &["--prioritize", list.to_str().unwrap()],
        tmp.path(),
    );
    assert_eq!(report["layers"][0]["prioritized_found"], 1);
    let original = LayoutImage::read_tag(&source, "v1");
    let converted = LayoutImage::read_tag(&out, "esgz");
    let checks = check_converted_image(&source, &original, &out, &converted, work.path());
    assert_eq!(checks[0].landmark, ".prefetch.landmark");
    let names: Vec<&str> = checks[0]
        .tar_names
        .iter()
        .map(|n| n.trim_end_matches('/'))
        .collect();
    let position = |name: &str| {
        names
            .iter()
            .position(|n| *n == name)
            .unwrap_or_else(|| panic!("{name} missing in {names:?}"))
    };
    assert!(
        position("usr/bin/python3.8") < position("usr/bin/python3"),
        "hardlink before its target: {names:?}"
    );
    assert!(
        position("usr/bin/python3") < position(".prefetch.landmark"),
        "prioritized file after the landmark: {names:?}"
    );
    assert!(
        position(".prefetch.landmark") < position("usr/lib/os.py"),
        "unlisted file before the landmark: {names:?}"
    );
}

#[test]
fn foreign_layer_is_kept_without_fetching() {
    require_or_skip!(Prereq::Binary("tar"), Prereq::Binary("go"));
    let work = scratch("lazypull-convert-work-");
    let tmp = scratch("lazypull-convert-tmp-");
    let source = work.path().join("source");
    let tar = rich_tar(5);
    let mut foreign = SourceLayer::new(
        b"not stored anywhere".to_vec(),
        "application/vnd.docker.image.rootfs.foreign.diff.tar.gzip",
        b"foreign".to_vec(),
    );
    foreign.extra = json!({ "urls": ["https://example.com/base-layer"] });
    write_layout(
        &source,
        "v1",
        &[
            foreign,
            SourceLayer::new(gzip(&tar), LAYER_GZIP, tar.clone()),
        ],
    );
    // The foreign blob is served elsewhere, so the layout does not have it.
    std::fs::remove_file(blob_path(&source, &sha256(b"not stored anywhere"))).unwrap();

    let out = work.path().join("out");
    let report = convert_ok(&oci(&source, "v1"), &oci(&out, "esgz"), &[], tmp.path());
    let converted = LayoutImage::read_tag(&out, "esgz");
    let layers = converted.layers();
    assert_eq!(layers[0]["digest"], sha256(b"not stored anywhere"));
    assert_eq!(
        layers[0]["mediaType"],
        "application/vnd.oci.image.layer.nondistributable.v1.tar+gzip"
    );
    assert_eq!(layers[0]["urls"][0], "https://example.com/base-layer");
    assert_eq!(
        converted.diff_ids()[0],
        sha256(b"foreign"),
        "the foreign layer's diffID changed"
    );
    assert_eq!(
        layers[1]["annotations"][TOC_DIGEST],
        report["layers"][0]["toc_digest"]
    );
    let actions: Vec<&str> = report["layers"]
        .as_array()
        .unwrap()
        .iter()
        .map(|l| l["action"].as_str().unwrap())
        .collect();
    assert_eq!(actions, ["converted", "foreign"]);
}

#[test]
fn zstd_output_is_zstd_chunked() {
    require_or_skip!(Prereq::Root, Prereq::Binary("tar"), Prereq::Binary("zstd"));
    let work = scratch("lazypull-convert-work-");
    let tmp = scratch("lazypull-convert-tmp-");
    let source = work.path().join("source");
    let tar = rich_tar(7);
    write_layout(
        &source,
        "v1",
        &[SourceLayer::new(gzip(&tar), LAYER_GZIP, tar.clone())],
    );

    let out = work.path().join("out");
    convert_ok(
        &oci(&source, "v1"),
        &oci(&out, "zstd"),
        &["--compression", "zstd"],
        tmp.path(),
    );
    assert_dir_empty(tmp.path());
    let converted = LayoutImage::read_tag(&out, "zstd");
    let layer = &converted.layers()[0];
    assert_eq!(layer["mediaType"], LAYER_ZSTD);
    for key in [
        TOC_DIGEST,
        UNCOMPRESSED_SIZE,
        "io.containers.zstd-chunked.manifest-checksum",
        "io.containers.zstd-chunked.manifest-position",
    ] {
        assert!(
            layer["annotations"][key].is_string(),
            "missing annotation {key}: {layer}"
        );
    }
    let blob = std::fs::read(blob_path(&out, layer["digest"].as_str().unwrap())).unwrap();
    let toc_digest: estargz::Digest = layer["annotations"][TOC_DIGEST]
        .as_str()
        .unwrap()
        .parse()
        .unwrap();
    let opened = estargz::blob::open_blob(
        &blob.as_slice(),
        &estargz::blob::BlobOptions::verify_with(toc_digest),
    )
    .unwrap();
    assert_eq!(opened.compression, estargz::Compression::Zstd);

    let decompressed = work.path().join("layer.tar");
    let (length, digest) = decompress_to(
        &blob_path(&out, layer["digest"].as_str().unwrap()),
        &decompressed,
    );
    assert_eq!(digest, converted.diff_ids()[0]);
    assert_eq!(layer["annotations"][UNCOMPRESSED_SIZE], length.to_string());
    let expected_dir = work.path().join("expected");
    let actual_dir = work.path().join("actual");
    std::fs::create_dir_all(&expected_dir).unwrap();
    std::fs::create_dir_all(&actual_dir).unwrap();
    let original_tar = work.path().join("original.tar");
    std::fs::write(&original_tar, &tar).unwrap();
    extract(&original_tar, &expected_dir);
    extract(&decompressed, &actual_dir);
    let mut actual = lazypull_testkit::tree::snapshot(&actual_dir).unwrap();
    assert!(
        actual
            .nodes
            .remove(Path::new(".no.prefetch.landmark"))
            .is_some(),
        "zstd layer without landmark"
    );
    let differences = lazypull_testkit::tree::snapshot(&expected_dir)
        .unwrap()
        .diff(&actual);
    assert!(differences.is_empty(), "{}", differences.join("\n"));
}

#[test]
fn upstream_estargz_layer_passes_through_with_annotations() {
    require_or_skip!(Prereq::Root, Prereq::Binary("tar"), Prereq::Binary("go"));
    let work = scratch("lazypull-convert-work-");
    let tmp = scratch("lazypull-convert-tmp-");
    let tar = rich_tar(11);
    let tar_path = work.path().join("layer.tar");
    std::fs::write(&tar_path, &tar).unwrap();
    let blob_file = work.path().join("layer.esgz");
    let built =
        lazypull_testkit::gochecker::go_build_estargz(&tar_path, &blob_file, &Default::default())
            .unwrap();
    let blob = std::fs::read(&blob_file).unwrap();
    // Written by upstream's estargz.Build, without annotations, as a plain gzip layer.
    let source = work.path().join("source");
    // The config's diffID is replaced below with upstream's.
    write_layout(
        &source,
        "v1",
        &[SourceLayer::new(blob.clone(), LAYER_GZIP, Vec::new())],
    );
    let image = LayoutImage::read_tag(&source, "v1");
    let mut config = image.config.clone();
    config["rootfs"]["diff_ids"][0] = json!(built.diff_id);
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

    let out = work.path().join("out");
    let report = convert_ok(&oci(&source, "v1"), &oci(&out, "kept"), &[], tmp.path());
    assert_eq!(report["layers"][0]["action"], "passed-through");
    let kept = LayoutImage::read_tag(&out, "kept");
    let layer = &kept.layers()[0];
    assert_eq!(
        layer["digest"],
        sha256(&blob),
        "a passed-through layer changed"
    );
    assert_eq!(layer["annotations"][TOC_DIGEST], built.toc_digest.as_str());
    assert!(layer["annotations"][UNCOMPRESSED_SIZE].is_string());
    assert_eq!(
        kept.diff_ids()[0],
        built.diff_id,
        "a passed-through layer's diffID changed"
    );

    let report = convert_ok(
        &oci(&source, "v1"),
        &oci(&out, "rebuilt"),
        &["--reconvert"],
        tmp.path(),
    );
    assert_eq!(report["layers"][0]["action"], "converted");
    let rebuilt = LayoutImage::read_tag(&out, "rebuilt");
    let tar_blob = work.path().join("original.tar");
    std::fs::write(&tar_blob, &tar).unwrap();
    let layer_work = work.path().join("check");
    std::fs::create_dir_all(&layer_work).unwrap();
    let check = check_converted_layer(
        &tar_blob,
        &blob_path(&out, rebuilt.layers()[0]["digest"].as_str().unwrap()),
        &rebuilt.layers()[0],
        &rebuilt.diff_ids()[0],
        &layer_work,
    );
    let tocs = check
        .tar_names
        .iter()
        .filter(|n| n.trim_start_matches("./") == "stargz.index.json")
        .count();
    assert_eq!(tocs, 1, "the rebuilt layer has {tocs} TOCs");
    assert_dir_empty(tmp.path());
}
