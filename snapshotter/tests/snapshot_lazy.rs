//! The remote-snapshot decisions of `LazySnapshotter` without FUSE or a registry: which
//! Prepares fall back to an ordinary snapshot, which return ALREADY_EXISTS, and how remote
//! snapshots whose layer cannot be mounted are reported after a restart.

use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use lazypull_snapshotter::cache::ChunkCache;
use lazypull_snapshotter::layer::LayerConfig;
use lazypull_snapshotter::remote::{Anonymous, RegistryClient, RegistryConfig};
use lazypull_snapshotter::service::{
    self, LayerManager, LayerSettings, LazySnapshotter, REMOTE, REMOTE_VALUE, RESTORE_LABELS,
    SNAPSHOT_REF, STARGZ_DIGEST, STARGZ_LAYERS, STARGZ_REFERENCE, TOC_DIGEST,
};
use lazypull_snapshotter::snapshot::{
    ErrorCode, Kind, Labels, SnapshotError, Snapshotter, UsagePolicy,
};

const LAYER: &str = "sha256:1111111111111111111111111111111111111111111111111111111111111111";
const NEXT_LAYER: &str = "sha256:2222222222222222222222222222222222222222222222222222222222222222";
const TOC: &str = "sha256:3333333333333333333333333333333333333333333333333333333333333333";
/// A registry address nothing listens on: port 9 (discard) of loopback.
const DEAD_REGISTRY_IMAGE: &str = "127.0.0.1:9/python-esgz:latest";

fn snapshotter(root: &Path) -> LazySnapshotter {
    let core = lazypull_snapshotter::snapshot::OverlaySnapshotter::open(root).unwrap();
    let registry = RegistryConfig {
        request_timeout: Duration::from_secs(2),
        max_retries: 0,
        ..RegistryConfig::default()
    };
    let client = RegistryClient::new(registry, Arc::new(Anonymous)).unwrap();
    let settings = LayerSettings {
        layers_dir: root.join("layers"),
        layer: LayerConfig::default(),
        fuse_threads: 1,
        read_timeout: Duration::from_secs(5),
        resolve_timeout: Duration::from_secs(5),
        resolve_ttl: Duration::from_secs(10),
        check_interval: Duration::ZERO,
        prefetch_wait: Duration::from_secs(1),
    };
    let cache = Arc::new(ChunkCache::in_memory(1 << 20));
    let layers = LayerManager::new(
        settings,
        client,
        cache,
        None,
        tokio::runtime::Handle::current(),
    );
    LazySnapshotter::new(core, layers, false)
}

/// Returns the labels `ctr-remote image rpull` sends for the bottom layer of an image.
fn rpull_labels(target: &str) -> Labels {
    [
        (SNAPSHOT_REF, target),
        (STARGZ_REFERENCE, DEAD_REGISTRY_IMAGE),
        (STARGZ_DIGEST, LAYER),
        (STARGZ_LAYERS, &format!("{LAYER},{NEXT_LAYER}")),
        (TOC_DIGEST, TOC),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_owned(), v.to_owned()))
    .collect()
}

/// Commits a remote snapshot record as the daemon does after mounting its layer, without
/// mounting anything.
fn committed_remote(lazy: &LazySnapshotter, target: &str) -> u64 {
    let core = lazy.core();
    core.prepare("extract", None, Labels::new()).unwrap();
    let id = core.chain("extract").unwrap()[0].id;
    let mut labels = rpull_labels(target);
    labels.insert(REMOTE.to_owned(), REMOTE_VALUE.to_owned());
    core.commit(target, "extract", labels, UsagePolicy::Skip)
        .unwrap();
    id
}

#[tokio::test]
async fn unreachable_registry_falls_back_to_unpack() {
    let root = tempfile::tempdir().unwrap();
    let lazy = snapshotter(root.path());
    let key = "ns/1/extract-1 sha256:c1".to_owned();

    let mounts = lazy
        .prepare(key.clone(), None, rpull_labels("sha256:c1"))
        .await
        .unwrap();
    assert_eq!(mounts.len(), 1);
    assert_eq!(mounts[0].kind, "bind");
    let info = lazy.stat(key).await.unwrap();
    assert_eq!(info.kind, Kind::Active);
    assert!(!info.labels.contains_key(REMOTE));
    assert_eq!(lazy.layers().counts(), (0, 0));
}

#[tokio::test]
async fn missing_toc_digest_falls_back_without_network() {
    let root = tempfile::tempdir().unwrap();
    let lazy = snapshotter(root.path());
    let mut labels = rpull_labels("sha256:c1");
    labels.remove(TOC_DIGEST);

    let mounts = lazy
        .prepare("ns/1/extract-2 sha256:c1".into(), None, labels)
        .await
        .unwrap();
    assert_eq!(mounts[0].kind, "bind");
    assert!(
        !root.path().join("layers").exists(),
        "a layer was resolved without a TOC digest"
    );
}

