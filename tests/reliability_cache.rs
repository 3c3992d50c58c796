//! Chunk-cache faults through `lazypull mount`: a cache file system filled to 100% and cache
//! files damaged between two mounts of the same cache directory.

mod hostile_support;
mod mount_util;

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::mpsc;
use std::time::{Duration, Instant};

use estargz::build::BuildOptions;
use hostile_support::{push_entry, random_bytes};
use lazypull_testkit::{Prereq, require_or_skip};
use mount_util::{Mount, lazypull, lazypull_ok, path_str, write_estargz_layout};

const MIB: usize = 1 << 20;

/// Writes a one-layer layout with `dir/big` (24 MiB) and `dir/second` (4 MiB), both random.
fn write_image(dir: &Path) -> (Vec<u8>, Vec<u8>) {
    let big = random_bytes(24 * MIB, 7);
    let second = random_bytes(4 * MIB, 11);
    let mut tar = Vec::new();
    push_entry(&mut tar, "dir/", b'5', "", b"");
    push_entry(&mut tar, "dir/big", b'0', "", &big);
    push_entry(&mut tar, "dir/second", b'0', "", &second);
    tar.resize(tar.len() + 1024, 0);
    let options = BuildOptions {
        chunk_size: MIB as u64,
        ..Default::default()
    };
    write_estargz_layout(dir, "latest", &[tar], &options).unwrap();
    (big, second)
}

/// A size-limited tmpfs mounted on a temporary directory, unmounted on drop.
struct Tmpfs {
    dir: tempfile::TempDir,
}

impl Tmpfs {
    fn mount(size: &str) -> Tmpfs {
        let dir = tempfile::Builder::new()
            .prefix("lazypull-small-fs-")
            .tempdir()
            .unwrap();
        let status = Command::new("mount")
            .args([
                "-t",
                "tmpfs",
                "-o",
                &format!("size={size}"),
                "lazypull-test",
            ])
            .arg(dir.path())
            .status()
            .unwrap();
        assert!(status.success(), "mounting a tmpfs failed: {status}");
        Tmpfs { dir }
    }

    fn path(&self) -> &Path {
        self.dir.path()
    }
}

impl Drop for Tmpfs {
    fn drop(&mut self) {
        lazypull_testkit::mounts::unmount_all_under(self.dir.path());
        let _ = Command::new("umount")
            .arg("-l")
            .arg(self.dir.path())
            .status();
    }
}

/// Writes to `path` until the file system reports it full.
fn fill(path: &Path) {
    use std::io::Write;
    let mut file = std::fs::File::create(path).unwrap();
    let block = vec![0xa5u8; 64 * 1024];
    loop {
        if let Err(err) = file.write_all(&block) {
            assert_eq!(err.raw_os_error(), Some(28), "expected ENOSPC, got {err}");
            break;
        }
    }
    let _ = file.sync_all();
}

/// Reads `path` on another thread and gives up waiting after `deadline`.
fn read_within(path: PathBuf, deadline: Duration) -> Option<std::io::Result<Vec<u8>>> {
    let (sender, receiver) = mpsc::channel();
    std::thread::spawn(move || {
        let _ = sender.send(std::fs::read(path));
    });
    receiver.recv_timeout(deadline).ok()
}

fn files_under(dir: &Path) -> Vec<PathBuf> {
    let mut files = Vec::new();
    let Ok(entries) = std::fs::read_dir(dir) else {
        return files;
    };
    for entry in entries.flatten() {
        let path = entry.path();
        if path.is_dir() {
            files.extend(files_under(&path));
        } else {
            files.push(path);
        }
    }
    files.sort();
    files
}

