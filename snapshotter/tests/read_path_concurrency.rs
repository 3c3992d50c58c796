//! Many readers of one cold file, failing and corrupt fetches: one fetch per chunk at a time,
//! every waiter gets the verified result, and failures are never cached.

mod read_path_support;

use std::sync::Arc;
use std::time::Duration;

use lazypull_snapshotter::cache::{ChunkCache, ChunkKey};
use lazypull_snapshotter::fetch::FetchError;
use lazypull_snapshotter::layer::{Layer, LayerError};
use lazypull_testkit::tarbuild::{pattern, text_pattern};
use read_path_support::*;

const MIB: u64 = 1 << 20;
/// The default eStargz chunk size.
const CHUNK: u64 = 4 * MIB;
const READ: u32 = 128 << 10;
const READERS: usize = 32;

/// A 64 MiB file (16 chunks of 4 MiB; its last chunk ends exactly where the file's payload
/// and its member end, since 64 MiB needs no tar padding) and a file of exactly one chunk.
fn big_layer() -> &'static Built {
    static LAYER: std::sync::LazyLock<Built> = std::sync::LazyLock::new(build_big_layer);
    &LAYER
}

fn build_big_layer() -> Built {
    let mut big = text_pattern((40 * MIB) as usize, 1);
    big.extend(pattern((24 * MIB) as usize, 2));
    build_layer(
        vec![
            FileSpec::new("dir/big.bin", big),
            FileSpec::new("dir/exact.bin", text_pattern(CHUNK as usize, 3)),
        ],
        CHUNK,
        &[],
    )
}

/// Reads the whole file in 128 KiB reads, starting at chunk `first` and wrapping around, so
/// the readers start on different chunks and meet on the same ones.
async fn read_wrapping(
    layer: Arc<Layer>,
    path: &'static str,
    first: u64,
) -> Result<Vec<u8>, LayerError> {
    let id = node(layer.index(), path);
    let size = layer.index().node(id).unwrap().size;
    let mut out = vec![0u8; size as usize];
    let start = (first * CHUNK) % size;
    let mut done = 0;
    while done < size {
        let offset = (start + done) % size;
        let len = u64::from(READ).min(size - offset);
        let bytes = layer.read(id, offset, len as u32).await?;
        assert_eq!(bytes.len() as u64, len, "short read at {offset}");
        out[offset as usize..(offset + len) as usize].copy_from_slice(&bytes);
        done += len;
    }
    Ok(out)
}

