//! Opening a blob: footer, TOC, verification, index; and decoding chunks.
//!
//! The functions that take byte slices ([`decode_toc`], [`decode_chunk`]) are pure and are what
//! asynchronous callers use after fetching the bytes themselves. [`open_blob`] and [`read_chunk`]
//! wrap them for synchronous sources through [`ReadAt`].

use std::io::Read;

use crate::Compression;
use crate::digest::Digest;
use crate::error::{BlobError, ChunkError, TocError};
use crate::footer::{FooterKind, MAX_FOOTER_SIZE, TocLocation, parse_footer};
use crate::index::{Chunk, IndexOptions, LayerIndex};
use crate::limits::Limits;
use crate::tar::header;
use crate::toc::TOC_TAR_NAME;

/// Random access to the bytes of a blob.
pub trait ReadAt {
    /// Size of the blob in bytes.
    fn size(&self) -> u64;
    /// Reads exactly `len` bytes at `offset`.
    fn read_at(&self, offset: u64, len: usize) -> std::io::Result<Vec<u8>>;
}

impl ReadAt for &[u8] {
    fn size(&self) -> u64 {
        self.len() as u64
    }

    fn read_at(&self, offset: u64, len: usize) -> std::io::Result<Vec<u8>> {
        let start = usize::try_from(offset).map_err(|_| std::io::ErrorKind::UnexpectedEof)?;
        let end = start
            .checked_add(len)
            .ok_or(std::io::ErrorKind::UnexpectedEof)?;
        self.get(start..end)
            .map(<[u8]>::to_vec)
            .ok_or_else(|| std::io::ErrorKind::UnexpectedEof.into())
    }
}

impl ReadAt for std::fs::File {
    fn size(&self) -> u64 {
        self.metadata().map(|m| m.len()).unwrap_or(0)
    }

    fn read_at(&self, offset: u64, len: usize) -> std::io::Result<Vec<u8>> {
        use std::os::unix::fs::FileExt;
        let mut buf = vec![0u8; len];
        self.read_exact_at(&mut buf, offset)?;
        Ok(buf)
    }
}

/// Options of [`open_blob`].
#[derive(Debug, Clone, Default)]
pub struct BlobOptions {
    /// The trusted TOC digest (from the layer annotation). `None` skips verification.
    pub toc_digest: Option<Digest>,
    /// Index options, limits included.
    pub index: IndexOptions,
}

impl BlobOptions {
    /// Options that verify the TOC against `digest`.
    pub fn verify_with(digest: Digest) -> Self {
        BlobOptions {
            toc_digest: Some(digest),
            index: IndexOptions::default(),
        }
    }
}

/// An opened blob.
#[derive(Debug, Clone)]
pub struct OpenedBlob {
    /// Where the TOC is.
    pub location: TocLocation,
    /// Member compression.
    pub compression: Compression,
    /// Digest of the TOC JSON as found in the blob.
    pub toc_digest: Digest,
    /// The inode table.
    pub index: LayerIndex,
}

/// Compression of a blob with this footer.
pub fn compression_of(kind: FooterKind) -> Compression {
    match kind {
        FooterKind::ZstdChunked => Compression::Zstd,
        FooterKind::Gzip | FooterKind::LegacyGzip | FooterKind::ExternalToc => Compression::Gzip,
    }
}

fn read(source: &impl ReadAt, offset: u64, len: u64) -> Result<Vec<u8>, BlobError> {
    let n = usize::try_from(len).map_err(|_| BlobError::Read {
        offset,
        len,
        source: std::io::Error::other("length does not fit memory"),
    })?;
    source.read_at(offset, n).map_err(|source| BlobError::Read {
        offset,
        len,
        source,
    })
}

/// Locates the TOC from the last bytes of a blob.
pub fn locate_toc(source: &impl ReadAt) -> Result<TocLocation, BlobError> {
    let size = source.size();
    let tail_len = size.min(MAX_FOOTER_SIZE as u64);
    let tail = read(source, size - tail_len, tail_len)?;
    Ok(parse_footer(&tail, size)?)
}

