//! The error type of the remote layer.

use std::path::PathBuf;
use std::time::Duration;

/// Errors from reading blobs and resolving images.
///
/// Variants carry the host, range or digest involved so that callers can log them and decide
/// what to do without parsing messages. [`RemoteError::kind`] groups them for metrics and
/// [`RemoteError::is_retryable`] reports whether another attempt may succeed.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum RemoteError {
    /// The requested range does not lie inside the blob.
    #[error("range {start}..{end} is outside blob {blob} of {size} bytes")]
    RangeOutOfBounds {
        /// Blob identifier as returned by `BlobSource::id`.
        blob: String,
        /// First byte requested.
        start: u64,
        /// One past the last byte requested.
        end: u64,
        /// Blob size in bytes.
        size: u64,
    },

    /// One attempt did not finish within the configured request timeout.
    #[error("request to {host} timed out after {timeout:?}")]
    Timeout {
        /// Host the request was sent to.
        host: String,
        /// The per-attempt timeout that expired.
        timeout: Duration,
    },

    /// Connecting, sending or receiving failed below HTTP.
    #[error("HTTP transport to {host} failed")]
    Transport {
        /// Host the request was sent to.
        host: String,
        /// The underlying client error.
        #[source]
        source: reqwest::Error,
    },

    /// The server returned a status this layer does not handle as success.
    #[error("{host} returned HTTP {status} for {request}{}", detail_suffix(detail))]
    Status {
        /// Host that returned the status.
        host: String,
        /// HTTP status code.
        status: u16,
        /// Method and path, without query (signed URLs carry secrets in their query).
        request: String,
        /// Delay requested by a `Retry-After` header, already capped.
        retry_after: Option<Duration>,
        /// First error code and message from a registry error body, if any.
        detail: Option<String>,
    },

    /// The registry or storage host rejected our credentials, even after a refresh.
    #[error(
        "{host} rejected the credentials with HTTP {status} for {request}{}",
        detail_suffix(detail)
    )]
    Unauthorized {
        /// Host that rejected the request.
        host: String,
        /// 401 or 403.
        status: u16,
        /// Method and path, without query.
        request: String,
        /// First error code and message from a registry error body, if any.
        detail: Option<String>,
    },

    /// The blob or manifest does not exist on the host.
    #[error("{host} has no {request} (HTTP 404)")]
    NotFound {
        /// Host that returned 404.
        host: String,
        /// Method and path, without query.
        request: String,
    },

    /// The server returned 416 for a range we believed valid.
    #[error(
        "{host} rejected range {start}..{end} as unsatisfiable (blob size reported: {total:?})"
    )]
    RangeNotSatisfiable {
        /// Host that returned 416.
        host: String,
        /// First byte requested.
        start: u64,
        /// One past the last byte requested.
        end: u64,
        /// Size from `Content-Range: bytes */<size>`, when present.
        total: Option<u64>,
    },

    /// The response body ended before the expected number of bytes arrived.
    #[error("{host} sent {received} of {expected} expected body bytes")]
    ShortBody {
        /// Host that sent the body.
        host: String,
        /// Bytes expected.
        expected: u64,
        /// Bytes received before the body ended.
        received: u64,
    },

    /// The response body broke off with a transport error.
    #[error("body from {host} broke off after {received} bytes")]
    BodyInterrupted {
        /// Host that sent the body.
        host: String,
        /// Bytes received before the error.
        received: u64,
        /// The underlying client error.
        #[source]
        source: reqwest::Error,
    },

    /// A body was larger than the limit for its kind (manifest, config, token).
    #[error("{what} from {from} exceeds the limit of {limit} bytes")]
    BodyTooLarge {
        /// Host or file the body came from.
        from: String,
        /// Kind of body (manifest, config, token response).
        what: &'static str,
        /// The limit in bytes.
        limit: u64,
    },

    /// A response could not be used as the response to a range request.
    #[error("{host} sent an unusable response to range {start}..{end}: {issue}")]
    RangeResponse {
        /// Host that sent the response.
        host: String,
        /// First byte requested.
        start: u64,
        /// One past the last byte requested.
        end: u64,
        /// Description of the problem.
        issue: RangeIssue,
    },

    /// Redirects did not end within the hop limit, or a `Location` was unusable.
    #[error("redirect from {host} is unusable: {reason}")]
    Redirect {
        /// Host that sent the redirect.
        host: String,
        /// Description of the problem.
        reason: String,
    },

    /// The registry's authentication challenge or token response was unusable.
    #[error("authentication with {host} failed: {reason}")]
    AuthProtocol {
        /// Registry host.
        host: String,
        /// Description of the problem.
        reason: String,
    },

    /// The credential source failed or did not return in time.
    #[error("no credentials for {host}")]
    Credentials {
        /// Registry host the credentials were looked up for.
        host: String,
        /// Cause of the lookup failure.
        #[source]
        source: super::credentials::CredentialError,
    },

    /// All attempts failed; `source` is the last failure.
    #[error("gave up after {attempts} attempts")]
    RetriesExhausted {
        /// Attempts made, including the first.
        attempts: u32,
        /// The last failure.
        #[source]
        source: Box<RemoteError>,
    },

    /// Every configured host (mirrors, then the origin) failed; `source` is the origin's failure.
    #[error("all {hosts} hosts for {registry} failed")]
    AllHostsFailed {
        /// Registry name from the image reference.
        registry: String,
        /// Number of hosts tried.
        hosts: usize,
        /// The failure of the last host tried.
        #[source]
        source: Box<RemoteError>,
    },

    /// An image reference could not be parsed.
    #[error("invalid image reference {input:?}: {reason}")]
    InvalidReference {
        /// The text given.
        input: String,
        /// Reason for the rejection.
        reason: String,
    },

    /// A digest string is malformed or uses an unsupported algorithm.
    #[error("invalid digest {value:?}: expected sha256:<64 lower-case hex digits>")]
    InvalidDigest {
        /// The rejected text, cut to 100 characters.
        value: String,
    },

    /// Content did not hash to the digest that named it.
    #[error("{what} has digest {actual}, expected {expected}")]
    DigestMismatch {
        /// Kind of content (manifest, config, index).
        what: &'static str,
        /// Digest that was asked for.
        expected: String,
        /// Digest of the bytes received.
        actual: String,
    },

    /// Content had a different size than its descriptor states.
    #[error("{what} {digest} has {actual} bytes, descriptor says {expected}")]
    SizeMismatch {
        /// Which content.
        what: &'static str,
        /// Digest of the content.
        digest: String,
        /// Size from the descriptor.
        expected: u64,
        /// Size found.
        actual: u64,
    },

    /// A manifest, index or `index.json` could not be parsed or has an unsupported type.
    #[error("invalid {what}: {reason}")]
    InvalidManifest {
        /// Which document.
        what: &'static str,
        /// Reason for the rejection.
        reason: String,
    },

    /// An index has no manifest for the wanted platform.
    #[error("no manifest for platform {wanted}; available: {}", available.join(", "))]
    NoMatchingPlatform {
        /// The platform looked for, as `os/arch[/variant]`.
        wanted: String,
        /// Platforms the index offers.
        available: Vec<String>,
    },

    /// An OCI layout has no manifest with the requested tag.
    #[error("OCI layout {dir} has no tag {tag:?}; available tags: {}", available.join(", "))]
    TagNotFound {
        /// Layout directory.
        dir: PathBuf,
        /// Requested tag.
        tag: String,
        /// Tags found in `index.json`.
        available: Vec<String>,
    },

    /// A local file could not be read.
    #[error("cannot read {path}")]
    Io {
        /// File involved.
        path: PathBuf,
        /// The OS error.
        #[source]
        source: std::io::Error,
    },

    /// A configuration value is out of range.
    #[error("invalid registry configuration: {field}: {reason}")]
    InvalidConfig {
        /// Dotted path of the field.
        field: String,
        /// Reason for the rejection.
        reason: String,
    },

    /// The HTTP client could not be built (TLS setup).
    #[error("cannot build the HTTP client")]
    ClientSetup(#[source] reqwest::Error),
}