#[tokio::test]
async fn existing_target_returns_already_exists() {
    let root = tempfile::tempdir().unwrap();
    let lazy = snapshotter(root.path());
    committed_remote(&lazy, "sha256:c1");

    let error = lazy
        .prepare(
            "other-ns/7/extract-3 sha256:c1".into(),
            None,
            rpull_labels("sha256:c1"),
        )
        .await
        .unwrap_err();
    assert_eq!(error.code(), ErrorCode::AlreadyExists);
    assert!(
        matches!(&error, SnapshotError::AlreadyExists { key } if key == "sha256:c1"),
        "{error}"
    );
    assert_eq!(
        lazy.stat("other-ns/7/extract-3 sha256:c1".into())
            .await
            .unwrap_err()
            .code(),
        ErrorCode::NotFound
    );
}

#[tokio::test]
async fn unmountable_remote_parent_is_unavailable() {
    let root = tempfile::tempdir().unwrap();
    let lazy = snapshotter(root.path());
    committed_remote(&lazy, "sha256:c1");

    let error = lazy
        .prepare(
            "ns/9/container".into(),
            Some("sha256:c1".into()),
            Labels::new(),
        )
        .await
        .unwrap_err();
    assert_eq!(error.code(), ErrorCode::Unavailable);
    let message = error.to_string();
    assert!(message.contains(LAYER), "{message}");
    assert!(message.contains("cannot be mounted"), "{message}");
    assert_eq!(
        lazy.stat("ns/9/container".into()).await.unwrap_err().code(),
        ErrorCode::NotFound
    );

    let view = lazy
        .view("ns/10/view".into(), Some("sha256:c1".into()), Labels::new())
        .await
        .unwrap_err();
    assert_eq!(view.code(), ErrorCode::Unavailable);
    let mounts = lazy.mounts("sha256:c1".into()).await.unwrap_err();
    assert_eq!(mounts.code(), ErrorCode::Unavailable);
}

#[tokio::test]
async fn restore_reports_failures_and_keeps_ordinary_snapshots() {
    let root = tempfile::tempdir().unwrap();
    let ordinary_file = {
        let lazy = snapshotter(root.path());
        committed_remote(&lazy, "sha256:c1");
        let core = lazy.core();
        core.prepare("plain", None, Labels::new()).unwrap();
        let file = core.fs_dir(core.chain("plain").unwrap()[0].id).join("data");
        std::fs::write(&file, b"kept").unwrap();
        core.commit("plain-c", "plain", Labels::new(), UsagePolicy::Measure)
            .unwrap();
        file
    };

    let lazy = snapshotter(root.path());
    let report = service::restore(&lazy).await;
    assert_eq!(report.restored, 0);
    assert_eq!(report.failed, 1);
    assert_eq!(lazy.layers().counts(), (0, 1));
    assert_eq!(std::fs::read(&ordinary_file).unwrap(), b"kept");
    assert_eq!(
        lazy.stat("plain-c".into()).await.unwrap().kind,
        Kind::Committed
    );
    let remote = lazy.stat("sha256:c1".into()).await.unwrap();
    assert_eq!(
        remote.labels.get(REMOTE).map(String::as_str),
        Some(REMOTE_VALUE)
    );
}

#[tokio::test]
async fn removing_a_failed_remote_snapshot_clears_it() {
    let root = tempfile::tempdir().unwrap();
    let lazy = snapshotter(root.path());
    let id = committed_remote(&lazy, "sha256:c1");
    service::restore(&lazy).await;
    assert!(lazy.layers().failure(id).is_some());

    lazy.remove("sha256:c1".into()).await.unwrap();
    assert!(lazy.layers().failure(id).is_none());
    assert_eq!(lazy.layers().counts(), (0, 0));
    assert!(!lazy.core().snapshot_dir(id).exists());
    assert_eq!(
        lazy.stat("sha256:c1".into()).await.unwrap_err().code(),
        ErrorCode::NotFound
    );
}

#[tokio::test]
async fn label_updates_keep_the_restore_labels() {
    let root = tempfile::tempdir().unwrap();
    let lazy = snapshotter(root.path());
    committed_remote(&lazy, "sha256:c1");
    let before = lazy.stat("sha256:c1".into()).await.unwrap();
    let mut info = before.clone();
    info.labels = [(
        "containerd.io/snapshot/team".to_owned(),
        "storage".to_owned(),
    )]
    .into_iter()
    .collect();

    let replaced = lazy.update(info.clone(), Vec::new()).await.unwrap();
    assert_eq!(
        replaced
            .labels
            .get("containerd.io/snapshot/team")
            .map(String::as_str),
        Some("storage")
    );
    for key in RESTORE_LABELS {
        assert_eq!(
            replaced.labels.get(key),
            before.labels.get(key),
            "label {key}"
        );
    }

    let deleted = lazy
        .update(info, vec![format!("labels.{REMOTE}")])
        .await
        .unwrap();
    assert_eq!(
        deleted.labels.get(REMOTE).map(String::as_str),
        Some(REMOTE_VALUE)
    );
}
