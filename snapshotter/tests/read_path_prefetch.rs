//! Prefetch at open (landmarks, configured sizes) and background fetch (completion, yielding to
//! demand reads, stopping with the layer).

mod read_path_support;

use std::sync::Arc;
use std::time::{Duration, Instant};

use estargz::index::Landmark;
use lazypull_snapshotter::cache::{CacheConfig, ChunkCache};
use lazypull_snapshotter::layer::{BackgroundState, Layer, LayerConfig, PrefetchState};
use lazypull_testkit::tarbuild::text_pattern;
use read_path_support::*;

const CHUNK: u64 = 64 << 10;
const WAIT: Duration = Duration::from_secs(30);

/// Ten files of 200 KiB: four chunks each, the last one partial.
fn files() -> Vec<FileSpec> {
    (0..10)
        .map(|i| FileSpec::new(&format!("dir/f{i}.bin"), text_pattern(200 << 10, i)))
        .collect()
}

fn paths() -> Vec<String> {
    (0..10).map(|i| format!("dir/f{i}.bin")).collect()
}

fn expected(built: &Built, path: &str) -> Vec<u8> {
    built
        .files
        .iter()
        .find(|f| f.path == path)
        .unwrap()
        .data
        .clone()
}

fn background_config() -> LayerConfig {
    let mut config = test_config();
    config.prefetch.background = true;
    config.prefetch.background_quiet = Duration::ZERO;
    config.prefetch.background_request_bytes = 256 << 10;
    config
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn landmark_range_is_cached_after_prefetch() {
    let built = build_layer(files(), CHUNK, &["dir/f2.bin", "dir/f5.bin"]);
    let source = built.source();
    let layer = open(
        &built,
        source.clone(),
        Arc::new(ChunkCache::in_memory(64 << 20)),
        &test_config(),
    )
    .await;
    let Some(Landmark::Prefetch { offset: landmark }) = layer.index().landmark() else {
        panic!("layer has a prefetch landmark")
    };
    assert!(
        layer.index().lookup_path(b".prefetch.landmark").is_none(),
        "landmark is hidden"
    );

    assert_eq!(
        layer.wait_prefetch(WAIT).await,
        PrefetchState::Done { chunks: 8 }
    );
    let requests = source.log();
    assert!(requests.len() > 1, "{requests:?}");
    for request in &requests[1..] {
        assert!(
            request.end <= landmark,
            "prefetch request {request:?} crosses the landmark at {landmark}"
        );
    }
    assert!(layer.stats().prefetch_bytes > 0);

    source.reset_counters();
    for path in ["dir/f2.bin", "dir/f5.bin"] {
        assert!(
            read_all(&layer, path, 4096).await == expected(&built, path),
            "{path}"
        );
    }
    assert_eq!(
        source.requests(),
        0,
        "prioritized files come from the cache"
    );
    read_all(&layer, "dir/f0.bin", 4096).await;
    assert!(source.requests() > 0, "other files are fetched on demand");
}

#[tokio::test]
async fn no_prefetch_landmark_prefetches_nothing() {
    let built = build_layer(files(), CHUNK, &[]);
    assert_eq!(
        build_index_landmark(&built).await,
        Some(Landmark::NoPrefetch)
    );
    let source = built.source();
    let mut config = test_config();
    config.prefetch.prefetch_default_bytes = 10 << 20;
    let mut info = built.info();
    info.prefetch_bytes = Some(10 << 20);
    let layer = Layer::open(
        &info,
        source.clone(),
        Arc::new(ChunkCache::in_memory(64 << 20)),
        &config,
    )
    .await
    .unwrap();
    assert_eq!(
        layer.wait_prefetch(WAIT).await,
        PrefetchState::Done { chunks: 0 }
    );
    assert_eq!(source.requests(), 1, "only the open: {:?}", source.log());
}

async fn build_index_landmark(built: &Built) -> Option<Landmark> {
    let layer = open(
        built,
        built.source(),
        Arc::new(ChunkCache::in_memory(1 << 20)),
        &test_config(),
    )
    .await;
    layer.index().landmark()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn layer_without_landmark_prefetches_configured_size() {
    let built = without_landmark(&build_layer(files(), CHUNK, &[]));
    assert_eq!(build_index_landmark(&built).await, None);

    // Nothing by default.
    let source = built.source();
    let layer = open(
        &built,
        source.clone(),
        Arc::new(ChunkCache::in_memory(64 << 20)),
        &test_config(),
    )
    .await;
    assert_eq!(
        layer.wait_prefetch(WAIT).await,
        PrefetchState::Done { chunks: 0 }
    );
    assert_eq!(source.requests(), 1);
    // The blob range that contains f0, f1 and f2.
    let end = chunk_offsets(&layer, "dir/f3.bin")[0];
    drop(layer);

    let by_label = {
        let mut info = built.info();
        info.prefetch_bytes = Some(end);
        (info, test_config())
    };
    let by_config = {
        let mut config = test_config();
        config.prefetch.prefetch_default_bytes = end;
        (built.info(), config)
    };
    for (name, (info, config)) in [("label", by_label), ("config", by_config)] {
        let source = built.source();
        let layer = Layer::open(
            &info,
            source.clone(),
            Arc::new(ChunkCache::in_memory(64 << 20)),
            &config,
        )
        .await
        .unwrap();
        assert_eq!(
            layer.wait_prefetch(WAIT).await,
            PrefetchState::Done { chunks: 12 },
            "{name}"
        );
        source.reset_counters();
        for path in ["dir/f0.bin", "dir/f1.bin", "dir/f2.bin"] {
            assert!(
                read_all(&layer, path, 4096).await == expected(&built, path),
                "{name} {path}"
            );
        }
        assert_eq!(
            source.requests(),
            0,
            "{name}: prefetched files come from the cache"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn background_fetch_caches_whole_layer() {
    let built = build_layer(files(), CHUNK, &["dir/f1.bin"]);
    let dir = tempfile::tempdir().unwrap();
    let cache_config = CacheConfig {
        disk_dir: Some(dir.path().to_path_buf()),
        ..CacheConfig::default()
    };
    let cache = Arc::new(ChunkCache::new(&cache_config).unwrap());
    let source = built.source();
    let layer = open(&built, source.clone(), cache.clone(), &background_config()).await;

    assert_eq!(layer.wait_background(WAIT).await, BackgroundState::Done);
    assert_eq!(layer.fetched_fraction(), 1.0);
    let stats = layer.stats();
    assert!(stats.background_bytes > 0, "{stats:?}");
    assert!(stats.prefetch_bytes > 0, "{stats:?}");
    assert_eq!(
        stats.chunks_verified, 40,
        "each chunk fetched once: {stats:?}"
    );

    source.reset_counters();
    for path in paths() {
        assert!(
            read_all(&layer, &path, 10_000).await == expected(&built, &path),
            "{path}"
        );
    }
    assert_eq!(source.requests(), 0, "everything is cached");

    // Opened again over the warm disk tier, the layer counts as fully fetched without fetching.
    let source = built.source();
    let again = open(&built, source.clone(), cache, &background_config()).await;
    assert_eq!(again.wait_background(WAIT).await, BackgroundState::Done);
    assert_eq!(again.fetched_fraction(), 1.0);
    assert_eq!(source.requests(), 1, "only the open: {:?}", source.log());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn background_fetch_needs_room_for_the_layer() {
    let built = build_layer(files(), CHUNK, &[]);
    let small = open(
        &built,
        built.source(),
        Arc::new(ChunkCache::in_memory(1 << 20)),
        &background_config(),
    )
    .await;
    assert_eq!(
        small.wait_background(WAIT).await,
        BackgroundState::Idle,
        "1 MiB cannot hold 2 MiB of files"
    );

    let large = open(
        &built,
        built.source(),
        Arc::new(ChunkCache::in_memory(64 << 20)),
        &background_config(),
    )
    .await;
    assert_eq!(large.wait_background(WAIT).await, BackgroundState::Done);
    assert_eq!(large.fetched_fraction(), 1.0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn demand_read_does_not_wait_for_background() {
    const DELAY: Duration = Duration::from_millis(400);
    let built = build_layer(files()[..3].to_vec(), CHUNK, &[]);
    // One request at a time: a demand request would queue behind a background one that kept
    // the link.
    let source = Arc::new(
        MemSource::new(built.blob.clone())
            .with_delay(DELAY)
            .with_single_link(),
    );
    let mut config = background_config();
    config.prefetch.background_concurrency = 1;
    config.prefetch.background_request_bytes = 1;
    let layer = open(
        &built,
        source.clone(),
        Arc::new(ChunkCache::in_memory(64 << 20)),
        &config,
    )
    .await;
    // Start the demand read just after the first background request took the link.
    while source.requests() < 2 {
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    assert_eq!(
        layer.wait_background(Duration::ZERO).await,
        BackgroundState::Running
    );

    let id = node(layer.index(), "dir/f2.bin");
    let started = Instant::now();
    let bytes = layer.read(id, 150_000, 100).await.unwrap();
    let elapsed = started.elapsed();
    assert_eq!(bytes[..], expected(&built, "dir/f2.bin")[150_000..150_100]);
    assert!(
        elapsed < DELAY * 3 / 2,
        "demand read took {elapsed:?}, one request takes {DELAY:?}"
    );
    assert_eq!(
        layer.wait_background(Duration::ZERO).await,
        BackgroundState::Running,
        "background work was pending"
    );
    assert!(layer.stats().background_interruptions >= 1);

    assert_eq!(layer.wait_background(WAIT).await, BackgroundState::Done);
    assert_eq!(layer.fetched_fraction(), 1.0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dropping_layer_stops_background_fetch() {
    const DELAY: Duration = Duration::from_millis(100);
    let built = build_layer(files(), CHUNK, &[]);
    let source = Arc::new(MemSource::new(built.blob.clone()).with_delay(DELAY));
    let mut config = background_config();
    config.prefetch.background_request_bytes = 1;
    let layer = open(
        &built,
        source.clone(),
        Arc::new(ChunkCache::in_memory(64 << 20)),
        &config,
    )
    .await;
    tokio::time::sleep(DELAY * 3).await;
    assert_eq!(
        layer.wait_background(Duration::ZERO).await,
        BackgroundState::Running
    );

    drop(layer);
    let after_drop = source.requests();
    tokio::time::sleep(DELAY * 5).await;
    assert_eq!(
        source.requests(),
        after_drop,
        "no request starts after the layer is gone"
    );
    assert!(
        after_drop < 41,
        "background fetch had not finished: {after_drop} requests"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn wait_prefetch_times_out_while_running() {
    let built = build_layer(files(), CHUNK, &["dir/f0.bin"]);
    let source =
        Arc::new(MemSource::new(built.blob.clone()).with_delay(Duration::from_millis(500)));
    let layer = Layer::open(
        &built.info(),
        source,
        Arc::new(ChunkCache::in_memory(64 << 20)),
        &test_config(),
    )
    .await
    .unwrap();
    assert_eq!(
        layer.wait_prefetch(Duration::from_millis(50)).await,
        PrefetchState::Running
    );
    assert_eq!(
        layer.wait_prefetch(WAIT).await,
        PrefetchState::Done { chunks: 4 }
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn background_fetch_respects_bandwidth_limit() {
    let built = build_layer(files(), CHUNK, &[]);
    let probe = open(
        &built,
        built.source(),
        Arc::new(ChunkCache::in_memory(1 << 20)),
        &test_config(),
    )
    .await;
    let payload: u64 = probe
        .index()
        .all_chunks()
        .iter()
        .map(|c| c.comp_end() - c.comp_offset())
        .sum();
    drop(probe);

    // A limit of half the payload per second: the whole layer takes about two seconds.
    let mut config = background_config();
    config.prefetch.background_bytes_per_sec = payload / 2;
    let started = Instant::now();
    let layer = open(
        &built,
        built.source(),
        Arc::new(ChunkCache::in_memory(64 << 20)),
        &config,
    )
    .await;
    assert_eq!(layer.wait_background(WAIT).await, BackgroundState::Done);
    let elapsed = started.elapsed();
    assert!(
        elapsed >= Duration::from_millis(1500),
        "background fetch took only {elapsed:?}"
    );
    assert_eq!(layer.fetched_fraction(), 1.0);
}
