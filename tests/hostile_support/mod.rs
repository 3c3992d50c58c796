//! Shared helpers of the hostile-input reliability tests: eStargz blobs whose TOC is rewritten
//! after the build (with a matching TOC digest, so the digest check passes and the validation
//! under test is what rejects the blob), and OCI layouts that hold such blobs.

#![allow(dead_code)]

use std::io::{Cursor, Write};
use std::path::Path;

use estargz::blob::{decode_toc, locate_toc};
use estargz::build::{BuildOptions, build};
use estargz::footer::gzip_footer;
use estargz::tar::encode::{HeaderSpec, encode};
use estargz::toc::TOC_TAR_NAME;
use estargz::{Digest, Limits};
use serde_json::{Value, json};
use sha2::Sha256;

/// An eStargz blob with the facts an image descriptor needs.
#[derive(Debug, Clone)]
pub struct HostileBlob {
    /// The blob bytes.
    pub bytes: Vec<u8>,
    /// Digest of the uncompressed TOC JSON, as the layer annotation carries it.
    pub toc_digest: Digest,
    /// Diff id of the layer before the TOC was edited.
    pub diff_id: String,
}

/// Appends one entry with `content` to a tar stream.
pub fn push_entry(tar: &mut Vec<u8>, name: &str, typeflag: u8, link: &str, content: &[u8]) {
    tar.extend_from_slice(&encode(&HeaderSpec {
        name: name.as_bytes(),
        link: link.as_bytes(),
        typeflag,
        mode: 0o644,
        size: content.len() as u64,
        ..Default::default()
    }));
    tar.extend_from_slice(content);
    tar.resize(tar.len().div_ceil(512) * 512, 0);
}

/// Returns `len` bytes that gzip cannot shrink and no two chunks of which repeat (xorshift64
/// output from `seed`).
pub fn random_bytes(len: usize, seed: u64) -> Vec<u8> {
    let mut state = seed.wrapping_mul(0x9e37_79b9_7f4a_7c15) | 1;
    let mut out = Vec::with_capacity(len + 8);
    while out.len() < len {
        state ^= state << 13;
        state ^= state >> 7;
        state ^= state << 17;
        out.extend_from_slice(&state.to_le_bytes());
    }
    out.truncate(len);
    out
}

/// Builds the base layer: `dir/`, `dir/small` (10 bytes) and `dir/big` (150,000 bytes in three
/// 64 KiB chunks), converted with a 64 KiB chunk size.
pub fn base_blob() -> HostileBlob {
    let mut tar = Vec::new();
    push_entry(&mut tar, "dir/", b'5', "", b"");
    push_entry(&mut tar, "dir/small", b'0', "", &random_bytes(10, 1));
    push_entry(&mut tar, "dir/big", b'0', "", &random_bytes(150_000, 2));
    tar.resize(tar.len() + 1024, 0);
    let mut bytes = Vec::new();
    let options = BuildOptions {
        chunk_size: 65536,
        ..Default::default()
    };
    let out = build(Cursor::new(tar), &mut bytes, &options).expect("base layer converts");
    HostileBlob {
        bytes,
        toc_digest: out.toc_digest,
        diff_id: out.diff_id.to_string(),
    }
}

/// Returns the TOC JSON of a blob and the offset of its TOC member.
pub fn read_toc(blob: &[u8]) -> (Value, u64) {
    let location = locate_toc(&blob).expect("footer parses");
    let start = location.offset as usize;
    let end = start + location.compressed_len as usize;
    let json = decode_toc(&blob[start..end], &location, &Limits::default()).expect("TOC decodes");
    (
        serde_json::from_slice(&json).expect("TOC is JSON"),
        location.offset,
    )
}

