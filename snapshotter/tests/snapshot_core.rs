//! The overlayfs snapshotter core without gRPC: containerd's snapshotter semantics, the
//! persisted metadata, and (as root) the returned mounts assembled with the kernel.

use std::path::Path;

use lazypull_snapshotter::snapshot::{
    ErrorCode, Filters, Info, Kind, Labels, Mount, OverlaySnapshotter, SnapshotError, UsagePolicy,
};
use lazypull_testkit::{Prereq, require_or_skip};

fn labels(pairs: &[(&str, &str)]) -> Labels {
    pairs
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect()
}

fn open() -> (tempfile::TempDir, OverlaySnapshotter) {
    let root = tempfile::tempdir().unwrap();
    let core = OverlaySnapshotter::open(root.path()).unwrap();
    (root, core)
}

/// Prepares `key` on `parent`, writes `files` into its upper directory, and commits it as
/// `name`.
fn committed(core: &OverlaySnapshotter, name: &str, parent: Option<&str>, files: &[(&str, &[u8])]) {
    let key = format!("{name}-extract");
    core.prepare(&key, parent, Labels::new()).unwrap();
    let chain = core.chain(&key).unwrap();
    let fs = core.fs_dir(chain[0].id);
    for (path, content) in files {
        let path = fs.join(path);
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        std::fs::write(path, content).unwrap();
    }
    core.commit(name, &key, Labels::new(), UsagePolicy::Measure)
        .unwrap();
}

fn option<'a>(mount: &'a Mount, name: &str) -> Option<&'a str> {
    mount
        .options
        .iter()
        .find_map(|option| option.strip_prefix(&format!("{name}=")))
}

fn code(result: Result<impl std::fmt::Debug, SnapshotError>) -> ErrorCode {
    result.unwrap_err().code()
}

#[test]
fn base_snapshot_is_a_writable_bind_mount() {
    let (_root, core) = open();
    let mounts = core.prepare("base", None, Labels::new()).unwrap();
    assert_eq!(mounts.len(), 1);
    assert_eq!(mounts[0].kind, "bind");
    assert_eq!(mounts[0].options, ["rw", "rbind"]);
    let id = core.chain("base").unwrap()[0].id;
    assert_eq!(Path::new(&mounts[0].source), core.fs_dir(id));
    assert!(core.fs_dir(id).is_dir());
    assert!(core.snapshot_dir(id).join("work").is_dir());
}

#[test]
fn active_on_a_chain_is_overlay_with_nearest_parent_first() {
    let (_root, core) = open();
    committed(&core, "l1", None, &[]);
    committed(&core, "l2", Some("l1"), &[]);
    committed(&core, "l3", Some("l2"), &[]);
    let mounts = core
        .prepare("container", Some("l3"), Labels::new())
        .unwrap();
    assert_eq!(mounts.len(), 1);
    let mount = &mounts[0];
    assert_eq!(mount.kind, "overlay");
    assert_eq!(mount.source, "overlay");

    let ids: Vec<u64> = core
        .chain("container")
        .unwrap()
        .iter()
        .map(|link| link.id)
        .collect();
    let lowers: Vec<String> = ids[1..]
        .iter()
        .map(|id| core.fs_dir(*id).display().to_string())
        .collect();
    assert_eq!(option(mount, "lowerdir"), Some(lowers.join(":").as_str()));
    assert_eq!(
        option(mount, "upperdir"),
        Some(core.fs_dir(ids[0]).display().to_string().as_str())
    );
    assert_eq!(
        option(mount, "workdir"),
        Some(
            core.snapshot_dir(ids[0])
                .join("work")
                .display()
                .to_string()
                .as_str()
        )
    );
}

#[test]
fn views_are_read_only() {
    let (_root, core) = open();
    committed(&core, "l1", None, &[]);
    committed(&core, "l2", Some("l1"), &[]);

    let alone = core.view("v0", None, Labels::new()).unwrap();
    assert_eq!(alone[0].kind, "bind");
    assert_eq!(alone[0].options, ["ro", "rbind"]);

    let one = core.view("v1", Some("l1"), Labels::new()).unwrap();
    let l1 = core.chain("l1").unwrap()[0].id;
    assert_eq!(one[0].kind, "bind");
    assert_eq!(one[0].options, ["ro", "rbind"]);
    assert_eq!(Path::new(&one[0].source), core.fs_dir(l1));

    let two = core.view("v2", Some("l2"), Labels::new()).unwrap();
    assert_eq!(two[0].kind, "overlay");
    assert!(option(&two[0], "upperdir").is_none());
    assert!(option(&two[0], "workdir").is_none());
    assert_eq!(option(&two[0], "lowerdir").unwrap().split(':').count(), 2);
    assert_eq!(core.stat("v2").unwrap().kind, Kind::View);
}

