//! Image resolution: registry manifests and indexes from a mock server, and OCI layouts.

mod remote_mock;

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use lazypull_snapshotter::remote::image::{open_blob, resolve, resolve_with};
use lazypull_snapshotter::remote::{
    Anonymous, ImageRef, Platform, RegistryClient, RegistryConfig, RemoteError,
};
use lazypull_testkit::tarbuild::{Builder, Entry};
use remote_mock::*;
use serde_json::json;

const REPO: &str = "lib/app";
const OCI_MANIFEST: &str = "application/vnd.oci.image.manifest.v1+json";
const OCI_INDEX: &str = "application/vnd.oci.image.index.v1+json";
const TOC_ANNOTATION: &str = "containerd.io/snapshot/stargz/toc.digest";

fn test_config() -> RegistryConfig {
    RegistryConfig {
        request_timeout: Duration::from_secs(5),
        max_retries: 2,
        min_backoff: Duration::from_millis(1),
        max_backoff: Duration::from_millis(10),
        hosts: HashMap::new(),
    }
}

/// Content-addressed documents a mock registry serves, by digest and by tag.
#[derive(Default, Clone)]
struct Content {
    blobs: HashMap<String, Vec<u8>>,
    manifests: HashMap<String, (String, Vec<u8>)>,
}

impl Content {
    fn add_blob(&mut self, bytes: Vec<u8>) -> (String, usize) {
        let digest = digest_of(&bytes);
        let size = bytes.len();
        self.blobs.insert(digest.clone(), bytes);
        (digest, size)
    }

    fn add_manifest(
        &mut self,
        media_type: &str,
        bytes: Vec<u8>,
        tag: Option<&str>,
    ) -> (String, usize) {
        let digest = digest_of(&bytes);
        let size = bytes.len();
        self.manifests
            .insert(digest.clone(), (media_type.to_owned(), bytes.clone()));
        if let Some(tag) = tag {
            self.manifests
                .insert(tag.to_owned(), (media_type.to_owned(), bytes));
        }
        (digest, size)
    }
}

/// A one-layer image whose layer is `layer_len` bytes: returns the manifest's (digest, size)
/// and the layer bytes.
fn add_image(
    content: &mut Content,
    tag: Option<&str>,
    layer_len: usize,
) -> ((String, usize), Vec<u8>) {
    let layer = blob_bytes(layer_len);
    let (layer_digest, layer_size) = content.add_blob(layer.clone());
    let config = serde_json::to_vec(
        &json!({"architecture": "amd64", "os": "linux", "rootfs": {"type": "layers", "diff_ids": []}}),
    )
    .unwrap();
    let (config_digest, config_size) = content.add_blob(config);
    let manifest = serde_json::to_vec(&json!({
        "schemaVersion": 2,
        "mediaType": OCI_MANIFEST,
        "config": {"mediaType": "application/vnd.oci.image.config.v1+json", "digest": config_digest, "size": config_size},
        "layers": [{
            "mediaType": "application/vnd.oci.image.layer.v1.tar+gzip",
            "digest": layer_digest,
            "size": layer_size,
            "annotations": {TOC_ANNOTATION: "sha256:feed"}
        }]
    }))
    .unwrap();
    (content.add_manifest(OCI_MANIFEST, manifest, tag), layer)
}

async fn serve(content: Arc<Mutex<Content>>) -> MockServer {
    MockServer::start(move |request| {
        let content = content.lock().unwrap();
        let path = request.path();
        if let Some(name) = path.strip_prefix(&format!("/v2/{REPO}/manifests/")) {
            return match content.manifests.get(name) {
                Some((media_type, bytes)) => Response::new(200)
                    .header("Content-Type", media_type.clone())
                    .body(bytes.clone())
                    .into(),
                None => Response::new(404).into(),
            };
        }
        if let Some(digest) = path.strip_prefix(&format!("/v2/{REPO}/blobs/")) {
            return match content.blobs.get(digest) {
                Some(bytes) => range_reply(bytes, request, RangeMode::Honour),
                None => Response::new(404).into(),
            };
        }
        Response::new(404).into()
    })
    .await
}

fn client() -> RegistryClient {
    RegistryClient::new(test_config(), Arc::new(Anonymous)).unwrap()
}

