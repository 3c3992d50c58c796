//! The converter under faults: a push killed half-way leaves the destination tag on the
//! earlier image and a rerun completes it, and a source layer damaged inside a registry is
//! reported by its digest.

mod convert_support;
mod hostile_support;

use std::path::Path;
use std::time::{Duration, Instant};

use convert_support::*;
use hostile_support::random_bytes;
use lazypull_testkit::registry::Registry;
use lazypull_testkit::tarbuild::{Builder, Entry};
use lazypull_testkit::{Prereq, require_or_skip};

const MIB: usize = 1 << 20;

/// Writes a layout tagged `tag` with `layers` layers, each holding one random file of `size`.
fn write_random_image(dir: &Path, tag: &str, layers: usize, size: usize) {
    let layers: Vec<SourceLayer> = (0..layers)
        .map(|n| {
            let mut tar = Builder::new();
            tar.append(&Entry::dir("data"));
            tar.append(&Entry::file(
                format!("data/layer-{n}.bin"),
                random_bytes(size, n as u64 + 1),
            ));
            let tar = tar.finish();
            SourceLayer::new(
                gzip(&tar),
                "application/vnd.oci.image.layer.v1.tar+gzip",
                tar,
            )
        })
        .collect();
    write_layout(dir, tag, &layers);
}

fn oci(dir: &Path, tag: &str) -> String {
    format!("oci:{}:{tag}", dir.display())
}

/// Returns the number of finished blob uploads the registry has logged.
fn finished_uploads(registry: &Registry) -> usize {
    registry
        .access_log()
        .iter()
        .filter(|entry| {
            entry.method == "PUT" && entry.path.contains("/blobs/uploads/") && entry.status == 201
        })
        .count()
}

#[test]
fn killed_push_keeps_old_tag_and_rerun_completes() {
    require_or_skip!(Prereq::Binary("docker-registry"), Prereq::Binary("skopeo"));
    let registry = Registry::start().unwrap();
    let work = scratch("lazypull-convert-work-");
    let destination = format!("{}/app:esgz", registry.host());

    // The tag first points at a small, complete image.
    let old = work.path().join("old");
    write_random_image(&old, "v1", 1, 64 * 1024);
    let tmp = scratch("lazypull-convert-tmp-");
    convert_ok(&oci(&old, "v1"), &destination, &[], tmp.path());
    let old_manifest =
        skopeo_inspect_raw(&destination).expect("the first conversion tagged the image");

    // A larger image is pushed to the same tag and the converter is killed (SIGKILL, so it
    // cleans nothing up) once its first blob upload has finished.
    let new = work.path().join("new");
    write_random_image(&new, "v1", 6, 6 * MIB);
    let uploads_before = finished_uploads(&registry);
    let mut child = lazypull()
        .arg("convert")
        .arg(oci(&new, "v1"))
        .arg(&destination)
        .args(["--progress", "none", "--tmpdir"])
        .arg(tmp.path())
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(120);
    while finished_uploads(&registry) == uploads_before {
        assert!(
            Instant::now() < deadline,
            "no blob upload finished within 120 s"
        );
        assert!(
            child.try_wait().unwrap().is_none(),
            "the conversion ended before any upload was seen"
        );
        std::thread::sleep(Duration::from_millis(10));
    }
    child.kill().unwrap();
    let status = child.wait().unwrap();
    assert!(
        !status.success(),
        "the conversion finished before it was killed"
    );
    let uploaded = finished_uploads(&registry) - uploads_before;
    eprintln!("killed after {uploaded} finished blob uploads");

    assert_eq!(
        skopeo_inspect_raw(&destination).as_deref(),
        Some(old_manifest.as_slice()),
        "the killed push moved the tag"
    );

    // A rerun converts and pushes the whole image, and the tag then names a complete image:
    // skopeo copies every blob of it and checks each digest.
    let report = convert_ok(&oci(&new, "v1"), &destination, &[], tmp.path());
    let new_manifest = skopeo_inspect_raw(&destination).unwrap();
    assert_ne!(
        new_manifest, old_manifest,
        "the rerun did not move the tag: {report}"
    );
    let pulled = work.path().join("pulled");
    pull_to_layout(&destination, &pulled, "esgz");
    let image = LayoutImage::read_tag(&pulled, "esgz");
    assert_eq!(image.layers().len(), 6);
}

#[test]
fn corrupt_layer_in_source_registry_is_named() {
    require_or_skip!(Prereq::Binary("docker-registry"), Prereq::Binary("skopeo"));
    let registry = Registry::start().unwrap();
    let work = scratch("lazypull-convert-work-");
    let layout = work.path().join("source");
    write_random_image(&layout, "v1", 2, 256 * 1024);
    let source = format!("{}/source:v1", registry.host());
    let output = std::process::Command::new("skopeo")
        .args([
            "--insecure-policy",
            "copy",
            "--quiet",
            "--dest-tls-verify=false",
        ])
        .arg(oci(&layout, "v1"))
        .arg(format!("docker://{source}"))
        .output()
        .unwrap();
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );

    // Flip bytes in the stored blob of the second layer.
    let image = LayoutImage::read_tag(&layout, "v1");
    let digest = image.layers()[1]["digest"].as_str().unwrap().to_owned();
    let hex = digest.trim_start_matches("sha256:");
    let data = registry
        .storage_dir()
        .join("docker/registry/v2/blobs/sha256")
        .join(&hex[..2])
        .join(hex)
        .join("data");
    let mut bytes = std::fs::read(&data)
        .unwrap_or_else(|e| panic!("registry blob {} not found: {e}", data.display()));
    let middle = bytes.len() / 2;
    bytes[middle] ^= 0xff;
    bytes[middle + 1] ^= 0xff;
    std::fs::write(&data, &bytes).unwrap();

    let destination = format!("{}/app:esgz", registry.host());
    let tmp = scratch("lazypull-convert-tmp-");
    let output = convert(&source, &destination, &[], tmp.path());
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        !output.status.success(),
        "conversion of a corrupt layer succeeded"
    );
    assert!(
        stderr.contains(&digest),
        "the error does not name {digest}: {stderr}"
    );
    assert!(
        skopeo_inspect_raw(&destination).is_none(),
        "a failed conversion tagged the destination"
    );
    assert_dir_empty(tmp.path());
}
