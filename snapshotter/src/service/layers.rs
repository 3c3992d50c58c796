//! The remote layers of the daemon: opening them (or picking one opened ahead), mounting each
//! remote snapshot's layer with FUSE, checking reachability before mounts are handed out, and
//! unmounting and freeing a layer when its last snapshot goes.
//!
//! Ownership: a [`LayerManager`] owns every opened [`Layer`] (one per blob digest, shared by
//! all snapshots of that digest), every FUSE session (one per remote snapshot), and the layers
//! opened ahead from a Prepare's layers label. [`LayerManager::shutdown`] unmounts and closes
//! everything; dropping the manager without it leaves mounts to die with the process.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use estargz::Digest;
use futures_util::FutureExt;
use futures_util::future::{BoxFuture, Shared};

use super::error::RemoteLayerError;
use super::labels::RemoteSpec;
use super::persisted::{PersistedSource, TailIndex};
use crate::cache::{ChunkCache, ChunkKey};
use crate::fetch::{LayerStatsSnapshot, PrefetchState};
use crate::fs::fuse::{LayerMount, MountSettings};
use crate::fs::{FsCore, FsOptions};
use crate::layer::{Layer, LayerConfig, LayerInfo};
use crate::metrics::Metrics;
use crate::remote::{BlobSource, ImageRef, RegistryClient, image};
use crate::snapshot::mountinfo;

/// Settings of the remote layers.
#[derive(Debug, Clone)]
pub struct LayerSettings {
    /// Directory of the persisted footer and TOC bytes, one subdirectory per layer digest.
    pub layers_dir: PathBuf,
    /// Read-path settings of every layer.
    pub layer: LayerConfig,
    /// FUSE request threads per mount.
    pub fuse_threads: usize,
    /// Maximum time of one FUSE read.
    pub read_timeout: Duration,
    /// Maximum time to resolve and open one layer.
    pub resolve_timeout: Duration,
    /// How long a layer opened ahead of its Prepare waits to be used.
    pub resolve_ttl: Duration,
    /// How long a successful reachability check is trusted.
    pub check_interval: Duration,
    /// Maximum wait for prefetch on the first Mounts or View of a chain.
    pub prefetch_wait: Duration,
}

/// A layer opened, or being opened, ahead of its Prepare.
type Ahead = Shared<BoxFuture<'static, Result<Arc<Layer>, Arc<RemoteLayerError>>>>;

/// Counters of one open layer, for metrics.
#[derive(Debug, Clone)]
pub struct LayerReport {
    /// Layer blob digest.
    pub digest: Digest,
    /// Blob size.
    pub size: u64,
    /// Remote snapshots mounting it.
    pub mounts: usize,
    /// The read path's counters.
    pub stats: LayerStatsSnapshot,
}

/// A cheap handle to the shared layer state.
#[derive(Clone)]
pub struct LayerManager {
    shared: Arc<SharedState>,
}

struct SharedState {
    settings: LayerSettings,
    client: RegistryClient,
    cache: Arc<ChunkCache>,
    metrics: Option<Arc<Metrics>>,
    runtime: tokio::runtime::Handle,
    state: Mutex<State>,
}

#[derive(Default)]
struct State {
    /// Mounted remote snapshots by directory number.
    mounts: HashMap<u64, Mounted>,
    /// Remote snapshots whose layer could not be mounted at restart, with the reason.
    failed: HashMap<u64, (Digest, String)>,
    /// Open layers, shared by every mount of the same blob.
    open: HashMap<Digest, Arc<Layer>>,
    /// Layers opened ahead of their Prepare, with the time they were requested.
    ahead: HashMap<Digest, (Instant, Ahead)>,
    /// Layers being opened right now, with the number of openers, so cleanup leaves their
    /// persisted TOC and cache alone.
    opening: HashMap<Digest, usize>,
}

struct Mounted {
    digest: Digest,
    mountpoint: PathBuf,
    session: Option<LayerMount>,
    prefetch_waited: bool,
    checked_at: Option<Instant>,
}

