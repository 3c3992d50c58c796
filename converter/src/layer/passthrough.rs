//! Layers that are already eStargz: recognise them, verify them and keep them unchanged.
//!
//! A blob passes through when its footer is an eStargz gzip or zstd:chunked footer and
//! `--reconvert` is not given. It is then checked completely: its digest, its TOC against the
//! TOC-digest annotation (when present), and its decompressed stream against the config's
//! diffID, which is kept. Legacy stargz and external-TOC blobs are converted instead, because the
//! snapshotter needs a TOC inside the blob with chunk digests.

use std::io::{Read, Seek, SeekFrom};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use estargz::blob::{BlobOptions, open_blob};
use estargz::digest::Hasher;
use estargz::footer::{FooterKind, TocLocation};
use tokio_util::sync::CancellationToken;

use super::input::{Decoder, HashingReader, InputFormat, decode_error};
use crate::descriptor::Descriptor;
use crate::error::ConvertError;
use crate::progress::{LayerProgress, Phase};
use crate::store::LocalBlob;

/// Verdict on a blob's footer.
pub enum FooterCheck {
    /// An eStargz footer this converter passes through.
    Estargz(TocLocation),
    /// A stargz variant that must be converted, with the reason for the log.
    ConvertAnyway(&'static str),
    /// No stargz footer. The message gives the reason each variant was rejected.
    NotEstargz(String),
}

/// Reads the footer of a blob.
pub fn check_footer(blob: &LocalBlob) -> FooterCheck {
    match estargz::blob::locate_toc(&blob.file) {
        Ok(location) => match location.kind {
            FooterKind::Gzip | FooterKind::ZstdChunked => FooterCheck::Estargz(location),
            FooterKind::LegacyGzip => {
                FooterCheck::ConvertAnyway("legacy stargz without chunk digests")
            }
            FooterKind::ExternalToc => FooterCheck::ConvertAnyway("eStargz with an external TOC"),
        },
        Err(error) => FooterCheck::NotEstargz(error.to_string()),
    }
}

/// Facts about a verified eStargz layer.
pub struct PassedLayer {
    /// Digest of its TOC JSON.
    pub toc_digest: estargz::Digest,
    /// Number of TOC entries.
    pub toc_entries: usize,
    /// Length of the decompressed stream.
    pub uncompressed_size: u64,
    /// Compression of its members.
    pub compression: estargz::Compression,
}

/// Verifies an eStargz layer that will pass through unchanged.
pub fn verify(
    blob: &mut LocalBlob,
    descriptor: &Descriptor,
    location: &TocLocation,
    config_diff_id: &str,
    progress: &LayerProgress,
    cancel: &CancellationToken,
) -> Result<PassedLayer, ConvertError> {
    let layer = descriptor.digest.as_str();
    let compression = estargz::blob::compression_of(location.kind);
    let format = match compression {
        estargz::Compression::Gzip => InputFormat::Gzip,
        estargz::Compression::Zstd => InputFormat::Zstd,
    };

    // Digest and diffID first: a modified blob is reported as such, not as a broken TOC.
    progress.phase(Phase::Verify, descriptor.size);
    let (diff_id, uncompressed_size) = hash_stream(blob, descriptor, format, progress, cancel)?;
    if diff_id.to_string() != config_diff_id {
        return Err(ConvertError::DiffIdMismatch {
            layer: layer.to_string(),
            expected: config_diff_id.to_string(),
            actual: diff_id,
        });
    }

    let annotated = descriptor.annotations.get(estargz::TOC_DIGEST_ANNOTATION);
    let opened = open_blob(&blob.file, &BlobOptions::default()).map_err(|source| {
        ConvertError::BrokenEstargz {
            layer: layer.to_string(),
            source,
        }
    })?;
    if let Some(annotated) = annotated
        && *annotated != opened.toc_digest.to_string()
    {
        return Err(ConvertError::TocDigestMismatch {
            layer: layer.to_string(),
            annotated: annotated.clone(),
            actual: opened.toc_digest,
        });
    }
    Ok(PassedLayer {
        toc_digest: opened.toc_digest,
        toc_entries: opened.index.stats().toc_entries,
        uncompressed_size,
        compression,
    })
}

/// Decompresses the whole blob, checking its digest, and returns its diffID and length.
fn hash_stream(
    blob: &mut LocalBlob,
    descriptor: &Descriptor,
    format: InputFormat,
    progress: &LayerProgress,
    cancel: &CancellationToken,
) -> Result<(estargz::Digest, u64), ConvertError> {
    let layer = descriptor.digest.as_str();
    blob.file
        .seek(SeekFrom::Start(0))
        .map_err(|e| ConvertError::io("reading", &blob.path, e))?;
    let read = Arc::new(AtomicU64::new(0));
    let input = HashingReader::new(&blob.file, Arc::clone(&read));
    let mut decoder = Decoder::new(format, input).map_err(|e| decode_error(layer, format, 0, e))?;
    let mut hasher = Hasher::new();
    let mut total = 0u64;
    let mut buf = vec![0u8; 1 << 20];
    loop {
        if cancel.is_cancelled() {
            return Err(ConvertError::Cancelled);
        }
        let n = match decoder.read(&mut buf) {
            Ok(n) => n,
            Err(error) => {
                // A modified blob usually fails to decode: report the digest mismatch first.
                decoder
                    .into_input()
                    .finish(layer, descriptor.size, &blob.path)?;
                return Err(decode_error(
                    layer,
                    format,
                    read.load(Ordering::Relaxed),
                    error,
                ));
            }
        };
        if n == 0 {
            break;
        }
        hasher.update(&buf[..n]);
        total += n as u64;
        progress.set(read.load(Ordering::Relaxed));
    }
    decoder
        .into_input()
        .finish(layer, descriptor.size, &blob.path)?;
    Ok((hasher.finish(), total))
}
