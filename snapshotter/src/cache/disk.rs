//! The disk tier: one file per decompressed chunk, `<dir>/<layer digest hex>/<chunk file name>`.
//!
//! Writes go to a temporary file in the layer's directory and are renamed into place, so a chunk
//! file is either complete or absent; the temporary file is deleted when a write fails or is
//! dropped. Every read checks the length. The SHA-256 is checked on the first read of a file this
//! process did not write (files from an earlier run, which a crash may have left damaged), and on
//! every read when `reverify` is on. A file that fails is deleted and fetched again, never served.
//! Files this process wrote hold bytes it verified just before, so by default they are not
//! hashed again: hashing is most of the CPU time of a warm read. Sizes, access order and the
//! verified flag live in [`DiskLru`]; the lock around it is never held across file I/O.
//!
//! A failed write (`ENOSPC`, `EDQUOT` or any other error) pauses disk writes for the configured
//! backoff, evicts our own least recently used files when the file system is out of space, and
//! leaves reads to the network and the memory tier. Writes resume by themselves after the pause.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant, SystemTime};

use bytes::Bytes;
use estargz::Digest;

use super::disk_lru::{DiskLru, Victim};
use super::error::CacheError;
use super::key::ChunkKey;
use super::stats::{CacheStats, bump};

/// Prefix of temporary files; anything with it is deleted at startup.
const TEMP_PREFIX: &str = ".tmp";
/// Minimum time between two warnings about failed disk writes.
const WARN_INTERVAL: Duration = Duration::from_secs(30);

/// Handle to the disk tier; clones share one state.
#[derive(Clone)]
pub(crate) struct DiskTier {
    shared: Arc<DiskShared>,
}

struct DiskShared {
    root: PathBuf,
    backoff: Duration,
    reverify: bool,
    stats: Arc<CacheStats>,
    state: Mutex<DiskState>,
    warned: Mutex<Option<Instant>>,
    suppressed_warnings: AtomicU64,
}

struct DiskState {
    lru: DiskLru,
    /// Bumped by `remove_layer`; a write that started under an older value is discarded.
    layer_epochs: std::collections::HashMap<Digest, u64>,
    /// Writes are skipped until then, after a failed write.
    paused_until: Option<Instant>,
}

/// Outcome of one disk read.
pub(crate) enum DiskRead {
    Hit(Bytes),
    Miss,
}

impl DiskTier {
    /// Opens (creating it if needed) the tier at `root` and rebuilds its accounting from the
    /// files found there. Leftover temporary files are deleted; files above the budget are
    /// evicted oldest first. Runs blocking file I/O.
    pub(crate) fn open(
        root: &Path,
        budget: u64,
        backoff: Duration,
        reverify: bool,
        stats: Arc<CacheStats>,
    ) -> Result<Self, CacheError> {
        std::fs::create_dir_all(root).map_err(|source| CacheError::Io {
            path: root.to_path_buf(),
            source,
        })?;
        let mut found = scan(root)?;
        found.sort_by_key(|f| f.modified);
        let mut lru = DiskLru::new(budget);
        for file in &found {
            lru.insert(file.key, file.size);
        }
        let over = lru.used().saturating_sub(budget);
        let victims = lru.evict(over);
        let tier = DiskTier {
            shared: Arc::new(DiskShared {
                root: root.to_path_buf(),
                backoff,
                reverify,
                stats,
                state: Mutex::new(DiskState {
                    lru,
                    layer_epochs: Default::default(),
                    paused_until: None,
                }),
                warned: Mutex::new(None),
                suppressed_warnings: AtomicU64::new(0),
            }),
        };
        tier.delete_victims(victims);
        tracing::info!(dir = %root.display(), files = found.len(), bytes = tier.used(), "disk chunk cache opened");
        Ok(tier)
    }

    fn state(&self) -> MutexGuard<'_, DiskState> {
        // The state stays consistent across every early return, so a poisoned lock is usable.
        self.shared.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn layer_dir(&self, layer: &Digest) -> PathBuf {
        self.shared.root.join(layer.hex())
    }

    fn path_of(&self, key: &ChunkKey) -> PathBuf {
        self.layer_dir(&key.layer).join(key.file_name())
    }

    /// Bytes held, writes in progress included.
    pub(crate) fn used(&self) -> u64 {
        self.state().lru.used()
    }

    /// Returns whether a file for `key` is recorded, without file I/O.
    pub(crate) fn contains(&self, key: &ChunkKey) -> bool {
        self.state().lru.contains(key)
    }