async fn read_concurrently(
    layer: &Arc<Layer>,
    path: &'static str,
) -> Vec<Result<Vec<u8>, LayerError>> {
    let tasks: Vec<_> = (0..READERS)
        .map(|i| tokio::spawn(read_wrapping(layer.clone(), path, i as u64 % 16)))
        .collect();
    let mut results = Vec::new();
    for task in tasks {
        results.push(task.await.expect("reader task does not panic"));
    }
    results
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

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn concurrent_readers_fetch_each_chunk_once() {
    let built = big_layer();
    let source = built.source();
    let layer = open(
        built,
        source.clone(),
        Arc::new(ChunkCache::in_memory(256 * MIB)),
        &test_config(),
    )
    .await;
    let open_bytes = source.bytes();
    let chunks = layer
        .index()
        .chunks(node(layer.index(), "dir/big.bin"))
        .to_vec();
    assert_eq!(chunks.len(), 16);

    let want = expected(built, "dir/big.bin");
    for result in read_concurrently(&layer, "dir/big.bin").await {
        let got = result.expect("every reader succeeds");
        assert!(got == want, "a reader got different bytes");
    }
    for chunk in &chunks {
        assert_eq!(
            source.requests_containing(chunk.comp_offset()),
            1,
            "chunk at {}: {:?}",
            chunk.comp_offset(),
            source.log()
        );
    }
    let file_span = chunks.last().unwrap().comp_end() - chunks[0].comp_offset();
    assert_eq!(
        source.bytes() - open_bytes,
        file_span,
        "fetched exactly the file's compressed bytes"
    );
    let stats = layer.stats();
    assert_eq!(stats.chunks_verified, 16);
    assert!(stats.waits > 0, "some readers waited for another's fetch");

    let exact = read_concurrently(&layer, "dir/exact.bin").await;
    for result in exact {
        assert!(result.unwrap() == expected(built, "dir/exact.bin"));
    }
    let exact_chunk = layer.index().chunks(node(layer.index(), "dir/exact.bin"))[0];
    assert_eq!(source.requests_containing(exact_chunk.comp_offset()), 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn failed_fetch_is_retried_for_every_waiter() {
    let built = big_layer();
    let source = built.source();
    let layer = open(
        built,
        source.clone(),
        Arc::new(ChunkCache::in_memory(256 * MIB)),
        &test_config(),
    )
    .await;
    let chunk5 = layer.index().chunks(node(layer.index(), "dir/big.bin"))[5].comp_offset();
    source.fail_containing(chunk5, 1);

    let want = expected(built, "dir/big.bin");
    for result in read_concurrently(&layer, "dir/big.bin").await {
        assert!(result.expect("the retry serves every reader") == want);
    }
    assert_eq!(
        source.requests_containing(chunk5),
        2,
        "one failed request and one retry"
    );
    assert_eq!(layer.stats().retries, 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn failed_fetch_reaches_waiters_and_is_not_cached() {
    let built = big_layer();
    // The delay keeps the first fetch in flight until every reader has joined it.
    let source =
        Arc::new(MemSource::new(built.blob.clone()).with_delay(Duration::from_millis(300)));
    let mut config = test_config();
    config.fetch.max_retries = 0;
    let layer = open(
        built,
        source.clone(),
        Arc::new(ChunkCache::in_memory(256 * MIB)),
        &config,
    )
    .await;
    let id = node(layer.index(), "dir/big.bin");
    let chunk5 = layer.index().chunks(id)[5];
    source.fail_containing(chunk5.comp_offset(), 1);

    let readers: Vec<_> = (0..READERS as u64)
        .map(|i| {
            let layer = layer.clone();
            tokio::spawn(async move { layer.read(id, chunk5.file_offset() + i * 1000, 1000).await })
        })
        .collect();
    for reader in readers {
        let failure = reader
            .await
            .unwrap()
            .expect_err("the leader and every waiter see the failure");
        let fetch = failure.fetch_error().expect("a fetch failure");
        assert!(
            matches!(fetch, FetchError::Remote { attempts: 1, .. }),
            "{fetch}"
        );
    }
    assert_eq!(
        source.requests_containing(chunk5.comp_offset()),
        1,
        "waiters did not fetch again"
    );
    assert_eq!(layer.stats().waits, READERS as u64 - 1);

    let again = layer
        .read(id, chunk5.file_offset(), 1000)
        .await
        .expect("the next read succeeds");
    let want = expected(built, "dir/big.bin");
    let from = chunk5.file_offset() as usize;
    assert_eq!(again[..], want[from..from + 1000]);
    assert_eq!(source.requests_containing(chunk5.comp_offset()), 2);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn corrupted_chunk_fails_without_caching() {
    let built = big_layer();
    let probe = open(
        built,
        built.source(),
        Arc::new(ChunkCache::in_memory(MIB)),
        &test_config(),
    )
    .await;
    let chunk = probe.index().chunks(node(probe.index(), "dir/big.bin"))[3];
    drop(probe);

    // Flip a byte in the middle of chunk 3's compressed bytes.
    let middle = (chunk.comp_offset() + chunk.comp_end()) / 2;
    let source = Arc::new(MemSource::new(built.corrupted_at(middle)));
    let cache = Arc::new(ChunkCache::in_memory(256 * MIB));
    let config = test_config();
    let layer = open(built, source.clone(), cache.clone(), &config).await;
    let id = node(layer.index(), "dir/big.bin");

    let err = layer
        .read(id, chunk.file_offset() + 10, 100)
        .await
        .unwrap_err();
    let fetch = err.fetch_error().expect("a fetch failure");
    assert!(
        matches!(fetch, FetchError::Chunk { attempts: 3, .. }),
        "{fetch}"
    );
    assert_eq!(
        source.requests_containing(chunk.comp_offset()),
        3,
        "first attempt and two retries"
    );
    assert_eq!(layer.stats().verification_failures, 3);
    assert!(
        !cache.contains(&ChunkKey::new(built.digest, &chunk)),
        "nothing was cached"
    );

    let want = expected(built, "dir/big.bin");
    let other = layer
        .read(id, 0, 1000)
        .await
        .expect("other chunks are served");
    assert_eq!(other[..], want[..1000]);
    let after = layer
        .read(id, chunk.file_offset() + chunk.size(), 1000)
        .await
        .expect("the next chunk is served");
    let from = (chunk.file_offset() + chunk.size()) as usize;
    assert_eq!(after[..], want[from..from + 1000]);

    let again = layer.read(id, chunk.file_offset(), 100).await;
    assert!(
        again.is_err(),
        "the corrupt chunk is fetched and rejected again, not served"
    );
    assert_eq!(source.requests_containing(chunk.comp_offset()), 6);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn corruption_in_transit_is_repaired_by_retry() {
    let built = big_layer();
    let source = built.source();
    let layer = open(
        built,
        source.clone(),
        Arc::new(ChunkCache::in_memory(256 * MIB)),
        &test_config(),
    )
    .await;
    let chunk = layer.index().chunks(node(layer.index(), "dir/big.bin"))[7];
    source.corrupt_containing((chunk.comp_offset() + chunk.comp_end()) / 2, 1);
    let got = read_all(&layer, "dir/big.bin", 1 << 20).await;
    assert!(got == expected(built, "dir/big.bin"));
    assert_eq!(layer.stats().verification_failures, 1);
    assert_eq!(source.requests_containing(chunk.comp_offset()), 2);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cancelled_fetch_hands_chunk_to_a_waiter() {
    let built = build_layer(
        vec![FileSpec::new("dir/f.bin", text_pattern(100_000, 4))],
        65536,
        &[],
    );
    let source =
        Arc::new(MemSource::new(built.blob.clone()).with_delay(Duration::from_millis(300)));
    let layer = open(
        &built,
        source.clone(),
        Arc::new(ChunkCache::in_memory(64 * MIB)),
        &test_config(),
    )
    .await;
    let id = node(layer.index(), "dir/f.bin");

    let leader = {
        let layer = layer.clone();
        tokio::spawn(async move { layer.read(id, 0, 10).await })
    };
    tokio::time::sleep(Duration::from_millis(50)).await;
    let waiter = {
        let layer = layer.clone();
        tokio::spawn(async move { layer.read(id, 0, 10).await })
    };
    tokio::time::sleep(Duration::from_millis(50)).await;
    leader.abort();
    let bytes = tokio::time::timeout(Duration::from_secs(5), waiter)
        .await
        .unwrap()
        .unwrap()
        .unwrap();
    assert_eq!(bytes[..], expected(&built, "dir/f.bin")[..10]);
    assert!(layer.stats().waits >= 1);
}
