//! The FUSE adapter over [`FsCore`](crate::fs::FsCore), built on fuser.
//!
//! [`LayerMount::mount`] mounts one layer read-only with `allow_other`,
//! `default_permissions`, fsname `lazypull`, long attribute and entry timeouts,
//! `FOPEN_KEEP_CACHE`, readdirplus, and 1 MiB reads. Requests are served by fuser threads;
//! reads run on a tokio runtime.

mod adapter;
mod session;

pub use adapter::{LayerFs, MAX_READ, file_attr};
pub use session::{LayerMount, MAX_FUSE_THREADS, MountSettings};
