//! The real python image (Debian bookworm + python3, two layers), converted to eStargz and
//! served lazily: a workload run through `chroot`, byte-exactness against GNU tar, recovery
//! after `kill -9`, disk-cache reuse, and EIO (not a hang) once the registry is gone.

mod mount_util;

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::OnceLock;
use std::time::{Duration, Instant};

use estargz::build::BuildOptions;
use lazypull_testkit::image::{PYTHON_IMAGE_TAG, cache_dir, python_image};
use lazypull_testkit::registry::Registry;
use lazypull_testkit::tree::{DiffOptions, extract_layers_merged, snapshot};
use lazypull_testkit::{Prereq, require_or_skip};
use mount_util::{Mount, convert_layout, path_str};
use sha2::Digest as _;

/// The python workload: imports that touch json, sqlite3, ssl, email, http and asyncio, then one
/// sqlite query.
const WORKLOAD: &str = "import json, sqlite3, ssl, email.mime.text, http.client, asyncio; \
c = sqlite3.connect(':memory:'); c.execute('create table t(x)'); c.execute('insert into t values (42)'); \
print(c.execute('select x from t').fetchone()[0])";

/// Bump when the conversion below changes, so a stale cached layout is rebuilt.
const CONVERSION_VERSION: &str = "1";

/// errno values (Linux) the tests expect, without a libc dependency in this package.
const EIO: i32 = 5;
const ENOTCONN: i32 = 107;

macro_rules! require_prerequisites {
    () => {
        require_or_skip!(
            Prereq::Root,
            Prereq::Fuse,
            Prereq::Overlayfs,
            Prereq::Binary("tar"),
            Prereq::Binary("chroot"),
            Prereq::Binary("skopeo"),
            Prereq::Binary("docker-registry")
        )
    };
}

/// The eStargz version of the python image, converted once per cache directory: layers
/// converted by `estargz::build` in a layout, plus the original uncompressed tars.
fn converted_python() -> &'static (PathBuf, Vec<PathBuf>) {
    static CONVERTED: OnceLock<(PathBuf, Vec<PathBuf>)> = OnceLock::new();
    CONVERTED.get_or_init(|| {
        let source = python_image().expect("python test image builds");
        // Keyed by the source image too, so a rebuilt test image is converted again.
        let index = std::fs::read(source.join("index.json")).expect("source layout has an index");
        let source_id = &hex::encode(sha2::Sha256::digest(&index))[..12];
        let dir = cache_dir()
            .join("images")
            .join(format!("python-estargz-v{CONVERSION_VERSION}-{source_id}"));
        let tars = |dir: &Path| -> Vec<PathBuf> {
            let mut tars: Vec<PathBuf> = (0..)
                .map(|n| dir.join(format!("layer-{n}.tar")))
                .take_while(|path| path.is_file())
                .collect();
            tars.sort();
            tars
        };
        if dir.join("index.json").is_file() && !tars(&dir).is_empty() {
            return (dir.clone(), tars(&dir));
        }
        let started = Instant::now();
        let work = dir.with_extension("tmp");
        let _ = std::fs::remove_dir_all(&work);
        let options = BuildOptions {
            threads: 2,
            ..BuildOptions::default()
        };
        convert_layout(&source, PYTHON_IMAGE_TAG, &work, &options).expect("python image converts");
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::rename(&work, &dir).expect("converted layout moves into the cache");
        eprintln!(
            "converted the python image in {:.1} s",
            started.elapsed().as_secs_f64()
        );
        (dir.clone(), tars(&dir))
    })
}

/// Starts a registry and pushes the converted image; returns the registry and the reference.
fn registry_with_python() -> (Registry, String) {
    let (layout, _) = converted_python();
    let registry = Registry::start().expect("registry starts");
    let reference = registry
        .push_oci_layout(layout, PYTHON_IMAGE_TAG, "python:esgz")
        .expect("push succeeds");
    (registry, reference)
}

fn run_workload(root: &Path) -> (String, Duration) {
    let started = Instant::now();
    let output = Command::new("chroot")
        .arg(root)
        .args(["python3", "-c", WORKLOAD])
        .output()
        .expect("chroot runs");
    let elapsed = started.elapsed();
    assert!(
        output.status.success(),
        "workload failed: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    (
        String::from_utf8_lossy(&output.stdout).trim().to_owned(),
        elapsed,
    )
}

