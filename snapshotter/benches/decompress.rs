//! Decompression benchmarks for the chunk read path, gzip members against zstd frames.
//!
//! * `decode_chunk`: one 4 MiB chunk of real file data (executables and libraries from the host's
//!   `/usr`), decoded and verified by `estargz::blob::decode_chunk` on one thread. The time is the
//!   thread's CPU time, not wall time, so the throughput is MB/s of uncompressed output per core
//!   even on a loaded machine.
//! * `prefetch_50_chunks`: opening a layer whose 50 chunks of 1 MiB are all prioritized, so that
//!   prefetch fetches them in one range request and decompresses them on every core.
//!
//! Run with `cargo bench -p lazypull-snapshotter --bench decompress`.

#[path = "../tests/read_path_support/mod.rs"]
mod support;

use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use criterion::measurement::{Measurement, ValueFormatter, WallTime};
use criterion::{BatchSize, Criterion, Throughput};
use estargz::Compression;
use estargz::build::{BuildOptions, DEFAULT_GZIP_LEVEL, DEFAULT_ZSTD_LEVEL};
use lazypull_snapshotter::cache::ChunkCache;
use lazypull_snapshotter::layer::{Layer, LayerConfig, PrefetchState};
use support::{Built, FileSpec, build_with};
use tokio::runtime::Runtime;

const MIB: usize = 1 << 20;
const PREFETCH_CHUNKS: usize = 50;

/// Concatenates regular files under the host's library and binary directories, in name order,
/// until `len` bytes are collected.
fn real_file_data(len: usize) -> Vec<u8> {
    let mut data = Vec::with_capacity(len);
    for dir in ["/usr/lib/x86_64-linux-gnu", "/usr/lib", "/usr/bin"] {
        collect_files(Path::new(dir), len, &mut data);
        if data.len() >= len {
            break;
        }
    }
    assert!(
        data.len() >= len,
        "the host's /usr holds fewer than {len} bytes of regular files"
    );
    data.truncate(len);
    data
}

fn collect_files(dir: &Path, len: usize, data: &mut Vec<u8>) {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return;
    };
    let mut paths: Vec<_> = entries.filter_map(|e| e.ok().map(|e| e.path())).collect();
    paths.sort();
    for path in paths {
        if data.len() >= len {
            return;
        }
        let Ok(meta) = std::fs::symlink_metadata(&path) else {
            continue;
        };
        if meta.is_file()
            && let Ok(bytes) = std::fs::read(&path)
        {
            data.extend_from_slice(&bytes);
        }
    }
}

fn options(compression: Compression, chunk_size: usize, prioritized: &[String]) -> BuildOptions {
    let level = match compression {
        Compression::Gzip => DEFAULT_GZIP_LEVEL,
        Compression::Zstd => DEFAULT_ZSTD_LEVEL,
    };
    BuildOptions {
        chunk_size: chunk_size as u64,
        compression,
        level,
        prioritized: prioritized.iter().map(|p| p.as_bytes().to_vec()).collect(),
        threads: 2,
        ..BuildOptions::default()
    }
}

fn label(compression: Compression) -> &'static str {
    match compression {
        Compression::Gzip => "gzip",
        Compression::Zstd => "zstd",
    }
}

/// CPU time of the calling thread, which other processes on a busy machine do not inflate.
struct ThreadCpuTime;

impl ThreadCpuTime {
    fn now() -> Duration {
        let mut ts = libc::timespec {
            tv_sec: 0,
            tv_nsec: 0,
        };
        // SAFETY: `ts` is a valid, writable timespec and the clock id is a constant that Linux
        // supports; clock_gettime writes nothing else.
        let rc = unsafe { libc::clock_gettime(libc::CLOCK_THREAD_CPUTIME_ID, &mut ts) };
        assert_eq!(rc, 0, "clock_gettime(CLOCK_THREAD_CPUTIME_ID) failed");
        Duration::new(ts.tv_sec as u64, ts.tv_nsec as u32)
    }
}

impl Measurement for ThreadCpuTime {
    type Intermediate = Duration;
    type Value = Duration;

    fn start(&self) -> Duration {
        Self::now()
    }

