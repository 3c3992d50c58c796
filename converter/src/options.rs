//! Conversion options, their defaults and their validation.

use std::path::PathBuf;

use estargz::Compression;

use crate::error::ConvertError;
use crate::image_ref::ImageRef;
use crate::platform::Platform;

/// Default number of layers converted at the same time.
pub const DEFAULT_JOBS: usize = 2;

/// Progress display mode.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ProgressMode {
    /// One progress bar per layer on stderr (for terminals).
    Bars,
    /// `tracing` info lines: start, every 10 %, finish.
    Log,
    /// No per-layer progress; the start and finish of each layer are still logged at info.
    Quiet,
}

/// Everything a conversion needs. Build it with [`ConvertOptions::new`] and adjust the fields.
#[derive(Debug, Clone)]
pub struct ConvertOptions {
    /// The image to read.
    pub source: ImageRef,
    /// Destination image. Its tag is written last.
    pub destination: ImageRef,
    /// Largest uncompressed chunk of a regular file, in bytes.
    pub chunk_size: u64,
    /// Compression of the new layers.
    pub compression: Compression,
    /// Compression level; `None` means the format's default (gzip 6, zstd 3).
    pub level: Option<i32>,
    /// Paths to put first in every layer that contains them (see [`crate::prioritize`]).
    pub prioritized: Vec<Vec<u8>>,
    /// Layers converted at the same time.
    pub jobs: usize,
    /// Compression threads per layer.
    pub threads: usize,
    /// Rebuild layers that are already eStargz instead of passing them through.
    pub reconvert: bool,
    /// Platforms to convert from an index; empty means all.
    pub platforms: Vec<Platform>,
    /// Directory for temporary files; `None` means the system default (`$TMPDIR` or `/tmp`).
    pub tmpdir: Option<PathBuf>,
    /// Progress display.
    pub progress: ProgressMode,
}

impl ConvertOptions {
    /// Options with every default: 4 MiB chunks, gzip level 6, 2 jobs, one thread per core.
    pub fn new(source: ImageRef, destination: ImageRef) -> Self {
        ConvertOptions {
            source,
            destination,
            chunk_size: estargz::DEFAULT_CHUNK_SIZE,
            compression: Compression::Gzip,
            level: None,
            prioritized: Vec::new(),
            jobs: DEFAULT_JOBS,
            threads: std::thread::available_parallelism()
                .map(|n| n.get())
                .unwrap_or(1),
            reconvert: false,
            platforms: Vec::new(),
            tmpdir: None,
            progress: ProgressMode::Quiet,
        }
    }

    /// Returns the compression level in effect: the given one, else the format's default.
    pub fn effective_level(&self) -> i32 {
        self.level.unwrap_or(match self.compression {
            Compression::Gzip => estargz::build::DEFAULT_GZIP_LEVEL,
            Compression::Zstd => estargz::build::DEFAULT_ZSTD_LEVEL,
        })
    }

    /// Returns the format writer's options for one layer.
    pub fn build_options(&self) -> estargz::build::BuildOptions {
        estargz::build::BuildOptions {
            chunk_size: self.chunk_size,
            compression: self.compression,
            level: self.effective_level(),
            prioritized: self.prioritized.clone(),
            threads: self.threads,
            limits: estargz::Limits::default(),
        }
    }

    /// Returns the temporary directory in effect.
    pub fn tmpdir(&self) -> PathBuf {
        self.tmpdir.clone().unwrap_or_else(std::env::temp_dir)
    }

    /// Checks every option, naming the bad one.
    pub fn validate(&self) -> Result<(), ConvertError> {
        if self.jobs == 0 || self.jobs > 64 {
            return Err(ConvertError::InvalidOption {
                option: "--jobs",
                reason: format!("{} is outside 1..=64", self.jobs),
            });
        }
        if let ImageRef::Registry(r) = &self.destination
            && r.reference.digest().is_some()
        {
            return Err(ConvertError::InvalidOption {
                option: "DST",
                reason: format!(
                    "{} names a digest; the destination needs a tag",
                    r.reference
                ),
            });
        }
        self.build_options().validate().map_err(|e| match e {
            // The builder names its options in words; the message names the CLI flag instead.
            estargz::BuildError::InvalidOption { option, reason } => ConvertError::InvalidOption {
                option: match option {
                    "chunk size" => "--chunk-size",
                    "threads" => "--threads",
                    _ => "--compression-level",
                },
                reason,
            },
            other => ConvertError::InvalidOption {
                option: "--compression-level",
                reason: other.to_string(),
            },
        })?;
        let tmpdir = self.tmpdir();
        if !tmpdir.is_dir() {
            return Err(ConvertError::InvalidOption {
                option: "--tmpdir",
                reason: format!("{} is not an existing directory", tmpdir.display()),
            });
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn options() -> ConvertOptions {
        ConvertOptions::new(
            ImageRef::parse("oci:/tmp/a", false).unwrap(),
            ImageRef::parse("oci:/tmp/b", false).unwrap(),
        )
    }

    #[test]
    fn defaults_validate() {
        let options = options();
        options.validate().unwrap();
        assert_eq!(options.effective_level(), 6);
        assert_eq!(options.chunk_size, 4 << 20);
    }

    #[test]
    fn zstd_default_level_is_three() {
        let mut options = options();
        options.compression = Compression::Zstd;
        assert_eq!(options.effective_level(), 3);
    }

    #[test]
    fn bad_values_name_their_option() {
        let mut bad = options();
        bad.level = Some(12);
        assert!(
            bad.validate()
                .unwrap_err()
                .to_string()
                .contains("--compression-level")
        );
        let mut bad = options();
        bad.chunk_size = 0;
        assert_eq!(
            bad.validate().unwrap_err().to_string(),
            "invalid option --chunk-size: 0 is outside 1..=1073741824 bytes"
        );
        let mut bad = options();
        bad.jobs = 0;
        assert!(bad.validate().unwrap_err().to_string().contains("--jobs"));
        let mut bad = options();
        bad.tmpdir = Some(PathBuf::from("/nonexistent/lazypull"));
        assert!(bad.validate().unwrap_err().to_string().contains("--tmpdir"));
    }

    #[test]
    fn digest_destination_is_rejected() {
        let mut bad = options();
        bad.destination =
            ImageRef::parse(&format!("127.0.0.1:1/a@sha256:{}", "0".repeat(64)), false).unwrap();
        assert!(bad.validate().unwrap_err().to_string().contains("DST"));
    }
}