fn compressed_size(layout: &Path) -> u64 {
    mount_util::layout_layers(layout, PYTHON_IMAGE_TAG)
        .unwrap()
        .iter()
        .map(|blob| std::fs::metadata(blob).unwrap().len())
        .sum()
}

#[test]
fn python_workload_fetches_small_fraction() {
    require_prerequisites!();
    let (layout, _) = converted_python();
    let (registry, reference) = registry_with_python();
    let trace_dir = tempfile::tempdir().unwrap();
    let trace = trace_dir.path().join("trace.txt");
    let cache = tempfile::tempdir().unwrap();

    let started = Instant::now();
    let mount = Mount::start(
        &reference,
        &[
            "--record-trace",
            path_str(&trace),
            "--cache-dir",
            path_str(cache.path()),
        ],
    )
    .unwrap();
    let mount_time = started.elapsed();
    let (printed, run_time) = run_workload(mount.path());
    assert_eq!(printed, "42");

    let stats = mount.fresh_stats().unwrap();
    let fetched = stats["total"]["bytes_fetched"].as_u64().unwrap();
    let image_size = compressed_size(layout);
    let served: u64 = stats["layers"]
        .as_array()
        .unwrap()
        .iter()
        .map(|layer| registry.blob_bytes_served(layer["digest"].as_str().unwrap()))
        .sum();
    eprintln!(
        "python workload: mount {:.2} s, run {:.2} s, fetched {fetched} of {image_size} compressed bytes ({:.1}%), registry served {served} blob bytes, stats {stats}",
        mount_time.as_secs_f64(),
        run_time.as_secs_f64(),
        100.0 * fetched as f64 / image_size as f64
    );
    assert!(fetched > 0, "the workload must fetch something");
    assert!(
        fetched * 2 < image_size,
        "fetched {fetched} of {image_size} bytes: more than half the image"
    );
    assert!(
        served <= fetched,
        "the registry served {served} bytes but the mount counted {fetched}"
    );

    let recorded = std::fs::read_to_string(&trace).unwrap();
    let paths: Vec<&str> = recorded.lines().collect();
    assert!(
        paths.iter().any(|p| p.starts_with("usr/bin/python3")),
        "trace lacks the interpreter: {recorded}"
    );
    assert!(
        paths.iter().any(|p| p.contains("sqlite3")),
        "trace lacks sqlite3: {recorded}"
    );
    assert!(
        paths.iter().all(|p| !p.starts_with('/')),
        "trace paths must be relative"
    );
    let unique: std::collections::BTreeSet<&&str> = paths.iter().collect();
    assert_eq!(unique.len(), paths.len(), "every path is recorded once");
    eprintln!("trace: {} paths", paths.len());
    mount.unmount().unwrap();
}

#[test]
fn python_mount_matches_tar_extraction() {
    require_prerequisites!();
    let (layout, tars) = converted_python();
    let image = format!("oci:{}:{PYTHON_IMAGE_TAG}", path_str(layout));
    let mount = Mount::start(&image, &["--no-disk-cache"]).unwrap();
    let started = Instant::now();
    let actual = snapshot(mount.path()).unwrap();
    let read_time = started.elapsed();
    let pairs: Vec<(&Path, bool)> = tars.iter().map(|tar| (tar.as_path(), false)).collect();
    let expected = extract_layers_merged(&pairs).unwrap();
    let options = DiffOptions {
        ignore_dir_mtimes: true,
        ..DiffOptions::default()
    };
    let differences = expected.diff_with(&actual, &options);
    assert!(
        differences.is_empty(),
        "{} differences, first: {:#?}",
        differences.len(),
        &differences[..differences.len().min(30)]
    );
    eprintln!(
        "python image: {} paths identical, read through the mount in {:.1} s",
        actual.nodes.len(),
        read_time.as_secs_f64()
    );
    mount.unmount().unwrap();
}