#[test]
fn commit_turns_active_into_committed() {
    let (_root, core) = open();
    core.prepare("k", None, labels(&[("a", "1")])).unwrap();
    let id = core.chain("k").unwrap()[0].id;
    core.commit("name", "k", labels(&[("b", "2")]), UsagePolicy::Measure)
        .unwrap();

    assert_eq!(code(core.stat("k")), ErrorCode::NotFound);
    let info = core.stat("name").unwrap();
    assert_eq!(info.kind, Kind::Committed);
    assert_eq!(info.labels, labels(&[("b", "2")]));
    assert_eq!(
        core.chain("name").unwrap()[0].id,
        id,
        "commit keeps the directory"
    );
}

#[test]
fn only_active_snapshots_commit() {
    let (_root, core) = open();
    committed(&core, "base", None, &[]);
    core.view("view", Some("base"), Labels::new()).unwrap();
    core.prepare("active", Some("base"), Labels::new()).unwrap();

    assert_eq!(
        code(core.commit("x", "view", Labels::new(), UsagePolicy::Measure)),
        ErrorCode::FailedPrecondition
    );
    assert_eq!(
        code(core.commit("x", "base", Labels::new(), UsagePolicy::Measure)),
        ErrorCode::FailedPrecondition
    );
    assert_eq!(
        code(core.commit("base", "active", Labels::new(), UsagePolicy::Measure)),
        ErrorCode::AlreadyExists
    );
    assert_eq!(
        code(core.commit("x", "missing", Labels::new(), UsagePolicy::Measure)),
        ErrorCode::NotFound
    );
    assert_eq!(
        code(core.commit("", "active", Labels::new(), UsagePolicy::Measure)),
        ErrorCode::InvalidArgument
    );
}

#[test]
fn prepare_checks_key_and_parent() {
    let (_root, core) = open();
    core.prepare("active", None, Labels::new()).unwrap();
    assert_eq!(
        code(core.prepare("active", None, Labels::new())),
        ErrorCode::AlreadyExists
    );
    assert_eq!(
        code(core.prepare("k", Some("missing"), Labels::new())),
        ErrorCode::NotFound
    );
    assert_eq!(
        code(core.prepare("k", Some("active"), Labels::new())),
        ErrorCode::InvalidArgument
    );
    assert_eq!(
        code(core.prepare("", None, Labels::new())),
        ErrorCode::InvalidArgument
    );
    assert_eq!(
        code(core.view("v", Some("active"), Labels::new())),
        ErrorCode::InvalidArgument
    );
}

#[test]
fn remove_with_children_is_rejected() {
    let (_root, core) = open();
    committed(&core, "base", None, &[("f", b"x")]);
    core.prepare("child", Some("base"), Labels::new()).unwrap();
    let base_dir = core.snapshot_dir(core.chain("base").unwrap()[0].id);

    let error = core.remove("base").unwrap_err();
    assert_eq!(error.code(), ErrorCode::FailedPrecondition);
    assert!(
        matches!(error, SnapshotError::HasChildren { children: 1, .. }),
        "{error}"
    );
    assert!(base_dir.is_dir());

    core.remove("child").unwrap();
    core.remove("base").unwrap();
    assert!(!base_dir.exists());
    assert_eq!(code(core.remove("base")), ErrorCode::NotFound);
}

