//! Filesystem core behaviour without a kernel: attributes, lookup, readdir paging, xattrs,
//! whiteouts, reads and errno values, over in-memory eStargz layers built from tar recipes.

use std::sync::Arc;
use std::time::Duration;

use estargz::build::BuildOptions;
use estargz::index::NodeKind;
use futures_util::FutureExt;
use lazypull_snapshotter::fs::{
    Attr, FsCore, FsOptions, Ino, MemorySource, TraceRecorder, XattrReply, encode_dev,
};
use lazypull_testkit::tarbuild::{Builder, Entry, recipes};

fn layer(tar: &[u8]) -> Arc<MemorySource> {
    Arc::new(MemorySource::from_tar(tar, &BuildOptions::default()).expect("recipe converts"))
}

fn layer_with_chunk_size(tar: &[u8], chunk_size: u64) -> Arc<MemorySource> {
    let options = BuildOptions {
        chunk_size,
        ..BuildOptions::default()
    };
    Arc::new(MemorySource::from_tar(tar, &options).expect("recipe converts"))
}

fn fs(source: Arc<MemorySource>) -> FsCore<MemorySource> {
    FsCore::new(source, FsOptions::default())
}

fn tar_of(entries: &[Entry]) -> Vec<u8> {
    let mut builder = Builder::new();
    for entry in entries {
        builder.append(entry);
    }
    builder.finish()
}

fn resolve(fs: &FsCore<MemorySource>, path: &str) -> Attr {
    let mut attr = fs.getattr(Ino::ROOT).unwrap();
    for part in path.split('/') {
        attr = fs
            .lookup(attr.ino, part.as_bytes())
            .unwrap_or_else(|e| panic!("lookup {path}: {e}"));
    }
    attr
}

fn read_all(fs: &FsCore<MemorySource>, ino: Ino) -> Vec<u8> {
    let mut out = Vec::new();
    loop {
        let bytes = fs
            .read(ino, out.len() as u64, 7000)
            .now_or_never()
            .unwrap()
            .unwrap();
        if bytes.is_empty() {
            return out;
        }
        out.extend_from_slice(&bytes);
    }
}

fn names(fs: &FsCore<MemorySource>, ino: Ino) -> Vec<String> {
    fs.readdir(ino, 0)
        .unwrap()
        .map(|e| String::from_utf8_lossy(e.name).into_owned())
        .collect()
}

#[test]
fn regular_file_attributes_match_tar_header() {
    let tar = tar_of(&[Entry::file("bin/tool", vec![7u8; 1000])
        .mode(0o4755)
        .owner(1000, 2000)
        .mtime_ns(1_700_000_000, 123_456_789)]);
    let fs = fs(layer(&tar));
    let attr = resolve(&fs, "bin/tool");
    assert_eq!(attr.kind, NodeKind::Reg);
    assert_eq!(attr.perm, 0o4755);
    assert_eq!(attr.mode(), libc::S_IFREG | 0o4755);
    assert_eq!((attr.uid, attr.gid), (1000, 2000));
    assert_eq!(attr.size, 1000);
    assert_eq!(attr.blocks, 2);
    assert_eq!(attr.blksize, 4096);
    assert_eq!(attr.nlink, 1);
    assert_eq!(
        (attr.mtime.secs, attr.mtime.nanos),
        (1_700_000_000, 123_456_789)
    );
    assert_eq!(read_all(&fs, attr.ino), vec![7u8; 1000]);
}

#[test]
fn directory_attributes_and_nlink() {
    let tar = tar_of(&[
        Entry::dir("srv/").mode(0o2775).owner(0, 50),
        Entry::dir("srv/a/"),
        Entry::dir("srv/b/"),
        Entry::file("srv/f", b"x"),
        Entry::dir("tmp/").mode(0o1777),
    ]);
    let fs = fs(layer(&tar));
    let srv = resolve(&fs, "srv");
    assert_eq!(srv.kind, NodeKind::Dir);
    assert_eq!(srv.mode(), libc::S_IFDIR | 0o2775);
    assert_eq!(srv.gid, 50);
    assert_eq!(srv.nlink, 4, "2 plus two subdirectories");
    assert_eq!(resolve(&fs, "tmp").perm, 0o1777);
    let root = fs.getattr(Ino::ROOT).unwrap();
    assert_eq!(root.ino, Ino(1));
    assert_eq!(root.kind, NodeKind::Dir);
}

