//! Parallel member compression with bounded memory.
//!
//! The producer cuts the uncompressed stream into members and hands each one to a pool of
//! workers; a writer thread puts the compressed members back in order and records where each one
//! starts in the blob. A fixed number of tokens bounds the members in flight, so memory stays
//! near `(2 x threads + 2) x member size` however large the layer is.

use std::collections::BTreeMap;
use std::io::Write;
use std::sync::mpsc::{Receiver, SyncSender, sync_channel};
use std::sync::{Arc, Mutex};

use crate::Compression;
use crate::digest::Hasher;
use crate::error::BuildError;

/// Identifies a member by its position in the blob (0 = first).
pub type MemberId = usize;

/// Compresses one member on its own (gzip member or zstd frame).
pub struct MemberCompressor {
    compression: Compression,
    level: i32,
    zstd: Option<zstd::bulk::Compressor<'static>>,
}

impl MemberCompressor {
    /// Creates a compressor for `compression` at `level`.
    pub fn new(compression: Compression, level: i32) -> std::io::Result<Self> {
        let zstd = match compression {
            Compression::Gzip => None,
            Compression::Zstd => {
                let mut c = zstd::bulk::Compressor::new(level)?;
                c.include_checksum(true)?;
                c.include_contentsize(true)?;
                Some(c)
            }
        };
        Ok(MemberCompressor {
            compression,
            level,
            zstd,
        })
    }

    /// Compresses `data` into one complete member or frame.
    pub fn compress(&mut self, data: &[u8]) -> std::io::Result<Vec<u8>> {
        match (&self.compression, &mut self.zstd) {
            (Compression::Zstd, Some(compressor)) => compressor.compress(data),
            _ => {
                let level = flate2::Compression::new(self.level.clamp(0, 9) as u32);
                let mut encoder =
                    flate2::write::GzEncoder::new(Vec::with_capacity(data.len() / 2 + 64), level);
                encoder.write_all(data)?;
                encoder.finish()
            }
        }
    }
}

/// The producer's end: collects uncompressed bytes and cuts them into members.
pub struct MemberSink {
    current: Vec<u8>,
    next_id: MemberId,
    jobs: SyncSender<(MemberId, Vec<u8>)>,
    tokens: Receiver<()>,
    uncompressed: Hasher,
    uncompressed_len: u64,
    member_cap: usize,
}

impl MemberSink {
    /// Appends bytes to the current member.
    pub fn write(&mut self, data: &[u8]) {
        self.uncompressed.update(data);
        self.uncompressed_len += data.len() as u64;
        self.current.extend_from_slice(data);
    }

    /// Appends `len` zero bytes.
    pub fn write_zeros(&mut self, len: usize) {
        const ZEROS: [u8; 512] = [0; 512];
        let mut left = len;
        while left > 0 {
            let n = left.min(ZEROS.len());
            self.write(&ZEROS[..n]);
            left -= n;
        }
    }

    /// Closes the current member (if it holds anything) and returns the id of the member that the
    /// next written byte will start.
    pub fn start_member(&mut self) -> Result<MemberId, BuildError> {
        self.flush()?;
        Ok(self.next_id)
    }

    /// Closes the current member when it has grown past the member cap. Called between entries,
    /// so long runs of headers do not build one huge member.
    pub fn maybe_cut(&mut self) -> Result<(), BuildError> {
        if self.current.len() >= self.member_cap {
            self.flush()?;
        }
        Ok(())
    }

    /// Bytes written so far, uncompressed.
    pub fn uncompressed_len(&self) -> u64 {
        self.uncompressed_len
    }

    /// Appends `len` bytes produced by `fill`, which writes them in place (no extra copy).
    pub fn write_with<E>(
        &mut self,
        len: usize,
        fill: impl FnOnce(&mut [u8]) -> Result<(), E>,
    ) -> Result<&[u8], E> {
        let start = self.current.len();
        self.current.resize(start + len, 0);
        if let Err(e) = fill(&mut self.current[start..]) {
            self.current.truncate(start);
            return Err(e);
        }
        self.uncompressed.update(&self.current[start..]);
        self.uncompressed_len += len as u64;
        Ok(&self.current[start..])
    }

    fn flush(&mut self) -> Result<(), BuildError> {
        if self.current.is_empty() {
            return Ok(());
        }
        let data = std::mem::replace(
            &mut self.current,
            Vec::with_capacity(self.member_cap.min(1 << 20)),
        );
        // Wait for a free slot; the writer returns one after each member it writes. A closed
        // channel means the writer stopped on an error, which the caller collects on join.
        self.tokens.recv().map_err(|_| pipeline_stopped())?;
        self.jobs
            .send((self.next_id, data))
            .map_err(|_| pipeline_stopped())?;
        self.next_id += 1;
        Ok(())
    }
}

fn pipeline_stopped() -> BuildError {
    BuildError::Io(std::io::Error::other("compression pipeline stopped"))
}

/// What the writer produced.
pub struct Written<W> {
    /// The output, positioned after the last member.
    pub out: W,
    /// Blob offset of every member, by id.
    pub member_offsets: Vec<u64>,
    /// Bytes written.
    pub len: u64,
    /// Digest state over everything written.
    pub hasher: Hasher,
}

/// What the producer produced, besides its own result.
pub struct Produced {
    /// Digest state over the uncompressed stream, to be continued with the TOC.
    pub uncompressed: Hasher,
    /// Length of the uncompressed stream.
    pub uncompressed_len: u64,
}

