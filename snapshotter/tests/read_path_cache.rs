//! The cache tiers under pressure: budgets smaller than the file, a disk tier that outlives
//! its layer and its process, damaged cache files, and a full disk.

mod read_path_support;

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use lazypull_snapshotter::cache::{CacheConfig, ChunkCache};
use lazypull_testkit::prereq::{Prereq, require};
use lazypull_testkit::tarbuild::{pattern, text_pattern};
use read_path_support::*;

const MIB: u64 = 1 << 20;
/// 256 KiB chunks make the 8 MiB file 32 chunks.
const CHUNK: u64 = 256 << 10;

fn layer_8mib() -> &'static Built {
    static LAYER: std::sync::LazyLock<Built> = std::sync::LazyLock::new(|| {
        let mut data = text_pattern((5 * MIB) as usize, 11);
        data.extend(pattern((3 * MIB) as usize, 12));
        build_layer(vec![FileSpec::new("dir/file.bin", data)], CHUNK, &[])
    });
    &LAYER
}

fn want() -> &'static [u8] {
    &layer_8mib().files[0].data
}

fn disk_cache(dir: &Path, memory_bytes: u64, disk_bytes: u64) -> Arc<ChunkCache> {
    let config = CacheConfig {
        memory_bytes,
        disk_dir: Some(dir.to_path_buf()),
        disk_bytes,
        disk_write_backoff: Duration::from_millis(100),
        ..CacheConfig::default()
    };
    Arc::new(ChunkCache::new(&config).expect("cache directory is usable"))
}

