//! Errors of an audit.

use std::path::PathBuf;

use lazypull_converter::ConvertError;

/// Error that stops an audit before it has a report. A failed gate is not an error: it is part of the
/// report.
#[derive(Debug, thiserror::Error)]
pub enum AuditError {
    /// Reading the image (reference, manifests, config, blob download or digest) failed.
    #[error(transparent)]
    Image(#[from] ConvertError),
    /// A layer's tar stream could not be read.
    #[error("layer {layer}: invalid tar stream")]
    Tar {
        /// Digest of the layer.
        layer: String,
        /// The scanner's error.
        #[source]
        source: estargz::error::TarError,
    },
    /// A layer's compression is recognised but not supported.
    #[error("layer {layer} is compressed with {compression}, which is not supported")]
    UnsupportedCompression {
        /// Digest of the layer.
        layer: String,
        /// Name of the compression.
        compression: &'static str,
    },
    /// The image contains several platforms and none was chosen.
    #[error("the image holds {count} platforms ({available}); choose one with --platform")]
    AmbiguousPlatform {
        /// Number of platform manifests.
        count: usize,
        /// Their platforms.
        available: String,
    },
    /// The config file could not be read.
    #[error("failed to read the audit config {path}")]
    ConfigRead {
        /// The file.
        path: PathBuf,
        /// The I/O error.
        #[source]
        source: std::io::Error,
    },
    /// The config file is not valid.
    #[error("invalid audit config {path}: {reason}")]
    ConfigInvalid {
        /// The file.
        path: PathBuf,
        /// Reason it is invalid.
        reason: String,
    },
    /// A size or threshold value could not be parsed.
    #[error("invalid {what} {value:?}: {reason}")]
    InvalidValue {
        /// Which setting.
        what: &'static str,
        /// The text given.
        value: String,
        /// Reason it is invalid.
        reason: &'static str,
    },
    /// A blocking task failed to complete.
    #[error("internal error while {what}: {message}")]
    Internal {
        /// Task that was running.
        what: &'static str,
        /// The panic or cancellation message.
        message: String,
    },
}
