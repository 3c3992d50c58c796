//! Mounting one layer filesystem with fuser and keeping the session alive.

use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use fuser::{BackgroundSession, Config, MountOption, SessionACL};
use tokio::runtime::Handle;

use super::adapter::{LayerFs, MAX_READ};
use crate::fs::{FileSource, FsCore};

/// Readahead set on the mount's backing device, in KiB. The kernel offers FUSE only 128 KiB in
/// `init`, and fuser 0.18's `set_max_readahead(1 MiB)` is rejected, so buffered reads would
/// arrive as 128 KiB requests. Raising the bdi value after mounting makes them 1 MiB.
const READ_AHEAD_KB: u32 = 1024;

/// Maximum number of request threads of one layer mount. Each thread keeps a cloned `/dev/fuse`
/// fd, and reads are served by the runtime's workers, so more threads only cost memory and fds.
pub const MAX_FUSE_THREADS: usize = 64;

/// Settings of a layer mount.
#[derive(Debug, Clone)]
pub struct MountSettings {
    /// fuser request threads, each with its own cloned `/dev/fuse` fd.
    pub threads: usize,
    /// Name shown as the mount source.
    pub fsname: String,
    /// Let every user access the mount (`allow_other`), as overlayfs lower layers of containers
    /// need.
    pub allow_other: bool,
}

impl Default for MountSettings {
    fn default() -> Self {
        MountSettings {
            threads: 2,
            fsname: "lazypull".to_owned(),
            allow_other: true,
        }
    }
}

/// A mounted layer. Dropping it unmounts (non-lazily; a busy mount stays until detached).
pub struct LayerMount {
    mountpoint: PathBuf,
    session: Option<BackgroundSession>,
}

impl std::fmt::Debug for LayerMount {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LayerMount")
            .field("mountpoint", &self.mountpoint)
            .finish_non_exhaustive()
    }
}

impl LayerMount {
    /// Mounts `core` read-only at `mountpoint` and starts serving it. Reads run on `runtime`.
    ///
    /// Returns once the kernel finished the FUSE handshake, so the mount is usable.
    pub fn mount<S: FileSource + ?Sized>(
        core: Arc<FsCore<S>>,
        runtime: Handle,
        mountpoint: &Path,
        settings: &MountSettings,
    ) -> std::io::Result<LayerMount> {
        let fs = LayerFs::new(core, runtime, mountpoint.display().to_string());
        let mut config = Config::default();
        config.mount_options = vec![
            MountOption::RO,
            MountOption::FSName(settings.fsname.clone()),
            MountOption::DefaultPermissions,
            // fuser defaults to nodev and nosuid; image layers carry device nodes (overlayfs
            // whiteouts among them) and setuid programs that must keep working.
            MountOption::Dev,
            MountOption::Suid,
            MountOption::CUSTOM(format!("max_read={MAX_READ}")),
        ];
        config.acl = if settings.allow_other {
            SessionACL::All
        } else {
            SessionACL::Owner
        };
        config.n_threads = Some(settings.threads.clamp(1, MAX_FUSE_THREADS));
        config.clone_fd = true;
        let session = fuser::spawn_mount(fs, mountpoint, &config)?;
        raise_read_ahead(mountpoint);
        Ok(LayerMount {
            mountpoint: mountpoint.to_path_buf(),
            session: Some(session),
        })
    }

    /// Returns the layer's mount point.
    pub fn mountpoint(&self) -> &Path {
        &self.mountpoint
    }

    /// Unmounts and waits for the request threads to finish.
    pub fn unmount(mut self) -> std::io::Result<()> {
        match self.session.take() {
            Some(session) => session.umount_and_join(),
            None => Ok(()),
        }
    }
}

/// Writes [`READ_AHEAD_KB`] to `/sys/class/bdi/<major>:<minor>/read_ahead_kb` of the mount's
/// anonymous device. Failure only costs throughput, so it is logged, not returned.
fn raise_read_ahead(mountpoint: &Path) {
    let dev = match std::fs::metadata(mountpoint) {
        Ok(meta) => meta.dev(),
        Err(error) => {
            tracing::warn!(mountpoint = %mountpoint.display(), %error, "failed to stat the new mount");
            return;
        }
    };
    let (major, minor) = (libc::major(dev), libc::minor(dev));
    let path = format!("/sys/class/bdi/{major}:{minor}/read_ahead_kb");
    if let Err(error) = std::fs::write(&path, READ_AHEAD_KB.to_string()) {
        tracing::warn!(%path, %error, "failed to raise the readahead of the mount");
    }
}
