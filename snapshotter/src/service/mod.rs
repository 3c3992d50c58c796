//! The containerd remote snapshotter: the overlayfs core plus lazily mounted eStargz layers,
//! and the daemon that serves it.
//!
//! - [`LazySnapshotter`] implements [`Snapshotter`](crate::snapshot::Snapshotter). For a Prepare
//!   whose labels name an eStargz layer ([`RemoteSpec`]), it mounts the layer with FUSE, commits
//!   it under its chain ID and replies ALREADY_EXISTS. Everything else is an ordinary overlayfs
//!   snapshot. A missing label, a blob that is not eStargz or a failed mount falls back
//!   to the ordinary path and logs why ([`Fallback`], [`RemoteLayerError`]).
//! - [`LayerManager`] owns opened layers, FUSE sessions and layers opened ahead of their
//!   Prepare, checks reachability before mounts are handed out, and frees a layer's cache when
//!   its last snapshot is removed.
//! - [`PersistedSource`] keeps each layer's footer and TOC bytes under `<root>/layers`, so
//!   [`restore`] mounts remote snapshots again after a restart without the registry.
//! - [`run`] is the daemon: restore, serve gRPC and metrics until shutdown, unmount.
//!
//! Restart model: the FUSE servers live in the daemon. On SIGTERM or SIGINT the daemon unmounts
//! its layers (lazily when a container still uses one) and exits; on start it removes stale
//! mounts below its snapshots directory and mounts every remote snapshot again. Containers
//! running across a restart keep their overlay over the old, now disconnected, FUSE mounts:
//! reads the kernel cannot answer from its page cache fail with ENOTCONN (or EIO) until the
//! container is restarted. New containers use the new mounts.

mod collector;
mod daemon;
mod error;
mod labels;
mod layers;
mod lazy;
mod notify;
mod persisted;
mod restore;

pub use collector::DaemonCollector;
pub use daemon::{Daemon, DaemonError, bind_socket, run, serve};
pub use error::RemoteLayerError;
pub use labels::{
    CRI_IMAGE_LAYERS, CRI_IMAGE_REF, CRI_LAYER_DIGEST, Fallback, REMOTE, REMOTE_VALUE,
    RESTORE_LABELS, RemoteSpec, SNAPSHOT_REF, STARGZ_DIGEST, STARGZ_LAYERS, STARGZ_PREFETCH,
    STARGZ_REFERENCE, TOC_DIGEST,
};
pub use layers::{LayerManager, LayerReport, LayerSettings};
pub use lazy::LazySnapshotter;
pub use persisted::{PersistedSource, Span, TailIndex};
pub use restore::{RestoreReport, restore};
