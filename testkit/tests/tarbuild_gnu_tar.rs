//! Every generated archive is accepted by GNU tar, which lists and extracts the members
//! the generator meant to write.

use std::path::{Path, PathBuf};
use std::process::Command;

use lazypull_testkit::tarbuild::recipes::{self, LongNameCase};
use lazypull_testkit::tarbuild::{Builder, Entry, Kind, Magic, NameEncoding, gzip};
use lazypull_testkit::{Prereq, require_or_skip};

/// GNU tar 1.34 warnings that the recipes provoke on purpose: keywords it does not know
/// (libarchive xattrs, custom records), absolute hard link targets, and typeflag `7`.
const EXPECTED_WARNINGS: [&str; 3] = [
    "Ignoring unknown extended header keyword",
    "Removing leading `/' from hard link targets",
    "Extracting contiguous files as regular files",
];

struct Archive {
    _dir: tempfile::TempDir,
    path: PathBuf,
}

fn write_archive(bytes: &[u8]) -> Archive {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("layer.tar");
    std::fs::write(&path, bytes).expect("write archive");
    Archive { _dir: dir, path }
}

fn gnu_tar(args: &[&str], archive: &Path) -> String {
    let output = Command::new("tar")
        .args(args)
        .arg("-f")
        .arg(archive)
        .env("LC_ALL", "C")
        .env("TZ", "UTC")
        .output()
        .expect("run tar");
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(output.status.success(), "tar {args:?} failed: {stderr}");
    for line in stderr.lines() {
        assert!(
            EXPECTED_WARNINGS
                .iter()
                .any(|warning| line.contains(warning)),
            "tar {args:?} warned: {line}"
        );
    }
    String::from_utf8(output.stdout).expect("tar listing is UTF-8")
}

/// Lists the archive with `tar -tf` and returns one path per member.
fn list_names(bytes: &[u8]) -> Vec<String> {
    let archive = write_archive(bytes);
    gnu_tar(&["-t"], &archive.path)
        .lines()
        .map(str::to_owned)
        .collect()
}

/// Lists the archive with `tar -tvf`, checking GNU tar accepts it.
fn list_verbose(bytes: &[u8]) -> String {
    let archive = write_archive(bytes);
    gnu_tar(&["-tv", "--numeric-owner"], &archive.path)
}

fn extract(bytes: &[u8]) -> tempfile::TempDir {
    let archive = write_archive(bytes);
    let dest = tempfile::tempdir().expect("tempdir");
    let dest_arg = dest.path().to_str().expect("utf-8 path").to_owned();
    gnu_tar(
        &["-x", "--xattrs", "--xattrs-include=*", "-C", &dest_arg],
        &archive.path,
    );
    dest
}

#[test]
fn hardlink_prioritized_lists_link_after_target() {
    require_or_skip!(Prereq::Binary("tar"));
    let names = list_names(&recipes::hardlink_prioritized());
    assert_eq!(
        names,
        [
            "usr/",
            "usr/bin/",
            "usr/bin/python3.8",
            "usr/lib/",
            "usr/lib/os.py",
            "usr/bin/python3"
        ]
    );
    let listing = list_verbose(&recipes::hardlink_prioritized());
    assert!(
        listing.contains("usr/bin/python3 link to usr/bin/python3.8"),
        "{listing}"
    );
    assert!(listing.contains("1048576"), "{listing}");
}

#[test]
fn hardlink_without_parent_dirs_extracts() {
    require_or_skip!(Prereq::Binary("tar"));
    let names = list_names(&recipes::hardlink_no_parent_dirs());
    assert_eq!(
        names,
        [
            "bin/app",
            "bin/app.runfiles/_main/main.go",
            "bin/app.runfiles/_main/app_/app"
        ]
    );
    let dest = extract(&recipes::hardlink_no_parent_dirs());
    use std::os::unix::fs::MetadataExt;
    let app = std::fs::metadata(dest.path().join("bin/app")).unwrap();
    let link = std::fs::metadata(dest.path().join("bin/app.runfiles/_main/app_/app")).unwrap();
    assert_eq!(app.ino(), link.ino());
    assert_eq!(app.nlink(), 2);
}

#[test]
fn dir_after_children_sets_dir_mode() {
    require_or_skip!(Prereq::Binary("tar"));
    let listing = list_verbose(&recipes::dir_after_children());
    let last_lines: Vec<&str> = listing.lines().skip(2).collect();
    assert!(
        last_lines[0].starts_with("drwx------ 1000/1000"),
        "{listing}"
    );
    assert!(last_lines[1].starts_with("drwxr-x---"), "{listing}");
}