    fn end(&self, start: Duration) -> Duration {
        Self::now().saturating_sub(start)
    }

    fn add(&self, v1: &Duration, v2: &Duration) -> Duration {
        *v1 + *v2
    }

    fn zero(&self) -> Duration {
        Duration::ZERO
    }

    fn to_f64(&self, value: &Duration) -> f64 {
        value.as_nanos() as f64
    }

    fn formatter(&self) -> &dyn ValueFormatter {
        // Values are nanoseconds, as with wall time, so its formatter applies unchanged.
        WallTime.formatter()
    }
}

fn decode_chunk(c: &mut Criterion<ThreadCpuTime>, data: &[u8]) {
    let mut group = c.benchmark_group("decode_chunk");
    group.throughput(Throughput::Bytes(data.len() as u64));
    group.sample_size(20);
    for compression in [Compression::Gzip, Compression::Zstd] {
        let file = FileSpec::new("dir/chunk.bin", data.to_vec());
        let built = build_with(vec![file], &options(compression, data.len(), &[]));
        let opened = estargz::blob::open_blob(
            &&built.blob[..],
            &estargz::blob::BlobOptions::verify_with(built.toc_digest),
        )
        .expect("built blob opens");
        let node = support::node(&opened.index, "dir/chunk.bin");
        let chunks = opened.index.chunks(node);
        assert_eq!(chunks.len(), 1, "the file is one chunk");
        let chunk = chunks[0];
        let span = &built.blob[chunk.comp_offset() as usize..chunk.comp_end() as usize];
        println!(
            "decode_chunk/{}: {} bytes -> {} compressed ({:.3} of the input)",
            label(compression),
            data.len(),
            span.len(),
            span.len() as f64 / data.len() as f64
        );
        group.bench_function(label(compression), |b| {
            b.iter(|| estargz::blob::decode_chunk(span, &chunk, compression).unwrap())
        });
    }
    // The share of the time above that verification takes, since decode_chunk hashes its output.
    group.bench_function("sha256_only", |b| b.iter(|| estargz::Digest::of(data)));
    group.finish();
}

fn prefetch_layer(data: &[u8], compression: Compression) -> Built {
    let files: Vec<FileSpec> = (0..PREFETCH_CHUNKS)
        .map(|i| {
            let start = (i * MIB) % (data.len() - MIB);
            FileSpec::new(
                &format!("dir/f{i:02}.bin"),
                data[start..start + MIB].to_vec(),
            )
        })
        .collect();
    let paths: Vec<String> = files.iter().map(|f| f.path.clone()).collect();
    build_with(files, &options(compression, MIB, &paths))
}

async fn open_and_prefetch(built: &Built, config: &LayerConfig) {
    let cache = Arc::new(ChunkCache::in_memory(256 << 20));
    let layer = Layer::open(&built.info(), built.source(), cache, config)
        .await
        .expect("generated layer opens");
    let state = layer.wait_prefetch(Duration::from_secs(120)).await;
    assert_eq!(
        state,
        PrefetchState::Done {
            chunks: PREFETCH_CHUNKS
        }
    );
    layer.close();
}

fn prefetch(c: &mut Criterion, data: &[u8]) {
    let runtime: Runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    let mut config = LayerConfig::default();
    config.prefetch.background = false;
    let mut group = c.benchmark_group("prefetch_50_chunks");
    group.throughput(Throughput::Bytes((PREFETCH_CHUNKS * MIB) as u64));
    group.sample_size(10);
    for compression in [Compression::Gzip, Compression::Zstd] {
        let built = prefetch_layer(data, compression);
        group.bench_function(label(compression), |b| {
            b.iter_batched(
                || (),
                |()| runtime.block_on(open_and_prefetch(&built, &config)),
                BatchSize::PerIteration,
            )
        });
    }
    group.finish();
}

fn main() {
    let data = real_file_data(8 * MIB);
    let mut cpu = Criterion::default()
        .with_measurement(ThreadCpuTime)
        .configure_from_args();
    decode_chunk(&mut cpu, &data[..4 * MIB]);
    let mut wall = Criterion::default().configure_from_args();
    prefetch(&mut wall, &data);
    wall.final_summary();
}