#[tokio::test]
async fn tag_resolves_to_manifest_config_and_layers() {
    let mut content = Content::default();
    let ((manifest_digest, _), layer) = add_image(&mut content, Some("v1"), 20_000);
    let server = serve(Arc::new(Mutex::new(content))).await;
    let image: ImageRef = format!("{}/{REPO}:v1", server.host()).parse().unwrap();

    let resolved = resolve(&image, &test_config(), Arc::new(Anonymous))
        .await
        .unwrap();
    assert_eq!(resolved.manifest_digest.to_string(), manifest_digest);
    assert_eq!(resolved.layers.len(), 1);
    let descriptor = &resolved.layers[0];
    assert_eq!(descriptor.digest.to_string(), digest_of(&layer));
    assert_eq!(descriptor.size, layer.len() as u64);
    assert_eq!(
        descriptor.media_type,
        "application/vnd.oci.image.layer.v1.tar+gzip"
    );
    assert_eq!(
        descriptor
            .annotations
            .get(TOC_ANNOTATION)
            .map(String::as_str),
        Some("sha256:feed")
    );
    assert!(
        std::str::from_utf8(&resolved.config.bytes)
            .unwrap()
            .contains("rootfs")
    );

    let source = resolved.open_layer(descriptor).await.unwrap();
    assert_eq!(source.size(), layer.len() as u64);
    assert_eq!(
        &source.read_range(19_000..20_000).await.unwrap()[..],
        &layer[19_000..20_000]
    );
    assert!(source.id().ends_with(&digest_of(&layer)), "{}", source.id());

    let manifest_request = &server.requests_to("/manifests/")[0];
    let accept = manifest_request.header("accept").unwrap();
    assert!(accept.contains(OCI_INDEX), "{accept}");
    assert!(accept.contains(OCI_MANIFEST), "{accept}");
}

/// An index entry: os, architecture, variant and the manifest's (digest, size).
type IndexEntry<'a> = (&'a str, &'a str, Option<&'a str>, &'a (String, usize));

