//! The converter's error type.
//!
//! Every variant names the image reference, layer digest or path it is about, and its message
//! tells what to do next. Causes are kept as `source` so the CLI prints the whole chain once.

use std::path::PathBuf;

use estargz::Digest;

/// Everything that can make a conversion fail.
#[derive(Debug, thiserror::Error)]
pub enum ConvertError {
    /// An image reference could not be parsed.
    #[error("invalid image reference {reference:?}: {reason}")]
    InvalidReference {
        /// The text as given.
        reference: String,
        /// The problem found.
        reason: String,
    },

    /// An option is out of range or contradicts another one.
    #[error("invalid option {option}: {reason}")]
    InvalidOption {
        /// Option name as the CLI spells it.
        option: &'static str,
        /// Reason for the rejection.
        reason: String,
    },

    /// The prioritized-files list could not be read.
    #[error("failed to read the prioritized-files list {path}")]
    PrioritizeFile {
        /// Path of the list.
        path: PathBuf,
        /// Underlying error.
        #[source]
        source: std::io::Error,
    },

    /// A registry could not be reached at all.
    #[error("cannot connect to registry {registry} ({url}): {hint}")]
    RegistryUnreachable {
        /// `host[:port]` of the registry.
        registry: String,
        /// The URL scheme and host that were tried.
        url: String,
        /// Advice that depends on the URL scheme that was tried.
        hint: &'static str,
        /// Underlying error.
        #[source]
        source: Box<dyn std::error::Error + Send + Sync>,
    },

