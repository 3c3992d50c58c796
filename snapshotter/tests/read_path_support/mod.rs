//! Shared pieces of the read-path tests: an in-memory blob source that counts and breaks
//! requests, and eStargz blobs built from generated tar streams.
//!
//! Blobs are generated on every run by `estargz::build::build` from tars written with the
//! testkit's tar builder; nothing is stored as a fixture.

#![allow(dead_code)]

use std::ops::Range;
use std::sync::Arc;
use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::time::Duration;

use bytes::Bytes;
use estargz::Digest;
use estargz::build::{BuildOptions, build};
use estargz::index::{LayerIndex, NodeId};
use futures_util::future::BoxFuture;
use lazypull_snapshotter::cache::ChunkCache;
use lazypull_snapshotter::layer::{Layer, LayerConfig, LayerInfo};
use lazypull_snapshotter::remote::{BlobSource, RemoteError, RemoteStats};
use lazypull_testkit::tarbuild::{Builder, Entry};

/// A fault injected into the requests whose range contains `offset`.
#[derive(Debug, Clone)]
struct Fault {
    offset: u64,
    remaining: u32,
    kind: FaultKind,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum FaultKind {
    /// Fail with HTTP 503.
    Unavailable,
    /// Return the bytes with the one at `offset` flipped.
    Corrupt,
}

/// A blob in memory, served by range with counters, an optional delay, an optional
/// one-request-at-a-time link and injectable faults.
pub struct MemSource {
    blob: Bytes,
    id: String,
    stats: RemoteStats,
    log: Mutex<Vec<Range<u64>>>,
    requests: AtomicU64,
    bytes: AtomicU64,
    faults: Mutex<Vec<Fault>>,
    delay: Duration,
    link: Option<tokio::sync::Semaphore>,
    in_flight: AtomicUsize,
    max_in_flight: AtomicUsize,
}

impl MemSource {
    pub fn new(blob: Bytes) -> Self {
        MemSource {
            blob,
            id: "memory".to_string(),
            stats: RemoteStats::default(),
            log: Mutex::new(Vec::new()),
            requests: AtomicU64::new(0),
            bytes: AtomicU64::new(0),
            faults: Mutex::new(Vec::new()),
            delay: Duration::ZERO,
            link: None,
            in_flight: AtomicUsize::new(0),
            max_in_flight: AtomicUsize::new(0),
        }
    }

    /// Every request waits `delay` before it returns.
    pub fn with_delay(mut self, delay: Duration) -> Self {
        self.delay = delay;
        self
    }

    /// Requests are served one at a time, like a single slow connection.
    pub fn with_single_link(mut self) -> Self {
        self.link = Some(tokio::sync::Semaphore::new(1));
        self
    }

    /// The next `times` requests containing `offset` fail with HTTP 503.
    pub fn fail_containing(&self, offset: u64, times: u32) {
        self.faults.lock().unwrap().push(Fault {
            offset,
            remaining: times,
            kind: FaultKind::Unavailable,
        });
    }

    /// The next `times` requests containing `offset` return that byte flipped.
    pub fn corrupt_containing(&self, offset: u64, times: u32) {
        self.faults.lock().unwrap().push(Fault {
            offset,
            remaining: times,
            kind: FaultKind::Corrupt,
        });
    }

    pub fn requests(&self) -> u64 {
        self.requests.load(Ordering::SeqCst)
    }

    pub fn bytes(&self) -> u64 {
        self.bytes.load(Ordering::SeqCst)
    }

    pub fn log(&self) -> Vec<Range<u64>> {
        self.log.lock().unwrap().clone()
    }

    /// Requests whose range contains `offset`.
    pub fn requests_containing(&self, offset: u64) -> usize {
        self.log().iter().filter(|r| r.contains(&offset)).count()
    }

    pub fn max_in_flight(&self) -> usize {
        self.max_in_flight.load(Ordering::SeqCst)
    }

    pub fn reset_counters(&self) {
        self.requests.store(0, Ordering::SeqCst);
        self.bytes.store(0, Ordering::SeqCst);
        self.log.lock().unwrap().clear();
    }

    fn take_fault(&self, range: &Range<u64>) -> Option<(FaultKind, u64)> {
        let mut faults = self.faults.lock().unwrap();
        let fault = faults
            .iter_mut()
            .find(|f| f.remaining > 0 && range.contains(&f.offset))?;
        fault.remaining -= 1;
        Some((fault.kind, fault.offset))
    }

