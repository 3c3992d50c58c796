//! The snapshot types: one [`Node`] per path, collected in a [`Tree`].

use std::collections::{BTreeMap, BTreeSet};
use std::path::PathBuf;

/// The type of a filesystem object.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum NodeKind {
    /// Regular file.
    Regular,
    /// Directory.
    Directory,
    /// Symbolic link.
    Symlink,
    /// Character device (an overlayfs whiteout is a 0/0 character device).
    CharDevice,
    /// Block device.
    BlockDevice,
    /// Named pipe.
    Fifo,
    /// Unix socket.
    Socket,
}

/// Everything a snapshot records about one path.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Node {
    /// The object type.
    pub kind: NodeKind,
    /// Permission bits plus setuid, setgid and sticky (`st_mode & 0o7777`).
    pub mode: u32,
    /// Owner user id.
    pub uid: u32,
    /// Owner group id.
    pub gid: u32,
    /// Modification time in nanoseconds since the Unix epoch.
    pub mtime_ns: i128,
    /// `st_size`: content length of files, target length of symlinks.
    pub size: u64,
    /// Hex sha256 of the content, for regular files.
    pub sha256: Option<String>,
    /// The raw link target, for symlinks.
    pub link_target: Option<Vec<u8>>,
    /// Device (major, minor), for character and block devices.
    pub device: Option<(u32, u32)>,
    /// Extended attributes with raw values.
    pub xattrs: BTreeMap<String, Vec<u8>>,
    /// `st_nlink`.
    pub nlink: u64,
    /// An identity shared by every path of one inode: (device, inode) from a snapshot, or
    /// (layer index, inode) after [`merge_layers`](super::merge_layers). Hardlink groups are
    /// compared through it, never its value.
    pub inode: (u64, u64),
}

/// A snapshot of a directory: every path below it, relative to it, without the root
/// directory itself.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Tree {
    /// The nodes by relative path.
    pub nodes: BTreeMap<PathBuf, Node>,
}

impl Tree {
    /// Returns the node at a relative path.
    pub fn get(&self, path: impl Into<PathBuf>) -> Option<&Node> {
        self.nodes.get(&path.into())
    }

    /// Returns the relative paths, sorted.
    pub fn paths(&self) -> Vec<PathBuf> {
        self.nodes.keys().cloned().collect()
    }

    /// Returns the sets of paths that share an inode, for inodes with more than one path
    /// (hard links).
    pub fn hardlink_groups(&self) -> BTreeSet<BTreeSet<PathBuf>> {
        let mut by_inode: BTreeMap<(u64, u64), BTreeSet<PathBuf>> = BTreeMap::new();
        for (path, node) in &self.nodes {
            if node.kind != NodeKind::Directory {
                by_inode.entry(node.inode).or_default().insert(path.clone());
            }
        }
        by_inode
            .into_values()
            .filter(|group| group.len() > 1)
            .collect()
    }
}
