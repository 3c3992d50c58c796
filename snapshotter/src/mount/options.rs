//! Settings of `lazypull mount` in library form; the CLI converts its flags into them.

use std::path::PathBuf;
use std::time::Duration;

use crate::fs::OpaqueXattr;
use crate::layer::LayerConfig;
use crate::remote::{Platform, RegistryConfig};

/// Default wait for the prioritized prefetch of every layer before the mount reports ready.
pub const DEFAULT_PREFETCH_TIMEOUT: Duration = Duration::from_secs(10);
/// Default limit of one FUSE read; past it the reader gets `EIO` instead of hanging.
pub const DEFAULT_READ_TIMEOUT: Duration = Duration::from_secs(60);
/// Default time `unmount` waits for the serving process to exit after SIGTERM.
pub const DEFAULT_STOP_TIMEOUT: Duration = Duration::from_secs(10);

/// Everything a mount needs.
#[derive(Debug, Clone)]
pub struct MountOptions {
    /// Registry reference or `oci:DIR[:TAG]`.
    pub image: String,
    /// Absolute path where the merged image appears.
    pub mountpoint: PathBuf,
    /// State directory for records, layer mounts and overlay directories.
    pub state_dir: PathBuf,
    /// Access trace file to write, if any.
    pub record_trace: Option<PathBuf>,
    /// Registry access.
    pub registry: RegistryConfig,
    /// Platform to pick from an image index.
    pub platform: Platform,
    /// Read path settings: the chunk cache shared by the layers, fetching and prefetch.
    pub layer: LayerConfig,
    /// Wait for the prioritized prefetch before reporting ready.
    pub prefetch_timeout: Duration,
    /// Limit of one read.
    pub read_timeout: Duration,
    /// fuser request threads per layer.
    pub fuse_threads: usize,
    /// Opaque-directory attribute overlayfs reads.
    pub opaque_xattr: OpaqueXattr,
}

impl MountOptions {
    /// Options with defaults for everything but the image, mount point and state directory.
    pub fn new(image: String, mountpoint: PathBuf, state_dir: PathBuf) -> MountOptions {
        MountOptions {
            image,
            mountpoint,
            state_dir,
            record_trace: None,
            registry: RegistryConfig::default(),
            platform: Platform::host(),
            layer: default_layer_config(),
            prefetch_timeout: DEFAULT_PREFETCH_TIMEOUT,
            read_timeout: DEFAULT_READ_TIMEOUT,
            fuse_threads: 2,
            opaque_xattr: OpaqueXattr::Trusted,
        }
    }
}

/// Read path defaults for a mount: the shared defaults, except that background fetch of whole
/// layers is off, so a mount fetches only what its workload reads (and the prioritized files).
pub fn default_layer_config() -> LayerConfig {
    let mut config = LayerConfig::default();
    config.prefetch.background = false;
    config
}
