//! Filesystem trees: extraction with GNU tar, snapshots, comparison and layer merging.
//!
//! The usual check of a lazy mount is: extract the same layers with GNU tar (the reference),
//! [`snapshot`] both directories, merge the per-layer snapshots the way overlayfs would with
//! [`merge_layers`], and compare with [`Tree::diff`]. An empty diff means every path has
//! the same type, mode, owner, size, content, link target, device numbers, xattrs and
//! hardlink grouping (mtimes and directory metadata can be excluded per path).
//!
//! ```no_run
//! use lazypull_testkit::tree::{DiffOptions, extract_with_gnu_tar, snapshot};
//! # fn main() -> anyhow::Result<()> {
//! # let (layer, mount) = (std::path::Path::new("layer.tar.gz"), std::path::Path::new("/mnt"));
//! let reference = tempfile::tempdir()?;
//! extract_with_gnu_tar(layer, reference.path(), true)?;
//! let expected = snapshot(reference.path())?;
//! let actual = snapshot(mount)?;
//! let differences = expected.diff_with(&actual, &DiffOptions::default());
//! assert!(differences.is_empty(), "{differences:#?}");
//! # Ok(())
//! # }
//! ```

mod diff;
mod extract;
mod node;
mod overlay;
mod snapshot;
mod xattr;

pub use diff::DiffOptions;
pub use extract::{extract_with_gnu_tar, implied_parent_dirs};
pub use node::{Node, NodeKind, Tree};
pub use overlay::{extract_layers_merged, merge_layers};
pub use snapshot::snapshot;
pub use xattr::read_xattrs;