/// Checks whether `path` is a FUSE mount whose server is gone. Opening a directory always reaches the
/// server, unlike `stat`, which the kernel may serve from its attribute cache.
fn is_dead_mount(path: &Path) -> bool {
    matches!(std::fs::read_dir(path), Err(error) if error.raw_os_error() == Some(ENOTCONN))
}

/// Counts the files below `dir`.
fn files_below(dir: &Path) -> usize {
    std::fs::read_dir(dir)
        .into_iter()
        .flatten()
        .flatten()
        .map(|entry| match entry.file_type() {
            Ok(kind) if kind.is_dir() => files_below(&entry.path()),
            Ok(_) => 1,
            Err(_) => 0,
        })
        .sum()
}

/// Waits until the number of files in the disk cache `dir` stops changing (at most 10 s). The
/// server writes chunk files once reads have gone quiet, so a kill right after a workload would
/// otherwise find few of them written.
fn wait_for_disk_cache(dir: &Path) {
    let deadline = Instant::now() + Duration::from_secs(10);
    let mut last = files_below(dir);
    while Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(300));
        let now = files_below(dir);
        if now == last && now > 0 {
            return;
        }
        last = now;
    }
}

#[test]
fn killed_server_is_cleaned_and_cache_reused() {
    require_prerequisites!();
    let (registry, reference) = registry_with_python();
    let cache = tempfile::tempdir().unwrap();
    let cache_arg = path_str(cache.path()).to_owned();

    let trace_dir = tempfile::tempdir().unwrap();
    let trace = trace_dir.path().join("trace.txt");
    let first = Mount::start(
        &reference,
        &[
            "--cache-dir",
            &cache_arg,
            "--record-trace",
            path_str(&trace),
        ],
    )
    .unwrap();
    assert_eq!(run_workload(first.path()).0, "42");
    let first_fetched = first.fresh_stats().unwrap()["total"]["bytes_fetched"]
        .as_u64()
        .unwrap();
    wait_for_disk_cache(cache.path());
    let pid = first.pid().unwrap();
    let layer_dir = first
        .state_dir()
        .read_dir()
        .unwrap()
        .flatten()
        .map(|e| e.path())
        .find(|p| p.join("layers").is_dir())
        .unwrap();

    let killed = Command::new("kill")
        .args(["-9", &pid.to_string()])
        .status()
        .unwrap();
    assert!(killed.success());
    let deadline = Instant::now() + Duration::from_secs(10);
    while Path::new(&format!("/proc/{pid}")).exists() && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(50));
    }
    assert!(
        is_dead_mount(&layer_dir.join("layers/0")),
        "a killed server leaves a dead FUSE mount"
    );
    // The trace was appended as paths arrived, so the kill lost none of them.
    let recorded = std::fs::read_to_string(&trace).unwrap();
    assert!(
        recorded.lines().any(|path| path.contains("sqlite3")),
        "trace after kill -9: {recorded}"
    );

    let started = Instant::now();
    first.unmount().unwrap();
    eprintln!(
        "unmount after kill -9 took {:.2} s",
        started.elapsed().as_secs_f64()
    );
    let leftover: Vec<_> = lazypull_testkit::mounts::mounts_under(first.state_dir())
        .into_iter()
        .chain(lazypull_testkit::mounts::mounts_under(first.path()))
        .collect();
    assert!(
        leftover.is_empty(),
        "mounts left after unmount: {leftover:?}"
    );
    // Only the mount point's lock file stays; it is reused by the next mount.
    let records: Vec<_> = first
        .state_dir()
        .join("mounts")
        .read_dir()
        .unwrap()
        .map(|entry| entry.unwrap().path())
        .filter(|path| path.extension().is_none_or(|ext| ext != "lock"))
        .collect();
    assert!(records.is_empty(), "mount record left behind: {records:?}");
    assert!(!layer_dir.exists(), "mount directory left behind");

    let second = Mount::start(&reference, &["--cache-dir", &cache_arg]).unwrap();
    assert_eq!(run_workload(second.path()).0, "42");
    let second_fetched = second.fresh_stats().unwrap()["total"]["bytes_fetched"]
        .as_u64()
        .unwrap();
    eprintln!(
        "bytes fetched: first mount {first_fetched}, second mount with the disk cache {second_fetched}"
    );
    assert!(
        second_fetched < first_fetched / 2,
        "second mount fetched {second_fetched}, first {first_fetched}"
    );
    second.unmount().unwrap();
    drop(registry);
}

