//! Running a workload inside a mounted image, as a container runtime would but without one.
//!
//! `lazypull optimize` mounts an image, runs a command in it and records which files the
//! command opens. [`run_workload`] starts the command in a child process that
//!
//! 1. enters a new mount namespace whose mounts do not propagate back, so the `/proc`, `/dev`
//!    and `/sys` mounts it adds vanish with the last process of the namespace and never appear
//!    on the host, even when `lazypull` itself is killed;
//! 2. mounts a fresh procfs and recursive bind mounts of the host's `/dev` and `/sys` inside the
//!    image root, then `chroot`s into it and changes to the working directory (created when
//!    missing, as container runtimes do);
//! 3. drops to the image's user, when the image config names one;
//! 4. runs in its own process group, which is killed as a whole when the run ends.
//!
//! The environment comes from the image config ([`ImageRuntimeConfig`]) with overrides. Output
//! is streamed line by line with a prefix, and scanned for an optional readiness string.
//!
//! Limitations: there is no PID, network or user namespace, and no cgroup. The workload shares
//! the host's processes and network, and `/sys` is writable. A process that moves to another
//! process group or session (a daemon that calls `setsid`) survives the kill.

mod chroot;
mod config;
mod error;
mod output;
mod preflight;
mod run;
mod user;

pub use config::{DEFAULT_PATH, ImageRuntimeConfig, merge_env};
pub use error::WorkloadError;
pub use preflight::check_host;
pub use run::{WorkloadEnd, WorkloadSpec, run_workload};
pub use user::{UserIds, resolve_user};