    /// The registry rejected our credentials or asked for some we do not have.
    #[error(
        "registry {registry} denied access to {reference} ({operation}): log in with `docker login {registry}` \
         or check the credentials in the docker config (DOCKER_CONFIG)"
    )]
    Unauthorized {
        /// `host[:port]` of the registry.
        registry: String,
        /// The image reference.
        reference: String,
        /// `pull` or `push`.
        operation: &'static str,
        /// Underlying error.
        #[source]
        source: Box<dyn std::error::Error + Send + Sync>,
    },

    /// A manifest, tag or repository does not exist.
    #[error("{reference} not found: check the repository name and the tag or digest")]
    NotFound {
        /// The reference that was looked up.
        reference: String,
        /// Underlying error, when the registry returned one.
        #[source]
        source: Option<Box<dyn std::error::Error + Send + Sync>>,
    },

    /// Any other registry failure.
    #[error("registry request failed: {operation} {reference}")]
    Registry {
        /// Operation that failed.
        operation: &'static str,
        /// The reference or blob involved.
        reference: String,
        /// Underlying error.
        #[source]
        source: Box<dyn std::error::Error + Send + Sync>,
    },

    /// The docker credential store could not give credentials.
    #[error(
        "failed to read credentials for {registry} from the docker config: {reason}; fix the docker config \
         (DOCKER_CONFIG) or its credential helper"
    )]
    Credentials {
        /// `host[:port]` of the registry.
        registry: String,
        /// Failure description, free of secrets.
        reason: String,
    },

    /// An OCI layout has no image with the requested tag.
    #[error(
        "OCI layout {layout} has no image tagged {tag:?} (tags present: {available}); check the tag after oci:DIR:"
    )]
    TagNotInLayout {
        /// Layout directory.
        layout: PathBuf,
        /// The tag asked for.
        tag: String,
        /// Tags the layout has, comma-separated, or "none".
        available: String,
    },

    /// An OCI layout directory is missing or invalid.
    #[error("OCI layout {path} is invalid: {reason}")]
    InvalidLayout {
        /// Layout directory.
        path: PathBuf,
        /// The problem found.
        reason: String,
    },

    /// A content-addressed object does not hash to the digest it was requested by.
    #[error(
        "{what} {expected} has digest {actual}: the source store is corrupt or was modified; fetch the \
         image again"
    )]
    DigestMismatch {
        /// Kind of object ("manifest", "config", "layer").
        what: &'static str,
        /// The digest it was requested by.
        expected: String,
        /// The digest of the bytes received.
        actual: Digest,
    },

    /// A content-addressed object does not have the size its descriptor promises.
    #[error(
        "{what} {digest} is {actual} bytes but its descriptor says {expected}: the source store is corrupt"
    )]
    SizeMismatch {
        /// Kind of object.
        what: &'static str,
        /// Its digest.
        digest: String,
        /// Size in the descriptor.
        expected: u64,
        /// Size found.
        actual: u64,
    },

    /// A manifest, index or config is too large to be plausible.
    #[error("{what} {digest} is {size} bytes, above the limit of {limit} bytes")]
    TooLarge {
        /// Kind of object.
        what: &'static str,
        /// Its digest.
        digest: String,
        /// Its size.
        size: u64,
        /// The limit.
        limit: u64,
    },

    /// A manifest, index or config is not valid JSON of the expected shape.
    #[error("{what} {digest} is invalid: {reason}")]
    InvalidDocument {
        /// Kind of document.
        what: &'static str,
        /// Its digest or reference.
        digest: String,
        /// The problem found.
        reason: String,
    },

    /// A media type (or digest algorithm) this converter does not handle.
    #[error("{what} {digest} has unsupported media type {media_type:?}{hint}")]
    UnsupportedMediaType {
        /// Kind of object.
        what: &'static str,
        /// Its digest or reference.
        digest: String,
        /// The media type found.
        media_type: String,
        /// Extra advice, starting with "; " when present.
        hint: &'static str,
    },

    /// No manifest of an index matches the requested platforms.
    #[error("{reference} has no manifest for platform {requested}; available: {available}")]
    PlatformNotFound {
        /// The image reference.
        reference: String,
        /// Platforms asked for.
        requested: String,
        /// Platforms the index lists.
        available: String,
    },

    /// A config's `rootfs.diff_ids` does not have one entry per layer.
    #[error(
        "manifest {manifest} has {layers} layers but its config lists {diff_ids} diffIDs: the image is \
         inconsistent"
    )]
    LayerCountMismatch {
        /// Manifest digest.
        manifest: String,
        /// Number of layers in the manifest.
        layers: usize,
        /// Number of diffIDs in the config.
        diff_ids: usize,
    },

    /// A layer uses a compression this converter cannot decode.
    #[error(
        "layer {layer} is compressed with {format}, which is not supported; recompress it as gzip or zstd"
    )]
    UnsupportedCompression {
        /// Layer digest.
        layer: String,
        /// The detected format.
        format: &'static str,
    },

    /// A compressed layer ends early.
    #[error(
        "layer {layer} is truncated: its {compression} stream ends after {read} compressed bytes; the blob \
         in the source is incomplete, push it again"
    )]
    TruncatedLayer {
        /// Layer digest.
        layer: String,
        /// "gzip" or "zstd".
        compression: &'static str,
        /// Compressed bytes read before the stream ended.
        read: u64,
        /// Decoder error.
        #[source]
        source: std::io::Error,
    },

    /// A compressed layer could not be decoded.
    #[error(
        "layer {layer} is not a valid {compression} stream (failed after {read} compressed bytes)"
    )]
    CorruptLayer {
        /// Layer digest.
        layer: String,
        /// "gzip" or "zstd".
        compression: &'static str,
        /// Compressed bytes read before the failure.
        read: u64,
        /// Decoder error.
        #[source]
        source: std::io::Error,
    },

    /// A layer decompresses to something that is not a tar archive.
    #[error("layer {layer} is not a tar archive after decompression")]
    NotTar {
        /// Layer digest.
        layer: String,
        /// Error from the tar reader.
        #[source]
        source: estargz::BuildError,
    },

    /// The eStargz writer failed on a layer for another reason.
    #[error("converting layer {layer} to eStargz failed")]
    Build {
        /// Layer digest.
        layer: String,
        /// Writer error.
        #[source]
        source: estargz::BuildError,
    },

    /// An eStargz input layer's TOC does not match its TOC-digest annotation.
    #[error(
        "eStargz layer {layer} has a TOC with digest {actual} but its annotation says {annotated}: the \
         annotation or the blob is wrong; pass --reconvert to rebuild the layer"
    )]
    TocDigestMismatch {
        /// Layer digest.
        layer: String,
        /// Digest from the annotation.
        annotated: String,
        /// Digest of the TOC in the blob.
        actual: Digest,
    },

    /// An eStargz input layer has a footer, but its TOC cannot be read.
    #[error(
        "eStargz layer {layer} has a broken footer or TOC; pass --reconvert to rebuild it from its tar content"
    )]
    BrokenEstargz {
        /// Layer digest.
        layer: String,
        /// Reader error.
        #[source]
        source: estargz::error::BlobError,
    },

    /// A layer carries a TOC-digest annotation but has no eStargz footer.
    #[error(
        "layer {layer} is annotated with TOC digest {annotated} but is not an eStargz blob ({reason}); pass \
         --reconvert to convert it anyway"
    )]
    AnnotatedButNotEstargz {
        /// Layer digest.
        layer: String,
        /// Digest from the annotation.
        annotated: String,
        /// Reason the footer was rejected.
        reason: String,
    },

    /// A layer passed through unchanged decompresses to a different diffID than the config records.
    #[error(
        "layer {layer} decompresses to diffID {actual} but the config says {expected}: the source image is \
         inconsistent; pass --reconvert to rebuild the layer and write a correct diffID"
    )]
    DiffIdMismatch {
        /// Layer digest.
        layer: String,
        /// diffID in the config.
        expected: String,
        /// diffID computed.
        actual: Digest,
    },

    /// A local file operation failed.
    #[error(
        "{action} {path} failed; check free space and permissions (temporary files go to --tmpdir)"
    )]
    Io {
        /// Operation that failed ("creating a temporary file in", "writing").
        action: &'static str,
        /// The file or directory.
        path: PathBuf,
        /// Underlying error.
        #[source]
        source: std::io::Error,
    },

    /// A background task ended abnormally (a bug).
    #[error("internal error while processing {what}: {message}")]
    Internal {
        /// Task description.
        what: String,
        /// Panic or join message.
        message: String,
    },

    /// The conversion was cancelled (Ctrl-C).
    #[error("conversion cancelled; nothing was tagged at the destination")]
    Cancelled,
}

impl ConvertError {
    /// Wraps a local I/O error with the path it concerns.
    pub(crate) fn io(
        action: &'static str,
        path: impl Into<PathBuf>,
        source: std::io::Error,
    ) -> Self {
        ConvertError::Io {
            action,
            path: path.into(),
            source,
        }
    }
}
