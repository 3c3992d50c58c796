//! Images converted by the reference converter (`ctr-remote image convert --estargz --oci`,
//! Debian's stargz-snapshotter 0.12) mount byte-exact: the tar edge cases stacked as layers of
//! one image, compared with GNU tar's extraction merged the way overlayfs stacks layers.

mod mount_util;

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};

use lazypull_testkit::containerd::{Containerd, ContainerdOptions};
use lazypull_testkit::image::{PYTHON_IMAGE_TAG, python_image, write_oci_layout};
use lazypull_testkit::registry::Registry;
use lazypull_testkit::tarbuild::recipes;
use lazypull_testkit::tree::{DiffOptions, extract_layers_merged, implied_parent_dirs, snapshot};
use lazypull_testkit::{Prereq, require_or_skip};
use mount_util::Mount;

#[test]
fn ctr_remote_converted_image_mounts_byte_exact() {
    require_or_skip!(
        Prereq::Root,
        Prereq::Fuse,
        Prereq::Overlayfs,
        Prereq::Binary("tar"),
        Prereq::Binary("containerd"),
        Prereq::Binary("ctr"),
        Prereq::Binary("ctr-remote"),
        Prereq::Binary("docker-registry"),
        Prereq::Binary("skopeo")
    );
    let layers = vec![
        recipes::hardlink_no_parent_dirs(),
        recipes::symlinks(),
        recipes::xattrs_pax(),
        recipes::zero_length_files(),
        recipes::long_names(),
        recipes::whiteouts_lower(),
        recipes::whiteouts_upper_marker_last(),
        recipes::duplicate_paths(),
    ];
    let layout = tempfile::tempdir().unwrap();
    write_oci_layout(layout.path(), "v1", &layers, &["/bin/sh"]).unwrap();
    let registry = Registry::start().unwrap();
    let source = registry
        .push_oci_layout(layout.path(), "v1", "edges:v1")
        .unwrap();
    let containerd = Containerd::start(ContainerdOptions::default()).unwrap();
    containerd
        .ctr_ok(["images", "pull", "--plain-http", &source])
        .unwrap();
    let converted = format!("{}/edges:esgz", registry.host());
    let output = containerd.ctr_remote([
        "image",
        "convert",
        "--estargz",
        "--oci",
        &source,
        &converted,
    ]);
    assert!(
        output.status.success(),
        "ctr-remote convert failed: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    push_with_retries(&containerd, &converted);

    let tars = tempfile::tempdir().unwrap();
    let archives: Vec<PathBuf> = layers
        .iter()
        .enumerate()
        .map(|(n, tar)| {
            let path = tars.path().join(format!("layer-{n}.tar"));
            std::fs::write(&path, tar).unwrap();
            path
        })
        .collect();
    let pairs: Vec<(&Path, bool)> = archives
        .iter()
        .map(|path| (path.as_path(), false))
        .collect();
    let expected = extract_layers_merged(&pairs).unwrap();

    let mount = Mount::start(&converted, &["--no-disk-cache"]).unwrap();
    let actual = snapshot(mount.path()).unwrap();
    let mut implied = BTreeSet::new();
    for archive in &archives {
        implied.extend(implied_parent_dirs(archive).unwrap());
    }
    // ctr-remote keeps its landmark and TOC files in the tar stream. The mount hides the
    // landmark, and the TOC is never a TOC entry, so neither appears on either side.
    assert_matches_with_whole_second_mtimes(&expected, &actual, implied);
    mount.unmount().unwrap();
}

/// Compares the mount with tar's extraction. The reference writes `modtime` rounded to whole
/// seconds (Go's `Round(time.Second)`), so sub-second PAX mtimes come back up to half a second
/// off. Mtimes are therefore compared separately with that tolerance.
fn assert_matches_with_whole_second_mtimes(
    expected: &lazypull_testkit::tree::Tree,
    actual: &lazypull_testkit::tree::Tree,
    implied: BTreeSet<PathBuf>,
) {
    let options = DiffOptions {
        ignore_dir_metadata: implied,
        ignore_mtimes: true,
        ..DiffOptions::default()
    };
    let differences = expected.diff_with(actual, &options);
    assert!(
        differences.is_empty(),
        "{} differences from tar -x, first: {:#?}",
        differences.len(),
        &differences[..differences.len().min(30)]
    );
    for (path, node) in &expected.nodes {
        if node.kind == lazypull_testkit::tree::NodeKind::Directory {
            continue;
        }
        let served = &actual.nodes[path];
        let off = (node.mtime_ns - served.mtime_ns).abs();
        assert!(
            off <= 500_000_000,
            "{}: mtime {} ns != {} ns",
            path.display(),
            node.mtime_ns,
            served.mtime_ns
        );
    }
}

#[test]
fn ctr_remote_python_image_mounts_byte_exact() {
    require_or_skip!(
        Prereq::Root,
        Prereq::Fuse,
        Prereq::Overlayfs,
        Prereq::Binary("tar"),
        Prereq::Binary("containerd"),
        Prereq::Binary("ctr"),
        Prereq::Binary("ctr-remote"),
        Prereq::Binary("docker-registry"),
        Prereq::Binary("skopeo")
    );
    let layout = python_image().unwrap();
    let registry = Registry::start().unwrap();
    let source = registry
        .push_oci_layout(&layout, PYTHON_IMAGE_TAG, "python:gz")
        .unwrap();
    let containerd = Containerd::start(ContainerdOptions::default()).unwrap();
    containerd
        .ctr_ok(["images", "pull", "--plain-http", &source])
        .unwrap();
    let converted = format!("{}/python:ctr-remote-esgz", registry.host());
    let started = std::time::Instant::now();
    let output = containerd.ctr_remote([
        "image",
        "convert",
        "--estargz",
        "--oci",
        &source,
        &converted,
    ]);
    assert!(
        output.status.success(),
        "ctr-remote convert failed: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    eprintln!(
        "ctr-remote converted the python image in {:.1} s",
        started.elapsed().as_secs_f64()
    );
    push_with_retries(&containerd, &converted);

    let blobs = mount_util::layout_layers(&layout, PYTHON_IMAGE_TAG).unwrap();
    let pairs: Vec<(&Path, bool)> = blobs.iter().map(|blob| (blob.as_path(), true)).collect();
    let expected = extract_layers_merged(&pairs).unwrap();
    let mut implied = BTreeSet::new();
    for blob in &blobs {
        implied.extend(implied_parent_dirs(blob).unwrap());
    }

    let mount = Mount::start(&converted, &["--no-disk-cache"]).unwrap();
    let actual = snapshot(mount.path()).unwrap();
    assert_matches_with_whole_second_mtimes(&expected, &actual, implied);
    eprintln!(
        "ctr-remote python image: {} paths identical",
        actual.nodes.len()
    );
    mount.unmount().unwrap();
}

/// Pushes `reference` from containerd to the test registry. `ctr images push` sometimes fails
/// with "unexpected EOF" from the registry while another test pushes to it (seen with
/// containerd 1.6.20 and docker-registry 2.8.2), so a failed push is repeated twice.
fn push_with_retries(containerd: &Containerd, reference: &str) {
    let mut last_error = None;
    for _ in 0..3 {
        match containerd.ctr_ok(["images", "push", "--plain-http", reference]) {
            Ok(_) => return,
            Err(error) => {
                eprintln!("push of {reference} failed, retrying: {error:#}");
                last_error = Some(error);
            }
        }
    }
    panic!(
        "push of {reference} failed three times: {:#}",
        last_error.unwrap()
    );
}
