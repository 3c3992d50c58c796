//! Reading a source layer blob: format detection by magic bytes, digest verification while
//! reading, and decompression.

use std::io::{BufReader, Read, Seek, SeekFrom};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use estargz::digest::Hasher;

use crate::error::ConvertError;

/// The byte format of a layer blob.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum InputFormat {
    /// gzip, possibly several concatenated members.
    Gzip,
    /// zstd, possibly several frames and skippable frames.
    Zstd,
    /// An uncompressed tar stream (or something that is neither; the tar reader decides).
    Tar,
}

impl InputFormat {
    /// Lower-case name for messages.
    pub fn name(self) -> &'static str {
        match self {
            InputFormat::Gzip => "gzip",
            InputFormat::Zstd => "zstd",
            InputFormat::Tar => "tar",
        }
    }
}

/// Detects the format from the first bytes of the blob. Returns the name of a recognised but
/// unsupported compression as the error.
pub fn detect(head: &[u8]) -> Result<InputFormat, &'static str> {
    match head {
        // RFC 1952: ID1 ID2 CM=deflate.
        [0x1f, 0x8b, 0x08, ..] => Ok(InputFormat::Gzip),
        // RFC 8878: frame magic 0xFD2FB528, or a skippable frame 0x184D2A5?, little-endian.
        [0x28, 0xb5, 0x2f, 0xfd, ..] => Ok(InputFormat::Zstd),
        [m, 0x2a, 0x4d, 0x18, ..] if m & 0xf0 == 0x50 => Ok(InputFormat::Zstd),
        [b'B', b'Z', b'h', ..] => Err("bzip2"),
        [0xfd, b'7', b'z', b'X', b'Z', 0x00, ..] => Err("xz"),
        [0x04, 0x22, 0x4d, 0x18, ..] => Err("lz4"),
        _ => Ok(InputFormat::Tar),
    }
}

/// Reads the first bytes of a file without moving its cursor for later readers.
pub fn read_head(file: &mut std::fs::File, len: usize) -> std::io::Result<Vec<u8>> {
    file.seek(SeekFrom::Start(0))?;
    let mut head = Vec::with_capacity(len);
    (&mut *file).take(len as u64).read_to_end(&mut head)?;
    file.seek(SeekFrom::Start(0))?;
    Ok(head)
}

/// A reader that hashes and counts what passes through it, so the blob digest is checked in
/// the same pass that decompresses it.
pub struct HashingReader<R> {
    inner: R,
    hasher: Hasher,
    count: Arc<AtomicU64>,
}

impl<R: Read> HashingReader<R> {
    /// Wraps `inner`. `count` receives the number of bytes read so far.
    pub fn new(inner: R, count: Arc<AtomicU64>) -> Self {
        HashingReader {
            inner,
            hasher: Hasher::new(),
            count,
        }
    }

    /// Reads whatever the consumer left unread, then checks digest and size. `path` is the blob
    /// file, for messages.
    pub fn finish(
        mut self,
        layer: &str,
        expected_size: u64,
        path: &std::path::Path,
    ) -> Result<(), ConvertError> {
        std::io::copy(&mut self, &mut std::io::sink())
            .map_err(|e| ConvertError::io("reading", path, e))?;
        let actual = self.hasher.finish();
        if actual.to_string() != layer {
            return Err(ConvertError::DigestMismatch {
                what: "layer",
                expected: layer.to_string(),
                actual,
            });
        }
        let size = self.count.load(Ordering::Relaxed);
        if size != expected_size {
            return Err(ConvertError::SizeMismatch {
                what: "layer",
                digest: layer.to_string(),
                expected: expected_size,
                actual: size,
            });
        }
        Ok(())
    }
}

impl<R: Read> Read for HashingReader<R> {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        let n = self.inner.read(buf)?;
        self.hasher.update(&buf[..n]);
        self.count.fetch_add(n as u64, Ordering::Relaxed);
        Ok(n)
    }
}

