//! `lazypull optimize` on the real python image from a registry. The source is a plain gzip
//! image whose python layer is an umoci diff layer (parent directories without tar entries).
//! The workload ends through `--wait-for`. The output image is checked by its TOC order and by a
//! lazy mount that prefetches the recorded files and runs the workload.

mod mount_util;
mod optimize_support;

use std::collections::HashSet;
use std::path::Path;
use std::process::Command;
use std::time::Instant;

use lazypull_testkit::image::{PYTHON_IMAGE_TAG, python_image};
use lazypull_testkit::registry::Registry;
use lazypull_testkit::{Prereq, require_or_skip};
use mount_util::{Mount, layout_layers, path_str};
use optimize_support::{READY_WORKLOAD, assert_nothing_left, optimize, stderr_of, toc_names};

macro_rules! require_prerequisites {
    () => {
        require_or_skip!(
            Prereq::Root,
            Prereq::Fuse,
            Prereq::Overlayfs,
            Prereq::Binary("chroot"),
            Prereq::Binary("skopeo"),
            Prereq::Binary("docker-registry")
        )
    };
}

/// The workload run in the optimized image's mount: the same imports, and the query result.
const CHECK_WORKLOAD: &str = "import json, sqlite3, ssl, email.mime.text, http.client, asyncio; \
c = sqlite3.connect(':memory:'); c.execute('create table t(x)'); c.execute('insert into t values (42)'); \
print(c.execute('select x from t').fetchone()[0])";

/// Returns, for each layer blob, the entry names before `.prefetch.landmark` and all names.
fn prioritized_sections(layout: &Path) -> Vec<(Vec<String>, Vec<String>)> {
    layout_layers(layout, "optimized")
        .unwrap()
        .iter()
        .map(|blob| {
            let names = toc_names(blob);
            let landmark = names
                .iter()
                .position(|name| name == estargz::PREFETCH_LANDMARK)
                .unwrap_or(0);
            (names[..landmark].to_vec(), names)
        })
        .collect()
}

#[test]
fn python_image_optimized_from_registry() {
    require_prerequisites!();
    let source_layout = python_image().expect("python test image builds");
    let registry = Registry::start().expect("registry starts");
    let source = registry
        .push_oci_layout(&source_layout, PYTHON_IMAGE_TAG, "python:plain")
        .expect("push succeeds");
    let tmp = tempfile::tempdir().unwrap();
    let out = tempfile::tempdir().unwrap();
    let destination = out.path().join("layout");
    let record = out.path().join("recorded.txt");

    let started = Instant::now();
    let output = optimize(
        tmp.path(),
        &[
            &source,
            &format!("oci:{}:optimized", path_str(&destination)),
            "--wait-for",
            "OPTIMIZE-READY",
            "--timeout",
            "40",
            "--record",
            path_str(&record),
            "--",
            "python3",
            "-c",
            READY_WORKLOAD,
        ],
    );
    let elapsed = started.elapsed();
    let stderr = stderr_of(&output);
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(output.status.success(), "optimize failed: {stderr}");
    eprintln!(
        "optimize of the python image: {:.1} s\n{stdout}",
        elapsed.as_secs_f64()
    );
    assert!(stderr.contains("is not eStargz"), "{stderr}");
    assert!(
        stderr.contains("  | 42"),
        "workload output is echoed: {stderr}"
    );
    assert!(stderr.contains("\"OPTIMIZE-READY\" appeared"), "{stderr}");
    assert!(stdout.contains("prioritized"), "{stdout}");
    assert_nothing_left(tmp.path());

    // Every recorded regular file is before the landmark of each layer that contains it.
    let recorded: HashSet<String> = std::fs::read_to_string(&record)
        .unwrap()
        .lines()
        .map(str::to_owned)
        .collect();
    assert!(
        recorded
            .iter()
            .any(|path| path.starts_with("usr/bin/python3")),
        "the interpreter is recorded: {recorded:?}"
    );
    let sections = prioritized_sections(&destination);
    assert_eq!(sections.len(), 2, "the image keeps its two layers");
    let mut found = 0;
    for (before, all) in &sections {
        let before: HashSet<&String> = before.iter().collect();
        for name in all.iter().filter(|name| recorded.contains(*name)) {
            assert!(before.contains(name), "{name} is after the landmark");
            found += 1;
        }
    }
    assert!(
        found >= recorded.len() / 2,
        "only {found} recorded paths are in the TOCs"
    );
    let python_layer = &sections[1].0;
    assert!(
        python_layer.iter().any(|name| name.contains("sqlite3")),
        "sqlite3 is prioritized in the python layer: {python_layer:?}"
    );

    // A lazy mount of the result prefetches those files and runs the workload.
    let image = format!("oci:{}:optimized", path_str(&destination));
    let mount = Mount::start(&image, &["--no-disk-cache"]).unwrap();
    let prefetched = mount.fresh_stats().unwrap();
    for layer in prefetched["layers"].as_array().unwrap() {
        assert_eq!(layer["prefetch_state"], "done", "layer stats: {layer}");
        assert!(
            layer["prefetch_bytes"].as_u64().unwrap() > 0,
            "layer stats: {layer}"
        );
    }
    let run = Command::new("chroot")
        .arg(mount.path())
        .args(["python3", "-c", CHECK_WORKLOAD])
        .output()
        .unwrap();
    assert!(
        run.status.success(),
        "{}",
        String::from_utf8_lossy(&run.stderr)
    );
    assert_eq!(String::from_utf8_lossy(&run.stdout).trim(), "42");
    let after = mount.fresh_stats().unwrap();
    let fetched_before = prefetched["total"]["bytes_fetched"].as_u64().unwrap();
    let fetched_after = after["total"]["bytes_fetched"].as_u64().unwrap();
    eprintln!(
        "prefetched {fetched_before} bytes; the workload fetched {} more",
        fetched_after - fetched_before
    );
    assert!(
        (fetched_after - fetched_before) * 10 < fetched_before,
        "the workload fetched {} bytes after a prefetch of {fetched_before}",
        fetched_after - fetched_before
    );
    mount.unmount().unwrap();
}
