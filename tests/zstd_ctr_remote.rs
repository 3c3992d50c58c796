//! Images converted to zstd:chunked by the reference converter (`ctr-remote image convert
//! --zstdchunked --oci`, Debian's stargz-snapshotter 0.12) mount byte-exact through
//! `lazypull mount`, compared with GNU tar's extraction of the source layers merged the way
//! overlayfs stacks them.

mod mount_util;

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};

use lazypull_testkit::containerd::{Containerd, ContainerdOptions};
use lazypull_testkit::image::write_oci_layout;
use lazypull_testkit::registry::Registry;
use lazypull_testkit::tarbuild::recipes;
use lazypull_testkit::tree::{
    DiffOptions, NodeKind, extract_layers_merged, implied_parent_dirs, snapshot,
};
use lazypull_testkit::{Prereq, require_or_skip};
use mount_util::Mount;

#[test]
fn ctr_remote_zstdchunked_image_mounts_byte_exact() {
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
        recipes::long_names(),
        recipes::whiteouts_lower(),
        recipes::whiteouts_upper_marker_last(),
        recipes::zero_length_files(),
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
    let converted = format!("{}/edges:zstdchunked", registry.host());
    let output = containerd.ctr_remote([
        "image",
        "convert",
        "--zstdchunked",
        "--oci",
        &source,
        &converted,
    ]);
    assert!(
        output.status.success(),
        "ctr-remote convert failed: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    push(&containerd, &converted);

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
    let pairs: Vec<(&Path, bool)> = archives.iter().map(|p| (p.as_path(), false)).collect();
    let expected = extract_layers_merged(&pairs).unwrap();
    let mut implied = BTreeSet::new();
    for archive in &archives {
        implied.extend(implied_parent_dirs(archive).unwrap());
    }

    let mount = Mount::start(&converted, &["--no-disk-cache"]).unwrap();
    let actual = snapshot(mount.path()).unwrap();
    // The reference writes `modtime` rounded to whole seconds, so sub-second PAX mtimes come
    // back up to half a second off: they are compared below with that tolerance.
    let options = DiffOptions {
        ignore_dir_metadata: implied,
        ignore_mtimes: true,
        ..DiffOptions::default()
    };
    let differences = expected.diff_with(&actual, &options);
    assert!(
        differences.is_empty(),
        "{} differences from tar -x, first: {:#?}",
        differences.len(),
        &differences[..differences.len().min(30)]
    );
    for (path, node) in &expected.nodes {
        if node.kind == NodeKind::Directory {
            continue;
        }
        let off = (node.mtime_ns - actual.nodes[path].mtime_ns).abs();
        assert!(
            off <= 500_000_000,
            "{}: mtime off by {off} ns",
            path.display()
        );
    }
    mount.unmount().unwrap();
}

/// Pushes `reference` to the test registry. `ctr images push` sometimes fails with "unexpected
/// EOF" while other tests push to the same registry, so a failed push is tried twice more.
fn push(containerd: &Containerd, reference: &str) {
    let mut errors = Vec::new();
    for _ in 0..3 {
        match containerd.ctr_ok(["images", "push", "--plain-http", reference]) {
            Ok(_) => return,
            Err(error) => errors.push(format!("{error:#}")),
        }
    }
    panic!("push of {reference} failed three times: {errors:#?}");
}