fn file_count(dir: &Path) -> usize {
    std::fs::read_dir(dir).map_or(0, |entries| entries.count())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn memory_budget_below_file_size_still_serves_file() {
    let built = layer_8mib();
    let source = built.source();
    let cache = Arc::new(ChunkCache::in_memory(2 * MIB));
    let layer = open(built, source.clone(), cache.clone(), &test_config()).await;
    for pass in 0..2 {
        assert!(
            read_all(&layer, "dir/file.bin", 100_000).await == want(),
            "pass {pass}"
        );
    }
    let stats = cache.stats();
    assert!(stats.memory_bytes <= 2 * MIB, "{stats:?}");
    assert!(stats.memory_evictions > 0, "{stats:?}");
    assert!(
        layer.stats().chunks_verified > 32,
        "evicted chunks were fetched again"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn disk_budget_below_file_size_still_serves_file() {
    let built = layer_8mib();
    let dir = tempfile::tempdir().unwrap();
    let cache = disk_cache(dir.path(), 0, 3 * MIB);
    let layer = open(built, built.source(), cache.clone(), &test_config()).await;
    for pass in 0..2 {
        assert!(
            read_all(&layer, "dir/file.bin", 100_000).await == want(),
            "pass {pass}"
        );
        cache.flush().await;
    }
    let stats = cache.stats();
    assert!(stats.disk_bytes <= 3 * MIB, "{stats:?}");
    assert!(stats.disk_evictions > 0, "{stats:?}");
    let on_disk = file_count(&dir.path().join(built.digest.hex()));
    assert_eq!(
        on_disk as u64,
        stats.disk_bytes / CHUNK,
        "accounting matches the files"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn disk_tier_survives_reopen_and_restart() {
    let built = layer_8mib();
    let dir = tempfile::tempdir().unwrap();
    let cache = disk_cache(dir.path(), 0, 64 * MIB);
    let layer = open(built, built.source(), cache.clone(), &test_config()).await;
    read_all(&layer, "dir/file.bin", MIB as u32).await;
    cache.flush().await;
    drop(layer);

    // The same layer opened again in the same process.
    let source = built.source();
    let layer = open(built, source.clone(), cache.clone(), &test_config()).await;
    assert!(read_all(&layer, "dir/file.bin", MIB as u32).await == want());
    assert_eq!(
        source.requests(),
        1,
        "only the TOC was fetched: {:?}",
        source.log()
    );
    assert_eq!(layer.stats().disk_hits, 32);
    drop((layer, cache));

    // A new process: the tier's accounting is rebuilt from the directory.
    let cache = disk_cache(dir.path(), 0, 64 * MIB);
    assert_eq!(cache.stats().disk_bytes, 8 * MIB);
    let source = built.source();
    let layer = open(built, source.clone(), cache.clone(), &test_config()).await;
    assert!(read_all(&layer, "dir/file.bin", MIB as u32).await == want());
    assert_eq!(
        source.requests(),
        1,
        "only the TOC was fetched: {:?}",
        source.log()
    );
    assert_eq!(layer.fetched_fraction(), 1.0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn remove_layer_frees_disk_and_memory() {
    let built = layer_8mib();
    let dir = tempfile::tempdir().unwrap();
    let cache = disk_cache(dir.path(), 16 * MIB, 64 * MIB);
    let source = built.source();
    let layer = open(built, source.clone(), cache.clone(), &test_config()).await;
    read_all(&layer, "dir/file.bin", MIB as u32).await;
    cache.flush().await;
    assert!(dir.path().join(built.digest.hex()).exists());

    cache.remove_layer(&built.digest).await.unwrap();
    assert!(!dir.path().join(built.digest.hex()).exists());
    let stats = cache.stats();
    assert_eq!(stats.disk_bytes, 0);
    assert_eq!(stats.memory_bytes, 0);

    source.reset_counters();
    assert!(read_all(&layer, "dir/file.bin", MIB as u32).await == want());
    assert!(source.requests() > 0, "chunks are fetched again");
}

fn cache_with(dir: &Path, reverify: bool) -> Arc<ChunkCache> {
    let config = CacheConfig {
        memory_bytes: 0,
        disk_dir: Some(dir.to_path_buf()),
        disk_bytes: 64 * MIB,
        reverify_disk_reads: reverify,
        ..CacheConfig::default()
    };
    Arc::new(ChunkCache::new(&config).expect("cache directory is usable"))
}

/// Fills the disk tier of `cache` (on `dir`) with the 8 MiB file and flips one bit of its fourth
/// chunk file. Then reads the file through the cache that `reader` returns and checks that the
/// damaged chunk was fetched again, not served.
async fn damage_and_reread(
    dir: &Path,
    cache: Arc<ChunkCache>,
    reader: impl FnOnce(Arc<ChunkCache>) -> Arc<ChunkCache>,
) {
    let built = layer_8mib();
    let layer = open(built, built.source(), cache.clone(), &test_config()).await;
    read_all(&layer, "dir/file.bin", MIB as u32).await;
    cache.flush().await;
    drop(layer);

    let layer_dir = dir.join(built.digest.hex());
    let mut files: Vec<PathBuf> = std::fs::read_dir(&layer_dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .collect();
    files.sort();
    let mut damaged = std::fs::read(&files[3]).unwrap();
    damaged[100] ^= 1;
    std::fs::write(&files[3], damaged).unwrap();

    let reader = reader(cache);
    let source = built.source();
    let layer = open(built, source.clone(), reader.clone(), &test_config()).await;
    assert!(read_all(&layer, "dir/file.bin", MIB as u32).await == want());
    assert_eq!(reader.stats().disk_corrupt, 1);
    assert_eq!(
        source.requests(),
        2,
        "the TOC and the damaged chunk: {:?}",
        source.log()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn damaged_file_from_an_earlier_run_is_refetched() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().to_path_buf();
    // A new cache on the same directory plays the daemon after a restart.
    damage_and_reread(dir.path(), cache_with(dir.path(), false), |old| {
        drop(old);
        cache_with(&path, false)
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn damage_during_the_run_is_caught_with_reverify() {
    let dir = tempfile::tempdir().unwrap();
    damage_and_reread(dir.path(), cache_with(dir.path(), true), |same| same).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn files_are_hashed_once_per_process() {
    let built = layer_8mib();
    let dir = tempfile::tempdir().unwrap();
    let cache = cache_with(dir.path(), false);
    let layer = open(built, built.source(), cache.clone(), &test_config()).await;
    read_all(&layer, "dir/file.bin", MIB as u32).await;
    cache.flush().await;
    let chunks = cache.stats().disk_writes;
    assert!(chunks >= 2, "{:?}", cache.stats());

    // Written by this process after verification: served from disk without hashing again.
    let source = built.source();
    let layer = open(built, source.clone(), cache.clone(), &test_config()).await;
    assert!(read_all(&layer, "dir/file.bin", MIB as u32).await == want());
    assert_eq!(cache.stats().disk_verified, 0, "{:?}", cache.stats());
    assert_eq!(source.requests(), 1, "only the TOC: {:?}", source.log());
    drop(layer);
    drop(cache);

    // Found on disk by a new process: hashed on the first read, trusted after it.
    let cache = cache_with(dir.path(), false);
    for round in 1..=2 {
        let layer = open(built, built.source(), cache.clone(), &test_config()).await;
        assert!(read_all(&layer, "dir/file.bin", MIB as u32).await == want());
        assert_eq!(
            cache.stats().disk_verified,
            chunks,
            "round {round}: {:?}",
            cache.stats()
        );
    }
}

/// A tmpfs mounted for one test and detached when dropped.
struct Tmpfs {
    dir: tempfile::TempDir,
}

impl Tmpfs {
    fn mount(size: &std::ffi::CStr) -> Self {
        let dir = tempfile::tempdir().unwrap();
        rustix::mount::mount(
            "lazypull-test",
            dir.path(),
            "tmpfs",
            rustix::mount::MountFlags::empty(),
            size,
        )
        .expect("mounting a tmpfs as root");
        Tmpfs { dir }
    }

    fn path(&self) -> &Path {
        self.dir.path()
    }
}

impl Drop for Tmpfs {
    fn drop(&mut self) {
        let _ = rustix::mount::unmount(self.dir.path(), rustix::mount::UnmountFlags::DETACH);
    }
}

/// Writes zeros to `path` until the file system is full.
fn fill(path: &Path) {
    use std::io::Write;
    let mut file = std::fs::File::create(path).unwrap();
    let block = vec![0u8; 64 << 10];
    loop {
        if let Err(error) = file.write_all(&block) {
            assert_eq!(error.kind(), std::io::ErrorKind::StorageFull, "{error}");
            break;
        }
    }
    let _ = file.flush();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn full_disk_degrades_to_network_then_recovers() {
    if !require(Prereq::Root) {
        return;
    }
    let built = layer_8mib();
    let tmpfs = Tmpfs::mount(c"size=4m");
    let cache = disk_cache(&tmpfs.path().join("chunks"), MIB, 64 * MIB);
    let filler = tmpfs.path().join("filler");
    fill(&filler);

    let layer = open(built, built.source(), cache.clone(), &test_config()).await;
    let read = tokio::time::timeout(
        Duration::from_secs(30),
        read_all(&layer, "dir/file.bin", 100_000),
    );
    assert!(read.await.expect("reads finish while the disk is full") == want());
    cache.flush().await;
    let full = cache.stats();
    assert!(full.disk_write_failures >= 1, "{full:?}");
    assert_eq!(full.disk_writes, 0, "{full:?}");
    assert_eq!(full.disk_bytes, 0, "{full:?}");
    let leftovers = file_count(&tmpfs.path().join("chunks").join(built.digest.hex()));
    assert_eq!(leftovers, 0, "failed writes leave no temporary files");

    std::fs::remove_file(&filler).unwrap();
    tokio::time::sleep(Duration::from_millis(150)).await;
    let read = tokio::time::timeout(
        Duration::from_secs(30),
        read_all(&layer, "dir/file.bin", 100_000),
    );
    assert!(read.await.expect("reads finish after space is freed") == want());
    cache.flush().await;
    let freed = cache.stats();
    assert!(freed.disk_writes > 0, "caching resumed: {freed:?}");
    assert!(freed.disk_bytes > 0, "{freed:?}");
}
