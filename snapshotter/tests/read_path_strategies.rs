//! One expectation run through every read strategy: the bytes of a file must not depend on
//! what is cached, how reads are aligned, or how chunks are coalesced. Also the edges of
//! `Layer::open` and `Layer::read`.

mod read_path_support;

use std::sync::Arc;

use estargz::Compression;
use estargz::build::BuildOptions;
use estargz::index::NodeId;
use lazypull_snapshotter::cache::{CacheConfig, ChunkCache};
use lazypull_snapshotter::layer::{Layer, LayerError, LayerInfo};
use lazypull_testkit::tarbuild::{pattern, text_pattern};
use read_path_support::*;

/// 4 KiB chunks make a 50 000-byte file 13 chunks, the last one partial.
const CHUNK: u64 = 4096;

fn files() -> Vec<FileSpec> {
    let mut multi = text_pattern(30_000, 7);
    multi.extend(pattern(20_000, 8));
    vec![
        FileSpec::new("dir/small.txt", text_pattern(100, 1)),
        FileSpec::new("dir/multi.bin", multi),
        FileSpec::new("dir/exact.bin", pattern(3 * CHUNK as usize, 9)),
        FileSpec::new("dir/empty", Vec::new()),
        FileSpec::new("dir/one.bin", vec![42]),
    ]
}

fn gzip_layer() -> Built {
    build_layer(files(), CHUNK, &[])
}

fn zstd_layer() -> Built {
    let options = BuildOptions {
        chunk_size: CHUNK,
        compression: Compression::Zstd,
        level: 3,
        ..BuildOptions::default()
    };
    build_with(files(), &options)
}

fn expected(built: &Built, path: &str) -> Vec<u8> {
    built
        .files
        .iter()
        .find(|f| f.path == path)
        .expect("file is generated")
        .data
        .clone()
}

/// Reads `[offset, offset+len)` of `path` through `layer`, clamped like pread.
async fn read_range(layer: &Layer, path: &str, offset: u64, len: u32) -> Vec<u8> {
    layer
        .read(node(layer.index(), path), offset, len)
        .await
        .expect("read succeeds")
        .to_vec()
}

