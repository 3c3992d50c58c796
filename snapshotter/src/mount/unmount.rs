//! `lazypull unmount`: stop the serving process and remove every mount and state file of a
//! mount point, including mounts left behind by a killed server ("transport endpoint is not
//! connected").

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use nix::sys::signal::{Signal, kill};
use nix::unistd::Pid;

use super::record::{MountPaths, MountRecord, RecordError, find_record};
use super::serve::remove_mount_dirs;
use super::system::{self, SystemError};

/// Errors of `unmount`.
#[derive(Debug, thiserror::Error)]
pub enum UnmountError {
    /// No record, or an unreadable one.
    #[error(transparent)]
    Record(#[from] RecordError),
    /// Some mounts could not be removed; the record is kept so a retry can finish.
    #[error("failed to unmount {}", .failed.iter().map(|p| p.display().to_string()).collect::<Vec<_>>().join(", "))]
    Busy {
        /// Mount points still mounted.
        failed: Vec<PathBuf>,
        /// The first failure.
        #[source]
        source: SystemError,
    },
}

/// Unmounts `mountpoint` as recorded in `state_dir`: SIGTERM to the serving process (SIGKILL
/// after `stop_timeout`), then the overlay and every layer mount, lazily when busy, then the
/// record and the mount's directory.
pub fn unmount(
    state_dir: &Path,
    mountpoint: &Path,
    stop_timeout: Duration,
) -> Result<(), UnmountError> {
    let record = find_record(state_dir, mountpoint)?;
    remove_mounts(state_dir, &record, stop_timeout)?;
    if let Err(error) = std::fs::remove_dir_all(&record.work_dir)
        && error.kind() != std::io::ErrorKind::NotFound
    {
        tracing::warn!(dir = %record.work_dir.display(), %error, "failed to remove the mount directory");
    }
    Ok(())
}

/// Stops the server of `record` and removes its mounts, its layer, upper and work directories
/// and the record, keeping the log and stats files of the mount directory.
pub(crate) fn remove_mounts(
    state_dir: &Path,
    record: &MountRecord,
    stop_timeout: Duration,
) -> Result<(), UnmountError> {
    stop_server(record.pid, stop_timeout);

    let mut failed = Vec::new();
    let mut first_error = None;
    let targets =
        std::iter::once(record.mountpoint.clone()).chain(record.layer_mounts.iter().rev().cloned());
    for target in targets {
        match system::unmount(&target) {
            Ok(removed) => {
                if removed {
                    tracing::info!(mountpoint = %target.display(), "unmounted");
                }
            }
            Err(error) => {
                failed.push(target);
                first_error.get_or_insert(error);
            }
        }
    }
    if let Some(source) = first_error {
        return Err(UnmountError::Busy { failed, source });
    }

    let paths = MountPaths::new(state_dir, &record.mountpoint);
    remove_mount_dirs(&paths);
    let _ = std::fs::remove_file(&paths.record);
    Ok(())
}

/// Sends SIGTERM and waits for the process to go; sends SIGKILL when it outlives `timeout`.
/// Does nothing unless `pid` is a live lazypull process.
fn stop_server(pid: u32, timeout: Duration) {
    if !system::is_lazypull_process(pid) {
        return;
    }
    let Ok(raw) = i32::try_from(pid) else { return };
    let target = Pid::from_raw(raw);
    if kill(target, Signal::SIGTERM).is_err() {
        return;
    }
    if wait_gone(pid, timeout) {
        return;
    }
    tracing::warn!(
        pid,
        timeout_s = timeout.as_secs(),
        "serving process ignored SIGTERM; sending SIGKILL"
    );
    let _ = kill(target, Signal::SIGKILL);
    wait_gone(pid, Duration::from_secs(5));
}

fn wait_gone(pid: u32, timeout: Duration) -> bool {
    let deadline = Instant::now() + timeout;
    while Instant::now() < deadline {
        if !system::is_lazypull_process(pid) {
            return true;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    !system::is_lazypull_process(pid)
}
