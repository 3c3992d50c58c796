//! Ready-made layer tars for the edge cases that broke other lazy-pulling systems.
//!
//! Each function returns an uncompressed tar (two terminating zero blocks included) whose
//! members are listed in its documentation, in archive order. Contents come from
//! [`pattern`] or short literals, so every run produces the same bytes. Members are owned
//! by 0:0 with mtime [`DEFAULT_MTIME`](super::DEFAULT_MTIME) unless stated.

use super::content::{pattern, text_pattern};
use super::entry::{Entry, Kind, NameEncoding};
use super::header::Magic;
use super::sparse::SparseFormat;
use super::{Builder, PaxRecord};

fn build(entries: &[Entry]) -> Vec<u8> {
    let mut builder = Builder::new();
    for entry in entries {
        builder.append(entry);
    }
    builder.finish()
}

/// The prefetch list to use with [`hardlink_prioritized`]: only the link, not its target.
pub const HARDLINK_PRIORITIZED_LIST: &[&str] = &["usr/bin/python3"];

/// Builds a layer with a hard link that a reordering could put before its target.
///
/// Members: `usr/`, `usr/bin/`, `usr/bin/python3.8` (regular, 1 MiB of `pattern(_, 1)`,
/// mode 0755), `usr/lib/` and `usr/lib/os.py` (4 KiB), then `usr/bin/python3`, a hard link
/// to `usr/bin/python3.8`. Prioritizing [`HARDLINK_PRIORITIZED_LIST`] must also move the
/// target ahead of the link, so GNU tar can still extract the result.
pub fn hardlink_prioritized() -> Vec<u8> {
    build(&[
        Entry::dir("usr"),
        Entry::dir("usr/bin"),
        Entry::file("usr/bin/python3.8", pattern(1 << 20, 1)).mode(0o755),
        Entry::dir("usr/lib"),
        Entry::file("usr/lib/os.py", text_pattern(4096, 2)),
        Entry::hardlink("usr/bin/python3", "usr/bin/python3.8").mode(0o755),
    ])
}

/// Builds a layer with a hard link into a directory that has no member of its own.
///
/// Exactly three members and no directories: `bin/app` (regular, 4 KiB, mode 0755),
/// `bin/app.runfiles/_main/main.go` (regular, a few bytes of Go source) and
/// `bin/app.runfiles/_main/app_/app`, a hard link to `bin/app`. Every parent directory is
/// implied.
pub fn hardlink_no_parent_dirs() -> Vec<u8> {
    build(&[
        Entry::file("bin/app", pattern(4096, 3)).mode(0o755),
        Entry::file(
            "bin/app.runfiles/_main/main.go",
            "package main\n\nfunc main() {}\n",
        ),
        Entry::hardlink("bin/app.runfiles/_main/app_/app", "bin/app").mode(0o755),
    ])
}

/// Builds a layer whose directory members come after their children. They must still
/// set the directory's metadata.
///
/// Members: `opt/tool/bin/run` (regular, mode 0755), `opt/tool/README` (regular), then
/// `opt/tool/` (directory, mode 0700, owner 1000:1000, mtime 1600000000) and `opt/`
/// (directory, mode 0750).
pub fn dir_after_children() -> Vec<u8> {
    build(&[
        Entry::file("opt/tool/bin/run", "#!/bin/sh\necho run\n").mode(0o755),
        Entry::file("opt/tool/README", "tool\n"),
        Entry::dir("opt/tool")
            .mode(0o700)
            .owner(1000, 1000)
            .owner_names("tool", "tool")
            .mtime(1_600_000_000),
        Entry::dir("opt").mode(0o750),
    ])
}

/// Builds a layer with the same paths twice, where the last member must win.
///
/// Members in order: `etc/` (directory, 0755), `etc/conf` ("v1"), `etc/` (directory,
/// 0700), `etc/conf` ("v2"). Expected result: `etc` has mode 0700 and `etc/conf` reads
/// "v2".
pub fn duplicate_paths() -> Vec<u8> {
    build(&[
        Entry::dir("etc").mode(0o755),
        Entry::file("etc/conf", "v1"),
        Entry::dir("etc").mode(0o700),
        Entry::file("etc/conf", "v2"),
    ])
}

