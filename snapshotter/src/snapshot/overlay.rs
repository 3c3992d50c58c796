//! The overlayfs snapshotter: snapshot directories, the metadata store, and the mounts that
//! assemble a snapshot with kernel overlayfs.
//!
//! Layout under the root directory:
//!
//! ```text
//! <root>/metadata.log        the records (see the store module)
//! <root>/snapshots/<id>/fs   the snapshot's files: its upper dir, or a lower dir once committed
//! <root>/snapshots/<id>/work overlayfs work dir (active snapshots only)
//! ```
//!
//! Directories are created under a temporary name and renamed into place before the record is
//! written, and records are deleted before their directories. So after a crash a directory may
//! lack a record (removed by [`OverlaySnapshotter::cleanup`]), but a record never lacks its
//! directory.

use std::os::unix::fs::{DirBuilderExt, MetadataExt};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::SystemTime;

use super::error::SnapshotError;
use super::filter::Filters;
use super::mountinfo;
use super::store::{Op, Record, State, Store};
use super::types::{Info, Kind, Labels, Mount, Usage};
use super::usage::disk_usage;

/// Whether [`OverlaySnapshotter::commit`] measures the committed directory.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum UsagePolicy {
    /// Walk the directory and store its usage, as for unpacked layers.
    Measure,
    /// Store no usage. For a remote layer whose `fs` directory is a lazy FUSE mount, a walk
    /// would list every directory of the layer for a number no caller uses.
    Skip,
}

/// One snapshot of a parent chain, as [`OverlaySnapshotter::chain`] returns it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ChainLink {
    /// Key or name.
    pub name: String,
    /// Directory number.
    pub id: u64,
    /// Labels.
    pub labels: Labels,
}

/// A snapshot whose record was removed; its directory is deleted by
/// [`OverlaySnapshotter::delete_dir`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Removed {
    /// Key or name it had.
    pub name: String,
    /// Directory number.
    pub id: u64,
    /// Kind it had.
    pub kind: Kind,
    /// Labels it had.
    pub labels: Labels,
}

/// A snapshot record with its key, for startup restore.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Stored {
    /// Key or name.
    pub name: String,
    /// Directory number.
    pub id: u64,
    /// Kind.
    pub kind: Kind,
    /// Labels.
    pub labels: Labels,
}

/// A handle to the overlayfs snapshotter; clones share one store.
#[derive(Debug, Clone)]
pub struct OverlaySnapshotter {
    shared: Arc<Shared>,
}

#[derive(Debug)]
struct Shared {
    root: PathBuf,
    store: Mutex<Store>,
    /// Options added to every overlay mount.
    overlay_options: Vec<String>,
}

impl OverlaySnapshotter {
    /// Opens (or creates) the snapshotter state under `root`.
    pub fn open(root: &Path) -> Result<OverlaySnapshotter, SnapshotError> {
        let snapshots = root.join("snapshots");
        std::fs::DirBuilder::new()
            .recursive(true)
            .mode(0o700)
            .create(&snapshots)
            .map_err(SnapshotError::io("create", &snapshots))?;
        let store = Store::open(&root.join("metadata.log"))?;
        let mut overlay_options = Vec::new();
        // The overlayfs inode index needs lower filesystems that export file handles, and a FUSE
        // lower does not. containerd's overlayfs snapshotter turns the index off the same way
        // whenever the running kernel has the parameter.
        if Path::new("/sys/module/overlay/parameters/index").exists() {
            overlay_options.push("index=off".to_owned());
        }
        Ok(OverlaySnapshotter {
            shared: Arc::new(Shared {
                root: root.to_path_buf(),
                store: Mutex::new(store),
                overlay_options,
            }),
        })
    }

    /// Returns the root directory.
    pub fn root(&self) -> &Path {
        &self.shared.root
    }

    /// Returns the directory of snapshot `id`.
    pub fn snapshot_dir(&self, id: u64) -> PathBuf {
        self.shared.root.join("snapshots").join(id.to_string())
    }

    /// Returns the `fs` directory of snapshot `id`: its files, or the mount point of a remote
    /// layer.
    pub fn fs_dir(&self, id: u64) -> PathBuf {
        self.snapshot_dir(id).join("fs")
    }

