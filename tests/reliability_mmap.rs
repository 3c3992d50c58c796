//! A mapped, uncached page whose blob range the registry refuses (403): the page fault gives
//! SIGBUS to the mapping process, `read()` gets EIO, and the mount stays usable: cached files
//! still read, and once the registry serves the range again the same file reads back correctly.

mod hostile_support;
mod mount_util;

use std::os::unix::process::ExitStatusExt;
use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

use hostile_support::random_bytes;
use lazypull_testkit::faultproxy::{Fault, FaultPlan, FaultProxy, ProxyOptions, Rule};
use lazypull_testkit::image::write_oci_layout;
use lazypull_testkit::registry::Registry;
use lazypull_testkit::tarbuild::{Builder, Entry};
use lazypull_testkit::{Prereq, require_or_skip};
use mount_util::{Mount, lazypull_ok, path_str};

const SIGBUS: i32 = 7;
const EIO: i32 = 5;

/// Maps `path` read-only in a Python child and touches the page at `offset`.
fn touch_mapped_page(path: &Path, offset: usize) -> std::process::ExitStatus {
    let script = "import mmap, sys\n\
                  f = open(sys.argv[1], 'rb')\n\
                  m = mmap.mmap(f.fileno(), 0, prot=mmap.PROT_READ)\n\
                  sys.stdout.write(str(m[int(sys.argv[2])]))\n";
    Command::new("python3")
        .args(["-c", script, path_str(path), &offset.to_string()])
        .output()
        .expect("failed to run python3")
        .status
}

#[test]
fn refused_range_gives_sigbus_and_eio() {
    require_or_skip!(
        Prereq::Root,
        Prereq::Fuse,
        Prereq::Overlayfs,
        Prereq::Binary("fusermount3"),
        Prereq::Binary("docker-registry"),
        Prereq::Binary("python3")
    );
    let library = random_bytes(8 << 20, 3);
    let config = b"cached before the registry failed\n".to_vec();
    let mut tar = Builder::new();
    tar.append(&Entry::dir("lib"));
    tar.append(&Entry::file("lib/libbig.so", &library));
    tar.append(&Entry::dir("etc"));
    tar.append(&Entry::file("etc/config", &config));
    let layout = tempfile::tempdir().unwrap();
    write_oci_layout(layout.path(), "v1", &[tar.finish()], &["/bin/true"]).unwrap();

    let registry = Registry::start().unwrap();
    let tmp = tempfile::tempdir().unwrap();
    let source = format!("oci:{}:v1", path_str(layout.path()));
    let destination = format!("{}/app:esgz", registry.host());
    lazypull_ok(&[
        "convert",
        &source,
        &destination,
        "--chunk-size",
        "1048576",
        "--tmpdir",
        path_str(tmp.path()),
    ])
    .unwrap();

    let proxy = FaultProxy::start(&registry.host(), ProxyOptions::default()).unwrap();
    let image = format!("{}/app:esgz", proxy.host());
    let mount = Mount::start(
        &image,
        &[
            "--no-disk-cache",
            "--no-prefetch",
            "--readahead-kib",
            "0",
            "--max-retries",
            "1",
            "--read-timeout",
            "10",
        ],
    )
    .unwrap();
    assert_eq!(
        std::fs::read(mount.path().join("etc/config")).unwrap(),
        config
    );

    proxy.set_faults(FaultPlan::Rules(vec![
        Rule::blobs(Fault::Status(403)).ranged(),
    ]));
    let so = mount.path().join("lib/libbig.so");
    let started = Instant::now();
    let status = touch_mapped_page(&so, 5 << 20);
    assert_eq!(
        status.signal(),
        Some(SIGBUS),
        "touching an unavailable mapped page ended with {status}"
    );
    let err = std::fs::read(&so).expect_err("read of an unavailable file succeeded");
    assert_eq!(err.raw_os_error(), Some(EIO), "{err}");
    assert!(
        started.elapsed() < Duration::from_secs(60),
        "failing took {:?}",
        started.elapsed()
    );
    assert!(proxy.handle().injected_total() > 0, "no 403 was injected");

    // The mount is still usable: cached bytes, status, and a retry once the registry serves the range again.
    assert_eq!(
        std::fs::read(mount.path().join("etc/config")).unwrap(),
        config
    );
    mount.stats().unwrap();
    proxy.clear();
    let content = std::fs::read(&so).unwrap();
    assert!(
        content == library,
        "lib/libbig.so read back wrong bytes after recovery"
    );
    let status = touch_mapped_page(&so, 5 << 20);
    assert!(
        status.success(),
        "touching the mapped page after recovery ended with {status}"
    );
    mount.unmount().unwrap();
}