impl std::fmt::Debug for LayerManager {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let state = self.lock();
        f.debug_struct("LayerManager")
            .field("mounts", &state.mounts.len())
            .field("open", &state.open.len())
            .field("failed", &state.failed.len())
            .finish_non_exhaustive()
    }
}

impl LayerManager {
    /// Creates the manager. `runtime` serves FUSE reads.
    pub fn new(
        settings: LayerSettings,
        client: RegistryClient,
        cache: Arc<ChunkCache>,
        metrics: Option<Arc<Metrics>>,
        runtime: tokio::runtime::Handle,
    ) -> LayerManager {
        let shared = SharedState {
            settings,
            client,
            cache,
            metrics,
            runtime,
            state: Mutex::new(State::default()),
        };
        LayerManager {
            shared: Arc::new(shared),
        }
    }

    fn lock(&self) -> MutexGuard<'_, State> {
        self.shared
            .state
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    fn settings(&self) -> &LayerSettings {
        &self.shared.settings
    }

    fn layer_dir(&self, digest: &Digest) -> PathBuf {
        self.settings().layers_dir.join(digest.hex())
    }

    /// Opens the layer of `spec` (or reuses the open or opened-ahead one) and mounts it at
    /// `mountpoint` for snapshot `id`. Resolving and opening are bounded by the resolve timeout.
    /// `lower_dirs` are the `fs` directories of the snapshot's parents, nearest first.
    pub async fn mount(
        &self,
        id: u64,
        mountpoint: &Path,
        lower_dirs: Vec<PathBuf>,
        spec: &RemoteSpec,
    ) -> Result<(), RemoteLayerError> {
        let limit = self.settings().resolve_timeout;
        let layer = tokio::time::timeout(limit, self.layer_for(spec))
            .await
            .map_err(|_| RemoteLayerError::Timeout {
                digest: spec.digest,
                limit,
            })??;
        let session = match self.fuse_mount(&layer, mountpoint, lower_dirs).await {
            Ok(session) => session,
            Err(error) => {
                self.release_if_unused(spec.digest, false).await;
                return Err(error);
            }
        };
        let mounted = Mounted {
            digest: spec.digest,
            mountpoint: mountpoint.to_path_buf(),
            session: Some(session),
            prefetch_waited: false,
            checked_at: None,
        };
        let mut state = self.lock();
        state.failed.remove(&id);
        state.mounts.insert(id, mounted);
        Ok(())
    }

    /// Records that snapshot `id` (layer `digest`) could not be mounted, so mounts that need it
    /// report `reason` until a later attempt succeeds.
    pub fn mark_failed(&self, id: u64, digest: Digest, reason: String) {
        self.lock().failed.insert(id, (digest, reason));
    }

    /// Returns the layer digest and the reason when snapshot `id` failed to mount at restart.
    pub fn failure(&self, id: u64) -> Option<(Digest, String)> {
        self.lock().failed.get(&id).cloned()
    }

    /// Tells whether snapshot `id` has its layer mounted.
    pub fn is_mounted(&self, id: u64) -> bool {
        self.lock().mounts.contains_key(&id)
    }

