//! A layer with 150,000 entries: it opens, its index is far smaller than its TOC JSON, and
//! lookups and reads are correct. Timing is printed here and measured in `benches/read_path.rs`.

mod read_path_support;

use std::sync::Arc;
use std::time::Instant;

use estargz::build::{BuildOptions, build};
use lazypull_snapshotter::cache::ChunkCache;
use lazypull_testkit::tarbuild::{Builder, Entry, pattern};
use read_path_support::*;

const DIRS: usize = 300;
const FILES_PER_DIR: usize = 500;

/// A file name of about 40 characters.
fn file_name(dir: usize, file: usize) -> String {
    format!("d{dir:03}/library-module-component-{file:05}.py")
}

/// 300 directories of 500 files of 16 pseudo-random bytes, plus a file below 100 nested
/// directories whose path is about 4,000 bytes long.
fn tar_150k() -> (Vec<u8>, String) {
    let mut tar = Builder::new();
    for dir in 0..DIRS {
        tar.append(&Entry::dir(format!("d{dir:03}")));
        for file in 0..FILES_PER_DIR {
            tar.append(&Entry::file(
                file_name(dir, file),
                pattern(16, (dir * FILES_PER_DIR + file) as u64),
            ));
        }
    }
    let deep_dir: Vec<String> = (0..100)
        .map(|level| format!("nested-directory-level-{level:03}-abcdefghijkl"))
        .collect();
    let deep = format!("{}/leaf.txt", deep_dir.join("/"));
    tar.append(&Entry::file(&deep, b"deep content"));
    (tar.finish(), deep)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn layer_with_150k_entries_opens_compactly() {
    let started = Instant::now();
    let (tar, deep) = tar_150k();
    let options = BuildOptions {
        level: 1,
        threads: 2,
        ..BuildOptions::default()
    };
    let mut blob = Vec::new();
    let out =
        build(std::io::Cursor::new(tar), &mut blob, &options).expect("generated tar converts");
    let built = Built {
        blob: bytes::Bytes::from(blob),
        toc_digest: out.toc_digest,
        digest: out.blob_digest,
        files: Vec::new(),
    };
    let json_len = toc_json(&built).len();
    println!(
        "built: {} TOC entries, blob {} bytes, TOC JSON {json_len} bytes, in {:?}",
        out.toc_entries,
        built.blob.len(),
        started.elapsed()
    );

    let source = built.source();
    let opened = Instant::now();
    let layer = open(
        &built,
        source.clone(),
        Arc::new(ChunkCache::in_memory(64 << 20)),
        &test_config(),
    )
    .await;
    let open_time = opened.elapsed();
    let heap = layer.heap_bytes();
    println!(
        "open: {open_time:?}, {} requests, {} bytes fetched; index and tables {heap} bytes = {:.1}% of the JSON",
        source.requests(),
        source.bytes(),
        100.0 * heap as f64 / json_len as f64
    );

    println!(
        "per entry: Chunk {} bytes",
        std::mem::size_of::<estargz::index::Chunk>()
    );
    assert!(
        layer.index().node_count() > DIRS * FILES_PER_DIR,
        "{}",
        layer.index().node_count()
    );
    // NOTE: the index costs about 175 bytes per file entry (a 48-byte node record, a 64-byte
    // chunk whose sha256 alone is 32 bytes, a 12-byte directory entry and the name) against about
    // 306 bytes of compact TOC JSON, so it takes under 60% of the JSON; the bounds below guard
    // against regressions.
    let per_entry = heap / out.toc_entries;
    assert!(
        heap * 10 < json_len * 6,
        "index {heap} bytes is not below 60% of the JSON's {json_len}"
    );
    assert!(
        per_entry <= 190,
        "index takes {per_entry} bytes per TOC entry"
    );
    assert!(source.requests() <= 2, "{:?}", source.log());

    for (dir, file) in [(0, 0), (150, 250), (299, 499)] {
        let path = file_name(dir, file);
        let data = read_all(&layer, &path, 4096).await;
        assert_eq!(
            data,
            pattern(16, (dir * FILES_PER_DIR + file) as u64),
            "{path}"
        );
    }
    assert_eq!(read_all(&layer, &deep, 4096).await, b"deep content");
    assert!(deep.len() > 4000);
}