#[test]
fn duplicate_paths_last_member_wins() {
    require_or_skip!(Prereq::Binary("tar"));
    let names = list_names(&recipes::duplicate_paths());
    assert_eq!(names, ["etc/", "etc/conf", "etc/", "etc/conf"]);
    let dest = extract(&recipes::duplicate_paths());
    assert_eq!(std::fs::read(dest.path().join("etc/conf")).unwrap(), b"v2");
    use std::os::unix::fs::PermissionsExt;
    let mode = std::fs::metadata(dest.path().join("etc"))
        .unwrap()
        .permissions()
        .mode();
    assert_eq!(mode & 0o7777, 0o700);
}

#[test]
fn zero_length_files_list_with_size_zero() {
    require_or_skip!(Prereq::Binary("tar"));
    let listing = list_verbose(&recipes::zero_length_files());
    let zero = listing
        .lines()
        .find(|line| line.ends_with("data/zero_files"))
        .unwrap();
    assert!(zero.starts_with("-rw-r--r-- 0/0"), "{zero}");
    assert!(zero.contains(" 0 "), "{zero}");
    let dest = extract(&recipes::zero_length_files());
    assert_eq!(
        std::fs::read(dest.path().join("data/other")).unwrap(),
        b"0123456789"
    );
    assert!(dest.path().join("data/emptydir").is_dir());
}

#[test]
fn symlinks_keep_exact_targets() {
    require_or_skip!(Prereq::Binary("tar"));
    let dest = extract(&recipes::symlinks());
    let lib = dest.path().join("usr/lib");
    let expected = [
        ("libpq.so", "libpq.so.5.13".to_string()),
        ("deep", recipes::long_symlink_target()),
        ("mounts", "/proc/mounts".to_string()),
    ];
    for (name, target) in expected {
        let read = std::fs::read_link(lib.join(name)).unwrap();
        assert_eq!(read.to_str().unwrap(), target, "{name}");
        let size = std::fs::symlink_metadata(lib.join(name)).unwrap().len();
        assert_eq!(size, target.len() as u64, "{name}");
    }
    assert_eq!(recipes::long_symlink_target().len(), 300);
}

#[test]
fn long_names_round_trip_through_gnu_tar() {
    require_or_skip!(Prereq::Binary("tar"));
    let cases: Vec<LongNameCase> = recipes::long_name_cases();
    let lengths: Vec<usize> = cases.iter().map(|case| case.path.len()).collect();
    assert_eq!(lengths, [130, 130, 17, 250, 200, 18]);
    assert_eq!(cases[2].link.as_ref().unwrap().len(), 150);

    let names = list_names(&recipes::long_names());
    let expected: Vec<&str> = cases.iter().map(|case| case.path.as_str()).collect();
    assert_eq!(names, expected);

    let dest = extract(&recipes::long_names());
    for case in &cases {
        let path = dest.path().join(&case.path);
        let meta = std::fs::symlink_metadata(&path)
            .unwrap_or_else(|err| panic!("{} ({}): {err}", case.path, case.encoding));
        match case.kind {
            Kind::Symlink => {
                let target = std::fs::read_link(&path).unwrap();
                assert_eq!(target.to_str(), case.link.as_deref(), "{}", case.encoding);
            }
            Kind::Hardlink => {
                use std::os::unix::fs::MetadataExt;
                let target = dest.path().join(case.link.as_deref().unwrap());
                let target_meta = std::fs::metadata(target).unwrap();
                assert_eq!(meta.ino(), target_meta.ino(), "{}", case.encoding);
            }
            _ => assert!(meta.is_file(), "{}", case.encoding),
        }
    }
}

#[test]
fn ustar_prefix_bytes_are_where_posix_puts_them() {
    let cases = recipes::long_name_cases();
    let tar = recipes::long_names();
    // Member 1: header at 0. Member 2: header at 1024 (one data block in between).
    for (header_offset, version, case) in [(0usize, [0u8, 0], &cases[0]), (1024, *b"  ", &cases[1])]
    {
        let header = &tar[header_offset..header_offset + 512];
        let (prefix, name) = case.path.split_at(70);
        assert_eq!(&header[257..263], b"ustar\0", "magic");
        assert_eq!(&header[263..265], &version, "version");
        assert_eq!(&header[345..345 + 70], prefix.as_bytes(), "prefix");
        assert_eq!(header[345 + 70], 0, "prefix ends with NUL");
        assert_eq!(
            &header[..name.len() - 1],
            &name.as_bytes()[1..],
            "name after the slash"
        );
    }
}

