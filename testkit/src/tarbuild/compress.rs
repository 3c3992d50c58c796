//! Compression of generated archives: single- and multi-member gzip, and zstd.

use std::io::Write;

use flate2::Compression;
use flate2::write::GzEncoder;

/// Compresses `bytes` as one gzip member at `level` (0 to 9).
pub fn gzip(bytes: &[u8], level: u32) -> Vec<u8> {
    let mut encoder = GzEncoder::new(Vec::new(), Compression::new(level.min(9)));
    encoder
        .write_all(bytes)
        .expect("gzip into memory cannot fail");
    encoder.finish().expect("gzip into memory cannot fail")
}

/// Compresses `bytes` as concatenated gzip members, one per `piece_size` bytes of input
/// (the last piece may be shorter), at level 6.
///
/// The result is valid gzip (RFC 1952 allows several members, and `gzip -dc` reads them
/// all), as parallel compressors such as pigz with independent blocks write it. A reader
/// that stops after the first member returns only the first piece.
///
/// # Panics
///
/// When `piece_size` is 0.
pub fn gzip_multi_member(bytes: &[u8], piece_size: usize) -> Vec<u8> {
    assert!(piece_size > 0, "piece_size must be positive");
    let mut out = Vec::new();
    for piece in bytes.chunks(piece_size) {
        out.extend_from_slice(&gzip(piece, 6));
    }
    if bytes.is_empty() {
        out = gzip(bytes, 6);
    }
    out
}

/// Compresses `bytes` as one zstd frame at `level` (1 to 22).
pub fn zstd(bytes: &[u8], level: i32) -> Vec<u8> {
    zstd::stream::encode_all(bytes, level).expect("zstd into memory cannot fail")
}

#[cfg(test)]
mod tests {
    use super::*;
    use flate2::read::{GzDecoder, MultiGzDecoder};
    use std::io::Read;

    #[test]
    fn multi_member_gzip_needs_multi_decoder() {
        let input: Vec<u8> = (0..10_000u32).map(|i| (i % 253) as u8).collect();
        let compressed = gzip_multi_member(&input, 3000);

        let mut all = Vec::new();
        MultiGzDecoder::new(compressed.as_slice())
            .read_to_end(&mut all)
            .unwrap();
        assert_eq!(all, input);

        let mut first = Vec::new();
        GzDecoder::new(compressed.as_slice())
            .read_to_end(&mut first)
            .unwrap();
        assert_eq!(first.len(), 3000);
    }

    #[test]
    fn zstd_round_trips() {
        let input = b"lazypull zstd round trip".repeat(100);
        let compressed = zstd(&input, 3);
        assert_eq!(
            zstd::stream::decode_all(compressed.as_slice()).unwrap(),
            input
        );
    }
}