    async fn layer_for(&self, spec: &RemoteSpec) -> Result<Arc<Layer>, RemoteLayerError> {
        let existing = {
            let mut state = self.lock();
            match state.open.get(&spec.digest) {
                Some(layer) => Some(Ok(Arc::clone(layer))),
                None => state
                    .ahead
                    .remove(&spec.digest)
                    .map(|(_, ahead)| Err(ahead)),
            }
        };
        let layer = match existing {
            Some(Ok(layer)) => layer,
            Some(Err(ahead)) => {
                tracing::debug!(layer = %spec.digest, "using the layer opened ahead");
                ahead.await.map_err(RemoteLayerError::Shared)?
            }
            None => {
                self.open_layer(
                    &spec.image,
                    &spec.image_text,
                    spec.digest,
                    spec.toc_digest,
                    spec.prefetch_bytes,
                )
                .await?
            }
        };
        if let Some(expected) = spec.toc_digest
            && layer.toc_digest() != expected
        {
            let found = layer.toc_digest();
            if !self
                .lock()
                .mounts
                .values()
                .any(|mounted| mounted.digest == spec.digest)
            {
                self.lock().open.remove(&spec.digest);
                layer.close();
            }
            return Err(RemoteLayerError::TocMismatch {
                digest: spec.digest,
                expected,
                found,
            });
        }
        // Two Prepares of the same blob may have opened it at once; keep the first.
        let mut state = self.lock();
        let kept = state
            .open
            .entry(spec.digest)
            .or_insert_with(|| Arc::clone(&layer));
        if !Arc::ptr_eq(kept, &layer) {
            layer.close();
        }
        Ok(Arc::clone(kept))
    }

    /// Resolves the blob, opens the layer and persists the footer and TOC bytes it read.
    ///
    /// Without a TOC digest the layer is opened unverified; callers compare
    /// [`Layer::toc_digest`] with the digest they trust before using it.
    async fn open_layer(
        &self,
        image: &ImageRef,
        image_text: &str,
        digest: Digest,
        toc_digest: Option<Digest>,
        prefetch_bytes: Option<u64>,
    ) -> Result<Arc<Layer>, RemoteLayerError> {
        let _opening = Opening::start(self, digest);
        let dir = self.layer_dir(&digest);
        let known_size = TailIndex::load(&dir).map(|index| index.blob_size);
        let inner = image::open_blob(&self.shared.client, image, &digest, known_size)
            .await
            .map_err(|source| RemoteLayerError::Resolve {
                digest,
                image: image_text.to_owned(),
                source,
            })?;
        let source = Arc::new(PersistedSource::new(
            inner,
            dir.clone(),
            self.shared.metrics.clone(),
        ));
        let info = LayerInfo {
            digest,
            size: source.size(),
            toc_digest,
            prefetch_bytes,
        };
        let mut config = self.settings().layer.clone();
        if toc_digest.is_none() {
            config.allow_unverified = true;
        }
        let layer = Layer::open(
            &info,
            source.clone(),
            Arc::clone(&self.shared.cache),
            &config,
        )
        .await
        .map_err(|source| RemoteLayerError::Open { digest, source })?;
        let persist = Arc::clone(&source);
        match tokio::task::spawn_blocking(move || persist.persist()).await {
            Ok(Ok(())) => {}
            Ok(Err(error)) => {
                tracing::warn!(layer = %digest, dir = %dir.display(), %error, "failed to persist the TOC; a restart will need the registry for this layer");
            }
            Err(error) => tracing::warn!(layer = %digest, %error, "TOC persist task failed"),
        }
        Ok(layer)
    }

