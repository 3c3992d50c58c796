//! Loading a layer's footer and TOC in as few range requests as possible.
//!
//! The first request reads the last `toc_tail_bytes` of the blob. That tail contains the footer and,
//! for most layers, the whole compressed TOC (the TOC sits just before the footer). Only when
//! the TOC starts before the tail does a second request fetch the missing front part.

use bytes::{Bytes, BytesMut};
use estargz::blob::{compression_of, decode_toc, verify_toc};
use estargz::footer::{FooterKind, TocLocation, parse_footer};
use estargz::index::{IndexOptions, LayerIndex};
use estargz::{Compression, Digest, FooterError, Limits, TocError};

use crate::fetch::{LayerStats, Purpose};
use crate::remote::BlobSource;

use super::config::LayerConfig;
use super::error::LayerError;
use super::info::LayerInfo;

/// Size of the skippable frame header in front of a zstd:chunked TOC.
const ZSTD_SKIPPABLE_HEADER: u64 = 8;

/// A verified TOC turned into an index.
pub(crate) struct LoadedToc {
    pub(crate) index: LayerIndex,
    pub(crate) compression: Compression,
    pub(crate) toc_digest: Digest,
    /// Length of the TOC JSON, dropped once the index is built.
    pub(crate) json_len: usize,
}

/// Reads, verifies and indexes the TOC of `info`'s blob.
pub(crate) async fn load_toc(
    info: &LayerInfo,
    source: &dyn BlobSource,
    config: &LayerConfig,
    stats: &LayerStats,
) -> Result<LoadedToc, LayerError> {
    let layer = info.digest;
    if info.toc_digest.is_none() && !config.allow_unverified {
        return Err(LayerError::MissingTocDigest { layer });
    }
    let size = source.size();
    if size != info.size {
        return Err(LayerError::SizeMismatch {
            layer,
            expected: info.size,
            actual: size,
        });
    }

    let tail_start = size - config.toc_tail_bytes.min(size);
    let tail = read(source, stats, layer, "footer and TOC", tail_start, size).await?;
    let location = parse_footer(&tail, size).map_err(|error| {
        if let FooterError::ContainersStorageZstd { .. } = error {
            // An intact blob of another zstd:chunked dialect, not a damaged one.
            let reasons = error.to_string();
            return LayerError::NotEstargz { layer, reasons };
        }
        let reasons = match error {
            FooterError::NotEstargz { reasons, .. } => reasons,
            other => other.to_string(),
        };
        // A TOC digest means the layer was converted, so a missing footer points at the bytes.
        match info.toc_digest {
            Some(toc_digest) => LayerError::DamagedBlob {
                layer,
                size,
                toc_digest,
                reasons,
            },
            None => LayerError::NotEstargz { layer, reasons },
        }
    })?;
    if location.kind == FooterKind::ExternalToc {
        return Err(LayerError::ExternalToc { layer });
    }
    let limits = Limits::default();
    if location.compressed_len > limits.max_toc_compressed_bytes {
        let source = TocError::TooLarge {
            what: "compressed TOC",
            value: location.compressed_len,
            limit: limits.max_toc_compressed_bytes,
        };
        return Err(LayerError::Toc { layer, source });
    }
    let compressed = toc_bytes(source, stats, layer, &location, tail, tail_start).await?;

    let expected = info.toc_digest;
    let decoded =
        tokio::task::spawn_blocking(move || index_toc(compressed, &location, expected, limits))
            .await
            .map_err(|_| LayerError::TocTask { layer })?;
    decoded.map_err(|source| LayerError::Toc { layer, source })
}

/// Returns the compressed TOC: a slice of the tail, or the tail completed by a read of the front
/// part.
async fn toc_bytes(
    source: &dyn BlobSource,
    stats: &LayerStats,
    layer: Digest,
    location: &TocLocation,
    tail: Bytes,
    tail_start: u64,
) -> Result<Bytes, LayerError> {
    // parse_footer guarantees that the TOC ends before the footer, so inside the tail.
    let toc_end = location.offset + location.compressed_len;
    let in_tail_end = (toc_end - tail_start) as usize;
    if location.offset >= tail_start {
        return Ok(tail.slice((location.offset - tail_start) as usize..in_tail_end));
    }
    let front = read(source, stats, layer, "TOC", location.offset, tail_start).await?;
    let mut whole = BytesMut::with_capacity(location.compressed_len as usize);
    whole.extend_from_slice(&front);
    whole.extend_from_slice(&tail[..in_tail_end]);
    Ok(whole.freeze())
}

async fn read(
    source: &dyn BlobSource,
    stats: &LayerStats,
    layer: Digest,
    what: &'static str,
    start: u64,
    end: u64,
) -> Result<Bytes, LayerError> {
    LayerStats::add(&stats.requests, 1);
    match source.read_range(start..end).await {
        Ok(bytes) => {
            stats.add_fetched(Purpose::Demand, bytes.len() as u64);
            Ok(bytes)
        }
        Err(source) => {
            LayerStats::add(&stats.request_failures, 1);
            Err(LayerError::Remote {
                layer,
                what,
                start,
                end,
                source: Box::new(source),
            })
        }
    }
}

/// Decompresses, verifies and indexes the TOC. CPU-bound: runs on the blocking pool.
fn index_toc(
    compressed: Bytes,
    location: &TocLocation,
    expected: Option<Digest>,
    limits: Limits,
) -> Result<LoadedToc, TocError> {
    let json = decode_toc(&compressed, location, &limits)?;
    // Peak memory is the JSON plus the index being built; the compressed copy is not needed.
    drop(compressed);
    let toc_digest = verify_toc(&json, expected)?;
    let payload_end = match location.kind {
        FooterKind::ZstdChunked => location.offset.saturating_sub(ZSTD_SKIPPABLE_HEADER),
        _ => location.offset,
    };
    let options = IndexOptions {
        overlay_whiteouts: true,
        hide_landmarks: true,
        limits,
    };
    let index = LayerIndex::from_toc_json(&json, payload_end, &options)?;
    Ok(LoadedToc {
        index,
        compression: compression_of(location.kind),
        toc_digest,
        json_len: json.len(),
    })
}
