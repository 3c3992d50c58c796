//! The writer: a tar stream in, an eStargz blob out.
//!
//! [`build`] works in two passes over a seekable, uncompressed tar stream (callers spool
//! compressed input to a temporary file first):
//!
//! 1. [`crate::tar::scan`] records where every entry sits and decodes its metadata;
//!    [`plan::plan`] decides the output order (duplicates, prioritized files, landmark, parents
//!    before children, hard-link targets before links).
//! 2. The emitter copies each entry's header blocks (verbatim where possible) and payload into the
//!    member stream, cutting a new gzip member (or zstd frame) before every regular file's payload
//!    and every chunk. Members are compressed in parallel and written in order. Then come the TOC
//!    and the footer.
//!
//! Memory is bounded by the member pipeline (a few chunks per thread) plus one TOC entry per tar
//! entry; no payload is ever held whole.

mod emit;
mod links;
pub mod pipeline;
pub mod plan;

use std::io::{Read, Seek, Write};

use crate::digest::Digest;
use crate::error::BuildError;
use crate::limits::Limits;
use crate::{Compression, DEFAULT_CHUNK_SIZE};

/// Default gzip level: 6. On real layers it yields blobs within 0.3% of level 9 at about 1.6x the
/// speed (figures in docs/benchmarks.md).
pub const DEFAULT_GZIP_LEVEL: i32 = 6;
/// Default zstd level, as zstd:chunked writers use.
pub const DEFAULT_ZSTD_LEVEL: i32 = 3;

/// Options of [`build`].
#[derive(Debug, Clone)]
pub struct BuildOptions {
    /// Largest uncompressed chunk of a regular file; larger files are split.
    pub chunk_size: u64,
    /// Member compression.
    pub compression: Compression,
    /// Compression level: 1-9 for gzip, 1-22 for zstd.
    pub level: i32,
    /// Paths to put first, before `.prefetch.landmark`, in this order.
    pub prioritized: Vec<Vec<u8>>,
    /// Compression threads.
    pub threads: usize,
    /// Input limits.
    pub limits: Limits,
}

impl Default for BuildOptions {
    fn default() -> Self {
        BuildOptions {
            chunk_size: DEFAULT_CHUNK_SIZE,
            compression: Compression::Gzip,
            level: DEFAULT_GZIP_LEVEL,
            prioritized: Vec::new(),
            threads: 1,
            limits: Limits::default(),
        }
    }
}

impl BuildOptions {
    /// Checks that every option is in range.
    pub fn validate(&self) -> Result<(), BuildError> {
        if self.chunk_size == 0 || self.chunk_size > self.limits.max_chunk_bytes {
            return Err(BuildError::InvalidOption {
                option: "chunk size",
                reason: format!(
                    "{} is outside 1..={} bytes",
                    self.chunk_size, self.limits.max_chunk_bytes
                ),
            });
        }
        let range = match self.compression {
            Compression::Gzip => 1..=9,
            Compression::Zstd => 1..=22,
        };
        if !range.contains(&self.level) {
            return Err(BuildError::InvalidOption {
                option: "compression level",
                reason: format!(
                    "{} is outside {}..={} for {:?}",
                    self.level,
                    range.start(),
                    range.end(),
                    self.compression
                ),
            });
        }
        if self.threads == 0 || self.threads > 256 {
            return Err(BuildError::InvalidOption {
                option: "threads",
                reason: format!("{} is outside 1..=256", self.threads),
            });
        }
        Ok(())
    }
}

/// What [`build`] wrote.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BuildOutput {
    /// Digest of the exact TOC JSON bytes: the value of the TOC-digest annotation.
    pub toc_digest: Digest,
    /// Digest of the whole decompressed blob: the layer's new diffID.
    pub diff_id: Digest,
    /// Length of the whole decompressed blob: the uncompressed-size annotation.
    pub uncompressed_size: u64,
    /// Digest of the blob.
    pub blob_digest: Digest,
    /// Size of the blob in bytes.
    pub blob_size: u64,
    /// Offset of the TOC (member start for gzip, compressed JSON start for zstd).
    pub toc_offset: u64,
    /// Number of TOC entries, chunk entries included.
    pub toc_entries: usize,
    /// Entries written, not counting the landmark.
    pub entries: usize,
    /// Input entries dropped because a later entry had the same path.
    pub duplicates_dropped: usize,
    /// Prioritized paths found in the layer.
    pub prioritized_found: usize,
    /// Prioritized paths not in the layer.
    pub prioritized_missing: Vec<String>,
    /// Sparse files expanded into regular files.
    pub sparse_expanded: usize,
    /// Hard links dropped because they lead to no file of the layer (a missing target, one
    /// only in a lower layer, a directory, a cycle), as written in the input.
    pub dangling_links: Vec<String>,
}

/// Progress of a build: input payload bytes copied so far and the total to copy.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Progress {
    /// Payload bytes done.
    pub done: u64,
    /// Payload bytes in all.
    pub total: u64,
}

/// Converts an uncompressed tar stream into an eStargz blob written to `out`.
pub fn build<R, W>(input: R, out: W, options: &BuildOptions) -> Result<BuildOutput, BuildError>
where
    R: Read + Seek,
    W: Write + Send,
{
    build_with_progress(input, out, options, &mut |_| {})
}

/// Like [`build`], calling `progress` as payload bytes are copied.
pub fn build_with_progress<R, W>(
    input: R,
    out: W,
    options: &BuildOptions,
    progress: &mut dyn FnMut(Progress),
) -> Result<BuildOutput, BuildError>
where
    R: Read + Seek,
    W: Write + Send,
{
    options.validate()?;
    emit::build(input, out, options, progress)
}
