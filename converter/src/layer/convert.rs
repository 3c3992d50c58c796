//! Converting one layer blob into eStargz, on a blocking thread.
//!
//! Data flow, with memory bounded by the writer's pipeline (threads × chunk size) and a few
//! 1 MiB buffers, never by the layer size:
//!
//! ```text
//! source blob file ──hash──▶ decompressor ──▶ temporary tar file ──▶ estargz writer ──▶ temporary blob file
//! ```
//!
//! The temporary files live in `--tmpdir` and are deleted when their handles drop, on every
//! path, errors and cancellation included. An uncompressed source blob is read in place instead
//! of being copied.

use std::io::{BufWriter, Read, Seek, SeekFrom, Write};
use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use estargz::build::{BuildOptions, BuildOutput, build_with_progress};
use estargz::{BuildError, TarError};
use tokio_util::sync::CancellationToken;

use super::input::{Decoder, HashingReader, InputFormat, decode_error};
use crate::descriptor::Descriptor;
use crate::error::ConvertError;
use crate::progress::{LayerProgress, Phase};
use crate::store::LocalBlob;

/// Size of the copy buffer while decompressing.
const COPY_BUFFER_BYTES: usize = 1 << 20;

/// A converted layer: the writer's result and the blob file.
pub struct ConvertedBlob {
    /// Digests, sizes and counts from the writer.
    pub output: BuildOutput,
    /// The eStargz blob; deleted on drop unless moved into an OCI layout.
    pub blob: tempfile::TempPath,
}

/// Converts `blob` (of format `format`) into an eStargz blob in `tmpdir`.
pub fn convert(
    blob: &mut LocalBlob,
    descriptor: &Descriptor,
    format: InputFormat,
    options: &BuildOptions,
    tmpdir: &Path,
    progress: &LayerProgress,
    cancel: &CancellationToken,
) -> Result<ConvertedBlob, ConvertError> {
    let layer = descriptor.digest.as_str();
    // Keeps the spooled tar alive until the writer is done; dropping it deletes the file.
    let spooled;
    let tar = match format {
        InputFormat::Tar => {
            verify_digest(blob, descriptor, progress, cancel)?;
            blob.file
                .try_clone()
                .map_err(|e| ConvertError::io("reading", &blob.path, e))?
        }
        _ => {
            spooled = spool(blob, descriptor, format, tmpdir, progress, cancel)?;
            spooled
                .reopen()
                .map_err(|e| ConvertError::io("reading", spooled.path(), e))?
        }
    };
    let mut tar = tar;
    tar.seek(SeekFrom::Start(0))
        .map_err(|e| ConvertError::io("reading", tmpdir, e))?;

    let out = tempfile::Builder::new()
        .prefix("lazypull-estargz-")
        .tempfile_in(tmpdir)
        .map_err(|e| ConvertError::io("creating a temporary file in", tmpdir, e))?;
    let (out_file, out_path) = out.into_parts();
    let writer = CancellableWriter {
        inner: BufWriter::with_capacity(COPY_BUFFER_BYTES, out_file),
        cancel,
    };
    let mut phase_started = false;
    let built = build_with_progress(tar, writer, options, &mut |p| {
        if !phase_started {
            progress.phase(Phase::Convert, p.total);
            phase_started = true;
        }
        progress.set(p.done);
    });
    let output = built.map_err(|error| {
        if cancel.is_cancelled() {
            return ConvertError::Cancelled;
        }
        match error {
            BuildError::Tar(
                TarError::InvalidHeader { .. }
                | TarError::Truncated { .. }
                | TarError::InvalidExtension { .. },
            ) => ConvertError::NotTar {
                layer: layer.to_string(),
                source: error,
            },
            BuildError::Io(io) => ConvertError::io("writing", &out_path, io),
            other => ConvertError::Build {
                layer: layer.to_string(),
                source: other,
            },
        }
    })?;
    Ok(ConvertedBlob {
        output,
        blob: out_path,
    })
}

