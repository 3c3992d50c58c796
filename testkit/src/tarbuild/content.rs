//! Deterministic file contents for generated archives.

/// Returns `len` pseudo-random bytes determined by `seed` (splitmix64). Incompressible,
/// so compressed sizes come out close to `len`.
pub fn pattern(len: usize, seed: u64) -> Vec<u8> {
    let mut state = seed;
    let mut out = Vec::with_capacity(len + 8);
    while out.len() < len {
        state = state.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = state;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^= z >> 31;
        out.extend_from_slice(&z.to_le_bytes());
    }
    out.truncate(len);
    out
}

/// Returns `len` bytes of numbered text lines (`<seed>:<line number>\n`), which gzip
/// compresses well and quickly, and where any offset shows which line it came from.
pub fn text_pattern(len: usize, seed: u64) -> Vec<u8> {
    let mut out = Vec::with_capacity(len + 32);
    let mut line = 0u64;
    while out.len() < len {
        out.extend_from_slice(format!("{seed}:{line:012}\n").as_bytes());
        line += 1;
    }
    out.truncate(len);
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pattern_is_deterministic_and_seeded() {
        assert_eq!(pattern(100, 1), pattern(100, 1));
        assert_ne!(pattern(100, 1), pattern(100, 2));
        assert_eq!(pattern(13, 5).len(), 13);
    }

    #[test]
    fn text_pattern_lines_are_numbered() {
        let text = text_pattern(40, 7);
        assert!(text.starts_with(b"7:000000000000\n7:000000000001\n"));
        assert_eq!(text.len(), 40);
    }
}
