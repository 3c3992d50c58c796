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
//!
//! Next to the trace, `<trace>.reads` logs which parts of each file were read, so a tool can
//! tell a file read whole from a large file read in a few places. It has one line
//! `<offset>\t<length>\t<path>` per read that touches a [`READ_PAGE`]-sized page of the file
//! for the first time. Reads the kernel makes ahead of the workload count as reads.

use std::collections::{HashMap, HashSet};
use std::fs::{File, OpenOptions};
use std::io::Write;
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};
use std::sync::Mutex;

use estargz::index::{LayerIndex, NodeId, NodeKind};

/// Granularity of the read log.
pub const READ_PAGE: u64 = 64 << 10;

/// Appends first accesses to a trace file. One recorder is shared by every layer of a mount,
/// so a path found in two layers is still written once.
#[derive(Debug)]
pub struct TraceRecorder {
    path: PathBuf,
    state: Mutex<TraceState>,
    reads: Mutex<ReadLog>,
}

#[derive(Debug)]
struct TraceState {
    seen: HashSet<Vec<u8>>,
    file: File,
}

#[derive(Debug)]
struct ReadLog {
    /// Pages read so far, by path.
    pages: HashMap<Vec<u8>, HashSet<u64>>,
    file: File,
}

/// Path of the read log that belongs to the trace at `trace`.
pub fn read_log_path(trace: &Path) -> PathBuf {
    let mut name = trace.as_os_str().to_owned();
    name.push(".reads");
    PathBuf::from(name)
}

fn create_append_only(path: &Path) -> std::io::Result<File> {
    // std rejects truncate together with append, so O_APPEND is passed as a raw flag.
    OpenOptions::new()
        .create(true)
        .write(true)
        .truncate(true)
        .custom_flags(libc::O_APPEND)
        .open(path)
}

impl TraceRecorder {
    /// Creates (or truncates) the trace file and its read log.
    pub fn create(path: &Path) -> std::io::Result<TraceRecorder> {
        let file = create_append_only(path)?;
        let reads = create_append_only(&read_log_path(path))?;
        Ok(TraceRecorder {
            path: path.to_path_buf(),
            state: Mutex::new(TraceState {
                seen: HashSet::new(),
                file,
            }),
            reads: Mutex::new(ReadLog {
                pages: HashMap::new(),
                file: reads,
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

impl TraceRecorder {
    /// Logs a read of `len` bytes at `offset` of `path` when it touches a page not read before.
    pub fn record_read(&self, path: &[u8], offset: u64, len: u64) {
        if path.is_empty() || path.contains(&b'\n') || len == 0 {
            return;
        }
        let first = offset / READ_PAGE;
        let last = (offset + len - 1) / READ_PAGE;
        let mut log = self
            .reads
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        let pages = log.pages.entry(path.to_vec()).or_default();
        let mut new = false;
        for page in first..=last {
            new |= pages.insert(page);
        }
        if !new {
            return;
        }
        let mut line = format!("{offset}\t{len}\t").into_bytes();
        line.extend_from_slice(path);
        line.push(b'\n');
        if let Err(error) = log.file.write_all(&line) {
            tracing::warn!(trace = %self.path.display(), %error, "failed to append to the read log");
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn read_log_lists_new_pages() {
        let dir = tempfile::tempdir().unwrap();
        let trace = dir.path().join("trace.txt");
        let recorder = TraceRecorder::create(&trace).unwrap();
        recorder.record_read(b"usr/lib/big.so", 0, 4096);
        recorder.record_read(b"usr/lib/big.so", 100, 10);
        recorder.record_read(b"usr/lib/big.so", READ_PAGE - 1, 2);
        recorder.record_read(b"etc/hosts", 0, 0);
        let log = std::fs::read_to_string(read_log_path(&trace)).unwrap();
        let expected = format!(
            "0\t4096\tusr/lib/big.so\n{}\t2\tusr/lib/big.so\n",
            READ_PAGE - 1
        );
        assert_eq!(log, expected);
    }
}
