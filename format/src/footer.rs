//! Blob footers: where the TOC sits, for every footer variant readers meet in the wild.
//!
//! Four variants exist, tried by [`parse_footer`] in this order:
//!
//! * eStargz gzip, 51 bytes: an empty gzip member whose FEXTRA field carries the TOC offset.
//! * legacy stargz (CRFS), 47 bytes: the same member with the extra field's subfield header left
//!   out. Read, never written.
//! * zstd:chunked as written by stargz-snapshotter, 40 bytes of payload at the very end of a
//!   skippable frame, ending in the magic `GnUlInUx`.
//! * external TOC, 46 bytes: the gzip footer with `STARGZEXTERNALTOC` and no offset. The TOC lives
//!   in a separate image; such blobs are recognised so the caller can report them precisely.
//!
//! Before any of these, [`parse_footer`] checks for the 64-byte zstd:chunked footer that current
//! containers/storage (Podman, Buildah) writes, magic `GNUlInUx` with a capital N. That dialect
//! adds a tar-split frame and uses other TOC fields, and stargz-snapshotter cannot read it either,
//! so it is reported as [`FooterError::ContainersStorageZstd`] instead of being read.

use crate::error::FooterError;

/// Size of the eStargz gzip footer written by [`gzip_footer`].
pub const GZIP_FOOTER_SIZE: usize = 51;
/// Size of the legacy stargz footer.
pub const LEGACY_FOOTER_SIZE: usize = 47;
/// Size of the external-TOC gzip footer.
pub const EXTERNAL_TOC_FOOTER_SIZE: usize = 46;
/// Size of the zstd:chunked footer payload (the last 40 bytes of the blob).
pub const ZSTD_FOOTER_SIZE: usize = 40;
/// Size of the complete zstd:chunked footer frame: 8-byte skippable header plus the payload.
pub const ZSTD_FOOTER_FRAME_SIZE: usize = 48;
/// Size of the containers/storage zstd:chunked footer payload, which lazypull recognises but
/// does not read.
pub const CONTAINERS_STORAGE_ZSTD_FOOTER_SIZE: usize = 64;
/// How many tail bytes [`parse_footer`] needs to recognise every variant.
pub const MAX_FOOTER_SIZE: usize = CONTAINERS_STORAGE_ZSTD_FOOTER_SIZE;

/// Magic of the first skippable zstd frame type (0x184D2A50), little-endian.
pub const ZSTD_SKIPPABLE_MAGIC: [u8; 4] = [0x50, 0x2a, 0x4d, 0x18];
/// Magic at the end of a zstd:chunked footer.
pub const ZSTD_CHUNKED_MAGIC: [u8; 8] = *b"GnUlInUx";
/// Magic at the end of a containers/storage zstd:chunked footer (capital N).
pub const CONTAINERS_STORAGE_ZSTD_MAGIC: [u8; 8] = *b"GNUlInUx";
/// Manifest type stored in a zstd:chunked footer: 1 means a CRFS-style JSON TOC.
pub const ZSTD_MANIFEST_TYPE_CRFS: u64 = 1;

/// Which footer a blob carries, and so how its TOC is stored.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FooterKind {
    /// eStargz with gzip members (51-byte footer).
    Gzip,
    /// Legacy stargz with gzip members (47-byte footer).
    LegacyGzip,
    /// zstd:chunked: zstd frames with the TOC in a skippable frame.
    ZstdChunked,
    /// gzip eStargz whose TOC is stored outside the blob.
    ExternalToc,
}

/// The location of the TOC inside a blob, as read from its footer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TocLocation {
    /// Which footer was found.
    pub kind: FooterKind,
    /// Offset of the first byte of the compressed TOC: the TOC gzip member for gzip blobs, the
    /// zstd frame holding the JSON (just after the skippable frame header) for zstd:chunked.
    pub offset: u64,
    /// Length of the compressed TOC in bytes.
    pub compressed_len: u64,
    /// Length of the uncompressed TOC JSON, when the footer records it (zstd:chunked only).
    pub uncompressed_len: Option<u64>,
    /// Size of the footer, so `offset + compressed_len + footer_len` never exceeds the blob size.
    pub footer_len: u64,
}