    /// Starts opening `digests` of `image` in the background (unverified, compared with their
    /// labels at Prepare), so their Prepares find them ready. Layers already open or opening
    /// are skipped; unused ones are dropped after the resolve TTL.
    pub fn open_ahead(
        &self,
        image: &ImageRef,
        image_text: &str,
        digests: &[Digest],
        prefetch_bytes: Option<u64>,
    ) {
        self.expire_ahead();
        for digest in digests {
            let mut state = self.lock();
            if state.open.contains_key(digest) || state.ahead.contains_key(digest) {
                continue;
            }
            let manager = self.clone();
            let (image, image_text, digest) = (image.clone(), image_text.to_owned(), *digest);
            let limit = self.settings().resolve_timeout;
            let future: BoxFuture<'static, Result<Arc<Layer>, Arc<RemoteLayerError>>> = Box::pin(
                async move {
                    let opened = tokio::time::timeout(
                        limit,
                        manager.open_layer(&image, &image_text, digest, None, prefetch_bytes),
                    )
                    .await;
                    match opened {
                        Ok(Ok(layer)) => Ok(layer),
                        Ok(Err(error)) => {
                            tracing::info!(layer = %digest, error = %crate::grpc::error_chain(&error), "opening a layer ahead failed; its Prepare will try again");
                            Err(Arc::new(error))
                        }
                        Err(_) => Err(Arc::new(RemoteLayerError::Timeout { digest, limit })),
                    }
                },
            );
            let ahead = future.shared();
            state.ahead.insert(digest, (Instant::now(), ahead.clone()));
            drop(state);
            // A shared future only runs while polled; this task drives it to completion.
            tokio::spawn(ahead.map(drop));
            tracing::debug!(layer = %digest, "opening a layer ahead of its Prepare");
        }
    }

    /// Drops failed attempts and layers opened ahead that were not used within the TTL.
    fn expire_ahead(&self) {
        let ttl = self.settings().resolve_ttl;
        let mut state = self.lock();
        state.ahead.retain(|digest, (requested, ahead)| {
            let failed = matches!(ahead.peek(), Some(Err(_)));
            let expired = requested.elapsed() > ttl;
            if expired && let Some(Ok(layer)) = ahead.peek() {
                tracing::debug!(layer = %digest, "closing a layer opened ahead and never used");
                layer.close();
            }
            !(failed || expired)
        });
    }

    async fn fuse_mount(
        &self,
        layer: &Arc<Layer>,
        mountpoint: &Path,
        lower_dirs: Vec<PathBuf>,
    ) -> Result<LayerMount, RemoteLayerError> {
        let digest = layer.digest();
        let options = FsOptions {
            read_timeout: Some(self.settings().read_timeout),
            lower_dirs,
            ..FsOptions::default()
        };
        let core = Arc::new(FsCore::new(Arc::clone(layer), options));
        let settings = MountSettings {
            threads: self.settings().fuse_threads,
            ..MountSettings::default()
        };
        let runtime = self.shared.runtime.clone();
        let path = mountpoint.to_path_buf();
        // Mounting waits until the new session thread has replied to the kernel's INIT request.
        let mounted =
            tokio::task::spawn_blocking(move || LayerMount::mount(core, runtime, &path, &settings))
                .await
                .map_err(|join| RemoteLayerError::Fuse {
                    digest,
                    path: mountpoint.to_path_buf(),
                    source: std::io::Error::other(join),
                })?;
        let session = mounted.map_err(|source| RemoteLayerError::Fuse {
            digest,
            path: mountpoint.to_path_buf(),
            source,
        })?;
        tracing::info!(layer = %digest, mountpoint = %mountpoint.display(), "mounted layer");
        Ok(session)
    }

    /// Checks that the layer of snapshot `id` can still be read and, the first time
    /// `wait_prefetch` is set, waits for its prefetch. Returns the digest and what is wrong when it cannot be used.
    pub async fn ready(
        &self,
        id: u64,
        wait_prefetch: bool,
    ) -> Result<(), (Option<Digest>, String)> {
        let (digest, layer, check_due, wait_prefetch) = {
            let state = self.lock();
            let Some(mounted) = state.mounts.get(&id) else {
                return Err(match state.failed.get(&id) {
                    Some((digest, reason)) => (Some(*digest), reason.clone()),
                    None => (None, "is not mounted".to_owned()),
                });
            };
            let Some(layer) = state.open.get(&mounted.digest).cloned() else {
                return Err((Some(mounted.digest), "is mounted but not open".to_owned()));
            };
            let interval = self.settings().check_interval;
            let check_due = mounted
                .checked_at
                .is_none_or(|at| interval.is_zero() || at.elapsed() >= interval);
            (
                mounted.digest,
                layer,
                check_due,
                wait_prefetch && !mounted.prefetch_waited,
            )
        };
        // A fully cached layer never needs the registry again.
        if check_due && !self.fully_cached(&layer) {
            if let Err(error) = layer.source().check().await {
                return Err((
                    Some(digest),
                    format!(
                        "is unreachable in its registry: {}",
                        crate::grpc::error_chain(&error)
                    ),
                ));
            }
            if let Some(mounted) = self.lock().mounts.get_mut(&id) {
                mounted.checked_at = Some(Instant::now());
            }
        }
        if wait_prefetch {
            let limit = self.settings().prefetch_wait;
            let started = Instant::now();
            let outcome = layer.wait_prefetch(limit).await;
            let waited_ms = started.elapsed().as_millis() as u64;
            match outcome {
                PrefetchState::Running => {
                    tracing::warn!(layer = %digest, waited_ms, "prefetch still running; handing out mounts anyway")
                }
                PrefetchState::Failed { failed_chunks } => {
                    tracing::warn!(layer = %digest, failed_chunks, "prefetch failed in part; those chunks load on demand")
                }
                other => {
                    tracing::debug!(layer = %digest, waited_ms, state = ?other, "prefetch done")
                }
            }
            if let Some(mounted) = self.lock().mounts.get_mut(&id) {
                mounted.prefetch_waited = true;
            }
        }
        Ok(())
    }

    /// Tells whether every chunk of `layer` is in the cache. The fetched fraction covers chunks
    /// obtained since the layer opened; the cache lookup also counts chunks a previous run of the
    /// daemon left on disk.
    fn fully_cached(&self, layer: &Layer) -> bool {
        if layer.fetched_fraction() >= 1.0 {
            return true;
        }
        let digest = layer.digest();
        layer
            .index()
            .all_chunks()
            .iter()
            .all(|chunk| self.shared.cache.contains(&ChunkKey::new(digest, chunk)))
    }

    /// Unmounts the layer of snapshot `id` and clears any recorded failure. When no other snapshot
    /// uses the blob, closes the layer and frees its cached chunks and persisted TOC.
    pub async fn unmount(&self, id: u64) {
        let (mounted, failed) = {
            let mut state = self.lock();
            (state.mounts.remove(&id), state.failed.remove(&id))
        };
        let digest = match (mounted, failed) {
            (Some(mounted), _) => {
                let digest = mounted.digest;
                detach(mounted).await;
                digest
            }
            (None, Some((digest, _))) => digest,
            (None, None) => return,
        };
        self.release_if_unused(digest, true).await;
    }

    /// Closes `digest` when no mounted or failed snapshot uses it; with `free`, also deletes its
    /// cached chunks and persisted TOC.
    async fn release_if_unused(&self, digest: Digest, free: bool) {
        let layer = {
            let mut state = self.lock();
            let used = state
                .mounts
                .values()
                .any(|mounted| mounted.digest == digest)
                || state.failed.values().any(|(failed, _)| *failed == digest)
                || state.opening.contains_key(&digest);
            if used {
                return;
            }
            state.open.remove(&digest)
        };
        if let Some(layer) = layer {
            layer.close();
        }
        if free {
            self.free(digest).await;
        }
    }

    async fn free(&self, digest: Digest) {
        if let Err(error) = self.shared.cache.remove_layer(&digest).await {
            tracing::warn!(layer = %digest, %error, "failed to free the cached chunks of a removed layer");
        }
        let dir = self.layer_dir(&digest);
        if let Err(error) = tokio::fs::remove_dir_all(&dir).await
            && error.kind() != std::io::ErrorKind::NotFound
        {
            tracing::warn!(layer = %digest, dir = %dir.display(), %error, "failed to delete the persisted TOC of a removed layer");
        }
        tracing::info!(layer = %digest, "freed layer cache");
    }

    /// Frees persisted TOCs and cached chunks of blobs that no snapshot uses, nor any layer
    /// opened ahead. Returns the digests freed.
    pub async fn free_unused(&self) -> Vec<Digest> {
        let in_use: std::collections::HashSet<Digest> = {
            let state = self.lock();
            state
                .mounts
                .values()
                .map(|mounted| mounted.digest)
                .chain(state.failed.values().map(|(digest, _)| *digest))
                .chain(state.open.keys().copied())
                .chain(state.ahead.keys().copied())
                .chain(state.opening.keys().copied())
                .collect()
        };
        let Ok(entries) = std::fs::read_dir(&self.settings().layers_dir) else {
            return Vec::new();
        };
        let mut freed = Vec::new();
        for entry in entries.flatten() {
            let name = entry.file_name().to_string_lossy().into_owned();
            let Ok(digest) = format!("sha256:{name}").parse::<Digest>() else {
                continue;
            };
            if !in_use.contains(&digest) {
                self.free(digest).await;
                freed.push(digest);
            }
        }
        freed
    }

    /// Counters of every open layer.
    pub fn reports(&self) -> Vec<LayerReport> {
        let state = self.lock();
        state
            .open
            .iter()
            .map(|(digest, layer)| LayerReport {
                digest: *digest,
                size: layer.info().size,
                mounts: state
                    .mounts
                    .values()
                    .filter(|mounted| mounted.digest == *digest)
                    .count(),
                stats: layer.stats(),
            })
            .collect()
    }

    /// Numbers of mounted and failed remote snapshots.
    pub fn counts(&self) -> (usize, usize) {
        let state = self.lock();
        (state.mounts.len(), state.failed.len())
    }

    /// Unmounts every layer, stops every layer's background work and flushes the cache.
    /// Mounts that running containers still use are detached; their containers get errors
    /// from then on.
    pub async fn shutdown(&self) {
        let (mounts, layers, ahead) = {
            let mut state = self.lock();
            let mounts: Vec<Mounted> = state.mounts.drain().map(|(_, mounted)| mounted).collect();
            let layers: Vec<Arc<Layer>> = state.open.drain().map(|(_, layer)| layer).collect();
            let ahead: Vec<Ahead> = state.ahead.drain().map(|(_, (_, ahead))| ahead).collect();
            (mounts, layers, ahead)
        };
        let count = mounts.len();
        for mounted in mounts {
            detach(mounted).await;
        }
        for layer in layers {
            layer.close();
        }
        for ahead in ahead {
            if let Some(Ok(layer)) = ahead.peek() {
                layer.close();
            }
        }
        self.shared.cache.flush().await;
        tracing::info!(layers = count, "unmounted remote layers");
    }
}

