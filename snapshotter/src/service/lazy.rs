//! [`LazySnapshotter`]: the overlayfs snapshotter plus remote layers mounted lazily.

use std::sync::Arc;

use futures_util::future::join_all;

use super::labels::{self, RemoteSpec};
use super::layers::LayerManager;
use crate::grpc::error_chain;
use crate::snapshot::{
    ChainLink, Filters, Info, Labels, Mount, OverlaySnapshotter, SnapshotError, Snapshotter, Usage,
    UsagePolicy, mountinfo,
};

/// containerd's snapshotter with remote snapshots.
///
/// For a Prepare whose labels name a layer of an eStargz image (see [`RemoteSpec`]), the
/// snapshotter mounts the layer with FUSE on the new snapshot's `fs` directory. It commits the
/// snapshot under the chain ID with the label `containerd.io/snapshot/remote` and returns
/// ALREADY_EXISTS, so containerd never downloads the blob. Any other Prepare, and any remote attempt that fails,
/// is an ordinary overlayfs snapshot that containerd unpacks into.
///
/// Before mounts over remote layers are handed out (Prepare with a parent, View, Mounts),
/// every remote layer of the chain is checked to be reachable, and on the first use the
/// chain's prefetch is awaited (bounded).
#[derive(Debug, Clone)]
pub struct LazySnapshotter {
    core: OverlaySnapshotter,
    layers: LayerManager,
    allow_unverified: bool,
    /// Serializes remounts of layers that failed at restart, so two calls never mount twice on
    /// one directory.
    remount: Arc<tokio::sync::Mutex<()>>,
}

impl LazySnapshotter {
    /// Combines the core and the remote layers. `allow_unverified` lets layers without a TOC
    /// digest label be mounted.
    pub fn new(
        core: OverlaySnapshotter,
        layers: LayerManager,
        allow_unverified: bool,
    ) -> LazySnapshotter {
        LazySnapshotter {
            core,
            layers,
            allow_unverified,
            remount: Arc::new(tokio::sync::Mutex::new(())),
        }
    }

    /// Returns the overlayfs core.
    pub fn core(&self) -> &OverlaySnapshotter {
        &self.core
    }

    /// Returns the remote layers.
    pub fn layers(&self) -> &LayerManager {
        &self.layers
    }

