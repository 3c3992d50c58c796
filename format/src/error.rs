//! Error types of the format crate. Each variant carries the facts a caller can act on.

use crate::digest::Digest;

/// The blob has no footer this crate can read.
#[derive(Debug, thiserror::Error)]
pub enum FooterError {
    /// The caller passed more tail bytes than the blob has.
    #[error("footer tail of {tail} bytes is longer than the blob ({blob_size} bytes)")]
    TailLongerThanBlob {
        /// Bytes passed.
        tail: u64,
        /// Size of the blob.
        blob_size: u64,
    },
    /// No footer variant matched.
    #[error("blob of {blob_size} bytes is not eStargz, legacy stargz or zstd:chunked ({reasons})")]
    NotEstargz {
        /// Size of the blob.
        blob_size: u64,
        /// Why each footer variant was rejected.
        reasons: String,
    },
    /// The blob ends in the 64-byte zstd:chunked footer of containers/storage (Podman, Buildah).
    #[error(
        "blob of {blob_size} bytes is zstd:chunked in the containers/storage dialect \
         (64-byte footer, magic \"GNUlInUx\", TOC at offset {toc_offset}, tar-split at offset \
         {tar_split_offset}); lazypull reads only the 40-byte stargz-snapshotter footer \
         (magic \"GnUlInUx\"), so convert the image with `lazypull convert --compression zstd`"
    )]
    ContainersStorageZstd {
        /// Size of the blob.
        blob_size: u64,
        /// TOC offset recorded in the footer, or 0 when the tail was too short to hold it.
        toc_offset: u64,
        /// Tar-split offset recorded in the footer, or 0 when the tail was too short to hold it.
        tar_split_offset: u64,
    },
}