#[test]
fn update_changes_labels_only() {
    let (_root, core) = open();
    core.prepare("k", None, labels(&[("keep", "1"), ("drop", "2")]))
        .unwrap();
    let mut info = core.stat("k").unwrap();

    info.labels = labels(&[("new", "3")]);
    let updated = core
        .update(&info, &["labels.new".into(), "labels.drop".into()])
        .unwrap();
    assert_eq!(updated.labels, labels(&[("keep", "1"), ("new", "3")]));
    assert!(updated.updated >= updated.created);

    let replaced = core.update(&info, &[]).unwrap();
    assert_eq!(replaced.labels, labels(&[("new", "3")]));

    let error = core.update(&info, &["parent".into()]).unwrap_err();
    assert_eq!(error.code(), ErrorCode::InvalidArgument);
    assert_eq!(core.stat("k").unwrap().labels, labels(&[("new", "3")]));

    let missing = Info {
        name: "missing".into(),
        ..info
    };
    assert_eq!(code(core.update(&missing, &[])), ErrorCode::NotFound);
}

#[test]
fn usage_counts_the_upper_directory() {
    let (_root, core) = open();
    core.prepare("k", None, Labels::new()).unwrap();
    let fs = core.fs_dir(core.chain("k").unwrap()[0].id);
    assert_eq!(core.usage("k").unwrap().inodes, 1);
    std::fs::write(fs.join("big"), vec![7u8; 1 << 20]).unwrap();
    std::fs::write(fs.join("small"), b"x").unwrap();

    let active = core.usage("k").unwrap();
    assert_eq!(active.inodes, 3);
    assert!(active.size >= 1 << 20, "size {}", active.size);

    core.commit("c", "k", Labels::new(), UsagePolicy::Measure)
        .unwrap();
    assert_eq!(core.usage("c").unwrap(), active);
}

#[test]
fn commit_without_measuring_reports_zero_usage() {
    let (_root, core) = open();
    core.prepare("k", None, Labels::new()).unwrap();
    let fs = core.fs_dir(core.chain("k").unwrap()[0].id);
    std::fs::write(fs.join("big"), vec![7u8; 1 << 20]).unwrap();
    core.commit("c", "k", Labels::new(), UsagePolicy::Skip)
        .unwrap();
    assert_eq!(core.usage("c").unwrap().size, 0);
}