    fn work_dir(&self, id: u64) -> PathBuf {
        self.snapshot_dir(id).join("work")
    }

    fn store(&self) -> MutexGuard<'_, Store> {
        // A panic while holding the lock cannot leave the store half-changed: the in-memory
        // state changes only after a successful append, in one assignment.
        self.shared
            .store
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// Information about `key`.
    pub fn stat(&self, key: &str) -> Result<Info, SnapshotError> {
        let store = self.store();
        let record = find(store.state(), key)?;
        Ok(info_of(key, record))
    }

    /// Returns every record, for startup restore.
    pub fn stored(&self) -> Vec<Stored> {
        let store = self.store();
        store
            .state()
            .snapshots
            .iter()
            .map(|(name, record)| Stored {
                name: name.clone(),
                id: record.id,
                kind: record.kind,
                labels: record.labels.clone(),
            })
            .collect()
    }

    /// Creates an active snapshot `key` on top of `parent` and returns its mounts.
    pub fn prepare(
        &self,
        key: &str,
        parent: Option<&str>,
        labels: Labels,
    ) -> Result<Vec<Mount>, SnapshotError> {
        self.create(Kind::Active, key, parent, labels)
    }

    /// Creates a read-only view `key` of `parent` and returns its mounts.
    pub fn view(
        &self,
        key: &str,
        parent: Option<&str>,
        labels: Labels,
    ) -> Result<Vec<Mount>, SnapshotError> {
        self.create(Kind::View, key, parent, labels)
    }

    fn create(
        &self,
        kind: Kind,
        key: &str,
        parent: Option<&str>,
        labels: Labels,
    ) -> Result<Vec<Mount>, SnapshotError> {
        if key.is_empty() {
            return Err(SnapshotError::EmptyName { what: "key" });
        }
        let parent = parent.filter(|parent| !parent.is_empty());
        let mut store = self.store();
        let state = store.state();
        if state.snapshots.contains_key(key) {
            return Err(SnapshotError::AlreadyExists {
                key: key.to_owned(),
            });
        }
        let parent_id = match parent {
            Some(parent) => {
                let record =
                    state
                        .snapshots
                        .get(parent)
                        .ok_or_else(|| SnapshotError::NotFound {
                            key: parent.to_owned(),
                        })?;
                if record.kind != Kind::Committed {
                    return Err(SnapshotError::ParentNotCommitted {
                        parent: parent.to_owned(),
                        kind: record.kind,
                    });
                }
                Some(record.id)
            }
            None => None,
        };
        let id = state.next_id;
        let dir = self.create_dir(id, kind, parent_id)?;
        let now = SystemTime::now();
        let record = Record {
            id,
            kind,
            parent: parent.map(str::to_owned),
            labels,
            created: now,
            updated: now,
            usage: None,
        };
        if let Err(error) = store.apply(
            id + 1,
            vec![Op::Put {
                key: key.to_owned(),
                record,
            }],
        ) {
            remove_tree(&dir);
            return Err(error.into());
        }
        let mounts = self.mounts_in(store.state(), key)?;
        Ok(mounts)
    }

    /// Creates `snapshots/<id>` with `fs` (and `work` for active snapshots) through a
    /// temporary name, so a half-made directory never carries a live number.
    fn create_dir(
        &self,
        id: u64,
        kind: Kind,
        parent_id: Option<u64>,
    ) -> Result<PathBuf, SnapshotError> {
        let dir = self.snapshot_dir(id);
        let temp = self.shared.root.join("snapshots").join(format!("new-{id}"));
        remove_tree(&temp);
        let made = (|| {
            std::fs::DirBuilder::new()
                .mode(0o700)
                .create(&temp)
                .map_err(SnapshotError::io("create", &temp))?;
            let fs = temp.join("fs");
            std::fs::DirBuilder::new()
                .mode(0o755)
                .create(&fs)
                .map_err(SnapshotError::io("create", &fs))?;
            if kind == Kind::Active {
                let work = temp.join("work");
                std::fs::DirBuilder::new()
                    .mode(0o711)
                    .create(&work)
                    .map_err(SnapshotError::io("create", &work))?;
            }
            // The upper directory becomes the container's root directory, so it gets the owner
            // of the layer below, as containerd does for images with a non-root root directory.
            if let Some(parent_id) = parent_id {
                let parent_fs = self.fs_dir(parent_id);
                let meta =
                    std::fs::metadata(&parent_fs).map_err(SnapshotError::io("stat", &parent_fs))?;
                std::os::unix::fs::lchown(&fs, Some(meta.uid()), Some(meta.gid()))
                    .map_err(SnapshotError::io("chown", &fs))?;
            }
            std::fs::rename(&temp, &dir).map_err(SnapshotError::io("rename into place", &dir))
        })();
        if let Err(error) = made {
            remove_tree(&temp);
            return Err(error);
        }
        Ok(dir)
    }