#[test]
fn symlink_sizes_equal_target_length() {
    let fs = fs(layer(&recipes::symlinks()));
    for (path, target) in [
        ("usr/lib/libpq.so", "libpq.so.5.13".to_owned()),
        ("usr/lib/deep", recipes::long_symlink_target()),
        ("usr/lib/mounts", "/proc/mounts".to_owned()),
    ] {
        let attr = resolve(&fs, path);
        assert_eq!(attr.kind, NodeKind::Symlink, "{path}");
        assert_eq!(attr.mode() & libc::S_IFMT, libc::S_IFLNK, "{path}");
        assert_eq!(attr.size, target.len() as u64, "{path}");
        assert_eq!(fs.readlink(attr.ino).unwrap(), target.as_bytes(), "{path}");
    }
    assert_eq!(resolve(&fs, "usr/lib/libpq.so").size, 13);
    assert_eq!(resolve(&fs, "usr/lib/deep").size, 300);
    assert_eq!(resolve(&fs, "usr/lib/mounts").size, 12);
}

#[test]
fn device_and_fifo_attributes() {
    let tar = tar_of(&[
        Entry::char_device("dev/null", 1, 3).mode(0o666),
        Entry::block_device("dev/loop0", 7, 0)
            .mode(0o660)
            .owner(0, 6),
        Entry::char_device("dev/big", 300, 70000),
        Entry::fifo("run/pipe").mode(0o600),
    ]);
    let fs = fs(layer(&tar));
    let null = resolve(&fs, "dev/null");
    assert_eq!(null.mode(), libc::S_IFCHR | 0o666);
    assert_eq!(u64::from(null.rdev), libc::makedev(1, 3));
    let loop0 = resolve(&fs, "dev/loop0");
    assert_eq!(loop0.mode(), libc::S_IFBLK | 0o660);
    assert_eq!(u64::from(loop0.rdev), libc::makedev(7, 0));
    assert_eq!(resolve(&fs, "dev/big").rdev, encode_dev(300, 70000));
    let pipe = resolve(&fs, "run/pipe");
    assert_eq!(pipe.mode(), libc::S_IFIFO | 0o600);
    assert_eq!(pipe.size, 0);
}

#[test]
fn hardlinks_share_inode_and_nlink() {
    let fs = fs(layer(&recipes::hardlink_no_parent_dirs()));
    let app = resolve(&fs, "bin/app");
    let link = resolve(&fs, "bin/app.runfiles/_main/app_/app");
    assert_eq!(app.ino, link.ino);
    assert_eq!(app.nlink, 2);
    assert_eq!(read_all(&fs, app.ino), read_all(&fs, link.ino));
    // Implied parents: 0755, root-owned.
    let implied = resolve(&fs, "bin/app.runfiles");
    assert_eq!(implied.perm, 0o755);
    assert_eq!((implied.uid, implied.gid), (0, 0));
}

#[test]
fn duplicate_paths_last_entry_wins() {
    let fs = fs(layer(&recipes::duplicate_paths()));
    assert_eq!(resolve(&fs, "etc").perm, 0o700);
    assert_eq!(read_all(&fs, resolve(&fs, "etc/conf").ino), b"v2");
    assert_eq!(names(&fs, resolve(&fs, "etc").ino), [".", "..", "conf"]);
}

#[test]
fn zero_length_file_reads_eof_without_fetch() {
    let source = layer(&recipes::zero_length_files());
    let fs = fs(Arc::clone(&source));
    let zero = resolve(&fs, "data/zero_files");
    assert_eq!(zero.size, 0);
    assert_eq!(zero.blocks, 0);
    let before = source.reads();
    assert!(
        fs.read(zero.ino, 0, 4096)
            .now_or_never()
            .unwrap()
            .unwrap()
            .is_empty()
    );
    assert_eq!(
        source.reads(),
        before,
        "an empty file must not reach the source"
    );
    assert_eq!(names(&fs, resolve(&fs, "data/emptydir").ino), [".", ".."]);
}

