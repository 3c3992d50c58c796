//! Read-path benchmarks: warm and cold reads of a 256 MiB file through `Layer::read` from an
//! in-memory blob source, sequential and random; opening a 150,000-entry layer; and a table of
//! range requests and bytes per merge rule (printed before the timings).
//!
//! Run with `cargo bench -p lazypull-snapshotter --bench read_path`. The blobs are generated at
//! startup, which takes several seconds.

#[path = "../tests/read_path_support/mod.rs"]
mod support;

use std::sync::Arc;
use std::time::Duration;

use criterion::{BatchSize, Criterion, Throughput};
use estargz::build::{BuildOptions, build};
use lazypull_snapshotter::cache::ChunkCache;
use lazypull_snapshotter::layer::{Layer, LayerConfig};
use lazypull_testkit::tarbuild::{Builder, Entry, pattern, text_pattern};
use support::{Built, FileSpec, MemSource, build_layer, node};
use tokio::runtime::Runtime;

const MIB: u64 = 1 << 20;

fn runtime() -> Runtime {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap()
}

fn config() -> LayerConfig {
    let mut config = LayerConfig::default();
    config.prefetch.background = false;
    config
}

/// A 256 MiB file in 4 MiB chunks: compressible text with incompressible stretches.
fn big_layer() -> Built {
    let mut data = Vec::with_capacity((256 * MIB) as usize);
    for i in 0..32 {
        data.extend(text_pattern((6 * MIB) as usize, i));
        data.extend(pattern((2 * MIB) as usize, 100 + i));
    }
    build_layer(vec![FileSpec::new("dir/big.bin", data)], 4 * MIB, &[])
}

async fn open(
    built: &Built,
    source: Arc<MemSource>,
    cache: Arc<ChunkCache>,
    config: &LayerConfig,
) -> Arc<Layer> {
    Layer::open(&built.info(), source, cache, config)
        .await
        .unwrap()
}

async fn read_sequential(layer: &Layer, path: &str, step: u32) -> u64 {
    let id = node(layer.index(), path);
    let size = layer.index().node(id).unwrap().size;
    let mut offset = 0;
    while offset < size {
        offset += layer.read(id, offset, step).await.unwrap().len() as u64;
    }
    offset
}

/// Reads `count` blocks of `step` bytes at pseudo-random aligned offsets.
async fn read_random(layer: &Layer, path: &str, step: u32, count: usize, seed: u64) -> u64 {
    let id = node(layer.index(), path);
    let blocks = layer.index().node(id).unwrap().size / u64::from(step);
    let mut state = seed;
    let mut total = 0;
    for _ in 0..count {
        state = state
            .wrapping_mul(6364136223846793005)
            .wrapping_add(1442695040888963407);
        let block = (state >> 33) % blocks;
        total += layer
            .read(id, block * u64::from(step), step)
            .await
            .unwrap()
            .len() as u64;
    }
    total
}

fn bench_reads(c: &mut Criterion, rt: &Runtime) {
    let built = big_layer();
    let size = 256 * MIB;
    let mut group = c.benchmark_group("read_256mib");
    group
        .sample_size(10)
        .measurement_time(Duration::from_secs(20));

    let warm = rt.block_on(async {
        let layer = open(
            &built,
            built.source(),
            Arc::new(ChunkCache::in_memory(512 * MIB)),
            &config(),
        )
        .await;
        read_sequential(&layer, "dir/big.bin", 1 << 20).await;
        layer
    });
    group.throughput(Throughput::Bytes(size));
    group.bench_function("warm_sequential_128k", |b| {
        b.iter(|| rt.block_on(read_sequential(&warm, "dir/big.bin", 128 << 10)))
    });
    group.throughput(Throughput::Bytes(4096 * 4096));
    group.bench_function("warm_random_4k_x4096", |b| {
        b.iter(|| rt.block_on(read_random(&warm, "dir/big.bin", 4096, 4096, 7)))
    });

    let cold = || {
        rt.block_on(open(
            &built,
            built.source(),
            Arc::new(ChunkCache::in_memory(512 * MIB)),
            &config(),
        ))
    };
    group.throughput(Throughput::Bytes(size));
    group.bench_function("cold_sequential_128k", |b| {
        b.iter_batched(
            cold,
            |layer| rt.block_on(read_sequential(&layer, "dir/big.bin", 128 << 10)),
            BatchSize::PerIteration,
        )
    });
    group.throughput(Throughput::Bytes(64 * 4096));
    group.bench_function("cold_random_4k_x64", |b| {
        b.iter_batched(
            cold,
            |layer| rt.block_on(read_random(&layer, "dir/big.bin", 4096, 64, 11)),
            BatchSize::PerIteration,
        )
    });
    group.finish();
}

