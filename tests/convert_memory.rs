//! Memory of `lazypull convert` stays bounded by jobs × threads × chunk size, not by the layer
//! size: a 1 GiB layer converts with a peak RSS far below its size.
//!
//! Run it with `cargo test --release --test convert_memory -- --ignored`; `benches/convert.sh`
//! measures the same layer against other tools.

mod convert_support;

use std::io::{BufWriter, Read, Write};
use std::path::Path;
use std::process::Command;

use convert_support::*;
use lazypull_testkit::tarbuild::{Builder, Entry, pattern, text_pattern};
use lazypull_testkit::{Prereq, require_or_skip};
use sha2::{Digest, Sha256};

/// Size of each file in the synthetic layer.
const FILE_BYTES: usize = 64 << 20;
/// Files in the layer: 16 × 64 MiB = 1 GiB.
const FILES: usize = 16;
/// Peak RSS allowed for one job with 2 threads and 4 MiB chunks, in KiB.
const MAX_RSS_KIB: u64 = 300 << 10;

/// Writes a 1 GiB tar (half incompressible, half text-like) one file at a time.
fn write_big_tar(path: &Path) {
    let file = BufWriter::with_capacity(1 << 20, std::fs::File::create(path).unwrap());
    let mut tar = Builder::from_writer(file);
    tar.append(&Entry::dir("data"));
    for i in 0..FILES {
        let content = if i % 2 == 0 {
            pattern(FILE_BYTES, i as u64)
        } else {
            text_pattern(FILE_BYTES, i as u64)
        };
        tar.append(&Entry::file(format!("data/file-{i:02}.bin"), content));
    }
    let mut out = tar.finish();
    out.flush().unwrap();
}

/// sha256 and size of a file, read in 1 MiB pieces.
fn digest_file(path: &Path) -> (String, u64) {
    let mut file = std::fs::File::open(path).unwrap();
    let mut hasher = Sha256::new();
    let mut buf = vec![0u8; 1 << 20];
    let mut total = 0;
    loop {
        let n = file.read(&mut buf).unwrap();
        if n == 0 {
            break;
        }
        hasher.update(&buf[..n]);
        total += n as u64;
    }
    (format!("sha256:{}", hex::encode(hasher.finalize())), total)
}

#[test]
#[ignore = "slow: 1 GiB"]
fn one_gib_layer_converts_in_bounded_memory() {
    require_or_skip!(Prereq::Binary("python3"), Prereq::Binary("pigz"));
    let work = scratch("lazypull-convert-work-");
    let tmp = scratch("lazypull-convert-tmp-");
    let tar = work.path().join("layer.tar");
    write_big_tar(&tar);
    let (diff_id, _) = digest_file(&tar);

    let source = work.path().join("source");
    std::fs::create_dir_all(source.join("blobs/sha256")).unwrap();
    let gz = work.path().join("layer.tar.gz");
    let status = Command::new("sh")
        .arg("-c")
        .arg(format!(
            "pigz -p 2 -1 -c {} > {}",
            tar.display(),
            gz.display()
        ))
        .status()
        .unwrap();
    assert!(status.success(), "pigz failed");
    std::fs::remove_file(&tar).unwrap();
    let (layer_digest, layer_size) = digest_file(&gz);
    std::fs::rename(&gz, blob_path(&source, &layer_digest)).unwrap();

    // Config and manifest with the real digests; the layer content is not needed in memory.
    let placeholder = SourceLayer::new(Vec::new(), LAYER_GZIP, Vec::new());
    let (manifest_digest, _) = write_image(&source, &[placeholder], "amd64");
    let mut manifest = read_json(&source, &manifest_digest);
    manifest["layers"][0]["digest"] = serde_json::json!(layer_digest);
    manifest["layers"][0]["size"] = serde_json::json!(layer_size);
    let config_digest = manifest["config"]["digest"].as_str().unwrap().to_string();
    let mut config = read_json(&source, &config_digest);
    config["rootfs"]["diff_ids"][0] = serde_json::json!(diff_id);
    let config_bytes = serde_json::to_vec(&config).unwrap();
    manifest["config"]["digest"] = serde_json::json!(write_blob(&source, &config_bytes));
    manifest["config"]["size"] = serde_json::json!(config_bytes.len());
    let manifest_bytes = serde_json::to_vec(&manifest).unwrap();
    write_index(
        &source,
        &[(
            write_blob(&source, &manifest_bytes),
            manifest_bytes.len(),
            OCI_MANIFEST.into(),
            None,
            Some("big".into()),
        )],
    );

    // ru_maxrss of the finished child, as the kernel accounts it.
    let wrapper = "import resource, subprocess, sys\n\
                   code = subprocess.run(sys.argv[1:]).returncode\n\
                   print('maxrss_kib', resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss, file=sys.stderr)\n\
                   sys.exit(code)";
    let output = Command::new("python3")
        .arg("-c")
        .arg(wrapper)
        .arg(env!("CARGO_BIN_EXE_lazypull"))
        .arg("convert")
        .arg(format!("oci:{}:big", source.display()))
        .arg(format!("oci:{}:esgz", work.path().join("out").display()))
        .args([
            "--jobs",
            "2",
            "--threads",
            "2",
            "--progress",
            "none",
            "--tmpdir",
        ])
        .arg(tmp.path())
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(output.status.success(), "conversion failed: {stderr}");
    let rss_kib: u64 = stderr
        .lines()
        .find_map(|line| line.strip_prefix("maxrss_kib "))
        .and_then(|value| value.trim().parse().ok())
        .unwrap_or_else(|| panic!("no maxrss line in: {stderr}"));
    eprintln!("peak RSS converting a 1 GiB layer: {} MiB", rss_kib >> 10);
    assert!(
        rss_kib < MAX_RSS_KIB,
        "peak RSS {rss_kib} KiB is above {MAX_RSS_KIB} KiB"
    );
    assert_dir_empty(tmp.path());
}
