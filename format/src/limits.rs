//! Bounds that reject hostile or corrupt input before it costs memory or time.

/// Limits applied when parsing a TOC or a tar stream.
///
/// The defaults accept every real layer we know of (the largest public TOCs have a few hundred
/// thousand entries and are tens of MB) while keeping a single layer's metadata below a few
/// hundred MB of memory.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Limits {
    /// Maximum size of the uncompressed TOC JSON, in bytes.
    pub max_toc_json_bytes: u64,
    /// Maximum size of the compressed TOC (member or frame), in bytes.
    pub max_toc_compressed_bytes: u64,
    /// Maximum number of TOC entries, chunk entries included.
    pub max_entries: usize,
    /// Maximum length of an entry name or link target, in bytes.
    pub max_name_bytes: usize,
    /// Maximum number of xattrs on one entry.
    pub max_xattrs_per_entry: usize,
    /// Maximum size of one xattr value, in bytes (Linux allows 64 KiB).
    pub max_xattr_value_bytes: usize,
    /// Maximum uncompressed size of a single chunk, in bytes.
    pub max_chunk_bytes: u64,
    /// Maximum size of a PAX extended header or GNU long-name record in a tar stream, in bytes.
    pub max_tar_extension_bytes: u64,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            max_toc_json_bytes: 1 << 30,
            max_toc_compressed_bytes: 512 << 20,
            max_entries: 10_000_000,
            max_name_bytes: 1 << 16,
            max_xattrs_per_entry: 4096,
            max_xattr_value_bytes: 1 << 16,
            max_chunk_bytes: 1 << 30,
            max_tar_extension_bytes: 16 << 20,
        }
    }
}