#[test]
fn reads_across_chunk_boundaries_match_content() {
    let content: Vec<u8> = (0..100_000u32).map(|i| (i * 31 % 251) as u8).collect();
    let tar = tar_of(&[Entry::file("big", &content)]);
    let fs = fs(layer_with_chunk_size(&tar, 4096));
    let ino = resolve(&fs, "big").ino;
    assert_eq!(read_all(&fs, ino), content);
    for (offset, size) in [
        (4090u64, 20u32),
        (0, 1),
        (99_999, 10),
        (8192, 4096),
        (12_000, 50_000),
    ] {
        let bytes = fs.read(ino, offset, size).now_or_never().unwrap().unwrap();
        let end = (offset as usize + size as usize).min(content.len());
        assert_eq!(
            &bytes[..],
            &content[offset as usize..end],
            "offset {offset} size {size}"
        );
    }
    assert!(
        fs.read(ino, 100_000, 10)
            .now_or_never()
            .unwrap()
            .unwrap()
            .is_empty()
    );
    assert!(
        fs.read(ino, 500_000, 10)
            .now_or_never()
            .unwrap()
            .unwrap()
            .is_empty()
    );
}

#[test]
fn readdir_is_sorted_with_dot_entries() {
    let tar = tar_of(&[
        Entry::file("d/zeta", b""),
        Entry::file("d/alpha", b""),
        Entry::dir("d/Mid/"),
        Entry::symlink("d/link", "alpha"),
    ]);
    let fs = fs(layer(&tar));
    let d = resolve(&fs, "d");
    let entries: Vec<_> = fs.readdir(d.ino, 0).unwrap().collect();
    let listed: Vec<&[u8]> = entries.iter().map(|e| e.name).collect();
    assert_eq!(
        listed,
        [&b"."[..], b"..", b"Mid", b"alpha", b"link", b"zeta"]
    );
    assert_eq!(entries[0].ino, d.ino);
    assert_eq!(entries[1].ino, Ino::ROOT);
    assert_eq!(entries[2].kind, NodeKind::Dir);
    assert_eq!(entries[4].kind, NodeKind::Symlink);
    let offsets: Vec<u64> = entries.iter().map(|e| e.next_offset).collect();
    assert_eq!(offsets, [1, 2, 3, 4, 5, 6]);
    let root_entries: Vec<_> = fs.readdir(Ino::ROOT, 0).unwrap().collect();
    assert_eq!(
        root_entries[1].ino,
        Ino::ROOT,
        "`..` of the root is the root"
    );
}

#[test]
fn readdir_paging_resumes_at_offset() {
    let mut entries = Vec::new();
    for i in 0..500 {
        entries.push(Entry::file(format!("many/file-{i:04}"), b""));
    }
    let fs = fs(layer(&tar_of(&entries)));
    let dir = resolve(&fs, "many").ino;
    let full: Vec<Vec<u8>> = fs
        .readdir(dir, 0)
        .unwrap()
        .map(|e| e.name.to_vec())
        .collect();
    assert_eq!(full.len(), 502);
    // Page through 37 entries at a time, as the kernel does when its buffer fills.
    let mut paged = Vec::new();
    let mut offset = 0;
    loop {
        let page: Vec<_> = fs
            .readdir(dir, offset)
            .unwrap()
            .take(37)
            .map(|e| (e.name.to_vec(), e.next_offset))
            .collect();
        let Some(last) = page.last() else { break };
        offset = last.1;
        paged.extend(page.into_iter().map(|(name, _)| name));
    }
    assert_eq!(paged, full);
    // Listing again from a remembered offset gives the same entries.
    let again: Vec<Vec<u8>> = fs
        .readdir(dir, 300)
        .unwrap()
        .map(|e| e.name.to_vec())
        .collect();
    assert_eq!(again, full[300..]);
    assert_eq!(fs.readdir(dir, 502).unwrap().count(), 0);
    assert_eq!(
        fs.readdir(dir, 503).err().map(|e| e.errno()),
        Some(libc::EINVAL)
    );
}

