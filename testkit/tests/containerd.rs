//! The private containerd starts, runs a real container and leaves nothing behind.

use std::path::PathBuf;
use std::time::Instant;

use lazypull_testkit::containerd::{Containerd, ContainerdOptions};
use lazypull_testkit::image::{PYTHON_IMAGE_TAG, python_image};
use lazypull_testkit::mounts::mounts_under;
use lazypull_testkit::registry::Registry;
use lazypull_testkit::{Prereq, require_or_skip};

fn process_exists(pid: u32) -> bool {
    std::path::Path::new(&format!("/proc/{pid}")).exists()
}

/// Returns the pids of containerd shims whose command line names `socket`.
fn shims_for(socket: &std::path::Path) -> Vec<u32> {
    let needle = socket.to_string_lossy().into_owned();
    std::fs::read_dir("/proc")
        .unwrap()
        .flatten()
        .filter_map(|entry| {
            let pid: u32 = entry.file_name().to_str()?.parse().ok()?;
            let cmdline = std::fs::read(entry.path().join("cmdline")).ok()?;
            let text = String::from_utf8_lossy(&cmdline).replace('\0', " ");
            (text.contains("containerd-shim") && text.contains(&needle)).then_some(pid)
        })
        .collect()
}

#[test]
fn containerd_answers_version_and_stops() {
    require_or_skip!(Prereq::Root, Prereq::Binary("containerd"), Prereq::Binary("ctr"));
    let started = Instant::now();
    let containerd = Containerd::start(ContainerdOptions::default()).expect("start containerd");
    eprintln!("containerd ready in {:?}", started.elapsed());

    let version = containerd.ctr_ok(["version"]).expect("ctr version");
    assert!(version.contains("Server:"), "{version}");
    assert!(version.contains("1.6"), "{version}");
    let plugins = containerd.ctr_ok(["plugins", "ls"]).expect("ctr plugins ls");
    assert!(plugins.contains("overlayfs"), "{plugins}");

    let pid = containerd.pid();
    let root = containerd.root_dir();
    drop(containerd);
    assert!(!process_exists(pid), "containerd {pid} still runs");
    assert!(!root.exists(), "{} was not removed", root.display());
}

#[test]
fn two_containerd_instances_run_side_by_side() {
    require_or_skip!(Prereq::Root, Prereq::Binary("containerd"), Prereq::Binary("ctr"));
    let first = Containerd::start(ContainerdOptions::default()).expect("start first");
    let second = Containerd::start(ContainerdOptions::default()).expect("start second");
    assert_ne!(first.socket(), second.socket());
    assert_ne!(first.namespace(), second.namespace());
    first.ctr_ok(["version"]).expect("first answers");
    second.ctr_ok(["version"]).expect("second answers");
}

#[test]
fn proxy_snapshotter_is_registered() {
    require_or_skip!(Prereq::Root, Prereq::Binary("containerd"), Prereq::Binary("ctr"));
    let socket_dir = tempfile::tempdir().unwrap();
    let socket: PathBuf = socket_dir.path().join("snapshotter.sock");
    let containerd =
        Containerd::start(ContainerdOptions::default().proxy_snapshotter("lazypull", &socket))
            .expect("start containerd");
    let plugins = containerd.ctr_ok(["plugins", "ls"]).expect("ctr plugins ls");
    let line = plugins
        .lines()
        .find(|line| line.contains("io.containerd.snapshotter.v1") && line.contains("lazypull"))
        .unwrap_or_else(|| panic!("no lazypull snapshotter in:\n{plugins}"));
    assert!(line.contains("ok"), "{line}");
    let config = std::fs::read_to_string(containerd.config_path()).unwrap();
    assert!(config.contains(&socket.to_string_lossy().into_owned()), "{config}");
}

#[test]
fn python_image_runs_in_private_containerd() {
    require_or_skip!(
        Prereq::Root,
        Prereq::Overlayfs,
        Prereq::Binary("containerd"),
        Prereq::Binary("ctr"),
        Prereq::Binary("runc"),
        Prereq::Binary("docker-registry"),
        Prereq::Binary("skopeo"),
        Prereq::Binary("mmdebstrap"),
        Prereq::Binary("umoci")
    );
    let layout = python_image().expect("python image");
    let registry = Registry::start().expect("start registry");
    let reference = registry
        .push_oci_layout(&layout, PYTHON_IMAGE_TAG, "python:latest")
        .expect("push python image");
    let containerd = Containerd::start(ContainerdOptions::default()).expect("start containerd");

    let pulled_at = Instant::now();
    containerd
        .ctr_ok(["images", "pull", "--plain-http", &reference])
        .expect("pull");
    eprintln!("ctr images pull took {:?}", pulled_at.elapsed());

    let run_at = Instant::now();
    let output = containerd
        .ctr_ok([
            "run",
            "--rm",
            &reference,
            "lazypull-smoke",
            "python3",
            "-c",
            "import sqlite3, json; print(6 * 7, sqlite3.sqlite_version_info[0])",
        ])
        .expect("ctr run");
    eprintln!("ctr run took {:?}", run_at.elapsed());
    assert_eq!(output.trim(), "42 3");

    // A detached task is cleaned up by drop: killed, deleted, shim gone, no mounts.
    containerd
        .ctr_ok(["run", "--detach", &reference, "lazypull-sleeper", "sleep", "600"])
        .expect("start detached task");
    let socket = containerd.socket();
    assert!(!shims_for(&socket).is_empty(), "no shim for the detached task");
    let root = containerd.root_dir();
    let state = containerd.state_dir();
    assert!(!mounts_under(&state).is_empty(), "the task rootfs is not mounted");
    drop(containerd);
    assert!(shims_for(&socket).is_empty(), "shims remain: {:?}", shims_for(&socket));
    assert!(mounts_under(&root).is_empty());
    assert!(mounts_under(&state).is_empty());
}