/// Builds a layer where hard links outlive the file they were made to, as `tar -r` or a
/// layer squasher leaves them.
///
/// Members in order: `etc/`, `etc/f` ("version-1", mode 0600), `etc/h` (hard link to
/// `etc/f`), `etc/h2` (hard link to `etc/h`), `etc/f` again ("version-2, longer", mode 0644),
/// `etc/g` (hard link to `etc/f`). GNU tar extracts `etc/h` and `etc/h2` as one inode holding
/// "version-1" with mode 0600, and `etc/f` and `etc/g` as another holding "version-2, longer".
pub fn hardlinks_to_replaced_file() -> Vec<u8> {
    build(&[
        Entry::dir("etc"),
        Entry::file("etc/f", "version-1\n").mode(0o600),
        Entry::hardlink("etc/h", "etc/f"),
        Entry::hardlink("etc/h2", "etc/h"),
        Entry::file("etc/f", "version-2, longer\n"),
        Entry::hardlink("etc/g", "etc/f"),
    ])
}

/// Builds a layer with empty files and an empty directory.
///
/// Members: `data/`, `data/zero_files` (regular, size 0, mode 0644), `data/other`
/// (regular, the 10 bytes `0123456789`) and `data/emptydir/` (an empty directory).
pub fn zero_length_files() -> Vec<u8> {
    build(&[
        Entry::dir("data"),
        Entry::file("data/zero_files", b""),
        Entry::file("data/other", b"0123456789"),
        Entry::dir("data/emptydir"),
    ])
}

/// Returns the 300-byte relative link target used by [`symlinks`]: path components
/// `dir-NNN/` repeated, ending in `target`.
pub fn long_symlink_target() -> String {
    let mut target = String::new();
    let mut index = 0;
    while target.len() + 8 + "target".len() <= 300 {
        target.push_str(&format!("dir-{index:03}/"));
        index += 1;
    }
    let filler = 300 - target.len() - "target".len();
    target.push_str(&"x".repeat(filler));
    target.push_str("target");
    target
}

/// Builds a layer of symbolic links whose `st_size` must equal their target length.
///
/// Members: `usr/`, `usr/lib/`, `usr/lib/libpq.so.5.13` (regular, 2 KiB),
/// `usr/lib/libpq.so` -> `libpq.so.5.13` (13 bytes), `usr/lib/deep` -> the 300-byte
/// [`long_symlink_target`] (carried in a PAX `linkpath` record, with an empty header
/// `linkname`), and `usr/lib/mounts` -> `/proc/mounts` (12 bytes, absolute, to be stored
/// verbatim and never resolved).
pub fn symlinks() -> Vec<u8> {
    build(&[
        Entry::dir("usr"),
        Entry::dir("usr/lib"),
        Entry::file("usr/lib/libpq.so.5.13", pattern(2048, 4)),
        Entry::symlink("usr/lib/libpq.so", "libpq.so.5.13"),
        Entry::symlink("usr/lib/deep", long_symlink_target()),
        Entry::symlink("usr/lib/mounts", "/proc/mounts"),
    ])
}

/// One member of [`long_names`] and how its name is encoded.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LongNameCase {
    /// The full path a reader must reconstruct.
    pub path: String,
    /// The member type.
    pub kind: Kind,
    /// The full link target a reader must reconstruct, for links.
    pub link: Option<String>,
    /// The encoding under test, in words.
    pub encoding: &'static str,
}

fn long_path(dir: &str, dir_len: usize, name_len: usize) -> String {
    let mut head = dir.to_string();
    while head.len() < dir_len {
        head.push_str("/segment");
    }
    head.truncate(dir_len);
    let head = head.trim_end_matches('/').to_string();
    let mut name = String::from("file-");
    name.push_str(&"n".repeat(name_len.saturating_sub(name.len())));
    format!("{head}/{name}")
}

/// Returns the members of [`long_names`], in archive order, with their full names.
pub fn long_name_cases() -> Vec<LongNameCase> {
    let prefix_00 = long_path("ustar-00", 70, 59);
    let prefix_spaces = long_path("ustar-spaces", 70, 59);
    let pax_target = long_path("pax-target", 120, 29);
    let gnu_file = long_path("gnu-long", 200, 49);
    let hardlink_target = long_path("hardlink-target", 170, 29);
    vec![
        LongNameCase {
            path: prefix_00,
            kind: Kind::Regular,
            link: None,
            encoding: "ustar prefix+name, magic ustar\\0, version \\0\\0",
        },
        LongNameCase {
            path: prefix_spaces,
            kind: Kind::Regular,
            link: None,
            encoding: "ustar prefix+name, magic ustar\\0, version two spaces",
        },
        LongNameCase {
            path: "links/pax-symlink".to_string(),
            kind: Kind::Symlink,
            link: Some(pax_target),
            encoding: "PAX linkpath record, empty header linkname",
        },
        LongNameCase {
            path: gnu_file,
            kind: Kind::Regular,
            link: None,
            encoding: "GNU L member (././@LongLink) for the name",
        },
        LongNameCase {
            path: hardlink_target.clone(),
            kind: Kind::Regular,
            link: None,
            encoding: "PAX path record (hard link target)",
        },
        LongNameCase {
            path: "links/gnu-hardlink".to_string(),
            kind: Kind::Hardlink,
            link: Some(hardlink_target),
            encoding: "GNU K member (././@LongLink) for the link target",
        },
    ]
}

