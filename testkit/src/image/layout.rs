//! A writer for small OCI image layouts built from tar bytes in memory.
//!
//! Tests use it to make tiny images (one to a few layers of generated tars) that tools
//! such as skopeo, containerd and our converter can read. Layers are gzip-compressed
//! with the OCI media type `application/vnd.oci.image.layer.v1.tar+gzip`.

use std::io::Write;
use std::path::Path;

use anyhow::Context;
use flate2::Compression;
use flate2::write::GzEncoder;
use serde_json::json;
use sha2::{Digest, Sha256};

/// Media type of an OCI image manifest.
pub const MANIFEST_MEDIA_TYPE: &str = "application/vnd.oci.image.manifest.v1+json";
/// Media type of an OCI image config.
pub const CONFIG_MEDIA_TYPE: &str = "application/vnd.oci.image.config.v1+json";
/// Media type of a gzip-compressed OCI layer.
pub const LAYER_GZIP_MEDIA_TYPE: &str = "application/vnd.oci.image.layer.v1.tar+gzip";

/// Digests of what [`write_oci_layout`] wrote, all as `sha256:<hex>`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WrittenImage {
    /// Digest of the manifest blob (what the tag in `index.json` points at).
    pub manifest_digest: String,
    /// Digest of the config blob.
    pub config_digest: String,
    /// Digests of the compressed layer blobs, bottom layer first.
    pub layer_digests: Vec<String>,
    /// Digests of the uncompressed layer tars (the config's `rootfs.diff_ids`).
    pub diff_ids: Vec<String>,
}

/// Returns `sha256:<hex>` of `bytes`.
pub fn sha256_digest(bytes: &[u8]) -> String {
    format!("sha256:{}", hex::encode(Sha256::digest(bytes)))
}

/// Writes an OCI layout at `dir` (created if missing) holding one linux/amd64 image
/// tagged `tag`, whose layers are the given uncompressed tars, bottom first.
///
/// Each layer is gzip-compressed at level 6. The config sets `Cmd` to `cmd` and a
/// standard `PATH`. An existing `index.json` is replaced, so the layout holds one image.
pub fn write_oci_layout(
    dir: &Path,
    tag: &str,
    layer_tars: &[Vec<u8>],
    cmd: &[&str],
) -> anyhow::Result<WrittenImage> {
    let blobs = dir.join("blobs").join("sha256");
    std::fs::create_dir_all(&blobs)
        .with_context(|| format!("failed to create {}", blobs.display()))?;

    let mut layer_descriptors = Vec::new();
    let mut layer_digests = Vec::new();
    let mut diff_ids = Vec::new();
    for tar in layer_tars {
        let mut encoder = GzEncoder::new(Vec::new(), Compression::new(6));
        encoder.write_all(tar)?;
        let gz = encoder.finish()?;
        let digest = write_blob(&blobs, &gz)?;
        layer_descriptors.push(json!({
            "mediaType": LAYER_GZIP_MEDIA_TYPE,
            "digest": digest,
            "size": gz.len(),
        }));
        layer_digests.push(digest);
        diff_ids.push(sha256_digest(tar));
    }

    let config = json!({
        "architecture": "amd64",
        "os": "linux",
        "config": {
            "Env": ["PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"],
            "Cmd": cmd,
        },
        "rootfs": { "type": "layers", "diff_ids": diff_ids },
        "history": [],
    });
    let config_bytes = serde_json::to_vec(&config)?;
    let config_digest = write_blob(&blobs, &config_bytes)?;

    let manifest = json!({
        "schemaVersion": 2,
        "mediaType": MANIFEST_MEDIA_TYPE,
        "config": {
            "mediaType": CONFIG_MEDIA_TYPE,
            "digest": config_digest,
            "size": config_bytes.len(),
        },
        "layers": layer_descriptors,
    });
    let manifest_bytes = serde_json::to_vec(&manifest)?;
    let manifest_digest = write_blob(&blobs, &manifest_bytes)?;

    let index = json!({
        "schemaVersion": 2,
        "manifests": [{
            "mediaType": MANIFEST_MEDIA_TYPE,
            "digest": manifest_digest,
            "size": manifest_bytes.len(),
            "annotations": { "org.opencontainers.image.ref.name": tag },
        }],
    });
    std::fs::write(dir.join("index.json"), serde_json::to_vec(&index)?)?;
    std::fs::write(dir.join("oci-layout"), br#"{"imageLayoutVersion":"1.0.0"}"#)?;

    Ok(WrittenImage {
        manifest_digest,
        config_digest,
        layer_digests,
        diff_ids,
    })
}

fn write_blob(blobs: &Path, bytes: &[u8]) -> anyhow::Result<String> {
    let digest = sha256_digest(bytes);
    let hex_part = digest.trim_start_matches("sha256:");
    let path = blobs.join(hex_part);
    std::fs::write(&path, bytes).with_context(|| format!("failed to write {}", path.display()))?;
    Ok(digest)
}
