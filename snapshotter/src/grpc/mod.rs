//! The gRPC adapter: containerd's `containerd.services.snapshots.v1.Snapshots` service on a
//! Unix socket, over any [`Snapshotter`](crate::snapshot::Snapshotter).
//!
//! Message types come from `containerd-client`; the server stub is generated in `build.rs`.
//! The adapter only converts messages and maps [`SnapshotError`](crate::snapshot::SnapshotError)
//! codes to gRPC status codes (NOT_FOUND, ALREADY_EXISTS, FAILED_PRECONDITION,
//! INVALID_ARGUMENT, UNAVAILABLE, INTERNAL), which containerd maps back to its own error kinds.
//! Each call runs in a `snapshots` span carrying the operation and key.

mod convert;
mod server;
mod service;

/// `google.protobuf.Empty`, the response of Commit, Remove and Cleanup.
pub type Empty = ();

/// The generated server stub.
#[allow(missing_docs, clippy::all)]
pub mod pb {
    include!(concat!(
        env!("OUT_DIR"),
        "/containerd.services.snapshots.v1.Snapshots.rs"
    ));
}

pub use convert::error_chain;
pub use server::{ServeError, serve};
pub use service::SnapshotsApi;