/// Builds a layer with long names and link targets in every encoding readers get wrong.
///
/// Members, in order (see [`long_name_cases`] for the exact strings):
/// 1. a 130-byte path split into a 70-byte ustar `prefix` and a 59-byte `name`, with magic
///    `ustar\0` and version bytes `\0\0`;
/// 2. the same with version bytes of two spaces;
/// 3. `links/pax-symlink`, a symlink whose 150-byte target is only in a PAX `linkpath`
///    record (its header `linkname` is empty);
/// 4. a regular file with a 250-byte name carried by a GNU `L` member;
/// 5. a regular file with a 200-byte name carried by a PAX `path` record;
/// 6. `links/gnu-hardlink`, a hard link to file 5 whose target is carried by a GNU `K`
///    member.
///
/// No directory members: the parents are implied.
pub fn long_names() -> Vec<u8> {
    let cases = long_name_cases();
    let mut entries = Vec::new();
    for (index, case) in cases.iter().enumerate() {
        let content = format!("long name case {index}\n");
        let entry = match index {
            0 => Entry::file(&case.path, &content)
                .magic(Magic::Ustar { version: [0, 0] })
                .path_encoding(NameEncoding::UstarPrefix),
            1 => Entry::file(&case.path, &content)
                .magic(Magic::Ustar { version: *b"  " })
                .path_encoding(NameEncoding::UstarPrefix),
            2 => Entry::symlink(&case.path, case.link.as_deref().unwrap_or_default())
                .link_encoding(NameEncoding::Pax),
            3 => Entry::file(&case.path, &content)
                .magic(Magic::OldGnu)
                .path_encoding(NameEncoding::GnuLong),
            4 => Entry::file(&case.path, &content).path_encoding(NameEncoding::Pax),
            _ => Entry::hardlink(&case.path, case.link.as_deref().unwrap_or_default())
                .magic(Magic::OldGnu)
                .link_encoding(NameEncoding::GnuLong),
        };
        entries.push(entry);
    }
    build(&entries)
}

/// Builds the lower layer of the whiteout tests.
///
/// Members: `etc/`, `etc/hosts`, `etc/localtime`, `etc/network/`,
/// `etc/network/if-up.d/`, `etc/network/if-up.d/x`, `etc/network/if-down.d/`,
/// `etc/network/if-down.d/y`.
pub fn whiteouts_lower() -> Vec<u8> {
    build(&[
        Entry::dir("etc"),
        Entry::file("etc/hosts", "127.0.0.1 localhost\n"),
        Entry::file("etc/localtime", pattern(118, 5)),
        Entry::dir("etc/network"),
        Entry::dir("etc/network/if-up.d"),
        Entry::file("etc/network/if-up.d/x", "#!/bin/sh\n").mode(0o755),
        Entry::dir("etc/network/if-down.d"),
        Entry::file("etc/network/if-down.d/y", "#!/bin/sh\n").mode(0o755),
    ])
}

/// Builds the upper layer of the whiteout tests, with the opaque marker before the new file.
///
/// Members: `etc/`, `etc/.wh.localtime` (deletes `etc/localtime`), `etc/network/`,
/// `etc/network/.wh..wh..opq` (hides everything below from the lower layers) and
/// `etc/network/newfile`. Merged over [`whiteouts_lower`]: `etc/hosts` stays, `etc/localtime`
/// is gone, and `etc/network` contains only `newfile`.
pub fn whiteouts_upper() -> Vec<u8> {
    build(&[
        Entry::dir("etc"),
        Entry::whiteout("etc/localtime"),
        Entry::dir("etc/network"),
        Entry::opaque("etc/network"),
        Entry::file("etc/network/newfile", "new\n"),
    ])
}

