//! The restart model of `lazypull serve`, with containerd and running containers.
//!
//! The FUSE servers live in the daemon. When it stops (SIGTERM) or dies (`kill -9`), a
//! container that runs on its layers gets ENOTCONN ("Transport endpoint is not connected")
//! for reads the kernel cannot answer from its caches, and keeps getting it after the
//! restart, because its overlay still stacks the old connections. The restarted daemon
//! removes the dead mounts, mounts every remote snapshot again from its persisted labels
//! and TOC (without the registry), keeps ordinary snapshots, and new containers run.

mod serve_util;

use std::path::Path;
use std::process::Command;
use std::time::Duration;

use lazypull_testkit::Prereq;
use lazypull_testkit::mounts::mounts_under;
use lazypull_testkit::prereq::require_all;
use serde_json::Value;
use serve_util::{PYTHON_WORKLOAD, Stack, converted_python, layout_layers, tail, wait_until};

/// A container process that reads a file and lists a directory of the image every 200 ms and
/// appends `ok` or `fail <error>` to `/out/log`.
const READER: &str = r#"
import os, time
while True:
    try:
        with open('/usr/lib/os-release', 'rb') as f:
            f.read()
        os.listdir('/usr/share')
        result = 'ok'
    except OSError as error:
        result = 'fail ' + os.strerror(error.errno)
    with open('/out/log', 'a') as log:
        log.write(result + '\n')
    time.sleep(0.2)
"#;

const NOT_CONNECTED: &str = "fail Transport endpoint is not connected";

fn prerequisites() -> bool {
    require_all(&[
        Prereq::Root,
        Prereq::Fuse,
        Prereq::Overlayfs,
        Prereq::Binary("containerd"),
        Prereq::Binary("ctr"),
        Prereq::Binary("ctr-remote"),
        Prereq::Binary("runc"),
        Prereq::Binary("docker-registry"),
        Prereq::Binary("skopeo"),
    ])
}

/// Pulls the converted python image lazily and returns its reference.
fn pull_python(stack: &Stack) -> String {
    let reference = stack
        .registry
        .push_oci_layout(converted_python(), "latest", "python-esgz:latest")
        .unwrap();
    stack.rpull(&reference);
    reference
}

/// Starts the reader container with `out` bound at `/out`, and waits for its first `ok`.
fn start_reader(stack: &Stack, reference: &str, out: &Path) {
    std::fs::write(out.join("reader.py"), READER).unwrap();
    let bind = format!("type=bind,src={},dst=/out,options=rbind:rw", out.display());
    stack.ctr(&[
        "run",
        "-d",
        "--snapshotter",
        "lazypull",
        "--mount",
        &bind,
        reference,
        "reader",
        "python3",
        "/out/reader.py",
    ]);
    let reading = wait_until(Duration::from_secs(30), || last_line(out) == "ok");
    assert!(
        reading,
        "the reader never succeeded; its log:\n{}",
        read_log(out)
    );
}

fn read_log(out: &Path) -> String {
    std::fs::read_to_string(out.join("log")).unwrap_or_default()
}

fn last_line(out: &Path) -> String {
    read_log(out).lines().last().unwrap_or_default().to_owned()
}

fn line_count(out: &Path) -> usize {
    read_log(out).lines().count()
}

/// The fields of the last "restored remote snapshots" event.
fn last_restore(stack: &Stack) -> Value {
    let events = stack.serve.log_events();
    let restore = events
        .iter()
        .rev()
        .find(|event| event["message"] == "restored remote snapshots");
    restore
        .cloned()
        .unwrap_or_else(|| panic!("no restore logged:\n{}", tail(&stack.serve.log(), 30)))
}

/// Mount points of the remote layers below the daemon's snapshots directory.
fn layer_mounts(stack: &Stack) -> usize {
    mounts_under(&stack.serve.root().join("snapshots")).len()
}