/// Problem with a response to a single-range request.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum RangeIssue {
    /// 206 without a `Content-Range` header.
    #[error("206 response without Content-Range")]
    MissingContentRange,
    /// `Content-Range` could not be parsed.
    #[error("malformed Content-Range {0:?}")]
    MalformedContentRange(String),
    /// The returned range does not cover the requested one.
    #[error("returned bytes {start}..{end} do not cover the request")]
    NotCovering {
        /// First byte returned.
        start: u64,
        /// One past the last byte returned.
        end: u64,
    },
    /// The blob size in `Content-Range` differs from the known size.
    #[error("Content-Range reports a blob of {reported} bytes, expected {expected}")]
    TotalMismatch {
        /// Size known from the descriptor or probe.
        expected: u64,
        /// Size the server reported.
        reported: u64,
    },
    /// A `multipart/byteranges` body although a single range was requested.
    #[error("multipart/byteranges response to a single-range request")]
    UnexpectedMultipart,
    /// The body is encoded (for example gzip) although `Accept-Encoding: identity` was sent,
    /// so its byte offsets are not blob offsets.
    #[error("body has Content-Encoding {0:?}")]
    ContentEncoding(String),
    /// A 200 response whose length is not the blob size, so it cannot be the whole blob.
    #[error("200 response of {content_length} bytes is not the whole blob of {blob_size} bytes")]
    PartialBodyWith200 {
        /// `Content-Length` of the 200 response.
        content_length: u64,
        /// Known blob size.
        blob_size: u64,
    },
    /// `Content-Length` disagrees with `Content-Range`.
    #[error("Content-Length {content_length} disagrees with Content-Range length {range_length}")]
    LengthMismatch {
        /// `Content-Length` header value.
        content_length: u64,
        /// Length implied by `Content-Range`.
        range_length: u64,
    },
}

