//! Directories an upper layer only implies keep the attributes they have in the layers below,
//! as when the layers are applied one after the other (containerd, Docker, `tar -x` in turn).
//! An upper layer holding only `tmp/file` must not turn a lower `tmp/` of mode 1777 into 0755.

mod mount_util;

use std::os::unix::fs::MetadataExt;

use estargz::build::BuildOptions;
use lazypull_testkit::tarbuild::{Builder, Entry};
use lazypull_testkit::tree::{extract_with_gnu_tar, snapshot};
use lazypull_testkit::{Prereq, require_or_skip};
use mount_util::{Mount, path_str, write_estargz_layout};

fn tar(entries: &[Entry]) -> Vec<u8> {
    let mut builder = Builder::new();
    for entry in entries {
        builder.append(entry);
    }
    builder.finish()
}

#[test]
fn implied_directories_keep_lower_attributes() {
    require_or_skip!(
        Prereq::Root,
        Prereq::Fuse,
        Prereq::Overlayfs,
        Prereq::Binary("tar")
    );
    let lower = tar(&[
        Entry::dir("tmp").mode(0o1777).mtime(1_600_000_000),
        Entry::dir("opt").mtime(1_600_000_001),
        Entry::dir("opt/app")
            .mode(0o750)
            .owner(1000, 1000)
            .mtime(1_600_000_002),
        Entry::dir("srv").mode(0o711).mtime(1_600_000_003),
        Entry::dir("srv/old").mode(0o700).mtime(1_600_000_004),
    ]);
    let middle = tar(&[
        // An opaque srv/ in the middle layer hides srv/old below it.
        Entry::dir("srv").mode(0o755).mtime(1_600_000_005),
        Entry::opaque("srv"),
    ]);
    let upper = tar(&[
        Entry::file("tmp/file", "data"),
        Entry::file("opt/app/bin/tool", "tool").mode(0o755),
        Entry::file("srv/old/new-file", "hidden parent"),
        Entry::file("new/dir/file", "fresh"),
    ]);
    let layout = tempfile::tempdir().unwrap();
    write_estargz_layout(
        layout.path(),
        "latest",
        &[lower.clone(), middle.clone(), upper.clone()],
        &BuildOptions::default(),
    )
    .unwrap();

    // The reference: every layer extracted in turn into one directory.
    let applied = tempfile::tempdir().unwrap();
    for (n, layer) in [&lower, &middle, &upper].into_iter().enumerate() {
        let path = layout.path().join(format!("layer-{n}.tar"));
        std::fs::write(&path, layer).unwrap();
        if n == 1 {
            // Apply the opaque marker the way a runtime does: empty the directory first.
            std::fs::remove_dir_all(applied.path().join("srv")).unwrap();
        }
        extract_with_gnu_tar(&path, applied.path(), false).unwrap();
    }
    let expected = snapshot(applied.path()).unwrap();

    let mount = Mount::start(
        &format!("oci:{}:latest", path_str(layout.path())),
        &["--no-disk-cache"],
    )
    .unwrap();
    for path in ["tmp", "opt", "opt/app", "srv"] {
        let want = expected
            .get(path)
            .unwrap_or_else(|| panic!("{path} in the reference"));
        let got = std::fs::symlink_metadata(mount.path().join(path)).unwrap();
        assert_eq!(got.mode() & 0o7777, want.mode, "{path}: mode");
        assert_eq!(
            (got.uid(), got.gid()),
            (want.uid, want.gid),
            "{path}: owner"
        );
    }
    // Applying a layer sets an implied directory's mtime to the time of extraction, which no
    // mount can reproduce; the mount shows the lower layer's mtime.
    for (path, mtime) in [
        ("tmp", 1_600_000_000),
        ("opt/app", 1_600_000_002),
        ("srv", 1_600_000_005),
    ] {
        let got = std::fs::symlink_metadata(mount.path().join(path)).unwrap();
        assert_eq!(
            got.mtime(),
            mtime,
            "{path}: mtime of the nearest lower layer"
        );
    }
    // Below an opaque directory and where no layer has the path, the defaults apply.
    for path in ["srv/old", "opt/app/bin", "new", "new/dir"] {
        let got = std::fs::symlink_metadata(mount.path().join(path)).unwrap();
        assert_eq!(got.mode() & 0o7777, 0o755, "{path}: default mode");
        assert_eq!((got.uid(), got.gid()), (0, 0), "{path}: default owner");
    }
    assert_eq!(
        std::fs::read(mount.path().join("tmp/file")).unwrap(),
        b"data"
    );
    mount.unmount().unwrap();
}
