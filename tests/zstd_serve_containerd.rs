//! A zstd:chunked image (`lazypull convert --compression zstd`) through `lazypull serve` as
//! containerd's proxy snapshotter: `ctr-remote image rpull` mounts its layers lazily and
//! `ctr run` of the python workload prints 42.

mod serve_util;

use std::process::Command;

use lazypull_testkit::Prereq;
use lazypull_testkit::image::{PYTHON_IMAGE_TAG, python_image};
use lazypull_testkit::prereq::require_all;
use serve_util::{PYTHON_WORKLOAD, Stack, layout_layers, tail};

#[test]
fn zstd_image_runs_through_serve_and_containerd() {
    if !require_all(&[
        Prereq::Root,
        Prereq::Fuse,
        Prereq::Overlayfs,
        Prereq::Binary("containerd"),
        Prereq::Binary("ctr"),
        Prereq::Binary("ctr-remote"),
        Prereq::Binary("runc"),
        Prereq::Binary("docker-registry"),
        Prereq::Binary("skopeo"),
    ]) {
        return;
    }
    let source = python_image().expect("python test image builds");
    let work = tempfile::tempdir().unwrap();
    let layout = work.path().join("zstd");
    let output = Command::new(env!("CARGO_BIN_EXE_lazypull"))
        .args([
            "convert",
            "--compression",
            "zstd",
            "--compression-level",
            "1",
        ])
        .arg(format!("oci:{}:{PYTHON_IMAGE_TAG}", source.display()))
        .arg(format!("oci:{}:latest", layout.display()))
        .output()
        .expect("lazypull convert runs");
    assert!(
        output.status.success(),
        "lazypull convert failed: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    let layers = layout_layers(&layout, "latest");
    assert_eq!(layers.len(), 2);

    // Background fetch off, so the bytes served are what the pull and the workload needed.
    let stack = Stack::start("[prefetch]\nbackground = false\n").unwrap();
    let reference = stack
        .registry
        .push_oci_layout(&layout, "latest", "python-zstd:latest")
        .unwrap();
    stack.rpull(&reference);
    let prepared = stack
        .serve
        .log_events()
        .into_iter()
        .filter(|event| event["message"] == "prepared remote snapshot")
        .count();
    assert_eq!(
        prepared,
        layers.len(),
        "every zstd layer is mounted lazily:\n{}",
        tail(&stack.serve.log(), 30)
    );
    for (digest, size, toc_digest) in &layers {
        assert!(toc_digest.is_some(), "layer {digest} has no TOC digest");
        let served = stack.registry.blob_bytes_served(digest);
        assert!(
            served < size / 4,
            "layer {digest}: {served} of {size} bytes served during rpull"
        );
    }

    let output = stack.run(&reference, "zstd", &PYTHON_WORKLOAD);
    assert_eq!(output.trim(), "42", "{}", tail(&stack.serve.log(), 30));
}
