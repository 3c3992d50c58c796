//! Comparing two snapshots.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

use super::node::{Node, NodeKind, Tree};

/// The parts of two trees that [`Tree::diff_with`] leaves out of the comparison.
///
/// Directory sizes are never compared, because they depend on the filesystem.
#[derive(Debug, Clone, Default)]
pub struct DiffOptions {
    /// Paths left out, each together with everything below it.
    pub ignore_paths: Vec<PathBuf>,
    /// Directories whose mode, owner and mtime are not compared, such as parents that a
    /// layer implies without an entry (see [`implied_parent_dirs`](super::implied_parent_dirs)).
    pub ignore_dir_metadata: BTreeSet<PathBuf>,
    /// Leaves out the mtime of every path.
    pub ignore_mtimes: bool,
    /// Leaves out the mtime of directories, which changes whenever an entry is added.
    pub ignore_dir_mtimes: bool,
    /// Xattr name prefixes left out, such as `trusted.overlay.` or `security.selinux`.
    pub ignore_xattr_prefixes: Vec<String>,
    /// Compares `st_nlink` too. Off by default: overlayfs reports the lower inode's link
    /// count even when a whiteout hides one of its names. Hardlink groups are always
    /// compared.
    pub compare_nlink: bool,
}

impl DiffOptions {
    fn ignores(&self, path: &Path) -> bool {
        self.ignore_paths
            .iter()
            .any(|ignored| path.starts_with(ignored))
    }
}

impl Tree {
    /// Lists the differences between `self` (expected) and `other` (actual) with default
    /// options: everything is compared except directory sizes and `st_nlink`.
    pub fn diff(&self, other: &Tree) -> Vec<String> {
        self.diff_with(other, &DiffOptions::default())
    }

    /// Lists the differences between `self` (expected) and `other` (actual), one
    /// human-readable line each, in path order. An empty list means the trees match.
    pub fn diff_with(&self, other: &Tree, options: &DiffOptions) -> Vec<String> {
        let mut differences = Vec::new();
        let paths: BTreeSet<&PathBuf> = self.nodes.keys().chain(other.nodes.keys()).collect();
        for path in paths {
            if options.ignores(path) {
                continue;
            }
            match (self.nodes.get(path), other.nodes.get(path)) {
                (Some(expected), None) => differences.push(format!(
                    "{}: missing (expected {:?})",
                    path.display(),
                    expected.kind
                )),
                (None, Some(actual)) => {
                    differences.push(format!("{}: unexpected {:?}", path.display(), actual.kind))
                }
                (Some(expected), Some(actual)) => {
                    compare_nodes(path, expected, actual, options, &mut differences)
                }
                (None, None) => {}
            }
        }
        compare_hardlinks(self, other, options, &mut differences);
        differences
    }
}

fn compare_nodes(
    path: &Path,
    expected: &Node,
    actual: &Node,
    options: &DiffOptions,
    out: &mut Vec<String>,
) {
    let shown = path.display();
    if expected.kind != actual.kind {
        out.push(format!(
            "{shown}: type {:?} != {:?}",
            expected.kind, actual.kind
        ));
        return;
    }
    let is_dir = expected.kind == NodeKind::Directory;
    let skip_metadata = is_dir && options.ignore_dir_metadata.contains(path);

    if !skip_metadata {
        if expected.mode != actual.mode {
            out.push(format!(
                "{shown}: mode {:o} != {:o}",
                expected.mode, actual.mode
            ));
        }
        if (expected.uid, expected.gid) != (actual.uid, actual.gid) {
            out.push(format!(
                "{shown}: owner {}:{} != {}:{}",
                expected.uid, expected.gid, actual.uid, actual.gid
            ));
        }
        let skip_mtime = options.ignore_mtimes || (is_dir && options.ignore_dir_mtimes);
        if !skip_mtime && expected.mtime_ns != actual.mtime_ns {
            out.push(format!(
                "{shown}: mtime {} ns != {} ns",
                expected.mtime_ns, actual.mtime_ns
            ));
        }
    }
    if !is_dir && expected.size != actual.size {
        out.push(format!(
            "{shown}: size {} != {}",
            expected.size, actual.size
        ));
    }
    if expected.sha256 != actual.sha256 {
        out.push(format!(
            "{shown}: content sha256 {} != {}",
            expected.sha256.as_deref().unwrap_or("-"),
            actual.sha256.as_deref().unwrap_or("-")
        ));
    }
    if expected.link_target != actual.link_target {
        out.push(format!(
            "{shown}: link target {:?} != {:?}",
            expected.link_target.as_deref().map(String::from_utf8_lossy),
            actual.link_target.as_deref().map(String::from_utf8_lossy)
        ));
    }
    if expected.device != actual.device {
        out.push(format!(
            "{shown}: device {:?} != {:?}",
            expected.device, actual.device
        ));
    }
    if options.compare_nlink && expected.nlink != actual.nlink {
        out.push(format!(
            "{shown}: nlink {} != {}",
            expected.nlink, actual.nlink
        ));
    }
    compare_xattrs(&shown.to_string(), expected, actual, options, out);
}

fn compare_xattrs(
    shown: &str,
    expected: &Node,
    actual: &Node,
    options: &DiffOptions,
    out: &mut Vec<String>,
) {
    let kept = |xattrs: &BTreeMap<String, Vec<u8>>| -> BTreeMap<String, Vec<u8>> {
        xattrs
            .iter()
            .filter(|(name, _)| {
                !options
                    .ignore_xattr_prefixes
                    .iter()
                    .any(|prefix| name.starts_with(prefix))
            })
            .map(|(name, value)| (name.clone(), value.clone()))
            .collect()
    };
    let (expected, actual) = (kept(&expected.xattrs), kept(&actual.xattrs));
    let names: BTreeSet<&String> = expected.keys().chain(actual.keys()).collect();
    for name in names {
        match (expected.get(name), actual.get(name)) {
            (Some(_), None) => out.push(format!("{shown}: xattr {name} missing")),
            (None, Some(_)) => out.push(format!("{shown}: xattr {name} unexpected")),
            (Some(left), Some(right)) if left != right => out.push(format!(
                "{shown}: xattr {name} {} != {}",
                hex::encode(left),
                hex::encode(right)
            )),
            _ => {}
        }
    }
}

fn compare_hardlinks(expected: &Tree, actual: &Tree, options: &DiffOptions, out: &mut Vec<String>) {
    let visible = |tree: &Tree| -> BTreeSet<BTreeSet<PathBuf>> {
        tree.hardlink_groups()
            .into_iter()
            .map(|group| {
                group
                    .into_iter()
                    .filter(|path| !options.ignores(path))
                    .collect::<BTreeSet<_>>()
            })
            .filter(|group| group.len() > 1)
            .collect()
    };
    let (expected, actual) = (visible(expected), visible(actual));
    for group in expected.difference(&actual) {
        out.push(format!("hardlink group {} missing", show_group(group)));
    }
    for group in actual.difference(&expected) {
        out.push(format!("hardlink group {} unexpected", show_group(group)));
    }
}

fn show_group(group: &BTreeSet<PathBuf>) -> String {
    let names: Vec<String> = group
        .iter()
        .map(|path| path.display().to_string())
        .collect();
    format!("{{{}}}", names.join(", "))
}
