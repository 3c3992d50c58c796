//! `lazypull serve` as containerd's proxy snapshotter: snapshot commands through `ctr`, lazy
//! pulls with `ctr-remote image rpull`, the fallback for images that are not eStargz, and
//! freeing a layer's cache when its image goes.
//!
//! Everything is real: containerd 1.6 with runc, Debian's docker-registry on 127.0.0.1, the
//! python test image converted by `lazypull convert`, and the daemon binary.

mod serve_util;

use std::path::Path;
use std::time::{Duration, Instant};

use lazypull_testkit::Prereq;
use lazypull_testkit::prereq::require_all;
use serve_util::{PYTHON_WORKLOAD, Stack, converted_python, layout_layers, tail, wait_until};

/// Checks root, FUSE, overlayfs and the programs. A missing one skips the test, or fails it
/// under CI.
fn prerequisites(with_ctr_remote: bool) -> bool {
    let mut needed = vec![
        Prereq::Root,
        Prereq::Fuse,
        Prereq::Overlayfs,
        Prereq::Binary("containerd"),
        Prereq::Binary("ctr"),
        Prereq::Binary("runc"),
        Prereq::Binary("docker-registry"),
        Prereq::Binary("skopeo"),
    ];
    if with_ctr_remote {
        needed.push(Prereq::Binary("ctr-remote"));
    }
    require_all(&needed)
}

/// Returns the source directory of a `mount -t bind SRC ...` or the `upperdir=` of an overlay,
/// from `ctr snapshots mounts` output.
fn upper_dir(mount_command: &str) -> String {
    if let Some(upper) = mount_command
        .split([',', ' '])
        .find_map(|part| part.strip_prefix("upperdir="))
    {
        return upper.to_owned();
    }
    let words: Vec<&str> = mount_command.split_whitespace().collect();
    let at = words
        .iter()
        .position(|word| *word == "bind")
        .expect("a bind mount")
        + 1;
    words[at].to_owned()
}

fn events_with_message<'a>(
    events: &'a [serde_json::Value],
    message: &str,
) -> Vec<&'a serde_json::Value> {
    events
        .iter()
        .filter(|event| event["message"] == message)
        .collect()
}

#[test]
fn ctr_snapshot_commands_reach_the_daemon() {
    if !prerequisites(false) {
        return;
    }
    let stack = Stack::start("").unwrap();

    stack.snapshots(&["prepare", "base"]);
    let base_mounts = stack.snapshots(&["mounts", "/mnt", "base"]);
    assert!(base_mounts.contains("-t bind"), "{base_mounts}");
    assert!(base_mounts.contains("-o rw,rbind"), "{base_mounts}");
    let base_dir = upper_dir(&base_mounts);
    assert!(
        base_dir.starts_with(&stack.serve.root().display().to_string()),
        "{base_dir}"
    );
    std::fs::write(Path::new(&base_dir).join("hello"), b"from base").unwrap();
    stack.snapshots(&["commit", "base-c", "base"]);

    stack.snapshots(&["prepare", "child", "base-c"]);
    let child_mounts = stack.snapshots(&["mounts", "/mnt", "child"]);
    assert!(child_mounts.contains("-t overlay"), "{child_mounts}");
    assert!(
        child_mounts.contains(&format!("lowerdir={base_dir}")),
        "{child_mounts}"
    );
    assert!(child_mounts.contains("workdir="), "{child_mounts}");
    std::fs::write(
        Path::new(&upper_dir(&child_mounts)).join("big"),
        vec![1u8; 1 << 20],
    )
    .unwrap();

    stack.snapshots(&["view", "view-1", "base-c"]);
    let view_mounts = stack.snapshots(&["mounts", "/mnt", "view-1"]);
    assert!(
        view_mounts.contains(&format!("-t bind {base_dir} /mnt -o ro,rbind")),
        "{view_mounts}"
    );

    let listing = stack.snapshots(&["ls"]);
    let rows: Vec<Vec<&str>> = listing
        .lines()
        .skip(1)
        .map(|line| line.split_whitespace().collect())
        .collect();
    assert!(rows.contains(&vec!["base-c", "Committed"]), "{listing}");
    assert!(
        rows.contains(&vec!["child", "base-c", "Active"]),
        "{listing}"
    );
    assert!(
        rows.contains(&vec!["view-1", "base-c", "View"]),
        "{listing}"
    );

    let info: serde_json::Value =
        serde_json::from_str(&stack.snapshots(&["info", "child"])).unwrap();
    assert_eq!(info["Kind"], "Active");
    assert_eq!(info["Parent"], "base-c");

    let usage = stack.snapshots(&["usage", "child"]);
    let row: Vec<&str> = usage.lines().nth(1).unwrap().split_whitespace().collect();
    assert_eq!(row[0], "child", "{usage}");
    assert!(row[1].parse::<f64>().unwrap() >= 1.0, "{usage}");
    assert_eq!(row[2], "MiB", "{usage}");
    assert_eq!(row[3], "2", "{usage}");

    // containerd keeps its own labels and passes `containerd.io/snapshot/` ones to the backend.
    stack.snapshots(&["label", "child", "containerd.io/snapshot/team=storage"]);
    let metadata = std::fs::read_to_string(stack.serve.root().join("metadata.log")).unwrap();
    assert!(
        metadata.contains("containerd.io/snapshot/team"),
        "{metadata}"
    );

    let commit_view = stack.containerd.ctr([
        "snapshots",
        "--snapshotter",
        "lazypull",
        "commit",
        "view-c",
        "view-1",
    ]);
    assert!(!commit_view.status.success(), "committing a view succeeded");
    let remove_parent =
        stack
            .containerd
            .ctr(["snapshots", "--snapshotter", "lazypull", "rm", "base-c"]);
    assert!(
        !remove_parent.status.success(),
        "removing a parent succeeded"
    );
    let stderr = String::from_utf8_lossy(&remove_parent.stderr);
    assert!(stderr.contains("failed precondition"), "{stderr}");

    stack.snapshots(&["rm", "child", "view-1"]);
    stack.snapshots(&["rm", "base-c"]);
    // containerd removes backend snapshots in its garbage collection, children first.
    let snapshots_dir = stack.serve.root().join("snapshots");
    let emptied = wait_until(Duration::from_secs(20), || {
        std::fs::read_dir(&snapshots_dir).unwrap().count() == 0
    });
    assert!(
        emptied,
        "snapshot directories remain: {:?}",
        std::fs::read_dir(&snapshots_dir)
            .unwrap()
            .collect::<Vec<_>>()
    );
    let events = stack.serve.log_events();
    assert_eq!(
        events_with_message(&events, "removed snapshot").len(),
        3,
        "{}",
        tail(&stack.serve.log(), 30)
    );
}

