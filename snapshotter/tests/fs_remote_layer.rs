//! The mount's layer reader over a local blob: TOC verification, chunk reads through the
//! memory and disk caches, single fetches for concurrent readers, and the prefetch.

use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use estargz::build::{BuildOptions, BuildOutput, build};
use estargz::digest::Digest;
use lazypull_snapshotter::fs::{FileSource, FsCore, FsOptions, Ino};
use lazypull_snapshotter::mount::{LayerOpenError, RemoteLayer, RemoteLayerSettings};
use lazypull_snapshotter::remote::{BlobSource, LocalBlobSource};
use lazypull_testkit::tarbuild::{Builder, Entry};

struct Blob {
    _dir: tempfile::TempDir,
    source: Arc<dyn BlobSource>,
    out: BuildOutput,
}

fn content(len: usize, seed: u32) -> Vec<u8> {
    (0..len as u32).map(|i| (i.wrapping_mul(2_654_435_761).wrapping_add(seed) >> 13) as u8).collect()
}

async fn blob(entries: &[Entry], options: &BuildOptions) -> Blob {
    let mut tar = Builder::new();
    for entry in entries {
        tar.append(entry);
    }
    let mut bytes = Vec::new();
    let out = build(std::io::Cursor::new(tar.finish()), &mut bytes, options).unwrap();
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("blob");
    std::fs::write(&path, &bytes).unwrap();
    let source = LocalBlobSource::open(&path, "test-blob", None).await.unwrap();
    Blob { _dir: dir, source: Arc::new(source), out }
}

fn settings(disk: Option<&std::path::Path>) -> RemoteLayerSettings {
    RemoteLayerSettings { disk_cache: disk.map(|d| d.to_path_buf()), ..RemoteLayerSettings::default() }
}

async fn read_file(layer: &Arc<RemoteLayer>, path: &[u8]) -> Vec<u8> {
    let node = layer.index().lookup_path(path).unwrap();
    let size = layer.index().node(node).unwrap().size;
    layer.read(node, 0, size).await.unwrap().to_vec()
}

#[tokio::test]
async fn wrong_toc_digest_is_rejected() {
    let blob = blob(&[Entry::file("a", b"1")], &BuildOptions::default()).await;
    let wrong = Digest::of(b"not the toc");
    let error = RemoteLayer::open(blob.out.blob_digest, wrong, blob.source, &settings(None)).await.unwrap_err();
    assert!(matches!(error, LayerOpenError::Toc { .. }), "{error}");
}

#[tokio::test]
async fn plain_gzip_layer_names_the_fix() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("blob");
    std::fs::write(&path, b"\x1f\x8b\x08\x00 certainly not an estargz blob, just some bytes to read").unwrap();
    let source: Arc<dyn BlobSource> = Arc::new(LocalBlobSource::open(&path, "plain", None).await.unwrap());
    let digest = Digest::of(b"layer");
    let error = RemoteLayer::open(digest, Digest::of(b"toc"), source, &settings(None)).await.unwrap_err();
    assert!(matches!(error, LayerOpenError::NotEstargz { .. }), "{error}");
    let message = error.to_string();
    assert!(message.contains(&digest.to_string()), "{message}");
    assert!(message.contains("lazypull convert"), "{message}");
}

#[tokio::test]
async fn reads_match_content_across_chunks() {
    let data = content(50_000, 1);
    let options = BuildOptions { chunk_size: 4096, ..BuildOptions::default() };
    let blob = blob(&[Entry::file("big", &data)], &options).await;
    let layer = RemoteLayer::open(blob.out.blob_digest, blob.out.toc_digest, blob.source, &settings(None)).await.unwrap();
    let node = layer.index().lookup_path(b"big").unwrap();
    for (offset, len) in [(0u64, 50_000u64), (4095, 2), (10_000, 20_000), (49_999, 1)] {
        let bytes = layer.read(node, offset, len).await.unwrap();
        assert_eq!(&bytes[..], &data[offset as usize..(offset + len) as usize], "offset {offset} len {len}");
    }
}

