//! Lifecycle of `lazypull mount`: foreground serving stopped by SIGTERM or SIGINT cleans up,
//! startup errors are reported with the exit code and leave nothing behind, the prefetch runs
//! before readiness, and layer mounts get 1 MiB readahead.

mod mount_util;

use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use estargz::build::BuildOptions;
use lazypull_testkit::image::write_oci_layout;
use lazypull_testkit::mounts::mounts_under;
use lazypull_testkit::tarbuild::{Builder, Entry};
use lazypull_testkit::{Prereq, require_or_skip};
use mount_util::{Mount, lazypull, path_str, write_estargz_layout};

fn small_tar() -> Vec<u8> {
    let mut tar = Builder::new();
    tar.append(&Entry::file("etc/hostname", b"lazy\n"));
    tar.append(&Entry::file("usr/lib/big", vec![9u8; 3 << 20]));
    tar.finish()
}

/// Returns the `major:minor` device of the mount at `path`, read from mountinfo.
fn device_of(path: &Path) -> Option<String> {
    let text = std::fs::read_to_string("/proc/self/mountinfo").ok()?;
    text.lines().find_map(|line| {
        let fields: Vec<&str> = line.split(' ').collect();
        (fields.get(4).map(Path::new) == Some(path)).then(|| fields[2].to_owned())
    })
}

fn wait_for(what: &str, timeout: Duration, mut condition: impl FnMut() -> bool) {
    let deadline = Instant::now() + timeout;
    while !condition() {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(50));
    }
}

#[test]
fn foreground_server_cleans_up_on_signals() {
    require_or_skip!(
        Prereq::Root,
        Prereq::Fuse,
        Prereq::Overlayfs,
        Prereq::Binary("kill")
    );
    let layout = tempfile::tempdir().unwrap();
    write_estargz_layout(
        layout.path(),
        "latest",
        &[small_tar()],
        &BuildOptions::default(),
    )
    .unwrap();
    let image = format!("oci:{}:latest", path_str(layout.path()));

    for signal in ["TERM", "INT"] {
        let dir = tempfile::tempdir().unwrap();
        let state = tempfile::tempdir().unwrap();
        let mut child = lazypull()
            .args([
                "mount",
                &image,
                path_str(dir.path()),
                "--state-dir",
                path_str(state.path()),
                "--foreground",
                "--no-disk-cache",
            ])
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        wait_for("the overlay mount", Duration::from_secs(30), || {
            device_of(dir.path()).is_some()
        });
        assert_eq!(
            std::fs::read(dir.path().join("etc/hostname")).unwrap(),
            b"lazy\n"
        );

        let layer = mounts_under(state.path())
            .into_iter()
            .find(|m| m.fs_type.starts_with("fuse"))
            .expect("a FUSE layer mount");
        let device = device_of(&layer.mount_point).unwrap();
        let read_ahead =
            std::fs::read_to_string(format!("/sys/class/bdi/{device}/read_ahead_kb")).unwrap();
        assert_eq!(read_ahead.trim(), "1024", "layer mounts read ahead 1 MiB");

        let status = Command::new("kill")
            .arg(format!("-{signal}"))
            .arg(child.id().to_string())
            .status()
            .unwrap();
        assert!(status.success());
        let deadline = Instant::now() + Duration::from_secs(20);
        let exit = loop {
            if let Some(exit) = child.try_wait().unwrap() {
                break exit;
            }
            assert!(Instant::now() < deadline, "server ignored SIG{signal}");
            std::thread::sleep(Duration::from_millis(50));
        };
        assert!(exit.success(), "SIG{signal}: server exited with {exit}");
        assert!(
            mounts_under(dir.path()).is_empty(),
            "SIG{signal}: overlay left mounted"
        );
        assert!(
            mounts_under(state.path()).is_empty(),
            "SIG{signal}: layer mounts left"
        );
        let records: Vec<_> = std::fs::read_dir(state.path().join("mounts"))
            .unwrap()
            .map(|entry| entry.unwrap().file_name())
            .filter(|name| name.to_string_lossy().ends_with(".json"))
            .collect();
        assert!(
            records.is_empty(),
            "SIG{signal}: mount record left: {records:?}"
        );
    }
}