    /// Reads the chunk `key`, which must hash to `digest`, verifying it unless this process
    /// wrote or checked the file before (see the module documentation). A file that fails
    /// verification is deleted. Runs on the blocking thread pool.
    pub(crate) async fn read(&self, key: ChunkKey, digest: Digest) -> DiskRead {
        let Some(verified) = self.state().lru.touch(&key) else {
            bump(&self.shared.stats.disk_misses);
            return DiskRead::Miss;
        };
        let check = !verified || self.shared.reverify;
        let tier = self.clone();
        let outcome =
            tokio::task::spawn_blocking(move || tier.read_blocking(&key, digest, check)).await;
        match outcome {
            Ok(DiskRead::Hit(bytes)) => {
                bump(&self.shared.stats.disk_hits);
                DiskRead::Hit(bytes)
            }
            Ok(DiskRead::Miss) | Err(_) => {
                bump(&self.shared.stats.disk_misses);
                DiskRead::Miss
            }
        }
    }

    fn read_blocking(&self, key: &ChunkKey, digest: Digest, check: bool) -> DiskRead {
        let path = self.path_of(key);
        let data = match std::fs::read(&path) {
            Ok(data) => data,
            Err(error) => {
                // Evicted or deleted behind our back: forget it.
                tracing::debug!(path = %path.display(), %error, "chunk file unreadable");
                self.state().lru.remove(key);
                return DiskRead::Miss;
            }
        };
        if data.len() as u64 != key.size || (check && Digest::of(&data) != digest) {
            tracing::warn!(
                path = %path.display(),
                expected_len = key.size,
                found_len = data.len(),
                "cached chunk file failed verification; deleting it"
            );
            bump(&self.shared.stats.disk_corrupt);
            self.state().lru.remove(key);
            remove_file_quietly(&path);
            return DiskRead::Miss;
        }
        if check {
            bump(&self.shared.stats.disk_verified);
            self.state().lru.mark_verified(key);
        }
        DiskRead::Hit(Bytes::from(data))
    }

    /// Returns how many times `layer` has been removed, to pass to [`Self::write_queued`]
    /// when a write is queued.
    pub(crate) fn layer_epoch(&self, layer: &Digest) -> Option<u64> {
        self.state().layer_epochs.get(layer).copied()
    }

    /// Writes the chunk `key` (already verified by the caller) for the layer's current epoch.
    /// Blocking; never returns an error: a failed write is counted, logged at a limited rate and
    /// pauses further writes.
    #[cfg(test)]
    pub(crate) fn write_blocking(&self, key: ChunkKey, data: &[u8]) {
        let epoch = self.layer_epoch(&key.layer);
        self.write_queued(key, data, epoch);
    }

    /// Writes the chunk `key` (already verified by the caller), queued when the layer's epoch
    /// was `epoch`. If the layer was removed since, the write is dropped, so a late write never
    /// recreates the files of a removed layer. Blocking; never returns an error: a failed write
    /// is counted, logged at a limited rate and pauses further writes.
    pub(crate) fn write_queued(&self, key: ChunkKey, data: &[u8], epoch: Option<u64>) {
        let size = data.len() as u64;
        let victims = {
            let mut state = self.state();
            if state.layer_epochs.get(&key.layer).copied() != epoch {
                return;
            }
            if state
                .paused_until
                .is_some_and(|until| Instant::now() < until)
            {
                bump(&self.shared.stats.disk_writes_skipped);
                return;
            }
            state.paused_until = None;
            let Some(victims) = state.lru.reserve(size) else {
                bump(&self.shared.stats.disk_writes_skipped);
                return;
            };
            victims
        };
        self.delete_victims(victims);

        let path = self.path_of(&key);
        match write_atomically(&self.layer_dir(&key.layer), &path, data) {
            Ok(()) => {
                let stale = {
                    let mut state = self.state();
                    let stale = state.layer_epochs.get(&key.layer).copied() != epoch;
                    if stale {
                        state.lru.release(size);
                    } else {
                        state.lru.commit(key, size);
                    }
                    stale
                };
                if stale {
                    // The layer was removed while this write ran.
                    remove_file_quietly(&path);
                    let _ = std::fs::remove_dir(self.layer_dir(&key.layer));
                    return;
                }
                bump(&self.shared.stats.disk_writes);
                self.shared
                    .stats
                    .disk_bytes_written
                    .fetch_add(size, Ordering::Relaxed);
            }
            Err(error) => self.write_failed(&path, size, error),
        }
    }