/// Builds the 51-byte eStargz footer for a TOC member starting at `toc_offset`.
///
/// ```text
///  0  1f 8b          gzip magic
///  2  08             CM = deflate
///  3  04             FLG = FEXTRA
///  4  00 00 00 00    MTIME = 0
///  8  00             XFL
///  9  ff             OS = unknown
/// 10  1a 00          XLEN = 26 (LE)
/// 12  53 47          subfield id "SG"
/// 14  16 00          subfield length = 22 (LE)
/// 16  %016x          TOC offset, 16 lower-case hex digits
/// 32  "STARGZ"       magic
/// 38  01 00 00 ff ff final stored deflate block of length 0
/// 43  00 00 00 00    CRC32 of no data
/// 47  00 00 00 00    ISIZE = 0
/// ```
pub fn gzip_footer(toc_offset: u64) -> [u8; GZIP_FOOTER_SIZE] {
    let mut out = [0u8; GZIP_FOOTER_SIZE];
    out[..12].copy_from_slice(&[0x1f, 0x8b, 0x08, 0x04, 0, 0, 0, 0, 0, 0xff, 26, 0]);
    out[12..16].copy_from_slice(&[b'S', b'G', 22, 0]);
    out[16..32].copy_from_slice(format!("{toc_offset:016x}").as_bytes());
    out[32..38].copy_from_slice(b"STARGZ");
    out[38..43].copy_from_slice(&[0x01, 0x00, 0x00, 0xff, 0xff]);
    out
}

/// Builds the 48-byte zstd:chunked footer frame: a skippable frame header followed by
///
/// ```text
///  0  u64 LE  offset of the compressed TOC (just after its skippable frame header)
///  8  u64 LE  compressed TOC length
/// 16  u64 LE  uncompressed TOC JSON length
/// 24  u64 LE  manifest type, 1 = CRFS JSON
/// 32  "GnUlInUx"
/// ```
pub fn zstd_footer(
    toc_offset: u64,
    compressed_len: u64,
    uncompressed_len: u64,
) -> [u8; ZSTD_FOOTER_FRAME_SIZE] {
    let mut out = [0u8; ZSTD_FOOTER_FRAME_SIZE];
    out[..4].copy_from_slice(&ZSTD_SKIPPABLE_MAGIC);
    out[4..8].copy_from_slice(&(ZSTD_FOOTER_SIZE as u32).to_le_bytes());
    out[8..16].copy_from_slice(&toc_offset.to_le_bytes());
    out[16..24].copy_from_slice(&compressed_len.to_le_bytes());
    out[24..32].copy_from_slice(&uncompressed_len.to_le_bytes());
    out[32..40].copy_from_slice(&ZSTD_MANIFEST_TYPE_CRFS.to_le_bytes());
    out[40..48].copy_from_slice(&ZSTD_CHUNKED_MAGIC);
    out
}

/// Finds the TOC of a blob of `blob_size` bytes from its last bytes.
///
/// `tail` must be the last `min(MAX_FOOTER_SIZE, blob_size)` bytes of the blob (a longer slice
/// is accepted; only its end is used). Variants are tried in the order of the module
/// documentation; the error lists why each one failed.
pub fn parse_footer(tail: &[u8], blob_size: u64) -> Result<TocLocation, FooterError> {
    if (tail.len() as u64) > blob_size {
        return Err(FooterError::TailLongerThanBlob {
            tail: tail.len() as u64,
            blob_size,
        });
    }
    if tail.ends_with(&CONTAINERS_STORAGE_ZSTD_MAGIC) {
        return Err(containers_storage_zstd(tail, blob_size));
    }
    let mut reasons = Vec::new();
    for attempt in [parse_gzip, parse_legacy, parse_zstd, parse_external] {
        match attempt(tail, blob_size) {
            Ok(location) => return Ok(location),
            Err(reason) => reasons.push(reason),
        }
    }
    Err(FooterError::NotEstargz {
        blob_size,
        reasons: reasons.join("; "),
    })
}

/// Describes a blob that ends in the containers/storage magic. Its 64-byte payload is seven
/// little-endian u64 fields (TOC offset, compressed and uncompressed TOC length, manifest type,
/// tar-split offset, compressed and uncompressed tar-split length) and the magic.
fn containers_storage_zstd(tail: &[u8], blob_size: u64) -> FooterError {
    let field = |footer: &[u8], i: usize| {
        let mut bytes = [0u8; 8];
        bytes.copy_from_slice(&footer[i * 8..i * 8 + 8]);
        u64::from_le_bytes(bytes)
    };
    let (toc_offset, tar_split_offset) = match last_n(tail, CONTAINERS_STORAGE_ZSTD_FOOTER_SIZE) {
        Some(footer) => (field(footer, 0), field(footer, 4)),
        None => (0, 0),
    };
    FooterError::ContainersStorageZstd {
        blob_size,
        toc_offset,
        tar_split_offset,
    }
}