    /// Returns the mounts that assemble `key`.
    pub fn mounts(&self, key: &str) -> Result<Vec<Mount>, SnapshotError> {
        let store = self.store();
        self.mounts_in(store.state(), key)
    }

    fn mounts_in(&self, state: &State, key: &str) -> Result<Vec<Mount>, SnapshotError> {
        let record = find(state, key)?;
        let parents = parent_ids(state, record)?;
        Ok(self.mounts_of(record.id, record.kind, &parents))
    }

    /// Builds the mounts of snapshot `id` of `kind` with parents `parents` (nearest first),
    /// following containerd's overlayfs snapshotter:
    /// - no parent: a bind mount of `fs`, read-only for views;
    /// - a view of one parent: a read-only bind mount of the parent's `fs`;
    /// - otherwise overlayfs with `lowerdir` = the parents' `fs` (nearest first), plus
    ///   `upperdir` and `workdir` for active snapshots.
    fn mounts_of(&self, id: u64, kind: Kind, parents: &[u64]) -> Vec<Mount> {
        let access = if kind == Kind::View { "ro" } else { "rw" };
        match (parents, kind) {
            ([], _) => vec![bind(self.fs_dir(id), access)],
            ([only], Kind::View) => vec![bind(self.fs_dir(*only), "ro")],
            _ => {
                let mut options = self.shared.overlay_options.clone();
                if kind == Kind::Active {
                    options.push(format!("workdir={}", self.work_dir(id).display()));
                    options.push(format!("upperdir={}", self.fs_dir(id).display()));
                }
                let lowers: Vec<String> = parents
                    .iter()
                    .map(|parent| self.fs_dir(*parent).display().to_string())
                    .collect();
                options.push(format!("lowerdir={}", lowers.join(":")));
                vec![Mount {
                    kind: "overlay".to_owned(),
                    source: "overlay".to_owned(),
                    options,
                }]
            }
        }
    }

    /// `key` and its ancestors, nearest first, with their directory numbers and labels.
    pub fn chain(&self, key: &str) -> Result<Vec<ChainLink>, SnapshotError> {
        let store = self.store();
        let state = store.state();
        let mut links = Vec::new();
        let mut name = Some(key.to_owned());
        while let Some(current) = name {
            let record = find(state, &current)?;
            name = record.parent.clone();
            links.push(ChainLink {
                name: current,
                id: record.id,
                labels: record.labels.clone(),
            });
            if links.len() > state.snapshots.len() {
                break;
            }
        }
        Ok(links)
    }

    /// Commits the active snapshot `key` as `name` with `labels`. The directory keeps its
    /// number; with [`UsagePolicy::Measure`] its disk usage is measured and stored.
    pub fn commit(
        &self,
        name: &str,
        key: &str,
        labels: Labels,
        policy: UsagePolicy,
    ) -> Result<(), SnapshotError> {
        if name.is_empty() {
            return Err(SnapshotError::EmptyName { what: "name" });
        }
        let id = {
            let store = self.store();
            check_committable(store.state(), name, key)?.id
        };
        // Measured without the lock: a large upper directory takes a while to walk.
        let usage = match policy {
            UsagePolicy::Measure => Some(disk_usage(&self.fs_dir(id))?),
            UsagePolicy::Skip => None,
        };
        let mut store = self.store();
        let record = check_committable(store.state(), name, key)?;
        if record.id != id {
            // Removed and prepared again while we measured.
            return Err(SnapshotError::NotFound {
                key: key.to_owned(),
            });
        }
        let now = SystemTime::now();
        let committed = Record {
            kind: Kind::Committed,
            labels,
            created: now,
            updated: now,
            usage,
            ..record.clone()
        };
        let next_id = store.state().next_id;
        store.apply(
            next_id,
            vec![
                Op::Delete {
                    key: key.to_owned(),
                },
                Op::Put {
                    key: name.to_owned(),
                    record: committed,
                },
            ],
        )?;
        Ok(())
    }

