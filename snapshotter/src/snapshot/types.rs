//! The values a snapshotter takes and returns: kinds, info records, usage and mounts.

use std::collections::BTreeMap;
use std::time::SystemTime;

use serde::{Deserialize, Serialize};

/// Labels of a snapshot, sorted by key so listings and the metadata log are stable.
pub type Labels = BTreeMap<String, String>;

/// The kind of a snapshot, as containerd defines it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Kind {
    /// A read-only view of a parent; never committed.
    View,
    /// A writable snapshot that can be committed.
    Active,
    /// An immutable snapshot that can be a parent.
    Committed,
}

impl Kind {
    /// The name containerd's filters and `ctr` use for the kind.
    pub fn as_str(self) -> &'static str {
        match self {
            Kind::View => "view",
            Kind::Active => "active",
            Kind::Committed => "committed",
        }
    }
}

impl std::fmt::Display for Kind {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// What a snapshotter knows about one snapshot.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Info {
    /// The key (active and view snapshots) or name (committed snapshots).
    pub name: String,
    /// The parent's name, `None` for a base snapshot.
    pub parent: Option<String>,
    /// The kind.
    pub kind: Kind,
    /// Labels, including the ones this snapshotter adds itself.
    pub labels: Labels,
    /// When the snapshot was created (committed snapshots: when they were committed).
    pub created: SystemTime,
    /// When the snapshot or its labels last changed.
    pub updated: SystemTime,
}

/// Disk space used by a snapshot's own directory, not counting its parents.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Usage {
    /// Bytes of allocated blocks.
    pub size: i64,
    /// Number of inodes, hard links counted once.
    pub inodes: i64,
}

/// One mount a container runtime performs to assemble a snapshot's root filesystem.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Mount {
    /// The filesystem type: `bind` or `overlay`.
    pub kind: String,
    /// The source: a directory for `bind`, the word `overlay` for overlayfs.
    pub source: String,
    /// fstab-style options.
    pub options: Vec<String>,
}