/// Runs `produce` with a sink whose members are compressed on `threads` workers and written to
/// `out` in order.
pub fn run<W, T, F>(
    out: W,
    threads: usize,
    compression: Compression,
    level: i32,
    member_cap: usize,
    produce: F,
) -> Result<(T, Produced, Written<W>), BuildError>
where
    W: Write + Send,
    F: FnOnce(&mut MemberSink) -> Result<T, BuildError>,
{
    let threads = threads.max(1);
    let in_flight = 2 * threads + 2;
    let (job_tx, job_rx) = sync_channel::<(MemberId, Vec<u8>)>(in_flight);
    let (done_tx, done_rx) = sync_channel::<(MemberId, std::io::Result<Vec<u8>>)>(in_flight);
    let (token_tx, token_rx) = sync_channel::<()>(in_flight);
    for _ in 0..in_flight {
        token_tx.send(()).map_err(|_| pipeline_stopped())?;
    }
    let job_rx = Arc::new(Mutex::new(job_rx));

    std::thread::scope(|scope| {
        for _ in 0..threads {
            let job_rx = Arc::clone(&job_rx);
            let done_tx = done_tx.clone();
            scope.spawn(move || {
                let mut compressor = match MemberCompressor::new(compression, level) {
                    Ok(c) => c,
                    Err(e) => {
                        let _ = done_tx.send((usize::MAX, Err(e)));
                        return;
                    }
                };
                loop {
                    let job = match job_rx.lock() {
                        Ok(rx) => rx.recv(),
                        Err(_) => return,
                    };
                    let Ok((id, data)) = job else { return };
                    if done_tx.send((id, compressor.compress(&data))).is_err() {
                        return;
                    }
                }
            });
        }
        drop(done_tx);

        let writer = scope.spawn(move || -> Result<Written<W>, BuildError> {
            let mut out = out;
            let mut pending: BTreeMap<MemberId, Vec<u8>> = BTreeMap::new();
            let mut next: MemberId = 0;
            let mut written = Written {
                out: (),
                member_offsets: Vec::new(),
                len: 0,
                hasher: Hasher::new(),
            };
            for (id, result) in done_rx.iter() {
                pending.insert(id, result?);
                while let Some(member) = pending.remove(&next) {
                    written.member_offsets.push(written.len);
                    out.write_all(&member)?;
                    written.hasher.update(&member);
                    written.len += member.len() as u64;
                    next += 1;
                    // The producer may be gone already; a missing receiver is fine here.
                    let _ = token_tx.send(());
                }
            }
            Ok(Written {
                out,
                member_offsets: written.member_offsets,
                len: written.len,
                hasher: written.hasher,
            })
        });

        let mut sink = MemberSink {
            current: Vec::new(),
            next_id: 0,
            jobs: job_tx,
            tokens: token_rx,
            uncompressed: Hasher::new(),
            uncompressed_len: 0,
            member_cap,
        };
        let produced = produce(&mut sink).and_then(|value| {
            sink.flush()?;
            Ok(value)
        });
        let MemberSink {
            jobs,
            uncompressed,
            uncompressed_len,
            tokens,
            ..
        } = sink;
        drop(jobs);
        drop(tokens);
        let written = writer
            .join()
            .map_err(|_| BuildError::Io(std::io::Error::other("writer thread panicked")))?;
        // A producer error caused by a stopped writer is less precise than the writer's own error.
        let written = written?;
        let value = produced?;
        Ok((
            value,
            Produced {
                uncompressed,
                uncompressed_len,
            },
            written,
        ))
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::digest::Digest;
    use std::io::Read;

    #[test]
    fn members_come_out_in_order_and_decode_to_the_input() {
        for threads in [1, 2, 4] {
            let mut ids = Vec::new();
            let (_, produced, written) =
                run(Vec::new(), threads, Compression::Gzip, 6, 1 << 20, |sink| {
                    for i in 0..50u32 {
                        ids.push(sink.start_member()?);
                        sink.write(&vec![i as u8; (i as usize * 997) % 5000 + 1]);
                    }
                    Ok(())
                })
                .unwrap();
            assert_eq!(ids, (0..50).collect::<Vec<_>>());
            assert_eq!(written.member_offsets.len(), 50);
            let mut decoded = Vec::new();
            flate2::read::MultiGzDecoder::new(&written.out[..])
                .read_to_end(&mut decoded)
                .unwrap();
            assert_eq!(decoded.len() as u64, produced.uncompressed_len);
            assert_eq!(Digest::of(&decoded), produced.uncompressed.finish());
            // Each member decodes on its own from its recorded offset.
            let start = written.member_offsets[7] as usize;
            let mut one = Vec::new();
            flate2::read::GzDecoder::new(&written.out[start..])
                .read_to_end(&mut one)
                .unwrap();
            assert_eq!(one, vec![7u8; 7 * 997 % 5000 + 1]);
        }
    }

    #[test]
    fn write_error_stops_the_pipeline() {
        struct Failing;
        impl Write for Failing {
            fn write(&mut self, _: &[u8]) -> std::io::Result<usize> {
                Err(std::io::Error::other("disk full"))
            }
            fn flush(&mut self) -> std::io::Result<()> {
                Ok(())
            }
        }
        let result = run(Failing, 2, Compression::Zstd, 3, 1024, |sink| {
            for _ in 0..1000 {
                sink.start_member()?;
                sink.write(&[1; 100]);
            }
            Ok(())
        });
        let err = result.err().expect("must fail");
        assert!(err.to_string().contains("I/O"), "{err}");
    }
}