/// Decompresses the TOC and returns its JSON bytes.
///
/// `compressed` holds the bytes `location.offset .. location.offset + location.compressed_len`.
/// For gzip blobs this decodes exactly one member and requires a `stargz.index.json` tar header.
pub fn decode_toc(
    compressed: &[u8],
    location: &TocLocation,
    limits: &Limits,
) -> Result<Vec<u8>, TocError> {
    if location.kind == FooterKind::ExternalToc {
        return Err(TocError::ExternalToc);
    }
    if location.compressed_len > limits.max_toc_compressed_bytes {
        return Err(TocError::TooLarge {
            what: "compressed TOC",
            value: location.compressed_len,
            limit: limits.max_toc_compressed_bytes,
        });
    }
    let decompress = |source| TocError::Decompress {
        offset: location.offset,
        source,
    };
    match compression_of(location.kind) {
        Compression::Zstd => {
            let expected = location.uncompressed_len.unwrap_or(0);
            if expected > limits.max_toc_json_bytes {
                return Err(TocError::TooLarge {
                    what: "TOC JSON",
                    value: expected,
                    limit: limits.max_toc_json_bytes,
                });
            }
            let decoder = zstd::stream::read::Decoder::new(compressed)
                .map_err(decompress)?
                .single_frame();
            let mut json = Vec::with_capacity(expected as usize);
            decoder
                .take(limits.max_toc_json_bytes + 1)
                .read_to_end(&mut json)
                .map_err(decompress)?;
            if json.len() as u64 != expected {
                return Err(TocError::NotTocEntry {
                    offset: location.offset,
                    found: format!(
                        "{} bytes of TOC JSON where the footer promises {expected}",
                        json.len()
                    ),
                });
            }
            Ok(json)
        }
        Compression::Gzip => {
            let mut decoder = flate2::read::GzDecoder::new(compressed);
            let mut block = [0u8; 512];
            decoder.read_exact(&mut block).map_err(decompress)?;
            let hdr = header::decode(&block).map_err(|reason| TocError::NotTocEntry {
                offset: location.offset,
                found: format!("an invalid tar header ({reason})"),
            })?;
            if hdr.name != TOC_TAR_NAME.as_bytes() {
                return Err(TocError::NotTocEntry {
                    offset: location.offset,
                    found: String::from_utf8_lossy(&hdr.name).into_owned(),
                });
            }
            if hdr.size > limits.max_toc_json_bytes {
                return Err(TocError::TooLarge {
                    what: "TOC JSON",
                    value: hdr.size,
                    limit: limits.max_toc_json_bytes,
                });
            }
            let mut json = vec![0u8; hdr.size as usize];
            decoder.read_exact(&mut json).map_err(decompress)?;
            Ok(json)
        }
    }
}

/// Checks the TOC JSON against a trusted digest and returns the computed digest.
pub fn verify_toc(json: &[u8], expected: Option<Digest>) -> Result<Digest, TocError> {
    let actual = Digest::of(json);
    match expected {
        Some(expected) if expected != actual => Err(TocError::DigestMismatch { expected, actual }),
        _ => Ok(actual),
    }
}

/// Opens a blob: footer, TOC (verified when a digest is given) and index.
pub fn open_blob(source: &impl ReadAt, options: &BlobOptions) -> Result<OpenedBlob, BlobError> {
    let location = locate_toc(source)?;
    if location.kind == FooterKind::ExternalToc {
        return Err(TocError::ExternalToc.into());
    }
    let limits = &options.index.limits;
    if location.compressed_len > limits.max_toc_compressed_bytes {
        return Err(TocError::TooLarge {
            what: "compressed TOC",
            value: location.compressed_len,
            limit: limits.max_toc_compressed_bytes,
        }
        .into());
    }
    let compressed = read(source, location.offset, location.compressed_len)?;
    let json = decode_toc(&compressed, &location, limits)?;
    drop(compressed);
    let toc_digest = verify_toc(&json, options.toc_digest)?;
    let payload_end = match location.kind {
        // zstd: the TOC frame's skippable header sits 8 bytes before the compressed TOC.
        FooterKind::ZstdChunked => location.offset.saturating_sub(8),
        _ => location.offset,
    };
    let index = LayerIndex::from_toc_json(&json, payload_end, &options.index)?;
    Ok(OpenedBlob {
        location,
        compression: compression_of(location.kind),
        toc_digest,
        index,
    })
}

/// Decodes and verifies one chunk from the compressed bytes starting at `chunk.comp_offset`.
///
/// `span` must start at `chunk.comp_offset` and may end anywhere up to `chunk.comp_end`; it needs
/// to hold enough compressed data for `inner_offset + size` uncompressed bytes. Members or frames
/// after the first are decoded too, since parallel writers may cut a member in the middle of a
/// span.
pub fn decode_chunk(
    span: &[u8],
    chunk: &Chunk,
    compression: Compression,
) -> Result<Vec<u8>, ChunkError> {
    let offset = chunk.comp_offset();
    let Some(expected) = chunk.digest() else {
        return Err(ChunkError::NoDigest { offset });
    };
    if compression == Compression::Zstd
        && let Some(out) = zstd_in_one_pass(span, chunk)
    {
        return verify_chunk(out, offset, expected);
    }
    let decompress = |source| ChunkError::Decompress { offset, source };
    let mut decoder: Box<dyn Read + '_> = match compression {
        Compression::Gzip => Box::new(flate2::read::MultiGzDecoder::new(span)),
        Compression::Zstd => Box::new(zstd::stream::read::Decoder::new(span).map_err(decompress)?),
    };
    if chunk.inner_offset() > 0 {
        let skipped = std::io::copy(
            &mut (&mut decoder).take(chunk.inner_offset()),
            &mut std::io::sink(),
        )
        .map_err(decompress)?;
        if skipped < chunk.inner_offset() {
            return Err(ChunkError::Short {
                offset,
                expected: chunk.inner_offset() + chunk.size(),
                got: skipped,
            });
        }
    }
    let size = usize::try_from(chunk.size()).map_err(|_| ChunkError::Short {
        offset,
        expected: chunk.size(),
        got: 0,
    })?;
    let mut out = vec![0u8; size];
    let mut filled = 0;
    while filled < size {
        match decoder.read(&mut out[filled..]) {
            Ok(0) => {
                return Err(ChunkError::Short {
                    offset,
                    expected: chunk.size(),
                    got: filled as u64,
                });
            }
            Ok(n) => filled += n,
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
            Err(e) => return Err(decompress(e)),
        }
    }
    verify_chunk(out, offset, expected)
}

