//! The gRPC adapter over the overlayfs core, called through containerd-client's generated
//! client on a temporary Unix socket.

use std::collections::HashMap;
use std::sync::Arc;

use containerd_client::services::v1::snapshots::snapshots_client::SnapshotsClient;
use containerd_client::services::v1::snapshots::{
    CommitSnapshotRequest, ListSnapshotsRequest, MountsRequest, PrepareSnapshotRequest,
    RemoveSnapshotRequest, StatSnapshotRequest, UpdateSnapshotRequest, UsageRequest,
    ViewSnapshotRequest,
};
use lazypull_snapshotter::grpc;
use lazypull_snapshotter::metrics::Metrics;
use lazypull_snapshotter::snapshot::OverlaySnapshotter;
use tonic::Code;
use tonic::transport::Channel;

struct Server {
    _root: tempfile::TempDir,
    client: SnapshotsClient<Channel>,
    metrics: Arc<Metrics>,
    stop: Option<tokio::sync::oneshot::Sender<()>>,
    task: Option<tokio::task::JoinHandle<Result<(), grpc::ServeError>>>,
}

impl Server {
    async fn start() -> Server {
        let root = tempfile::tempdir().unwrap();
        let core = Arc::new(OverlaySnapshotter::open(&root.path().join("state")).unwrap());
        let socket = root.path().join("snapshotter.sock");
        let listener = tokio::net::UnixListener::bind(&socket).unwrap();
        let metrics = Arc::new(Metrics::new());
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        let task = tokio::spawn(grpc::serve(
            core,
            listener,
            Some(Arc::clone(&metrics)),
            async move {
                let _ = stopped.await;
            },
        ));
        let channel = containerd_client::connect(&socket).await.unwrap();
        Server {
            _root: root,
            client: SnapshotsClient::new(channel),
            metrics,
            stop: Some(stop),
            task: Some(task),
        }
    }

    async fn stop(mut self) {
        drop(self.stop.take());
        self.task.take().unwrap().await.unwrap().unwrap();
    }

    async fn prepare(
        &mut self,
        key: &str,
        parent: &str,
        labels: &[(&str, &str)],
    ) -> Result<Vec<containerd_client::types::Mount>, tonic::Status> {
        let labels: HashMap<String, String> = labels
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        let request = PrepareSnapshotRequest {
            snapshotter: "lazypull".into(),
            key: key.into(),
            parent: parent.into(),
            labels,
        };
        self.client
            .prepare(request)
            .await
            .map(|response| response.into_inner().mounts)
    }

    async fn commit(&mut self, name: &str, key: &str) -> Result<(), tonic::Status> {
        let request = CommitSnapshotRequest {
            snapshotter: "lazypull".into(),
            name: name.into(),
            key: key.into(),
            labels: HashMap::new(),
        };
        self.client.commit(request).await.map(drop)
    }

    async fn list(&mut self, filters: &[&str]) -> Vec<String> {
        let request = ListSnapshotsRequest {
            snapshotter: "lazypull".into(),
            filters: filters.iter().map(|f| f.to_string()).collect(),
        };
        let mut stream = self.client.list(request).await.unwrap().into_inner();
        let mut names = Vec::new();
        while let Some(message) = stream.message().await.unwrap() {
            names.extend(message.info.into_iter().map(|info| info.name));
        }
        names
    }
}

