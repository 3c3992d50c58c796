//! The filesystem of a lazily mounted layer.
//!
//! Two parts, split so the semantics are testable without a kernel:
//!
//! - [`FsCore`] maps a layer's [`LayerIndex`](estargz::index::LayerIndex) to the answers of
//!   lookup, getattr, readdir, readlink, xattr, statfs, open and read, with domain errors
//!   ([`FsError`]) mapped to errno values in one place ([`FsError::errno`]);
//! - [`fuse`] is the thin fuser adapter: it translates kernel requests into calls on the core
//!   and answers reads from tokio tasks, so the request loop never waits on the network.
//!
//! File bytes come from a [`FileSource`]: a [`Layer`](crate::layer::Layer) in production,
//! [`MemorySource`] in tests. Whiteouts and opaque directories are presented the way overlayfs expects lower layers
//! to look: `.wh.<name>` as a 0/0 character device, `.wh..wh..opq` as
//! `trusted.overlay.opaque=y` on its directory.
//!
//! ```
//! use std::sync::Arc;
//! use lazypull_snapshotter::fs::{FsCore, FsOptions, Ino, MemorySource};
//!
//! let mut tar = Vec::new();
//! tar.extend_from_slice(&estargz::tar::encode::encode(&estargz::tar::encode::HeaderSpec {
//!     name: b"hello.txt", typeflag: b'0', mode: 0o644, size: 5, ..Default::default()
//! }));
//! tar.extend_from_slice(b"hello");
//! tar.resize(1024, 0);
//!
//! let source = Arc::new(MemorySource::from_tar(&tar, &Default::default()).unwrap());
//! let fs = FsCore::new(source, FsOptions::default());
//! let attr = fs.lookup(Ino::ROOT, b"hello.txt").unwrap();
//! assert_eq!(attr.size, 5);
//! let bytes = futures_util::FutureExt::now_or_never(fs.read(attr.ino, 0, 4096)).unwrap().unwrap();
//! assert_eq!(&bytes[..], b"hello");
//! ```

mod attr;
mod core;
mod error;
pub mod fuse;
mod inherit;
mod inode;
mod layer_source;
mod memory;
mod source;
pub mod trace;
mod xattr;

pub use attr::{Attr, BLOCK_SIZE, encode_dev};
pub use core::{DirEntry, FsCore, FsOptions, NAME_MAX, StatFs};
pub use error::FsError;
pub use inherit::DirAttrs;
pub use inode::Ino;
pub use memory::{MemorySource, overlay_index_options};
pub use source::{FileSource, FsReadError};
pub use trace::{READ_PAGE, TraceRecorder, read_log_path};
pub use xattr::{OpaqueXattr, XattrReply};
