//! `lazypull mount` and `lazypull unmount`: an image mounted lazily at a directory.
//!
//! [`serve`] resolves the image and opens every layer as a [`Layer`](crate::layer::Layer), which
//! reads only the footer and the TOC, verified against the layer's TOC-digest annotation. It mounts each layer with FUSE
//! under the state directory, stacks them with overlayfs at the mount point (top layer first,
//! with a writable upper directory), and serves until SIGTERM or SIGINT. [`detach`] forks the
//! serving process off before any thread exists and reports readiness through a pipe.
//! [`unmount`] stops the server and removes whatever it left, dead FUSE mounts included.
//!
//! The state directory holds one [`MountRecord`] per mount point and the counters
//! ([`MountStats`]), rewritten every second and on SIGUSR1 ([`fresh_stats`] sends it).

mod daemon;
mod options;
mod record;
mod serve;
mod stats;
mod status;
mod system;
mod unmount;

pub use daemon::{DetachError, Detached, Readiness, detach};
pub use options::{
    DEFAULT_PREFETCH_TIMEOUT, DEFAULT_READ_TIMEOUT, DEFAULT_STOP_TIMEOUT, MountOptions,
    default_layer_config,
};
pub use record::{MountPaths, MountRecord, RecordError, default_state_dir, find_record};
pub use serve::{MountError, error_chain, serve};
pub use stats::{LayerStats, MountStats, read_stats};
pub use status::{StatusError, fresh_stats};
pub use system::SystemError;
pub use unmount::{UnmountError, unmount};