impl RangeIssue {
    /// Returns whether a second request may get a usable response: true for garbled or
    /// inconsistent headers, false for what a server does by design (multipart responses,
    /// encoded bodies, a different blob size).
    fn is_transient(&self) -> bool {
        match self {
            RangeIssue::MissingContentRange
            | RangeIssue::MalformedContentRange(_)
            | RangeIssue::NotCovering { .. }
            | RangeIssue::PartialBodyWith200 { .. }
            | RangeIssue::LengthMismatch { .. } => true,
            RangeIssue::TotalMismatch { .. }
            | RangeIssue::UnexpectedMultipart
            | RangeIssue::ContentEncoding(_) => false,
        }
    }
}

/// Coarse error classes, used as metric labels.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ErrorKind {
    /// Per-attempt timeout expired.
    Timeout,
    /// Connection-level failure, including bodies that broke off.
    Transport,
    /// Credentials rejected, unobtainable, or the auth exchange failed.
    Auth,
    /// Unexpected HTTP status (including 404, 416, 429 and 5xx).
    Status,
    /// A response that does not fit the request (range, length, redirect).
    Protocol,
    /// Content failed digest or size verification, or could not be parsed.
    Content,
    /// Invalid input from the caller: reference, digest, range.
    Input,
    /// Local file errors and client setup.
    Local,
}

impl ErrorKind {
    /// All kinds, in the order used for counter arrays.
    pub const ALL: [ErrorKind; 8] = [
        ErrorKind::Timeout,
        ErrorKind::Transport,
        ErrorKind::Auth,
        ErrorKind::Status,
        ErrorKind::Protocol,
        ErrorKind::Content,
        ErrorKind::Input,
        ErrorKind::Local,
    ];

    /// Returns a short lower-case label for metrics.
    pub fn label(self) -> &'static str {
        match self {
            ErrorKind::Timeout => "timeout",
            ErrorKind::Transport => "transport",
            ErrorKind::Auth => "auth",
            ErrorKind::Status => "status",
            ErrorKind::Protocol => "protocol",
            ErrorKind::Content => "content",
            ErrorKind::Input => "input",
            ErrorKind::Local => "local",
        }
    }

    pub(crate) fn index(self) -> usize {
        self as usize
    }
}

