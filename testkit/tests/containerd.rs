//! The private containerd starts, runs a real container and leaves nothing behind.

use std::path::PathBuf;
use std::time::Instant;

use lazypull_testkit::containerd::{Containerd, ContainerdOptions};
use lazypull_testkit::gochecker::go_check;
use lazypull_testkit::image::{PYTHON_IMAGE_TAG, python_image, write_oci_layout};
use lazypull_testkit::mounts::mounts_under;
use lazypull_testkit::registry::Registry;
use lazypull_testkit::tarbuild::recipes;
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
    require_or_skip!(
        Prereq::Root,
        Prereq::Binary("containerd"),
        Prereq::Binary("ctr")
    );
    let started = Instant::now();
    let containerd = Containerd::start(ContainerdOptions::default()).expect("start containerd");
    eprintln!("containerd ready in {:?}", started.elapsed());

    let version = containerd.ctr_ok(["version"]).expect("ctr version");
    assert!(version.contains("Server:"), "{version}");
    assert!(version.contains("1.6"), "{version}");
    let plugins = containerd
        .ctr_ok(["plugins", "ls"])
        .expect("ctr plugins ls");
    assert!(plugins.contains("overlayfs"), "{plugins}");

    let pid = containerd.pid();
    let root = containerd.root_dir();
    drop(containerd);
    assert!(!process_exists(pid), "containerd {pid} still runs");
    assert!(!root.exists(), "{} was not removed", root.display());
}

#[test]
fn two_containerd_instances_run_side_by_side() {
    require_or_skip!(
        Prereq::Root,
        Prereq::Binary("containerd"),
        Prereq::Binary("ctr")
    );
    let first = Containerd::start(ContainerdOptions::default()).expect("start first");
    let second = Containerd::start(ContainerdOptions::default()).expect("start second");
    assert_ne!(first.socket(), second.socket());
    assert_ne!(first.namespace(), second.namespace());
    first.ctr_ok(["version"]).expect("first answers");
    second.ctr_ok(["version"]).expect("second answers");
}

#[test]
fn proxy_snapshotter_is_registered() {
    require_or_skip!(
        Prereq::Root,
        Prereq::Binary("containerd"),
        Prereq::Binary("ctr")
    );
    let socket_dir = tempfile::tempdir().unwrap();
    let socket: PathBuf = socket_dir.path().join("snapshotter.sock");
    let containerd =
        Containerd::start(ContainerdOptions::default().proxy_snapshotter("lazypull", &socket))
            .expect("start containerd");
    let plugins = containerd
        .ctr_ok(["plugins", "ls"])
        .expect("ctr plugins ls");
    let line = plugins
        .lines()
        .find(|line| line.contains("io.containerd.snapshotter.v1") && line.contains("lazypull"))
        .unwrap_or_else(|| panic!("no lazypull snapshotter in:\n{plugins}"));
    assert!(line.contains("ok"), "{line}");
    let config = std::fs::read_to_string(containerd.config_path()).unwrap();
    assert!(
        config.contains(&socket.to_string_lossy().into_owned()),
        "{config}"
    );
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
    let pushed_at = Instant::now();
    let reference = registry
        .push_oci_layout(&layout, PYTHON_IMAGE_TAG, "python:latest")
        .expect("push python image");
    eprintln!("skopeo push took {:?}", pushed_at.elapsed());
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

    // A second instance runs a container with the same id at the same time: shim sockets
    // and runc state are keyed by socket address and namespace, so they must not clash.
    let second = Containerd::start(ContainerdOptions::default()).expect("start second containerd");
    second
        .ctr_ok(["images", "pull", "--plain-http", &reference])
        .expect("pull into the second instance");
    for instance in [&containerd, &second] {
        instance
            .ctr_ok([
                "run",
                "--detach",
                &reference,
                "lazypull-sleeper",
                "sleep",
                "600",
            ])
            .expect("start detached task");
    }
    for instance in [&containerd, &second] {
        let tasks = instance.ctr_ok(["tasks", "ls"]).expect("list tasks");
        let line = tasks
            .lines()
            .find(|line| line.starts_with("lazypull-sleeper"))
            .unwrap_or_else(|| panic!("no sleeper task in:\n{tasks}"));
        assert!(line.contains("RUNNING"), "{line}");
        // scripts/test.sh finds leaked container processes by this cgroup path.
        let pid = line.split_whitespace().nth(1).unwrap();
        let cgroup = std::fs::read_to_string(format!("/proc/{pid}/cgroup")).unwrap();
        let expected = format!("/{}/lazypull-sleeper", instance.namespace());
        assert!(cgroup.contains(&expected), "{cgroup}");
    }

    // Drop cleans up a running task: killed, deleted, shim gone, no mounts.
    let socket = containerd.socket();
    assert!(
        !shims_for(&socket).is_empty(),
        "no shim for the detached task"
    );
    let root = containerd.root_dir();
    let state = containerd.state_dir();
    assert!(
        !mounts_under(&state).is_empty(),
        "the task rootfs is not mounted"
    );
    let second_socket = second.socket();
    drop(second);
    assert!(
        shims_for(&second_socket).is_empty(),
        "shims of the second instance remain"
    );
    assert!(
        !shims_for(&socket).is_empty(),
        "dropping the second instance stopped the first one's shim"
    );
    let dropped_at = Instant::now();
    drop(containerd);
    eprintln!("containerd cleanup took {:?}", dropped_at.elapsed());
    assert!(
        shims_for(&socket).is_empty(),
        "shims remain: {:?}",
        shims_for(&socket)
    );
    assert!(mounts_under(&root).is_empty());
    assert!(mounts_under(&state).is_empty());
}

