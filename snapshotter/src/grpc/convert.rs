//! Conversions between containerd's protobuf messages and the snapshot core's types.

use std::collections::HashMap;
use std::time::SystemTime;

use containerd_client::services::v1::snapshots as pb;
use containerd_client::types::Mount as PbMount;
use tonic::{Code, Status};

use crate::snapshot::{ErrorCode, Info, Kind, Labels, Mount, SnapshotError};

/// `Kind` values of `containerd.services.snapshots.v1.Kind`.
const KIND_VIEW: i32 = 1;
const KIND_ACTIVE: i32 = 2;
const KIND_COMMITTED: i32 = 3;

pub(super) fn labels(map: HashMap<String, String>) -> Labels {
    map.into_iter().collect()
}

/// Converts a parent name, where containerd's API uses the empty string for "no parent".
pub(super) fn parent(text: String) -> Option<String> {
    Some(text).filter(|parent| !parent.is_empty())
}

pub(super) fn mounts(mounts: Vec<Mount>) -> Vec<PbMount> {
    mounts
        .into_iter()
        .map(|mount| PbMount {
            r#type: mount.kind,
            source: mount.source,
            target: String::new(),
            options: mount.options,
        })
        .collect()
}

fn kind_to_pb(kind: Kind) -> i32 {
    match kind {
        Kind::View => KIND_VIEW,
        Kind::Active => KIND_ACTIVE,
        Kind::Committed => KIND_COMMITTED,
    }
}

fn kind_from_pb(kind: i32) -> Option<Kind> {
    match kind {
        KIND_VIEW => Some(Kind::View),
        KIND_ACTIVE => Some(Kind::Active),
        KIND_COMMITTED => Some(Kind::Committed),
        _ => None,
    }
}

fn timestamp(time: SystemTime) -> prost_types::Timestamp {
    prost_types::Timestamp::from(time)
}

pub(super) fn info_to_pb(info: Info) -> pb::Info {
    pb::Info {
        name: info.name,
        parent: info.parent.unwrap_or_default(),
        kind: kind_to_pb(info.kind),
        created_at: Some(timestamp(info.created)),
        updated_at: Some(timestamp(info.updated)),
        labels: info.labels.into_iter().collect(),
    }
}

/// Converts the info of an update request. Only the name and labels matter to an update, so
/// an unknown kind becomes committed.
pub(super) fn info_from_pb(info: pb::Info) -> Info {
    Info {
        name: info.name,
        parent: parent(info.parent),
        kind: kind_from_pb(info.kind).unwrap_or(Kind::Committed),
        labels: labels(info.labels),
        created: SystemTime::UNIX_EPOCH,
        updated: SystemTime::UNIX_EPOCH,
    }
}

pub(super) fn code(error: &SnapshotError) -> Code {
    match error.code() {
        ErrorCode::NotFound => Code::NotFound,
        ErrorCode::AlreadyExists => Code::AlreadyExists,
        ErrorCode::FailedPrecondition => Code::FailedPrecondition,
        ErrorCode::InvalidArgument => Code::InvalidArgument,
        ErrorCode::Unavailable => Code::Unavailable,
        ErrorCode::Internal => Code::Internal,
    }
}

/// Builds the status containerd receives: the code it maps back to its error kind, and the
/// error with its causes as the message.
pub(super) fn status(error: &SnapshotError) -> Status {
    Status::new(code(error), error_chain(error))
}

/// Formats an error with its sources, `outer: inner: innermost`.
pub fn error_chain(error: &dyn std::error::Error) -> String {
    let mut text = error.to_string();
    let mut source = error.source();
    while let Some(cause) = source {
        text.push_str(": ");
        text.push_str(&cause.to_string());
        source = cause.source();
    }
    text
}

/// Name of a status code for metrics labels.
pub(super) fn code_name(code: Code) -> &'static str {
    match code {
        Code::Ok => "ok",
        Code::NotFound => "not_found",
        Code::AlreadyExists => "already_exists",
        Code::FailedPrecondition => "failed_precondition",
        Code::InvalidArgument => "invalid_argument",
        Code::Unavailable => "unavailable",
        Code::Internal => "internal",
        _ => "other",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn kinds_round_trip_through_protobuf() {
        for kind in [Kind::View, Kind::Active, Kind::Committed] {
            assert_eq!(kind_from_pb(kind_to_pb(kind)), Some(kind));
        }
        assert_eq!(kind_from_pb(0), None);
    }

    #[test]
    fn errors_become_matching_status_codes() {
        let cases = [
            (SnapshotError::NotFound { key: "k".into() }, Code::NotFound),
            (
                SnapshotError::AlreadyExists { key: "k".into() },
                Code::AlreadyExists,
            ),
            (
                SnapshotError::HasChildren {
                    key: "k".into(),
                    children: 2,
                },
                Code::FailedPrecondition,
            ),
            (
                SnapshotError::EmptyName { what: "key" },
                Code::InvalidArgument,
            ),
            (
                SnapshotError::Unavailable {
                    key: "k".into(),
                    layer: "sha256:1".into(),
                    reason: "down".into(),
                },
                Code::Unavailable,
            ),
        ];
        for (error, expected) in cases {
            let status = status(&error);
            assert_eq!(status.code(), expected, "{error}");
            assert_eq!(status.message(), error.to_string());
        }
    }

    #[test]
    fn empty_parent_is_none() {
        assert_eq!(parent(String::new()), None);
        assert_eq!(parent("p".into()).as_deref(), Some("p"));
    }
}
