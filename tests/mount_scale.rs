//! A layer with 100,000 files and a 100-level, 4000-byte deep path mounts, lists and reads
//! correctly, with the time to first listing, a full walk and the server's memory reported.

mod mount_util;

use std::path::{Path, PathBuf};
use std::time::Instant;

use estargz::build::BuildOptions;
use lazypull_testkit::tarbuild::{Builder, Entry};
use lazypull_testkit::{Prereq, require_or_skip};
use mount_util::{Mount, path_str, write_estargz_layout};

const DIRS: usize = 200;
const FILES_PER_DIR: usize = 500;
const DEPTH: usize = 100;

fn deep_path() -> String {
    // 100 components of 39 characters plus separators: 3999 bytes before the file name.
    (0..DEPTH)
        .map(|level| format!("level-{level:03}-{}", "d".repeat(29)))
        .collect::<Vec<_>>()
        .join("/")
}

fn big_tar() -> Vec<u8> {
    let mut tar = Builder::new();
    for dir in 0..DIRS {
        for file in 0..FILES_PER_DIR {
            let name = format!("many/dir-{dir:03}/file-{file:04}-{}", "n".repeat(24));
            tar.append(&Entry::file(name, format!("{dir:03}:{file:04}:content")));
        }
    }
    tar.append(&Entry::file(format!("{}/bottom", deep_path()), b"deep\n"));
    tar.finish()
}

fn count_entries(dir: &Path) -> usize {
    let mut count = 0;
    let mut pending = vec![dir.to_path_buf()];
    while let Some(dir) = pending.pop() {
        for entry in std::fs::read_dir(&dir).unwrap() {
            let entry = entry.unwrap();
            count += 1;
            if entry.file_type().unwrap().is_dir() {
                pending.push(entry.path());
            }
        }
    }
    count
}

fn rss_kib(pid: u32) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
    status
        .lines()
        .find_map(|line| line.strip_prefix("VmRSS:"))
        .and_then(|value| value.trim().trim_end_matches("kB").trim().parse().ok())
        .unwrap_or(0)
}

#[test]
fn hundred_thousand_files_mount_and_list() {
    require_or_skip!(Prereq::Root, Prereq::Fuse, Prereq::Overlayfs);
    let layout = tempfile::tempdir().unwrap();
    let started = Instant::now();
    let options = BuildOptions {
        threads: 2,
        ..BuildOptions::default()
    };
    write_estargz_layout(layout.path(), "latest", &[big_tar()], &options).unwrap();
    eprintln!(
        "built and converted {} files in {:.1} s",
        DIRS * FILES_PER_DIR,
        started.elapsed().as_secs_f64()
    );

    let started = Instant::now();
    let mount = Mount::start(
        &format!("oci:{}:latest", path_str(layout.path())),
        &["--no-disk-cache"],
    )
    .unwrap();
    let mount_time = started.elapsed();
    let started = Instant::now();
    let top: Vec<_> = std::fs::read_dir(mount.path().join("many"))
        .unwrap()
        .collect();
    let first_ls = started.elapsed();
    assert_eq!(top.len(), DIRS);

    let started = Instant::now();
    let entries = count_entries(mount.path());
    let walk_time = started.elapsed();
    // Files, their directories, `many`, the deep chain and its file.
    assert_eq!(entries, DIRS * FILES_PER_DIR + DIRS + 1 + DEPTH + 1);

    let deep: PathBuf = mount.path().join(deep_path()).join("bottom");
    assert!(deep.as_os_str().len() > 4000, "{}", deep.display());
    assert_eq!(std::fs::read(&deep).unwrap(), b"deep\n");
    let sample = mount
        .path()
        .join(format!("many/dir-123/file-0456-{}", "n".repeat(24)));
    assert_eq!(std::fs::read_to_string(sample).unwrap(), "123:0456:content");

    let rss = rss_kib(mount.pid().unwrap());
    eprintln!(
        "mount {:.2} s, first ls {:.3} s, walk of {entries} entries {:.2} s, server RSS {} MiB",
        mount_time.as_secs_f64(),
        first_ls.as_secs_f64(),
        walk_time.as_secs_f64(),
        rss / 1024
    );
    mount.unmount().unwrap();
}

/// More layers than fit the one-page overlayfs option string of mount(2) (about 45 bytes a
/// layer here) are stacked layer by layer, with upper layers shadowing and deleting files of
/// lower ones.
#[test]
fn image_with_120_layers_stacks_in_order() {
    require_or_skip!(Prereq::Root, Prereq::Fuse, Prereq::Overlayfs);
    const LAYERS: usize = 120;
    let tars: Vec<Vec<u8>> = (0..LAYERS)
        .map(|n| {
            let mut tar = Builder::new();
            tar.append(&Entry::file(
                format!("layers/{n:03}"),
                format!("layer {n}\n"),
            ));
            tar.append(&Entry::file("shared", format!("from layer {n}\n")));
            if n == LAYERS - 1 {
                tar.append(&Entry::whiteout("layers/000"));
            }
            tar.finish()
        })
        .collect();
    let layout = tempfile::tempdir().unwrap();
    write_estargz_layout(layout.path(), "latest", &tars, &BuildOptions::default()).unwrap();

    let mount = Mount::start(&format!("oci:{}:latest", path_str(layout.path())), &[]).unwrap();
    let lowers = std::fs::read_dir(mount.state_dir())
        .unwrap()
        .filter_map(|entry| {
            let layers = entry.ok()?.path().join("layers");
            layers.is_dir().then_some(layers)
        })
        .next()
        .expect("the state directory holds the layer mounts");
    let options_len: usize = (0..LAYERS)
        .map(|n| lowers.join(n.to_string()).as_os_str().len() + 1)
        .sum();
    assert!(
        options_len > 4096,
        "the layers' paths take only {options_len} bytes"
    );

    assert_eq!(
        std::fs::read_to_string(mount.path().join("shared")).unwrap(),
        format!("from layer {}\n", LAYERS - 1)
    );
    assert!(!mount.path().join("layers/000").exists());
    let mut names: Vec<String> = std::fs::read_dir(mount.path().join("layers"))
        .unwrap()
        .map(|entry| entry.unwrap().file_name().into_string().unwrap())
        .collect();
    names.sort();
    let expected: Vec<String> = (1..LAYERS).map(|n| format!("{n:03}")).collect();
    assert_eq!(names, expected);
    assert_eq!(
        std::fs::read_to_string(mount.path().join("layers/001")).unwrap(),
        "layer 1\n"
    );
    mount.unmount().unwrap();
}
