//! `lazypull optimize` when the run ends badly: no readiness string before the time limit (with
//! and without `--strict`), a command missing from the image, and SIGINT during the workload.
//! Each case leaves nothing mounted and no temporary files.

mod mount_util;
mod optimize_support;

use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use lazypull_testkit::image::PYTHON_IMAGE_TAG;
use lazypull_testkit::{Prereq, require_or_skip};
use mount_util::{layout_layers, lazypull, path_str};
use optimize_support::{
    assert_nothing_left, estargz_python, layout_ref, optimize, processes_left_with, processes_with,
    stderr_of, toc_names,
};

macro_rules! require_prerequisites {
    () => {
        require_or_skip!(Prereq::Root, Prereq::Fuse, Prereq::Overlayfs)
    };
}

/// Returns a python workload that never prints the readiness string.
fn silent_workload(marker: &str) -> String {
    format!("import json; print('working', flush=True); import time; time.sleep(120) # {marker}")
}

#[test]
fn timeout_without_readiness_still_optimizes() {
    require_prerequisites!();
    let source = layout_ref(estargz_python(), PYTHON_IMAGE_TAG);
    let tmp = tempfile::tempdir().unwrap();
    let out = tempfile::tempdir().unwrap();
    let destination = out.path().join("layout");
    let marker = "optimize-timeout-marker";

    let started = Instant::now();
    let output = optimize(
        tmp.path(),
        &[
            &source,
            &format!("oci:{}:optimized", path_str(&destination)),
            "--wait-for",
            "NEVER-PRINTED",
            "--timeout",
            "3",
            "--",
            "python3",
            "-c",
            &silent_workload(marker),
        ],
    );
    let stderr = stderr_of(&output);
    assert!(output.status.success(), "optimize failed: {stderr}");
    assert!(started.elapsed() >= Duration::from_secs(3));
    assert!(
        stderr.contains("\"NEVER-PRINTED\" did not appear within the time limit of 3 s"),
        "{stderr}"
    );
    assert!(
        stderr.contains("optimizing with the files recorded"),
        "{stderr}"
    );
    assert!(
        processes_left_with(marker).is_empty(),
        "the workload was killed"
    );
    assert_nothing_left(tmp.path());

    let layers = layout_layers(&destination, "optimized").unwrap();
    let python_layer = toc_names(&layers[1]);
    let landmark = python_layer
        .iter()
        .position(|name| name == estargz::PREFETCH_LANDMARK)
        .expect("the python layer has a prefetch landmark");
    assert!(
        python_layer[..landmark]
            .iter()
            .any(|name| name.ends_with("json/__init__.py")),
        "json is prioritized: {:?}",
        &python_layer[..landmark]
    );
}

#[test]
fn strict_timeout_fails_without_output() {
    require_prerequisites!();
    let source = layout_ref(estargz_python(), PYTHON_IMAGE_TAG);
    let tmp = tempfile::tempdir().unwrap();
    let out = tempfile::tempdir().unwrap();
    let destination = out.path().join("layout");

    let output = optimize(
        tmp.path(),
        &[
            &source,
            &format!("oci:{}:optimized", path_str(&destination)),
            "--wait-for",
            "NEVER-PRINTED",
            "--timeout",
            "2",
            "--strict",
            "--",
            "python3",
            "-c",
            &silent_workload("optimize-strict-marker"),
        ],
    );
    let stderr = stderr_of(&output);
    assert!(!output.status.success(), "strict run must fail: {stderr}");
    assert!(
        stderr.contains("--strict rejects an incomplete recording"),
        "{stderr}"
    );
    assert!(
        !destination.join("index.json").exists(),
        "nothing is written"
    );
    assert_nothing_left(tmp.path());
}

#[test]
fn missing_command_names_it_and_path() {
    require_prerequisites!();
    let source = layout_ref(estargz_python(), PYTHON_IMAGE_TAG);
    let tmp = tempfile::tempdir().unwrap();
    let out = tempfile::tempdir().unwrap();

    let output = optimize(
        tmp.path(),
        &[
            &source,
            &format!("oci:{}:optimized", path_str(out.path())),
            "--",
            "no-such-program",
        ],
    );
    let stderr = stderr_of(&output);
    assert!(!output.status.success());
    assert!(
        stderr.contains(
            "command \"no-such-program\" not found in the image (searched PATH=/usr/local/sbin"
        ),
        "{stderr}"
    );
    assert_nothing_left(tmp.path());
}

