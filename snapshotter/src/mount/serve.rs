//! The serving process of `lazypull mount`: open every layer, mount each with FUSE, stack them
//! with overlayfs, report readiness, serve until SIGTERM or SIGINT, then clean up.

use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use estargz::digest::Digest;
use futures_util::future::{join_all, try_join_all};
use tokio::signal::unix::{SignalKind, signal};

use super::daemon::Readiness;
use super::options::MountOptions;
use super::record::{MountPaths, MountRecord, RecordError, write_record};
use super::stats::{collect, write_stats};
use super::system::{self, SystemError};
use crate::cache::ChunkCache;
use crate::fs::fuse::{LayerMount, MountSettings};
use crate::fs::{FsCore, FsOptions, TraceRecorder};
use crate::layer::{Layer, LayerError, LayerInfo};
use crate::remote::{DockerConfigCredentials, ImageRef, RegistryClient, RemoteError, image};

/// How often the stats file is rewritten (it is also rewritten on SIGUSR1).
const STATS_INTERVAL: Duration = Duration::from_secs(1);
/// Maximum wait at exit for chunk writes still queued for the disk tier. It is well below
/// `unmount`'s default stop timeout, after which the process is killed.
const FLUSH_TIMEOUT: Duration = Duration::from_secs(5);

/// Errors of a mount.
#[derive(Debug, thiserror::Error)]
pub enum MountError {
    /// The mount point is not an existing directory.
    #[error("mount point {0} is not an existing directory")]
    MountpointMissing(PathBuf),
    /// The mount point already has a live lazypull mount.
    #[error("{mountpoint} is already mounted by lazypull process {pid}; run `lazypull unmount {mountpoint}` first", mountpoint = .mountpoint.display())]
    AlreadyMounted {
        /// The mount point.
        mountpoint: PathBuf,
        /// The serving process.
        pid: u32,
    },
    /// Another lazypull process holds the mount point's lock: it is mounting or serving it.
    #[error("another lazypull process is mounting or serving {mountpoint}; wait for it, or run `lazypull unmount {mountpoint}`", mountpoint = .0.display())]
    Busy(PathBuf),
    /// The image reference is invalid, or the image could not be resolved.
    #[error("failed to resolve image {image}")]
    Resolve {
        /// The image as given.
        image: String,
        /// The cause.
        #[source]
        source: Box<RemoteError>,
    },
    /// The image has no layers.
    #[error("image {0} has no layers")]
    NoLayers(String),
    /// A layer blob could not be opened.
    #[error("failed to open layer {index} ({digest})")]
    OpenBlob {
        /// Layer position, 0 = bottom.
        index: usize,
        /// Layer digest.
        digest: Digest,
        /// The cause.
        #[source]
        source: Box<RemoteError>,
    },
    /// A layer is not eStargz, or has no TOC digest to verify it with.
    #[error(
        "layer {index} ({digest}) cannot be mounted lazily; convert the image with `lazypull convert`"
    )]
    NotLazy {
        /// Layer position, 0 = bottom.
        index: usize,
        /// Layer digest.
        digest: Digest,
        /// The cause.
        #[source]
        source: Box<LayerError>,
    },
    /// A layer could not be opened (its footer or TOC could not be read, for example).
    #[error("failed to open layer {index} ({digest})")]
    Layer {
        /// Layer position, 0 = bottom.
        index: usize,
        /// Layer digest.
        digest: Digest,
        /// The cause.
        #[source]
        source: Box<LayerError>,
    },
    /// The chunk cache could not be created.
    #[error("failed to create the chunk cache")]
    Cache(#[source] crate::cache::CacheError),
    /// A FUSE mount failed.
    #[error("failed to mount layer {index} at {path}")]
    Fuse {
        /// Layer position, 0 = bottom.
        index: usize,
        /// Mount point.
        path: PathBuf,
        /// The cause.
        #[source]
        source: std::io::Error,
    },
    /// The overlay mount failed.
    #[error(transparent)]
    System(#[from] SystemError),
    /// The mount record could not be written.
    #[error(transparent)]
    Record(#[from] RecordError),
    /// A state file or directory could not be created.
    #[error("failed to prepare {path}")]
    Io {
        /// The path.
        path: PathBuf,
        /// The cause.
        #[source]
        source: std::io::Error,
    },
}

fn io_error(path: &Path) -> impl FnOnce(std::io::Error) -> MountError + '_ {
    move |source| MountError::Io {
        path: path.to_path_buf(),
        source,
    }
}

/// The mounts made so far, torn down in reverse on exit or failure.
struct Mounted {
    paths: MountPaths,
    mountpoint: PathBuf,
    layers: Vec<LayerMount>,
    overlay: bool,
}

impl Mounted {
    /// Unmounts the overlay, then every layer (lazily when busy), then removes the record and
    /// the mount directories, keeping `stats.json` and `serve.log` for inspection.
    fn teardown(self) {
        if self.overlay
            && let Err(error) = system::unmount(&self.mountpoint)
        {
            tracing::error!(mountpoint = %self.mountpoint.display(), error = %error_chain(&error), "failed to unmount the overlay");
        }
        for layer in self.layers.into_iter().rev() {
            let dir = layer.mountpoint().to_path_buf();
            if let Err(error) = system::unmount(&dir) {
                tracing::error!(mountpoint = %dir.display(), error = %error_chain(&error), "failed to unmount a layer");
            }
            drop(layer);
        }
        remove_mount_dirs(&self.paths);
        let _ = std::fs::remove_file(&self.paths.record);
    }
}

/// Removes the layer, upper and work directories of a mount, refusing to descend into anything
/// still mounted.
pub(crate) fn remove_mount_dirs(paths: &MountPaths) {
    let mounted = system::mount_points();
    if mounted
        .iter()
        .any(|point| point.starts_with(&paths.work_dir))
    {
        tracing::warn!(dir = %paths.work_dir.display(), "mounts remain below the mount directory; leaving it in place");
        return;
    }
    for dir in [paths.work_dir.join("layers"), paths.upper(), paths.work()] {
        if let Err(error) = std::fs::remove_dir_all(&dir)
            && error.kind() != std::io::ErrorKind::NotFound
        {
            tracing::warn!(dir = %dir.display(), %error, "failed to remove a mount directory");
        }
    }
}

/// Runs a mount until SIGTERM or SIGINT. Reports readiness (or the startup error) through
/// `readiness` once every layer and the overlay are mounted and the prefetch wait is over.
///
/// Must be called without a tokio runtime; it builds its own.
pub fn serve(options: MountOptions, mut readiness: Readiness) -> Result<(), MountError> {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .thread_name("lazypull-io")
        .build()
        .map_err(io_error(Path::new("tokio runtime")))?;
    let paths = MountPaths::new(&options.state_dir, &options.mountpoint);
    let result = match lock_state(&options.state_dir, &paths, &options.mountpoint) {
        Ok(lock) => {
            let handle = runtime.handle().clone();
            let result = runtime.block_on(run(&options, &paths, &mut readiness, handle));
            if let Err(error) = &result {
                readiness.failed(&error_chain(error));
                // The directory of a live server contains its stats and mounts, so it stays.
                if !matches!(error, MountError::AlreadyMounted { .. }) {
                    remove_log_only_dir(&paths);
                }
            }
            // Released only now, so no other mount starts in the directory while it is removed.
            drop(lock);
            result
        }
        Err(error) => {
            readiness.failed(&error_chain(&error));
            Err(error)
        }
    };
    // Pending reads own their replies, and fuser sends EIO for a reply dropped unsent, so
    // shutdown waits at most this long for reads still running.
    runtime.shutdown_timeout(Duration::from_secs(1));
    result
}

/// Creates the state directory and takes the lock of `mountpoint`. The caller holds the lock
/// until the mount ends, so two mounts of one directory never interleave.
fn lock_state(
    state_dir: &Path,
    paths: &MountPaths,
    mountpoint: &Path,
) -> Result<std::fs::File, MountError> {
    prepare_state_dir(state_dir)?;
    lock_mountpoint(paths, mountpoint)
}

/// Removes the mount directory of a failed start when it contains nothing but `serve.log`,
/// because the serving process has already reported its error to the user. Anything else there
/// (stats of an earlier mount, mounts that could not be removed) keeps the directory.
fn remove_log_only_dir(paths: &MountPaths) {
    let (work_dir, log) = (&paths.work_dir, paths.log());
    let Ok(entries) = std::fs::read_dir(work_dir) else {
        return;
    };
    let mut others = entries.filter(|entry| !matches!(entry, Ok(entry) if entry.path() == log));
    if others.next().is_some() {
        return;
    }
    if let Err(error) = std::fs::remove_file(&log)
        && error.kind() != std::io::ErrorKind::NotFound
    {
        tracing::warn!(path = %log.display(), %error, "failed to remove the log of a failed mount");
        return;
    }
    if let Err(error) = std::fs::remove_dir(work_dir) {
        tracing::warn!(dir = %work_dir.display(), %error, "failed to remove the directory of a failed mount");
    }
}

async fn run(
    options: &MountOptions,
    paths: &MountPaths,
    readiness: &mut Readiness,
    handle: tokio::runtime::Handle,
) -> Result<(), MountError> {
    let mountpoint = &options.mountpoint;
    if let Ok(existing) = super::record::read_record(&options.state_dir, mountpoint) {
        if existing.pid != std::process::id() && system::is_lazypull_process(existing.pid) {
            return Err(MountError::AlreadyMounted {
                mountpoint: mountpoint.clone(),
                pid: existing.pid,
            });
        }
        // A server that died left its record and its mounts: dead FUSE layers under an overlay.
        // They are removed first, so the new mount does not stack on top of them.
        tracing::warn!(mountpoint = %mountpoint.display(), pid = existing.pid, "removing the mounts of a dead server");
        // The mount directory stays: this process already writes its log there.
        let state_dir = options.state_dir.clone();
        let cleanup = tokio::task::spawn_blocking(move || {
            super::unmount::remove_mounts(&state_dir, &existing, Duration::from_secs(1))
        })
        .await;
        if let Ok(Err(error)) = cleanup {
            tracing::error!(mountpoint = %mountpoint.display(), error = %error_chain(&error), "failed to remove the stale mount");
        }
    }
    if !mountpoint.is_dir() {
        return Err(MountError::MountpointMissing(mountpoint.clone()));
    }
    let mut terminate =
        signal(SignalKind::terminate()).map_err(io_error(Path::new("SIGTERM handler")))?;
    let mut interrupt =
        signal(SignalKind::interrupt()).map_err(io_error(Path::new("SIGINT handler")))?;
    // Installed before the record names this process, because SIGUSR1 kills by default.
    let mut rewrite_stats =
        signal(SignalKind::user_defined1()).map_err(io_error(Path::new("SIGUSR1 handler")))?;

    let layers = open_layers(options).await?;
    let trace = match &options.record_trace {
        Some(path) => Some(Arc::new(
            TraceRecorder::create(path).map_err(io_error(path))?,
        )),
        None => None,
    };
    let layer_dirs: Vec<PathBuf> = (0..layers.len()).map(|n| paths.layer_dir(n)).collect();
    let record = MountRecord {
        image: options.image.clone(),
        mountpoint: mountpoint.clone(),
        pid: std::process::id(),
        work_dir: paths.work_dir.clone(),
        layer_mounts: layer_dirs.clone(),
        stats: paths.stats(),
        trace: options.record_trace.clone(),
    };
    // Recorded before anything is mounted, so `unmount` can clean up a half-finished mount.
    write_record(&paths.record, &record)?;

    let mut mounted = Mounted {
        paths: paths.clone(),
        mountpoint: mountpoint.clone(),
        layers: Vec::new(),
        overlay: false,
    };
    let result = mount_all(
        options,
        &layers,
        &layer_dirs,
        trace,
        paths,
        &mut mounted,
        handle,
    )
    .await;
    if let Err(error) = result {
        mounted.teardown();
        return Err(error);
    }

    let prefetch = join_all(
        layers
            .iter()
            .map(|layer| layer.wait_prefetch(options.prefetch_timeout)),
    )
    .await;
    if prefetch
        .iter()
        .any(|state| matches!(state, crate::fetch::PrefetchState::Running))
    {
        tracing::warn!(
            timeout_s = options.prefetch_timeout.as_secs(),
            "prefetch still running; reporting ready anyway"
        );
    }
    let stats_path = paths.stats();
    if let Err(error) = write_stats(&stats_path, &collect(&layers)) {
        tracing::warn!(path = %stats_path.display(), %error, "failed to write stats");
    }
    tracing::info!(image = %options.image, mountpoint = %mountpoint.display(), layers = layers.len(), "mounted");
    readiness.ready();

    let mut ticker = tokio::time::interval(STATS_INTERVAL);
    loop {
        tokio::select! {
            _ = terminate.recv() => break,
            _ = interrupt.recv() => break,
            _ = ticker.tick() => {
                if let Err(error) = write_stats(&stats_path, &collect(&layers)) {
                    tracing::warn!(path = %stats_path.display(), %error, "failed to write stats");
                }
            }
            // `lazypull status` sends SIGUSR1 to get the counters as of now.
            _ = rewrite_stats.recv() => {
                if let Err(error) = write_stats(&stats_path, &collect(&layers)) {
                    tracing::warn!(path = %stats_path.display(), %error, "failed to write stats");
                }
            }
        }
    }
    tracing::info!(mountpoint = %mountpoint.display(), "stopping");
    if let Err(error) = write_stats(&stats_path, &collect(&layers)) {
        tracing::warn!(path = %stats_path.display(), %error, "failed to write final stats");
    }
    for layer in &layers {
        layer.close();
    }
    let _ = tokio::task::spawn_blocking(move || mounted.teardown()).await;
    // Chunk files still queued for the disk tier are written before the process exits, so the
    // next mount finds them. A disk too slow for that loses only cache entries.
    if let Some(layer) = layers.first()
        && tokio::time::timeout(FLUSH_TIMEOUT, layer.cache().flush())
            .await
            .is_err()
    {
        tracing::warn!(
            timeout_s = FLUSH_TIMEOUT.as_secs(),
            "chunk cache writes still queued at exit are dropped"
        );
    }
    Ok(())
}

/// Takes the exclusive lock of `mountpoint`'s record (`<record>.lock`, kept between mounts). The
/// kernel releases it when the holder exits, however it exits.
fn lock_mountpoint(paths: &MountPaths, mountpoint: &Path) -> Result<std::fs::File, MountError> {
    let path = paths.record.with_extension("lock");
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir).map_err(io_error(dir))?;
    }
    let file = std::fs::OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .mode(0o600)
        .open(&path)
        .map_err(io_error(&path))?;
    match rustix::fs::flock(&file, rustix::fs::FlockOperation::NonBlockingLockExclusive) {
        Ok(()) => Ok(file),
        Err(rustix::io::Errno::WOULDBLOCK) => Err(MountError::Busy(mountpoint.to_path_buf())),
        Err(errno) => Err(io_error(&path)(errno.into())),
    }
}

