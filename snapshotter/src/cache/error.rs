//! Errors of the chunk cache.

use std::path::PathBuf;

use super::config::ConfigError;

/// Setting up or cleaning the chunk cache failed. Reads and writes of chunks never fail with
/// it: a broken disk tier degrades to the network and the memory tier.
#[derive(Debug, thiserror::Error)]
pub enum CacheError {
    /// The configuration is invalid.
    #[error(transparent)]
    InvalidConfig(#[from] ConfigError),
    /// A directory of the disk tier could not be created, listed or removed.
    #[error("chunk cache directory {path} is unusable")]
    Io {
        /// The file or directory involved.
        path: PathBuf,
        /// The OS error.
        #[source]
        source: std::io::Error,
    },
    /// A blocking task of the cache panicked or was cancelled.
    #[error("chunk cache task for {what} did not finish")]
    Task {
        /// What the task was doing.
        what: &'static str,
    },
}