#[test]
fn registry_loss_gives_eio_and_keeps_cached_files() {
    require_prerequisites!();
    let (registry, reference) = registry_with_python();
    let mount = Mount::start(
        &reference,
        &[
            "--no-disk-cache",
            "--no-prefetch",
            "--read-timeout",
            "30",
            "--request-timeout",
            "5",
            "--max-retries",
            "2",
        ],
    )
    .unwrap();
    let cached = mount.path().join("usr/lib/os-release");
    let cached_bytes = std::fs::read(&cached).unwrap();
    drop(registry);

    // Drop the kernel's page cache so the next reads reach the FUSE server.
    std::fs::write("/proc/sys/vm/drop_caches", "3").unwrap();
    let uncached = mount.path().join("usr/bin/python3.11");
    let started = Instant::now();
    let error = std::fs::read(&uncached).unwrap_err();
    let elapsed = started.elapsed();
    eprintln!(
        "uncached read failed after {:.2} s with {error}",
        elapsed.as_secs_f64()
    );
    assert_eq!(error.raw_os_error(), Some(EIO), "{error}");
    assert!(elapsed < Duration::from_secs(60), "EIO took {elapsed:?}");
    assert_eq!(
        std::fs::read(&cached).unwrap(),
        cached_bytes,
        "cached files keep being served"
    );
    mount.unmount().unwrap();
}

#[test]
fn recorded_trace_optimizes_conversion() {
    require_prerequisites!();
    let (layout, _) = converted_python();
    let work = tempfile::tempdir().unwrap();
    let trace = work.path().join("trace.txt");

    // 1. Record what the workload opens on the unoptimized image.
    let plain_image = format!("oci:{}:{PYTHON_IMAGE_TAG}", path_str(layout));
    let plain = Mount::start(
        &plain_image,
        &["--no-disk-cache", "--record-trace", path_str(&trace)],
    )
    .unwrap();
    assert_eq!(run_workload(plain.path()).0, "42");
    let plain_stats = plain.fresh_stats().unwrap();
    plain.unmount().unwrap();
    let recorded = std::fs::read_to_string(&trace).unwrap();
    assert!(
        recorded.lines().count() > 50,
        "trace has {} paths",
        recorded.lines().count()
    );

    // 2. Convert the original image with the trace as the prioritized list.
    let source = python_image().unwrap();
    let optimized_dir = work.path().join("optimized");
    let started = Instant::now();
    mount_util::lazypull_ok(&[
        "convert",
        "--prioritize",
        path_str(&trace),
        "--progress",
        "none",
        &format!("oci:{}:{PYTHON_IMAGE_TAG}", path_str(&source)),
        &format!("oci:{}:opt", path_str(&optimized_dir)),
    ])
    .unwrap();
    eprintln!(
        "lazypull convert --prioritize took {:.1} s",
        started.elapsed().as_secs_f64()
    );

    // 3. The optimized image prefetches the workload's files, so running it fetches little.
    let optimized = Mount::start(
        &format!("oci:{}:opt", path_str(&optimized_dir)),
        &["--no-disk-cache"],
    )
    .unwrap();
    let ready_stats = optimized.stats().unwrap();
    assert_eq!(run_workload(optimized.path()).0, "42");
    let after_stats = optimized.fresh_stats().unwrap();
    optimized.unmount().unwrap();

    let misses = |stats: &serde_json::Value| stats["total"]["cache_misses"].as_u64().unwrap();
    let prefetched = ready_stats["total"]["prefetch_bytes"].as_u64().unwrap();
    let on_demand = misses(&after_stats) - misses(&ready_stats);
    eprintln!(
        "unoptimized: {} chunk fetches during the run; optimized: {prefetched} bytes prefetched, {on_demand} chunk fetches during the run",
        misses(&plain_stats)
    );
    assert!(
        prefetched > 0,
        "the optimized image prefetches: {ready_stats}"
    );
    assert!(
        on_demand * 4 < misses(&plain_stats),
        "optimized run fetched {on_demand} chunks on demand, unoptimized {}",
        misses(&plain_stats)
    );
}
