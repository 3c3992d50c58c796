//! A containerd snapshotter in plain Rust: the [`Snapshotter`] trait and its overlayfs
//! implementation, [`OverlaySnapshotter`].
//!
//! The trait has containerd's snapshotter operations (prepare, view, mounts, commit, remove,
//! stat, update, usage, walk with filters, cleanup) with Rust types and a typed error,
//! [`SnapshotError`], whose [`ErrorCode`] the gRPC adapter turns into a status code. Nothing
//! here knows about gRPC or remote layers: the `service` module adds lazily mounted layers on
//! top of [`OverlaySnapshotter`], and the `grpc` module serves any [`Snapshotter`].
//!
//! Semantics follow containerd's overlayfs snapshotter: active snapshots are writable and can
//! be committed; views are read-only and cannot; only committed snapshots can be parents; a
//! snapshot with children cannot be removed. Records persist in an append-only log (see
//! [`store`]), so a restarted daemon finds its snapshots again.
//!
//! ```
//! use lazypull_snapshotter::snapshot::{Labels, OverlaySnapshotter, UsagePolicy};
//!
//! let root = tempfile::tempdir().unwrap();
//! let snapshotter = OverlaySnapshotter::open(root.path()).unwrap();
//! let mounts = snapshotter.prepare("base-extract", None, Labels::new()).unwrap();
//! assert_eq!(mounts[0].kind, "bind");
//! snapshotter.commit("base", "base-extract", Labels::new(), UsagePolicy::Measure).unwrap();
//! let mounts = snapshotter.prepare("container", Some("base"), Labels::new()).unwrap();
//! assert_eq!(mounts[0].kind, "overlay");
//! ```

mod error;
mod filter;
pub mod mountinfo;
mod overlay;
pub mod store;
mod types;
mod usage;

use std::future::Future;

pub use error::{ErrorCode, SnapshotError};
pub use filter::Filters;
pub use overlay::{ChainLink, OverlaySnapshotter, Removed, Stored, UsagePolicy};
pub use types::{Info, Kind, Labels, Mount, Usage};
pub use usage::disk_usage;

/// containerd's snapshotter operations.
///
/// Keys of active snapshots and views, and names of committed snapshots, share one namespace.
/// Implementations must be safe to call concurrently.
pub trait Snapshotter: Send + Sync + 'static {
    /// Information about `key`.
    fn stat(&self, key: String) -> impl Future<Output = Result<Info, SnapshotError>> + Send;

    /// Changes the labels named by `fieldpaths` (all labels when empty) to those of `info`.
    fn update(
        &self,
        info: Info,
        fieldpaths: Vec<String>,
    ) -> impl Future<Output = Result<Info, SnapshotError>> + Send;

    /// Disk usage of `key`'s own directory.
    fn usage(&self, key: String) -> impl Future<Output = Result<Usage, SnapshotError>> + Send;

    /// The mounts that assemble `key`.
    fn mounts(&self, key: String)
    -> impl Future<Output = Result<Vec<Mount>, SnapshotError>> + Send;

    /// Creates the active snapshot `key` on `parent` and returns its mounts.
    fn prepare(
        &self,
        key: String,
        parent: Option<String>,
        labels: Labels,
    ) -> impl Future<Output = Result<Vec<Mount>, SnapshotError>> + Send;

    /// Creates the read-only view `key` of `parent` and returns its mounts.
    fn view(
        &self,
        key: String,
        parent: Option<String>,
        labels: Labels,
    ) -> impl Future<Output = Result<Vec<Mount>, SnapshotError>> + Send;

    /// Commits the active snapshot `key` under `name`.
    fn commit(
        &self,
        name: String,
        key: String,
        labels: Labels,
    ) -> impl Future<Output = Result<(), SnapshotError>> + Send;

    /// Removes `key`; fails while other snapshots name it as parent.
    fn remove(&self, key: String) -> impl Future<Output = Result<(), SnapshotError>> + Send;

    /// Every snapshot that passes `filters`.
    fn walk(
        &self,
        filters: Filters,
    ) -> impl Future<Output = Result<Vec<Info>, SnapshotError>> + Send;

    /// Frees resources that no snapshot uses any more.
    fn cleanup(&self) -> impl Future<Output = Result<(), SnapshotError>> + Send;
}

/// Runs `work` on the blocking pool: the core does file system I/O.
async fn blocking<T: Send + 'static>(
    snapshotter: &OverlaySnapshotter,
    work: impl FnOnce(OverlaySnapshotter) -> Result<T, SnapshotError> + Send + 'static,
) -> Result<T, SnapshotError> {
    let snapshotter = snapshotter.clone();
    tokio::task::spawn_blocking(move || work(snapshotter))
        .await
        .unwrap_or_else(|join| {
            Err(SnapshotError::Io {
                action: "run",
                path: "snapshot task".into(),
                source: std::io::Error::other(join),
            })
        })
}

impl Snapshotter for OverlaySnapshotter {
    async fn stat(&self, key: String) -> Result<Info, SnapshotError> {
        OverlaySnapshotter::stat(self, &key)
    }

    async fn update(&self, info: Info, fieldpaths: Vec<String>) -> Result<Info, SnapshotError> {
        blocking(self, move |core| core.update(&info, &fieldpaths)).await
    }

    async fn usage(&self, key: String) -> Result<Usage, SnapshotError> {
        blocking(self, move |core| core.usage(&key)).await
    }

    async fn mounts(&self, key: String) -> Result<Vec<Mount>, SnapshotError> {
        OverlaySnapshotter::mounts(self, &key)
    }

    async fn prepare(
        &self,
        key: String,
        parent: Option<String>,
        labels: Labels,
    ) -> Result<Vec<Mount>, SnapshotError> {
        blocking(self, move |core| {
            core.prepare(&key, parent.as_deref(), labels)
        })
        .await
    }

    async fn view(
        &self,
        key: String,
        parent: Option<String>,
        labels: Labels,
    ) -> Result<Vec<Mount>, SnapshotError> {
        blocking(self, move |core| core.view(&key, parent.as_deref(), labels)).await
    }

    async fn commit(&self, name: String, key: String, labels: Labels) -> Result<(), SnapshotError> {
        blocking(self, move |core| {
            core.commit(&name, &key, labels, UsagePolicy::Measure)
        })
        .await
    }

    async fn remove(&self, key: String) -> Result<(), SnapshotError> {
        blocking(self, move |core| core.remove(&key).map(drop)).await
    }

    async fn walk(&self, filters: Filters) -> Result<Vec<Info>, SnapshotError> {
        Ok(OverlaySnapshotter::walk(self, &filters))
    }

    async fn cleanup(&self) -> Result<(), SnapshotError> {
        blocking(self, |core| core.cleanup().map(drop)).await
    }
}