/// Decompresses the blob into a temporary tar file, checking the blob digest on the way.
fn spool(
    blob: &mut LocalBlob,
    descriptor: &Descriptor,
    format: InputFormat,
    tmpdir: &Path,
    progress: &LayerProgress,
    cancel: &CancellationToken,
) -> Result<tempfile::NamedTempFile, ConvertError> {
    let layer = descriptor.digest.as_str();
    progress.phase(Phase::Decompress, descriptor.size);
    blob.file
        .seek(SeekFrom::Start(0))
        .map_err(|e| ConvertError::io("reading", &blob.path, e))?;
    let mut temp = tempfile::Builder::new()
        .prefix("lazypull-tar-")
        .tempfile_in(tmpdir)
        .map_err(|e| ConvertError::io("creating a temporary file in", tmpdir, e))?;
    let temp_path = temp.path().to_path_buf();

    let read = Arc::new(AtomicU64::new(0));
    let input = HashingReader::new(&blob.file, Arc::clone(&read));
    let mut decoder = Decoder::new(format, input).map_err(|e| decode_error(layer, format, 0, e))?;
    let mut out = BufWriter::with_capacity(COPY_BUFFER_BYTES, temp.as_file_mut());
    let mut buf = vec![0u8; COPY_BUFFER_BYTES];
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
        out.write_all(&buf[..n])
            .map_err(|e| ConvertError::io("writing", &temp_path, e))?;
        progress.set(read.load(Ordering::Relaxed));
    }
    out.flush()
        .map_err(|e| ConvertError::io("writing", &temp_path, e))?;
    drop(out);
    decoder
        .into_input()
        .finish(layer, descriptor.size, &blob.path)?;
    Ok(temp)
}

/// Reads an uncompressed blob once to check its digest, before it is used in place.
fn verify_digest(
    blob: &mut LocalBlob,
    descriptor: &Descriptor,
    progress: &LayerProgress,
    cancel: &CancellationToken,
) -> Result<(), ConvertError> {
    progress.phase(Phase::Verify, descriptor.size);
    blob.file
        .seek(SeekFrom::Start(0))
        .map_err(|e| ConvertError::io("reading", &blob.path, e))?;
    let read = Arc::new(AtomicU64::new(0));
    let mut input = HashingReader::new(&blob.file, Arc::clone(&read));
    let mut buf = vec![0u8; COPY_BUFFER_BYTES];
    loop {
        if cancel.is_cancelled() {
            return Err(ConvertError::Cancelled);
        }
        let n = input
            .read(&mut buf)
            .map_err(|e| ConvertError::io("reading", &blob.path, e))?;
        if n == 0 {
            break;
        }
        progress.set(read.load(Ordering::Relaxed));
    }
    input.finish(&descriptor.digest, descriptor.size, &blob.path)
}

/// A writer that fails once the conversion is cancelled, so the format writer stops early.
struct CancellableWriter<'a, W> {
    inner: W,
    cancel: &'a CancellationToken,
}

impl<W: Write> Write for CancellableWriter<'_, W> {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        if self.cancel.is_cancelled() {
            return Err(std::io::Error::other("conversion cancelled"));
        }
        self.inner.write(buf)
    }

    fn flush(&mut self) -> std::io::Result<()> {
        self.inner.flush()
    }
}

/// Computes the two zstd:chunked annotations stargz-snapshotter's converter writes besides the TOC
/// digest: `io.containers.zstd-chunked.manifest-checksum` (sha256 of the compressed TOC) and
/// `io.containers.zstd-chunked.manifest-position` (`offset:compressed:uncompressed:1`).
pub fn zstd_chunked_annotations(path: &Path) -> Result<Vec<(String, String)>, ConvertError> {
    let file = std::fs::File::open(path).map_err(|e| ConvertError::io("reading", path, e))?;
    let location = estargz::blob::locate_toc(&file).map_err(|e| ConvertError::Internal {
        what: format!("reading the footer of the new blob {}", path.display()),
        message: e.to_string(),
    })?;
    let mut compressed = vec![0u8; usize::try_from(location.compressed_len).unwrap_or(0)];
    std::os::unix::fs::FileExt::read_exact_at(&file, &mut compressed, location.offset)
        .map_err(|e| ConvertError::io("reading", path, e))?;
    let checksum = estargz::Digest::of(&compressed);
    let position = format!(
        "{}:{}:{}:1",
        location.offset,
        location.compressed_len,
        location.uncompressed_len.unwrap_or(0)
    );
    Ok(vec![
        (
            "io.containers.zstd-chunked.manifest-checksum".to_string(),
            checksum.to_string(),
        ),
        (
            "io.containers.zstd-chunked.manifest-position".to_string(),
            position,
        ),
    ])
}
