//! Lazily read layers: open an eStargz blob from its footer and TOC, then read file contents
//! chunk by chunk through the shared [`ChunkCache`](crate::cache::ChunkCache).
//!
//! Data flow of [`Layer::read`]: node and byte range → the chunks that overlap it
//! (`LayerIndex::chunks_in`) → memory tier, a fetch in flight, disk tier, or coalesced range
//! requests to the [`BlobSource`](crate::remote::BlobSource) → decompress and verify each chunk
//! → cache → the requested bytes. Opening starts prefetch of the prioritized range and then
//! background fetch of the rest (see [`crate::fetch`]).
//!
//! ```no_run
//! # async fn example(source: std::sync::Arc<dyn lazypull_snapshotter::remote::BlobSource>,
//! #                  toc_digest: estargz::Digest) -> Result<(), lazypull_snapshotter::layer::LayerError> {
//! use std::sync::Arc;
//! use std::time::Duration;
//! use lazypull_snapshotter::cache::ChunkCache;
//! use lazypull_snapshotter::layer::{Layer, LayerConfig, LayerInfo};
//!
//! let config = LayerConfig::default();
//! let cache = Arc::new(ChunkCache::new(&config.cache).expect("valid cache configuration"));
//! let info = LayerInfo::new(estargz::Digest::of(b"blob"), source.size(), Some(toc_digest));
//! let layer = Layer::open(&info, source, cache, &config).await?;
//! layer.wait_prefetch(Duration::from_secs(10)).await;
//! let file = layer.index().lookup_path(b"etc/os-release").expect("file exists");
//! let head = layer.read(file, 0, 4096).await?;
//! println!("{}", String::from_utf8_lossy(&head));
//! # Ok(()) }
//! ```

mod config;
mod error;
mod info;
mod lazy_layer;
mod sequential;
mod toc;

pub use config::{DEFAULT_TOC_TAIL_BYTES, LayerConfig};
pub use error::LayerError;
pub use info::LayerInfo;
pub use lazy_layer::Layer;

pub use crate::cache::ConfigError;
pub use crate::fetch::{BackgroundState, LayerStatsSnapshot, PrefetchState};
