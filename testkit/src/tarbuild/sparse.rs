//! GNU sparse file encodings.
//!
//! A sparse member stores only its data segments; the holes read as zeros. GNU tar reads
//! four encodings, described in the GNU tar manual, appendix "Storing Sparse Files":
//!
//! - old GNU (typeflag `S`): up to 4 `(offset, numbytes)` pairs in the header at 386, an
//!   `isextended` flag at 482 and the real size at 483; more pairs follow in extension
//!   blocks of 21 pairs each (504 bytes) with their own `isextended` flag at 504.
//! - PAX 0.0: records `GNU.sparse.size`, `GNU.sparse.numblocks`, then one
//!   `GNU.sparse.offset` / `GNU.sparse.numbytes` pair per segment.
//! - PAX 0.1: `GNU.sparse.size`, `GNU.sparse.numblocks` and `GNU.sparse.map` as a
//!   comma-separated list `offset,numbytes,...`.
//! - PAX 1.0: `GNU.sparse.major=1`, `GNU.sparse.minor=0`, `GNU.sparse.name` (the real name)
//!   and `GNU.sparse.realsize`. The header is named `<dir>/GNUSparseFile.0/<file>`, and
//!   the member data starts with the map in decimal text (segment count, then offset and
//!   size, one number per line), padded with NULs to a 512-byte boundary.

use super::header::{BLOCK, Header, encode_number, field};
use super::pax::PaxRecord;

/// A sparse encoding.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SparseFormat {
    /// Old GNU typeflag `S` header with extension blocks.
    OldGnu,
    /// PAX format 0.0: repeated offset and numbytes records.
    Pax00,
    /// PAX format 0.1: one `GNU.sparse.map` record.
    Pax01,
    /// PAX format 1.0: the map at the start of the member data.
    Pax10,
}

/// The layout of a sparse file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Sparse {
    /// The encoding.
    pub format: SparseFormat,
    /// The apparent file size, holes included.
    pub real_size: u64,
    /// The data segments as `(offset, length)` in file order.
    pub map: Vec<(u64, u64)>,
}

/// Pairs per old-GNU extension block: 21 × 24 bytes fill 504 of its 512 bytes.
const PAIRS_PER_EXTENSION: usize = 21;
/// Pairs in the old-GNU main header.
const PAIRS_IN_HEADER: usize = 4;

impl Sparse {
    /// Returns the PAX records of the 0.x and 1.0 formats (none for old GNU).
    pub(crate) fn pax_records(&self, real_name: &[u8]) -> Vec<PaxRecord> {
        let mut records = Vec::new();
        match self.format {
            SparseFormat::OldGnu => {}
            SparseFormat::Pax00 => {
                records.push(PaxRecord::new(
                    "GNU.sparse.size",
                    self.real_size.to_string(),
                ));
                records.push(PaxRecord::new(
                    "GNU.sparse.numblocks",
                    self.map.len().to_string(),
                ));
                for (offset, length) in &self.map {
                    records.push(PaxRecord::new("GNU.sparse.offset", offset.to_string()));
                    records.push(PaxRecord::new("GNU.sparse.numbytes", length.to_string()));
                }
            }
            SparseFormat::Pax01 => {
                records.push(PaxRecord::new(
                    "GNU.sparse.size",
                    self.real_size.to_string(),
                ));
                records.push(PaxRecord::new(
                    "GNU.sparse.numblocks",
                    self.map.len().to_string(),
                ));
                let map: Vec<String> = self
                    .map
                    .iter()
                    .flat_map(|(offset, length)| [offset.to_string(), length.to_string()])
                    .collect();
                records.push(PaxRecord::new("GNU.sparse.map", map.join(",")));
            }
            SparseFormat::Pax10 => {
                records.push(PaxRecord::new("GNU.sparse.major", "1"));
                records.push(PaxRecord::new("GNU.sparse.minor", "0"));
                records.push(PaxRecord::new("GNU.sparse.name", real_name));
                records.push(PaxRecord::new(
                    "GNU.sparse.realsize",
                    self.real_size.to_string(),
                ));
            }
        }
        records
    }

    /// Returns the name the header carries: `<dir>/GNUSparseFile.0/<file>` for 1.0, else the
    /// real name.
    pub(crate) fn header_name(&self, real_name: &[u8]) -> Vec<u8> {
        if self.format != SparseFormat::Pax10 {
            return real_name.to_vec();
        }
        let split = real_name.iter().rposition(|&byte| byte == b'/');
        let (dir, file) = match split {
            Some(index) => (&real_name[..=index], &real_name[index + 1..]),
            None => (&b""[..], real_name),
        };
        let mut name = dir.to_vec();
        name.extend_from_slice(b"GNUSparseFile.0/");
        name.extend_from_slice(file);
        name
    }

    /// Returns the 1.0 map blocks that precede the data, padded to a block boundary.
    pub(crate) fn pax10_map_prefix(&self) -> Vec<u8> {
        let mut text = format!("{}\n", self.map.len());
        for (offset, length) in &self.map {
            text.push_str(&format!("{offset}\n{length}\n"));
        }
        let mut bytes = text.into_bytes();
        bytes.resize(bytes.len().div_ceil(BLOCK) * BLOCK, 0);
        bytes
    }

    /// Fills the old-GNU header's sparse area and returns the extension blocks that must
    /// follow the header.
    pub(crate) fn fill_old_gnu(&self, header: &mut Header) -> Vec<[u8; BLOCK]> {
        header.put_number(field::GNU_REALSIZE, self.real_size);
        let (first, rest) = self.map.split_at(self.map.len().min(PAIRS_IN_HEADER));
        for (index, (offset, length)) in first.iter().enumerate() {
            let at = field::GNU_SPARSE + index * 24;
            header.put_number((at, 12), *offset);
            header.put_number((at + 12, 12), *length);
        }
        if rest.is_empty() {
            return Vec::new();
        }
        header.put_byte(field::GNU_IS_EXTENDED, 1);

        let chunks: Vec<&[(u64, u64)]> = rest.chunks(PAIRS_PER_EXTENSION).collect();
        let mut blocks = Vec::new();
        for (chunk_index, chunk) in chunks.iter().enumerate() {
            let mut block = [0u8; BLOCK];
            for (index, (offset, length)) in chunk.iter().enumerate() {
                let at = index * 24;
                block[at..at + 12].copy_from_slice(&octal12(*offset));
                block[at + 12..at + 24].copy_from_slice(&octal12(*length));
            }
            if chunk_index + 1 < chunks.len() {
                block[504] = 1;
            }
            blocks.push(block);
        }
        blocks
    }
}

fn octal12(value: u64) -> [u8; 12] {
    let mut out = [0u8; 12];
    out.copy_from_slice(&encode_number(value, 12));
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pax10_header_name_inserts_marker_dir() {
        let sparse = Sparse {
            format: SparseFormat::Pax10,
            real_size: 10,
            map: vec![],
        };
        assert_eq!(sparse.header_name(b"a/b/file"), b"a/b/GNUSparseFile.0/file");
        assert_eq!(sparse.header_name(b"file"), b"GNUSparseFile.0/file");
    }

    #[test]
    fn pax10_map_is_decimal_lines_padded() {
        let sparse = Sparse {
            format: SparseFormat::Pax10,
            real_size: 100,
            map: vec![(0, 5), (50, 10)],
        };
        let prefix = sparse.pax10_map_prefix();
        assert_eq!(prefix.len(), 512);
        assert!(prefix.starts_with(b"2\n0\n5\n50\n10\n\0"));
    }
}