#[test]
fn non_estargz_image_fails_with_clear_message() {
    require_or_skip!(Prereq::Root, Prereq::Fuse, Prereq::Overlayfs);
    let layout = tempfile::tempdir().unwrap();
    let written = write_oci_layout(layout.path(), "v1", &[small_tar()], &["/bin/sh"]).unwrap();
    let dir = tempfile::tempdir().unwrap();
    let state = tempfile::tempdir().unwrap();
    let image = format!("oci:{}:v1", path_str(layout.path()));
    let output = lazypull()
        .args([
            "mount",
            &image,
            path_str(dir.path()),
            "--state-dir",
            path_str(state.path()),
        ])
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        !output.status.success(),
        "mount of a plain gzip image succeeded"
    );
    assert!(
        stderr.contains(&written.layer_digests[0]),
        "message names the layer: {stderr}"
    );
    assert!(
        stderr.contains("lazypull convert"),
        "message says how to fix it: {stderr}"
    );
    assert!(mounts_under(dir.path()).is_empty());
    assert!(mounts_under(state.path()).is_empty());
    let records: Vec<_> = std::fs::read_dir(state.path().join("mounts"))
        .unwrap()
        .map(|entry| entry.unwrap().file_name())
        .filter(|name| name.to_string_lossy().ends_with(".json"))
        .collect();
    assert!(records.is_empty(), "no record is left: {records:?}");
    assert_eq!(
        state_entries(state.path()),
        ["mounts"],
        "the mount directory and its serve.log are removed"
    );
}

/// Returns the sorted names in the state directory `state`.
fn state_entries(state: &Path) -> Vec<String> {
    let mut names: Vec<String> = std::fs::read_dir(state)
        .unwrap()
        .map(|entry| entry.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    names.sort();
    names
}

#[test]
fn failed_remount_keeps_earlier_stats_and_log() {
    require_or_skip!(
        Prereq::Root,
        Prereq::Fuse,
        Prereq::Overlayfs,
        Prereq::Binary("kill")
    );
    let layout = tempfile::tempdir().unwrap();
    write_estargz_layout(
        layout.path(),
        "latest",
        &[small_tar()],
        &BuildOptions::default(),
    )
    .unwrap();
    let plain = tempfile::tempdir().unwrap();
    write_oci_layout(plain.path(), "plain", &[small_tar()], &["/bin/sh"]).unwrap();
    let mount = Mount::start(
        &format!("oci:{}:latest", path_str(layout.path())),
        &["--no-disk-cache"],
    )
    .unwrap();
    // A killed server leaves its stats and log behind.
    let pid = mount.pid().unwrap();
    let killed = Command::new("kill")
        .args(["-9", &pid.to_string()])
        .status()
        .unwrap();
    assert!(killed.success());
    wait_for("the killed server to exit", Duration::from_secs(10), || {
        !Path::new(&format!("/proc/{pid}")).exists()
    });
    let work_dirs: Vec<_> = std::fs::read_dir(mount.state_dir())
        .unwrap()
        .map(|entry| entry.unwrap().path())
        .filter(|path| path.file_name().is_some_and(|name| name != "mounts"))
        .collect();
    assert_eq!(work_dirs.len(), 1, "{work_dirs:?}");

    let output = lazypull()
        .args([
            "mount",
            &format!("oci:{}:plain", path_str(plain.path())),
            path_str(mount.path()),
            "--state-dir",
            path_str(mount.state_dir()),
            "--no-disk-cache",
        ])
        .output()
        .unwrap();
    assert!(
        !output.status.success(),
        "mount of a plain gzip image succeeded"
    );
    assert!(
        work_dirs[0].join("stats.json").is_file(),
        "the earlier mount's stats stay"
    );
    let log = std::fs::read_to_string(work_dirs[0].join("serve.log")).unwrap();
    assert!(
        log.contains("mounted"),
        "the earlier mount's log stays: {log}"
    );
    // The serving process logs its error after the parent has printed it.
    wait_for(
        "the failed mount's error in the log",
        Duration::from_secs(10),
        || {
            std::fs::read_to_string(work_dirs[0].join("serve.log"))
                .is_ok_and(|log| log.contains("lazypull convert"))
        },
    );
}

#[test]
fn damaged_blob_error_names_corruption() {
    require_or_skip!(Prereq::Root);
    let layout = tempfile::tempdir().unwrap();
    let layers = write_estargz_layout(
        layout.path(),
        "latest",
        &[small_tar()],
        &BuildOptions::default(),
    )
    .unwrap();
    // Zeroing the tail keeps the size the descriptor records but destroys the footer, as a
    // corrupt upload or a registry that serves shifted bytes would.
    let blob = mount_util::layout_layers(layout.path(), "latest").unwrap()[0].clone();
    let mut bytes = std::fs::read(&blob).unwrap();
    let len = bytes.len();
    bytes[len - 64..].fill(0);
    std::fs::write(&blob, &bytes).unwrap();

    let dir = tempfile::tempdir().unwrap();
    let state = tempfile::tempdir().unwrap();
    let output = lazypull()
        .args([
            "mount",
            &format!("oci:{}:latest", path_str(layout.path())),
            path_str(dir.path()),
            "--state-dir",
            path_str(state.path()),
            "--no-disk-cache",
        ])
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        !output.status.success(),
        "mount of a damaged blob succeeded"
    );
    assert!(
        stderr.contains(&layers[0].digest),
        "message names the layer: {stderr}"
    );
    assert!(
        stderr.contains(&format!("{}-byte blob", layers[0].size)),
        "message gives the expected size: {stderr}"
    );
    assert!(
        stderr.contains("truncated or corrupt"),
        "message names the damage: {stderr}"
    );
    assert!(
        stderr.contains("push the image again"),
        "message says how to fix it: {stderr}"
    );
    assert!(
        !stderr.contains("lazypull convert"),
        "an annotated layer was already converted: {stderr}"
    );
}