    /// Removes the record of `key`, refusing when another snapshot names it as parent. The
    /// directory stays until [`OverlaySnapshotter::delete_dir`] (or a later cleanup).
    pub fn remove_record(&self, key: &str) -> Result<Removed, SnapshotError> {
        let mut store = self.store();
        let state = store.state();
        let record = find(state, key)?;
        let children = state
            .snapshots
            .values()
            .filter(|other| other.parent.as_deref() == Some(key))
            .count();
        if children > 0 {
            return Err(SnapshotError::HasChildren {
                key: key.to_owned(),
                children,
            });
        }
        let removed = Removed {
            name: key.to_owned(),
            id: record.id,
            kind: record.kind,
            labels: record.labels.clone(),
        };
        let next_id = state.next_id;
        store.apply(
            next_id,
            vec![Op::Delete {
                key: key.to_owned(),
            }],
        )?;
        Ok(removed)
    }

    /// Deletes the directory of a removed snapshot, detaching anything still mounted below it
    /// first so the deletion never descends into a mounted filesystem. Failures are logged and
    /// left for [`OverlaySnapshotter::cleanup`].
    pub fn delete_dir(&self, id: u64) {
        let dir = self.snapshot_dir(id);
        for point in mountinfo::mounts_below(&dir) {
            if let Err(error) = mountinfo::unmount(&point) {
                tracing::warn!(snapshot_id = id, mountpoint = %point.display(), %error, "failed to unmount below a removed snapshot; leaving it for cleanup");
                return;
            }
        }
        // Renamed first so that a crash during the deletion leaves no directory that looks live.
        let doomed = self.shared.root.join("snapshots").join(format!("rm-{id}"));
        if let Err(error) = std::fs::rename(&dir, &doomed) {
            if error.kind() != std::io::ErrorKind::NotFound {
                tracing::warn!(snapshot_id = id, dir = %dir.display(), %error, "failed to move a removed snapshot aside; leaving it for cleanup");
            }
            return;
        }
        if let Err(error) = std::fs::remove_dir_all(&doomed) {
            tracing::warn!(snapshot_id = id, dir = %doomed.display(), %error, "failed to delete a removed snapshot; leaving it for cleanup");
        }
    }

    /// Removes `key` and its directory.
    pub fn remove(&self, key: &str) -> Result<Removed, SnapshotError> {
        let removed = self.remove_record(key)?;
        self.delete_dir(removed.id);
        Ok(removed)
    }

    /// Changes labels of `info.name` and returns the new information.
    ///
    /// With no field paths every label is replaced by `info.labels`. `labels` does the same;
    /// `labels.<key>` sets that label from `info.labels`, or deletes it when `info.labels` lacks
    /// it. Other fields cannot change.
    pub fn update(&self, info: &Info, fieldpaths: &[String]) -> Result<Info, SnapshotError> {
        let mut store = self.store();
        let state = store.state();
        let mut record = find(state, &info.name)?.clone();
        if fieldpaths.is_empty() {
            record.labels = info.labels.clone();
        }
        for path in fieldpaths {
            if path == "labels" {
                record.labels = info.labels.clone();
            } else if let Some(label) = path.strip_prefix("labels.") {
                match info.labels.get(label) {
                    Some(value) => record.labels.insert(label.to_owned(), value.clone()),
                    None => record.labels.remove(label),
                };
            } else {
                return Err(SnapshotError::ImmutableField {
                    field: path.clone(),
                });
            }
        }
        record.updated = SystemTime::now();
        let next_id = state.next_id;
        store.apply(
            next_id,
            vec![Op::Put {
                key: info.name.clone(),
                record: record.clone(),
            }],
        )?;
        Ok(info_of(&info.name, &record))
    }