/// Prepares an ordinary snapshot with one file and returns the file's path.
fn ordinary_snapshot(stack: &Stack) -> std::path::PathBuf {
    stack.snapshots(&["prepare", "keep"]);
    let mounts = stack.snapshots(&["mounts", "/mnt", "keep"]);
    let words: Vec<&str> = mounts.split_whitespace().collect();
    let dir = words[words.iter().position(|word| *word == "bind").unwrap() + 1];
    let file = Path::new(dir).join("kept");
    std::fs::write(&file, b"ordinary").unwrap();
    file
}

#[test]
fn sigterm_restart_remounts_and_keeps_snapshots() {
    if !prerequisites() {
        return;
    }
    let stack_config = "[prefetch]\nbackground = false\n";
    let mut stack = Stack::start(stack_config).unwrap();
    let reference = pull_python(&stack);
    let kept = ordinary_snapshot(&stack);
    let out = tempfile::tempdir().unwrap();
    start_reader(&stack, &reference, out.path());
    assert_eq!(layer_mounts(&stack), 2);

    let status = stack.serve.terminate().unwrap();
    assert!(status.success(), "lazypull serve exited with {status}");
    let events = stack.serve.log_events();
    assert!(
        events
            .iter()
            .any(|event| event["message"] == "unmounted remote layers" && event["layers"] == 2)
    );
    assert_eq!(layer_mounts(&stack), 0, "SIGTERM left layer mounts behind");
    let broken = wait_until(Duration::from_secs(10), || {
        last_line(out.path()) == NOT_CONNECTED
    });
    assert!(
        broken,
        "the running container kept reading; last line {:?}",
        last_line(out.path())
    );

    stack.restart_serve().unwrap();
    let restore = last_restore(&stack);
    assert_eq!(restore["restored"], 2, "{restore}");
    assert_eq!(restore["failed"], 0, "{restore}");
    assert_eq!(restore["stale_unmounted"], 0, "{restore}");
    assert_eq!(layer_mounts(&stack), 2);

    // The running container stays on the old connections.
    let before = line_count(out.path());
    assert!(wait_until(Duration::from_secs(5), || line_count(
        out.path()
    ) > before + 3));
    assert_eq!(last_line(out.path()), NOT_CONNECTED);

    assert_eq!(
        stack
            .run(&reference, "after-sigterm", &PYTHON_WORKLOAD)
            .trim(),
        "42"
    );
    assert_eq!(
        std::fs::read(&kept).unwrap(),
        b"ordinary",
        "the ordinary snapshot lost its file"
    );
    let listing = stack.snapshots(&["ls"]);
    assert!(
        listing.lines().any(|line| line.starts_with("keep ")),
        "{listing}"
    );
}

#[test]
fn kill9_restart_removes_dead_mounts() {
    if !prerequisites() {
        return;
    }
    let mut stack = Stack::start("[prefetch]\nbackground = false\n").unwrap();
    let reference = pull_python(&stack);
    let kept = ordinary_snapshot(&stack);
    let out = tempfile::tempdir().unwrap();
    start_reader(&stack, &reference, out.path());

    stack.serve.kill().unwrap();
    // The dead mounts stay until someone removes them.
    let dead = mounts_under(&stack.serve.root().join("snapshots"));
    assert_eq!(dead.len(), 2);
    let error = std::fs::read_dir(&dead[0].mount_point).unwrap_err();
    assert_eq!(error.kind(), std::io::ErrorKind::NotConnected, "{error}");
    let broken = wait_until(Duration::from_secs(10), || {
        last_line(out.path()) == NOT_CONNECTED
    });
    assert!(
        broken,
        "the running container kept reading; last line {:?}",
        last_line(out.path())
    );

    stack.restart_serve().unwrap();
    let restore = last_restore(&stack);
    assert_eq!(restore["stale_unmounted"], 2, "{restore}");
    assert_eq!(restore["restored"], 2, "{restore}");
    assert_eq!(restore["failed"], 0, "{restore}");
    let mounts = mounts_under(&stack.serve.root().join("snapshots"));
    assert_eq!(mounts.len(), 2);
    for mount in &mounts {
        std::fs::read_dir(&mount.mount_point)
            .unwrap_or_else(|error| panic!("{}: {error}", mount.mount_point.display()));
    }

    assert_eq!(
        stack.run(&reference, "after-kill", &PYTHON_WORKLOAD).trim(),
        "42"
    );
    assert_eq!(std::fs::read(&kept).unwrap(), b"ordinary");
    assert_eq!(last_line(out.path()), NOT_CONNECTED);
}

