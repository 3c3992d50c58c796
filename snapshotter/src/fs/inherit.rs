//! Attributes of implied directories, taken from the layers below.
//!
//! A layer may hold `tmp/file` without an entry for `tmp/`. When layers are applied one by one
//! (containerd, Docker, `tar -x` of each layer in turn), such a directory keeps the mode, owner
//! and mtime it has in the layers below; only where no lower layer has it is it created with
//! defaults. overlayfs shows a merged directory with the attributes of its topmost copy, which
//! for a FUSE layer would be the index's defaults (0755, 0:0, the epoch). So the filesystem of
//! such a layer reports, for each implied directory, the attributes of the nearest lower layer
//! that has that path, following overlayfs's rules: a whiteout or a non-directory hides what is
//! below, and so does an opaque ancestor.
//!
//! The lower layers are looked up lazily, on first access to each implied directory: at that
//! point the whole stack is mounted, whatever order the layers were mounted or restored in.

use std::collections::HashMap;
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::sync::OnceLock;

use estargz::index::{LayerIndex, NodeId};
use estargz::toc::Timestamp;

/// Mode, owner and mtime of a directory in a lower layer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DirAttrs {
    /// Permission bits plus setuid, setgid and sticky.
    pub mode: u32,
    /// Owner uid.
    pub uid: u32,
    /// Owner gid.
    pub gid: u32,
    /// Modification time.
    pub mtime: Timestamp,
}

/// The implied directories of one layer and, once looked up, their inherited attributes.
#[derive(Debug)]
pub(crate) struct Inheritance {
    lower_dirs: Vec<PathBuf>,
    dirs: HashMap<NodeId, (PathBuf, OnceLock<Option<DirAttrs>>)>,
}

impl Inheritance {
    /// Prepares lookups for the implied directories of `index` in `lower_dirs` (the roots of the
    /// layers below, nearest first). Returns `None` when there is nothing to inherit.
    pub(crate) fn new(index: &LayerIndex, lower_dirs: &[PathBuf]) -> Option<Self> {
        if lower_dirs.is_empty() {
            return None;
        }
        let dirs: HashMap<_, _> = index
            .implied_dirs()
            .into_iter()
            .map(|(id, path)| {
                (
                    id,
                    (
                        PathBuf::from(std::ffi::OsStr::from_bytes(&path)),
                        OnceLock::new(),
                    ),
                )
            })
            .collect();
        (!dirs.is_empty()).then(|| Inheritance {
            lower_dirs: lower_dirs.to_vec(),
            dirs,
        })
    }

    /// The inherited attributes of implied directory `id`, or `None` when it is not implied or no
    /// lower layer shows it.
    pub(crate) fn attrs(&self, id: NodeId) -> Option<DirAttrs> {
        let (path, cell) = self.dirs.get(&id)?;
        *cell.get_or_init(|| lookup(&self.lower_dirs, path))
    }
}

/// Finds `path` in the nearest lower layer that decides it.
fn lookup(lower_dirs: &[PathBuf], path: &Path) -> Option<DirAttrs> {
    for lower in lower_dirs {
        match std::fs::symlink_metadata(lower.join(path)) {
            Ok(meta) if meta.is_dir() => {
                return Some(DirAttrs {
                    mode: meta.mode() & 0o7777,
                    uid: meta.uid(),
                    gid: meta.gid(),
                    mtime: Timestamp::new(meta.mtime(), meta.mtime_nsec() as u32),
                });
            }
            // A whiteout (0/0 character device) or any other file hides the layers below.
            Ok(_) => return None,
            Err(error) if error.kind() == std::io::ErrorKind::NotFound => {
                if has_opaque_ancestor(lower, path) {
                    return None;
                }
            }
            Err(error) => {
                tracing::warn!(lower = %lower.display(), path = %path.display(), %error,
                    "cannot look up an implied directory in a lower layer; using defaults");
                return None;
            }
        }
    }
    None
}

/// Whether an ancestor of `path` inside `lower` is an opaque directory, which hides the layers
/// below it.
fn has_opaque_ancestor(lower: &Path, path: &Path) -> bool {
    let mut dir = lower.to_path_buf();
    for part in path.parent().into_iter().flat_map(Path::components) {
        dir.push(part);
        for name in ["trusted.overlay.opaque", "user.overlay.opaque"] {
            let mut value = [0u8; 4];
            if let Ok(len) = rustix::fs::lgetxattr(&dir, name, &mut value)
                && value[..len] == *b"y"
            {
                return true;
            }
        }
    }
    false
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::PermissionsExt;

    #[test]
    fn nearest_lower_directory_wins() {
        let near = tempfile::tempdir().unwrap();
        let far = tempfile::tempdir().unwrap();
        std::fs::create_dir_all(far.path().join("tmp")).unwrap();
        std::fs::set_permissions(
            far.path().join("tmp"),
            std::fs::Permissions::from_mode(0o1777),
        )
        .unwrap();
        let found = lookup(
            &[near.path().to_path_buf(), far.path().to_path_buf()],
            Path::new("tmp"),
        )
        .unwrap();
        assert_eq!(found.mode, 0o1777);

        std::fs::create_dir_all(near.path().join("tmp")).unwrap();
        std::fs::set_permissions(
            near.path().join("tmp"),
            std::fs::Permissions::from_mode(0o700),
        )
        .unwrap();
        let found = lookup(
            &[near.path().to_path_buf(), far.path().to_path_buf()],
            Path::new("tmp"),
        )
        .unwrap();
        assert_eq!(found.mode, 0o700);
    }

    #[test]
    fn file_in_a_nearer_layer_hides_lower_directories() {
        let near = tempfile::tempdir().unwrap();
        let far = tempfile::tempdir().unwrap();
        std::fs::create_dir_all(far.path().join("opt")).unwrap();
        std::fs::write(near.path().join("opt"), b"").unwrap();
        assert_eq!(
            lookup(
                &[near.path().to_path_buf(), far.path().to_path_buf()],
                Path::new("opt")
            ),
            None
        );
    }

    #[test]
    fn missing_everywhere_gives_defaults() {
        let near = tempfile::tempdir().unwrap();
        assert_eq!(lookup(&[near.path().to_path_buf()], Path::new("a/b")), None);
    }
}
