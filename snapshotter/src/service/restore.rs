//! Startup: removing mounts a previous daemon left behind, and mounting every remote snapshot
//! again from its stored labels and persisted TOC.

use futures_util::StreamExt;

use super::labels;
use super::lazy::LazySnapshotter;
use crate::snapshot::{ChainLink, Kind, mountinfo};

/// Remote snapshots restored at once.
const PARALLEL_RESTORES: usize = 4;

/// Outcome of a restore.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct RestoreReport {
    /// Mounts found below the snapshots directory and removed (dead FUSE mounts after a crash).
    pub stale_unmounted: usize,
    /// Remote snapshots mounted again.
    pub restored: usize,
    /// Remote snapshots whose layer could not be mounted; they report UNAVAILABLE until a
    /// later attempt succeeds.
    pub failed: usize,
}

/// Unmounts whatever is mounted below `<root>/snapshots`, then mounts the layer of every
/// committed remote snapshot.
///
/// Each layer opens from its persisted footer and TOC and the disk chunk cache, so this needs
/// the registry only for layers whose persisted TOC is missing. A layer is either mounted or
/// recorded as failed with its reason; ordinary snapshots are never touched.
pub async fn restore(snapshotter: &LazySnapshotter) -> RestoreReport {
    let core = snapshotter.core();
    let snapshots_dir = core.root().join("snapshots");
    let stale = tokio::task::spawn_blocking(move || {
        let mut removed = 0;
        for point in mountinfo::mounts_below(&snapshots_dir) {
            match mountinfo::unmount(&point) {
                Ok(_) => {
                    tracing::info!(mountpoint = %point.display(), "removed a stale mount");
                    removed += 1;
                }
                Err(error) => tracing::error!(mountpoint = %point.display(), %error, "failed to remove a stale mount"),
            }
        }
        removed
    })
    .await
    .unwrap_or(0);

    let remote: Vec<ChainLink> = core
        .stored()
        .into_iter()
        .filter(|stored| {
            stored.kind == Kind::Committed && stored.labels.contains_key(labels::REMOTE)
        })
        .map(|stored| ChainLink {
            name: stored.name,
            id: stored.id,
            labels: stored.labels,
        })
        .collect();
    let outcomes: Vec<bool> = futures_util::stream::iter(remote.iter())
        .map(|link| async move { snapshotter.remount(&link.name, link).await.is_ok() })
        .buffer_unordered(PARALLEL_RESTORES)
        .collect()
        .await;
    let restored = outcomes.iter().filter(|ok| **ok).count();
    let report = RestoreReport {
        stale_unmounted: stale,
        restored,
        failed: outcomes.len() - restored,
    };
    tracing::info!(
        stale_unmounted = report.stale_unmounted,
        restored = report.restored,
        failed = report.failed,
        "restored remote snapshots"
    );
    report
}