fn kill_registry(stack: &Stack) {
    let status = Command::new("kill")
        .args(["-KILL", &stack.registry.pid().to_string()])
        .status()
        .unwrap();
    assert!(status.success());
    // The registry stays a zombie until the testkit reaps it, so watch its port instead.
    let port = stack.registry.port();
    let gone = wait_until(Duration::from_secs(10), || {
        std::net::TcpStream::connect(("127.0.0.1", port)).is_err()
    });
    assert!(gone, "the registry still accepts connections");
}

fn fetched_ratios(stack: &Stack, layers: &[(String, u64, Option<String>)]) -> Vec<f64> {
    let metrics = stack.serve.metrics().unwrap_or_default();
    layers
        .iter()
        .map(|(digest, _, _)| {
            let prefix = format!("lazypull_layer_fetched_ratio{{layer=\"{digest}\"}} ");
            metrics
                .lines()
                .find_map(|line| line.strip_prefix(&prefix))
                .and_then(|value| value.parse().ok())
                .unwrap_or(0.0)
        })
        .collect()
}

#[test]
fn restart_without_registry_runs_from_cache() {
    if !prerequisites() {
        return;
    }
    // Background fetch on: the whole image ends up in the disk cache.
    let mut stack = Stack::start("").unwrap();
    let reference = pull_python(&stack);
    let layers = layout_layers(converted_python(), "latest");
    let complete = |stack: &Stack| {
        fetched_ratios(stack, &layers)
            .iter()
            .all(|ratio| *ratio >= 1.0)
    };
    assert!(
        wait_until(Duration::from_secs(300), || complete(&stack)),
        "ratios {:?}",
        fetched_ratios(&stack, &layers)
    );

    stack.serve.terminate().unwrap();
    kill_registry(&stack);
    stack.restart_serve().unwrap();
    let restore = last_restore(&stack);
    assert_eq!(restore["restored"], 2, "{restore}");
    assert_eq!(restore["failed"], 0, "{restore}");
    // Every chunk is on disk, so the mounts need no reachability check and every read is local.
    assert_eq!(
        stack.run(&reference, "offline", &PYTHON_WORKLOAD).trim(),
        "42"
    );
}

#[test]
fn restart_without_registry_reports_uncached_layers() {
    if !prerequisites() {
        return;
    }
    let mut stack = Stack::start("[prefetch]\nbackground = false\n").unwrap();
    let reference = pull_python(&stack);
    stack.serve.terminate().unwrap();
    kill_registry(&stack);

    // The persisted TOCs are enough to mount the layers again.
    stack.restart_serve().unwrap();
    let restore = last_restore(&stack);
    assert_eq!(restore["restored"], 2, "{restore}");

    // A new container would read uncached files from a dead registry: refused up front.
    let output = stack.containerd.ctr([
        "run",
        "--snapshotter",
        "lazypull",
        "--rm",
        &reference,
        "refused",
        "true",
    ]);
    assert!(
        !output.status.success(),
        "the container started without its registry"
    );
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(stderr.contains("unavailable"), "{stderr}");
    assert!(
        stderr.contains("is unreachable in its registry"),
        "{stderr}"
    );
}
