//! Fresh counters of a mount for `lazypull status`: the serving process rewrites its stats file
//! on SIGUSR1, so a caller need not wait for the next periodic write.

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use nix::sys::signal::{Signal, kill};
use nix::unistd::Pid;

use super::record::{RecordError, find_record};
use super::stats::{MountStats, read_stats};
use super::system;

/// How often the stats file is checked while waiting for the rewrite.
const POLL_INTERVAL: Duration = Duration::from_millis(10);

/// Errors of [`fresh_stats`].
#[derive(Debug, thiserror::Error)]
pub enum StatusError {
    /// No record, or an unreadable one.
    #[error(transparent)]
    Record(#[from] RecordError),
    /// The recorded serving process no longer runs, so the stats file is stale.
    #[error(
        "the serving process {pid} of {mountpoint} is not running, so the counters in {stats} are stale; \
         run `lazypull unmount {mountpoint}` to remove its mounts",
        mountpoint = .mountpoint.display(),
        stats = .stats.display()
    )]
    ServerGone {
        /// Process id from the record.
        pid: u32,
        /// The mount point.
        mountpoint: PathBuf,
        /// The stats file it left.
        stats: PathBuf,
    },
    /// The stats file could not be read or parsed.
    #[error("failed to read the stats file {path}")]
    Read {
        /// The stats file.
        path: PathBuf,
        /// The cause.
        #[source]
        source: std::io::Error,
    },
}

/// Returns the counters of the mount at `mountpoint`, written by its serving process after this
/// call started: it sends the process SIGUSR1 and waits up to `timeout` for the stats file to be
/// rewritten. When the rewrite does not arrive in time (the mount is still starting, for
/// example), it returns the file as it is and logs a warning.
///
/// Fails with [`StatusError::ServerGone`] when the recorded process is not a live lazypull
/// process.
pub fn fresh_stats(
    state_dir: &Path,
    mountpoint: &Path,
    timeout: Duration,
) -> Result<MountStats, StatusError> {
    let record = find_record(state_dir, mountpoint)?;
    let server_gone = || StatusError::ServerGone {
        pid: record.pid,
        mountpoint: record.mountpoint.clone(),
        stats: record.stats.clone(),
    };
    // A pid that is not a lazypull process was reused; signalling it could kill a stranger.
    // NOTE: a pid reused by another lazypull command (convert, say) passes this check, and
    // SIGUSR1 ends such a process, as `lazypull unmount`'s SIGTERM would.
    if !system::is_lazypull_process(record.pid) {
        return Err(server_gone());
    }
    let pid = i32::try_from(record.pid).map_err(|_| server_gone())?;
    let before = read_stats(&record.stats).ok().map(|s| s.updated_unix_ms);
    kill(Pid::from_raw(pid), Signal::SIGUSR1).map_err(|_| server_gone())?;

    let deadline = Instant::now() + timeout;
    loop {
        let current = read_stats(&record.stats);
        if let Ok(stats) = &current
            && Some(stats.updated_unix_ms) != before
        {
            return current.map_err(|source| StatusError::Read {
                path: record.stats.clone(),
                source,
            });
        }
        if Instant::now() >= deadline {
            if !system::is_lazypull_process(record.pid) {
                return Err(server_gone());
            }
            tracing::warn!(
                pid = record.pid,
                timeout_ms = timeout.as_millis() as u64,
                "the serving process did not rewrite its stats in time; the counters may lag"
            );
            return current.map_err(|source| StatusError::Read {
                path: record.stats.clone(),
                source,
            });
        }
        std::thread::sleep(POLL_INTERVAL);
    }
}
