//! The chunk cache: verified, decompressed chunks of every layer, in memory and on disk.
//!
//! Layers read chunks through [`ChunkCache::lookup`]: a hit in the memory tier returns the bytes;
//! a chunk someone else is fetching returns a [`Waiter`]; otherwise the caller gets a
//! [`FillGuard`], tries the disk tier ([`ChunkCache::read_disk`]) and then the network, and
//! completes the guard with the verified bytes. So at most one fetch per chunk is in flight,
//! failures reach every waiter but are never cached, and no lock is held across I/O.
//!
//! - Memory tier: a byte-budgeted S3-FIFO cache (quick_cache) of `Bytes`.
//! - Disk tier: one file per chunk under `<dir>/<layer digest hex>/`. One writer thread writes
//!   each to a temporary file and renames it. A file is checked against its SHA-256 on its
//!   first read by this process, or on every read if configured. Files are evicted least
//!   recently used first across layers, and the accounting is rebuilt from the directory at
//!   startup. A failed write (full disk) pauses disk caching briefly; reads keep working from
//!   the network.
//!
//! ```
//! # #[tokio::main(flavor = "current_thread")] async fn main() {
//! use bytes::Bytes;
//! use estargz::Digest;
//! use lazypull_snapshotter::cache::{ChunkCache, ChunkKey, Lookup, Origin};
//!
//! let cache = ChunkCache::in_memory(64 << 20);
//! let key = ChunkKey { layer: Digest::of(b"layer"), comp_offset: 0, inner_offset: 0, size: 5 };
//! match cache.lookup(&key) {
//!     Lookup::Fill(guard) => guard.complete(Bytes::from_static(b"hello"), Origin::Network),
//!     other => panic!("empty cache returned {other:?}"),
//! }
//! assert!(matches!(cache.lookup(&key), Lookup::Hit(bytes) if bytes == "hello"));
//! # }
//! ```

mod chunk_cache;
pub(crate) mod config;
mod disk;
mod disk_lru;
mod error;
mod inflight;
mod key;
mod memory;
mod priority;
mod stats;
mod writer;

pub use chunk_cache::{ChunkCache, Lookup};
pub use config::{CacheConfig, ConfigError};
pub use error::CacheError;
pub use inflight::{FillError, FillGuard, Origin, WaitOutcome, Waiter};
pub use key::ChunkKey;
pub use priority::{PriorityGate, PriorityGuard};
pub use stats::CacheStatsSnapshot;