/// The TOC could not be loaded, verified or parsed.
#[derive(Debug, thiserror::Error)]
pub enum TocError {
    /// The compressed TOC could not be decompressed.
    #[error("TOC at blob offset {offset} could not be decompressed")]
    Decompress {
        /// Blob offset of the compressed TOC.
        offset: u64,
        /// Decoder error.
        #[source]
        source: std::io::Error,
    },
    /// The TOC gzip member does not start with a `stargz.index.json` tar entry.
    #[error("TOC member at blob offset {offset} holds {found:?} instead of stargz.index.json")]
    NotTocEntry {
        /// Blob offset of the TOC member.
        offset: u64,
        /// The name that was found, or a description of the bad header.
        found: String,
    },
    /// A size exceeds the configured limit.
    #[error("{what} is {value} bytes, above the limit of {limit} bytes")]
    TooLarge {
        /// What was measured.
        what: &'static str,
        /// Observed size.
        value: u64,
        /// Configured limit.
        limit: u64,
    },
    /// The TOC JSON does not hash to the expected TOC digest.
    #[error("TOC digest mismatch: expected {expected}, computed {actual}")]
    DigestMismatch {
        /// The digest the caller trusts (from the layer annotation).
        expected: Digest,
        /// The digest of the TOC bytes in the blob.
        actual: Digest,
    },
    /// The TOC JSON is malformed.
    #[error("TOC JSON is invalid")]
    Json(#[source] serde_json::Error),
    /// The TOC declares a version other than 1.
    #[error("TOC version {0} is not supported (only version 1 exists)")]
    UnsupportedVersion(u64),
    /// The TOC has more entries than allowed.
    #[error("TOC has more than {limit} entries")]
    TooManyEntries {
        /// Configured limit.
        limit: usize,
    },
    /// One entry is inconsistent.
    #[error("TOC entry {index} ({name:?}) is invalid: {reason}")]
    InvalidEntry {
        /// Position of the entry in the `entries` array.
        index: usize,
        /// Entry name as stored.
        name: String,
        /// What is wrong with it.
        reason: String,
    },
    /// The blob keeps its TOC in a separate image, which this reader does not fetch.
    #[error("blob uses an external TOC (STARGZEXTERNALTOC footer), which is not supported")]
    ExternalToc,
}

/// A chunk could not be decoded or failed verification.
#[derive(Debug, thiserror::Error)]
pub enum ChunkError {
    /// The compressed span could not be decompressed.
    #[error("chunk at blob offset {offset} could not be decompressed")]
    Decompress {
        /// Blob offset of the chunk's member or frame.
        offset: u64,
        /// Decoder error.
        #[source]
        source: std::io::Error,
    },
    /// The compressed span ended before the chunk was complete.
    #[error("chunk at blob offset {offset} ended after {got} of {expected} bytes")]
    Short {
        /// Blob offset of the chunk's member or frame.
        offset: u64,
        /// Bytes that were expected.
        expected: u64,
        /// Bytes decoded.
        got: u64,
    },
    /// The decompressed bytes do not match the TOC's chunk digest.
    #[error("chunk at blob offset {offset} failed verification: expected {expected}, got {actual}")]
    DigestMismatch {
        /// Blob offset of the chunk's member or frame.
        offset: u64,
        /// Digest from the TOC.
        expected: Digest,
        /// Digest of the decoded bytes.
        actual: Digest,
    },
    /// The TOC gives no digest for this chunk, so it cannot be verified.
    #[error("chunk at blob offset {offset} has no digest in the TOC and cannot be verified")]
    NoDigest {
        /// Blob offset of the chunk's member or frame.
        offset: u64,
    },
}

/// The input tar stream is malformed or uses something eStargz cannot carry.
#[derive(Debug, thiserror::Error)]
pub enum TarError {
    /// Reading the input failed.
    #[error("reading the tar stream at offset {offset} failed")]
    Io {
        /// Offset in the uncompressed tar stream.
        offset: u64,
        /// Underlying error.
        #[source]
        source: std::io::Error,
    },
    /// A header block is not a valid tar header.
    #[error("invalid tar header at offset {offset}: {reason}")]
    InvalidHeader {
        /// Offset of the 512-byte header block in the uncompressed stream.
        offset: u64,
        /// What is wrong with it.
        reason: String,
    },
    /// The stream ends inside an entry.
    #[error("tar stream is truncated: entry {name:?} at offset {offset} needs {needed} more bytes")]
    Truncated {
        /// Entry name.
        name: String,
        /// Offset of the entry header.
        offset: u64,
        /// Bytes missing.
        needed: u64,
    },
    /// The entry type cannot be represented in eStargz.
    #[error(
        "tar entry {name:?} at offset {offset} has type {typeflag:?} ({kind}), which eStargz cannot represent"
    )]
    UnsupportedType {
        /// Entry name.
        name: String,
        /// Offset of the entry header.
        offset: u64,
        /// Raw typeflag byte, as a character.
        typeflag: char,
        /// Human name of the type.
        kind: &'static str,
    },
    /// A PAX or GNU extension record is malformed.
    #[error("invalid {what} for tar entry at offset {offset}: {reason}")]
    InvalidExtension {
        /// Which extension ("PAX header", "GNU long name", "sparse map").
        what: &'static str,
        /// Offset of the extension header.
        offset: u64,
        /// What is wrong with it.
        reason: String,
    },
    /// A limit was exceeded.
    #[error("tar entry at offset {offset}: {what} of {value} bytes exceeds the limit of {limit}")]
    TooLarge {
        /// What was measured.
        what: &'static str,
        /// Offset of the entry header.
        offset: u64,
        /// Observed value.
        value: u64,
        /// Configured limit.
        limit: u64,
    },
}

/// Building an eStargz blob failed.
#[derive(Debug, thiserror::Error)]
pub enum BuildError {
    /// The input tar stream is invalid.
    #[error(transparent)]
    Tar(#[from] TarError),
    /// Writing the output or reading back the spooled input failed.
    #[error("I/O error while writing the eStargz blob")]
    Io(#[from] std::io::Error),
    /// An option is out of range.
    #[error("invalid option {option}: {reason}")]
    InvalidOption {
        /// Option name.
        option: &'static str,
        /// Why it is rejected.
        reason: String,
    },
    /// An entry's metadata cannot be written into the TOC.
    #[error("tar entry {name:?} cannot be described in the TOC: {reason}")]
    Unrepresentable {
        /// Entry name.
        name: String,
        /// Why.
        reason: String,
    },
    /// The TOC could not be serialized.
    #[error("serializing the TOC failed")]
    Json(#[from] serde_json::Error),
}

/// Opening a blob or reading a chunk through [`crate::blob::ReadAt`] failed.
#[derive(Debug, thiserror::Error)]
pub enum BlobError {
    /// The underlying read failed.
    #[error("reading {len} bytes at blob offset {offset} failed")]
    Read {
        /// Blob offset of the read.
        offset: u64,
        /// Length of the read.
        len: u64,
        /// Underlying error.
        #[source]
        source: std::io::Error,
    },
    /// The footer is missing or invalid.
    #[error(transparent)]
    Footer(#[from] FooterError),
    /// The TOC is invalid.
    #[error(transparent)]
    Toc(#[from] TocError),
    /// A chunk is invalid.
    #[error(transparent)]
    Chunk(#[from] ChunkError),
}
