//! Link-escape layers must change nothing outside the mount and state directories when mounted
//! and read, and must show the later entry. The cases are a symlink or hard link out of the
//! layer replaced by a regular file, and a `..` symlink used as a parent.

mod mount_util;

use std::path::Path;

use estargz::build::BuildOptions;
use lazypull_testkit::tarbuild::recipes;
use lazypull_testkit::tree::{Tree, snapshot};
use lazypull_testkit::{Prereq, require_or_skip};
use mount_util::{Mount, path_str, write_estargz_layout};
use sha2::{Digest, Sha256};

fn digest_file(path: &Path) -> String {
    hex::encode(Sha256::digest(std::fs::read(path).unwrap()))
}

/// Snapshots a directory and drops the entries a test itself creates (its mount point).
fn watched(dir: &Path, ignore: &Path) -> Tree {
    let mut tree = snapshot(dir).unwrap();
    let relative = ignore.strip_prefix(dir).unwrap().to_path_buf();
    tree.nodes.retain(|path, _| !path.starts_with(&relative));
    tree
}

#[test]
fn link_escape_layers_change_nothing_outside() {
    require_or_skip!(
        Prereq::Root,
        Prereq::Fuse,
        Prereq::Overlayfs,
        Prereq::Binary("fusermount3")
    );
    let canary = tempfile::Builder::new()
        .prefix("lazypull-canary-")
        .tempdir()
        .unwrap();
    std::fs::write(canary.path().join("keep"), b"canary\n").unwrap();
    let outside = canary.path().join("escape-target");
    let passwd_before = digest_file(Path::new("/etc/passwd"));

    for (name, tar) in recipes::link_escape_cases(path_str(&outside)) {
        // The mount point's parent is where a `..` link from the layer root leads.
        let parent = tempfile::Builder::new()
            .prefix("lazypull-parent-")
            .tempdir()
            .unwrap();
        let layout = tempfile::Builder::new()
            .prefix("lazypull-layout-")
            .tempdir()
            .unwrap();
        write_estargz_layout(layout.path(), "latest", &[tar], &BuildOptions::default()).unwrap();
        let canary_before = snapshot(canary.path()).unwrap();

        let image = format!("oci:{}:latest", path_str(layout.path()));
        let mount = Mount::start_in(parent.path(), &image, &["--no-disk-cache"])
            .unwrap_or_else(|e| panic!("{name}: {e:#}"));
        let parent_before = watched(parent.path(), mount.path());
        // Read every file of the mount (snapshot hashes contents and never follows symlinks).
        let contents = snapshot(mount.path()).unwrap();

        match name {
            "symlink_then_file" => {
                assert_eq!(
                    std::fs::read(mount.path().join("evil")).unwrap(),
                    b"pwned\n",
                    "{name}"
                );
                assert!(
                    !std::fs::symlink_metadata(mount.path().join("evil"))
                        .unwrap()
                        .file_type()
                        .is_symlink()
                );
            }
            "hardlink_then_file" => {
                assert_eq!(
                    std::fs::read(mount.path().join("h")).unwrap(),
                    b"pwned\n",
                    "{name}"
                );
            }
            "dotdot_dir" => {
                // The converter drops entries below a symlink; the link itself is served verbatim.
                assert_eq!(
                    std::fs::read_link(mount.path().join("up")).unwrap(),
                    Path::new(".."),
                    "{name}"
                );
                assert!(
                    contents
                        .paths()
                        .iter()
                        .all(|p| p == Path::new("up") || !p.starts_with("up")),
                    "{name}: {:?}",
                    contents.paths()
                );
            }
            _ => {}
        }
        mount.unmount().unwrap();

        assert_eq!(
            canary_before.diff(&snapshot(canary.path()).unwrap()),
            Vec::<String>::new(),
            "{name}: canary changed"
        );
        assert!(
            !outside.exists(),
            "{name}: {} was created",
            outside.display()
        );
        let parent_after = watched(parent.path(), mount.path());
        assert_eq!(
            parent_before.diff(&parent_after),
            Vec::<String>::new(),
            "{name}: mount point's parent changed"
        );
        assert_eq!(
            digest_file(Path::new("/etc/passwd")),
            passwd_before,
            "{name}: /etc/passwd changed"
        );
    }
}
