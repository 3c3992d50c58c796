//! Shared helpers of the `convert_*` tests: running `lazypull convert`, writing source layouts
//! with any layer encoding, reading converted images back, and checking converted layers
//! against the originals with GNU tar and the upstream Go reader.

#![allow(dead_code)]

use std::io::{Read, Write};
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use anyhow::Context;
use lazypull_testkit::gochecker::go_check;
use lazypull_testkit::tree::{DiffOptions, Tree, implied_parent_dirs, snapshot};
use serde_json::{Value, json};
use sha2::{Digest, Sha256};

/// Media types used by the tests.
pub const OCI_MANIFEST: &str = "application/vnd.oci.image.manifest.v1+json";
pub const OCI_INDEX: &str = "application/vnd.oci.image.index.v1+json";
pub const OCI_CONFIG: &str = "application/vnd.oci.image.config.v1+json";
pub const LAYER_GZIP: &str = "application/vnd.oci.image.layer.v1.tar+gzip";
pub const LAYER_ZSTD: &str = "application/vnd.oci.image.layer.v1.tar+zstd";
pub const LAYER_TAR: &str = "application/vnd.oci.image.layer.v1.tar";
pub const TOC_DIGEST: &str = "containerd.io/snapshot/stargz/toc.digest";
pub const UNCOMPRESSED_SIZE: &str = "io.containers.estargz.uncompressed-size";
pub const REF_NAME: &str = "org.opencontainers.image.ref.name";

/// `sha256:<hex>` of `bytes`.
pub fn sha256(bytes: &[u8]) -> String {
    format!("sha256:{}", hex::encode(Sha256::digest(bytes)))
}

/// Returns a command for the `lazypull` binary built for these tests.
pub fn lazypull() -> Command {
    Command::new(env!("CARGO_BIN_EXE_lazypull"))
}

/// Runs `lazypull convert SRC DST ARGS --tmpdir TMPDIR --json --progress log`.
pub fn convert(source: &str, destination: &str, args: &[&str], tmpdir: &Path) -> Output {
    let mut command = lazypull();
    command
        .arg("convert")
        .arg(source)
        .arg(destination)
        .args(args)
        .arg("--tmpdir")
        .arg(tmpdir)
        .args(["--json", "--progress", "log"]);
    command.output().expect("failed to run lazypull")
}

/// Like [`convert`], failing the test on a non-zero exit; returns the JSON report.
pub fn convert_ok(source: &str, destination: &str, args: &[&str], tmpdir: &Path) -> Value {
    let output = convert(source, destination, args, tmpdir);
    assert!(
        output.status.success(),
        "lazypull convert {source} {destination} {args:?} failed with {}:\n{}",
        output.status,
        String::from_utf8_lossy(&output.stderr)
    );
    serde_json::from_slice(&output.stdout).unwrap_or_else(|e| {
        panic!(
            "invalid --json output ({e}): {}",
            String::from_utf8_lossy(&output.stdout)
        )
    })
}

/// Fails unless `dir` is empty: the converter must remove every temporary file.
pub fn assert_dir_empty(dir: &Path) {
    let left: Vec<PathBuf> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .collect();
    assert!(left.is_empty(), "temporary files left behind: {left:?}");
}

/// Path of a blob in an OCI layout.
pub fn blob_path(layout: &Path, digest: &str) -> PathBuf {
    layout
        .join("blobs/sha256")
        .join(digest.trim_start_matches("sha256:"))
}

/// Writes a blob into a layout and returns its digest.
pub fn write_blob(layout: &Path, bytes: &[u8]) -> String {
    let digest = sha256(bytes);
    std::fs::create_dir_all(layout.join("blobs/sha256")).unwrap();
    std::fs::write(blob_path(layout, &digest), bytes).unwrap();
    digest
}

/// A layer of a generated source image.
pub struct SourceLayer {
    /// The blob as stored.
    pub blob: Vec<u8>,
    /// Its media type.
    pub media_type: String,
    /// The uncompressed tar, for the config's diffID.
    pub tar: Vec<u8>,
    /// Extra descriptor members (annotations, urls).
    pub extra: Value,
}

impl SourceLayer {
    /// Creates a layer stored as `blob` with `media_type`, whose content is `tar`.
    pub fn new(blob: Vec<u8>, media_type: &str, tar: Vec<u8>) -> Self {
        SourceLayer {
            blob,
            media_type: media_type.to_string(),
            tar,
            extra: json!({}),
        }
    }
}