/// Marks a layer as being opened until dropped.
struct Opening<'a> {
    manager: &'a LayerManager,
    digest: Digest,
}

impl<'a> Opening<'a> {
    fn start(manager: &'a LayerManager, digest: Digest) -> Self {
        *manager.lock().opening.entry(digest).or_insert(0) += 1;
        Opening { manager, digest }
    }
}

impl Drop for Opening<'_> {
    fn drop(&mut self) {
        let mut state = self.manager.lock();
        if let Some(count) = state.opening.get_mut(&self.digest) {
            *count -= 1;
            if *count == 0 {
                state.opening.remove(&self.digest);
            }
        }
    }
}

/// Unmounts a layer: a plain unmount when nothing uses it, else a lazy detach (an overlay of a
/// running container keeps the FUSE connection until the container stops or this process
/// exits). The session is dropped without joining its thread, which ends when the kernel
/// closes the connection.
async fn detach(mut mounted: Mounted) {
    let path = mounted.mountpoint.clone();
    let session = mounted.session.take();
    let result = tokio::task::spawn_blocking(move || {
        // fuser's own plain unmount comes first. It fails (and fuser logs it) when a container
        // still uses the layer, so the lazy detach below removes what is left.
        drop(session);
        mountinfo::unmount(&path)
    })
    .await;
    match result {
        Ok(Ok(_)) => {
            tracing::info!(layer = %mounted.digest, mountpoint = %mounted.mountpoint.display(), "unmounted layer")
        }
        Ok(Err(error)) => {
            tracing::error!(layer = %mounted.digest, mountpoint = %mounted.mountpoint.display(), %error, "failed to unmount a layer")
        }
        Err(error) => tracing::error!(layer = %mounted.digest, %error, "unmount task failed"),
    }
}