/// Builds [`whiteouts_upper`] with the opaque marker after `etc/network/newfile`; the merged
/// result must be the same.
pub fn whiteouts_upper_marker_last() -> Vec<u8> {
    build(&[
        Entry::dir("etc"),
        Entry::whiteout("etc/localtime"),
        Entry::dir("etc/network"),
        Entry::file("etc/network/newfile", "new\n"),
        Entry::opaque("etc/network"),
    ])
}

/// Builds an upper layer made only of whiteouts, with no directory members:
/// `etc/.wh.localtime` and `etc/network/.wh..wh..opq`.
pub fn whiteouts_upper_only() -> Vec<u8> {
    build(&[
        Entry::whiteout("etc/localtime"),
        Entry::opaque("etc/network"),
    ])
}

/// Builds an upper layer that deletes `etc/network` with a whiteout and creates a new
/// `etc/network/` containing only `fresh` in the same layer. With `whiteout_last`, the whiteout
/// comes after the new directory's members. Merged over [`whiteouts_lower`], `etc/network`
/// contains only `fresh` either way: a whiteout applies to the lower layers only.
pub fn whiteout_then_recreate(whiteout_last: bool) -> Vec<u8> {
    let mut entries = vec![
        Entry::dir("etc"),
        Entry::dir("etc/network").mode(0o700),
        Entry::file("etc/network/fresh", "fresh\n"),
    ];
    let whiteout = Entry::whiteout("etc/network");
    if whiteout_last {
        entries.push(whiteout);
    } else {
        entries.insert(1, whiteout);
    }
    build(&entries)
}

/// A VFS capability blob, revision 2 (20 bytes, little-endian, from
/// `struct vfs_cap_data` in linux/capability.h): `magic_etc` = revision 2 (0x02000000) |
/// effective flag (0x1), `permitted[0]` = 1 << 13 (`CAP_NET_RAW`), inheritable and the
/// upper 32 capability bits zero. Equivalent to `setcap cap_net_raw+ep`.
pub const CAP_NET_RAW_EP: [u8; 20] = [
    0x01, 0x00, 0x00, 0x02, // magic_etc
    0x00, 0x20, 0x00, 0x00, // data[0].permitted
    0x00, 0x00, 0x00, 0x00, // data[0].inheritable
    0x00, 0x00, 0x00, 0x00, // data[1].permitted
    0x00, 0x00, 0x00, 0x00, // data[1].inheritable
];

/// Builds a layer with extended attributes and special mode bits carried in PAX records.
///
/// Members:
/// - `usr/`, `usr/bin/`;
/// - `usr/bin/ping` (regular, mode 0755, 512 bytes) with PAX records
///   `SCHILY.xattr.security.capability` = [`CAP_NET_RAW_EP`] (binary, with NULs),
///   `SCHILY.xattr.user.note` = `hello`, `mtime` = `1700000000.5` and
///   `atime` = `1700000100.25` (neither is an xattr);
/// - `usr/bin/setuid-tool` (regular, mode 04755, owner 0:0);
/// - `usr/bin/archived` (regular) with `LIBARCHIVE.xattr.user.origin`, value `libarchive`
///   base64-encoded;
/// - `tmp/` (directory, mode 01777, sticky);
/// - `srv/shared/` (directory, mode 02775, setgid, owner 0:50).
pub fn xattrs_pax() -> Vec<u8> {
    build(&[
        Entry::dir("usr"),
        Entry::dir("usr/bin"),
        Entry::file("usr/bin/ping", pattern(512, 6))
            .mode(0o755)
            .xattr("security.capability", CAP_NET_RAW_EP)
            .xattr("user.note", "hello")
            .mtime_ns(1_700_000_000, 500_000_000)
            .atime_ns(1_700_000_100, 250_000_000),
        Entry::file("usr/bin/setuid-tool", pattern(256, 7)).mode(0o4755),
        Entry::file("usr/bin/archived", "archived\n").libarchive_xattr("user.origin", "libarchive"),
        Entry::dir("tmp").mode(0o1777),
        Entry::dir("srv"),
        Entry::dir("srv/shared").mode(0o2775).owner(0, 50),
    ])
}

/// Builds each link-escape case as its own layer, named `symlink_then_file`, `dotdot_dir` and
/// `hardlink_then_file` (see [`link_escape_with_target`] for their members).
pub fn link_escape_cases(outside: &str) -> Vec<(&'static str, Vec<u8>)> {
    vec![
        (
            "symlink_then_file",
            build(&[
                Entry::symlink("evil", outside),
                Entry::file("evil", "pwned\n"),
            ]),
        ),
        (
            "dotdot_dir",
            build(&[
                Entry::symlink("up", ".."),
                Entry::file("up/outside/dir/file", "pwned\n"),
            ]),
        ),
        (
            "hardlink_then_file",
            build(&[
                Entry::hardlink("h", "/etc/passwd"),
                Entry::file("h", "pwned\n"),
            ]),
        ),
    ]
}

