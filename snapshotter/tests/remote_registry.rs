//! The remote layer against a real distribution registry on 127.0.0.1.
//!
//! Needs `docker-registry` and `skopeo` (installed by `scripts/setup.sh`); skips with a
//! printed reason when they are missing, and fails under `CI=true`.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use lazypull_snapshotter::remote::image::resolve;
use lazypull_snapshotter::remote::{
    Anonymous, BlobSource, ImageRef, RegistryBlobSource, RegistryClient, RegistryConfig,
};
use lazypull_testkit::prereq::{Prereq, require_all};
use lazypull_testkit::registry::Registry;
use lazypull_testkit::tarbuild::{Builder, Entry};

fn config() -> RegistryConfig {
    RegistryConfig {
        request_timeout: Duration::from_secs(10),
        hosts: HashMap::new(),
        ..RegistryConfig::default()
    }
}

/// Bytes that do not compress away, so the layer blob is large enough for several ranges.
fn noise(len: usize) -> Vec<u8> {
    let mut state: u64 = 0x9e37_79b9_7f4a_7c15;
    (0..len)
        .map(|_| {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            state as u8
        })
        .collect()
}

fn layer_tars() -> Vec<Vec<u8>> {
    let mut base = Builder::new();
    base.append(&Entry::file("etc/os-release", b"ID=test\n"));
    let mut data = Builder::new();
    data.append(&Entry::file("opt/data/a.bin", noise(300_000)));
    data.append(&Entry::file("opt/data/b.bin", noise(200_000)));
    vec![base.finish(), data.finish()]
}

#[tokio::test]
async fn registry_layers_read_back_byte_for_byte() {
    if !require_all(&[Prereq::Binary("docker-registry"), Prereq::Binary("skopeo")]) {
        return;
    }
    let registry = Registry::start().expect("start docker-registry");
    let layout = tempfile::tempdir().unwrap();
    let written = lazypull_testkit::image::write_oci_layout(
        layout.path(),
        "v1",
        &layer_tars(),
        &["/bin/true"],
    )
    .unwrap();
    let reference = registry
        .push_oci_layout(layout.path(), "v1", "lazypull/remote:v1")
        .expect("push with skopeo");
    let pushed = registry.access_log().len();

    let image = ImageRef::parse(&reference).unwrap();
    let resolved = resolve(&image, &config(), Arc::new(Anonymous))
        .await
        .unwrap();
    assert_eq!(
        resolved.manifest_digest.to_string(),
        written.manifest_digest
    );
    assert_eq!(resolved.config.digest.to_string(), written.config_digest);
    let digests: Vec<String> = resolved
        .layers
        .iter()
        .map(|layer| layer.digest.to_string())
        .collect();
    assert_eq!(digests, written.layer_digests);

    for layer in &resolved.layers {
        let expected =
            std::fs::read(layout.path().join("blobs/sha256").join(layer.digest.hex())).unwrap();
        let source = resolved.open_layer(layer).await.unwrap();
        source.check().await.unwrap();
        assert_eq!(source.size(), expected.len() as u64);

        // Read the blob in uneven pieces and put it back together.
        let mut rebuilt = Vec::new();
        let mut offset = 0u64;
        let mut step = 1u64;
        while offset < source.size() {
            let end = (offset + step).min(source.size());
            rebuilt.extend_from_slice(&source.read_range(offset..end).await.unwrap());
            offset = end;
            step = step * 7 + 13;
        }
        assert_eq!(rebuilt, expected, "layer {}", layer.digest);
        // The 51-byte eStargz footer region: the last bytes of the blob.
        let tail = source
            .read_range(source.size() - 51..source.size())
            .await
            .unwrap();
        assert_eq!(&tail[..], &expected[expected.len() - 51..]);
    }

    // Every blob read is a ranged GET with status 206, and no HEAD is sent.
    let log = registry.access_log();
    let blob_requests: Vec<_> = log[pushed..]
        .iter()
        .filter(|entry| entry.path.contains("/blobs/"))
        .collect();
    assert!(!blob_requests.is_empty());
    assert!(
        blob_requests.iter().all(|entry| entry.method == "GET"),
        "{blob_requests:?}"
    );
    let config_digest = written.config_digest.as_str();
    for entry in blob_requests
        .iter()
        .filter(|entry| !entry.path.ends_with(config_digest))
    {
        assert_eq!(entry.status, 206, "{entry:?}");
    }
}

#[tokio::test]
async fn registry_blob_size_probe_and_pinned_manifest() {
    if !require_all(&[Prereq::Binary("docker-registry"), Prereq::Binary("skopeo")]) {
        return;
    }
    let registry = Registry::start().expect("start docker-registry");
    let layout = tempfile::tempdir().unwrap();
    let written = lazypull_testkit::image::write_oci_layout(
        layout.path(),
        "v1",
        &layer_tars(),
        &["/bin/true"],
    )
    .unwrap();
    registry
        .push_oci_layout(layout.path(), "v1", "lazypull/pinned:v1")
        .expect("push with skopeo");

    let pinned = ImageRef::parse(&format!(
        "{}/lazypull/pinned@{}",
        registry.host(),
        written.manifest_digest
    ))
    .unwrap();
    let resolved = resolve(&pinned, &config(), Arc::new(Anonymous))
        .await
        .unwrap();
    assert_eq!(
        resolved.manifest_digest.to_string(),
        written.manifest_digest
    );

    let client = RegistryClient::new(config(), Arc::new(Anonymous)).unwrap();
    let layer = &resolved.layers[1];
    let probed = RegistryBlobSource::open(
        &client,
        &registry.host(),
        "lazypull/pinned",
        &layer.digest,
        None,
    )
    .await
    .unwrap();
    assert_eq!(probed.size(), layer.size);

    let missing = ImageRef::parse(&format!("{}/lazypull/pinned:absent", registry.host())).unwrap();
    let err = resolve(&missing, &config(), Arc::new(Anonymous))
        .await
        .unwrap_err();
    assert_eq!(err.status(), Some(404), "{err:?}");
}