/// Runs `lazypull status` and fails the test if it does not respond within 10 s.
fn status_answers(mount_dir: &Path, state: &Path) {
    let mut child = lazypull()
        .args([
            "status",
            path_str(mount_dir),
            "--state-dir",
            path_str(state),
        ])
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    let started = Instant::now();
    loop {
        if let Some(status) = child.try_wait().unwrap() {
            assert!(status.success(), "lazypull status failed: {status}");
            return;
        }
        if started.elapsed() > Duration::from_secs(10) {
            let _ = child.kill();
            panic!("lazypull status did not respond within 10 s");
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

#[test]
fn full_cache_disk_serves_reads_then_recovers() {
    require_or_skip!(
        Prereq::Root,
        Prereq::Fuse,
        Prereq::Overlayfs,
        Prereq::Binary("fusermount3")
    );
    let layout = tempfile::tempdir().unwrap();
    let (big, second) = write_image(layout.path());
    // The cache and the state directory (records and the serving log) share one small disk.
    let disk = Tmpfs::mount("8m");
    let state = disk.path().join("state");
    let cache = disk.path().join("chunks");
    let mount_dir = tempfile::Builder::new()
        .prefix("lazypull-mnt-")
        .tempdir()
        .unwrap();
    let image = format!("oci:{}:latest", path_str(layout.path()));
    lazypull_ok(&[
        "mount",
        &image,
        path_str(mount_dir.path()),
        "--state-dir",
        path_str(&state),
        "--cache-dir",
        path_str(&cache),
        "--memory-cache-mib",
        "4",
        "--read-timeout",
        "20",
    ])
    .unwrap();
    let _cleanup = Cleanup(mount_dir.path().to_path_buf(), state.clone());

    let filler = disk.path().join("filler");
    fill(&filler);
    let started = Instant::now();
    let read = read_within(mount_dir.path().join("dir/big"), Duration::from_secs(60))
        .expect("a read with the cache disk full finishes within 60 s");
    let elapsed = started.elapsed();
    match read {
        Ok(content) => assert!(content == big, "dir/big read back wrong bytes"),
        Err(err) => assert_eq!(err.raw_os_error(), Some(5), "expected EIO, got {err}"),
    }
    eprintln!("read of 24 MiB with a full cache disk took {elapsed:?}");
    status_answers(mount_dir.path(), &state);

    std::fs::remove_file(&filler).unwrap();
    let cached_before = files_under(&cache).len();
    let read = read_within(mount_dir.path().join("dir/second"), Duration::from_secs(60))
        .expect("a read after space is freed finishes within 60 s");
    assert!(read.unwrap() == second, "dir/second read back wrong bytes");
    // The cache writes in the background; give it a moment before counting files.
    let deadline = Instant::now() + Duration::from_secs(10);
    while files_under(&cache).len() <= cached_before && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(100));
    }
    assert!(
        files_under(&cache).len() > cached_before,
        "caching did not resume after space was freed"
    );
    status_answers(mount_dir.path(), &state);
}

/// Unmounts a mount made without [`Mount`] (its state directory is on the test's tmpfs).
struct Cleanup(PathBuf, PathBuf);

impl Drop for Cleanup {
    fn drop(&mut self) {
        let _ = lazypull()
            .args([
                "unmount",
                path_str(&self.0),
                "--state-dir",
                path_str(&self.1),
            ])
            .output();
        lazypull_testkit::mounts::unmount_all_under(&self.0);
        lazypull_testkit::mounts::unmount_all_under(&self.1);
    }
}

#[test]
fn damaged_cache_files_are_refetched_after_remount() {
    require_or_skip!(
        Prereq::Root,
        Prereq::Fuse,
        Prereq::Overlayfs,
        Prereq::Binary("fusermount3")
    );
    let layout = tempfile::tempdir().unwrap();
    let (big, second) = write_image(layout.path());
    let cache = tempfile::tempdir().unwrap();
    let image = format!("oci:{}:latest", path_str(layout.path()));
    let args = ["--cache-dir", path_str(cache.path()), "--no-prefetch"];

    let first = Mount::start(&image, &args).unwrap();
    assert!(std::fs::read(first.path().join("dir/big")).unwrap() == big);
    assert!(std::fs::read(first.path().join("dir/second")).unwrap() == second);
    first.unmount().unwrap();
    drop(first);

    let files = files_under(cache.path());
    assert!(
        files.len() >= 4,
        "expected cached chunk files, found {files:?}"
    );
    // Flip bytes in one file, truncate a second and empty a third.
    let mut flipped = std::fs::read(&files[0]).unwrap();
    let middle = flipped.len() / 2;
    flipped[middle] ^= 0xff;
    std::fs::write(&files[0], &flipped).unwrap();
    let truncated = std::fs::read(&files[1]).unwrap();
    std::fs::write(&files[1], &truncated[..truncated.len() / 3]).unwrap();
    std::fs::write(&files[2], b"").unwrap();

    let second_mount = Mount::start(&image, &args).unwrap();
    assert!(
        std::fs::read(second_mount.path().join("dir/big")).unwrap() == big,
        "dir/big read back wrong bytes after the cache was damaged"
    );
    assert!(
        std::fs::read(second_mount.path().join("dir/second")).unwrap() == second,
        "dir/second read back wrong bytes after the cache was damaged"
    );
    // Only the three damaged chunks came from the network again; the rest were cache hits.
    let stats = second_mount.fresh_stats().unwrap();
    assert_eq!(stats["total"]["chunks_fetched"], 3, "{stats:#}");
    assert!(
        stats["total"]["cache_hits"].as_u64().unwrap() > 0,
        "{stats:#}"
    );
    second_mount.unmount().unwrap();
}
