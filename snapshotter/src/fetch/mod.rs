//! Fetching chunks: coalesced range requests with retries and verification, prefetch of the
//! prioritized range, and low-priority background fetch of the rest of a layer.
//!
//! A layer's [`ChunkLoader`](loader::ChunkLoader) obtains a batch of chunks through the
//! [`ChunkCache`](crate::cache::ChunkCache): memory, then a fetch already in flight, then disk,
//! then the network. Missing chunks are grouped into range requests by a [`MergeRule`]
//! ([`plan_requests`]), each request is decompressed and every chunk checked against its SHA-256
//! before any of its bytes is returned or cached. The [`Prefetcher`] runs prefetch and background fetch on top of
//! the same loader.

mod config;
mod error;
mod fetcher;
pub(crate) mod loader;
mod prefetch;
pub(crate) mod progress;
mod stats;

pub use config::{DEFAULT_MAX_REQUEST_BYTES, DEFAULT_MERGE_GAP_BYTES, FetchConfig, PrefetchConfig};
pub use error::FetchError;
pub use estargz::range_plan::{MergeRule, PlannedRequest, plan_requests};
pub use prefetch::{BackgroundState, PrefetchState, Prefetcher};
pub use stats::{LayerStats, LayerStatsSnapshot, Purpose};