    fn write_failed(&self, path: &Path, size: u64, error: std::io::Error) {
        bump(&self.shared.stats.disk_write_failures);
        let out_of_space = matches!(
            error.kind(),
            std::io::ErrorKind::StorageFull | std::io::ErrorKind::QuotaExceeded
        );
        let victims = {
            let mut state = self.state();
            state.lru.release(size);
            state.paused_until = Some(Instant::now() + self.shared.backoff);
            if out_of_space {
                // Free room for the next write: our own oldest files, at least twice this chunk.
                let target = (2 * size).max(state.lru.used() / 8);
                state.lru.evict(target)
            } else {
                Vec::new()
            }
        };
        let evicted = victims.len();
        self.delete_victims(victims);
        if self.should_warn() {
            let suppressed = self.shared.suppressed_warnings.swap(0, Ordering::Relaxed);
            tracing::warn!(
                path = %path.display(),
                %error,
                out_of_space,
                evicted,
                suppressed,
                pause_ms = self.shared.backoff.as_millis() as u64,
                "disk chunk cache write failed; serving without disk caching for now"
            );
        } else {
            self.shared
                .suppressed_warnings
                .fetch_add(1, Ordering::Relaxed);
        }
    }

    fn should_warn(&self) -> bool {
        let mut last = self.shared.warned.lock().unwrap_or_else(|e| e.into_inner());
        let now = Instant::now();
        if last.is_some_and(|at| now.duration_since(at) < WARN_INTERVAL) {
            return false;
        }
        *last = Some(now);
        true
    }

    fn delete_victims(&self, victims: Vec<Victim>) {
        for (key, _) in victims {
            bump(&self.shared.stats.disk_evictions);
            remove_file_quietly(&self.path_of(&key));
        }
    }

    /// Deletes every file of `layer`. Writes of that layer still running are discarded when
    /// they finish. Blocking.
    pub(crate) fn remove_layer_blocking(&self, layer: &Digest) -> Result<(), CacheError> {
        {
            let mut state = self.state();
            state.lru.remove_layer(layer);
            *state.layer_epochs.entry(*layer).or_insert(0) += 1;
        }
        let dir = self.layer_dir(layer);
        match std::fs::remove_dir_all(&dir) {
            Ok(()) => Ok(()),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
            Err(source) => Err(CacheError::Io { path: dir, source }),
        }
    }
}

fn remove_file_quietly(path: &Path) {
    if let Err(error) = std::fs::remove_file(path)
        && error.kind() != std::io::ErrorKind::NotFound
    {
        tracing::debug!(path = %path.display(), %error, "deleting a chunk file failed");
    }
}

/// Writes `data` to a temporary file in `dir` and renames it to `path`. The temporary file is
/// deleted on every error path (it is a `NamedTempFile` until persisted).
fn write_atomically(dir: &Path, path: &Path, data: &[u8]) -> std::io::Result<()> {
    std::fs::create_dir_all(dir)?;
    let mut file = tempfile::Builder::new()
        .prefix(TEMP_PREFIX)
        .tempfile_in(dir)?;
    file.write_all(data)?;
    // No fsync: a file torn by a crash fails verification on read and is fetched again.
    file.persist(path).map_err(|e| e.error)?;
    Ok(())
}

struct FoundFile {
    key: ChunkKey,
    size: u64,
    modified: SystemTime,
}

/// Lists the chunk files under `root`, deleting temporary leftovers and files whose length does
/// not match their name. Unknown names are left alone.
fn scan(root: &Path) -> Result<Vec<FoundFile>, CacheError> {
    let io = |path: &Path| {
        let path = path.to_path_buf();
        move |source| CacheError::Io { path, source }
    };
    let mut found = Vec::new();
    for layer_entry in std::fs::read_dir(root).map_err(io(root))? {
        let layer_entry = layer_entry.map_err(io(root))?;
        let layer_path = layer_entry.path();
        let Some(layer) = layer_entry.file_name().to_str().and_then(parse_hex_digest) else {
            tracing::debug!(path = %layer_path.display(), "ignoring unknown entry in the chunk cache directory");
            continue;
        };
        if !layer_entry.file_type().map_err(io(&layer_path))?.is_dir() {
            continue;
        }
        for file_entry in std::fs::read_dir(&layer_path).map_err(io(&layer_path))? {
            let file_entry = file_entry.map_err(io(&layer_path))?;
            let path = file_entry.path();
            let name = file_entry.file_name();
            let Some(name) = name.to_str() else { continue };
            if name.starts_with(TEMP_PREFIX) {
                remove_file_quietly(&path);
                continue;
            }
            let Some(key) = ChunkKey::parse_file_name(layer, name) else {
                continue;
            };
            let Ok(metadata) = file_entry.metadata() else {
                continue;
            };
            if !metadata.is_file() {
                continue;
            }
            if metadata.len() != key.size {
                remove_file_quietly(&path);
                continue;
            }
            let modified = metadata.modified().unwrap_or(SystemTime::UNIX_EPOCH);
            found.push(FoundFile {
                key,
                size: metadata.len(),
                modified,
            });
        }
    }
    Ok(found)
}