fn last_n(tail: &[u8], n: usize) -> Option<&[u8]> {
    tail.len().checked_sub(n).map(|start| &tail[start..])
}

/// Checks the fixed gzip header of a footer member and returns its extra field.
fn gzip_extra(footer: &[u8], xlen: usize) -> Result<&[u8], String> {
    if footer[0] != 0x1f || footer[1] != 0x8b || footer[2] != 0x08 {
        return Err("no gzip header".into());
    }
    if footer[3] & 0x04 == 0 {
        return Err("gzip header has no extra field".into());
    }
    let found = u16::from_le_bytes([footer[10], footer[11]]) as usize;
    if found != xlen {
        return Err(format!("extra field length {found}, expected {xlen}"));
    }
    Ok(&footer[12..12 + xlen])
}

fn parse_hex_offset(digits: &[u8]) -> Result<u64, String> {
    let text = std::str::from_utf8(digits).map_err(|_| "TOC offset is not ASCII".to_string())?;
    let value = u64::from_str_radix(text, 16)
        .map_err(|_| format!("TOC offset {text:?} is not hexadecimal"))?;
    // The reference parses a signed 64-bit value, so anything above i64::MAX is invalid there too.
    if value > i64::MAX as u64 {
        return Err(format!("TOC offset {text:?} is out of range"));
    }
    Ok(value)
}

fn in_blob_toc(
    kind: FooterKind,
    offset: u64,
    footer_len: usize,
    blob_size: u64,
) -> Result<TocLocation, String> {
    let footer_start = blob_size - footer_len as u64;
    if offset >= footer_start {
        return Err(format!(
            "TOC offset {offset} is not before the footer at {footer_start}"
        ));
    }
    Ok(TocLocation {
        kind,
        offset,
        compressed_len: footer_start - offset,
        uncompressed_len: None,
        footer_len: footer_len as u64,
    })
}

fn parse_gzip(tail: &[u8], blob_size: u64) -> Result<TocLocation, String> {
    let footer = last_n(tail, GZIP_FOOTER_SIZE).ok_or("gzip: blob shorter than 51 bytes")?;
    let extra = gzip_extra(footer, 26).map_err(|e| format!("gzip: {e}"))?;
    if extra[0] != b'S' || extra[1] != b'G' || u16::from_le_bytes([extra[2], extra[3]]) != 22 {
        return Err("gzip: extra subfield is not SG with length 22".into());
    }
    if &extra[20..26] != b"STARGZ" {
        return Err("gzip: invalid magic".into());
    }
    let offset = parse_hex_offset(&extra[4..20]).map_err(|e| format!("gzip: {e}"))?;
    in_blob_toc(FooterKind::Gzip, offset, GZIP_FOOTER_SIZE, blob_size)
        .map_err(|e| format!("gzip: {e}"))
}

fn parse_legacy(tail: &[u8], blob_size: u64) -> Result<TocLocation, String> {
    let footer = last_n(tail, LEGACY_FOOTER_SIZE).ok_or("legacy: blob shorter than 47 bytes")?;
    let extra = gzip_extra(footer, 22).map_err(|e| format!("legacy: {e}"))?;
    if &extra[16..22] != b"STARGZ" {
        return Err("legacy: invalid magic".into());
    }
    let offset = parse_hex_offset(&extra[..16]).map_err(|e| format!("legacy: {e}"))?;
    in_blob_toc(
        FooterKind::LegacyGzip,
        offset,
        LEGACY_FOOTER_SIZE,
        blob_size,
    )
    .map_err(|e| format!("legacy: {e}"))
}