    async fn blocking<T: Send + 'static>(
        &self,
        work: impl FnOnce(OverlaySnapshotter) -> Result<T, SnapshotError> + Send + 'static,
    ) -> Result<T, SnapshotError> {
        let core = self.core.clone();
        tokio::task::spawn_blocking(move || work(core))
            .await
            .unwrap_or_else(|join| {
                Err(SnapshotError::Io {
                    action: "run",
                    path: "snapshot task".into(),
                    source: std::io::Error::other(join),
                })
            })
    }

    /// Creates the active snapshot `key` and tries to mount the layer of `spec` on it. Returns
    /// ALREADY_EXISTS (for the chain ID) once the layer is mounted and committed, or the
    /// snapshot's ordinary mounts when the layer cannot be mounted, so containerd unpacks it.
    async fn prepare_remote(
        &self,
        key: &str,
        parent: Option<String>,
        labels: &Labels,
        spec: &RemoteSpec,
    ) -> Result<Vec<Mount>, SnapshotError> {
        let (key_owned, labels_owned, parent_owned) =
            (key.to_owned(), labels.clone(), parent.clone());
        let mounts = self
            .blocking(move |core| core.prepare(&key_owned, parent_owned.as_deref(), labels_owned))
            .await?;
        let chain = self.core.chain(key)?;
        let id = chain[0].id;
        let fs = self.core.fs_dir(id);
        let lowers = chain[1..]
            .iter()
            .map(|link| self.core.fs_dir(link.id))
            .collect();
        if let Err(error) = self.layers.mount(id, &fs, lowers, spec).await {
            tracing::warn!(
                key,
                snapshot_id = id,
                layer = %spec.digest,
                image = %spec.image_text,
                not_lazy = error.is_not_lazy(),
                error = %error_chain(&error),
                "remote snapshot not prepared; containerd unpacks the layer instead"
            );
            if let Some(parent) = &parent {
                self.ensure_chain(key, parent, false).await?;
            }
            return Ok(mounts);
        }

        let mut committed_labels = labels.clone();
        committed_labels.insert(labels::REMOTE.to_owned(), labels::REMOTE_VALUE.to_owned());
        let (target, key_owned) = (spec.target.clone(), key.to_owned());
        let commit = self
            .blocking(move |core| {
                core.commit(&target, &key_owned, committed_labels, UsagePolicy::Skip)
            })
            .await;
        match commit {
            Ok(()) => {
                tracing::info!(key, snapshot_id = id, target = %spec.target, layer = %spec.digest, image = %spec.image_text, "prepared remote snapshot");
                if !spec.next_layers.is_empty() {
                    self.layers.open_ahead(
                        &spec.image,
                        &spec.image_text,
                        &spec.next_layers,
                        spec.prefetch_bytes,
                    );
                }
            }
            Err(error) => {
                // Another Prepare committed the same chain ID first (its error is the same
                // ALREADY_EXISTS), or the commit failed: either way this copy goes.
                self.layers.unmount(id).await;
                let key_owned = key.to_owned();
                if let Err(remove_error) = self.blocking(move |core| core.remove(&key_owned)).await
                {
                    tracing::warn!(key, snapshot_id = id, error = %remove_error, "failed to remove a remote snapshot that lost its commit");
                }
                if !matches!(error, SnapshotError::AlreadyExists { .. }) {
                    return Err(error);
                }
            }
        }
        Err(SnapshotError::AlreadyExists {
            key: spec.target.clone(),
        })
    }

    /// Checks every remote layer of `name` and its ancestors, remounting layers that failed
    /// at restart, and waits for their prefetch on first use when `wait_prefetch` is set.
    /// Fails with UNAVAILABLE naming the first layer that cannot be used.
    async fn ensure_chain(
        &self,
        key: &str,
        name: &str,
        wait_prefetch: bool,
    ) -> Result<(), SnapshotError> {
        let links = self.core.chain(name)?;
        let remote: Vec<&ChainLink> = links
            .iter()
            .filter(|link| link.labels.contains_key(labels::REMOTE))
            .collect();
        if remote.is_empty() {
            return Ok(());
        }
        let results = join_all(
            remote
                .iter()
                .map(|link| self.ensure_layer(key, link, wait_prefetch)),
        )
        .await;
        results.into_iter().collect()
    }

    async fn ensure_layer(
        &self,
        key: &str,
        link: &ChainLink,
        wait_prefetch: bool,
    ) -> Result<(), SnapshotError> {
        if !self.layers.is_mounted(link.id) {
            self.remount(key, link).await?;
        }
        self.layers
            .ready(link.id, wait_prefetch)
            .await
            .map_err(|(digest, reason)| SnapshotError::Unavailable {
                key: key.to_owned(),
                layer: digest.map_or_else(|| link.name.clone(), |digest| digest.to_string()),
                reason,
            })
    }

    /// Mounts the layer of a remote snapshot from its stored labels: at startup, and again on
    /// use after a failed startup attempt.
    pub(crate) async fn remount(&self, key: &str, link: &ChainLink) -> Result<(), SnapshotError> {
        let _serialized = self.remount.lock().await;
        if self.layers.is_mounted(link.id) {
            return Ok(());
        }
        let unavailable = |layer: String, reason: String| SnapshotError::Unavailable {
            key: key.to_owned(),
            layer,
            reason,
        };
        let spec = RemoteSpec::from_labels(&link.name, &link.labels, self.allow_unverified)
            .map_err(|reason| {
                unavailable(
                    link.name.clone(),
                    format!("cannot be mounted again: {reason}"),
                )
            })?;
        let fs = self.core.fs_dir(link.id);
        let prepared = tokio::task::spawn_blocking({
            let fs = fs.clone();
            move || -> std::io::Result<()> {
                // A dead mount left by a crashed daemon fails every access with ENOTCONN.
                mountinfo::unmount(&fs).map_err(std::io::Error::from)?;
                std::fs::create_dir_all(&fs)
            }
        })
        .await
        .map_err(std::io::Error::other)
        .and_then(|result| result);
        if let Err(error) = prepared {
            let reason = format!("mount point {} is unusable: {error}", fs.display());
            self.layers
                .mark_failed(link.id, spec.digest, reason.clone());
            return Err(unavailable(spec.digest.to_string(), reason));
        }
        let lowers = self.core.chain(&link.name)?[1..]
            .iter()
            .map(|parent| self.core.fs_dir(parent.id))
            .collect();
        match self.layers.mount(link.id, &fs, lowers, &spec).await {
            Ok(()) => {
                tracing::info!(snapshot = %link.name, snapshot_id = link.id, layer = %spec.digest, "remounted remote snapshot");
                Ok(())
            }
            Err(error) => {
                let reason = format!("cannot be mounted: {}", error_chain(&error));
                tracing::error!(snapshot = %link.name, snapshot_id = link.id, layer = %spec.digest, %reason, "remote snapshot unavailable");
                self.layers
                    .mark_failed(link.id, spec.digest, reason.clone());
                Err(unavailable(spec.digest.to_string(), reason))
            }
        }
    }
}

impl Snapshotter for LazySnapshotter {
    async fn stat(&self, key: String) -> Result<Info, SnapshotError> {
        self.core.stat(&key)
    }

