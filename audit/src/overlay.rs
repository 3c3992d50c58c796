//! The image's filesystem, built layer by layer with overlay rules, tracking where each file's
//! content ends up: in the final filesystem, or hidden by a later entry.
//!
//! Each regular-file entry is one *blob* of content. Hard links share the blob of their target,
//! so they are never counted twice. A blob is wasted when no path of the final filesystem
//! refers to it. The cause recorded is the last event that took a path away from it.

use std::collections::{BTreeMap, HashMap, HashSet};

use crate::layer::{EntryKind, LayerScan};

/// Index of a blob in [`Overlay::blobs`].
pub type BlobId = usize;

/// Cause that keeps a blob out of the final filesystem.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Removal {
    /// A later entry for the same path (or for a parent, replacing a directory) in `layer`.
    Overwritten {
        /// Layer of the replacing entry.
        layer: usize,
    },
    /// A whiteout or opaque directory in `layer`.
    Deleted {
        /// Layer of the whiteout.
        layer: usize,
    },
}

/// Content shipped by one regular-file entry.
#[derive(Debug, Clone)]
pub struct Blob {
    /// Layer that ships it.
    pub layer: usize,
    /// Path of the entry that ships it.
    pub path: Vec<u8>,
    /// Apparent size.
    pub size: u64,
    /// sha256 of the content.
    pub digest: [u8; 32],
    /// The last event that took a path away from it.
    pub removal: Option<Removal>,
}

#[derive(Debug, Clone, Copy)]
struct Node {
    directory: bool,
    blob: Option<BlobId>,
}

/// The merged filesystem and every blob shipped.
#[derive(Debug, Default)]
pub struct Overlay {
    nodes: BTreeMap<Vec<u8>, Node>,
    /// Every blob, in layer and stream order.
    pub blobs: Vec<Blob>,
}

impl Overlay {
    /// Applies one layer. Its whiteouts and opaque markers go first because they act on lower
    /// layers only. Its entries follow in stream order, and a later entry for a path replaces
    /// an earlier one.
    pub fn apply(&mut self, index: usize, layer: &LayerScan) {
        for record in &layer.records {
            match record.kind {
                EntryKind::Whiteout => {
                    let removed = Removal::Deleted { layer: index };
                    self.remove(&record.path, removed);
                    self.remove_below(&record.path, removed);
                }
                EntryKind::Opaque => {
                    self.remove_below(&record.path, Removal::Deleted { layer: index });
                }
                _ => {}
            }
        }
        for record in &layer.records {
            let overwritten = Removal::Overwritten { layer: index };
            let node = match record.kind {
                EntryKind::Whiteout | EntryKind::Opaque => continue,
                EntryKind::Directory => {
                    if self.nodes.get(&record.path).is_some_and(|n| n.directory) {
                        continue;
                    }
                    Node {
                        directory: true,
                        blob: None,
                    }
                }
                EntryKind::File => {
                    self.blobs.push(Blob {
                        layer: index,
                        path: record.path.clone(),
                        size: record.size,
                        digest: record.digest,
                        removal: None,
                    });
                    Node {
                        directory: false,
                        blob: Some(self.blobs.len() - 1),
                    }
                }
                EntryKind::Hardlink => Node {
                    directory: false,
                    blob: self.nodes.get(&record.link).and_then(|n| n.blob),
                },
                EntryKind::Special => Node {
                    directory: false,
                    blob: None,
                },
            };
            // A non-directory replacing a directory (listed or only implied by its children)
            // hides everything below it.
            if !node.directory {
                self.remove_below(&record.path, overwritten);
            }
            if let Some(old) = self.nodes.insert(record.path.clone(), node)
                && let Some(blob) = old.blob
                && Some(blob) != node.blob
            {
                self.blobs[blob].removal = Some(overwritten);
            }
        }
    }

    fn remove(&mut self, path: &[u8], why: Removal) {
        if let Some(Node {
            blob: Some(blob), ..
        }) = self.nodes.remove(path)
        {
            self.blobs[blob].removal = Some(why);
        }
    }

    /// Removes every path strictly below the directory `dir` (`""` is the root).
    fn remove_below(&mut self, dir: &[u8], why: Removal) {
        let mut start = dir.to_vec();
        if !start.is_empty() {
            start.push(b'/');
        }
        let below: Vec<Vec<u8>> = self
            .nodes
            .range(start.clone()..)
            .take_while(|(path, _)| path.starts_with(&start))
            .map(|(path, _)| path.clone())
            .collect();
        for path in below {
            self.remove(&path, why);
        }
    }

    /// The blobs the final filesystem refers to, each with one of its paths: the path that
    /// shipped it when that path still refers to it, else its first hard link in path order.
    pub fn final_blobs(&self) -> HashMap<BlobId, &[u8]> {
        let mut out = HashMap::new();
        for (path, node) in &self.nodes {
            if let Some(blob) = node.blob {
                let shipped = self.blobs[blob].path.as_slice();
                let entry = out.entry(blob).or_insert(path.as_slice());
                if path.as_slice() == shipped {
                    *entry = path.as_slice();
                }
            }
        }
        out
    }

    /// Groups of final blobs with the same non-empty content, largest waste first. Each group
    /// lists its blobs in blob order.
    pub fn duplicate_groups(&self, final_blobs: &HashMap<BlobId, &[u8]>) -> Vec<Vec<BlobId>> {
        let mut by_content: HashMap<([u8; 32], u64), Vec<BlobId>> = HashMap::new();
        let mut ids: Vec<BlobId> = final_blobs.keys().copied().collect();
        ids.sort_unstable();
        for id in ids {
            let blob = &self.blobs[id];
            if blob.size > 0 {
                by_content
                    .entry((blob.digest, blob.size))
                    .or_default()
                    .push(id);
            }
        }
        let mut groups: Vec<Vec<BlobId>> =
            by_content.into_values().filter(|g| g.len() > 1).collect();
        groups.sort_by_key(|g| {
            let size = self.blobs[g[0]].size;
            (std::cmp::Reverse(size * (g.len() as u64 - 1)), g[0])
        });
        groups
    }

    /// Blobs that do not reach the final filesystem.
    pub fn hidden_blobs<'a>(
        &'a self,
        final_blobs: &'a HashMap<BlobId, &[u8]>,
    ) -> impl Iterator<Item = (BlobId, &'a Blob)> + 'a {
        let reached: HashSet<BlobId> = final_blobs.keys().copied().collect();
        self.blobs
            .iter()
            .enumerate()
            .filter(move |(id, _)| !reached.contains(id))
    }
}

impl Overlay {
    /// Returns the layer that shipped the regular file at `path` in the final filesystem.
    pub fn final_layer_of(&self, path: &[u8]) -> Option<usize> {
        self.nodes
            .get(path)
            .and_then(|n| n.blob)
            .map(|b| self.blobs[b].layer)
    }
}
