//! Access traces: the image paths a workload opens, in first-access order.
//!
//! The file format is the prioritized-files list that `lazypull convert --prioritize` reads:
//! one path per line, relative to the image root without a leading slash, each path once.
//! Regular files are recorded when opened, symlinks when the kernel resolves them (readlink).
//! Directories are not recorded: their metadata lives in the TOC, so prioritizing them would
//! move no payload bytes forward.
//!
//! Every line is written with one `write` on an `O_APPEND` file as soon as it is known, so a
//! killed process loses nothing already recorded. Paths containing a newline cannot be
//! represented and are skipped with a warning.

use std::collections::HashSet;
use std::fs::{File, OpenOptions};
use std::io::Write;
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};
use std::sync::Mutex;

use estargz::index::{LayerIndex, NodeId, NodeKind};

/// Appends first accesses to a trace file. One recorder is shared by every layer of a mount,
/// so a path found in two layers is still written once.
#[derive(Debug)]
pub struct TraceRecorder {
    path: PathBuf,
    state: Mutex<TraceState>,
}

#[derive(Debug)]
struct TraceState {
    seen: HashSet<Vec<u8>>,
    file: File,
}

impl TraceRecorder {
    /// Creates (or truncates) the trace file.
    pub fn create(path: &Path) -> std::io::Result<TraceRecorder> {
        // std refuses truncate together with append, so O_APPEND is passed as a raw flag.
        let file = OpenOptions::new()
            .create(true)
            .write(true)
            .truncate(true)
            .custom_flags(libc::O_APPEND)
            .open(path)?;
        Ok(TraceRecorder {
            path: path.to_path_buf(),
            state: Mutex::new(TraceState {
                seen: HashSet::new(),
                file,
            }),
        })
    }

    /// Returns the trace file's path.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Records `path` (relative, no leading slash) unless it was recorded before.
    pub fn record(&self, path: &[u8]) {
        if path.is_empty() || path.contains(&b'\n') {
            tracing::warn!(path = %String::from_utf8_lossy(path), "path cannot be written to the trace file");
            return;
        }
        let mut state = self
            .state
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        if !state.seen.insert(path.to_vec()) {
            return;
        }
        let mut line = Vec::with_capacity(path.len() + 1);
        line.extend_from_slice(path);
        line.push(b'\n');
        if let Err(error) = state.file.write_all(&line) {
            tracing::warn!(trace = %self.path.display(), %error, "failed to append to the trace file");
        }
    }
}

/// The name under which each node is reachable, to turn node ids back into paths.
///
/// Holds two `u32` per node. A hard-linked node gets the first of its names in directory order.
#[derive(Debug)]
pub struct NodeNames {
    /// For each node: (parent directory, index among the parent's children), or `None` for the
    /// root and unreachable nodes.
    slots: Vec<Option<(u32, u32)>>,
}

impl NodeNames {
    /// Walks every directory of `index` once.
    pub fn build(index: &LayerIndex) -> NodeNames {
        let mut slots = vec![None; index.node_count()];
        for dir in 0..index.node_count() as u32 {
            let dir_id = NodeId(dir);
            if index.node(dir_id).map(|n| n.kind) != Some(NodeKind::Dir) {
                continue;
            }
            for (position, (_, child)) in index.children(dir_id).enumerate() {
                let slot = &mut slots[child.0 as usize];
                if slot.is_none() && child != NodeId::ROOT {
                    *slot = Some((dir, position as u32));
                }
            }
        }
        NodeNames { slots }
    }

    /// Returns the path of `node` relative to the layer root, or `None` for the root itself and
    /// for nodes that no directory lists.
    pub fn path_of(&self, index: &LayerIndex, node: NodeId) -> Option<Vec<u8>> {
        let mut parts: Vec<&[u8]> = Vec::new();
        let mut current = node;
        // A directory chain cannot be longer than the node count; the bound guards against loops.
        for _ in 0..self.slots.len() {
            let (parent, position) = (*self.slots.get(current.0 as usize)?)?;
            let (name, _) = index.child_at(NodeId(parent), position as usize)?;
            parts.push(name);
            if parent == NodeId::ROOT.0 {
                parts.reverse();
                return Some(parts.join(&b'/'));
            }
            current = NodeId(parent);
        }
        None
    }
}