#[test]
fn xattrs_binary_values_and_size_probes() {
    let fs = fs(layer(&recipes::xattrs_pax()));
    let ping = resolve(&fs, "usr/bin/ping");
    let cap = recipes::CAP_NET_RAW_EP;
    assert_eq!(
        fs.getxattr(ping.ino, b"security.capability", 0).unwrap(),
        XattrReply::Size(cap.len() as u32)
    );
    assert_eq!(
        fs.getxattr(ping.ino, b"security.capability", 64).unwrap(),
        XattrReply::Data(cap.to_vec())
    );
    assert_eq!(
        fs.getxattr(ping.ino, b"security.capability", 3)
            .unwrap_err()
            .errno(),
        libc::ERANGE
    );
    assert_eq!(
        fs.getxattr(ping.ino, b"user.note", 5).unwrap(),
        XattrReply::Data(b"hello".to_vec())
    );
    assert_eq!(
        fs.getxattr(ping.ino, b"user.missing", 10)
            .unwrap_err()
            .errno(),
        libc::ENODATA
    );
    assert_eq!(
        fs.getxattr(ping.ino, b"mtime", 10).unwrap_err().errno(),
        libc::ENODATA
    );

    let list = b"security.capability\0user.note\0".to_vec();
    assert_eq!(
        fs.listxattr(ping.ino, 0).unwrap(),
        XattrReply::Size(list.len() as u32)
    );
    assert_eq!(
        fs.listxattr(ping.ino, list.len() as u32).unwrap(),
        XattrReply::Data(list.clone())
    );
    assert_eq!(
        fs.listxattr(ping.ino, list.len() as u32 - 1)
            .unwrap_err()
            .errno(),
        libc::ERANGE
    );
    assert_eq!(resolve(&fs, "usr/bin/setuid-tool").perm, 0o4755);

    let plain = resolve(&fs, "usr");
    assert_eq!(fs.listxattr(plain.ino, 0).unwrap(), XattrReply::Size(0));
}

#[test]
fn whiteouts_become_char_devices() {
    let fs = fs(layer(&recipes::whiteouts_upper()));
    let etc = resolve(&fs, "etc");
    assert_eq!(names(&fs, etc.ino), [".", "..", "localtime", "network"]);
    let whiteout = resolve(&fs, "etc/localtime");
    assert_eq!(whiteout.kind, NodeKind::Char);
    assert_eq!(whiteout.rdev, 0);
    assert_eq!(whiteout.perm, 0);
    assert_eq!(
        fs.lookup(etc.ino, b".wh.localtime").unwrap_err().errno(),
        libc::ENOENT
    );
}

#[test]
fn opaque_directory_answers_overlay_xattr() {
    for tar in [
        recipes::whiteouts_upper(),
        recipes::whiteouts_upper_marker_last(),
        recipes::whiteouts_upper_only(),
    ] {
        let fs = fs(layer(&tar));
        let network = resolve(&fs, "etc/network");
        assert_eq!(
            fs.getxattr(network.ino, b"trusted.overlay.opaque", 16)
                .unwrap(),
            XattrReply::Data(b"y".to_vec())
        );
        assert_eq!(
            fs.getxattr(network.ino, b"trusted.overlay.opaque", 0)
                .unwrap(),
            XattrReply::Size(1)
        );
        assert_eq!(
            fs.listxattr(network.ino, 256).unwrap(),
            XattrReply::Data(b"trusted.overlay.opaque\0".to_vec())
        );
        assert!(
            !names(&fs, network.ino)
                .iter()
                .any(|n| n.starts_with(".wh."))
        );
        let etc = resolve(&fs, "etc");
        assert_eq!(
            fs.getxattr(etc.ino, b"trusted.overlay.opaque", 16)
                .unwrap_err()
                .errno(),
            libc::ENODATA
        );
    }
}

#[test]
fn user_opaque_xattr_for_rootless_overlay() {
    let source = layer(&recipes::whiteouts_upper());
    let fs = FsCore::new(
        source,
        FsOptions {
            opaque_xattr: lazypull_snapshotter::fs::OpaqueXattr::User,
            ..FsOptions::default()
        },
    );
    let network = resolve_generic(&fs, "etc/network");
    assert_eq!(
        fs.getxattr(network, b"user.overlay.opaque", 1).unwrap(),
        XattrReply::Data(b"y".to_vec())
    );
    assert_eq!(
        fs.getxattr(network, b"trusted.overlay.opaque", 1)
            .unwrap_err()
            .errno(),
        libc::ENODATA
    );
}

fn resolve_generic(fs: &FsCore<MemorySource>, path: &str) -> Ino {
    resolve(fs, path).ino
}

#[test]
fn layer_overlay_xattrs_stay_hidden() {
    let tar = tar_of(&[Entry::dir("d/")
        .xattr("trusted.overlay.redirect", "/etc")
        .xattr("user.keep", "1")]);
    let fs = fs(layer(&tar));
    let d = resolve(&fs, "d");
    assert_eq!(
        fs.getxattr(d.ino, b"trusted.overlay.redirect", 64)
            .unwrap_err()
            .errno(),
        libc::ENODATA
    );
    assert_eq!(
        fs.listxattr(d.ino, 64).unwrap(),
        XattrReply::Data(b"user.keep\0".to_vec())
    );
}

