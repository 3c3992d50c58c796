//! Errors of a workload run.

use std::path::PathBuf;

/// Errors of [`run_workload`](super::run_workload) and its preparation.
#[derive(Debug, thiserror::Error)]
pub enum WorkloadError {
    /// The process is not root.
    #[error(
        "not running as root: mounting the image (FUSE, overlayfs) and entering it (chroot) need root; run it with sudo"
    )]
    NotRoot,
    /// The FUSE device is missing.
    #[error(
        "{device} not found: load the FUSE module with `modprobe fuse` (in a container, pass the device in)"
    )]
    FuseMissing {
        /// The device path.
        device: &'static str,
    },
    /// The image config blob is not the JSON an OCI image config is.
    #[error("invalid image config")]
    Config(#[source] serde_json::Error),
    /// The command was not found in the image.
    #[error(
        "command {command:?} not found in the image (searched PATH={path}); give a program that exists in the image, or its absolute path"
    )]
    CommandNotFound {
        /// The command as given.
        command: String,
        /// The PATH searched, from the image config or `--env PATH=...`.
        path: String,
    },
    /// No command was given.
    #[error("no command given; pass it after `--`, such as `-- python3 -c 'import json'`")]
    NoCommand,
    /// A user name is not in the image's `/etc/passwd`.
    #[error(
        "user {user:?} not found in the image's /etc/passwd; give a numeric UID[:GID] with --user"
    )]
    UnknownUser {
        /// The user as given.
        user: String,
    },
    /// A group name is not in the image's `/etc/group`.
    #[error("group {group:?} not found in the image's /etc/group; give a numeric GID")]
    UnknownGroup {
        /// The group as given.
        group: String,
    },
    /// The working directory is not absolute.
    #[error("invalid working directory {0:?}: it must be an absolute path inside the image")]
    RelativeWorkdir(String),
    /// An argument, variable or path contains a NUL byte, which `exec` cannot pass.
    #[error("{what} contains a NUL byte: {value:?}")]
    NulByte {
        /// Kind of value, such as "path".
        what: &'static str,
        /// The value, lossily decoded.
        value: String,
    },
    /// A path the workload needs in the image is not a directory (for example `/proc` is a
    /// symlink), so nothing can be mounted on it safely.
    #[error("{path} in the image is not a directory; /proc, /dev and /sys must be directories")]
    NotADirectory {
        /// The path on the host.
        path: PathBuf,
    },
    /// A directory could not be created in the mounted image.
    #[error("failed to create {path}")]
    Prepare {
        /// The path on the host.
        path: PathBuf,
        /// The cause.
        #[source]
        source: std::io::Error,
    },
    /// The child could not be started: the namespace, mounts, chroot, working directory, user
    /// switch or `exec` failed.
    #[error(
        "failed to start {command:?} in the image (new mount namespace, /proc, /dev and /sys mounts, chroot, working directory, user, exec)"
    )]
    Spawn {
        /// The command as given.
        command: String,
        /// The cause.
        #[source]
        source: std::io::Error,
    },
    /// Waiting for the child failed.
    #[error("failed to wait for the workload")]
    Wait(#[source] std::io::Error),
    /// The run was interrupted (SIGINT or SIGTERM); the workload was killed.
    #[error("interrupted; the workload was killed")]
    Interrupted,
}
