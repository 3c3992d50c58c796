//! The temporary directory of one `lazypull optimize` run and the lazy mount inside it.
//!
//! Layout: `root/` (the mount point), `state/` (the mount's state directory), `trace.txt` (the
//! access trace) and `source/` (an eStargz copy of a source image that was not eStargz).
//! Dropping the workspace unmounts first and removes the directory only when nothing is left
//! mounted below it, because removing files through a live overlay would write whiteouts.

use std::os::unix::process::CommandExt as _;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use anyhow::Context;
use lazypull_snapshotter::mount::{self, DEFAULT_STOP_TIMEOUT, RecordError, UnmountError};

/// The temporary directory of a run.
pub struct Workspace {
    dir: Option<tempfile::TempDir>,
    mounted: bool,
}

impl Workspace {
    /// Creates the directory under `parent`.
    pub fn create(parent: &Path) -> anyhow::Result<Workspace> {
        let dir = tempfile::Builder::new()
            .prefix("lazypull-optimize-")
            .tempdir_in(parent)
            .with_context(|| {
                format!(
                    "failed to create a temporary directory in {}; choose another with --tmpdir",
                    parent.display()
                )
            })?;
        std::fs::create_dir(dir.path().join("root")).with_context(|| {
            format!(
                "failed to create the mount point in {}",
                dir.path().display()
            )
        })?;
        Ok(Workspace {
            dir: Some(dir),
            mounted: false,
        })
    }

    fn path(&self) -> &Path {
        self.dir
            .as_ref()
            .map_or(Path::new("/nonexistent"), tempfile::TempDir::path)
    }

    /// Returns the mount point.
    pub fn root(&self) -> PathBuf {
        self.path().join("root")
    }

    /// Returns the state directory of the mount.
    pub fn state_dir(&self) -> PathBuf {
        self.path().join("state")
    }

    /// Returns the trace file the mount writes.
    pub fn trace(&self) -> PathBuf {
        self.path().join("trace.txt")
    }

    /// Returns the directory for an eStargz copy of the source image.
    pub fn source_layout(&self) -> PathBuf {
        self.path().join("source")
    }

    /// Mounts `image` at [`Self::root`] with `lazypull mount --record-trace`, run as a child
    /// process of this binary, and returns once the mount is ready.
    ///
    /// The child gets its own process group, so a Ctrl-C on the terminal reaches only this
    /// process, which then unmounts in order.
    pub fn mount(&mut self, image: &str, extra_args: &[String]) -> anyhow::Result<()> {
        // /proc/self/exe still runs this binary after a rebuild replaced its file, which
        // `current_exe` (a path) does not.
        let binary = Path::new("/proc/self/exe");
        // Marked before the child starts: if it gets as far as mounting, the drop must unmount.
        self.mounted = true;
        // The serving process keeps this argv[0]. `lazypull unmount` stops only a process whose
        // argv[0] names lazypull, so "/proc/self/exe" would leave the server running.
        let output = Command::new(binary)
            .arg0("lazypull")
            .arg("mount")
            .arg(image)
            .arg(self.root())
            .arg("--state-dir")
            .arg(self.state_dir())
            .arg("--record-trace")
            .arg(self.trace())
            .arg("--no-disk-cache")
            .args(extra_args)
            .stdin(Stdio::null())
            .process_group(0)
            .output()
            .context("failed to run `lazypull mount`")?;
        if !output.status.success() {
            let message = String::from_utf8_lossy(&output.stderr);
            let message = message.trim().trim_start_matches("error: ");
            anyhow::bail!("failed to mount {image}: {message}");
        }
        Ok(())
    }

    /// Unmounts the image, stopping its serving process. Doing nothing is success when nothing
    /// was mounted.
    pub fn unmount(&mut self) -> anyhow::Result<()> {
        if !self.mounted {
            return Ok(());
        }
        match mount::unmount(&self.state_dir(), &self.root(), DEFAULT_STOP_TIMEOUT) {
            Ok(()) | Err(UnmountError::Record(RecordError::NotFound { .. })) => {
                self.mounted = false;
                Ok(())
            }
            Err(error) => Err(error).with_context(|| {
                format!(
                    "failed to unmount {}; run `lazypull unmount --state-dir {} {}`",
                    self.root().display(),
                    self.state_dir().display(),
                    self.root().display()
                )
            }),
        }
    }
}

impl Drop for Workspace {
    fn drop(&mut self) {
        if let Err(error) = self.unmount() {
            tracing::error!(error = format!("{error:#}"), "cleanup failed");
        }
        if self.mounted
            && let Some(dir) = self.dir.take()
        {
            let kept = dir.keep();
            tracing::warn!(dir = %kept.display(), "left the temporary directory in place because a mount remains below it");
        }
    }
}
