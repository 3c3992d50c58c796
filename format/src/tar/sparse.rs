//! Sparse files: the map from stored data to the logical file, for old GNU (`S`) headers and the
//! three PAX sparse formats (0.0, 0.1, 1.0) that GNU tar writes.
//!
//! eStargz has no notion of holes, so the writer expands sparse files into regular files whose
//! holes read as zeros, exactly what `tar -x` produces.

use super::header::{field_str, parse_numeric};

/// Data segments of a sparse file, in logical order. Bytes outside the segments are zeros.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SparseMap {
    /// `(logical offset, length)` of every stored segment; the stored data is their concatenation.
    pub segments: Vec<(u64, u64)>,
    /// Logical size of the file.
    pub real_size: u64,
}

impl SparseMap {
    /// Checks that segments are ordered, do not overlap, fit the real size, and add up to the
    /// stored data length.
    pub fn validate(&self, stored_len: u64) -> Result<(), String> {
        let mut end = 0u64;
        let mut total = 0u64;
        for &(offset, len) in &self.segments {
            if offset < end {
                return Err(format!(
                    "segment at {offset} overlaps or precedes the previous one"
                ));
            }
            end = offset.checked_add(len).ok_or("segment end overflows")?;
            if end > self.real_size {
                return Err(format!(
                    "segment {offset}+{len} goes past the real size {}",
                    self.real_size
                ));
            }
            total = total.checked_add(len).ok_or("segment lengths overflow")?;
        }
        if total != stored_len {
            return Err(format!(
                "segments hold {total} bytes but {stored_len} bytes are stored"
            ));
        }
        Ok(())
    }

    /// Calls `copy(stored_offset, dest)` for each stored piece overlapping the logical range
    /// `[offset, offset + out.len())` and zeroes the holes in `out`.
    pub fn fill<E>(
        &self,
        offset: u64,
        out: &mut [u8],
        mut copy: impl FnMut(u64, &mut [u8]) -> Result<(), E>,
    ) -> Result<(), E> {
        out.fill(0);
        let end = offset + out.len() as u64;
        let mut stored = 0u64;
        for &(seg_off, seg_len) in &self.segments {
            let seg_end = seg_off + seg_len;
            if seg_end > offset && seg_off < end {
                let from = seg_off.max(offset);
                let to = seg_end.min(end);
                let dest = &mut out[(from - offset) as usize..(to - offset) as usize];
                copy(stored + (from - seg_off), dest)?;
            }
            stored += seg_len;
            if seg_off >= end {
                break;
            }
        }
        Ok(())
    }
}

fn number(field: &[u8], what: &str) -> Result<u64, String> {
    parse_numeric(field)
        .and_then(|v| u64::try_from(v).ok())
        .ok_or_else(|| format!("{what} is not a number"))
}

/// Reads `count` (offset, numbytes) pairs of 12-byte numeric fields, stopping at an empty one.
fn gnu_pairs(area: &[u8], count: usize, out: &mut Vec<(u64, u64)>) -> Result<(), String> {
    for i in 0..count {
        let pair = &area[i * 24..i * 24 + 24];
        if field_str(&pair[..12]).is_empty() {
            break;
        }
        out.push((
            number(&pair[..12], "sparse offset")?,
            number(&pair[12..], "sparse length")?,
        ));
    }
    Ok(())
}

/// Sparse map from the main header of an old GNU sparse file: its (offset, length) segments,
/// its real size, and whether extension blocks follow.
pub type OldGnuSparse = (Vec<(u64, u64)>, u64, bool);

/// Decodes the sparse map of an old GNU sparse header. Returns the segments found in the main
/// header, its real size, and whether extension blocks follow.
pub fn old_gnu_header(block: &[u8; 512]) -> Result<OldGnuSparse, String> {
    let mut segments = Vec::new();
    gnu_pairs(&block[386..482], 4, &mut segments)?;
    let real_size = number(&block[483..495], "sparse real size")?;
    Ok((segments, real_size, block[482] != 0))
}