fn prepare_state_dir(state_dir: &Path) -> Result<(), MountError> {
    std::fs::DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(state_dir)
        .map_err(io_error(state_dir))?;
    // The layer mounts below expose setuid programs and device nodes; only root may enter.
    std::fs::set_permissions(state_dir, std::fs::Permissions::from_mode(0o700))
        .map_err(io_error(state_dir))
}

async fn mount_all(
    options: &MountOptions,
    layers: &[Arc<Layer>],
    layer_dirs: &[PathBuf],
    trace: Option<Arc<TraceRecorder>>,
    paths: &MountPaths,
    mounted: &mut Mounted,
    handle: tokio::runtime::Handle,
) -> Result<(), MountError> {
    let settings = MountSettings {
        threads: options.fuse_threads,
        ..MountSettings::default()
    };
    for (index, (layer, dir)) in layers.iter().zip(layer_dirs).enumerate() {
        std::fs::create_dir_all(dir).map_err(io_error(dir))?;
        let fs_options = FsOptions {
            opaque_xattr: options.opaque_xattr,
            trace: trace.clone(),
            read_timeout: Some(options.read_timeout),
            // The layers below, mounted by earlier iterations, nearest first.
            lower_dirs: layer_dirs[..index].iter().rev().cloned().collect(),
        };
        let core = Arc::new(FsCore::new(Arc::clone(layer), fs_options));
        let (dir_owned, handle_owned) = (dir.clone(), handle.clone());
        let settings = settings.clone();
        // Mounting blocks until the FUSE handshake (the kernel's INIT request) completes.
        let mount = tokio::task::spawn_blocking(move || {
            LayerMount::mount(core, handle_owned, &dir_owned, &settings)
        })
        .await
        .map_err(|join| MountError::Fuse {
            index,
            path: dir.clone(),
            source: std::io::Error::other(join),
        })?
        .map_err(|source| MountError::Fuse {
            index,
            path: dir.clone(),
            source,
        })?;
        mounted.layers.push(mount);
    }
    for dir in [paths.upper(), paths.work()] {
        std::fs::create_dir_all(&dir).map_err(io_error(&dir))?;
    }
    let lowers: Vec<PathBuf> = layer_dirs.iter().rev().cloned().collect();
    system::mount_overlay(&options.mountpoint, &lowers, &paths.upper(), &paths.work())?;
    mounted.overlay = true;
    Ok(())
}