#[tokio::test]
async fn chain_prepare_commit_and_mounts() {
    let mut server = Server::start().await;
    let base = server.prepare("default/1/extract", "", &[]).await.unwrap();
    assert_eq!(base[0].r#type, "bind");
    server
        .commit("default/2/sha256:c1", "default/1/extract")
        .await
        .unwrap();
    let child = server
        .prepare("default/3/container", "default/2/sha256:c1", &[])
        .await
        .unwrap();
    assert_eq!(child[0].r#type, "overlay");
    assert!(
        child[0]
            .options
            .iter()
            .any(|option| option.starts_with("lowerdir=")),
        "{:?}",
        child[0].options
    );

    let mounts = server
        .client
        .mounts(MountsRequest {
            snapshotter: "lazypull".into(),
            key: "default/3/container".into(),
        })
        .await
        .unwrap();
    assert_eq!(mounts.into_inner().mounts, child);

    let view = server
        .client
        .view(ViewSnapshotRequest {
            snapshotter: "lazypull".into(),
            key: "v".into(),
            parent: "default/2/sha256:c1".into(),
            labels: HashMap::new(),
        })
        .await
        .unwrap()
        .into_inner()
        .mounts;
    assert_eq!(view[0].r#type, "bind");
    assert_eq!(view[0].options, ["ro", "rbind"]);

    let info = server
        .client
        .stat(StatSnapshotRequest {
            snapshotter: "lazypull".into(),
            key: "default/3/container".into(),
        })
        .await
        .unwrap();
    let info = info.into_inner().info.unwrap();
    assert_eq!(info.parent, "default/2/sha256:c1");
    assert_eq!(info.kind, 2, "active");
    assert!(info.created_at.is_some());
    server.stop().await;
}

#[tokio::test]
async fn errors_carry_containerd_codes() {
    let mut server = Server::start().await;
    server.prepare("a", "", &[]).await.unwrap();
    server.commit("c", "a").await.unwrap();
    server.prepare("child", "c", &[]).await.unwrap();

    let exists = server.prepare("child", "c", &[]).await.unwrap_err();
    assert_eq!(exists.code(), Code::AlreadyExists);
    let missing = server
        .client
        .stat(StatSnapshotRequest {
            snapshotter: "lazypull".into(),
            key: "nope".into(),
        })
        .await
        .unwrap_err();
    assert_eq!(missing.code(), Code::NotFound);
    let busy = server
        .client
        .remove(RemoveSnapshotRequest {
            snapshotter: "lazypull".into(),
            key: "c".into(),
        })
        .await
        .unwrap_err();
    assert_eq!(busy.code(), Code::FailedPrecondition);
    assert!(busy.message().contains("child"), "{}", busy.message());
    let bad_parent = server.prepare("x", "child", &[]).await.unwrap_err();
    assert_eq!(bad_parent.code(), Code::InvalidArgument);
    let bad_filter = server
        .client
        .list(ListSnapshotsRequest {
            snapshotter: "lazypull".into(),
            filters: vec!["name==".into()],
        })
        .await
        .err()
        .unwrap();
    assert_eq!(bad_filter.code(), Code::InvalidArgument);

    server
        .client
        .remove(RemoveSnapshotRequest {
            snapshotter: "lazypull".into(),
            key: "child".into(),
        })
        .await
        .unwrap();
    server
        .client
        .remove(RemoveSnapshotRequest {
            snapshotter: "lazypull".into(),
            key: "c".into(),
        })
        .await
        .unwrap();
    let text = server.metrics.encode();
    assert!(
        text.contains(
            r#"lazypull_snapshot_operations_total{operation="remove",code="failed_precondition"} 1"#
        ),
        "{text}"
    );
    server.stop().await;
}

#[tokio::test]
async fn list_filters_and_label_updates() {
    let mut server = Server::start().await;
    server.prepare("base-extract", "", &[]).await.unwrap();
    server.commit("sha256:c1", "base-extract").await.unwrap();
    server
        .prepare(
            "k1",
            "sha256:c1",
            &[("containerd.io/snapshot.ref", "sha256:c2")],
        )
        .await
        .unwrap();
    server.prepare("k2", "", &[]).await.unwrap();

    assert_eq!(server.list(&[]).await, ["k1", "k2", "sha256:c1"]);
    let unpacker = r#"labels."containerd.io/snapshot.ref"==sha256:c2,parent==sha256:c1"#;
    assert_eq!(server.list(&[unpacker]).await, ["k1"]);
    assert_eq!(
        server.list(&["kind==committed", "name==k2"]).await,
        ["k2", "sha256:c1"]
    );

    let mut info = server
        .client
        .stat(StatSnapshotRequest {
            snapshotter: "lazypull".into(),
            key: "k2".into(),
        })
        .await
        .unwrap()
        .into_inner()
        .info
        .unwrap();
    info.labels
        .insert("containerd.io/snapshot/x".into(), "1".into());
    let mask = prost_types::FieldMask {
        paths: vec!["labels.containerd.io/snapshot/x".into()],
    };
    let updated = server
        .client
        .update(UpdateSnapshotRequest {
            snapshotter: "lazypull".into(),
            info: Some(info),
            update_mask: Some(mask),
        })
        .await
        .unwrap()
        .into_inner()
        .info
        .unwrap();
    assert_eq!(
        updated
            .labels
            .get("containerd.io/snapshot/x")
            .map(String::as_str),
        Some("1")
    );
    assert_eq!(
        server
            .list(&["labels.\"containerd.io/snapshot/x\"==1"])
            .await,
        ["k2"]
    );

    let usage = server
        .client
        .usage(UsageRequest {
            snapshotter: "lazypull".into(),
            key: "k2".into(),
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(usage.inodes, 1);
    server.stop().await;
}

#[tokio::test]
async fn many_snapshots_list_in_batches() {
    let mut server = Server::start().await;
    for n in 0..250 {
        server.prepare(&format!("k{n:03}"), "", &[]).await.unwrap();
    }
    let request = ListSnapshotsRequest {
        snapshotter: "lazypull".into(),
        filters: vec![],
    };
    let mut stream = server.client.list(request).await.unwrap().into_inner();
    let mut sizes = Vec::new();
    while let Some(message) = stream.message().await.unwrap() {
        sizes.push(message.info.len());
    }
    assert_eq!(sizes, [100, 100, 50]);
    server.stop().await;
}