#[test]
fn walk_applies_filters() {
    let (_root, core) = open();
    committed(&core, "sha256:c1", None, &[]);
    core.prepare(
        "k1",
        Some("sha256:c1"),
        labels(&[("containerd.io/snapshot.ref", "sha256:c2")]),
    )
    .unwrap();
    core.view("v1", Some("sha256:c1"), labels(&[("team", "a")]))
        .unwrap();

    let names = |filters: &[&str]| -> Vec<String> {
        core.walk(&Filters::parse(filters).unwrap())
            .into_iter()
            .map(|info| info.name)
            .collect()
    };
    assert_eq!(names(&[]), ["k1", "sha256:c1", "v1"]);
    assert_eq!(names(&["kind==committed"]), ["sha256:c1"]);
    assert_eq!(names(&["parent==sha256:c1"]), ["k1", "v1"]);
    assert_eq!(
        names(&[r#"labels."containerd.io/snapshot.ref"==sha256:c2,parent==sha256:c1"#]),
        ["k1"]
    );
    assert_eq!(
        names(&["labels.team==a", "kind==committed"]),
        ["sha256:c1", "v1"]
    );
    assert_eq!(names(&["name~=^k"]), ["k1"]);
    assert!(names(&["kind==active,labels.team"]).is_empty());
}

#[test]
fn snapshots_survive_reopen() {
    let root = tempfile::tempdir().unwrap();
    {
        let core = OverlaySnapshotter::open(root.path()).unwrap();
        committed(&core, "base", None, &[("etc/hostname", b"box\n")]);
        core.prepare("active", Some("base"), labels(&[("x", "y")]))
            .unwrap();
        core.view("view", Some("base"), Labels::new()).unwrap();
    }
    let core = OverlaySnapshotter::open(root.path()).unwrap();
    let base = core.stat("base").unwrap();
    assert_eq!(base.kind, Kind::Committed);
    let active = core.stat("active").unwrap();
    assert_eq!(active.parent.as_deref(), Some("base"));
    assert_eq!(active.labels, labels(&[("x", "y")]));
    assert_eq!(core.stat("view").unwrap().kind, Kind::View);

    let base_fs = core.fs_dir(core.chain("base").unwrap()[0].id);
    assert_eq!(
        std::fs::read(base_fs.join("etc/hostname")).unwrap(),
        b"box\n"
    );
    assert_eq!(core.mounts("active").unwrap()[0].kind, "overlay");

    // A new snapshot never reuses a directory number.
    core.prepare("later", None, Labels::new()).unwrap();
    let ids: Vec<u64> = ["base", "active", "view", "later"]
        .iter()
        .map(|k| core.chain(k).unwrap()[0].id)
        .collect();
    let mut unique = ids.clone();
    unique.dedup();
    assert_eq!(unique.len(), ids.len(), "ids {ids:?}");
}

#[test]
fn cleanup_deletes_unused_directories_only() {
    let (root, core) = open();
    committed(&core, "base", None, &[("f", b"x")]);
    let stray = root.path().join("snapshots/999");
    std::fs::create_dir_all(stray.join("fs")).unwrap();
    let half_made = root.path().join("snapshots/new-5");
    std::fs::create_dir_all(&half_made).unwrap();

    let deleted = core.cleanup().unwrap();
    assert_eq!(deleted.len(), 2, "{deleted:?}");
    assert!(!stray.exists());
    assert!(!half_made.exists());
    let base_fs = core.fs_dir(core.chain("base").unwrap()[0].id);
    assert_eq!(std::fs::read(base_fs.join("f")).unwrap(), b"x");
}

/// Mounts what the snapshotter returned the way a runtime would.
fn mount_all(mounts: &[Mount], target: &Path) {
    for mount in mounts {
        let mut flags = nix::mount::MsFlags::empty();
        let mut data = Vec::new();
        for option in &mount.options {
            match option.as_str() {
                "rbind" => flags |= nix::mount::MsFlags::MS_BIND | nix::mount::MsFlags::MS_REC,
                "ro" => flags |= nix::mount::MsFlags::MS_RDONLY,
                "rw" => {}
                other => data.push(other.to_owned()),
            }
        }
        let data = data.join(",");
        let fstype = if mount.kind == "bind" {
            None
        } else {
            Some(mount.kind.as_str())
        };
        nix::mount::mount(
            Some(mount.source.as_str()),
            target,
            fstype,
            flags,
            Some(data.as_str()),
        )
        .unwrap_or_else(|error| panic!("mount {mount:?} on {}: {error}", target.display()));
        // The kernel ignores MS_RDONLY on the first bind; a read-only bind takes a remount.
        if fstype.is_none() && flags.contains(nix::mount::MsFlags::MS_RDONLY) {
            let remount = flags | nix::mount::MsFlags::MS_REMOUNT;
            nix::mount::mount(None::<&str>, target, None::<&str>, remount, None::<&str>).unwrap();
        }
    }
}

#[test]
fn overlay_mounts_assemble_the_layers() {
    require_or_skip!(Prereq::Root, Prereq::Overlayfs);
    let (root, core) = open();
    committed(&core, "l1", None, &[("a", b"from l1"), ("b", b"from l1")]);
    committed(&core, "l2", Some("l1"), &[("b", b"from l2")]);
    let mounts = core
        .prepare("container", Some("l2"), Labels::new())
        .unwrap();

    let target = root.path().join("rootfs");
    std::fs::create_dir(&target).unwrap();
    mount_all(&mounts, &target);
    let read = |name: &str| std::fs::read_to_string(target.join(name));
    let a = read("a");
    let b = read("b");
    let written = std::fs::write(target.join("c"), b"new");
    nix::mount::umount(&target).unwrap();

    assert_eq!(a.unwrap(), "from l1");
    assert_eq!(b.unwrap(), "from l2");
    written.unwrap();
    let upper = core.fs_dir(core.chain("container").unwrap()[0].id);
    assert_eq!(std::fs::read(upper.join("c")).unwrap(), b"new");
}

#[test]
fn view_mount_cannot_be_written() {
    require_or_skip!(Prereq::Root);
    let (root, core) = open();
    committed(&core, "l1", None, &[("a", b"x")]);
    let mounts = core.view("v", Some("l1"), Labels::new()).unwrap();
    let target = root.path().join("rootfs");
    std::fs::create_dir(&target).unwrap();
    mount_all(&mounts, &target);
    let content = std::fs::read(target.join("a"));
    let write = std::fs::write(target.join("new"), b"y");
    nix::mount::umount(&target).unwrap();

    assert_eq!(content.unwrap(), b"x");
    let error = write.unwrap_err();
    assert_eq!(error.raw_os_error(), Some(libc::EROFS), "{error}");
}