/// Builds a layer whose members try to make a writer follow a link out of its destination.
///
/// Members, in order:
/// - `evil`, a symlink to `outside`, then `evil`, a regular file containing `pwned\n`;
/// - `up`, a symlink to `..`, then `up/outside/dir/file` (regular);
/// - `h`, a hard link to `/etc/passwd`, then `h`, a regular file containing `pwned\n`.
///
/// A safe consumer stores the members literally, lets the later member replace the
/// earlier one, and creates or changes nothing outside its root.
pub fn link_escape_with_target(outside: &str) -> Vec<u8> {
    build(&[
        Entry::symlink("evil", outside),
        Entry::file("evil", "pwned\n"),
        Entry::symlink("up", ".."),
        Entry::file("up/outside/dir/file", "pwned\n"),
        Entry::hardlink("h", "/etc/passwd"),
        Entry::file("h", "pwned\n"),
    ])
}

/// Builds [`link_escape_with_target`] with `outside` = `/tmp/escape-target`.
pub fn link_escape() -> Vec<u8> {
    link_escape_with_target("/tmp/escape-target")
}

/// Builds the lower layer of the bare-whiteout tests: `etc/`, `etc/passwd`, `etc/hosts`.
pub fn bare_whiteout_lower() -> Vec<u8> {
    build(&[
        Entry::dir("etc"),
        Entry::file("etc/passwd", "root:x:0:0:root:/root:/bin/sh\n"),
        Entry::file("etc/hosts", "127.0.0.1 localhost\n"),
    ])
}

/// Builds an upper layer with `etc/` and `etc/.wh.` (an empty regular file): a whiteout with an
/// empty target name. It must never delete `etc` itself.
pub fn bare_whiteout() -> Vec<u8> {
    build(&[Entry::dir("etc"), Entry::file("etc/.wh.", b"")])
}

/// Builds an upper layer with a top-level `.wh.` and `etc/config.txt`. It must never delete the
/// root.
pub fn bare_whiteout_top_level() -> Vec<u8> {
    build(&[
        Entry::file(".wh.", b""),
        Entry::dir("etc"),
        Entry::file("etc/config.txt", "config\n"),
    ])
}

/// Builds an upper layer with dot targets: `etc/`, `etc/.wh..` (whiteout of `.`) and
/// `etc/.wh.../x` (a file under a directory named `.wh..`).
pub fn bare_whiteout_dots() -> Vec<u8> {
    build(&[
        Entry::dir("etc"),
        Entry::file("etc/.wh..", b""),
        Entry::file("etc/.wh.../x", "x\n"),
    ])
}

/// A layer compressed as concatenated gzip members, with where each file sits.
#[derive(Debug, Clone)]
pub struct MultiMemberLayer {
    /// The compressed layer: one gzip member per `piece_size` bytes of tar.
    pub gzip: Vec<u8>,
    /// The uncompressed tar length.
    pub tar_len: u64,
    /// The number of gzip members.
    pub members: usize,
    /// Each file as (path, size, offset of its data in the uncompressed tar).
    pub files: Vec<(String, u64, u64)>,
}

/// Builds a tar of about `total_size` bytes holding 50 files `data/file-NN.txt`, each of
/// [`text_pattern`]`(size, NN)`, and compresses it with one gzip member per `piece_size`
/// bytes of tar (so members end in the middle of files and headers).
///
/// For the multi-member bug case use `multi_member_gzip(300 << 20, 16 << 20)` and read the
/// file whose data offset is near 200 MB.
pub fn multi_member_gzip(total_size: u64, piece_size: usize) -> MultiMemberLayer {
    const FILES: u64 = 50;
    let file_size = (total_size / FILES).saturating_sub(512).max(1);
    let mut builder = Builder::new();
    let mut files = Vec::new();
    builder.append(&Entry::dir("data"));
    for index in 0..FILES {
        let path = format!("data/file-{index:02}.txt");
        let size = usize::try_from(file_size).expect("file size fits in memory");
        let data_offset = builder.position() + 512;
        builder.append(&Entry::file(&path, text_pattern(size, index)));
        files.push((path, file_size, data_offset));
    }
    let tar = builder.finish();
    let gzip = super::gzip_multi_member(&tar, piece_size);
    MultiMemberLayer {
        gzip,
        tar_len: tar.len() as u64,
        members: tar.len().div_ceil(piece_size.max(1)),
        files,
    }
}