/// Resolves the image and opens every layer in parallel, sharing one chunk cache.
async fn open_layers(options: &MountOptions) -> Result<Vec<Arc<Layer>>, MountError> {
    let resolve_error = |source| MountError::Resolve {
        image: options.image.clone(),
        source: Box::new(source),
    };
    let reference = ImageRef::parse(&options.image).map_err(resolve_error)?;
    let client = RegistryClient::new(
        options.registry.clone(),
        Arc::new(DockerConfigCredentials::new()),
    )
    .map_err(resolve_error)?;
    let resolved = image::resolve_with(&client, &reference, &options.platform)
        .await
        .map_err(resolve_error)?;
    if resolved.layers.is_empty() {
        return Err(MountError::NoLayers(options.image.clone()));
    }
    let cache = Arc::new(ChunkCache::new(&options.layer.cache).map_err(MountError::Cache)?);
    let opens = resolved
        .layers
        .iter()
        .enumerate()
        .map(|(index, descriptor)| {
            let (resolved, cache) = (&resolved, Arc::clone(&cache));
            async move {
                let digest = descriptor.digest;
                let layer_error = |source: LayerError| {
                    // A damaged blob was already converted, so converting again is no fix.
                    let not_lazy = (source.is_not_lazy_pullable()
                        && !matches!(source, LayerError::DamagedBlob { .. }))
                        || matches!(source, LayerError::MissingTocDigest { .. });
                    let source = Box::new(source);
                    if not_lazy {
                        MountError::NotLazy {
                            index,
                            digest,
                            source,
                        }
                    } else {
                        MountError::Layer {
                            index,
                            digest,
                            source,
                        }
                    }
                };
                let info = LayerInfo::from_descriptor(descriptor).map_err(layer_error)?;
                let source = resolved.open_layer(descriptor).await.map_err(|source| {
                    MountError::OpenBlob {
                        index,
                        digest,
                        source: Box::new(source),
                    }
                })?;
                Layer::open(&info, source, cache, &options.layer)
                    .await
                    .map_err(layer_error)
            }
        });
    try_join_all(opens).await
}

/// Formats an error with its sources, `outer: inner: innermost`.
pub fn error_chain(error: &dyn std::error::Error) -> String {
    let mut text = error.to_string();
    let mut source = error.source();
    while let Some(cause) = source {
        text.push_str(": ");
        text.push_str(&cause.to_string());
        source = cause.source();
    }
    text
}