/// Replaces the TOC member and footer of `blob` with `toc_json`, keeping every chunk, and
/// returns the new blob with the digest of the new TOC.
pub fn with_toc_json(blob: &HostileBlob, toc_json: &[u8]) -> HostileBlob {
    let (_, toc_offset) = read_toc(&blob.bytes);
    let mut tar = encode(&HeaderSpec {
        name: TOC_TAR_NAME.as_bytes(),
        typeflag: b'0',
        mode: 0o644,
        size: toc_json.len() as u64,
        ..Default::default()
    })
    .to_vec();
    tar.extend_from_slice(toc_json);
    tar.resize(tar.len().div_ceil(512) * 512 + 1024, 0);
    let mut encoder = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
    encoder.write_all(&tar).expect("gzip into memory");
    let member = encoder.finish().expect("gzip into memory");

    let mut bytes = blob.bytes[..toc_offset as usize].to_vec();
    bytes.extend_from_slice(&member);
    bytes.extend_from_slice(&gzip_footer(toc_offset));
    HostileBlob {
        bytes,
        toc_digest: Digest::of(toc_json),
        diff_id: blob.diff_id.clone(),
    }
}

/// Applies `edit` to the TOC of `blob` (as JSON) and rewrites the blob around the new TOC.
pub fn edit_toc(blob: &HostileBlob, edit: impl FnOnce(&mut Value)) -> HostileBlob {
    let (mut toc, _) = read_toc(&blob.bytes);
    edit(&mut toc);
    with_toc_json(blob, &serde_json::to_vec(&toc).expect("TOC serializes"))
}

/// Returns the TOC entry named `name` (the first one of a chunked file).
pub fn entry_mut<'a>(toc: &'a mut Value, name: &str) -> &'a mut Value {
    toc["entries"]
        .as_array_mut()
        .expect("TOC has entries")
        .iter_mut()
        .find(|entry| entry["name"] == name)
        .unwrap_or_else(|| panic!("TOC has no entry {name}"))
}

fn sha256(bytes: &[u8]) -> String {
    use sha2::Digest as _;
    format!("sha256:{}", hex::encode(Sha256::digest(bytes)))
}

fn write_blob(layout: &Path, bytes: &[u8]) -> String {
    let digest = sha256(bytes);
    let dir = layout.join("blobs/sha256");
    std::fs::create_dir_all(&dir).expect("create blob directory");
    std::fs::write(dir.join(digest.trim_start_matches("sha256:")), bytes).expect("write blob");
    digest
}

/// Writes an OCI layout at `dir` tagged `tag` whose one layer is `blob`, annotated with its TOC
/// digest. Returns the layer digest.
pub fn write_layout(dir: &Path, tag: &str, blob: &HostileBlob) -> String {
    let layer_digest = write_blob(dir, &blob.bytes);
    let config = serde_json::to_vec(&json!({
        "architecture": "amd64",
        "os": "linux",
        "config": {},
        "rootfs": { "type": "layers", "diff_ids": [blob.diff_id] },
    }))
    .expect("config serializes");
    let config_digest = write_blob(dir, &config);
    let manifest = serde_json::to_vec(&json!({
        "schemaVersion": 2,
        "mediaType": "application/vnd.oci.image.manifest.v1+json",
        "config": { "mediaType": "application/vnd.oci.image.config.v1+json", "digest": config_digest, "size": config.len() },
        "layers": [{
            "mediaType": "application/vnd.oci.image.layer.v1.tar+gzip",
            "digest": layer_digest,
            "size": blob.bytes.len(),
            "annotations": {
                "containerd.io/snapshot/stargz/toc.digest": blob.toc_digest.to_string(),
            },
        }],
    }))
    .expect("manifest serializes");
    let manifest_digest = write_blob(dir, &manifest);
    let index = json!({
        "schemaVersion": 2,
        "manifests": [{
            "mediaType": "application/vnd.oci.image.manifest.v1+json",
            "digest": manifest_digest,
            "size": manifest.len(),
            "annotations": { "org.opencontainers.image.ref.name": tag },
        }],
    });
    std::fs::write(
        dir.join("index.json"),
        serde_json::to_vec(&index).expect("index"),
    )
    .expect("write index.json");
    std::fs::write(dir.join("oci-layout"), br#"{"imageLayoutVersion":"1.0.0"}"#)
        .expect("write oci-layout");
    layer_digest
}
