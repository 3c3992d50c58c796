//! The daemon's lifecycle: start (open the store, restore remote snapshots, serve gRPC and
//! metrics), and stop (let calls finish, unmount every remote layer).

use std::future::Future;
use std::os::unix::fs::{DirBuilderExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::sync::Arc;

use tokio::net::{TcpListener, UnixListener};

use super::collector::DaemonCollector;
use super::layers::{LayerManager, LayerSettings};
use super::lazy::LazySnapshotter;
use super::notify::notify;
use super::restore::restore;
use crate::cache::{CacheError, ChunkCache};
use crate::config::ServeConfig;
use crate::grpc::{self, ServeError};
use crate::metrics::{self, Metrics};
use crate::remote::{DockerConfigCredentials, RegistryClient, RemoteError};
use crate::snapshot::{OverlaySnapshotter, SnapshotError};

/// Failure to start the daemon, or an error that stopped it.
#[derive(Debug, thiserror::Error)]
pub enum DaemonError {
    /// A directory or the socket could not be set up.
    #[error("failed to {action} {path}")]
    Io {
        /// The operation that failed.
        action: &'static str,
        /// The path.
        path: PathBuf,
        /// The cause.
        #[source]
        source: std::io::Error,
    },
    /// The snapshot store could not be opened.
    #[error("failed to open the snapshot store")]
    Store(#[source] SnapshotError),
    /// The chunk cache could not be opened.
    #[error("failed to open the chunk cache")]
    Cache(#[source] CacheError),
    /// The registry client could not be built.
    #[error("failed to set up registry access")]
    Registry(#[source] RemoteError),
    /// The metrics address could not be bound.
    #[error("failed to listen for metrics on {address}")]
    Metrics {
        /// The address.
        address: std::net::SocketAddr,
        /// The cause.
        #[source]
        source: std::io::Error,
    },
    /// The gRPC server failed.
    #[error(transparent)]
    Serve(#[from] ServeError),
}

fn io_error<'a>(
    action: &'static str,
    path: &'a Path,
) -> impl FnOnce(std::io::Error) -> DaemonError + 'a {
    move |source| DaemonError::Io {
        action,
        path: path.to_path_buf(),
        source,
    }
}

/// Binds the gRPC socket at `path`: creates its directory (mode 0711 when new), replaces a
/// socket file left by a previous run, and restricts the socket to its owner (containerd runs
/// as root).
pub fn bind_socket(path: &Path) -> Result<UnixListener, DaemonError> {
    if let Some(dir) = path.parent() {
        std::fs::DirBuilder::new()
            .recursive(true)
            .mode(0o711)
            .create(dir)
            .map_err(io_error("create", dir))?;
    }
    match std::fs::remove_file(path) {
        Ok(()) => {
            tracing::info!(socket = %path.display(), "removed the socket file of a previous run")
        }
        Err(error) if error.kind() == std::io::ErrorKind::NotFound => {}
        Err(error) => return Err(io_error("remove the old socket", path)(error)),
    }
    let listener = UnixListener::bind(path).map_err(io_error("listen on", path))?;
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o600))
        .map_err(io_error("set permissions of", path))?;
    Ok(listener)
}

/// Runs the daemon until SIGTERM or SIGINT: [`Daemon::start`], then binds `config.socket`
/// and serves on it.
///
/// The socket appears only after the restore, so containerd's connection attempts fail fast
/// (and are retried) while remote snapshots are mounted again, instead of waiting on a socket
/// that does not respond.
pub async fn serve(config: &ServeConfig) -> Result<(), DaemonError> {
    use tokio::signal::unix::{SignalKind, signal};
    let mut terminate =
        signal(SignalKind::terminate()).map_err(io_error("handle SIGTERM for", &config.socket))?;
    let mut interrupt =
        signal(SignalKind::interrupt()).map_err(io_error("handle SIGINT for", &config.socket))?;
    let daemon = Daemon::start(config).await?;
    let listener = match bind_socket(&config.socket) {
        Ok(listener) => listener,
        Err(error) => {
            daemon.stop().await;
            return Err(error);
        }
    };
    let shutdown = async move {
        let signal = tokio::select! {
            _ = terminate.recv() => "SIGTERM",
            _ = interrupt.recv() => "SIGINT",
        };
        tracing::info!(signal, "stopping");
    };
    let result = daemon.serve(listener, shutdown).await;
    if let Err(error) = std::fs::remove_file(&config.socket)
        && error.kind() != std::io::ErrorKind::NotFound
    {
        tracing::warn!(socket = %config.socket.display(), %error, "failed to remove the socket file");
    }
    result
}

/// Runs the daemon on `listener` until `shutdown` completes: [`Daemon::start`], then
/// [`Daemon::serve`].
pub async fn run(
    config: &ServeConfig,
    listener: UnixListener,
    shutdown: impl Future<Output = ()> + Send,
) -> Result<(), DaemonError> {
    Daemon::start(config).await?.serve(listener, shutdown).await
}

/// A started daemon: store open, remote snapshots restored, metrics served.
pub struct Daemon {
    snapshotter: Arc<LazySnapshotter>,
    metrics: Arc<Metrics>,
    stop_metrics: tokio::sync::watch::Sender<bool>,
    metrics_task: Option<tokio::task::JoinHandle<Result<(), metrics::MetricsServerError>>>,
    socket: PathBuf,
}

impl std::fmt::Debug for Daemon {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Daemon")
            .field("socket", &self.socket)
            .finish_non_exhaustive()
    }
}