fn parse_hex_digest(name: &str) -> Option<Digest> {
    if name.len() != 64
        || !name
            .bytes()
            .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
    {
        return None;
    }
    format!("sha256:{name}").parse().ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn chunk(data: &[u8], offset: u64) -> (ChunkKey, Digest) {
        let key = ChunkKey {
            layer: Digest::of(b"layer"),
            comp_offset: offset,
            inner_offset: 0,
            size: data.len() as u64,
        };
        (key, Digest::of(data))
    }

    fn open(dir: &Path, budget: u64) -> (DiskTier, Arc<CacheStats>) {
        let stats = Arc::new(CacheStats::default());
        (
            DiskTier::open(dir, budget, Duration::from_millis(50), false, stats.clone()).unwrap(),
            stats,
        )
    }

    #[tokio::test]
    async fn write_dropped_after_layer_removal() {
        let dir = tempfile::tempdir().unwrap();
        let (tier, _) = open(dir.path(), 1 << 20);
        let (key, _) = chunk(b"abc", 0);
        let epoch = tier.layer_epoch(&key.layer);
        tier.remove_layer_blocking(&key.layer).unwrap();
        tier.write_queued(key, b"abc", epoch);
        assert!(!tier.contains(&key));
        assert!(!dir.path().join(key.layer.hex()).exists());
    }

    #[tokio::test]
    async fn written_chunk_is_read_back_and_survives_reopen() {
        let dir = tempfile::tempdir().unwrap();
        let data = b"chunk bytes".to_vec();
        let (key, digest) = chunk(&data, 7);
        let (tier, _) = open(dir.path(), 1 << 20);
        tier.write_blocking(key, &data);
        assert!(matches!(tier.read(key, digest).await, DiskRead::Hit(b) if b == data));
        drop(tier);

        let (reopened, _) = open(dir.path(), 1 << 20);
        assert_eq!(reopened.used(), data.len() as u64);
        assert!(matches!(reopened.read(key, digest).await, DiskRead::Hit(_)));
    }

    #[tokio::test]
    async fn corrupted_file_found_at_startup_is_deleted_not_served() {
        let dir = tempfile::tempdir().unwrap();
        let data = b"chunk bytes".to_vec();
        let (key, digest) = chunk(&data, 7);
        let (tier, _) = open(dir.path(), 1 << 20);
        tier.write_blocking(key, &data);
        let path = tier.path_of(&key);
        drop(tier);
        std::fs::write(&path, b"chunk bytez").unwrap();
        let (tier, stats) = open(dir.path(), 1 << 20);
        assert!(matches!(tier.read(key, digest).await, DiskRead::Miss));
        assert!(!path.exists());
        assert!(!tier.contains(&key));
        assert_eq!(stats.disk_corrupt.load(Ordering::Relaxed), 1);
    }

    #[test]
    fn startup_scan_deletes_temp_files_and_evicts_over_budget() {
        let dir = tempfile::tempdir().unwrap();
        {
            let (tier, _) = open(dir.path(), 1 << 20);
            for i in 0..4 {
                tier.write_blocking(chunk(&[i as u8; 100], i).0, &[i as u8; 100]);
            }
        }
        let layer_dir = dir.path().join(Digest::of(b"layer").hex());
        std::fs::write(layer_dir.join(".tmpleftover"), b"partial").unwrap();
        let (tier, stats) = open(dir.path(), 250);
        assert!(!layer_dir.join(".tmpleftover").exists());
        assert_eq!(tier.used(), 200);
        assert_eq!(stats.disk_evictions.load(Ordering::Relaxed), 2);
    }

    #[test]
    fn remove_layer_deletes_directory() {
        let dir = tempfile::tempdir().unwrap();
        let (tier, _) = open(dir.path(), 1 << 20);
        let (key, _) = chunk(b"abc", 1);
        tier.write_blocking(key, b"abc");
        tier.remove_layer_blocking(&key.layer).unwrap();
        assert!(!tier.layer_dir(&key.layer).exists());
        assert_eq!(tier.used(), 0);
    }

    #[test]
    fn failed_write_pauses_writes_then_resumes() {
        let dir = tempfile::tempdir().unwrap();
        let (tier, stats) = open(dir.path(), 1 << 20);
        let (key, _) = chunk(b"abc", 1);
        // A regular file where the layer directory should be makes every write fail.
        std::fs::write(tier.layer_dir(&key.layer), b"").unwrap();
        tier.write_blocking(key, b"abc");
        assert_eq!(stats.disk_write_failures.load(Ordering::Relaxed), 1);
        assert_eq!(tier.used(), 0);
        tier.write_blocking(key, b"abc");
        assert_eq!(stats.disk_writes_skipped.load(Ordering::Relaxed), 1);

        std::fs::remove_file(tier.layer_dir(&key.layer)).unwrap();
        std::thread::sleep(Duration::from_millis(60));
        tier.write_blocking(key, b"abc");
        assert_eq!(stats.disk_writes.load(Ordering::Relaxed), 1);
        assert!(tier.contains(&key));
    }
}
