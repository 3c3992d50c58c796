//! Checks of the host made before anything is mounted, so a missing privilege or device is
//! reported with its fix instead of as a failed system call.

use std::path::Path;

use super::error::WorkloadError;

/// The FUSE device the layer mounts open.
const FUSE_DEVICE: &str = "/dev/fuse";

/// Checks that the process runs as root and that the FUSE device exists.
pub fn check_host() -> Result<(), WorkloadError> {
    if !nix::unistd::geteuid().is_root() {
        return Err(WorkloadError::NotRoot);
    }
    if !Path::new(FUSE_DEVICE).exists() {
        return Err(WorkloadError::FuseMissing {
            device: FUSE_DEVICE,
        });
    }
    Ok(())
}