/// Builds a layer with one member of every type and encoding the builder supports, for
/// round-trip tests.
///
/// Members: a PAX global header (`comment=lazypull every_entry_kind`), `all/` (directory),
/// `all/regular` (typeflag `0`), `all/legacy` (typeflag NUL), `all/contiguous` (typeflag
/// `7`), `all/hardlink` -> `all/regular`, `all/symlink` -> `regular`, `all/null` (char
/// device 1:3), `all/loop0` (block device 7:0), `all/fifo`, `all/setuid` (04755),
/// `all/sticky/` (01777), `all/bigids` (uid 3000000, gid 4000000, in base-256),
/// `all/fraction` (mtime 1700000000.123456789 in PAX), `all/xattr` (`user.key` = bytes
/// 0x00 0xff 0x0a), `all/v7` (V7 header without magic), and four sparse files
/// `all/sparse-{oldgnu,pax00,pax01,pax10}` of 1 MiB apparent size with 5 data segments
/// of 4 KiB at offsets 0, 100000, 300000, 600000 and 1044480 (the old-GNU one needs an
/// extension block).
pub fn every_entry_kind() -> Vec<u8> {
    let mut builder = Builder::new();
    builder.append_pax_global(&[PaxRecord::new("comment", "lazypull every_entry_kind")]);
    let mut entries = vec![
        Entry::dir("all"),
        Entry::file("all/regular", "regular\n"),
        Entry::file("all/legacy", "legacy\n").kind(Kind::RegularLegacy),
        Entry::file("all/contiguous", "contiguous\n").kind(Kind::Contiguous),
        Entry::hardlink("all/hardlink", "all/regular"),
        Entry::symlink("all/symlink", "regular"),
        Entry::char_device("all/null", 1, 3),
        Entry::block_device("all/loop0", 7, 0),
        Entry::fifo("all/fifo"),
        Entry::file("all/setuid", "setuid\n").mode(0o4755),
        Entry::dir("all/sticky").mode(0o1777),
        Entry::file("all/bigids", "ids\n").owner(3_000_000, 4_000_000),
        Entry::file("all/fraction", "fraction\n").mtime_ns(1_700_000_000, 123_456_789),
        Entry::file("all/xattr", "xattr\n").xattr("user.key", [0x00, 0xff, 0x0a]),
        Entry::file("all/v7", "v7\n").magic(Magic::V7),
    ];
    for (name, format) in SPARSE_FORMATS {
        entries.push(Entry::sparse(
            format!("all/sparse-{name}"),
            SPARSE_SIZE,
            &sparse_segments(),
            format,
        ));
    }
    for entry in &entries {
        builder.append(entry);
    }
    builder.finish()
}

/// The sparse encodings [`every_entry_kind`] writes, with their file name suffixes.
pub const SPARSE_FORMATS: [(&str, SparseFormat); 4] = [
    ("oldgnu", SparseFormat::OldGnu),
    ("pax00", SparseFormat::Pax00),
    ("pax01", SparseFormat::Pax01),
    ("pax10", SparseFormat::Pax10),
];

/// The apparent size of the sparse files in [`every_entry_kind`].
pub const SPARSE_SIZE: u64 = 1 << 20;

/// Returns the data segments of the sparse files in [`every_entry_kind`]: 4 KiB of `pattern` at
/// offsets 0, 100000, 300000, 600000 and 1044480 (the last one ends the file).
pub fn sparse_segments() -> Vec<(u64, Vec<u8>)> {
    [0u64, 100_000, 300_000, 600_000, SPARSE_SIZE - 4096]
        .iter()
        .enumerate()
        .map(|(index, &offset)| (offset, pattern(4096, 100 + index as u64)))
        .collect()
}

/// Returns the full contents of a sparse file: zeros with `segments` written in.
pub fn sparse_expand(real_size: u64, segments: &[(u64, Vec<u8>)]) -> Vec<u8> {
    let size = usize::try_from(real_size).expect("sparse size fits in memory");
    let mut out = vec![0u8; size];
    for (offset, bytes) in segments {
        let start = usize::try_from(*offset).expect("offset fits in memory");
        out[start..start + bytes.len()].copy_from_slice(bytes);
    }
    out
}