    async fn serve(&self, range: Range<u64>) -> Result<Bytes, RemoteError> {
        let _link = match &self.link {
            Some(link) => Some(
                link.acquire()
                    .await
                    .expect("link semaphore is never closed"),
            ),
            None => None,
        };
        if !self.delay.is_zero() {
            tokio::time::sleep(self.delay).await;
        }
        if range.start > range.end || range.end > self.blob.len() as u64 {
            return Err(RemoteError::RangeOutOfBounds {
                blob: self.id.clone(),
                start: range.start,
                end: range.end,
                size: self.blob.len() as u64,
            });
        }
        let mut bytes = self.blob.slice(range.start as usize..range.end as usize);
        match self.take_fault(&range) {
            Some((FaultKind::Unavailable, _)) => {
                return Err(RemoteError::Status {
                    host: "memory".into(),
                    status: 503,
                    request: format!("GET bytes={}-{}", range.start, range.end - 1),
                    retry_after: None,
                    detail: None,
                });
            }
            Some((FaultKind::Corrupt, offset)) => {
                let mut copy = bytes.to_vec();
                copy[(offset - range.start) as usize] ^= 0xff;
                bytes = Bytes::from(copy);
            }
            None => {}
        }
        self.bytes.fetch_add(bytes.len() as u64, Ordering::SeqCst);
        Ok(bytes)
    }
}

struct InFlight<'a>(&'a AtomicUsize);

impl Drop for InFlight<'_> {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::SeqCst);
    }
}

impl BlobSource for MemSource {
    fn size(&self) -> u64 {
        self.blob.len() as u64
    }

    fn read_range(&self, range: Range<u64>) -> BoxFuture<'_, Result<Bytes, RemoteError>> {
        Box::pin(async move {
            self.requests.fetch_add(1, Ordering::SeqCst);
            self.log.lock().unwrap().push(range.clone());
            let now = self.in_flight.fetch_add(1, Ordering::SeqCst) + 1;
            self.max_in_flight.fetch_max(now, Ordering::SeqCst);
            let _in_flight = InFlight(&self.in_flight);
            self.serve(range).await
        })
    }

    fn check(&self) -> BoxFuture<'_, Result<(), RemoteError>> {
        Box::pin(async { Ok(()) })
    }

    fn id(&self) -> &str {
        &self.id
    }

    fn stats(&self) -> &RemoteStats {
        &self.stats
    }
}

/// One file of a generated layer.
#[derive(Debug, Clone)]
pub struct FileSpec {
    pub path: String,
    pub data: Vec<u8>,
}

impl FileSpec {
    pub fn new(path: &str, data: Vec<u8>) -> Self {
        FileSpec {
            path: path.to_string(),
            data,
        }
    }
}

/// A generated eStargz blob and what is needed to open it.
pub struct Built {
    pub blob: Bytes,
    pub toc_digest: Digest,
    pub digest: Digest,
    pub files: Vec<FileSpec>,
}

impl Built {
    pub fn info(&self) -> LayerInfo {
        LayerInfo::new(self.digest, self.blob.len() as u64, Some(self.toc_digest))
    }

    pub fn source(&self) -> Arc<MemSource> {
        Arc::new(MemSource::new(self.blob.clone()))
    }

    /// The blob with one byte flipped.
    pub fn corrupted_at(&self, offset: u64) -> Bytes {
        let mut copy = self.blob.to_vec();
        copy[offset as usize] ^= 0xff;
        Bytes::from(copy)
    }
}

/// Builds an eStargz blob (gzip level 1) holding `files`, plus a directory `dir/`.
pub fn build_layer(files: Vec<FileSpec>, chunk_size: u64, prioritized: &[&str]) -> Built {
    let options = BuildOptions {
        chunk_size,
        level: 1,
        prioritized: prioritized.iter().map(|p| p.as_bytes().to_vec()).collect(),
        threads: 2,
        ..BuildOptions::default()
    };
    build_with(files, &options)
}

/// Builds a blob holding `files` and a directory `dir/` with explicit options.
pub fn build_with(files: Vec<FileSpec>, options: &BuildOptions) -> Built {
    let mut tar = Builder::new();
    tar.append(&Entry::dir("dir"));
    for file in &files {
        tar.append(&Entry::file(&file.path, &file.data));
    }
    let tar = tar.finish();
    let mut blob = Vec::new();
    let out = build(std::io::Cursor::new(tar), &mut blob, options).expect("generated tar converts");
    Built {
        blob: Bytes::from(blob),
        toc_digest: out.toc_digest,
        digest: out.blob_digest,
        files,
    }
}

