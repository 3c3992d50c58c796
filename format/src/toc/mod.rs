//! The table of contents (`stargz.index.json`): typed entries, serialization and streaming parse.
//!
//! The JSON schema is the one stargz-snapshotter reads and writes: a top-level object
//! `{"version": 1, "entries": [...]}` whose entries follow tar order, with chunk entries right
//! after the regular-file entry they belong to. Optional fields are omitted when zero or empty,
//! and readers treat a missing field and a zero value alike.

mod entry;
mod parse;
mod timestamp;

pub use entry::{EntryKind, TocEntry, Xattrs};
pub use parse::{TocVersion, parse_toc, parse_toc_entries};
pub use timestamp::Timestamp;

use serde::Serialize;

/// The only TOC version that exists.
pub const TOC_VERSION: u64 = 1;

/// Name of the tar entry that carries the TOC in gzip eStargz blobs.
pub const TOC_TAR_NAME: &str = "stargz.index.json";

/// A complete TOC held in memory.
///
/// Readers that need bounded memory use [`parse_toc_entries`] instead and never hold this.
#[derive(Debug, Clone, PartialEq, Default, Serialize)]
pub struct Toc {
    /// Format version; always [`TOC_VERSION`]. Serialized first, as streaming readers expect.
    pub version: u64,
    /// All entries in tar order, chunk entries included.
    pub entries: Vec<TocEntry>,
}

impl Toc {
    /// Serializes the TOC to compact JSON: `version` first, then `entries`, no trailing newline.
    ///
    /// The TOC digest is computed over exactly these bytes.
    pub fn to_json(&self) -> Result<Vec<u8>, serde_json::Error> {
        serde_json::to_vec(self)
    }
}