#[test]
fn bare_whiteouts_stay_ordinary_files() {
    let fs = fs(layer(&recipes::bare_whiteout()));
    let etc = resolve(&fs, "etc");
    assert_eq!(names(&fs, etc.ino), [".", "..", ".wh."]);
    assert_eq!(resolve(&fs, "etc/.wh.").kind, NodeKind::Reg);
    let fs_top = fs_top_level();
    assert!(names(&fs_top, Ino::ROOT).contains(&".wh.".to_owned()));
}

fn fs_top_level() -> FsCore<MemorySource> {
    fs(layer(&recipes::bare_whiteout_top_level()))
}

#[test]
fn landmarks_are_hidden_from_root() {
    let tar = tar_of(&[Entry::file("a", b"1"), Entry::file("b", b"2")]);
    let options = BuildOptions {
        prioritized: vec![b"b".to_vec()],
        ..BuildOptions::default()
    };
    let fs = fs(Arc::new(MemorySource::from_tar(&tar, &options).unwrap()));
    assert_eq!(names(&fs, Ino::ROOT), [".", "..", "a", "b"]);
    assert_eq!(
        fs.lookup(Ino::ROOT, b".prefetch.landmark")
            .unwrap_err()
            .errno(),
        libc::ENOENT
    );
    let plain = fs_plain();
    assert_eq!(
        plain
            .lookup(Ino::ROOT, b".no.prefetch.landmark")
            .unwrap_err()
            .errno(),
        libc::ENOENT
    );
}

fn fs_plain() -> FsCore<MemorySource> {
    fs(layer(&tar_of(&[Entry::file("a", b"1")])))
}

#[test]
fn lookup_errors_map_to_errno() {
    let fs = fs(layer(&tar_of(&[
        Entry::file("dir/file", b"abc"),
        Entry::symlink("link", "dir"),
    ])));
    let file = resolve(&fs, "dir/file");
    let dir = resolve(&fs, "dir");
    assert_eq!(
        fs.lookup(Ino::ROOT, b"missing").unwrap_err().errno(),
        libc::ENOENT
    );
    assert_eq!(
        fs.lookup(file.ino, b"x").unwrap_err().errno(),
        libc::ENOTDIR
    );
    assert_eq!(
        fs.lookup(Ino::ROOT, &[b'a'; 256]).unwrap_err().errno(),
        libc::ENAMETOOLONG
    );
    assert_eq!(fs.getattr(Ino(0)).unwrap_err().errno(), libc::ENOENT);
    assert_eq!(fs.getattr(Ino(9999)).unwrap_err().errno(), libc::ENOENT);
    assert_eq!(fs.readlink(file.ino).unwrap_err().errno(), libc::EINVAL);
    assert_eq!(
        fs.readdir(file.ino, 0).err().map(|e| e.errno()),
        Some(libc::ENOTDIR)
    );
    assert_eq!(
        fs.read(dir.ino, 0, 10)
            .now_or_never()
            .unwrap()
            .unwrap_err()
            .errno(),
        libc::EISDIR
    );
    // Symlinks are never followed by lookup: `link` stays a symlink, with no children.
    let link = resolve(&fs, "link");
    assert_eq!(link.kind, NodeKind::Symlink);
    assert_eq!(
        fs.lookup(link.ino, b"file").unwrap_err().errno(),
        libc::ENOTDIR
    );
    assert_eq!(fs.lookup(dir.ino, b"..").unwrap().ino, Ino::ROOT);
    assert_eq!(fs.lookup(dir.ino, b".").unwrap().ino, dir.ino);
}

#[test]
fn write_opens_are_read_only() {
    let fs = fs(layer(&tar_of(&[Entry::file("dir/file", b"abc")])));
    let file = resolve(&fs, "dir/file");
    let dir = resolve(&fs, "dir");
    assert!(fs.open(file.ino, libc::O_RDONLY).is_ok());
    for flags in [
        libc::O_WRONLY,
        libc::O_RDWR,
        libc::O_RDONLY | libc::O_TRUNC,
        libc::O_WRONLY | libc::O_APPEND,
    ] {
        assert_eq!(
            fs.open(file.ino, flags).unwrap_err().errno(),
            libc::EROFS,
            "flags {flags:#o}"
        );
    }
    assert_eq!(
        fs.open(dir.ino, libc::O_RDONLY).unwrap_err().errno(),
        libc::EISDIR
    );
    assert!(
        fs.opendir(dir.ino, libc::O_RDONLY | libc::O_DIRECTORY)
            .is_ok()
    );
    assert_eq!(
        fs.opendir(file.ino, libc::O_RDONLY).unwrap_err().errno(),
        libc::ENOTDIR
    );
    assert_eq!(
        fs.access(file.ino, libc::W_OK).unwrap_err().errno(),
        libc::EROFS
    );
    assert!(fs.access(file.ino, libc::R_OK | libc::X_OK).is_ok());
}