fn index_of(entries: &[IndexEntry<'_>]) -> Vec<u8> {
    let manifests: Vec<_> = entries
        .iter()
        .map(|(os, arch, variant, (digest, size))| {
            let mut platform = json!({"os": os, "architecture": arch});
            if let Some(variant) = variant {
                platform["variant"] = json!(variant);
            }
            json!({"mediaType": OCI_MANIFEST, "digest": digest, "size": size, "platform": platform})
        })
        .collect();
    serde_json::to_vec(&json!({"schemaVersion": 2, "mediaType": OCI_INDEX, "manifests": manifests}))
        .unwrap()
}

#[tokio::test]
async fn index_is_followed_to_the_requested_platform() {
    let mut content = Content::default();
    let (amd64, _) = add_image(&mut content, None, 20_000);
    let (arm64, arm_layer) = add_image(&mut content, None, 30_000);
    let index = index_of(&[
        ("linux", "amd64", None, &amd64),
        ("linux", "arm64", Some("v8"), &arm64),
    ]);
    content.add_manifest(OCI_INDEX, index, Some("multi"));
    let server = serve(Arc::new(Mutex::new(content))).await;
    let image: ImageRef = format!("{}/{REPO}:multi", server.host()).parse().unwrap();

    let platform = Platform::parse("linux/arm64/v8").unwrap();
    let resolved = resolve_with(&client(), &image, &platform).await.unwrap();
    assert_eq!(resolved.manifest_digest.to_string(), arm64.0);
    assert_eq!(resolved.layers[0].digest.to_string(), digest_of(&arm_layer));

    // Without a platform, this machine's architecture is used.
    let host = resolve(&image, &test_config(), Arc::new(Anonymous)).await;
    match Platform::host().architecture.as_str() {
        "amd64" => assert_eq!(host.unwrap().manifest_digest.to_string(), amd64.0),
        "arm64" => assert_eq!(host.unwrap().manifest_digest.to_string(), arm64.0),
        _ => assert!(
            matches!(host, Err(RemoteError::NoMatchingPlatform { .. })),
            "{host:?}"
        ),
    }
}

#[tokio::test]
async fn missing_platform_error_lists_available_ones() {
    let mut content = Content::default();
    let (image_a, _) = add_image(&mut content, None, 20_000);
    let index = index_of(&[
        ("windows", "amd64", None, &image_a),
        ("linux", "mips64le", None, &image_a),
    ]);
    content.add_manifest(OCI_INDEX, index, Some("odd"));
    let server = serve(Arc::new(Mutex::new(content))).await;
    let image: ImageRef = format!("{}/{REPO}:odd", server.host()).parse().unwrap();

    let err = resolve_with(&client(), &image, &Platform::parse("linux/amd64").unwrap())
        .await
        .unwrap_err();
    match &err {
        RemoteError::NoMatchingPlatform { wanted, available } => {
            assert_eq!(wanted, "linux/amd64");
            assert_eq!(
                available,
                &vec!["windows/amd64".to_owned(), "linux/mips64le".to_owned()]
            );
        }
        other => panic!("expected NoMatchingPlatform, got {other:?}"),
    }
}

#[tokio::test]
async fn pinned_digest_must_match_the_served_manifest() {
    let mut content = Content::default();
    let ((digest, _), _) = add_image(&mut content, None, 20_000);
    let good_bytes = content.manifests[&digest].1.clone();
    // The server returns different bytes for the pinned digest.
    let mut tampered = good_bytes.clone();
    tampered.extend_from_slice(b" ");
    content
        .manifests
        .insert(digest.clone(), (OCI_MANIFEST.to_owned(), tampered));
    let server = serve(Arc::new(Mutex::new(content))).await;
    let image: ImageRef = format!("{}/{REPO}@{digest}", server.host())
        .parse()
        .unwrap();

    let err = resolve(&image, &test_config(), Arc::new(Anonymous))
        .await
        .unwrap_err();
    match err {
        RemoteError::DigestMismatch {
            what,
            expected,
            actual,
        } => {
            assert_eq!(what, "manifest");
            assert_eq!(expected, digest);
            assert_eq!(actual, digest_of(&[&good_bytes[..], b" "].concat()));
        }
        other => panic!("expected DigestMismatch, got {other:?}"),
    }
}

#[tokio::test]
async fn tampered_config_is_rejected() {
    let mut content = Content::default();
    add_image(&mut content, Some("v1"), 20_000);
    let config_digest = content
        .blobs
        .iter()
        .find(|(_, bytes)| bytes.starts_with(b"{"))
        .map(|(digest, _)| digest.clone())
        .unwrap();
    let mut config = content.blobs[&config_digest].clone();
    config[1] = b' ';
    content.blobs.insert(config_digest.clone(), config);
    let server = serve(Arc::new(Mutex::new(content))).await;
    let image: ImageRef = format!("{}/{REPO}:v1", server.host()).parse().unwrap();

    let err = resolve(&image, &test_config(), Arc::new(Anonymous))
        .await
        .unwrap_err();
    assert!(
        matches!(&err, RemoteError::DigestMismatch { what: "config", expected, .. } if *expected == config_digest),
        "{err:?}"
    );
}

#[tokio::test]
async fn unknown_tag_is_not_found() {
    let server = serve(Arc::new(Mutex::new(Content::default()))).await;
    let image: ImageRef = format!("{}/{REPO}:nope", server.host()).parse().unwrap();
    let err = resolve(&image, &test_config(), Arc::new(Anonymous))
        .await
        .unwrap_err();
    assert!(matches!(err, RemoteError::NotFound { .. }), "{err:?}");
    assert_eq!(err.status(), Some(404));
}

fn two_layer_tars() -> Vec<Vec<u8>> {
    let mut first = Builder::new();
    first.append(&Entry::file("etc/hostname", b"box\n"));
    let mut second = Builder::new();
    second.append(&Entry::file("usr/share/data.bin", blob_bytes(50_000)));
    vec![first.finish(), second.finish()]
}

#[tokio::test]
async fn oci_layout_tag_resolves_to_local_blobs() {
    let dir = tempfile::tempdir().unwrap();
    let written = lazypull_testkit::image::write_oci_layout(
        dir.path(),
        "v1",
        &two_layer_tars(),
        &["/bin/true"],
    )
    .unwrap();
    let image = ImageRef::parse(&format!("oci:{}:v1", dir.path().display())).unwrap();

    let resolved = resolve(&image, &test_config(), Arc::new(Anonymous))
        .await
        .unwrap();
    assert_eq!(
        resolved.manifest_digest.to_string(),
        written.manifest_digest
    );
    assert_eq!(resolved.config.digest.to_string(), written.config_digest);
    let layer_digests: Vec<String> = resolved
        .layers
        .iter()
        .map(|layer| layer.digest.to_string())
        .collect();
    assert_eq!(layer_digests, written.layer_digests);

    let layer = &resolved.layers[1];
    let source = resolved.open_layer(layer).await.unwrap();
    let path = dir.path().join("blobs/sha256").join(layer.digest.hex());
    let on_disk = std::fs::read(path).unwrap();
    assert_eq!(source.size(), on_disk.len() as u64);
    let tail = source
        .read_range(on_disk.len() as u64 - 100..on_disk.len() as u64)
        .await
        .unwrap();
    assert_eq!(&tail[..], &on_disk[on_disk.len() - 100..]);
    source.check().await.unwrap();
}

#[tokio::test]
async fn oci_layout_unknown_tag_lists_tags() {
    let dir = tempfile::tempdir().unwrap();
    lazypull_testkit::image::write_oci_layout(dir.path(), "v1", &two_layer_tars(), &["/bin/true"])
        .unwrap();
    let image = ImageRef::parse(&format!("oci:{}", dir.path().display())).unwrap();
    let err = resolve(&image, &test_config(), Arc::new(Anonymous))
        .await
        .unwrap_err();
    match err {
        RemoteError::TagNotFound { tag, available, .. } => {
            assert_eq!(tag, "latest");
            assert_eq!(available, vec!["v1".to_owned()]);
        }
        other => panic!("expected TagNotFound, got {other:?}"),
    }
}

#[tokio::test]
async fn oci_layout_with_corrupted_manifest_is_rejected() {
    let dir = tempfile::tempdir().unwrap();
    let written = lazypull_testkit::image::write_oci_layout(
        dir.path(),
        "v1",
        &two_layer_tars(),
        &["/bin/true"],
    )
    .unwrap();
    let path = dir
        .path()
        .join("blobs/sha256")
        .join(written.manifest_digest.trim_start_matches("sha256:"));
    let mut bytes = std::fs::read(&path).unwrap();
    let last = bytes.len() - 1;
    bytes[last] = b' ';
    std::fs::write(&path, bytes).unwrap();
    let image = ImageRef::parse(&format!("oci:{}:v1", dir.path().display())).unwrap();
    let err = resolve(&image, &test_config(), Arc::new(Anonymous))
        .await
        .unwrap_err();
    assert!(
        matches!(
            err,
            RemoteError::DigestMismatch {
                what: "manifest",
                ..
            }
        ),
        "{err:?}"
    );
}

#[tokio::test]
async fn open_blob_reads_without_a_manifest() {
    let dir = tempfile::tempdir().unwrap();
    let written = lazypull_testkit::image::write_oci_layout(
        dir.path(),
        "v1",
        &two_layer_tars(),
        &["/bin/true"],
    )
    .unwrap();
    let layer_digest = &written.layer_digests[0];
    let on_disk = std::fs::read(
        dir.path()
            .join("blobs/sha256")
            .join(layer_digest.trim_start_matches("sha256:")),
    )
    .unwrap();
    let local = ImageRef::parse(&format!("oci:{}:v1", dir.path().display())).unwrap();
    let source = open_blob(&client(), &local, &layer_digest.parse().unwrap(), None)
        .await
        .unwrap();
    assert_eq!(
        &source.read_range(0..on_disk.len() as u64).await.unwrap()[..],
        &on_disk[..]
    );

    let mut content = Content::default();
    let (digest, size) = content.add_blob(on_disk.clone());
    let server = serve(Arc::new(Mutex::new(content))).await;
    let remote = ImageRef::parse(&format!("{}/{REPO}:any", server.host())).unwrap();
    let source = open_blob(&client(), &remote, &digest.parse().unwrap(), None)
        .await
        .unwrap();
    assert_eq!(source.size(), size as u64);
    assert_eq!(
        &source.read_range(10..20).await.unwrap()[..],
        &on_disk[10..20]
    );
    assert!(server.requests_to("/manifests/").is_empty());
}