impl RemoteError {
    /// Returns the class of this error. Wrappers report the class of their cause.
    pub fn kind(&self) -> ErrorKind {
        match self {
            RemoteError::RangeOutOfBounds { .. }
            | RemoteError::InvalidReference { .. }
            | RemoteError::InvalidDigest { .. }
            | RemoteError::InvalidConfig { .. } => ErrorKind::Input,
            RemoteError::Timeout { .. } => ErrorKind::Timeout,
            RemoteError::Transport { .. } | RemoteError::BodyInterrupted { .. } => {
                ErrorKind::Transport
            }
            RemoteError::Status { .. }
            | RemoteError::NotFound { .. }
            | RemoteError::RangeNotSatisfiable { .. } => ErrorKind::Status,
            RemoteError::Unauthorized { .. }
            | RemoteError::AuthProtocol { .. }
            | RemoteError::Credentials { .. } => ErrorKind::Auth,
            RemoteError::ShortBody { .. }
            | RemoteError::BodyTooLarge { .. }
            | RemoteError::RangeResponse { .. }
            | RemoteError::Redirect { .. } => ErrorKind::Protocol,
            RemoteError::DigestMismatch { .. }
            | RemoteError::SizeMismatch { .. }
            | RemoteError::InvalidManifest { .. }
            | RemoteError::NoMatchingPlatform { .. }
            | RemoteError::TagNotFound { .. } => ErrorKind::Content,
            RemoteError::Io { .. } | RemoteError::ClientSetup(_) => ErrorKind::Local,
            RemoteError::RetriesExhausted { source, .. }
            | RemoteError::AllHostsFailed { source, .. } => source.kind(),
        }
    }

    /// Returns whether another attempt of the same request may succeed.
    ///
    /// True for timeouts, transport failures, bodies that ended early, HTTP 429 and 5xx other
    /// than 501 (Not Implemented will not change on retry), and range responses whose headers
    /// disagree with the request or with each other. Proxies and caches in front of a registry
    /// send such responses now and then. A server that always does costs only the bounded
    /// retries before the read fails.
    pub fn is_retryable(&self) -> bool {
        match self {
            RemoteError::Timeout { .. }
            | RemoteError::Transport { .. }
            | RemoteError::BodyInterrupted { .. }
            | RemoteError::ShortBody { .. } => true,
            RemoteError::Status { status, .. } => {
                *status == 429 || (*status >= 500 && *status != 501)
            }
            RemoteError::RangeResponse { issue, .. } => issue.is_transient(),
            _ => false,
        }
    }

    /// Returns the delay a server requested with `Retry-After`, if any.
    pub fn retry_after(&self) -> Option<Duration> {
        match self {
            RemoteError::Status { retry_after, .. } => *retry_after,
            _ => None,
        }
    }

    /// Returns the HTTP status behind this error, if one was received.
    pub fn status(&self) -> Option<u16> {
        match self {
            RemoteError::Status { status, .. } | RemoteError::Unauthorized { status, .. } => {
                Some(*status)
            }
            RemoteError::NotFound { .. } => Some(404),
            RemoteError::RangeNotSatisfiable { .. } => Some(416),
            RemoteError::RetriesExhausted { source, .. }
            | RemoteError::AllHostsFailed { source, .. } => source.status(),
            _ => None,
        }
    }

    /// Returns the innermost error, looking through retry and host-fallback wrappers.
    pub fn root(&self) -> &RemoteError {
        match self {
            RemoteError::RetriesExhausted { source, .. }
            | RemoteError::AllHostsFailed { source, .. } => source.root(),
            other => other,
        }
    }
}

fn detail_suffix(detail: &Option<String>) -> String {
    match detail {
        Some(text) => format!(": {text}"),
        None => String::new(),
    }
}
