//! Image stores, as source and destination: a registry repository or an OCI layout.
//!
//! [`Source`] fetches manifests, configs and layer blobs and verifies every digest;
//! [`Destination`] stores blobs, manifests and finally the tag. Each backend has its own file.

pub mod auth;
pub mod layout;
pub mod registry;

use std::path::{Path, PathBuf};

use oci_client::{Client, RegistryOperation};
use tokio_util::sync::CancellationToken;

use crate::descriptor::{Descriptor, MAX_CONFIG_BYTES, MAX_MANIFEST_BYTES};
use crate::error::ConvertError;
use crate::image_ref::ImageRef;
use crate::progress::{LayerProgress, Phase};
use layout::Layout;
use registry::RegistryStore;

/// A layer blob available as a local file.
pub struct LocalBlob {
    /// The open file.
    pub file: std::fs::File,
    /// Its path.
    pub path: PathBuf,
    /// The temporary file to delete afterwards, for downloaded blobs.
    pub temp: Option<tempfile::TempPath>,
}

/// A layer blob file to store at the destination.
pub struct BlobFile<'a> {
    /// Digest of the blob.
    pub digest: &'a str,
    /// Size of the blob in bytes.
    pub size: u64,
    /// The file holding it.
    pub path: &'a Path,
    /// True when the file may be moved instead of copied (a temporary file of ours).
    pub consume: bool,
}

/// The image being converted.
pub enum Source {
    /// A registry repository.
    Registry(RegistryStore),
    /// An OCI layout.
    Layout {
        /// The layout.
        layout: Layout,
        /// Tag to read.
        tag: String,
        /// True when the reference named no tag.
        tag_defaulted: bool,
    },
}

/// The fetched top-level manifest or index.
pub struct Root {
    /// Its bytes.
    pub bytes: Vec<u8>,
    /// Its digest.
    pub digest: String,
}

impl Source {
    /// Opens the source, authenticating to a registry.
    pub async fn open(image: &ImageRef, client: &Client) -> Result<Source, ConvertError> {
        match image {
            ImageRef::Registry(r) => Ok(Source::Registry(
                RegistryStore::connect(r, client.clone(), RegistryOperation::Pull).await?,
            )),
            ImageRef::Layout {
                dir,
                tag,
                tag_defaulted,
            } => Ok(Source::Layout {
                layout: Layout::open(dir)?,
                tag: tag.clone(),
                tag_defaulted: *tag_defaulted,
            }),
        }
    }

    /// Fetches the manifest or index the reference names.
    pub async fn root(&self) -> Result<Root, ConvertError> {
        match self {
            Source::Registry(store) => {
                let (bytes, digest) = store.fetch_root().await?;
                Ok(Root { bytes, digest })
            }
            Source::Layout {
                layout,
                tag,
                tag_defaulted,
            } => {
                let descriptor = layout.resolve_tag(tag, *tag_defaulted)?;
                let bytes = layout.read_blob(&descriptor, "manifest", MAX_MANIFEST_BYTES)?;
                Ok(Root {
                    bytes,
                    digest: descriptor.digest,
                })
            }
        }
    }

    /// Fetches a manifest an index points at, verified against its descriptor.
    pub async fn manifest(&self, descriptor: &Descriptor) -> Result<Vec<u8>, ConvertError> {
        match self {
            Source::Registry(store) => store.fetch_manifest(descriptor).await,
            Source::Layout { layout, .. } => {
                layout.read_blob(descriptor, "manifest", MAX_MANIFEST_BYTES)
            }
        }
    }

    /// Fetches a config, verified against its descriptor.
    pub async fn config(&self, descriptor: &Descriptor) -> Result<Vec<u8>, ConvertError> {
        match self {
            Source::Registry(store) => {
                store
                    .fetch_small_blob(descriptor, "config", MAX_CONFIG_BYTES)
                    .await
            }
            Source::Layout { layout, .. } => {
                layout.read_blob(descriptor, "config", MAX_CONFIG_BYTES)
            }
        }
    }

    /// Makes a layer blob available as a local file: the layout's own file, or a download into
    /// `tmpdir`. The digest is not checked here; the reader checks it while reading.
    pub async fn layer(
        &self,
        descriptor: &Descriptor,
        tmpdir: &Path,
        progress: &LayerProgress,
        cancel: &CancellationToken,
    ) -> Result<LocalBlob, ConvertError> {
        match self {
            Source::Layout { layout, .. } => {
                let (path, file) = layout.open_blob(&descriptor.digest)?;
                Ok(LocalBlob {
                    file,
                    path,
                    temp: None,
                })
            }
            Source::Registry(store) => {
                progress.phase(Phase::Download, descriptor.size);
                let temp = tempfile::Builder::new()
                    .prefix("lazypull-download-")
                    .tempfile_in(tmpdir)
                    .map_err(|e| ConvertError::io("creating a temporary file in", tmpdir, e))?;
                let (file, temp) = temp.into_parts();
                let mut async_file = tokio::fs::File::from_std(file);
                store
                    .download_blob(descriptor, &mut async_file, &temp, progress, cancel)
                    .await?;
                let file = async_file.into_std().await;
                Ok(LocalBlob {
                    file,
                    path: temp.to_path_buf(),
                    temp: Some(temp),
                })
            }
        }
    }

