//! The eStargz blob format: a seekable, chunk-indexed `tar.gz` (or `tar.zst`) that stays readable
//! by every ordinary tar and gzip reader.
//!
//! This crate knows bytes, not networks or files: it is the one place that writes or parses the
//! format, and it is safe to fuzz.
//!
//! * [`build`] turns a tar stream into an eStargz blob: one gzip member (or zstd frame) per chunk,
//!   prioritized files first, a landmark file, the TOC and a footer.
//! * [`footer`] reads and writes the footers that locate the TOC.
//! * [`toc`] has the typed TOC entries and a streaming JSON parser.
//! * [`blob`] opens a blob through the [`blob::ReadAt`] trait: it locates, verifies and parses the
//!   TOC, and decodes and verifies chunks.
//! * [`index`] turns a TOC into a compact inode table that maps a (file, offset) to its chunks.
//! * [`range_plan`] groups the compressed spans of missing chunks into range requests.
//!
//! ```
//! use estargz::build::{build, BuildOptions};
//! use estargz::blob::{open_blob, BlobOptions};
//!
//! // A one-file tar stream.
//! let mut tar = Vec::new();
//! tar.extend_from_slice(&estargz::tar::encode::encode(&estargz::tar::encode::HeaderSpec {
//!     name: b"hello.txt", typeflag: b'0', mode: 0o644, size: 5, ..Default::default()
//! }));
//! tar.extend_from_slice(b"hello");
//! tar.resize(1024, 0);
//!
//! let mut blob = Vec::new();
//! let out = build(std::io::Cursor::new(tar), &mut blob, &BuildOptions::default()).unwrap();
//!
//! let opened = open_blob(&blob.as_slice(), &BlobOptions::verify_with(out.toc_digest)).unwrap();
//! let index = opened.index;
//! let file = index.lookup_path(b"hello.txt").unwrap();
//! let mut content = Vec::new();
//! for chunk in index.chunks(file) {
//!     content.extend(estargz::blob::read_chunk(&blob.as_slice(), chunk, opened.compression).unwrap());
//! }
//! assert_eq!(content, b"hello");
//! ```
#![deny(missing_docs)]

pub mod blob;
pub mod build;
pub mod digest;
pub mod error;
pub mod footer;
pub mod index;
pub mod limits;
pub mod range_plan;
pub mod tar;
pub mod toc;

pub use digest::Digest;
pub use error::{BlobError, BuildError, ChunkError, FooterError, TarError, TocError};
pub use limits::Limits;

/// Compression used for the members of a blob.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Compression {
    /// gzip members (eStargz proper).
    Gzip,
    /// zstd frames (zstd:chunked, stargz-snapshotter flavour).
    Zstd,
}

/// Name of the landmark that marks the end of the prioritized section.
pub const PREFETCH_LANDMARK: &str = ".prefetch.landmark";
/// Name of the landmark that says no file is prioritized.
pub const NO_PREFETCH_LANDMARK: &str = ".no.prefetch.landmark";
/// Content of both landmark files.
pub const LANDMARK_CONTENT: u8 = 0x0f;
/// Default uncompressed chunk size: 4 MiB.
pub const DEFAULT_CHUNK_SIZE: u64 = 4 << 20;
/// Layer descriptor annotation carrying the TOC digest.
pub const TOC_DIGEST_ANNOTATION: &str = "containerd.io/snapshot/stargz/toc.digest";
/// Layer descriptor annotation carrying the uncompressed blob size.
pub const UNCOMPRESSED_SIZE_ANNOTATION: &str = "io.containers.estargz.uncompressed-size";
