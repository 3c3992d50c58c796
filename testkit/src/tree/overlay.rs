//! Merging per-layer snapshots the way overlayfs stacks layers.

use std::collections::BTreeSet;
use std::ffi::OsStr;
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};

use anyhow::Context;

use super::extract::extract_with_gnu_tar;
use super::node::{NodeKind, Tree};
use super::snapshot::snapshot;

/// The OCI name prefix of a whiteout file.
const WHITEOUT_PREFIX: &[u8] = b".wh.";
/// The OCI name of an opaque-directory marker.
const OPAQUE_MARKER: &[u8] = b".wh..wh..opq";

/// The meaning of a layer path when layers are stacked.
enum Marker {
    /// Hides the lower layers' `PathBuf` and everything below it.
    Whiteout(PathBuf),
    /// Hides everything the lower layers have below `PathBuf`.
    Opaque(PathBuf),
    /// An ordinary path.
    None,
}

fn classify(path: &Path, tree: &Tree) -> Marker {
    let parent = path.parent().map(Path::to_path_buf).unwrap_or_default();
    let name = path.file_name().map(OsStr::as_bytes).unwrap_or_default();
    if name == OPAQUE_MARKER {
        return Marker::Opaque(parent);
    }
    if let Some(target) = name.strip_prefix(WHITEOUT_PREFIX) {
        // An empty, `.` or `..` target would name the parent or above: not a whiteout.
        if !target.is_empty() && target != b"." && target != b".." {
            return Marker::Whiteout(parent.join(OsStr::from_bytes(target)));
        }
        return Marker::None;
    }
    // The overlayfs upper-directory forms: a 0/0 character device, and a directory with
    // `trusted.overlay.opaque=y`.
    let Some(node) = tree.nodes.get(path) else {
        return Marker::None;
    };
    if node.kind == NodeKind::CharDevice && node.device == Some((0, 0)) {
        return Marker::Whiteout(path.to_path_buf());
    }
    if node.kind == NodeKind::Directory
        && node.xattrs.get("trusted.overlay.opaque").map(Vec::as_slice) == Some(b"y")
    {
        return Marker::Opaque(path.to_path_buf());
    }
    Marker::None
}

/// Returns `root` and every path below it. `Path` orders component by component, so a
/// subtree is one contiguous range of the map starting at `root`.
fn subtree(merged: &Tree, root: &Path) -> Vec<PathBuf> {
    merged
        .nodes
        .range::<Path, _>((std::ops::Bound::Included(root), std::ops::Bound::Unbounded))
        .map(|(path, _)| path)
        .take_while(|path| path.starts_with(root))
        .cloned()
        .collect()
}

fn remove_below(merged: &mut Tree, dir: &Path) {
    for path in subtree(merged, dir) {
        if path != dir {
            merged.nodes.remove(&path);
        }
    }
}

fn remove_subtree(merged: &mut Tree, root: &Path) {
    for path in subtree(merged, root) {
        merged.nodes.remove(&path);
    }
}

/// Stacks layer snapshots, bottom layer first, into the tree a merged overlayfs mount
/// would show.
///
/// For each layer, in this order:
/// 1. `.wh.<name>` (or a 0/0 character device) hides `<name>` and everything below it
///    in the layers beneath. `.wh..wh..opq` (or `trusted.overlay.opaque=y` on a
///    directory) hides everything beneath that directory. Where the marker sits in the
///    tar does not matter.
/// 2. Every other path is added. A directory over a directory takes the upper one's
///    metadata, as overlayfs shows it; anything else replaces the lower path and its
///    subtree.
///
/// Whiteout names with an empty, `.` or `..` target (`.wh.`, `.wh..`, `.wh...`) are kept
/// as ordinary files and delete nothing. Markers never appear in the result. Inode
/// identities become (layer index, inode), so hard links never span layers.
pub fn merge_layers(layers: &[Tree]) -> Tree {
    let mut merged = Tree::default();
    for (index, layer) in layers.iter().enumerate() {
        let mut markers = BTreeSet::new();
        for path in layer.nodes.keys() {
            match classify(path, layer) {
                Marker::Whiteout(target) => {
                    remove_subtree(&mut merged, &target);
                    markers.insert(path.clone());
                }
                Marker::Opaque(dir) => {
                    remove_below(&mut merged, &dir);
                    // A marker file disappears; an opaque directory itself stays.
                    if layer
                        .nodes
                        .get(path)
                        .is_some_and(|node| node.kind != NodeKind::Directory)
                    {
                        markers.insert(path.clone());
                    }
                }
                Marker::None => {}
            }
        }

        for (path, node) in &layer.nodes {
            if markers.contains(path) {
                continue;
            }
            let mut node = node.clone();
            node.inode = (index as u64, node.inode.1);
            node.xattrs.remove("trusted.overlay.opaque");
            let both_dirs = merged.nodes.get(path).is_some_and(|lower| {
                lower.kind == NodeKind::Directory && node.kind == NodeKind::Directory
            });
            if !both_dirs && merged.nodes.contains_key(path) {
                remove_subtree(&mut merged, path);
            }
            merged.nodes.insert(path.clone(), node);
        }
    }
    merged
}

/// Extracts each layer archive with GNU tar into its own temporary directory, snapshots
/// it, and returns [`merge_layers`] of the snapshots. Each archive is `(path, gzip)`,
/// bottom layer first.
pub fn extract_layers_merged(archives: &[(&Path, bool)]) -> anyhow::Result<Tree> {
    let mut layers = Vec::new();
    for (archive, compressed) in archives {
        let dir = tempfile::Builder::new()
            .prefix("lazypull-layer-")
            .tempdir()
            .context("failed to create a layer directory")?;
        extract_with_gnu_tar(archive, dir.path(), *compressed)?;
        layers.push(snapshot(dir.path())?);
    }
    Ok(merge_layers(&layers))
}