#[test]
fn rpull_mounts_lazily_and_python_runs() {
    if !prerequisites(true) {
        return;
    }
    let layout = converted_python();
    // Background fetch off, so the bytes served are what the pull and the workload needed.
    let stack = Stack::start("[prefetch]\nbackground = false\n").unwrap();
    let reference = stack
        .registry
        .push_oci_layout(layout, "latest", "python-esgz:latest")
        .unwrap();

    let pull = stack.rpull(&reference);
    let layers = layout_layers(layout, "latest");
    assert_eq!(layers.len(), 2);
    let events = stack.serve.log_events();
    let prepared = events_with_message(&events, "prepared remote snapshot");
    assert_eq!(
        prepared.len(),
        layers.len(),
        "{}",
        tail(&stack.serve.log(), 40)
    );
    // The first Prepare names the second layer in its layers label, so it opens ahead.
    let ahead = events_with_message(&events, "using the layer opened ahead");
    assert_eq!(ahead.len(), 1, "{}", tail(&stack.serve.log(), 40));
    let mut pulled_bytes = Vec::new();
    for (digest, size, toc) in &layers {
        assert!(toc.is_some(), "layer {digest} has no TOC digest annotation");
        let served = stack.registry.blob_bytes_served(digest);
        pulled_bytes.push(served);
        assert!(
            served < size / 4,
            "layer {digest}: {served} of {size} bytes served during rpull"
        );
    }

    let started = Instant::now();
    let output = stack.run(&reference, "t1", &PYTHON_WORKLOAD);
    let run = started.elapsed();
    assert_eq!(output.trim(), "42");
    let mut served_total = 0;
    let mut size_total = 0;
    for ((digest, size, _), before) in layers.iter().zip(&pulled_bytes) {
        let served = stack.registry.blob_bytes_served(digest);
        eprintln!(
            "layer {digest}: {size} bytes, {before} served by rpull, {served} after the workload"
        );
        // Read-ahead after each miss may bring most of a small layer, never all of it here.
        assert!(
            served < size * 9 / 10,
            "layer {digest}: {served} of {size} bytes served after the workload"
        );
        served_total += served;
        size_total += size;
    }
    assert!(
        served_total < size_total / 3,
        "{served_total} of {size_total} image bytes served after the workload"
    );
    eprintln!(
        "rpull took {:.2} s, the first run {:.2} s",
        pull.as_secs_f64(),
        run.as_secs_f64()
    );

    let metrics = stack.serve.metrics().unwrap();
    assert!(
        metrics.contains(
            r#"lazypull_snapshot_operations_total{operation="prepare",code="already_exists"} 2"#
        ),
        "{metrics}"
    );
    assert!(
        metrics.contains(r#"lazypull_remote_snapshots{state="mounted"} 2"#),
        "{metrics}"
    );
    for (digest, _, _) in &layers {
        assert!(
            metrics.contains(&format!(
                "lazypull_layer_fetched_bytes_total{{layer=\"{digest}\"}}"
            )),
            "{metrics}"
        );
        assert!(
            metrics.contains(&format!(
                "lazypull_layer_fetched_ratio{{layer=\"{digest}\"}}"
            )),
            "{metrics}"
        );
    }
    assert!(
        metrics.contains("lazypull_fetch_duration_seconds_bucket"),
        "{metrics}"
    );
}

#[test]
fn plain_image_falls_back_and_runs() {
    if !prerequisites(true) {
        return;
    }
    let source = lazypull_testkit::image::python_image().unwrap();
    let stack = Stack::start("").unwrap();
    let reference = stack
        .registry
        .push_oci_layout(&source, "latest", "python:latest")
        .unwrap();

    // A plain pull sends Prepare without labels: containerd unpacks every layer.
    stack.ctr(&[
        "images",
        "pull",
        "--plain-http",
        "--snapshotter",
        "lazypull",
        &reference,
    ]);
    let events = stack.serve.log_events();
    let fallbacks = events_with_message(
        &events,
        "layer is not mounted lazily; containerd unpacks it",
    );
    assert_eq!(fallbacks.len(), 2, "{}", tail(&stack.serve.log(), 30));
    for event in &fallbacks {
        let reason = event["reason"].as_str().unwrap_or_default();
        assert!(reason.contains("containerd.io/snapshot.ref"), "{event}");
    }
    assert!(events_with_message(&events, "prepared remote snapshot").is_empty());
    assert_eq!(
        stack.run(&reference, "plain", &PYTHON_WORKLOAD).trim(),
        "42"
    );
    stack.ctr(&["images", "rm", "--sync", &reference]);

    // rpull sends the remote labels, but the layers have no TOC digest.
    stack.rpull(&reference);
    let events = stack.serve.log_events();
    let missing_toc: Vec<_> = events_with_message(
        &events,
        "layer is not mounted lazily; containerd unpacks it",
    )
    .into_iter()
    .filter(|event| {
        event["reason"]
            .as_str()
            .unwrap_or_default()
            .contains("containerd.io/snapshot/stargz/toc.digest")
    })
    .collect();
    assert_eq!(missing_toc.len(), 2, "{}", tail(&stack.serve.log(), 30));
    assert_eq!(
        stack
            .run(&reference, "plain-rpull", &PYTHON_WORKLOAD)
            .trim(),
        "42"
    );
}

#[test]
fn removing_the_image_frees_layer_caches() {
    if !prerequisites(true) {
        return;
    }
    let layout = converted_python();
    let stack = Stack::start("[prefetch]\nbackground = false\n").unwrap();
    let reference = stack
        .registry
        .push_oci_layout(layout, "latest", "python-esgz:latest")
        .unwrap();
    stack.rpull(&reference);
    assert_eq!(stack.run(&reference, "t1", &PYTHON_WORKLOAD).trim(), "42");

    let root = stack.serve.root();
    let layers = layout_layers(layout, "latest");
    let dirs_of = |digest: &str| {
        let hex = digest.trim_start_matches("sha256:");
        [root.join("layers").join(hex), root.join("cache").join(hex)]
    };
    for (digest, _, _) in &layers {
        for dir in dirs_of(digest) {
            assert!(dir.is_dir(), "{} is missing after the run", dir.display());
        }
    }
    let fuse_mounts = || lazypull_testkit::mounts::mounts_under(&root.join("snapshots")).len();
    assert_eq!(fuse_mounts(), 2);

    stack.ctr(&["images", "rm", "--sync", &reference]);
    let freed = wait_until(Duration::from_secs(20), || {
        layers
            .iter()
            .all(|(digest, _, _)| dirs_of(digest).iter().all(|dir| !dir.exists()))
    });
    assert!(
        freed,
        "layer directories remain; log:\n{}",
        tail(&stack.serve.log(), 30)
    );
    assert_eq!(fuse_mounts(), 0);
    let events = stack.serve.log_events();
    assert_eq!(
        events_with_message(&events, "freed layer cache").len(),
        2,
        "{}",
        tail(&stack.serve.log(), 30)
    );
}