#[test]
fn ctr_remote_converts_image_that_go_checker_verifies() {
    require_or_skip!(
        Prereq::Root,
        Prereq::Binary("containerd"),
        Prereq::Binary("ctr"),
        Prereq::Binary("ctr-remote"),
        Prereq::Binary("docker-registry"),
        Prereq::Binary("skopeo"),
        Prereq::Binary("go")
    );
    let layout = tempfile::tempdir().unwrap();
    write_oci_layout(
        layout.path(),
        "v1",
        &[recipes::symlinks(), recipes::xattrs_pax()],
        &["/bin/sh"],
    )
    .expect("write layout");
    let registry = Registry::start().expect("start registry");
    let source = registry
        .push_oci_layout(layout.path(), "v1", "tiny:v1")
        .expect("push");
    let containerd = Containerd::start(ContainerdOptions::default()).expect("start containerd");
    containerd
        .ctr_ok(["images", "pull", "--plain-http", &source])
        .expect("pull");

    let converted = format!("{}/tiny:esgz", registry.host());
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

    let images = containerd.ctr_ok(["images", "ls"]).expect("list images");
    let manifest_digest = images
        .lines()
        .find(|line| line.starts_with(&converted))
        .and_then(|line| line.split_whitespace().nth(2))
        .unwrap_or_else(|| panic!("{converted} missing in:\n{images}"))
        .to_string();
    let manifest: serde_json::Value = serde_json::from_str(
        &containerd
            .ctr_ok(["content", "get", &manifest_digest])
            .expect("get manifest"),
    )
    .unwrap();
    let layers = manifest["layers"].as_array().unwrap();
    assert_eq!(layers.len(), 2);

    let blobs = tempfile::tempdir().unwrap();
    for (index, layer) in layers.iter().enumerate() {
        let digest = layer["digest"].as_str().unwrap();
        let toc_digest = layer["annotations"]["containerd.io/snapshot/stargz/toc.digest"]
            .as_str()
            .unwrap_or_else(|| panic!("layer {index} has no TOC digest: {layer}"));
        let blob = containerd.ctr(["content", "get", digest]);
        assert!(blob.status.success());
        let path = blobs.path().join(format!("layer-{index}"));
        std::fs::write(&path, &blob.stdout).unwrap();
        let entries = go_check(&path, toc_digest).expect("upstream reader accepts the blob");
        let names: Vec<&str> = entries.iter().map(|entry| entry.clean_name()).collect();
        let expected = if index == 0 {
            "usr/lib/deep"
        } else {
            "usr/bin/ping"
        };
        assert!(names.contains(&expected), "layer {index}: {names:?}");
    }
}