/// Every strategy returns the whole content of `path`.
async fn strategies(built: &Built, path: &str) -> Vec<(&'static str, Vec<u8>)> {
    let config = test_config();
    let size = expected(built, path).len() as u64;
    let mut out = Vec::new();

    let cold = Arc::new(ChunkCache::in_memory(64 << 20));
    let layer = open(built, built.source(), cold.clone(), &config).await;
    out.push((
        "uncached, aligned 4 KiB reads",
        read_all(&layer, path, CHUNK as u32).await,
    ));
    out.push(("fully cached", read_all(&layer, path, CHUNK as u32).await));

    let layer = open(
        built,
        built.source(),
        Arc::new(ChunkCache::in_memory(64 << 20)),
        &config,
    )
    .await;
    for chunk in [0, 3, 7] {
        read_range(&layer, path, chunk * CHUNK + 5, 1).await;
    }
    out.push(("partly cached", read_all(&layer, path, CHUNK as u32).await));

    let layer = open(
        built,
        built.source(),
        Arc::new(ChunkCache::in_memory(64 << 20)),
        &config,
    )
    .await;
    out.push((
        "unaligned 1000-byte reads",
        read_all(&layer, path, 1000).await,
    ));

    let layer = open(
        built,
        built.source(),
        Arc::new(ChunkCache::in_memory(64 << 20)),
        &config,
    )
    .await;
    out.push(("odd 3333-byte reads", read_all(&layer, path, 3333).await));

    let layer = open(
        built,
        built.source(),
        Arc::new(ChunkCache::in_memory(64 << 20)),
        &config,
    )
    .await;
    let mut stitched = Vec::new();
    let mut offset = 0;
    while offset < size {
        // Reads that straddle every chunk boundary: 20 bytes ending 10 bytes past it.
        let boundary = ((offset / CHUNK) + 1) * CHUNK;
        let len = (boundary + 10).min(size) - offset;
        stitched.extend(read_range(&layer, path, offset, len as u32).await);
        offset += len;
    }
    out.push(("reads across chunk boundaries", stitched));

    let layer = open(
        built,
        built.source(),
        Arc::new(ChunkCache::in_memory(64 << 20)),
        &config,
    )
    .await;
    out.push((
        "one coalesced read",
        read_range(&layer, path, 0, u32::MAX).await,
    ));

    let layer = open(
        built,
        built.source(),
        Arc::new(ChunkCache::in_memory(64 << 20)),
        &config,
    )
    .await;
    let mut backwards = vec![0u8; size as usize];
    let mut end = size;
    while end > 0 {
        let start = end.saturating_sub(777);
        let bytes = read_range(&layer, path, start, (end - start) as u32).await;
        backwards[start as usize..end as usize].copy_from_slice(&bytes);
        end = start;
    }
    out.push(("backwards 777-byte reads", backwards));

    let disk = tempfile::tempdir().unwrap();
    let cache_config = CacheConfig {
        memory_bytes: 0,
        disk_dir: Some(disk.path().to_path_buf()),
        ..CacheConfig::default()
    };
    let disk_cache = Arc::new(ChunkCache::new(&cache_config).unwrap());
    let layer = open(built, built.source(), disk_cache.clone(), &config).await;
    out.push(("disk tier only, cold", read_all(&layer, path, 5000).await));
    disk_cache.flush().await;
    out.push(("disk tier only, warm", read_all(&layer, path, 5000).await));

    let mut merge_off = config.clone();
    merge_off.fetch.merge_gap_bytes = 0;
    merge_off.fetch.max_request_bytes = 1;
    let layer = open(
        built,
        built.source(),
        Arc::new(ChunkCache::in_memory(64 << 20)),
        &merge_off,
    )
    .await;
    out.push((
        "one request per chunk",
        read_range(&layer, path, 0, u32::MAX).await,
    ));

    out
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_strategy_returns_identical_bytes() {
    for (name, built) in [("gzip", gzip_layer()), ("zstd", zstd_layer())] {
        for path in [
            "dir/multi.bin",
            "dir/exact.bin",
            "dir/small.txt",
            "dir/one.bin",
        ] {
            let want = expected(&built, path);
            for (strategy, got) in strategies(&built, path).await {
                assert_eq!(got.len(), want.len(), "{name} {path}: {strategy}: length");
                assert!(got == want, "{name} {path}: {strategy}: bytes differ");
            }
        }
    }
}

#[tokio::test]
async fn fully_cached_read_makes_no_request() {
    let built = gzip_layer();
    let source = built.source();
    let layer = open(
        &built,
        source.clone(),
        Arc::new(ChunkCache::in_memory(64 << 20)),
        &test_config(),
    )
    .await;
    read_all(&layer, "dir/multi.bin", 4096).await;
    let before = source.requests();
    read_all(&layer, "dir/multi.bin", 1000).await;
    assert_eq!(source.requests(), before);
    assert!(layer.stats().memory_hits > 0);
}

#[tokio::test]
async fn whole_file_read_is_one_request() {
    let built = gzip_layer();
    let source = built.source();
    let layer = open(
        &built,
        source.clone(),
        Arc::new(ChunkCache::in_memory(64 << 20)),
        &test_config(),
    )
    .await;
    source.reset_counters();
    let data = read_range(&layer, "dir/multi.bin", 0, u32::MAX).await;
    assert_eq!(data, expected(&built, "dir/multi.bin"));
    assert_eq!(
        source.requests(),
        1,
        "13 neighbouring chunks coalesce: {:?}",
        source.log()
    );
}

#[tokio::test]
async fn small_cached_gap_is_fetched_through() {
    let built = gzip_layer();
    let offsets = {
        let layer = open(
            &built,
            built.source(),
            Arc::new(ChunkCache::in_memory(64 << 20)),
            &test_config(),
        )
        .await;
        chunk_offsets(&layer, "dir/multi.bin")
    };
    for (gap, expected_requests) in [(256 << 10, 1), (0, 2)] {
        let mut config = test_config();
        config.fetch.merge_gap_bytes = gap;
        let source = built.source();
        let layer = open(
            &built,
            source.clone(),
            Arc::new(ChunkCache::in_memory(64 << 20)),
            &config,
        )
        .await;
        read_range(&layer, "dir/multi.bin", 2 * CHUNK, 1).await;
        source.reset_counters();
        let data = read_range(&layer, "dir/multi.bin", CHUNK, 3 * CHUNK as u32).await;
        assert_eq!(
            data,
            expected(&built, "dir/multi.bin")[CHUNK as usize..4 * CHUNK as usize]
        );
        assert_eq!(
            source.requests(),
            expected_requests,
            "gap {gap}: {:?}",
            source.log()
        );
        if gap > 0 {
            assert_eq!(
                source.log()[0],
                offsets[1]..offsets[4],
                "the cached chunk's bytes are fetched through"
            );
        }
    }
}

#[tokio::test]
async fn empty_and_past_end_reads_send_nothing() {
    let built = gzip_layer();
    let source = built.source();
    let layer = open(
        &built,
        source.clone(),
        Arc::new(ChunkCache::in_memory(64 << 20)),
        &test_config(),
    )
    .await;
    source.reset_counters();
    assert!(read_range(&layer, "dir/empty", 0, 4096).await.is_empty());
    assert!(read_range(&layer, "dir/empty", 100, 1).await.is_empty());
    assert!(
        read_range(&layer, "dir/small.txt", 100, 10)
            .await
            .is_empty()
    );
    assert!(
        read_range(&layer, "dir/small.txt", u64::MAX, u32::MAX)
            .await
            .is_empty()
    );
    assert!(read_range(&layer, "dir/small.txt", 0, 0).await.is_empty());
    assert_eq!(source.requests(), 0);
    assert_eq!(
        layer
            .index()
            .node(node(layer.index(), "dir/empty"))
            .unwrap()
            .size,
        0
    );
}

#[tokio::test]
async fn read_is_clamped_at_end_of_file() {
    let built = gzip_layer();
    let layer = open(
        &built,
        built.source(),
        Arc::new(ChunkCache::in_memory(64 << 20)),
        &test_config(),
    )
    .await;
    let tail = read_range(&layer, "dir/small.txt", 90, 4096).await;
    assert_eq!(tail, expected(&built, "dir/small.txt")[90..]);
}

#[tokio::test]
async fn directories_and_unknown_nodes_are_rejected() {
    let built = gzip_layer();
    let layer = open(
        &built,
        built.source(),
        Arc::new(ChunkCache::in_memory(64 << 20)),
        &test_config(),
    )
    .await;
    let dir = node(layer.index(), "dir");
    assert!(matches!(
        layer.read(dir, 0, 10).await,
        Err(LayerError::NotARegularFile { .. })
    ));
    let missing = NodeId(layer.index().node_count() as u32 + 5);
    assert!(matches!(
        layer.read(missing, 0, 10).await,
        Err(LayerError::NoSuchNode { .. })
    ));
}

#[tokio::test]
async fn open_reads_footer_and_toc_in_one_request() {
    let built = gzip_layer();
    let source = built.source();
    let layer = open(
        &built,
        source.clone(),
        Arc::new(ChunkCache::in_memory(64 << 20)),
        &test_config(),
    )
    .await;
    assert_eq!(source.requests(), 1, "{:?}", source.log());
    assert_eq!(layer.toc_digest(), built.toc_digest);
    assert_eq!(layer.stats().requests, 1);
}

#[tokio::test]
async fn large_toc_adds_one_request() {
    let built = gzip_layer();
    let source = built.source();
    let mut config = test_config();
    config.toc_tail_bytes = 100;
    let layer = open(
        &built,
        source.clone(),
        Arc::new(ChunkCache::in_memory(64 << 20)),
        &config,
    )
    .await;
    let size = built.blob.len() as u64;
    let log = source.log();
    assert_eq!(log.len(), 2, "{log:?}");
    assert_eq!(log[0], size - 100..size);
    assert_eq!(
        log[1].end,
        size - 100,
        "the second request stops where the tail starts"
    );
    assert_eq!(
        read_all(&layer, "dir/small.txt", 4096).await,
        expected(&built, "dir/small.txt")
    );
}

#[tokio::test]
async fn non_estargz_blob_lists_reasons() {
    let blob = bytes::Bytes::from(pattern(100_000, 3));
    let info = LayerInfo::new(estargz::Digest::of(&blob), blob.len() as u64, None);
    let source = Arc::new(MemSource::new(blob));
    let mut config = test_config();
    config.allow_unverified = true;
    let err = Layer::open(
        &info,
        source,
        Arc::new(ChunkCache::in_memory(1 << 20)),
        &config,
    )
    .await
    .unwrap_err();
    assert!(err.is_not_lazy_pullable(), "{err}");
    let LayerError::NotEstargz { reasons, .. } = &err else {
        panic!("expected NotEstargz, got {err:?}")
    };
    assert!(reasons.contains("gzip"), "{reasons}");
    assert!(reasons.contains("zstd"), "{reasons}");
}

#[tokio::test]
async fn annotated_blob_without_footer_is_damaged() {
    let blob = bytes::Bytes::from(pattern(100_000, 3));
    let toc_digest = estargz::Digest::of(b"toc");
    let info = LayerInfo::new(
        estargz::Digest::of(&blob),
        blob.len() as u64,
        Some(toc_digest),
    );
    let source = Arc::new(MemSource::new(blob));
    let err = Layer::open(
        &info,
        source,
        Arc::new(ChunkCache::in_memory(1 << 20)),
        &test_config(),
    )
    .await
    .unwrap_err();
    assert!(
        err.is_not_lazy_pullable(),
        "a full pull may still work: {err}"
    );
    let LayerError::DamagedBlob {
        size,
        toc_digest: annotated,
        reasons,
        ..
    } = &err
    else {
        panic!("expected DamagedBlob, got {err:?}")
    };
    assert_eq!(*size, 100_000);
    assert_eq!(*annotated, toc_digest);
    assert!(reasons.contains("gzip"), "{reasons}");
    let message = err.to_string();
    assert!(message.contains("truncated or corrupt"), "{message}");
    assert!(message.contains("100000-byte blob"), "{message}");
    assert!(!message.contains("convert"), "{message}");
}

#[tokio::test]
async fn missing_toc_digest_is_refused_before_any_request() {
    let built = gzip_layer();
    let source = built.source();
    let info = LayerInfo {
        toc_digest: None,
        ..built.info()
    };
    let cache = Arc::new(ChunkCache::in_memory(1 << 20));
    let err = Layer::open(&info, source.clone(), cache.clone(), &test_config())
        .await
        .unwrap_err();
    assert!(matches!(err, LayerError::MissingTocDigest { .. }), "{err}");
    assert_eq!(source.requests(), 0);

    let mut config = test_config();
    config.allow_unverified = true;
    let layer = Layer::open(&info, source, cache, &config).await.unwrap();
    assert_eq!(layer.toc_digest(), built.toc_digest);
}

#[tokio::test]
async fn wrong_toc_digest_is_rejected() {
    let built = gzip_layer();
    let info = LayerInfo {
        toc_digest: Some(estargz::Digest::of(b"another toc")),
        ..built.info()
    };
    let err = Layer::open(
        &info,
        built.source(),
        Arc::new(ChunkCache::in_memory(1 << 20)),
        &test_config(),
    )
    .await
    .unwrap_err();
    assert!(
        matches!(
            err,
            LayerError::Toc {
                source: estargz::TocError::DigestMismatch { .. },
                ..
            }
        ),
        "{err}"
    );
    assert!(err.is_not_lazy_pullable());
}

#[tokio::test]
async fn descriptor_size_must_match_source() {
    let built = gzip_layer();
    let info = LayerInfo {
        size: built.blob.len() as u64 + 1,
        ..built.info()
    };
    let err = Layer::open(
        &info,
        built.source(),
        Arc::new(ChunkCache::in_memory(1 << 20)),
        &test_config(),
    )
    .await
    .unwrap_err();
    assert!(matches!(err, LayerError::SizeMismatch { .. }), "{err}");
}