fn parse_zstd(tail: &[u8], blob_size: u64) -> Result<TocLocation, String> {
    let footer = last_n(tail, ZSTD_FOOTER_SIZE).ok_or("zstd: blob shorter than 40 bytes")?;
    if footer[32..40] != ZSTD_CHUNKED_MAGIC {
        return Err("zstd: invalid magic".into());
    }
    let field = |i: usize| {
        let mut bytes = [0u8; 8];
        bytes.copy_from_slice(&footer[i * 8..i * 8 + 8]);
        u64::from_le_bytes(bytes)
    };
    let (offset, compressed_len, uncompressed_len, kind) = (field(0), field(1), field(2), field(3));
    if kind != ZSTD_MANIFEST_TYPE_CRFS {
        return Err(format!("zstd: manifest type {kind}, expected 1"));
    }
    let footer_start = blob_size.saturating_sub(ZSTD_FOOTER_FRAME_SIZE as u64);
    let end = offset
        .checked_add(compressed_len)
        .ok_or("zstd: TOC range overflows")?;
    if end > footer_start {
        return Err(format!(
            "zstd: TOC range {offset}..{end} overlaps the footer at {footer_start}"
        ));
    }
    Ok(TocLocation {
        kind: FooterKind::ZstdChunked,
        offset,
        compressed_len,
        uncompressed_len: Some(uncompressed_len),
        footer_len: ZSTD_FOOTER_FRAME_SIZE as u64,
    })
}

