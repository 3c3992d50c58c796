//! Reading an OCI image layout directory (`oci-layout`, `index.json`, `blobs/`).

use std::path::{Path, PathBuf};

use bytes::Bytes;
use estargz::digest::Digest;
use oci_spec::image::{Descriptor, ImageIndex};

use super::error::RemoteError;

/// Annotation that carries the tag of a manifest in `index.json`.
const REF_NAME: &str = "org.opencontainers.image.ref.name";
/// Largest `index.json` accepted.
const MAX_INDEX_JSON: u64 = 4 << 20;

/// An OCI image layout directory.
#[derive(Debug, Clone)]
pub(crate) struct Layout {
    dir: PathBuf,
}

impl Layout {
    pub(crate) fn new(dir: &Path) -> Self {
        Layout {
            dir: dir.to_owned(),
        }
    }

    pub(crate) fn dir(&self) -> &Path {
        &self.dir
    }

    /// `<dir>/blobs/sha256/<hex>`. Digests are parsed hex, so the path cannot escape `dir`.
    pub(crate) fn blob_path(&self, digest: &Digest) -> PathBuf {
        self.dir.join("blobs").join("sha256").join(digest.hex())
    }

    /// Finds the `index.json` descriptor tagged `tag`.
    pub(crate) async fn find_tag(&self, tag: &str) -> Result<Descriptor, RemoteError> {
        let path = self.dir.join("index.json");
        let raw = read_limited(&path, MAX_INDEX_JSON, "index.json").await?;
        let index: ImageIndex =
            serde_json::from_slice(&raw).map_err(|err| RemoteError::InvalidManifest {
                what: "index.json",
                reason: err.to_string(),
            })?;
        let tag_of = |descriptor: &Descriptor| -> Option<String> {
            descriptor.annotations().as_ref()?.get(REF_NAME).cloned()
        };
        if let Some(found) = index
            .manifests()
            .iter()
            .find(|descriptor| tag_of(descriptor).as_deref() == Some(tag))
        {
            return Ok(found.clone());
        }
        let available = index.manifests().iter().filter_map(tag_of).collect();
        Err(RemoteError::TagNotFound {
            dir: self.dir.clone(),
            tag: tag.to_owned(),
            available,
        })
    }

    /// Reads the blob `digest` whole, if it is at most `limit` bytes. The caller verifies it.
    pub(crate) async fn read_blob(
        &self,
        digest: &Digest,
        limit: u64,
        what: &'static str,
    ) -> Result<Bytes, RemoteError> {
        read_limited(&self.blob_path(digest), limit, what).await
    }
}

async fn read_limited(path: &Path, limit: u64, what: &'static str) -> Result<Bytes, RemoteError> {
    let io_error = |source| RemoteError::Io {
        path: path.to_owned(),
        source,
    };
    let metadata = tokio::fs::metadata(path).await.map_err(io_error)?;
    if metadata.len() > limit {
        return Err(RemoteError::BodyTooLarge {
            from: path.display().to_string(),
            what,
            limit,
        });
    }
    let bytes = tokio::fs::read(path).await.map_err(io_error)?;
    Ok(Bytes::from(bytes))
}