/// A decoder over a hashed blob reader, giving back the hashed reader when done.
// One decoder exists per layer being converted, so the unboxed gzip state costs nothing.
#[allow(clippy::large_enum_variant)]
pub enum Decoder<R: Read> {
    /// Multi-member gzip: `GzDecoder` would stop after the first member.
    Gzip(flate2::read::MultiGzDecoder<BufReader<HashingReader<R>>>),
    /// zstd frames.
    Zstd(zstd::stream::read::Decoder<'static, BufReader<HashingReader<R>>>),
    /// No compression.
    Plain(HashingReader<R>),
}

impl<R: Read> Decoder<R> {
    /// Creates the decoder for `format`.
    pub fn new(format: InputFormat, input: HashingReader<R>) -> std::io::Result<Self> {
        const BUFFER_BYTES: usize = 256 << 10;
        Ok(match format {
            InputFormat::Gzip => Decoder::Gzip(flate2::read::MultiGzDecoder::new(
                BufReader::with_capacity(BUFFER_BYTES, input),
            )),
            InputFormat::Zstd => Decoder::Zstd(zstd::stream::read::Decoder::with_buffer(
                BufReader::with_capacity(BUFFER_BYTES, input),
            )?),
            InputFormat::Tar => Decoder::Plain(input),
        })
    }

    /// Returns the hashed reader. Bytes the decoder buffered were hashed when they were read,
    /// and [`HashingReader::finish`] reads the rest.
    pub fn into_input(self) -> HashingReader<R> {
        match self {
            Decoder::Gzip(d) => d.into_inner().into_inner(),
            Decoder::Zstd(d) => d.finish().into_inner(),
            Decoder::Plain(r) => r,
        }
    }
}

impl<R: Read> Read for Decoder<R> {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        match self {
            Decoder::Gzip(d) => d.read(buf),
            Decoder::Zstd(d) => d.read(buf),
            Decoder::Plain(r) => r.read(buf),
        }
    }
}

/// Turns a decoder error into the converter's error: a premature end means a truncated blob.
pub fn decode_error(
    layer: &str,
    format: InputFormat,
    read: u64,
    error: std::io::Error,
) -> ConvertError {
    let compression = format.name();
    if error.kind() == std::io::ErrorKind::UnexpectedEof {
        ConvertError::TruncatedLayer {
            layer: layer.to_string(),
            compression,
            read,
            source: error,
        }
    } else {
        ConvertError::CorruptLayer {
            layer: layer.to_string(),
            compression,
            read,
            source: error,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Write;

    #[test]
    fn magic_bytes_select_the_format() {
        assert_eq!(detect(&[0x1f, 0x8b, 0x08, 0]), Ok(InputFormat::Gzip));
        assert_eq!(detect(&[0x28, 0xb5, 0x2f, 0xfd]), Ok(InputFormat::Zstd));
        assert_eq!(detect(&[0x5e, 0x2a, 0x4d, 0x18]), Ok(InputFormat::Zstd));
        assert_eq!(detect(b"BZh91AY"), Err("bzip2"));
        assert_eq!(detect(b"etc/\0\0\0"), Ok(InputFormat::Tar));
        assert_eq!(detect(b""), Ok(InputFormat::Tar));
    }

    #[test]
    fn multi_member_gzip_is_read_whole() {
        let mut blob = Vec::new();
        for part in [b"first ".as_slice(), b"second"] {
            let mut encoder =
                flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
            encoder.write_all(part).unwrap();
            blob.extend(encoder.finish().unwrap());
        }
        let count = Arc::new(AtomicU64::new(0));
        let mut decoder = Decoder::new(
            InputFormat::Gzip,
            HashingReader::new(blob.as_slice(), count),
        )
        .unwrap();
        let mut out = Vec::new();
        decoder.read_to_end(&mut out).unwrap();
        assert_eq!(out, b"first second");
        let digest = estargz::Digest::of(&blob).to_string();
        decoder
            .into_input()
            .finish(&digest, blob.len() as u64, std::path::Path::new("blob"))
            .unwrap();
    }

    #[test]
    fn truncated_gzip_is_reported_as_truncated() {
        let mut encoder = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
        encoder.write_all(&[7u8; 100_000]).unwrap();
        let blob = encoder.finish().unwrap();
        let cut = &blob[..blob.len() / 2];
        let count = Arc::new(AtomicU64::new(0));
        let mut decoder = Decoder::new(InputFormat::Gzip, HashingReader::new(cut, count)).unwrap();
        let err = decoder.read_to_end(&mut Vec::new()).unwrap_err();
        let converted = decode_error("sha256:x", InputFormat::Gzip, 0, err);
        assert!(
            matches!(converted, ConvertError::TruncatedLayer { .. }),
            "{converted}"
        );
    }

    #[test]
    fn wrong_digest_is_detected_after_reading() {
        let count = Arc::new(AtomicU64::new(0));
        let reader = HashingReader::new(&b"data"[..], count);
        let expected = estargz::Digest::of(b"other").to_string();
        assert!(matches!(
            reader.finish(&expected, 4, std::path::Path::new("blob")),
            Err(ConvertError::DigestMismatch { .. })
        ));
    }
}