#[test]
fn ustar_prefix_hex_dump_shows_split() {
    require_or_skip!(Prereq::Binary("xxd"));
    let archive = write_archive(&recipes::long_names());
    let output = Command::new("xxd")
        .args(["-s", "256", "-l", "176", "-c", "16"])
        .arg(&archive.path)
        .output()
        .expect("run xxd");
    assert!(output.status.success());
    let dump = String::from_utf8(output.stdout).unwrap();
    // Offset 0x100 is the last linkname byte, then magic "ustar\0" and version "\0\0"
    // at 0x101..0x109. The prefix field starts at 0x159 (345) with "ustar-00/segment".
    let lines: Vec<&str> = dump.lines().collect();
    assert!(
        lines[0].starts_with("00000100: 0075 7374 6172 0000 00"),
        "{dump}"
    );
    assert!(
        lines[5].starts_with("00000150: 0000 0000 0000 0000 0075 7374 6172 2d30"),
        "{dump}"
    );
    assert!(
        lines[6].starts_with("00000160: 302f 7365 676d 656e"),
        "{dump}"
    );
}

#[test]
fn whiteout_layers_list_markers() {
    require_or_skip!(Prereq::Binary("tar"));
    assert_eq!(list_names(&recipes::whiteouts_lower()).len(), 8);
    assert_eq!(
        list_names(&recipes::whiteouts_upper()),
        [
            "etc/",
            "etc/.wh.localtime",
            "etc/network/",
            "etc/network/.wh..wh..opq",
            "etc/network/newfile"
        ]
    );
    let marker_last = list_names(&recipes::whiteouts_upper_marker_last());
    assert_eq!(
        marker_last.last().map(String::as_str),
        Some("etc/network/.wh..wh..opq")
    );
    assert_eq!(
        list_names(&recipes::whiteouts_upper_only()),
        ["etc/.wh.localtime", "etc/network/.wh..wh..opq"]
    );
}

#[test]
fn xattrs_pax_extracts_binary_values() {
    require_or_skip!(Prereq::Binary("tar"), Prereq::Binary("getfattr"));
    let listing = list_verbose(&recipes::xattrs_pax());
    assert!(listing.contains("-rwsr-xr-x 0/0"), "{listing}");
    assert!(listing.contains("drwxrwxrwt 0/0"), "{listing}");
    assert!(listing.contains("drwxrwsr-x 0/50"), "{listing}");
    // GNU tar prints fractional mtimes only with --full-time.
    let archive = write_archive(&recipes::xattrs_pax());
    let full = gnu_tar(&["-tv", "--full-time"], &archive.path);
    assert!(
        full.contains("2023-11-14 22:13:20.5 usr/bin/ping"),
        "{full}"
    );

    let dest = extract(&recipes::xattrs_pax());
    let ping = dest.path().join("usr/bin/ping");
    let output = Command::new("getfattr")
        .args(["--absolute-names", "--only-values", "-n", "user.note"])
        .arg(&ping)
        .output()
        .unwrap();
    assert_eq!(output.stdout, b"hello");
    if lazypull_testkit::prereq::is_root() {
        let output = Command::new("getfattr")
            .args([
                "--absolute-names",
                "--only-values",
                "-n",
                "security.capability",
            ])
            .arg(&ping)
            .output()
            .unwrap();
        assert_eq!(output.stdout, recipes::CAP_NET_RAW_EP);
    }
}

#[test]
fn link_escape_cases_list_in_order() {
    require_or_skip!(Prereq::Binary("tar"));
    assert_eq!(
        list_names(&recipes::link_escape()),
        ["evil", "evil", "up", "up/outside/dir/file", "h", "h"]
    );
    let listing = list_verbose(&recipes::link_escape());
    assert!(listing.contains("evil -> /tmp/escape-target"), "{listing}");
    // GNU tar strips the leading slash when it prints hard link targets.
    assert!(listing.contains("h link to etc/passwd"), "{listing}");
    let bytes = recipes::link_escape();
    assert!(bytes.windows(12).any(|window| window == b"/etc/passwd\0"));
    for (name, bytes) in recipes::link_escape_cases("/tmp/escape-target") {
        assert_eq!(list_names(&bytes).len(), 2, "{name}");
    }
}

#[test]
fn bare_whiteouts_list() {
    require_or_skip!(Prereq::Binary("tar"));
    assert_eq!(
        list_names(&recipes::bare_whiteout_lower()),
        ["etc/", "etc/passwd", "etc/hosts"]
    );
    assert_eq!(list_names(&recipes::bare_whiteout()), ["etc/", "etc/.wh."]);
    assert_eq!(
        list_names(&recipes::bare_whiteout_top_level()),
        [".wh.", "etc/", "etc/config.txt"]
    );
    assert_eq!(
        list_names(&recipes::bare_whiteout_dots()),
        ["etc/", "etc/.wh..", "etc/.wh.../x"]
    );
}