#[test]
fn failed_fetch_is_eio() {
    let source = layer(&tar_of(&[Entry::file("f", b"payload")]));
    let fs = fs(Arc::clone(&source));
    let file = resolve(&fs, "f");
    source.set_failing(true);
    let error = fs
        .read(file.ino, 0, 10)
        .now_or_never()
        .unwrap()
        .unwrap_err();
    assert_eq!(error.errno(), libc::EIO);
    source.set_failing(false);
    assert_eq!(
        &fs.read(file.ino, 0, 10).now_or_never().unwrap().unwrap()[..],
        b"payload"
    );
}

#[test]
fn slow_read_times_out_as_eio() {
    struct Stalled(MemorySource);
    impl lazypull_snapshotter::fs::FileSource for Stalled {
        fn index(&self) -> &estargz::index::LayerIndex {
            lazypull_snapshotter::fs::FileSource::index(&self.0)
        }
        fn read(
            &self,
            _node: estargz::index::NodeId,
            _offset: u64,
            _len: u64,
        ) -> futures_util::future::BoxFuture<
            '_,
            Result<bytes::Bytes, lazypull_snapshotter::fs::FsReadError>,
        > {
            Box::pin(futures_util::future::pending())
        }
    }
    let inner = MemorySource::from_tar(
        &tar_of(&[Entry::file("f", b"payload")]),
        &BuildOptions::default(),
    )
    .unwrap();
    let fs = FsCore::new(
        Arc::new(Stalled(inner)),
        FsOptions {
            read_timeout: Some(Duration::from_millis(50)),
            ..FsOptions::default()
        },
    );
    let ino = fs.lookup(Ino::ROOT, b"f").unwrap().ino;
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_time()
        .build()
        .unwrap();
    let error = runtime.block_on(fs.read(ino, 0, 7)).unwrap_err();
    assert_eq!(error.errno(), libc::EIO);
}

#[test]
fn statfs_reports_layer_totals() {
    let tar = tar_of(&[
        Entry::file("a", vec![1u8; 5000]),
        Entry::file("b", vec![2u8; 10]),
        Entry::dir("c/"),
    ]);
    let fs = fs(layer(&tar));
    let stat = fs.statfs();
    assert_eq!(stat.block_size, 4096);
    assert_eq!(stat.name_max, 255);
    assert_eq!(stat.blocks, 3, "2 blocks for 5000 bytes, 1 for 10");
    assert_eq!(stat.files, 4, "root, a, b, c");
    assert_eq!(stat.blocks_free, 0);
}

#[test]
fn trace_records_opened_files_once_in_order() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("trace.txt");
    let recorder = Arc::new(TraceRecorder::create(&path).unwrap());
    let tar = tar_of(&[
        Entry::file("usr/lib/b.so", b"b"),
        Entry::file("usr/bin/a", b"a"),
        Entry::symlink("usr/bin/l", "a"),
    ]);
    let fs = FsCore::new(
        layer(&tar),
        FsOptions {
            trace: Some(Arc::clone(&recorder)),
            ..FsOptions::default()
        },
    );
    let a = resolve(&fs, "usr/bin/a");
    let b = resolve(&fs, "usr/lib/b.so");
    let l = resolve(&fs, "usr/bin/l");
    fs.open(a.ino, libc::O_RDONLY).unwrap();
    fs.readlink(l.ino).unwrap();
    fs.open(b.ino, libc::O_RDONLY).unwrap();
    fs.open(a.ino, libc::O_RDONLY).unwrap();
    fs.opendir(resolve(&fs, "usr").ino, libc::O_RDONLY).unwrap();
    let text = std::fs::read_to_string(&path).unwrap();
    assert_eq!(text, "usr/bin/a\nusr/bin/l\nusr/lib/b.so\n");
}
