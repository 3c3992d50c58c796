//! The identity of a cached chunk.

use estargz::Digest;
use estargz::index::Chunk;

/// Identity of one decompressed chunk of one layer: the key of both cache tiers.
///
/// A chunk is named by where its bytes come from: the layer blob, the compressed offset of the
/// member or frame it is decoded from, the uncompressed bytes skipped inside that member, and its
/// length. Two TOC entries with the same four values decode to the same bytes, so they share one
/// cache entry. The size is part of the key so that a crafted TOC declaring two lengths at one
/// offset cannot make one chunk be served for the other.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct ChunkKey {
    /// Digest of the layer blob.
    pub layer: Digest,
    /// Blob offset of the member or frame holding the chunk.
    pub comp_offset: u64,
    /// Uncompressed bytes to skip after `comp_offset`.
    pub inner_offset: u64,
    /// Uncompressed length of the chunk.
    pub size: u64,
}

impl ChunkKey {
    /// Returns the key of `chunk` in layer `layer`.
    pub fn new(layer: Digest, chunk: &Chunk) -> Self {
        ChunkKey {
            layer,
            comp_offset: chunk.comp_offset(),
            inner_offset: chunk.inner_offset(),
            size: chunk.size(),
        }
    }

    /// File name of the chunk in its layer's disk cache directory:
    /// `<comp_offset, 16 hex digits>-<inner_offset hex>-<size hex>`.
    pub(crate) fn file_name(&self) -> String {
        format!(
            "{:016x}-{:x}-{:x}",
            self.comp_offset, self.inner_offset, self.size
        )
    }

    /// Parses a name written by [`ChunkKey::file_name`]; anything else returns `None`.
    pub(crate) fn parse_file_name(layer: Digest, name: &str) -> Option<Self> {
        let mut parts = name.split('-');
        let comp = parts.next()?;
        let inner = parts.next()?;
        let size = parts.next()?;
        if parts.next().is_some() || comp.len() != 16 {
            return None;
        }
        let hex = |text: &str| {
            if text.is_empty()
                || !text
                    .bytes()
                    .all(|b| b.is_ascii_hexdigit() && !b.is_ascii_uppercase())
            {
                return None;
            }
            u64::from_str_radix(text, 16).ok()
        };
        Some(ChunkKey {
            layer,
            comp_offset: hex(comp)?,
            inner_offset: hex(inner)?,
            size: hex(size)?,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn file_name_round_trips() {
        let key = ChunkKey {
            layer: Digest::of(b"layer"),
            comp_offset: 0x1234,
            inner_offset: 0,
            size: 4 << 20,
        };
        let name = key.file_name();
        assert_eq!(name, "0000000000001234-0-400000");
        assert_eq!(ChunkKey::parse_file_name(key.layer, &name), Some(key));
    }

    #[test]
    fn foreign_file_names_are_rejected() {
        let layer = Digest::of(b"layer");
        for name in [
            ".tmpXYZ",
            "1234-0-10",
            "0000000000001234-0",
            "0000000000001234-0-10-1",
            "000000000000123G-0-10",
            "0000000000001234--10",
            "000000000000ABCD-0-10",
        ] {
            assert_eq!(ChunkKey::parse_file_name(layer, name), None, "{name}");
        }
    }
}
