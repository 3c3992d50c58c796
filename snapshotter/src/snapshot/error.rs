//! Errors of snapshot operations and the status codes they travel as.

use std::path::PathBuf;

use super::types::Kind;

/// Status classes of snapshot errors, matching the gRPC codes containerd maps back to its own
/// error kinds (`errdefs`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ErrorCode {
    /// The key or parent does not exist.
    NotFound,
    /// The key or name is taken, or a remote layer was committed under the target name.
    AlreadyExists,
    /// The operation does not apply to the snapshot's current state.
    FailedPrecondition,
    /// The request itself is malformed.
    InvalidArgument,
    /// A remote layer the snapshot needs cannot be reached right now.
    Unavailable,
    /// A local failure (disk, metadata store).
    Internal,
}

/// Why a snapshot operation failed.
#[derive(Debug, thiserror::Error)]
pub enum SnapshotError {
    /// No snapshot has this key or name.
    #[error("snapshot {key:?} not found")]
    NotFound {
        /// The key or name asked for.
        key: String,
    },
    /// A snapshot with this key or name exists already.
    #[error("snapshot {key:?} already exists")]
    AlreadyExists {
        /// The key or name.
        key: String,
    },
    /// The parent of a new snapshot is not committed.
    #[error("parent {parent:?} is a {kind} snapshot; only committed snapshots can be parents")]
    ParentNotCommitted {
        /// The parent's name.
        parent: String,
        /// Its kind.
        kind: Kind,
    },
    /// Commit of a snapshot that is not active.
    #[error("snapshot {key:?} is a {kind} snapshot; only active snapshots can be committed")]
    NotActive {
        /// The key.
        key: String,
        /// Its kind.
        kind: Kind,
    },
    /// Remove of a snapshot that other snapshots use as parent.
    #[error("snapshot {key:?} has {children} child snapshot(s); remove them first")]
    HasChildren {
        /// The key or name.
        key: String,
        /// How many snapshots name it as parent.
        children: usize,
    },
    /// An empty key or name.
    #[error("snapshot {what} must not be empty")]
    EmptyName {
        /// `key`, `name` or `parent`.
        what: &'static str,
    },
    /// A field that cannot be changed by an update.
    #[error("field {field:?} cannot be updated; only labels can")]
    ImmutableField {
        /// The field path as given.
        field: String,
    },
    /// A walk filter that does not parse.
    #[error("invalid filter {filter:?} at byte {position}: {reason}")]
    InvalidFilter {
        /// The filter as given.
        filter: String,
        /// Where parsing stopped.
        position: usize,
        /// What was expected.
        reason: String,
    },
    /// A remote layer of the snapshot or of one of its parents cannot be read.
    #[error("snapshot {key:?} is unavailable: layer {layer} {reason}")]
    Unavailable {
        /// The key or name whose mounts were asked for.
        key: String,
        /// The digest of the layer that failed.
        layer: String,
        /// What failed, with causes.
        reason: String,
    },
    /// A file or directory operation failed.
    #[error("failed to {action} {path}")]
    Io {
        /// What was being done (`create`, `remove`, `read`, ...).
        action: &'static str,
        /// The path.
        path: PathBuf,
        /// The cause.
        #[source]
        source: std::io::Error,
    },
    /// The metadata store failed; the operation was not applied.
    #[error(transparent)]
    Store(#[from] super::store::StoreError),
}

impl SnapshotError {
    /// The status class of this error.
    pub fn code(&self) -> ErrorCode {
        match self {
            SnapshotError::NotFound { .. } => ErrorCode::NotFound,
            SnapshotError::AlreadyExists { .. } => ErrorCode::AlreadyExists,
            SnapshotError::NotActive { .. } | SnapshotError::HasChildren { .. } => {
                ErrorCode::FailedPrecondition
            }
            SnapshotError::ParentNotCommitted { .. }
            | SnapshotError::EmptyName { .. }
            | SnapshotError::ImmutableField { .. }
            | SnapshotError::InvalidFilter { .. } => ErrorCode::InvalidArgument,
            SnapshotError::Unavailable { .. } => ErrorCode::Unavailable,
            SnapshotError::Io { .. } | SnapshotError::Store(_) => ErrorCode::Internal,
        }
    }

    pub(crate) fn io(
        action: &'static str,
        path: impl Into<PathBuf>,
    ) -> impl FnOnce(std::io::Error) -> SnapshotError {
        let path = path.into();
        move |source| SnapshotError::Io {
            action,
            path,
            source,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn codes_follow_containerd_errdefs() {
        let cases = [
            (
                SnapshotError::NotFound { key: "k".into() },
                ErrorCode::NotFound,
            ),
            (
                SnapshotError::AlreadyExists { key: "k".into() },
                ErrorCode::AlreadyExists,
            ),
            (
                SnapshotError::HasChildren {
                    key: "k".into(),
                    children: 1,
                },
                ErrorCode::FailedPrecondition,
            ),
            (
                SnapshotError::NotActive {
                    key: "k".into(),
                    kind: Kind::View,
                },
                ErrorCode::FailedPrecondition,
            ),
            (
                SnapshotError::ParentNotCommitted {
                    parent: "p".into(),
                    kind: Kind::Active,
                },
                ErrorCode::InvalidArgument,
            ),
            (
                SnapshotError::EmptyName { what: "key" },
                ErrorCode::InvalidArgument,
            ),
            (
                SnapshotError::ImmutableField {
                    field: "kind".into(),
                },
                ErrorCode::InvalidArgument,
            ),
            (
                SnapshotError::Unavailable {
                    key: "k".into(),
                    layer: "sha256:00".into(),
                    reason: "x".into(),
                },
                ErrorCode::Unavailable,
            ),
        ];
        for (error, code) in cases {
            assert_eq!(error.code(), code, "{error}");
        }
    }
}
