//! Remote layer: byte ranges of layer blobs from OCI registries and local OCI layouts, and
//! resolution of image references to their layers.
//!
//! This layer owns all network state (tokens, storage URLs from redirects, retries and
//! timeouts) and does not depend on eStargz, chunks or FUSE. Its main types:
//!
//! - [`BlobSource`]: the trait the chunk fetcher reads through, implemented by
//!   [`RegistryBlobSource`] (HTTP range requests) and [`LocalBlobSource`] (a file in an OCI
//!   layout);
//! - [`RegistryClient`]: the shared HTTP client with auth sessions, built from a
//!   [`RegistryConfig`] and a [`Credentials`] provider;
//! - [`image::resolve`]: image reference → manifest → config and [`LayerDescriptor`]s, with
//!   [`ResolvedImage::open_layer`] to get a `BlobSource` per layer.
//!
//! Data flow of one registry read: `read_range` → cached storage URL, or the registry's blob
//! URL with the session's token → redirects followed without `Authorization` → the
//! response checked against the requested range (206 sliced by `Content-Range`, 200 sliced
//! as the whole blob) → exact bytes. Failures are retried with backoff inside the per-attempt
//! timeout; 401 (and 403 while holding a token) refresh the credentials once.
//!
//! ```no_run
//! # async fn example() -> Result<(), lazypull_snapshotter::remote::RemoteError> {
//! use std::sync::Arc;
//! use lazypull_snapshotter::remote::{self, BlobSource, DockerConfigCredentials, ImageRef, RegistryConfig};
//!
//! let image: ImageRef = "127.0.0.1:5000/app:latest".parse()?;
//! let resolved = remote::image::resolve(&image, &RegistryConfig::default(), Arc::new(DockerConfigCredentials::new())).await?;
//! let layer = resolved.open_layer(&resolved.layers[0]).await?;
//! let footer = layer.read_range(layer.size().saturating_sub(51)..layer.size()).await?;
//! assert!(footer.len() <= 51);
//! # Ok(()) }
//! ```

mod auth;
mod body;
mod challenge;
mod client;
mod config;
mod credentials;
mod endpoint;
mod error;
mod fetch;
pub mod image;
mod layout;
pub mod local;
mod manifest;
mod range;
pub mod registry;
mod retry;
mod stats;

use std::ops::Range;

use bytes::Bytes;
use futures_util::future::BoxFuture;

pub use client::RegistryClient;
pub use config::{HostConfig, Mirror, RegistryConfig};
pub use credentials::{
    Anonymous, Credential, CredentialError, Credentials, DockerConfigCredentials, StaticCredentials,
};
pub use error::{ErrorKind, RangeIssue, RemoteError};
pub use image::{ConfigBlob, ImageRef, LayerDescriptor, ResolvedImage};
pub use local::LocalBlobSource;
pub use manifest::Platform;
pub use registry::RegistryBlobSource;
pub use stats::{RemoteStats, StatsSnapshot};

/// Random-access reads of one immutable blob.
///
/// Implementations own whatever state reading needs (connections, tokens, file handles) and
/// are shared as `Arc<dyn BlobSource>` between the tasks of the chunk fetcher.
pub trait BlobSource: Send + Sync {
    /// Blob size in bytes.
    fn size(&self) -> u64;

    /// Reads exactly the bytes of the half-open `range`.
    ///
    /// Fails with [`RemoteError::RangeOutOfBounds`] if `range` does not lie within the blob,
    /// and with an error (never a short result) if fewer bytes arrive. An empty range
    /// returns no bytes without I/O.
    fn read_range(&self, range: Range<u64>) -> BoxFuture<'_, Result<Bytes, RemoteError>>;

    /// Checks cheaply that the blob can still be read with the current credentials (for a
    /// registry, `GET Range: bytes=0-0`). Run it before handing out mounts, so that a dead
    /// credential fails container start instead of turning into EIO later.
    fn check(&self) -> BoxFuture<'_, Result<(), RemoteError>>;

    /// Returns a name for logs, such as `registry/repo@sha256:...`.
    fn id(&self) -> &str;

    /// Counters of this source.
    fn stats(&self) -> &RemoteStats;
}

/// Parses a blob digest; only `sha256:<64 hex digits>` is supported.
pub(crate) fn parse_digest(text: &str) -> Result<estargz::digest::Digest, RemoteError> {
    text.parse().map_err(|_| RemoteError::InvalidDigest {
        value: text.chars().take(100).collect(),
    })
}