/// Writes a one-image OCI layout with `layers`, tagged `tag`, and returns the manifest digest.
pub fn write_layout(dir: &Path, tag: &str, layers: &[SourceLayer]) -> String {
    let (digest, size) = write_image(dir, layers, "amd64");
    write_index(
        dir,
        &[(
            digest.clone(),
            size,
            OCI_MANIFEST.to_string(),
            None,
            Some(tag.to_string()),
        )],
    );
    digest
}

/// Writes config and manifest blobs for `layers` with the given architecture; returns the
/// manifest digest and size.
pub fn write_image(dir: &Path, layers: &[SourceLayer], architecture: &str) -> (String, usize) {
    let diff_ids: Vec<String> = layers.iter().map(|l| sha256(&l.tar)).collect();
    let config = serde_json::to_vec(&json!({
        "architecture": architecture,
        "os": "linux",
        "config": { "Cmd": ["/bin/true"] },
        "rootfs": { "type": "layers", "diff_ids": diff_ids },
        "history": [{ "created_by": "lazypull test" }],
    }))
    .unwrap();
    let config_digest = write_blob(dir, &config);
    let descriptors: Vec<Value> = layers
        .iter()
        .map(|layer| {
            let mut descriptor =
                json!({ "mediaType": layer.media_type, "digest": sha256(&layer.blob), "size": layer.blob.len() });
            if let (Some(target), Some(extra)) = (descriptor.as_object_mut(), layer.extra.as_object()) {
                target.extend(extra.clone());
            }
            write_blob(dir, &layer.blob);
            descriptor
        })
        .collect();
    let manifest = serde_json::to_vec(&json!({
        "schemaVersion": 2,
        "mediaType": OCI_MANIFEST,
        "config": { "mediaType": OCI_CONFIG, "digest": config_digest, "size": config.len() },
        "layers": descriptors,
        "annotations": { "org.example.keep": "yes" },
    }))
    .unwrap();
    (write_blob(dir, &manifest), manifest.len())
}

/// One `index.json` entry: digest, size, media type, platform, tag.
pub type IndexEntry = (String, usize, String, Option<Value>, Option<String>);

