//! Demand read-ahead: a miss also fetches the files stored right after it, in the same request.

mod read_path_support;

use std::sync::Arc;

use estargz::index::NodeId;
use lazypull_snapshotter::cache::ChunkCache;
use lazypull_snapshotter::layer::Layer;
use read_path_support::*;

/// Twenty 4 KiB files stored one after another, then a 1 MiB file.
fn small_files() -> Built {
    let mut files: Vec<FileSpec> = (0..20)
        .map(|i| {
            FileSpec::new(
                &format!("dir/m{i:02}.py"),
                (0..4096u32).map(|b| (b * 7 + i) as u8).collect(),
            )
        })
        .collect();
    files.push(FileSpec::new(
        "dir/zz-big.bin",
        (0..1u32 << 20).map(|b| (b % 251) as u8).collect(),
    ));
    build_layer(files, 64 << 10, &[])
}

fn readahead_config(bytes: u64) -> lazypull_snapshotter::layer::LayerConfig {
    let mut config = test_config();
    config.fetch.readahead_bytes = bytes;
    config
}

#[tokio::test]
async fn miss_brings_following_files_in_one_request() {
    let built = small_files();
    let source = built.source();
    let layer = open(
        &built,
        source.clone(),
        Arc::new(ChunkCache::in_memory(64 << 20)),
        &readahead_config(64 << 10),
    )
    .await;
    source.reset_counters();

    let first = read_all(&layer, "dir/m00.py", 4096).await;
    assert_eq!(first, built.files[0].data);
    assert_eq!(source.requests(), 1, "{:?}", source.log());
    let fetched = source.bytes();
    assert!(
        fetched > 4096,
        "read-ahead fetched {fetched} bytes, more than the one file"
    );

    // The neighbours came with the first request.
    source.reset_counters();
    for i in 1..5 {
        let path = format!("dir/m{i:02}.py");
        assert_eq!(
            read_all(&layer, &path, 4096).await,
            built.files[i].data,
            "{path}"
        );
    }
    assert_eq!(
        source.requests(),
        0,
        "neighbours were read ahead: {:?}",
        source.log()
    );
}

#[tokio::test]
async fn readahead_stops_at_its_budget() {
    let built = small_files();
    let source = built.source();
    let layer = open(
        &built,
        source.clone(),
        Arc::new(ChunkCache::in_memory(64 << 20)),
        &readahead_config(16 << 10),
    )
    .await;
    source.reset_counters();
    read_all(&layer, "dir/m00.py", 4096).await;
    // 16 KiB of compressed read-ahead cannot reach the 1 MiB file at the end.
    assert!(
        source.bytes() < 64 << 10,
        "fetched {} bytes",
        source.bytes()
    );
    source.reset_counters();
    read_all(&layer, "dir/zz-big.bin", 1 << 20).await;
    assert!(
        source.requests() >= 1,
        "the far file still needed a request"
    );
}

#[tokio::test]
async fn failed_readahead_chunk_does_not_fail_the_read() {
    let built = small_files();
    let source = built.source();
    let layer = open(
        &built,
        source.clone(),
        Arc::new(ChunkCache::in_memory(64 << 20)),
        &readahead_config(64 << 10),
    )
    .await;
    // Corrupt the member of the second file on every request: it is read ahead with the first.
    let second = chunk_offsets(&layer, "dir/m01.py")[0];
    source.corrupt_containing(second + 20, 100);

    assert_eq!(
        read_all(&layer, "dir/m00.py", 4096).await,
        built.files[0].data
    );
    // Reading the corrupted file itself reports the failure; nothing wrong was cached.
    let id = node(layer.index(), "dir/m01.py");
    assert!(layer.read(id, 0, 4096).await.is_err());
    assert_eq!(
        read_all(&layer, "dir/m02.py", 4096).await,
        built.files[2].data
    );
}

#[tokio::test]
async fn cached_reads_do_not_read_ahead() {
    let built = small_files();
    let source = built.source();
    let layer = open(
        &built,
        source.clone(),
        Arc::new(ChunkCache::in_memory(64 << 20)),
        &readahead_config(64 << 10),
    )
    .await;
    read_all(&layer, "dir/m00.py", 4096).await;
    source.reset_counters();
    read_all(&layer, "dir/m00.py", 4096).await;
    assert_eq!(source.requests(), 0);
}

/// Opens [`small_files`] with two chunks loaded ahead of sequential readers, and returns the
/// built layer, its source with cleared counters, the opened layer and the node of
/// `dir/zz-big.bin`.
async fn open_big_file_loading_two_ahead() -> (Built, Arc<MemSource>, Arc<Layer>, NodeId) {
    let built = small_files();
    let source = built.source();
    let mut config = test_config();
    config.fetch.sequential_chunks = 2;
    let layer = open(
        &built,
        source.clone(),
        Arc::new(ChunkCache::in_memory(64 << 20)),
        &config,
    )
    .await;
    let id = node(layer.index(), "dir/zz-big.bin");
    source.reset_counters();
    (built, source, layer, id)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sequential_reads_find_the_next_chunks_loaded() {
    let (built, source, layer, id) = open_big_file_loading_two_ahead().await;

    // Two adjacent reads in the first 64 KiB chunk make the reader sequential, which starts
    // loading the next two chunks in the background.
    let first = layer.read(id, 0, 4096).await.unwrap();
    assert_eq!(&first[..], &built.files[20].data[..4096]);
    assert_eq!(source.requests(), 1, "{:?}", source.log());
    let more = layer.read(id, 4096, 4096).await.unwrap();
    assert_eq!(&more[..], &built.files[20].data[4096..8192]);
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(5);
    while source.requests() < 2 && std::time::Instant::now() < deadline {
        tokio::time::sleep(std::time::Duration::from_millis(10)).await;
    }
    let chunk = 64 << 10;
    let second_offset = chunk_offsets(&layer, "dir/zz-big.bin")[1];
    assert_eq!(
        source.requests_containing(second_offset),
        1,
        "{:?}",
        source.log()
    );
    let second = layer.read(id, chunk, chunk as u32).await.unwrap();
    assert_eq!(
        &second[..],
        &built.files[20].data[chunk as usize..2 * chunk as usize]
    );
    // The read itself fetched nothing for the second chunk; it only loads the ones after it.
    assert_eq!(
        source.requests_containing(second_offset),
        1,
        "the second chunk was loaded ahead: {:?}",
        source.log()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn random_reads_load_nothing_ahead() {
    let (built, source, layer, id) = open_big_file_loading_two_ahead().await;

    let chunk: u64 = 64 << 10;
    for offset in [0, 3 * chunk, chunk + 100] {
        let got = layer.read(id, offset, 4096).await.unwrap();
        assert_eq!(
            &got[..],
            &built.files[20].data[offset as usize..offset as usize + 4096]
        );
    }
    tokio::time::sleep(std::time::Duration::from_millis(200)).await;
    assert_eq!(
        source.requests(),
        3,
        "one request per read, nothing ahead: {:?}",
        source.log()
    );
}