/// A layer config for tests: no background fetch, quick retries.
pub fn test_config() -> LayerConfig {
    let mut config = LayerConfig::default();
    config.prefetch.background = false;
    // Tests count requests per read; read-ahead has tests of its own.
    config.fetch.readahead_bytes = 0;
    config.fetch.sequential_chunks = 0;
    config.fetch.retry_backoff = Duration::from_millis(5);
    config
}

pub async fn open(
    built: &Built,
    source: Arc<MemSource>,
    cache: Arc<ChunkCache>,
    config: &LayerConfig,
) -> Arc<Layer> {
    Layer::open(&built.info(), source, cache, config)
        .await
        .expect("generated layer opens")
}

pub fn node(index: &LayerIndex, path: &str) -> NodeId {
    index
        .lookup_path(path.as_bytes())
        .unwrap_or_else(|| panic!("{path} is in the layer"))
}

/// Reads a whole file in `step`-byte reads.
pub async fn read_all(layer: &Layer, path: &str, step: u32) -> Vec<u8> {
    let id = node(layer.index(), path);
    let size = layer.index().node(id).unwrap().size;
    let mut out = Vec::with_capacity(size as usize);
    let mut offset = 0;
    while offset < size {
        let bytes = layer.read(id, offset, step).await.expect("read succeeds");
        assert!(
            !bytes.is_empty(),
            "{path}: empty read at {offset} of {size}"
        );
        offset += bytes.len() as u64;
        out.extend_from_slice(&bytes);
    }
    out
}

/// Compressed offsets of the chunks of a file, in file order.
pub fn chunk_offsets(layer: &Layer, path: &str) -> Vec<u64> {
    layer
        .index()
        .chunks(node(layer.index(), path))
        .iter()
        .map(|c| c.comp_offset())
        .collect()
}

/// The TOC JSON of a built blob, as the blob stores it.
pub fn toc_json(built: &Built) -> Vec<u8> {
    let size = built.blob.len() as u64;
    let tail = &built.blob[(size - estargz::footer::GZIP_FOOTER_SIZE as u64) as usize..];
    let location = estargz::footer::parse_footer(tail, size).expect("built blob has a footer");
    let start = location.offset as usize;
    let compressed = &built.blob[start..start + location.compressed_len as usize];
    estargz::blob::decode_toc(compressed, &location, &estargz::Limits::default())
        .expect("TOC decodes")
}

/// The same blob with its landmark entry removed from the TOC, as writers without landmarks
/// produce: the data members stay, a new TOC member and footer replace the old ones.
pub fn without_landmark(built: &Built) -> Built {
    use std::io::Write;

    use estargz::Limits;
    use estargz::tar::encode::{HeaderSpec, encode};

    let size = built.blob.len() as u64;
    let tail = &built.blob[(size - estargz::footer::GZIP_FOOTER_SIZE as u64) as usize..];
    let location = estargz::footer::parse_footer(tail, size).expect("built blob has a footer");
    let toc_start = location.offset as usize;
    let compressed = &built.blob[toc_start..toc_start + location.compressed_len as usize];
    let json = estargz::blob::decode_toc(compressed, &location, &Limits::default()).unwrap();
    let mut toc = estargz::toc::parse_toc(&json, &Limits::default()).unwrap();
    let before = toc.entries.len();
    toc.entries
        .retain(|e| !e.name.ends_with("prefetch.landmark"));
    assert_eq!(toc.entries.len(), before - 1, "the blob had one landmark");
    let json = toc.to_json().unwrap();

    // TOC member: the tar header, the JSON, padding to 512 bytes, then the end-of-archive blocks.
    let header = HeaderSpec {
        name: b"stargz.index.json",
        typeflag: b'0',
        size: json.len() as u64,
        ..Default::default()
    };
    let mut tar = encode(&header);
    tar.extend_from_slice(&json);
    tar.resize(tar.len().div_ceil(512) * 512 + 1024, 0);
    let mut gzip = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
    gzip.write_all(&tar).unwrap();

    let mut blob = built.blob[..toc_start].to_vec();
    blob.extend_from_slice(&gzip.finish().unwrap());
    blob.extend_from_slice(&estargz::footer::gzip_footer(location.offset));
    Built {
        toc_digest: Digest::of(&json),
        digest: Digest::of(&blob),
        blob: Bytes::from(blob),
        files: built.files.clone(),
    }
}