    /// Returns the registry store, when the source is a registry.
    pub fn registry(&self) -> Option<&RegistryStore> {
        match self {
            Source::Registry(store) => Some(store),
            Source::Layout { .. } => None,
        }
    }
}

/// Store that receives the converted image.
// One destination exists per conversion, so the unboxed registry client costs nothing.
#[allow(clippy::large_enum_variant)]
pub enum Destination {
    /// A registry repository; the tag comes from the reference.
    Registry {
        /// The repository.
        store: RegistryStore,
        /// Tag to set last.
        tag: String,
    },
    /// An OCI layout.
    Layout {
        /// The layout.
        layout: Layout,
        /// Tag to set last.
        tag: String,
    },
}

impl Destination {
    /// Opens the destination: authenticates for push, or creates the layout directory.
    pub async fn open(image: &ImageRef, client: &Client) -> Result<Destination, ConvertError> {
        match image {
            ImageRef::Registry(r) => {
                let tag = r
                    .reference
                    .tag()
                    .unwrap_or(crate::image_ref::DEFAULT_TAG)
                    .to_string();
                let store =
                    RegistryStore::connect(r, client.clone(), RegistryOperation::Push).await?;
                Ok(Destination::Registry { store, tag })
            }
            ImageRef::Layout { dir, tag, .. } => Ok(Destination::Layout {
                layout: Layout::create(dir)?,
                tag: tag.clone(),
            }),
        }
    }

    /// True when the destination already has the blob.
    pub async fn has_blob(&self, digest: &str) -> Result<bool, ConvertError> {
        match self {
            Destination::Registry { store, .. } => store.has_blob(digest).await,
            Destination::Layout { layout, .. } => layout.has_blob(digest),
        }
    }

    /// Stores a layer blob from a local file unless it is present. `source` enables a
    /// cross-repository mount when both sides are repositories of the same registry.
    pub async fn put_layer(
        &self,
        blob: BlobFile<'_>,
        source: Option<&RegistryStore>,
        progress: &LayerProgress,
        cancel: &CancellationToken,
    ) -> Result<(), ConvertError> {
        let BlobFile {
            digest,
            size,
            path,
            consume,
        } = blob;
        if self.has_blob(digest).await? {
            tracing::debug!(digest, "blob already present at the destination");
            return Ok(());
        }
        progress.phase(Phase::Upload, size);
        match self {
            Destination::Registry { store, .. } => {
                if let Some(from) = source
                    && from.registry() == store.registry()
                    && from.repository() != store.repository()
                    && store.mount_blob(digest, from).await
                {
                    tracing::debug!(
                        digest,
                        from = from.repository(),
                        "blob mounted from the source repository"
                    );
                    return Ok(());
                }
                // Dropping an unfinished upload only abandons the registry's upload session.
                tokio::select! {
                    uploaded = store.upload_file(digest, size, path, progress) => uploaded,
                    () = cancel.cancelled() => Err(ConvertError::Cancelled),
                }
            }
            // Not cancellable: the copy runs to its end so no temporary file stays in the layout.
            Destination::Layout { layout, .. } => {
                let layout = layout.clone();
                let (digest, path) = (digest.to_string(), path.to_path_buf());
                run_blocking("copying a blob into the layout", move || {
                    layout.install_blob(&digest, &path, consume)
                })
                .await
            }
        }
    }

    /// Stores a small blob (a config) unless it is present.
    pub async fn put_small(&self, digest: &str, bytes: &[u8]) -> Result<(), ConvertError> {
        if self.has_blob(digest).await? {
            return Ok(());
        }
        match self {
            Destination::Registry { store, .. } => store.upload_bytes(digest, bytes.to_vec()).await,
            Destination::Layout { layout, .. } => layout.write_blob(digest, bytes),
        }
    }

    /// Stores a manifest or index by digest, without tagging it.
    pub async fn put_manifest(
        &self,
        digest: &str,
        bytes: &[u8],
        media_type: &str,
    ) -> Result<(), ConvertError> {
        match self {
            Destination::Registry { store, .. } => {
                store.push_manifest(bytes, media_type, digest, None).await
            }
            Destination::Layout { layout, .. } => layout.write_blob(digest, bytes),
        }
    }

    /// Points the destination tag at the stored root manifest or index. This is the last write.
    pub async fn tag(
        &self,
        digest: &str,
        bytes: &[u8],
        media_type: &str,
    ) -> Result<(), ConvertError> {
        match self {
            Destination::Registry { store, tag } => {
                store
                    .push_manifest(bytes, media_type, digest, Some(tag))
                    .await
            }
            Destination::Layout { layout, tag } => {
                layout.set_tag(tag, media_type, digest, bytes.len() as u64)
            }
        }
    }

    /// Returns the destination tag.
    pub fn tag_name(&self) -> &str {
        match self {
            Destination::Registry { tag, .. } | Destination::Layout { tag, .. } => tag,
        }
    }
}

/// Runs blocking file work on the blocking pool and turns a panic into an error.
pub async fn run_blocking<T: Send + 'static>(
    what: &str,
    work: impl FnOnce() -> Result<T, ConvertError> + Send + 'static,
) -> Result<T, ConvertError> {
    tokio::task::spawn_blocking(work)
        .await
        .map_err(|e| ConvertError::Internal {
            what: what.to_string(),
            message: e.to_string(),
        })?
}