    /// Disk usage of `key`'s own directory: measured now for active snapshots and views, as
    /// stored at commit for committed ones (zero for remote layers).
    pub fn usage(&self, key: &str) -> Result<Usage, SnapshotError> {
        let (id, kind, stored) = {
            let store = self.store();
            let record = find(store.state(), key)?;
            (record.id, record.kind, record.usage)
        };
        match kind {
            Kind::Committed => Ok(stored.unwrap_or_default()),
            Kind::Active | Kind::View => disk_usage(&self.fs_dir(id)),
        }
    }

    /// Every snapshot that passes `filters`, sorted by name.
    pub fn walk(&self, filters: &Filters) -> Vec<Info> {
        let store = self.store();
        store
            .state()
            .snapshots
            .iter()
            .map(|(name, record)| info_of(name, record))
            .filter(|info| filters.matches(info))
            .collect()
    }

    /// Deletes directories under `snapshots/` that no record uses: leftovers of removals that
    /// failed, crashes, and temporary names. Directories with something mounted below them are
    /// kept. Returns the directories deleted.
    pub fn cleanup(&self) -> Result<Vec<PathBuf>, SnapshotError> {
        let live: std::collections::HashSet<String> = {
            let store = self.store();
            store
                .state()
                .snapshots
                .values()
                .map(|record| record.id.to_string())
                .collect()
        };
        let snapshots = self.shared.root.join("snapshots");
        let entries =
            std::fs::read_dir(&snapshots).map_err(SnapshotError::io("list", &snapshots))?;
        let mut deleted = Vec::new();
        for entry in entries {
            let entry = entry.map_err(SnapshotError::io("list", &snapshots))?;
            let name = entry.file_name().to_string_lossy().into_owned();
            if live.contains(&name) {
                continue;
            }
            let path = entry.path();
            if !mountinfo::mounts_below(&path).is_empty() || mountinfo::is_mount_point(&path) {
                tracing::warn!(dir = %path.display(), "cleanup skips an unused snapshot directory with mounts below it");
                continue;
            }
            match std::fs::remove_dir_all(&path) {
                Ok(()) => deleted.push(path),
                Err(error) => {
                    tracing::warn!(dir = %path.display(), %error, "cleanup failed to delete an unused snapshot directory")
                }
            }
        }
        Ok(deleted)
    }
}

fn find<'a>(state: &'a State, key: &str) -> Result<&'a Record, SnapshotError> {
    if key.is_empty() {
        return Err(SnapshotError::EmptyName { what: "key" });
    }
    state
        .snapshots
        .get(key)
        .ok_or_else(|| SnapshotError::NotFound {
            key: key.to_owned(),
        })
}

fn check_committable<'a>(
    state: &'a State,
    name: &str,
    key: &str,
) -> Result<&'a Record, SnapshotError> {
    let record = find(state, key)?;
    if record.kind != Kind::Active {
        return Err(SnapshotError::NotActive {
            key: key.to_owned(),
            kind: record.kind,
        });
    }
    if state.snapshots.contains_key(name) {
        return Err(SnapshotError::AlreadyExists {
            key: name.to_owned(),
        });
    }
    Ok(record)
}

/// Directory numbers of the ancestors of `record`, nearest first.
fn parent_ids(state: &State, record: &Record) -> Result<Vec<u64>, SnapshotError> {
    let mut ids = Vec::new();
    let mut parent = record.parent.as_deref();
    while let Some(name) = parent {
        let parent_record = find(state, name)?;
        ids.push(parent_record.id);
        parent = parent_record.parent.as_deref();
        // Records only name existing committed parents, so chains end; this bounds a
        // hand-edited store with a cycle.
        if ids.len() > state.snapshots.len() {
            break;
        }
    }
    Ok(ids)
}

fn info_of(name: &str, record: &Record) -> Info {
    Info {
        name: name.to_owned(),
        parent: record.parent.clone(),
        kind: record.kind,
        labels: record.labels.clone(),
        created: record.created,
        updated: record.updated,
    }
}

fn bind(source: PathBuf, access: &str) -> Mount {
    Mount {
        kind: "bind".to_owned(),
        source: source.display().to_string(),
        options: vec![access.to_owned(), "rbind".to_owned()],
    }
}

fn remove_tree(path: &Path) {
    if let Err(error) = std::fs::remove_dir_all(path)
        && error.kind() != std::io::ErrorKind::NotFound
    {
        tracing::warn!(dir = %path.display(), %error, "failed to delete a snapshot directory");
    }
}