#[test]
fn missing_mountpoint_is_an_error() {
    require_or_skip!(Prereq::Root);
    let output = lazypull()
        .args([
            "mount",
            "oci:/nonexistent:latest",
            "/nonexistent/lazypull-mount-point",
        ])
        .output()
        .unwrap();
    assert!(!output.status.success());
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        stderr.contains("/nonexistent/lazypull-mount-point"),
        "{stderr}"
    );
}

#[test]
fn uncreatable_state_dir_is_named() {
    let dir = tempfile::tempdir().unwrap();
    // Nothing can create directories in procfs, not even root.
    let output = lazypull()
        .args([
            "mount",
            "oci:/nonexistent:latest",
            path_str(dir.path()),
            "--state-dir",
            "/proc/lazypull-nope",
        ])
        .output()
        .unwrap();
    assert!(!output.status.success());
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(stderr.contains("/proc/lazypull-nope/"), "{stderr}");
    assert!(stderr.contains("writable state directory"), "{stderr}");
}

#[test]
fn out_of_range_mount_options_are_rejected() {
    let dir = tempfile::tempdir().unwrap();
    for (option, value, range) in [
        ("--read-timeout", "0", "1..=3600"),
        ("--read-timeout", "3601", "1..=3600"),
        ("--request-timeout", "0", "1..=3600"),
        ("--readahead-kib", "99999999999", "0..=65536"),
        ("--fuse-threads", "0", "1..=64"),
    ] {
        let output = lazypull()
            .args(["mount", "oci:/nonexistent:latest", path_str(dir.path())])
            .args([option, value])
            .output()
            .unwrap();
        let stderr = String::from_utf8_lossy(&output.stderr);
        assert_eq!(output.status.code(), Some(2), "{option} {value}: {stderr}");
        assert!(stderr.contains(option), "{option} {value}: {stderr}");
        assert!(stderr.contains(range), "{option} {value}: {stderr}");
    }
}

#[test]
fn prioritized_files_are_prefetched_before_ready() {
    require_or_skip!(Prereq::Root, Prereq::Fuse, Prereq::Overlayfs);
    let layout = tempfile::tempdir().unwrap();
    let options = BuildOptions {
        prioritized: vec![b"usr/lib/big".to_vec()],
        ..BuildOptions::default()
    };
    write_estargz_layout(layout.path(), "latest", &[small_tar()], &options).unwrap();
    let mount = Mount::start(
        &format!("oci:{}:latest", path_str(layout.path())),
        &["--no-disk-cache"],
    )
    .unwrap();
    let stats = mount.stats().unwrap();
    assert_eq!(stats["layers"][0]["prefetch_state"], "done", "{stats}");
    assert!(
        stats["total"]["prefetch_bytes"].as_u64().unwrap() > 0,
        "{stats}"
    );
    let chunks_before = stats["total"]["cache_misses"].as_u64().unwrap();
    assert_eq!(
        std::fs::read(mount.path().join("usr/lib/big")).unwrap(),
        vec![9u8; 3 << 20]
    );
    let after = mount.fresh_stats().unwrap();
    assert_eq!(
        after["total"]["cache_misses"].as_u64().unwrap(),
        chunks_before,
        "prefetched file needed no fetch: {after}"
    );
    mount.unmount().unwrap();
}