#[test]
fn multi_member_gzip_decompresses_fully() {
    require_or_skip!(Prereq::Binary("tar"), Prereq::Binary("gzip"));
    let layer = recipes::multi_member_gzip(4 << 20, 1 << 20);
    assert!(layer.members >= 4, "{} members", layer.members);
    assert_eq!(layer.files.len(), 50);
    let archive = write_archive(&layer.gzip);
    let names = gnu_tar(&["-tz"], &archive.path);
    assert_eq!(names.lines().count(), 51);
    // A file past the first member reads back through all members.
    let (path, size, offset) = layer.files[40].clone();
    assert!(offset > 1 << 20);
    let dest = tempfile::tempdir().unwrap();
    let dest_arg = dest.path().to_str().unwrap().to_owned();
    gnu_tar(&["-xz", "-C", &dest_arg], &archive.path);
    let data = std::fs::read(dest.path().join(&path)).unwrap();
    assert_eq!(data.len() as u64, size);
    assert_eq!(
        data,
        lazypull_testkit::tarbuild::text_pattern(size as usize, 40)
    );
}

#[test]
fn every_entry_kind_lists_all_types() {
    require_or_skip!(Prereq::Binary("tar"));
    let listing = list_verbose(&recipes::every_entry_kind());
    let expectations = [
        "hrw-r--r-- 0/0               0 2023-11-14 22:13 all/hardlink link to all/regular",
        "lrwxrwxrwx 0/0               0 2023-11-14 22:13 all/symlink -> regular",
        "crw-rw-rw- 0/0             1,3 2023-11-14 22:13 all/null",
        "brw-rw---- 0/0             7,0 2023-11-14 22:13 all/loop0",
        "prw-r--r-- 0/0               0 2023-11-14 22:13 all/fifo",
        "-rwsr-xr-x 0/0",
        "drwxrwxrwt 0/0",
        "-rw-r--r-- 3000000/4000000",
        "all/legacy",
        "all/contiguous",
        "all/v7",
    ];
    for expected in expectations {
        assert!(
            listing.contains(expected),
            "missing {expected:?} in:\n{listing}"
        );
    }
    for (name, _) in recipes::SPARSE_FORMATS {
        let line = listing
            .lines()
            .find(|line| line.ends_with(&format!("all/sparse-{name}")))
            .unwrap_or_else(|| panic!("sparse-{name} missing in:\n{listing}"));
        assert!(line.contains(" 1048576 "), "{line}");
    }
}

#[test]
fn sparse_files_extract_with_holes_and_data() {
    require_or_skip!(Prereq::Binary("tar"));
    let dest = extract(&recipes::every_entry_kind());
    let expected = recipes::sparse_expand(recipes::SPARSE_SIZE, &recipes::sparse_segments());
    for (name, _) in recipes::SPARSE_FORMATS {
        let data = std::fs::read(dest.path().join(format!("all/sparse-{name}"))).unwrap();
        assert_eq!(data.len(), expected.len(), "sparse-{name}");
        assert!(data == expected, "sparse-{name} content differs");
    }
    let legacy = std::fs::read(dest.path().join("all/legacy")).unwrap();
    assert_eq!(legacy, b"legacy\n");
}

#[test]
fn archive_without_terminator_still_lists() {
    require_or_skip!(Prereq::Binary("tar"));
    let mut builder = Builder::new();
    builder.append(&Entry::file("a", "a"));
    let bytes = builder.finish_without_terminator();
    assert_eq!(bytes.len(), 1024);
    let archive = write_archive(&bytes);
    // GNU tar lists it and exits 0, but may warn about the missing end blocks.
    let output = Command::new("tar")
        .arg("-tf")
        .arg(&archive.path)
        .output()
        .unwrap();
    assert!(output.status.success());
    assert_eq!(String::from_utf8_lossy(&output.stdout), "a\n");
}

#[test]
fn pax_global_and_custom_records_are_accepted() {
    require_or_skip!(Prereq::Binary("tar"));
    let mut builder = Builder::new();
    builder.append_pax_global(&[lazypull_testkit::tarbuild::PaxRecord::new("comment", "x")]);
    builder.append(
        &Entry::file("custom", "c")
            .pax("LAZYPULL.test", "value")
            .path_encoding(NameEncoding::Pax)
            .magic(Magic::USTAR),
    );
    let names = list_names(&builder.finish());
    assert_eq!(names, ["custom"]);
}

#[test]
fn gzip_layer_lists_with_gnu_tar() {
    require_or_skip!(Prereq::Binary("tar"));
    let archive = write_archive(&gzip(&recipes::symlinks(), 9));
    let names = gnu_tar(&["-tz"], &archive.path);
    assert!(names.contains("usr/lib/deep"), "{names}");
}
