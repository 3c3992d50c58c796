//! The filesystem core over the production read path: a `Layer` opened from a local blob.

use std::sync::Arc;

use estargz::build::{BuildOptions, BuildOutput, build};
use lazypull_snapshotter::cache::ChunkCache;
use lazypull_snapshotter::fs::{FsCore, FsOptions, Ino};
use lazypull_snapshotter::layer::{Layer, LayerConfig, LayerInfo};
use lazypull_snapshotter::remote::{BlobSource, LocalBlobSource};
use lazypull_testkit::tarbuild::{Builder, Entry};

struct Opened {
    dir: tempfile::TempDir,
    fs: FsCore<Layer>,
}

fn content(len: usize) -> Vec<u8> {
    (0..len as u32)
        .map(|i| (i.wrapping_mul(2_654_435_761) >> 11) as u8)
        .collect()
}

async fn open(entries: &[Entry], options: &BuildOptions) -> Opened {
    let mut tar = Builder::new();
    for entry in entries {
        tar.append(entry);
    }
    let mut blob = Vec::new();
    let out: BuildOutput = build(std::io::Cursor::new(tar.finish()), &mut blob, options).unwrap();
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("blob");
    std::fs::write(&path, &blob).unwrap();
    let source: Arc<dyn BlobSource> = Arc::new(
        LocalBlobSource::open(&path, "test-blob", None)
            .await
            .unwrap(),
    );
    let mut config = LayerConfig::default();
    config.prefetch.background = false;
    config.fetch.max_retries = 0;
    let cache = Arc::new(ChunkCache::in_memory(64 << 20));
    let info = LayerInfo::new(out.blob_digest, out.blob_size, Some(out.toc_digest));
    let layer = Layer::open(&info, source, cache, &config).await.unwrap();
    Opened {
        dir,
        fs: FsCore::new(layer, FsOptions::default()),
    }
}

#[tokio::test]
async fn reads_through_layer_match_content() {
    let data = content(40_000);
    let options = BuildOptions {
        chunk_size: 4096,
        ..BuildOptions::default()
    };
    let opened = open(&[Entry::file("dir/big", &data)], &options).await;
    let dir = opened.fs.lookup(Ino::ROOT, b"dir").unwrap();
    let file = opened.fs.lookup(dir.ino, b"big").unwrap();
    assert_eq!(file.size, 40_000);
    for (offset, size) in [(0u64, 40_000u32), (4095, 2), (10_000, 131_072), (39_999, 1)] {
        let bytes = opened.fs.read(file.ino, offset, size).await.unwrap();
        let end = (offset as usize + size as usize).min(data.len());
        assert_eq!(
            &bytes[..],
            &data[offset as usize..end],
            "offset {offset} size {size}"
        );
    }
    assert!(
        opened
            .fs
            .read(file.ino, 40_000, 10)
            .await
            .unwrap()
            .is_empty()
    );
}

#[tokio::test]
async fn unreadable_blob_gives_eio() {
    let opened = open(
        &[Entry::file("f", content(10_000))],
        &BuildOptions::default(),
    )
    .await;
    let file = opened.fs.lookup(Ino::ROOT, b"f").unwrap();
    // Cut the payload away: the layer already has its index, but the chunk cannot be read.
    std::fs::OpenOptions::new()
        .write(true)
        .open(opened.dir.path().join("blob"))
        .unwrap()
        .set_len(0)
        .unwrap();
    let error = opened.fs.read(file.ino, 0, 4096).await.unwrap_err();
    assert_eq!(error.errno(), libc::EIO, "{error}");
}
