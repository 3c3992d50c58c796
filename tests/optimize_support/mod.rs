//! Shared helpers of the `optimize_*` tests: the python test image as eStargz, runs of
//! `lazypull optimize`, TOC order of an output layer, and leftover checks.

#![allow(dead_code)]

use std::path::{Path, PathBuf};
use std::process::Output;
use std::sync::OnceLock;

use estargz::blob::{decode_toc, locate_toc};
use estargz::build::BuildOptions;
use lazypull_testkit::image::{PYTHON_IMAGE_TAG, cache_dir, python_image};
use sha2::Digest as _;

use crate::mount_util::{convert_layout, lazypull, path_str};

/// Bump when the conversion below changes, so a stale cached layout is rebuilt.
const CONVERSION_VERSION: &str = "1";

/// The python workload of the other tests, plus a readiness line and a long sleep, so that only
/// `--wait-for` ends it in time.
pub const READY_WORKLOAD: &str = "import json, sqlite3, ssl, email.mime.text, http.client, asyncio; \
c = sqlite3.connect(':memory:'); c.execute('create table t(x)'); c.execute('insert into t values (42)'); \
print(c.execute('select x from t').fetchone()[0]); print('OPTIMIZE-READY', flush=True); \
import time; time.sleep(300)";

/// Converts the python test image to eStargz (unprioritized) once per cache directory and
/// returns the layout directory. Its tag is [`PYTHON_IMAGE_TAG`].
pub fn estargz_python() -> &'static Path {
    static CONVERTED: OnceLock<PathBuf> = OnceLock::new();
    CONVERTED.get_or_init(|| {
        let source = python_image().expect("python test image builds");
        // Keyed by the source image too, so a rebuilt test image is converted again.
        let index = std::fs::read(source.join("index.json")).expect("source layout has an index");
        let source_id = &hex::encode(sha2::Sha256::digest(&index))[..12];
        let dir = cache_dir().join("images").join(format!(
            "python-optimize-estargz-v{CONVERSION_VERSION}-{source_id}"
        ));
        if dir.join("index.json").is_file() {
            return dir;
        }
        let work = dir.with_extension("tmp");
        let _ = std::fs::remove_dir_all(&work);
        let options = BuildOptions {
            threads: 2,
            ..BuildOptions::default()
        };
        convert_layout(&source, PYTHON_IMAGE_TAG, &work, &options).expect("python image converts");
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::rename(&work, &dir).expect("converted layout moves into the cache");
        dir
    })
}

/// Returns `oci:DIR:TAG` for a layout.
pub fn layout_ref(dir: &Path, tag: &str) -> String {
    format!("oci:{}:{tag}", path_str(dir))
}

/// Runs `lazypull optimize` with `args` and its temporary files in `tmpdir`.
pub fn optimize(tmpdir: &Path, args: &[&str]) -> Output {
    lazypull()
        .arg("optimize")
        .arg("--tmpdir")
        .arg(tmpdir)
        .args(args)
        .output()
        .expect("lazypull runs")
}

/// Returns the TOC entry names of an eStargz blob file, in TOC order.
pub fn toc_names(blob: &Path) -> Vec<String> {
    let bytes = std::fs::read(blob).expect("blob is readable");
    let location = locate_toc(&bytes.as_slice()).expect("blob has an eStargz footer");
    let start = location.offset as usize;
    let compressed = &bytes[start..start + location.compressed_len as usize];
    let limits = estargz::Limits::default();
    let json = decode_toc(compressed, &location, &limits).expect("TOC decodes");
    estargz::toc::parse_toc(&json, &limits)
        .expect("TOC parses")
        .entries
        .into_iter()
        .map(|entry| entry.name)
        .collect()
}

/// Asserts that nothing is mounted at or below `dir`, that no process names `dir` on its command
/// line and that `dir` is empty: the run removed its mount, its bind mounts, its serving process
/// and its temporary directory.
pub fn assert_nothing_left(dir: &Path) {
    let mounts = lazypull_testkit::mounts::mounts_under(dir);
    assert!(mounts.is_empty(), "mounts left behind: {mounts:?}");
    let servers = processes_with(&dir.to_string_lossy());
    assert!(
        servers.is_empty(),
        "serving processes left behind: {servers:?}"
    );
    let entries: Vec<_> = std::fs::read_dir(dir)
        .expect("temporary directory exists")
        .flatten()
        .map(|entry| entry.path())
        .collect();
    assert!(entries.is_empty(), "files left behind: {entries:?}");
}

/// Returns the process ids whose command line contains `marker`.
pub fn processes_with(marker: &str) -> Vec<u32> {
    let mut found = Vec::new();
    for entry in std::fs::read_dir("/proc").into_iter().flatten().flatten() {
        let Ok(pid) = entry.file_name().to_string_lossy().parse::<u32>() else {
            continue;
        };
        if pid == std::process::id() {
            continue;
        }
        let cmdline = std::fs::read(entry.path().join("cmdline")).unwrap_or_default();
        if String::from_utf8_lossy(&cmdline).contains(marker) {
            found.push(pid);
        }
    }
    found
}

/// Waits up to 5 s for every process whose command line contains `marker` to end, and
/// returns those still running. SIGKILL of a process group returns before the kernel has torn
/// down each member, so a check made right away can still see one.
pub fn processes_left_with(marker: &str) -> Vec<u32> {
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(5);
    loop {
        let found = processes_with(marker);
        if found.is_empty() || std::time::Instant::now() >= deadline {
            return found;
        }
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
}

/// Returns stderr as text.
pub fn stderr_of(output: &Output) -> String {
    String::from_utf8_lossy(&output.stderr).into_owned()
}