/// Decodes one old GNU sparse extension block. Returns whether another one follows.
pub fn old_gnu_extension(
    block: &[u8; 512],
    segments: &mut Vec<(u64, u64)>,
) -> Result<bool, String> {
    gnu_pairs(&block[..504], 21, segments)?;
    Ok(block[504] != 0)
}

/// Decodes the comma-separated `GNU.sparse.map` of PAX sparse 0.1.
pub fn pax_01_map(map: &[u8]) -> Result<Vec<(u64, u64)>, String> {
    let text = std::str::from_utf8(map).map_err(|_| "GNU.sparse.map is not ASCII")?;
    if text.is_empty() {
        return Ok(Vec::new());
    }
    let numbers: Vec<u64> = text
        .split(',')
        .map(|n| {
            n.parse::<u64>()
                .map_err(|_| format!("GNU.sparse.map value {n:?} is not a number"))
        })
        .collect::<Result<_, _>>()?;
    if !numbers.len().is_multiple_of(2) {
        return Err("GNU.sparse.map has an odd number of values".into());
    }
    Ok(numbers.chunks(2).map(|p| (p[0], p[1])).collect())
}

/// Decodes the map that starts the data of a PAX sparse 1.0 entry: decimal numbers, one per
/// line (count, then offset/length pairs), padded to a 512-byte boundary. Returns the segments and
/// the padded length of the map. `data` must hold at least the whole map.
pub fn pax_10_map(data: &[u8], max_segments: usize) -> Result<(Vec<(u64, u64)>, u64), String> {
    let mut pos = 0usize;
    let mut next = |what: &str| -> Result<u64, String> {
        let rest = &data[pos.min(data.len())..];
        let newline = rest
            .iter()
            .position(|&b| b == b'\n')
            .ok_or_else(|| format!("sparse map ends before its {what}"))?;
        let text = std::str::from_utf8(&rest[..newline]).map_err(|_| "sparse map is not ASCII")?;
        pos += newline + 1;
        text.parse::<u64>()
            .map_err(|_| format!("sparse map {what} {text:?} is not a number"))
    };
    let count = next("segment count")?;
    if count > max_segments as u64 {
        return Err(format!(
            "sparse map declares {count} segments, above the limit of {max_segments}"
        ));
    }
    let mut segments = Vec::with_capacity(count as usize);
    for _ in 0..count {
        let offset = next("segment offset")?;
        let len = next("segment length")?;
        segments.push((offset, len));
    }
    Ok((segments, super::padded(pos as u64)))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fill_zeroes_holes_and_copies_segments() {
        let map = SparseMap {
            segments: vec![(2, 3), (8, 2)],
            real_size: 12,
        };
        map.validate(5).unwrap();
        let stored = b"abcde";
        let mut out = [0xffu8; 12];
        map.fill(0, &mut out, |off, dest: &mut [u8]| {
            dest.copy_from_slice(&stored[off as usize..off as usize + dest.len()]);
            Ok::<_, ()>(())
        })
        .unwrap();
        assert_eq!(&out, b"\0\0abc\0\0\0de\0\0");
        let mut middle = [0u8; 5];
        map.fill(3, &mut middle, |off, dest: &mut [u8]| {
            dest.copy_from_slice(&stored[off as usize..off as usize + dest.len()]);
            Ok::<_, ()>(())
        })
        .unwrap();
        assert_eq!(&middle, b"bc\0\0\0");
    }

    #[test]
    fn overlapping_segments_are_invalid() {
        let map = SparseMap {
            segments: vec![(0, 4), (2, 4)],
            real_size: 10,
        };
        assert!(map.validate(8).is_err());
    }

    #[test]
    fn pax_10_map_is_decoded() {
        let mut data = b"2\n0\n5\n100\n7\n".to_vec();
        data.resize(512, 0);
        let (segments, len) = pax_10_map(&data, 100).unwrap();
        assert_eq!(segments, vec![(0, 5), (100, 7)]);
        assert_eq!(len, 512);
    }

    #[test]
    fn pax_01_map_is_decoded() {
        assert_eq!(pax_01_map(b"0,5,100,7").unwrap(), vec![(0, 5), (100, 7)]);
        assert!(pax_01_map(b"0,5,100").is_err());
    }
}