#[tokio::test]
async fn memory_cache_serves_repeated_reads() {
    let blob = blob(&[Entry::file("f", content(10_000, 2))], &BuildOptions::default()).await;
    let layer = RemoteLayer::open(blob.out.blob_digest, blob.out.toc_digest, blob.source, &settings(None)).await.unwrap();
    let first = read_file(&layer, b"f").await;
    let reads_after_first = layer.counters().range_reads.load(Ordering::Relaxed);
    let second = read_file(&layer, b"f").await;
    assert_eq!(first, second);
    assert_eq!(layer.counters().range_reads.load(Ordering::Relaxed), reads_after_first);
    assert_eq!(layer.counters().cache_misses.load(Ordering::Relaxed), 1);
    assert_eq!(layer.counters().cache_hits.load(Ordering::Relaxed), 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_readers_share_one_fetch() {
    let data = content(200_000, 3);
    let blob = blob(&[Entry::file("f", &data)], &BuildOptions::default()).await;
    let layer = RemoteLayer::open(blob.out.blob_digest, blob.out.toc_digest, blob.source, &settings(None)).await.unwrap();
    let before = layer.counters().range_reads.load(Ordering::Relaxed);
    let tasks: Vec<_> = (0..16)
        .map(|_| {
            let layer = Arc::clone(&layer);
            tokio::spawn(async move { read_file(&layer, b"f").await })
        })
        .collect();
    for task in tasks {
        assert_eq!(task.await.unwrap(), data);
    }
    assert_eq!(layer.counters().range_reads.load(Ordering::Relaxed) - before, 1, "one fetch for 16 readers");
}

#[tokio::test]
async fn disk_cache_is_reused_and_checked() {
    let cache = tempfile::tempdir().unwrap();
    let data = content(30_000, 4);
    let first_blob = blob(&[Entry::file("f", &data)], &BuildOptions::default()).await;
    let first = RemoteLayer::open(first_blob.out.blob_digest, first_blob.out.toc_digest, Arc::clone(&first_blob.source), &settings(Some(cache.path())))
        .await
        .unwrap();
    assert_eq!(read_file(&first, b"f").await, data);

    // A second layer over the same blob finds the chunk on disk.
    let second = RemoteLayer::open(first_blob.out.blob_digest, first_blob.out.toc_digest, Arc::clone(&first_blob.source), &settings(Some(cache.path())))
        .await
        .unwrap();
    let before = second.counters().range_reads.load(Ordering::Relaxed);
    assert_eq!(read_file(&second, b"f").await, data);
    assert_eq!(second.counters().range_reads.load(Ordering::Relaxed), before, "served from disk");

    // A damaged cache file is a miss, never wrong data.
    for entry in walk(cache.path()) {
        std::fs::write(&entry, b"garbage").unwrap();
    }
    let third = RemoteLayer::open(first_blob.out.blob_digest, first_blob.out.toc_digest, first_blob.source, &settings(Some(cache.path())))
        .await
        .unwrap();
    assert_eq!(read_file(&third, b"f").await, data);
    assert_eq!(third.counters().cache_misses.load(Ordering::Relaxed), 1);
}

fn walk(dir: &std::path::Path) -> Vec<std::path::PathBuf> {
    let mut files = Vec::new();
    for entry in std::fs::read_dir(dir).unwrap().flatten() {
        if entry.path().is_dir() {
            files.extend(walk(&entry.path()));
        } else {
            files.push(entry.path());
        }
    }
    files
}

#[tokio::test]
async fn prefetch_fills_cache_for_prioritized_files() {
    let hot = content(20_000, 5);
    let options = BuildOptions { prioritized: vec![b"hot".to_vec()], ..BuildOptions::default() };
    let blob = blob(&[Entry::file("cold", content(20_000, 6)), Entry::file("hot", &hot)], &options).await;
    let layer = RemoteLayer::open(blob.out.blob_digest, blob.out.toc_digest, blob.source, &settings(None)).await.unwrap();
    assert!(layer.wait_prefetch(Duration::from_secs(10)).await);
    let counters = layer.counters();
    let total = counters.prefetch_total_bytes.load(Ordering::Relaxed);
    assert!(total > 0);
    assert_eq!(counters.prefetch_done_bytes.load(Ordering::Relaxed), total);
    let before = counters.range_reads.load(Ordering::Relaxed);
    assert_eq!(read_file(&layer, b"hot").await, hot);
    assert_eq!(counters.range_reads.load(Ordering::Relaxed), before, "the prioritized file was prefetched");
    read_file(&layer, b"cold").await;
    assert_eq!(counters.range_reads.load(Ordering::Relaxed), before + 1, "other files are fetched on demand");
}

#[tokio::test]
async fn filesystem_reads_through_the_layer() {
    let blob = blob(&[Entry::file("dir/f", b"through fuse core")], &BuildOptions::default()).await;
    let layer = RemoteLayer::open(blob.out.blob_digest, blob.out.toc_digest, blob.source, &settings(None)).await.unwrap();
    let fs = FsCore::new(layer, FsOptions::default());
    let dir = fs.lookup(Ino::ROOT, b"dir").unwrap();
    let file = fs.lookup(dir.ino, b"f").unwrap();
    assert_eq!(&fs.read(file.ino, 8, 100).await.unwrap()[..], b"fuse core");
}