/// Returns the current time in milliseconds since the Unix epoch.
fn now_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_millis() as u64
}

#[test]
fn status_reports_reads_at_once() {
    require_or_skip!(Prereq::Root, Prereq::Fuse, Prereq::Overlayfs);
    let layout = tempfile::tempdir().unwrap();
    write_estargz_layout(
        layout.path(),
        "latest",
        &[small_tar()],
        &BuildOptions::default(),
    )
    .unwrap();
    let mount = Mount::start(
        &format!("oci:{}:latest", path_str(layout.path())),
        &["--no-disk-cache", "--no-prefetch"],
    )
    .unwrap();
    let before = mount.stats().unwrap()["total"]["bytes_fetched"]
        .as_u64()
        .unwrap();
    assert_eq!(
        std::fs::read(mount.path().join("usr/lib/big")).unwrap(),
        vec![9u8; 3 << 20]
    );

    // The periodic rewrite comes every second, so a lagging status would show an older time.
    let read_done = now_ms();
    let after = mount.stats().unwrap();
    assert!(
        after["updated_unix_ms"].as_u64().unwrap() >= read_done,
        "status returned counters written before the read ended: {after}"
    );
    assert!(
        after["total"]["bytes_fetched"].as_u64().unwrap() > before,
        "the read shows in the counters: {after}"
    );
}

#[test]
fn status_of_dead_server_names_pid() {
    require_or_skip!(
        Prereq::Root,
        Prereq::Fuse,
        Prereq::Overlayfs,
        Prereq::Binary("kill")
    );
    let layout = tempfile::tempdir().unwrap();
    write_estargz_layout(
        layout.path(),
        "latest",
        &[small_tar()],
        &BuildOptions::default(),
    )
    .unwrap();
    let mount = Mount::start(
        &format!("oci:{}:latest", path_str(layout.path())),
        &["--no-disk-cache"],
    )
    .unwrap();
    let pid = mount.pid().unwrap();
    let killed = Command::new("kill")
        .args(["-9", &pid.to_string()])
        .status()
        .unwrap();
    assert!(killed.success());
    wait_for("the killed server to exit", Duration::from_secs(10), || {
        !Path::new(&format!("/proc/{pid}")).exists()
    });

    let output = lazypull()
        .args(["status", path_str(mount.path()), "--state-dir"])
        .arg(mount.state_dir())
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(!output.status.success(), "status of a dead mount succeeded");
    assert!(
        stderr.contains(&format!("serving process {pid} ")),
        "{stderr}"
    );
    assert!(stderr.contains("not running"), "{stderr}");
    assert!(stderr.contains("lazypull unmount"), "{stderr}");
    assert!(output.stdout.is_empty(), "no stale counters on stdout");
}

#[test]
fn remount_after_kill_replaces_dead_mounts() {
    require_or_skip!(
        Prereq::Root,
        Prereq::Fuse,
        Prereq::Overlayfs,
        Prereq::Binary("kill")
    );
    let layout = tempfile::tempdir().unwrap();
    write_estargz_layout(
        layout.path(),
        "latest",
        &[small_tar()],
        &BuildOptions::default(),
    )
    .unwrap();
    let image = format!("oci:{}:latest", path_str(layout.path()));
    let mount = Mount::start(&image, &["--no-disk-cache"]).unwrap();
    let pid = mount.pid().unwrap();
    let killed = Command::new("kill")
        .args(["-9", &pid.to_string()])
        .status()
        .unwrap();
    assert!(killed.success());
    wait_for("the killed server to exit", Duration::from_secs(10), || {
        !Path::new(&format!("/proc/{pid}")).exists()
    });

    // Mounting again at the same place removes the dead mounts first.
    mount_util::lazypull_ok(&[
        "mount",
        &image,
        path_str(mount.path()),
        "--state-dir",
        path_str(mount.state_dir()),
        "--no-disk-cache",
    ])
    .unwrap();
    assert_eq!(
        std::fs::read(mount.path().join("etc/hostname")).unwrap(),
        b"lazy\n"
    );
    let overlays = mounts_under(mount.path());
    assert_eq!(
        overlays.len(),
        1,
        "one overlay at the mount point: {overlays:?}"
    );
    let layers = mounts_under(mount.state_dir());
    assert_eq!(layers.len(), 1, "one live layer mount: {layers:?}");
    assert_ne!(mount.pid().unwrap(), pid);
    assert!(
        mount.log().contains("mounted"),
        "the new server's log survives the cleanup"
    );
    mount.unmount().unwrap();
    assert!(mounts_under(mount.path()).is_empty());
    assert!(mounts_under(mount.state_dir()).is_empty());
}