fn bench_open_150k(c: &mut Criterion, rt: &Runtime) {
    let mut tar = Builder::new();
    for dir in 0..300 {
        tar.append(&Entry::dir(format!("d{dir:03}")));
        for file in 0..500 {
            tar.append(&Entry::file(
                format!("d{dir:03}/library-module-component-{file:05}.py"),
                pattern(16, dir * 500 + file),
            ));
        }
    }
    let options = BuildOptions {
        level: 1,
        threads: 2,
        ..BuildOptions::default()
    };
    let mut blob = Vec::new();
    let out = build(std::io::Cursor::new(tar.finish()), &mut blob, &options).unwrap();
    let built = Built {
        blob: blob.into(),
        toc_digest: out.toc_digest,
        digest: out.blob_digest,
        files: Vec::new(),
    };

    let mut group = c.benchmark_group("open");
    group
        .sample_size(10)
        .measurement_time(Duration::from_secs(15));
    group.bench_function("toc_150k_entries", |b| {
        b.iter(|| {
            rt.block_on(open(
                &built,
                built.source(),
                Arc::new(ChunkCache::in_memory(MIB)),
                &config(),
            ))
        })
    });
    group.finish();
}

/// One line of the merge-rule table.
struct Outcome {
    requests: u64,
    bytes: u64,
}

/// Round trip and bandwidth of the cost model: a registry 20 ms away behind 100 Mbit/s.
const MODEL_RTT: f64 = 0.020;
const MODEL_BYTES_PER_SEC: f64 = 12.5e6;

async fn merge_scenario(built: &Built, gap: u64, max_request: u64, scenario: &str) -> Outcome {
    let mut config = config();
    config.fetch.merge_gap_bytes = gap;
    config.fetch.max_request_bytes = max_request;
    let source = built.source();
    let layer = open(
        built,
        source.clone(),
        Arc::new(ChunkCache::in_memory(512 * MIB)),
        &config,
    )
    .await;
    let id = node(layer.index(), "dir/file.bin");
    if scenario.starts_with("partly cached") {
        // Every third chunk is cached before the measured reads.
        for chunk in layer.index().chunks(id).iter().step_by(3) {
            layer.read(id, chunk.file_offset(), 1).await.unwrap();
        }
    }
    source.reset_counters();
    match scenario {
        "sequential 1 MiB" | "partly cached, sequential 1 MiB" => {
            read_sequential(&layer, "dir/file.bin", MIB as u32).await;
        }
        "sequential 128 KiB" => {
            read_sequential(&layer, "dir/file.bin", 128 << 10).await;
        }
        "random 256 KiB x 200" | "partly cached, random 256 KiB x 200" => {
            read_random(&layer, "dir/file.bin", 256 << 10, 200, 3).await;
        }
        other => unreachable!("unknown scenario {other}"),
    }
    Outcome {
        requests: source.requests(),
        bytes: source.bytes(),
    }
}

/// Prints requests and bytes per merge rule for a 64 MiB file in 64 KiB chunks.
fn print_merge_table(rt: &Runtime) {
    let mut data = Vec::with_capacity((64 * MIB) as usize);
    for i in 0..16 {
        data.extend(text_pattern((3 * MIB) as usize, i));
        data.extend(pattern(MIB as usize, 100 + i));
    }
    let built = build_layer(vec![FileSpec::new("dir/file.bin", data)], 64 << 10, &[]);
    println!(
        "merge rule: 64 MiB file, 64 KiB chunks; model time = requests x 20 ms + bytes at 100 Mbit/s"
    );
    println!(
        "{:<36} {:>9} {:>9} {:>9} {:>10} {:>9}",
        "scenario", "gap KiB", "max MiB", "requests", "MiB", "model s"
    );
    let scenarios = [
        "sequential 128 KiB",
        "sequential 1 MiB",
        "partly cached, sequential 1 MiB",
        "random 256 KiB x 200",
        "partly cached, random 256 KiB x 200",
    ];
    for scenario in scenarios {
        for (gap, max_request) in [
            (0, MIB),
            (0, 8 * MIB),
            (64 << 10, 8 * MIB),
            (256 << 10, 8 * MIB),
            (MIB, 8 * MIB),
            (256 << 10, 32 * MIB),
        ] {
            let outcome = rt.block_on(merge_scenario(&built, gap, max_request, scenario));
            let model =
                outcome.requests as f64 * MODEL_RTT + outcome.bytes as f64 / MODEL_BYTES_PER_SEC;
            println!(
                "{:<36} {:>9} {:>9} {:>9} {:>10.2} {:>9.2}",
                scenario,
                gap >> 10,
                max_request >> 20,
                outcome.requests,
                outcome.bytes as f64 / MIB as f64,
                model
            );
        }
    }
}

fn main() {
    let rt = runtime();
    print_merge_table(&rt);
    let mut criterion = Criterion::default().configure_from_args();
    bench_reads(&mut criterion, &rt);
    bench_open_150k(&mut criterion, &rt);
    criterion.final_summary();
}
