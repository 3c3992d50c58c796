//! Generates the server stub of containerd's `containerd.services.snapshots.v1.Snapshots`
//! service.
//!
//! The message types come from the `containerd-client` crate, which only generates clients, so
//! the server trait is described method by method here with `tonic_build::manual` instead of
//! compiling a copy of containerd's proto file.

use tonic_build::manual::{Builder, Method, Service};

/// Rust path of the snapshots message types in `containerd-client`.
const MESSAGES: &str = "containerd_client::services::v1::snapshots";

/// `google.protobuf.Empty` as a Rust path. tonic-build rejects `()` as a type name, so the
/// grpc module declares `pub type Empty = ();`.
const EMPTY: &str = "crate::grpc::Empty";

/// (method, route name, request type, response type, server streaming)
const METHODS: [(&str, &str, &str, &str, bool); 10] = [
    (
        "prepare",
        "Prepare",
        "PrepareSnapshotRequest",
        "PrepareSnapshotResponse",
        false,
    ),
    (
        "view",
        "View",
        "ViewSnapshotRequest",
        "ViewSnapshotResponse",
        false,
    ),
    ("mounts", "Mounts", "MountsRequest", "MountsResponse", false),
    ("commit", "Commit", "CommitSnapshotRequest", "", false),
    ("remove", "Remove", "RemoveSnapshotRequest", "", false),
    (
        "stat",
        "Stat",
        "StatSnapshotRequest",
        "StatSnapshotResponse",
        false,
    ),
    (
        "update",
        "Update",
        "UpdateSnapshotRequest",
        "UpdateSnapshotResponse",
        false,
    ),
    (
        "list",
        "List",
        "ListSnapshotsRequest",
        "ListSnapshotsResponse",
        true,
    ),
    ("usage", "Usage", "UsageRequest", "UsageResponse", false),
    ("cleanup", "Cleanup", "CleanupRequest", "", false),
];

fn main() {
    let mut service = Service::builder()
        .name("Snapshots")
        .package("containerd.services.snapshots.v1");
    for (name, route, input, output, streaming) in METHODS {
        let output = if output.is_empty() {
            EMPTY.to_owned()
        } else {
            format!("{MESSAGES}::{output}")
        };
        let mut method = Method::builder()
            .name(name)
            .route_name(route)
            .input_type(format!("{MESSAGES}::{input}"))
            .output_type(output)
            .codec_path("tonic_prost::ProstCodec");
        if streaming {
            method = method.server_streaming();
        }
        service = service.method(method.build());
    }
    Builder::new()
        .build_client(false)
        .compile(&[service.build()]);
    println!("cargo:rerun-if-changed=build.rs");
}