/// Writes `index.json` with `entries`.
pub fn write_index(dir: &Path, entries: &[IndexEntry]) {
    let manifests: Vec<Value> = entries
        .iter()
        .map(|(digest, size, media_type, platform, tag)| {
            let mut entry = json!({ "mediaType": media_type, "digest": digest, "size": size });
            if let Some(platform) = platform {
                entry["platform"] = platform.clone();
            }
            if let Some(tag) = tag {
                entry["annotations"] = json!({ REF_NAME: tag });
            }
            entry
        })
        .collect();
    std::fs::write(
        dir.join("index.json"),
        serde_json::to_vec(&json!({ "schemaVersion": 2, "manifests": manifests })).unwrap(),
    )
    .unwrap();
    std::fs::write(dir.join("oci-layout"), br#"{"imageLayoutVersion":"1.0.0"}"#).unwrap();
}

/// gzip at level 6 as one member.
pub fn gzip(bytes: &[u8]) -> Vec<u8> {
    lazypull_testkit::tarbuild::gzip(bytes, 6)
}

/// Reads a JSON blob from a layout.
pub fn read_json(layout: &Path, digest: &str) -> Value {
    serde_json::from_slice(&std::fs::read(blob_path(layout, digest)).unwrap()).unwrap()
}

/// Returns the descriptor `index.json` lists for `tag`.
pub fn tagged(layout: &Path, tag: &str) -> Option<Value> {
    let index: Value =
        serde_json::from_slice(&std::fs::read(layout.join("index.json")).ok()?).ok()?;
    index["manifests"]
        .as_array()?
        .iter()
        .find(|m| m["annotations"][REF_NAME] == tag)
        .cloned()
}

/// One image manifest read from a layout, with its config.
pub struct LayoutImage {
    /// Manifest digest.
    pub digest: String,
    /// Manifest JSON.
    pub manifest: Value,
    /// Config JSON.
    pub config: Value,
    /// Config bytes.
    pub config_bytes: Vec<u8>,
}

impl LayoutImage {
    /// Reads the manifest `digest` of `layout`.
    pub fn read(layout: &Path, digest: &str) -> LayoutImage {
        let manifest = read_json(layout, digest);
        let config_digest = manifest["config"]["digest"].as_str().unwrap().to_string();
        let config_bytes = std::fs::read(blob_path(layout, &config_digest)).unwrap();
        assert_eq!(
            sha256(&config_bytes),
            config_digest,
            "config blob does not match its digest"
        );
        let config = serde_json::from_slice(&config_bytes).unwrap();
        LayoutImage {
            digest: digest.to_string(),
            manifest,
            config,
            config_bytes,
        }
    }

    /// Reads the single manifest tagged `tag`.
    pub fn read_tag(layout: &Path, tag: &str) -> LayoutImage {
        let entry = tagged(layout, tag)
            .unwrap_or_else(|| panic!("tag {tag} missing in {}", layout.display()));
        assert_eq!(
            entry["mediaType"], OCI_MANIFEST,
            "tag {tag} is not a manifest: {entry}"
        );
        LayoutImage::read(layout, entry["digest"].as_str().unwrap())
    }

    /// Layer descriptors.
    pub fn layers(&self) -> Vec<Value> {
        self.manifest["layers"].as_array().unwrap().clone()
    }

    /// diffIDs of the config.
    pub fn diff_ids(&self) -> Vec<String> {
        self.config["rootfs"]["diff_ids"]
            .as_array()
            .unwrap()
            .iter()
            .map(|d| d.as_str().unwrap().to_string())
            .collect()
    }
}

/// Copies `reference` from a plain-HTTP registry into an OCI layout with skopeo, keeping
/// digests (every platform of an index).
pub fn pull_to_layout(reference: &str, layout: &Path, tag: &str) {
    let output = Command::new("skopeo")
        .args([
            "--insecure-policy",
            "copy",
            "--quiet",
            "--all",
            "--preserve-digests",
            "--src-tls-verify=false",
        ])
        .arg(format!("docker://{reference}"))
        .arg(format!("oci:{}:{tag}", layout.display()))
        .output()
        .expect("failed to run skopeo");
    assert!(
        output.status.success(),
        "skopeo copy {reference} failed: {}",
        String::from_utf8_lossy(&output.stderr)
    );
}

/// Runs `skopeo inspect --raw` on a registry image; `None` when it does not exist.
pub fn skopeo_inspect_raw(reference: &str) -> Option<Vec<u8>> {
    let output = Command::new("skopeo")
        .args(["inspect", "--raw", "--tls-verify=false"])
        .arg(format!("docker://{reference}"))
        .output()
        .expect("failed to run skopeo");
    output.status.success().then_some(output.stdout)
}

/// Decompresses a layer blob (gzip with any number of members, zstd, or plain) into a file.
/// Returns the length of the decompressed stream and its digest.
pub fn decompress_to(blob: &Path, out: &Path) -> (u64, String) {
    let mut input = std::fs::File::open(blob).unwrap();
    let mut head = [0u8; 4];
    let n = input.read(&mut head).unwrap();
    let input = std::fs::File::open(blob).unwrap();

    // zstd goes through the zstd program: the root package has no zstd crate dependency.
    let mut child = None;
    let mut reader: Box<dyn Read> = match &head[..n] {
        [0x1f, 0x8b, ..] => Box::new(flate2::read::MultiGzDecoder::new(std::io::BufReader::new(
            input,
        ))),
        [0x28, 0xb5, 0x2f, 0xfd] => {
            let mut process = Command::new("zstd")
                .args(["-dcq"])
                .stdin(input)
                .stdout(std::process::Stdio::piped())
                .spawn()
                .expect("failed to run zstd");
            let stdout = process.stdout.take().unwrap();
            child = Some(process);
            Box::new(stdout)
        }
        _ => Box::new(input),
    };

    let mut file = std::io::BufWriter::new(std::fs::File::create(out).unwrap());
    let mut hasher = Sha256::new();
    let mut total = 0u64;
    let mut buf = vec![0u8; 1 << 20];
    loop {
        let n = reader.read(&mut buf).unwrap();
        if n == 0 {
            break;
        }
        hasher.update(&buf[..n]);
        file.write_all(&buf[..n]).unwrap();
        total += n as u64;
    }
    file.flush().unwrap();
    if let Some(mut process) = child {
        assert!(
            process.wait().unwrap().success(),
            "zstd -d failed on {}",
            blob.display()
        );
    }
    (total, format!("sha256:{}", hex::encode(hasher.finalize())))
}

/// Findings of [`check_converted_layer`].
pub struct LayerCheck {
    /// The landmark file name present in the converted layer.
    pub landmark: String,
    /// Number of TOC entries the Go reader reported.
    pub go_entries: usize,
    /// Entry names in tar order.
    pub tar_names: Vec<String>,
}

/// Checks one converted layer against its original:
///
/// * GNU tar extracts both to the same tree (content, mode, owner, mtime, symlinks, hardlinks,
///   xattrs, devices), except the landmark and `stargz.index.json` that only the converted
///   layer has. Parents the original implies without an entry are compared without metadata,
///   because the converter writes explicit entries for them;
/// * the TOC-digest annotation is the sha256 of the extracted `stargz.index.json`;
/// * the uncompressed-size annotation and `diff_id` match the decompressed blob;
/// * the upstream Go reader verifies the TOC and every chunk, and reads every regular file with
///   the content GNU tar extracted.
pub fn check_converted_layer(
    original_blob: &Path,
    converted_blob: &Path,
    descriptor: &Value,
    diff_id: &str,
    work: &Path,
) -> LayerCheck {
    let original_tar = work.join("original.tar");
    let converted_tar = work.join("converted.tar");
    decompress_to(original_blob, &original_tar);
    let (length, digest) = decompress_to(converted_blob, &converted_tar);
    assert_eq!(
        digest, diff_id,
        "diffID in the config is not the digest of the decompressed blob"
    );
    assert_eq!(
        descriptor["annotations"][UNCOMPRESSED_SIZE],
        length.to_string(),
        "uncompressed-size annotation"
    );
    assert_eq!(descriptor["mediaType"], LAYER_GZIP);

    let expected_dir = work.join("expected");
    let actual_dir = work.join("actual");
    std::fs::create_dir_all(&expected_dir).unwrap();
    std::fs::create_dir_all(&actual_dir).unwrap();
    // GNU tar rejects a zero-byte archive, which as a layer is simply empty.
    let original_is_empty = std::fs::metadata(&original_tar).unwrap().len() == 0;
    if !original_is_empty {
        extract(&original_tar, &expected_dir);
    }
    extract(&converted_tar, &actual_dir);
    let expected = snapshot(&expected_dir).unwrap();
    let mut actual = snapshot(&actual_dir).unwrap();

    let toc = std::fs::read(actual_dir.join("stargz.index.json"))
        .expect("converted layer has no stargz.index.json");
    assert_eq!(
        descriptor["annotations"][TOC_DIGEST],
        sha256(&toc),
        "TOC-digest annotation"
    );
    let landmarks: Vec<&str> = [".prefetch.landmark", ".no.prefetch.landmark"]
        .into_iter()
        .filter(|name| actual_dir.join(name).exists())
        .collect();
    assert_eq!(
        landmarks.len(),
        1,
        "exactly one landmark expected, found {landmarks:?}"
    );
    assert_eq!(
        std::fs::read(actual_dir.join(landmarks[0])).unwrap(),
        [0x0f]
    );
    for extra in ["stargz.index.json", landmarks[0]] {
        actual.nodes.remove(Path::new(extra));
    }
    let options = DiffOptions {
        ignore_dir_metadata: if original_is_empty {
            Default::default()
        } else {
            implied_parent_dirs(&original_tar).unwrap()
        },
        ..DiffOptions::default()
    };
    let differences = expected.diff_with(&actual, &options);
    assert!(
        differences.is_empty(),
        "converted layer differs from the original:\n{}",
        differences.join("\n")
    );

    let go_entries = check_with_go_reader(
        converted_blob,
        descriptor["annotations"][TOC_DIGEST].as_str().unwrap(),
        &actual,
    );
    let tar_names = tar_listing(&converted_tar);
    let landmark = landmarks[0].to_string();
    for dir in [&expected_dir, &actual_dir] {
        std::fs::remove_dir_all(dir).unwrap();
    }
    std::fs::remove_file(&original_tar).unwrap();
    std::fs::remove_file(&converted_tar).unwrap();
    LayerCheck {
        landmark,
        go_entries,
        tar_names,
    }
}

/// Opens the blob with the upstream Go reader (verifying TOC and every chunk) and compares the
/// content it reads for every regular file with the extracted tree. Returns the entry count.
fn check_with_go_reader(blob: &Path, toc_digest: &str, tree: &Tree) -> usize {
    let entries = go_check(blob, toc_digest).unwrap();
    let mut checked = 0;
    for entry in &entries {
        if entry.kind != "reg" {
            continue;
        }
        let name = entry.clean_name();
        if name == ".prefetch.landmark" || name == ".no.prefetch.landmark" {
            continue;
        }
        let node = tree
            .get(name)
            .unwrap_or_else(|| panic!("Go reader lists {name}, GNU tar did not extract it"));
        // A hardlink's TOC entry is its own type; regular entries carry the content.
        assert_eq!(
            entry.sha256.as_deref(),
            node.sha256.as_deref(),
            "content of {name} read by the Go reader"
        );
        checked += 1;
    }
    assert!(
        checked > 0 || tree.nodes.values().all(|n| n.sha256.is_none()),
        "the Go reader read no file"
    );
    entries.len()
}

/// Extracts a tar file with GNU tar like `testkit::tree::extract_with_gnu_tar`, plus
/// `--delay-directory-restore`. Without it, GNU tar sets a directory's mtime as soon as it
/// extracts an entry outside that directory. A later entry inside it (`a/b/`, `a/b.pm`,
/// `a/b/c.pm`) then leaves the extraction time, and directory mtimes could not be compared.
pub fn extract(tar: &Path, dest: &Path) {
    let output = Command::new("tar")
        .args([
            "--xattrs",
            "--xattrs-include=*",
            "--numeric-owner",
            "--same-owner",
            "--delay-directory-restore",
            "-xpf",
        ])
        .arg(tar)
        .arg("-C")
        .arg(dest)
        .env("LC_ALL", "C")
        .output()
        .expect("failed to run tar");
    assert!(
        output.status.success(),
        "GNU tar failed to extract {}: {}",
        tar.display(),
        String::from_utf8_lossy(&output.stderr)
    );
}

/// Entry names of a tar file in order, from GNU tar.
pub fn tar_listing(tar: &Path) -> Vec<String> {
    let output = Command::new("tar")
        .args(["--quoting-style=literal", "-tf"])
        .arg(tar)
        .env("LC_ALL", "C")
        .output()
        .unwrap();
    assert!(
        output.status.success(),
        "tar -t failed: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    String::from_utf8_lossy(&output.stdout)
        .lines()
        .map(str::to_string)
        .collect()
}

/// Checks every layer of `converted` (manifest in `converted_layout`) against the layers of
/// `original` (manifest in `original_layout`), in order.
pub fn check_converted_image(
    original_layout: &Path,
    original: &LayoutImage,
    converted_layout: &Path,
    converted: &LayoutImage,
    work: &Path,
) -> Vec<LayerCheck> {
    let original_layers = original.layers();
    let converted_layers = converted.layers();
    assert_eq!(original_layers.len(), converted_layers.len());
    let diff_ids = converted.diff_ids();
    assert_eq!(diff_ids.len(), converted_layers.len());
    let mut checks = Vec::new();
    for (i, (old, new)) in original_layers.iter().zip(&converted_layers).enumerate() {
        let old_blob = blob_path(original_layout, old["digest"].as_str().unwrap());
        let new_blob = blob_path(converted_layout, new["digest"].as_str().unwrap());
        let blob_bytes = std::fs::metadata(&new_blob).unwrap().len();
        assert_eq!(new["size"], blob_bytes, "layer {i}: descriptor size");
        let layer_work = work.join(format!("layer-{i}"));
        std::fs::create_dir_all(&layer_work).unwrap();
        checks.push(check_converted_layer(
            &old_blob,
            &new_blob,
            new,
            &diff_ids[i],
            &layer_work,
        ));
    }
    checks
}

/// Checks that the config changed only in `rootfs.diff_ids`.
pub fn assert_config_changed_only_in_diff_ids(original: &LayoutImage, converted: &LayoutImage) {
    let mut old = original.config.clone();
    let mut new = converted.config.clone();
    old["rootfs"]["diff_ids"] = Value::Null;
    new["rootfs"]["diff_ids"] = Value::Null;
    assert_eq!(
        old, new,
        "config members other than rootfs.diff_ids changed"
    );
}

/// Creates a directory for temporary files that the test lists afterwards.
pub fn scratch(prefix: &str) -> tempfile::TempDir {
    tempfile::Builder::new().prefix(prefix).tempdir().unwrap()
}

/// Copies an OCI layout (so a test can modify it).
pub fn copy_layout(from: &Path, to: &Path) -> anyhow::Result<()> {
    let status = Command::new("cp")
        .arg("-a")
        .arg(from)
        .arg(to)
        .status()
        .context("failed to run cp")?;
    anyhow::ensure!(
        status.success(),
        "cp -a {} {} failed",
        from.display(),
        to.display()
    );
    Ok(())
}
