//! The per-mount record in the state directory: which process serves a mount and where its
//! pieces are, so `lazypull unmount` can clean up even after the server was killed.
//!
//! Layout under the state directory (mode 0700, because the layer mounts expose setuid files):
//!
//! ```text
//! mounts/<id>.json      this record, one per mount point
//! mounts/<id>.lock      flock held by the serving process; kept for the next mount
//! <id>/layers/<n>/      FUSE mount of layer n (0 = bottom)
//! <id>/upper/, work/    overlayfs upper and work directories
//! <id>/stats.json       counters, rewritten every second and on SIGUSR1
//! <id>/serve.log        log of the detached serving process
//! ```
//!
//! `<id>` is the first 16 hex digits of the SHA-256 of the absolute mount point.

use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};
use sha2::Digest as _;

/// Errors reading or writing records.
#[derive(Debug, thiserror::Error)]
pub enum RecordError {
    /// No record exists for the mount point.
    #[error("no lazypull mount is recorded for {mountpoint} in {state_dir}")]
    NotFound {
        /// Mount point asked for.
        mountpoint: PathBuf,
        /// State directory searched.
        state_dir: PathBuf,
    },
    /// The record file could not be read or written.
    #[error("failed to access mount record {path}")]
    Io {
        /// Record file.
        path: PathBuf,
        /// The I/O failure.
        #[source]
        source: std::io::Error,
    },
    /// The record file is not valid JSON of the expected shape.
    #[error("invalid mount record {path}")]
    Invalid {
        /// Record file.
        path: PathBuf,
        /// The parse failure.
        #[source]
        source: serde_json::Error,
    },
}

/// Everything `unmount` and `status` need to know about one mount.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct MountRecord {
    /// The image as given on the command line.
    pub image: String,
    /// Absolute path of the overlay mount.
    pub mountpoint: PathBuf,
    /// Process id of the serving process.
    pub pid: u32,
    /// Per-mount directory inside the state directory.
    pub work_dir: PathBuf,
    /// FUSE mount points of the layers, bottom layer first.
    pub layer_mounts: Vec<PathBuf>,
    /// Counters file.
    pub stats: PathBuf,
    /// Access trace file, when recording.
    pub trace: Option<PathBuf>,
}

/// Paths of one mount, derived from the state directory and the mount point.
#[derive(Debug, Clone)]
pub struct MountPaths {
    /// The record file.
    pub record: PathBuf,
    /// Per-mount directory.
    pub work_dir: PathBuf,
}

impl MountPaths {
    /// Paths for `mountpoint` (absolute) under `state_dir`.
    pub fn new(state_dir: &Path, mountpoint: &Path) -> MountPaths {
        let hash = sha2::Sha256::digest(mountpoint.as_os_str().as_encoded_bytes());
        let id = hex::encode(&hash[..8]);
        MountPaths {
            record: state_dir.join("mounts").join(format!("{id}.json")),
            work_dir: state_dir.join(id),
        }
    }

    /// FUSE mount point of layer `n`.
    pub fn layer_dir(&self, n: usize) -> PathBuf {
        self.work_dir.join("layers").join(n.to_string())
    }

    /// Overlay upper directory.
    pub fn upper(&self) -> PathBuf {
        self.work_dir.join("upper")
    }

    /// Overlay work directory.
    pub fn work(&self) -> PathBuf {
        self.work_dir.join("work")
    }

    /// Counters file.
    pub fn stats(&self) -> PathBuf {
        self.work_dir.join("stats.json")
    }

    /// Log of the detached serving process.
    pub fn log(&self) -> PathBuf {
        self.work_dir.join("serve.log")
    }
}

/// Returns the default state directory: `$XDG_RUNTIME_DIR/lazypull` when set, else
/// `/run/lazypull`.
pub fn default_state_dir() -> PathBuf {
    match std::env::var_os("XDG_RUNTIME_DIR").filter(|dir| !dir.is_empty()) {
        Some(dir) => PathBuf::from(dir).join("lazypull"),
        None => PathBuf::from("/run/lazypull"),
    }
}

/// Writes `record` to `path` through a temporary file and a rename.
pub fn write_record(path: &Path, record: &MountRecord) -> Result<(), RecordError> {
    let io = |source| RecordError::Io {
        path: path.to_path_buf(),
        source,
    };
    let json = serde_json::to_vec_pretty(record).map_err(|source| RecordError::Invalid {
        path: path.to_path_buf(),
        source,
    })?;
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir).map_err(io)?;
    }
    let temp = path.with_extension("json.tmp");
    std::fs::write(&temp, json).map_err(io)?;
    std::fs::rename(&temp, path).map_err(io)
}

/// Reads the record of `mountpoint`.
pub fn read_record(state_dir: &Path, mountpoint: &Path) -> Result<MountRecord, RecordError> {
    let path = MountPaths::new(state_dir, mountpoint).record;
    let bytes = match std::fs::read(&path) {
        Ok(bytes) => bytes,
        Err(error) if error.kind() == std::io::ErrorKind::NotFound => {
            return Err(RecordError::NotFound {
                mountpoint: mountpoint.to_path_buf(),
                state_dir: state_dir.to_path_buf(),
            });
        }
        Err(source) => return Err(RecordError::Io { path, source }),
    };
    serde_json::from_slice(&bytes).map_err(|source| RecordError::Invalid { path, source })
}

/// Resolves a mount point given by a user to the absolute form records use, without touching a
/// possibly dead mount: the path is made absolute lexically first, and canonicalized only when
/// no record matches that form.
pub fn find_record(state_dir: &Path, mountpoint: &Path) -> Result<MountRecord, RecordError> {
    let absolute = std::path::absolute(mountpoint).unwrap_or_else(|_| mountpoint.to_path_buf());
    match read_record(state_dir, &absolute) {
        Err(RecordError::NotFound { .. }) => match std::fs::canonicalize(mountpoint) {
            Ok(canonical) if canonical != absolute => read_record(state_dir, &canonical),
            _ => Err(RecordError::NotFound {
                mountpoint: absolute,
                state_dir: state_dir.to_path_buf(),
            }),
        },
        other => other,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn record_round_trips() {
        let dir = tempfile::tempdir().unwrap();
        let mountpoint = PathBuf::from("/mnt/app");
        let paths = MountPaths::new(dir.path(), &mountpoint);
        let record = MountRecord {
            image: "oci:/img".into(),
            mountpoint: mountpoint.clone(),
            pid: 42,
            work_dir: paths.work_dir.clone(),
            layer_mounts: vec![paths.layer_dir(0)],
            stats: paths.stats(),
            trace: None,
        };
        write_record(&paths.record, &record).unwrap();
        assert_eq!(read_record(dir.path(), &mountpoint).unwrap(), record);
        assert!(matches!(
            read_record(dir.path(), Path::new("/other")),
            Err(RecordError::NotFound { .. })
        ));
    }

    #[test]
    fn paths_differ_per_mountpoint() {
        let a = MountPaths::new(Path::new("/s"), Path::new("/mnt/a"));
        let b = MountPaths::new(Path::new("/s"), Path::new("/mnt/b"));
        assert_ne!(a.work_dir, b.work_dir);
        assert_eq!(a.record.parent(), Some(Path::new("/s/mounts")));
    }
}