fn verify_chunk(out: Vec<u8>, offset: u64, expected: Digest) -> Result<Vec<u8>, ChunkError> {
    let actual = Digest::of(&out);
    if actual != expected {
        return Err(ChunkError::DigestMismatch {
            offset,
            expected,
            actual,
        });
    }
    Ok(out)
}

/// Room for the bytes a chunk's last frame contains after the chunk: the tar padding of the file
/// and the header blocks of the next entry. PAX records or long names can make those larger, so
/// such chunks take the streaming path.
const ZSTD_TRAILER_ROOM: usize = 64 << 10;

/// Decompresses the zstd frames of `span` in one call into a buffer sized for the chunk, which
/// skips the copy through the streaming decoder's window.
///
/// Returns `None` when the frames contain fewer than `inner_offset + size` bytes, or more than that
/// plus [`ZSTD_TRAILER_ROOM`] (a frame shared by several small files), or are damaged. The
/// caller then takes the streaming path, which handles the second case and reports the others
/// precisely.
fn zstd_in_one_pass(span: &[u8], chunk: &Chunk) -> Option<Vec<u8>> {
    let inner = usize::try_from(chunk.inner_offset()).ok()?;
    let need = inner.checked_add(usize::try_from(chunk.size()).ok()?)?;
    let mut out = Vec::with_capacity(need.checked_add(ZSTD_TRAILER_ROOM)?);
    let mut decompressor = zstd::bulk::Decompressor::new().ok()?;
    match decompressor.decompress_to_buffer(span, &mut out) {
        Ok(written) if written >= need => {
            out.truncate(need);
            out.drain(..inner);
            Some(out)
        }
        _ => None,
    }
}

/// Reads, decodes and verifies one chunk.
pub fn read_chunk(
    source: &impl ReadAt,
    chunk: &Chunk,
    compression: Compression,
) -> Result<Vec<u8>, BlobError> {
    let span = read(
        source,
        chunk.comp_offset(),
        chunk.comp_end() - chunk.comp_offset(),
    )?;
    Ok(decode_chunk(&span, chunk, compression)?)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn chunk(data: &[u8], span_len: usize, inner_offset: u64, size: u64) -> Chunk {
        let start = inner_offset as usize;
        let digest = Digest::of(&data[start..start + size as usize]);
        Chunk::new(0, size, 0, span_len as u64, inner_offset, Some(digest)).unwrap()
    }

    #[test]
    fn zstd_chunk_spanning_two_frames_decodes() {
        let data: Vec<u8> = (0..200_000u32).map(|i| (i % 251) as u8).collect();
        let mut span = zstd::bulk::compress(&data[..70_000], 3).unwrap();
        span.extend(zstd::bulk::compress(&data[70_000..], 3).unwrap());
        let whole = chunk(&data, span.len(), 0, data.len() as u64);
        assert_eq!(
            decode_chunk(&span, &whole, Compression::Zstd).unwrap(),
            data
        );
    }

    #[test]
    fn zstd_chunk_at_inner_offset_decodes() {
        let data: Vec<u8> = (0..100_000u32).map(|i| (i % 13) as u8).collect();
        let span = zstd::bulk::compress(&data, 3).unwrap();
        let middle = chunk(&data, span.len(), 30_000, 20_000);
        assert_eq!(
            decode_chunk(&span, &middle, Compression::Zstd).unwrap(),
            &data[30_000..50_000]
        );
        let tail = chunk(&data, span.len(), 60_000, 40_000);
        assert_eq!(
            decode_chunk(&span, &tail, Compression::Zstd).unwrap(),
            &data[60_000..]
        );
    }

    #[test]
    fn zstd_chunk_followed_by_much_more_data_decodes() {
        // The frame contains 190,000 bytes after the chunk, more than the one-pass buffer's room.
        let data: Vec<u8> = (0..200_000u32).map(|i| (i % 7) as u8).collect();
        let span = zstd::bulk::compress(&data, 3).unwrap();
        let head = chunk(&data, span.len(), 0, 10_000);
        assert_eq!(
            decode_chunk(&span, &head, Compression::Zstd).unwrap(),
            &data[..10_000]
        );
    }

    #[test]
    fn truncated_zstd_frame_is_reported() {
        let data = vec![9u8; 50_000];
        let span = zstd::bulk::compress(&data, 3).unwrap();
        let cut = &span[..span.len() - 4];
        let whole = chunk(&data, cut.len(), 0, data.len() as u64);
        let err = decode_chunk(cut, &whole, Compression::Zstd).unwrap_err();
        assert!(
            matches!(
                err,
                ChunkError::Short { .. } | ChunkError::Decompress { .. }
            ),
            "{err}"
        );
    }
}