    async fn update(&self, mut info: Info, fieldpaths: Vec<String>) -> Result<Info, SnapshotError> {
        // A restart mounts a remote snapshot's layer again from these labels, so an update that
        // replaces or deletes labels keeps them.
        let stored = self.core.stat(&info.name)?;
        if stored.labels.contains_key(labels::REMOTE) {
            for key in labels::RESTORE_LABELS {
                if let Some(value) = stored.labels.get(key) {
                    info.labels.insert(key.to_owned(), value.clone());
                }
            }
        }
        self.blocking(move |core| core.update(&info, &fieldpaths))
            .await
    }

    async fn usage(&self, key: String) -> Result<Usage, SnapshotError> {
        self.blocking(move |core| core.usage(&key)).await
    }

    async fn mounts(&self, key: String) -> Result<Vec<Mount>, SnapshotError> {
        self.ensure_chain(&key, &key, true).await?;
        self.core.mounts(&key)
    }

    async fn prepare(
        &self,
        key: String,
        parent: Option<String>,
        labels: Labels,
    ) -> Result<Vec<Mount>, SnapshotError> {
        let unpack = labels.get(labels::SNAPSHOT_REF).cloned();
        if unpack.is_none() && is_unpack_key(&key) {
            tracing::info!(
                key,
                reason =
                    "label containerd.io/snapshot.ref is missing, so the layer's image is unknown",
                "layer is not mounted lazily; containerd unpacks it"
            );
        }
        if let Some(target) = &unpack {
            if self.core.stat(target).is_ok() {
                tracing::info!(key, target, "remote snapshot exists already");
                return Err(SnapshotError::AlreadyExists {
                    key: target.clone(),
                });
            }
            match RemoteSpec::from_labels(target, &labels, self.allow_unverified) {
                Ok(spec) => return self.prepare_remote(&key, parent, &labels, &spec).await,
                Err(reason) => {
                    tracing::info!(key, target, %reason, "layer is not mounted lazily; containerd unpacks it")
                }
            }
        }
        if let Some(parent) = &parent {
            // An unpack only needs the lower layers reachable; a container waits for prefetch.
            self.ensure_chain(&key, parent, unpack.is_none()).await?;
        }
        let (key_owned, log_key) = (key.clone(), key);
        let mounts = self
            .blocking(move |core| core.prepare(&key_owned, parent.as_deref(), labels))
            .await?;
        tracing::info!(key = log_key, "prepared snapshot");
        Ok(mounts)
    }

    async fn view(
        &self,
        key: String,
        parent: Option<String>,
        labels: Labels,
    ) -> Result<Vec<Mount>, SnapshotError> {
        if let Some(parent) = &parent {
            self.ensure_chain(&key, parent, true).await?;
        }
        let (key_owned, log_key) = (key.clone(), key);
        let mounts = self
            .blocking(move |core| core.view(&key_owned, parent.as_deref(), labels))
            .await?;
        tracing::info!(key = log_key, "prepared view");
        Ok(mounts)
    }

    async fn commit(&self, name: String, key: String, labels: Labels) -> Result<(), SnapshotError> {
        let (name_owned, key_owned) = (name.clone(), key.clone());
        self.blocking(move |core| {
            core.commit(&name_owned, &key_owned, labels, UsagePolicy::Measure)
        })
        .await?;
        tracing::info!(key, name, "committed snapshot");
        Ok(())
    }

    async fn remove(&self, key: String) -> Result<(), SnapshotError> {
        let key_owned = key.clone();
        let removed = self
            .blocking(move |core| core.remove_record(&key_owned))
            .await?;
        let remote = removed.labels.contains_key(labels::REMOTE);
        if remote {
            self.layers.unmount(removed.id).await;
        }
        let id = removed.id;
        self.blocking(move |core| {
            core.delete_dir(id);
            Ok(())
        })
        .await?;
        tracing::info!(key, snapshot_id = id, remote, "removed snapshot");
        Ok(())
    }

    async fn walk(&self, filters: Filters) -> Result<Vec<Info>, SnapshotError> {
        Ok(self.core.walk(&filters))
    }

    async fn cleanup(&self) -> Result<(), SnapshotError> {
        let deleted = self.blocking(|core| core.cleanup()).await?;
        let freed = self.layers.free_unused().await;
        tracing::info!(
            directories = deleted.len(),
            layers = freed.len(),
            "cleanup finished"
        );
        Ok(())
    }
}

/// Tells whether `key` names a snapshot that containerd's unpacker prepares: containerd 1.6 builds those
/// keys as `<namespace>/<n>/extract-<random> <chain ID>` (`UnpackKeyFormat` in its snapshots
/// package).
fn is_unpack_key(key: &str) -> bool {
    key.rsplit('/')
        .next()
        .is_some_and(|last| last.starts_with("extract-"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn unpack_keys_are_recognized() {
        assert!(is_unpack_key(
            "default/5/extract-118856658-2thI sha256:b02b3d3d"
        ));
        assert!(is_unpack_key("extract-1 sha256:00"));
        assert!(!is_unpack_key("default/9/t1"));
    }
}