#[test]
fn non_root_user_is_told_to_use_sudo() {
    require_or_skip!(Prereq::Root, Prereq::Binary("setpriv"));
    let output = Command::new("setpriv")
        .args(["--reuid=65534", "--regid=65534", "--clear-groups", "--"])
        .arg(env!("CARGO_BIN_EXE_lazypull"))
        .arg("optimize")
        .args(["oci:/nonexistent:1", "oci:/nonexistent-out:1", "--", "true"])
        .output()
        .unwrap();
    let stderr = stderr_of(&output);
    assert!(!output.status.success());
    assert!(stderr.contains("not running as root"), "{stderr}");
    assert!(stderr.contains("sudo"), "{stderr}");
}

#[test]
fn interrupt_during_workload_unmounts() {
    require_prerequisites!();
    let source = layout_ref(estargz_python(), PYTHON_IMAGE_TAG);
    let tmp = tempfile::tempdir().unwrap();
    let out = tempfile::tempdir().unwrap();
    let marker = "optimize-interrupt-marker";

    let mut child = lazypull()
        .arg("optimize")
        .arg("--tmpdir")
        .arg(tmp.path())
        .args([
            &source,
            &format!("oci:{}:optimized", path_str(out.path())),
            "--",
            "python3",
            "-c",
            &silent_workload(marker),
        ])
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut stderr = BufReader::new(child.stderr.take().unwrap());
    let mut seen = String::new();
    loop {
        let mut line = String::new();
        if stderr.read_line(&mut line).unwrap() == 0 {
            panic!("optimize ended before the workload ran: {seen}");
        }
        seen.push_str(&line);
        if line.contains("| working") {
            break;
        }
    }
    assert!(!processes_with(marker).is_empty(), "the workload runs");
    let status = Command::new("kill")
        .args(["-INT", &child.id().to_string()])
        .status()
        .unwrap();
    assert!(status.success());

    let mut rest = String::new();
    std::io::Read::read_to_string(&mut stderr, &mut rest).unwrap();
    let exit = child.wait().unwrap();
    assert!(!exit.success(), "an interrupted run fails: {seen}{rest}");
    assert!(rest.contains("interrupted"), "{rest}");
    assert!(
        processes_left_with(marker).is_empty(),
        "the workload was killed"
    );
    assert_nothing_left(tmp.path());
    assert!(
        !out.path().join("index.json").exists(),
        "nothing is written"
    );
}

#[test]
fn escaped_daemon_does_not_hold_the_run() {
    require_prerequisites!();
    let source = layout_ref(estargz_python(), PYTHON_IMAGE_TAG);
    let tmp = tempfile::tempdir().unwrap();
    let out = tempfile::tempdir().unwrap();
    let marker = "optimize-escaped-daemon-marker";
    // The daemon leaves the process group with setsid and keeps the workload's stdout and
    // stderr open for 300 s. The `:` after sleep keeps sh from replacing itself with sleep.
    let script = format!("setsid sh -c 'sleep 300; : {marker}' & sleep 1; echo started");

    let output = optimize(
        tmp.path(),
        &[
            &source,
            &format!("oci:{}:optimized", path_str(out.path())),
            "--timeout",
            "20",
            "--",
            "/bin/sh",
            "-c",
            &script,
        ],
    );
    let daemons = processes_with(marker);
    for pid in &daemons {
        let children =
            std::fs::read_to_string(format!("/proc/{pid}/task/{pid}/children")).unwrap_or_default();
        for child in children
            .split_whitespace()
            .chain([pid.to_string().as_str()])
        {
            let _ = Command::new("kill").arg(child).status();
        }
    }
    let stderr = stderr_of(&output);
    assert!(output.status.success(), "optimize failed: {stderr}");
    assert_eq!(
        daemons.len(),
        1,
        "optimize returned only after the daemon ended: {stderr}"
    );
    assert!(stderr.contains("still holds its output"), "{stderr}");
}