fn parse_external(tail: &[u8], _blob_size: u64) -> Result<TocLocation, String> {
    let footer =
        last_n(tail, EXTERNAL_TOC_FOOTER_SIZE).ok_or("external TOC: blob shorter than 46 bytes")?;
    let extra = gzip_extra(footer, 21).map_err(|e| format!("external TOC: {e}"))?;
    if extra[0] != b'S' || extra[1] != b'G' || &extra[4..21] != b"STARGZEXTERNALTOC" {
        return Err("external TOC: invalid magic".into());
    }
    Ok(TocLocation {
        kind: FooterKind::ExternalToc,
        offset: 0,
        compressed_len: 0,
        uncompressed_len: None,
        footer_len: EXTERNAL_TOC_FOOTER_SIZE as u64,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Read;

    #[test]
    fn gzip_footer_matches_documented_bytes() {
        // TOC offset 886633 = 0xd8769.
        let footer = gzip_footer(886_633);
        let expected: [u8; 51] = [
            0x1f, 0x8b, 0x08, 0x04, 0x00, 0x00, 0x00, 0x00, 0x00, 0xff, 0x1a, 0x00, 0x53, 0x47,
            0x16, 0x00, b'0', b'0', b'0', b'0', b'0', b'0', b'0', b'0', b'0', b'0', b'0', b'd',
            b'8', b'7', b'6', b'9', b'S', b'T', b'A', b'R', b'G', b'Z', 0x01, 0x00, 0x00, 0xff,
            0xff, 0, 0, 0, 0, 0, 0, 0, 0,
        ];
        assert_eq!(footer, expected);
    }

    #[test]
    fn gzip_footer_is_an_empty_gzip_member() {
        let footer = gzip_footer(12345);
        let mut out = Vec::new();
        flate2::read::GzDecoder::new(&footer[..])
            .read_to_end(&mut out)
            .unwrap();
        assert!(out.is_empty());
    }

    #[test]
    fn gzip_footer_round_trips() {
        let mut blob = vec![0u8; 1000];
        blob.extend_from_slice(&gzip_footer(700));
        let loc = parse_footer(&blob[blob.len() - 51..], blob.len() as u64).unwrap();
        assert_eq!(loc.kind, FooterKind::Gzip);
        assert_eq!(loc.offset, 700);
        assert_eq!(loc.compressed_len, 300);
    }

    #[test]
    fn upper_case_hex_offset_is_accepted() {
        let mut footer = gzip_footer(0xabc);
        footer[16..32].copy_from_slice(b"0000000000000ABC");
        let mut blob = vec![0u8; 0x1000];
        blob.extend_from_slice(&footer);
        let loc = parse_footer(&blob[blob.len() - 51..], blob.len() as u64).unwrap();
        assert_eq!(loc.offset, 0xabc);
    }

    #[test]
    fn legacy_footer_is_read() {
        let mut footer = vec![0x1f, 0x8b, 0x08, 0x04, 0, 0, 0, 0, 0, 0xff, 22, 0];
        footer.extend_from_slice(b"00000000000000c8STARGZ");
        footer.extend_from_slice(&[0x01, 0x00, 0x00, 0xff, 0xff, 0, 0, 0, 0, 0, 0, 0, 0]);
        assert_eq!(footer.len(), LEGACY_FOOTER_SIZE);
        let mut blob = vec![0u8; 300];
        blob.extend_from_slice(&footer);
        let loc = parse_footer(&blob[blob.len() - 51..], blob.len() as u64).unwrap();
        assert_eq!(loc.kind, FooterKind::LegacyGzip);
        assert_eq!(loc.offset, 200);
        assert_eq!(loc.compressed_len, 100);
    }

    #[test]
    fn zstd_footer_round_trips() {
        let mut blob = vec![0u8; 500];
        blob.extend_from_slice(&zstd_footer(408, 92, 1000));
        let loc = parse_footer(&blob[blob.len() - 51..], blob.len() as u64).unwrap();
        assert_eq!(loc.kind, FooterKind::ZstdChunked);
        assert_eq!(
            (loc.offset, loc.compressed_len, loc.uncompressed_len),
            (408, 92, Some(1000))
        );
    }

    #[test]
    fn footer_with_wrong_magic_is_rejected() {
        let mut footer = gzip_footer(10);
        footer[32..38].copy_from_slice(b"STARGY");
        let mut blob = vec![0u8; 100];
        blob.extend_from_slice(&footer);
        let err = parse_footer(&blob[blob.len() - 51..], blob.len() as u64).unwrap_err();
        assert!(matches!(err, FooterError::NotEstargz { .. }), "{err}");
    }

    #[test]
    fn offset_pointing_into_footer_is_rejected() {
        let mut blob = vec![0u8; 100];
        blob.extend_from_slice(&gzip_footer(120));
        assert!(parse_footer(&blob[blob.len() - 51..], blob.len() as u64).is_err());
    }

    #[test]
    fn short_blobs_are_rejected_without_panic() {
        for len in 0..60 {
            let blob = vec![0x1fu8; len];
            assert!(parse_footer(&blob, len as u64).is_err());
        }
    }

    /// Builds the tail of a containers/storage zstd:chunked blob by hand: a 64-byte payload in a
    /// skippable frame, seven little-endian u64 fields and the `GNUlInUx` magic.
    fn containers_storage_footer(fields: [u64; 7]) -> Vec<u8> {
        let mut frame = ZSTD_SKIPPABLE_MAGIC.to_vec();
        frame.extend_from_slice(&64u32.to_le_bytes());
        for value in fields {
            frame.extend_from_slice(&value.to_le_bytes());
        }
        frame.extend_from_slice(b"GNUlInUx");
        frame
    }

    #[test]
    fn containers_storage_footer_is_named_as_other_dialect() {
        let mut blob = vec![0u8; 900];
        blob.extend_from_slice(&containers_storage_footer([
            600, 100, 400, 1, 700, 120, 2048,
        ]));
        let size = blob.len() as u64;
        let err = parse_footer(&blob[blob.len() - MAX_FOOTER_SIZE..], size).unwrap_err();
        match err {
            FooterError::ContainersStorageZstd {
                blob_size,
                toc_offset,
                tar_split_offset,
            } => {
                assert_eq!(blob_size, size);
                assert_eq!(toc_offset, 600);
                assert_eq!(tar_split_offset, 700);
            }
            other => panic!("expected the containers/storage dialect, got {other}"),
        }
    }

    #[test]
    fn containers_storage_error_names_both_magics() {
        let mut blob = vec![0u8; 200];
        blob.extend_from_slice(&containers_storage_footer([100, 50, 300, 1, 0, 0, 0]));
        let message = parse_footer(&blob, blob.len() as u64)
            .unwrap_err()
            .to_string();
        assert!(message.contains("containers/storage"), "{message}");
        assert!(message.contains("GNUlInUx"), "{message}");
        assert!(message.contains("GnUlInUx"), "{message}");
    }

    #[test]
    fn containers_storage_magic_in_short_tail_is_named() {
        let err = parse_footer(b"GNUlInUx", 8).unwrap_err();
        assert!(
            matches!(
                err,
                FooterError::ContainersStorageZstd { toc_offset: 0, .. }
            ),
            "{err}"
        );
    }

    #[test]
    fn external_toc_footer_is_recognised() {
        let mut footer = vec![
            0x1f, 0x8b, 0x08, 0x04, 0, 0, 0, 0, 0, 0xff, 21, 0, b'S', b'G', 17, 0,
        ];
        footer.extend_from_slice(b"STARGZEXTERNALTOC");
        footer.extend_from_slice(&[0x01, 0x00, 0x00, 0xff, 0xff, 0, 0, 0, 0, 0, 0, 0, 0]);
        assert_eq!(footer.len(), EXTERNAL_TOC_FOOTER_SIZE);
        let mut blob = vec![0u8; 100];
        blob.extend_from_slice(&footer);
        let loc = parse_footer(&blob[blob.len() - 51..], blob.len() as u64).unwrap();
        assert_eq!(loc.kind, FooterKind::ExternalToc);
    }
}