#[test]
fn busy_mount_is_detached_by_unmount() {
    require_or_skip!(
        Prereq::Root,
        Prereq::Fuse,
        Prereq::Overlayfs,
        Prereq::Binary("sleep")
    );
    let layout = tempfile::tempdir().unwrap();
    write_estargz_layout(
        layout.path(),
        "latest",
        &[small_tar()],
        &BuildOptions::default(),
    )
    .unwrap();
    let mount = Mount::start(
        &format!("oci:{}:latest", path_str(layout.path())),
        &["--no-disk-cache"],
    )
    .unwrap();
    // A process whose working directory is inside the mount keeps it busy.
    let mut busy = Command::new("sleep")
        .arg("30")
        .current_dir(mount.path().join("etc"))
        .spawn()
        .unwrap();

    let started = Instant::now();
    mount.unmount().unwrap();
    assert!(
        started.elapsed() < Duration::from_secs(20),
        "unmount took {:?}",
        started.elapsed()
    );
    assert!(
        mounts_under(mount.path()).is_empty(),
        "the busy overlay is detached"
    );
    assert!(
        mounts_under(mount.state_dir()).is_empty(),
        "the layer mounts are detached"
    );
    busy.kill().unwrap();
    busy.wait().unwrap();
}

#[test]
fn concurrent_mounts_of_one_directory_leave_one_server() {
    require_or_skip!(Prereq::Root, Prereq::Fuse, Prereq::Overlayfs);
    let layout = tempfile::tempdir().unwrap();
    write_estargz_layout(
        layout.path(),
        "latest",
        &[small_tar()],
        &BuildOptions::default(),
    )
    .unwrap();
    let image = format!("oci:{}:latest", path_str(layout.path()));
    let dir = tempfile::tempdir().unwrap();
    let state = tempfile::tempdir().unwrap();
    let children: Vec<_> = (0..3)
        .map(|_| {
            lazypull()
                .args(["mount", &image, path_str(dir.path()), "--state-dir"])
                .arg(state.path())
                .arg("--no-disk-cache")
                .stdout(Stdio::null())
                .stderr(Stdio::piped())
                .spawn()
                .unwrap()
        })
        .collect();
    let outputs: Vec<_> = children
        .into_iter()
        .map(|child| child.wait_with_output().unwrap())
        .collect();
    let succeeded = outputs.iter().filter(|o| o.status.success()).count();
    assert!(succeeded >= 1, "{outputs:?}");
    for output in outputs.iter().filter(|o| !o.status.success()) {
        let stderr = String::from_utf8_lossy(&output.stderr);
        assert!(
            stderr.contains("another lazypull process is mounting")
                || stderr.contains("is already mounted by lazypull process"),
            "a losing mount names the other process: {stderr}"
        );
    }
    let overlays = mounts_under(dir.path());
    assert_eq!(overlays.len(), 1, "one overlay: {overlays:?}");
    assert_eq!(
        std::fs::read(dir.path().join("etc/hostname")).unwrap(),
        b"lazy\n"
    );

    let unmounted = lazypull()
        .args(["unmount", "--state-dir"])
        .arg(state.path())
        .arg(dir.path())
        .output()
        .unwrap();
    assert!(unmounted.status.success(), "{unmounted:?}");
    assert!(mounts_under(dir.path()).is_empty());
    assert!(mounts_under(state.path()).is_empty());
    let servers = std::fs::read_dir("/proc")
        .unwrap()
        .filter_map(|entry| std::fs::read(entry.ok()?.path().join("cmdline")).ok())
        .filter(|cmdline| {
            let text = String::from_utf8_lossy(cmdline);
            text.contains("mount") && text.contains(path_str(state.path()))
        })
        .count();
    assert_eq!(servers, 0, "no server outlives the unmount");
}
