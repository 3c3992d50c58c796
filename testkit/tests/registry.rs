//! The test registry starts, accepts a pushed OCI layout and logs what it serves.

use std::process::Command;
use std::time::Instant;

use lazypull_testkit::image::write_oci_layout;
use lazypull_testkit::registry::Registry;
use lazypull_testkit::{Prereq, require_or_skip};

fn small_layer(file_size: usize) -> Vec<u8> {
    let mut builder = tar::Builder::new(Vec::new());
    let data: Vec<u8> = (0..file_size).map(|i| (i * 7 % 251) as u8).collect();
    let mut header = tar::Header::new_ustar();
    header.set_size(data.len() as u64);
    header.set_mode(0o644);
    header.set_cksum();
    builder
        .append_data(&mut header, "data/blob.bin", data.as_slice())
        .expect("append");
    builder.into_inner().expect("finish tar")
}

fn curl(args: &[&str]) -> Vec<u8> {
    let output = Command::new("curl")
        .args(["--silent", "--show-error", "--fail"])
        .args(args)
        .output()
        .expect("run curl");
    assert!(
        output.status.success(),
        "curl {args:?} failed: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    output.stdout
}

#[test]
fn pushed_layout_is_served_and_logged() {
    require_or_skip!(
        Prereq::Binary("docker-registry"),
        Prereq::Binary("skopeo"),
        Prereq::Binary("curl")
    );
    let started = Instant::now();
    let registry = Registry::start().expect("start registry");
    eprintln!(
        "registry ready on {} in {:?}",
        registry.host(),
        started.elapsed()
    );
    assert!(registry.host().starts_with("127.0.0.1:"));
    assert_eq!(registry.url(), format!("http://{}", registry.host()));

    let layout = tempfile::tempdir().expect("tempdir");
    let image = write_oci_layout(layout.path(), "v1", &[small_layer(300_000)], &["/bin/true"])
        .expect("write layout");
    let pushed_at = Instant::now();
    let reference = registry
        .push_oci_layout(layout.path(), "v1", "tiny:v1")
        .expect("push");
    eprintln!("pushed in {:?}", pushed_at.elapsed());
    assert_eq!(reference, format!("{}/tiny:v1", registry.host()));

    // The manifest keeps its digest and OCI media type.
    let manifest = curl(&[
        "-H",
        "Accept: application/vnd.oci.image.manifest.v1+json",
        &format!("{}/v2/tiny/manifests/v1", registry.url()),
    ]);
    assert_eq!(
        lazypull_testkit::image::sha256_digest(&manifest),
        image.manifest_digest
    );

    let layer = &image.layer_digests[0];
    let blob_url = format!("{}/v2/tiny/blobs/{layer}", registry.url());
    let range = curl(&["-H", "Range: bytes=10-109", &blob_url]);
    assert_eq!(range.len(), 100);
    let full = curl(&[&blob_url]);

    let log = registry.access_log();
    let ranged: Vec<_> = log
        .iter()
        .filter(|entry| entry.is_blob_get(layer) && entry.status == 206)
        .collect();
    assert_eq!(ranged.len(), 1, "log: {log:#?}");
    assert_eq!(ranged[0].bytes_written, 100);
    assert_eq!(registry.blob_bytes_served(layer), 100 + full.len() as u64);
    assert!(
        log.iter()
            .any(|entry| entry.method == "PUT" && entry.path.contains("/manifests/"))
    );
}

#[test]
fn registry_drop_stops_process() {
    require_or_skip!(Prereq::Binary("docker-registry"));
    let registry = Registry::start().expect("start registry");
    let pid = registry.pid();
    let storage = registry.storage_dir();
    assert!(std::path::Path::new(&format!("/proc/{pid}")).exists());
    drop(registry);
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
    assert!(status.is_empty(), "registry {pid} still exists: {status}");
    assert!(!storage.exists(), "{} was not removed", storage.display());
}

#[test]
fn two_registries_run_side_by_side() {
    require_or_skip!(Prereq::Binary("docker-registry"));
    let first = Registry::start().expect("start first");
    let second = Registry::start().expect("start second");
    assert_ne!(first.port(), second.port());
}
