//! Test support for lazypull: real components, generated inputs and comparisons.
//!
//! Everything here is for tests and benchmarks only. The modules are:
//!
//! - [`prereq`]: checks for root, `/dev/fuse` and binaries. A missing prerequisite skips a
//!   test with a printed reason, or fails it when `CI=true`.
//! - [`registry`]: a real CNCF distribution registry (Debian's `docker-registry`) on
//!   127.0.0.1 with its access log parsed, so tests can count requests and bytes served.
//! - [`containerd`]: a private containerd daemon with its own root, state, socket and
//!   config, optionally with proxy snapshotter plugins.
//! - [`tarbuild`]: a raw tar writer with control over every header encoding, and
//!   [`tarbuild::recipes`] that build the edge-case layers the conversion and mount tests use.
//! - [`tree`]: GNU tar extraction, directory snapshots (metadata, content digests, xattrs,
//!   hardlink groups), diffs between snapshots, and an overlayfs-style merge of layers.
//! - [`mounts`]: the mount table, and detaching every mount below a directory.
//! - [`image`]: the cached Debian-based test image as an OCI layout.
//! - [`gochecker`]: a Go program built against the upstream `estargz` package that reads
//!   and verifies a blob independently of our reader.
//!
//! Lifecycle: daemons ([`registry::Registry`], [`containerd::Containerd`]) are owned by the
//! test that starts them. Dropping the handle stops the process and removes its files, so
//! a test leaves no process or mount behind even when it fails by panicking.
//!
//! ```
//! use lazypull_testkit::tarbuild::{Builder, Entry};
//!
//! let mut tar = Builder::new();
//! tar.append(&Entry::file("etc/hostname", b"box\n"));
//! let bytes = tar.finish();
//! assert_eq!(bytes.len() % 512, 0);
//! ```

pub mod containerd;
pub mod faultproxy;
pub mod gochecker;
pub mod image;
pub mod mounts;
pub mod prereq;
mod process;
pub mod registry;
pub mod tarbuild;
pub mod tree;

pub use prereq::Prereq;