impl Daemon {
    /// Opens the snapshot store and chunk cache under `config.root`, removes stale mounts and
    /// mounts every remote snapshot again (see [`restore`]), and starts the metrics endpoint.
    pub async fn start(config: &ServeConfig) -> Result<Daemon, DaemonError> {
        tracing::info!(
            version = env!("CARGO_PKG_VERSION"),
            root = %config.root.display(),
            socket = %config.socket.display(),
            "lazypull snapshotter starting"
        );
        std::fs::DirBuilder::new()
            .recursive(true)
            .mode(0o700)
            .create(&config.root)
            .map_err(io_error("create", &config.root))?;
        let metrics = Arc::new(Metrics::new());
        let root = config.root.clone();
        let core = tokio::task::spawn_blocking(move || OverlaySnapshotter::open(&root))
            .await
            .map_err(|join| DaemonError::Io {
                action: "open",
                path: config.root.clone(),
                source: std::io::Error::other(join),
            })?
            .map_err(DaemonError::Store)?;
        let cache =
            Arc::new(ChunkCache::new(&config.effective_cache()).map_err(DaemonError::Cache)?);
        let credentials = Arc::new(DockerConfigCredentials::new());
        let client = RegistryClient::new(config.registry.clone(), credentials)
            .map_err(DaemonError::Registry)?;
        let settings = LayerSettings {
            layers_dir: config.root.join("layers"),
            layer: config.layer_config(),
            fuse_threads: config.fuse.threads,
            read_timeout: config.timeouts.read,
            resolve_timeout: config.timeouts.resolve,
            resolve_ttl: config.timeouts.resolve_ttl,
            check_interval: config.timeouts.check_interval,
            prefetch_wait: config.timeouts.prefetch_wait,
        };
        let runtime = tokio::runtime::Handle::current();
        let layers = LayerManager::new(
            settings,
            client,
            Arc::clone(&cache),
            Some(Arc::clone(&metrics)),
            runtime,
        );
        let snapshotter = Arc::new(LazySnapshotter::new(
            core.clone(),
            layers.clone(),
            config.allow_unverified,
        ));
        restore(&snapshotter).await;
        metrics.register_collector(Box::new(DaemonCollector {
            layers,
            cache,
            core,
        }));

        let (stop_metrics, metrics_stopped) = tokio::sync::watch::channel(false);
        let mut daemon = Daemon {
            snapshotter,
            metrics,
            stop_metrics,
            metrics_task: None,
            socket: config.socket.clone(),
        };
        if let Some(address) = config.metrics.address {
            let listener = match TcpListener::bind(address).await {
                Ok(listener) => listener,
                Err(source) => {
                    daemon.stop().await;
                    return Err(DaemonError::Metrics { address, source });
                }
            };
            let mut stopped = metrics_stopped;
            let stop = async move {
                let _ = stopped.wait_for(|stop| *stop).await;
            };
            daemon.metrics_task = Some(tokio::spawn(metrics::serve_http(
                listener,
                Arc::clone(&daemon.metrics),
                stop,
            )));
        }
        Ok(daemon)
    }

    /// Returns the snapshotter the daemon serves.
    pub fn snapshotter(&self) -> &Arc<LazySnapshotter> {
        &self.snapshotter
    }

    /// Serves the snapshots API on `listener` until `shutdown` completes, then [`Daemon::stop`].
    ///
    /// Stopping lets calls in flight finish, then unmounts every remote layer and flushes the
    /// cache. A layer that a running container still uses is detached, and that container gets
    /// ENOTCONN from then on.
    pub async fn serve(
        self,
        listener: UnixListener,
        shutdown: impl Future<Output = ()> + Send,
    ) -> Result<(), DaemonError> {
        notify("READY=1");
        tracing::info!(socket = %self.socket.display(), "lazypull snapshotter ready");
        let served = grpc::serve(
            Arc::clone(&self.snapshotter),
            listener,
            Some(Arc::clone(&self.metrics)),
            shutdown,
        )
        .await;
        notify("STOPPING=1");
        self.stop().await;
        served.map_err(DaemonError::from)
    }

    /// Unmounts every remote layer, flushes the cache and stops the metrics endpoint.
    pub async fn stop(self) {
        self.snapshotter.layers().shutdown().await;
        let _ = self.stop_metrics.send(true);
        if let Some(task) = self.metrics_task {
            match task.await {
                Ok(Ok(())) => {}
                Ok(Err(error)) => {
                    tracing::error!(error = %grpc::error_chain(&error), "metrics endpoint failed")
                }
                Err(error) => tracing::error!(%error, "metrics task failed"),
            }
        }
        tracing::info!("lazypull snapshotter stopped");
    }
}
