//! A repository in an OCI registry as source and destination, through `oci-client`.
//!
//! Blobs are uploaded with one monolithic `PUT` whose body streams from a file, so memory does
//! not grow with the blob size. Manifests are pushed with their exact bytes, so digests computed
//! here are the digests the registry stores.

use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use futures_util::{StreamExt, TryStreamExt};
use oci_client::client::{ClientConfig, ClientProtocol};
use oci_client::errors::{OciDistributionError, OciErrorCode};
use oci_client::manifest::OciDescriptor;
use oci_client::secrets::RegistryAuth;
use oci_client::{Client, Reference, RegistryOperation};
use tokio::io::AsyncWriteExt;
use tokio_util::sync::CancellationToken;

use crate::descriptor::{Descriptor, verify_content};
use crate::error::ConvertError;
use crate::image_ref::RegistryRef;
use crate::media;
use crate::progress::LayerProgress;
use crate::store::auth::registry_auth;

/// Size of the reads that feed an upload body.
const UPLOAD_READ_BYTES: usize = 1 << 20;

/// Builds the registry client shared by source and destination. `plain_http` lists the
/// registries (`host[:port]`) reached over plain HTTP.
pub fn client(plain_http: Vec<String>) -> Client {
    Client::new(ClientConfig {
        protocol: ClientProtocol::HttpsExcept(plain_http),
        // One PUT per blob, streamed: no chunk-size constraints, one request per blob.
        use_monolithic_push: true,
        ..ClientConfig::default()
    })
}

/// One repository of a registry.
#[derive(Clone)]
pub struct RegistryStore {
    client: Client,
    /// The reference as given (tag and/or digest).
    reference: Reference,
    scheme: &'static str,
    auth: RegistryAuth,
}

impl RegistryStore {
    /// Reads credentials and authenticates for `operation`, which also checks that the registry
    /// is reachable.
    pub async fn connect(
        image: &RegistryRef,
        client: Client,
        operation: RegistryOperation,
    ) -> Result<RegistryStore, ConvertError> {
        let store = RegistryStore {
            client,
            reference: image.reference.clone(),
            scheme: image.scheme(),
            auth: registry_auth(image.registry())?,
        };
        store
            .client
            .auth(&store.reference, &store.auth, operation)
            .await
            .map_err(|e| {
                store.error(
                    e,
                    "authenticating to",
                    store.reference.to_string(),
                    operation,
                )
            })?;
        Ok(store)
    }

    /// `host[:port]` of the registry.
    pub fn registry(&self) -> &str {
        self.reference.resolve_registry()
    }

    /// Returns the repository path.
    pub fn repository(&self) -> &str {
        self.reference.repository()
    }

    /// Returns the reference as given.
    pub fn reference(&self) -> &Reference {
        &self.reference
    }

    fn by_digest(&self, digest: &str) -> Reference {
        Reference::with_digest(
            self.reference.registry().to_string(),
            self.repository().to_string(),
            digest.to_string(),
        )
    }

    fn by_tag(&self, tag: &str) -> Reference {
        Reference::with_tag(
            self.reference.registry().to_string(),
            self.repository().to_string(),
            tag.to_string(),
        )
    }

    /// Fetches the manifest or index the reference names. Returns its bytes and digest; a digest
    /// reference is verified by the client.
    pub async fn fetch_root(&self) -> Result<(Vec<u8>, String), ConvertError> {
        let (bytes, digest) = self
            .client
            .pull_manifest_raw(&self.reference, &self.auth, &media::ACCEPTED_MANIFESTS)
            .await
            .map_err(|e| {
                self.error(
                    e,
                    "fetching",
                    self.reference.to_string(),
                    RegistryOperation::Pull,
                )
            })?;
        if bytes.len() as u64 > crate::descriptor::MAX_MANIFEST_BYTES {
            return Err(ConvertError::TooLarge {
                what: "manifest",
                digest: digest.clone(),
                size: bytes.len() as u64,
                limit: crate::descriptor::MAX_MANIFEST_BYTES,
            });
        }
        Ok((bytes.to_vec(), digest))
    }

    /// Fetches a manifest by the digest in its descriptor and verifies digest and size.
    pub async fn fetch_manifest(&self, descriptor: &Descriptor) -> Result<Vec<u8>, ConvertError> {
        let reference = self.by_digest(&descriptor.digest);
        let (bytes, _) = self
            .client
            .pull_manifest_raw(&reference, &self.auth, &media::ACCEPTED_MANIFESTS)
            .await
            .map_err(|e| {
                self.error(
                    e,
                    "fetching",
                    reference.to_string(),
                    RegistryOperation::Pull,
                )
            })?;
        verify_content(
            "manifest",
            &descriptor.digest,
            Some(descriptor.size),
            &bytes,
        )?;
        Ok(bytes.to_vec())
    }

    /// Fetches a small blob (a config) into memory and verifies it.
    pub async fn fetch_small_blob(
        &self,
        descriptor: &Descriptor,
        what: &'static str,
        limit: u64,
    ) -> Result<Vec<u8>, ConvertError> {
        if descriptor.size > limit {
            return Err(ConvertError::TooLarge {
                what,
                digest: descriptor.digest.clone(),
                size: descriptor.size,
                limit,
            });
        }
        let mut bytes = Vec::with_capacity(descriptor.size as usize);
        self.client
            .pull_blob(&self.reference, &oci_descriptor(descriptor), &mut bytes)
            .await
            .map_err(|e| {
                self.error(
                    e,
                    "fetching",
                    format!("{what} {}", descriptor.digest),
                    RegistryOperation::Pull,
                )
            })?;
        verify_content(what, &descriptor.digest, Some(descriptor.size), &bytes)?;
        Ok(bytes)
    }

    /// Streams a blob into `out`, reporting bytes to `progress`. The caller verifies the digest
    /// while it reads the file back.
    pub async fn download_blob(
        &self,
        descriptor: &Descriptor,
        out: &mut tokio::fs::File,
        out_path: &Path,
        progress: &LayerProgress,
        cancel: &CancellationToken,
    ) -> Result<(), ConvertError> {
        let what = || format!("layer {}", descriptor.digest);
        let mut stream = self
            .client
            .pull_blob_stream(&self.reference, &oci_descriptor(descriptor))
            .await
            .map_err(|e| self.error(e, "downloading", what(), RegistryOperation::Pull))?;
        let mut out = tokio::io::BufWriter::with_capacity(1 << 20, out);
        let mut done = 0u64;
        loop {
            let next = tokio::select! {
                next = stream.next() => next,
                () = cancel.cancelled() => return Err(ConvertError::Cancelled),
            };
            let Some(chunk) = next else { break };
            let chunk = chunk.map_err(|e| ConvertError::Registry {
                operation: "downloading",
                reference: what(),
                source: Box::new(e),
            })?;
            out.write_all(&chunk)
                .await
                .map_err(|e| ConvertError::io("writing", out_path, e))?;
            done += chunk.len() as u64;
            progress.set(done);
        }
        out.flush()
            .await
            .map_err(|e| ConvertError::io("writing", out_path, e))?;
        Ok(())
    }

    /// True when the repository has the blob.
    pub async fn has_blob(&self, digest: &str) -> Result<bool, ConvertError> {
        self.client
            .blob_exists(&self.reference, digest)
            .await
            .map_err(|e| {
                self.error(
                    e,
                    "checking",
                    format!("blob {digest}"),
                    RegistryOperation::Push,
                )
            })
    }

    /// Mounts a blob from another repository of the same registry. Returns false when the
    /// registry declined (then the caller uploads).
    pub async fn mount_blob(&self, digest: &str, from: &RegistryStore) -> bool {
        match self
            .client
            .mount_blob(&self.reference, &from.reference, digest)
            .await
        {
            Ok(()) => true,
            Err(error) => {
                tracing::debug!(%error, digest, "cross-repository mount declined; uploading instead");
                false
            }
        }
    }

    /// Uploads a blob from a file, streaming it.
    pub async fn upload_file(
        &self,
        digest: &str,
        size: u64,
        path: &Path,
        progress: &LayerProgress,
    ) -> Result<(), ConvertError> {
        let file = tokio::fs::File::open(path)
            .await
            .map_err(|e| ConvertError::io("reading", path, e))?;
        let sent = Arc::new(AtomicU64::new(0));
        let counter = Arc::clone(&sent);
        let progress = progress.clone();
        let body = tokio_util::io::ReaderStream::with_capacity(file, UPLOAD_READ_BYTES)
            .inspect_ok(move |chunk| {
                let done =
                    counter.fetch_add(chunk.len() as u64, Ordering::Relaxed) + chunk.len() as u64;
                progress.set(done);
            })
            .map_err(OciDistributionError::IoError);
        self.client
            .push_blob_stream(&self.reference, body, digest, Some(size))
            .await
            .map_err(|e| {
                self.error(
                    e,
                    "uploading",
                    format!("blob {digest}"),
                    RegistryOperation::Push,
                )
            })?;
        Ok(())
    }

    /// Uploads a small blob from memory.
    pub async fn upload_bytes(&self, digest: &str, bytes: Vec<u8>) -> Result<(), ConvertError> {
        self.client
            .push_blob(&self.reference, bytes, digest)
            .await
            .map_err(|e| {
                self.error(
                    e,
                    "uploading",
                    format!("blob {digest}"),
                    RegistryOperation::Push,
                )
            })?;
        Ok(())
    }

    /// Pushes manifest bytes by digest, or under `tag` when given.
    pub async fn push_manifest(
        &self,
        bytes: &[u8],
        media_type: &str,
        digest: &str,
        tag: Option<&str>,
    ) -> Result<(), ConvertError> {
        let reference = match tag {
            Some(tag) => self.by_tag(tag),
            None => self.by_digest(digest),
        };
        let content_type = http::HeaderValue::from_str(media_type).map_err(|_| {
            ConvertError::UnsupportedMediaType {
                what: "manifest",
                digest: digest.to_string(),
                media_type: media_type.to_string(),
                hint: "",
            }
        })?;
        // oci-client 0.18 panics in `push_manifest_raw` when a registry omits the Location header
        // for a push by digest (it strips a tag suffix with `expect`). Running the push as a task
        // turns such a panic into an error.
        let client = self.client.clone();
        let body = bytes.to_vec();
        let target = reference.clone();
        let pushed =
            tokio::spawn(
                async move { client.push_manifest_raw(&target, body, content_type).await },
            )
            .await;
        match pushed {
            Ok(Ok(_)) => Ok(()),
            Ok(Err(e)) => {
                Err(self.error(e, "pushing", reference.to_string(), RegistryOperation::Push))
            }
            Err(join) => Err(ConvertError::Internal {
                what: format!("pushing manifest {reference}"),
                message: join.to_string(),
            }),
        }
    }

    /// Maps a client error to the converter's error, recognising unreachable registries,
    /// authorization failures and missing manifests.
    fn error(
        &self,
        error: OciDistributionError,
        operation: &'static str,
        reference: String,
        op: RegistryOperation,
    ) -> ConvertError {
        let registry = self.registry().to_string();
        let op_name = match op {
            RegistryOperation::Pull => "pull",
            RegistryOperation::Push => "push",
        };
        match &error {
            OciDistributionError::RequestError(request)
                if request.is_connect() || request.is_timeout() =>
            {
                let hint = if self.scheme == "http" {
                    "check that the registry is running and the port is right (plain HTTP was used)"
                } else {
                    "check the host and port, and pass --insecure if the registry serves plain HTTP"
                };
                ConvertError::RegistryUnreachable {
                    url: format!("{}://{registry}", self.scheme),
                    registry,
                    hint,
                    source: Box::new(error),
                }
            }
            OciDistributionError::UnauthorizedError { .. }
            | OciDistributionError::AuthenticationFailure(_) => ConvertError::Unauthorized {
                registry,
                reference,
                operation: op_name,
                source: Box::new(error),
            },
            OciDistributionError::RegistryError { envelope, .. } => {
                let codes: Vec<&OciErrorCode> = envelope.errors.iter().map(|e| &e.code).collect();
                if codes
                    .iter()
                    .any(|c| matches!(c, OciErrorCode::Unauthorized | OciErrorCode::Denied))
                {
                    ConvertError::Unauthorized {
                        registry,
                        reference,
                        operation: op_name,
                        source: Box::new(error),
                    }
                } else if codes.iter().any(|c| {
                    matches!(
                        c,
                        OciErrorCode::ManifestUnknown
                            | OciErrorCode::NameUnknown
                            | OciErrorCode::NotFound
                            | OciErrorCode::BlobUnknown
                    )
                }) {
                    ConvertError::NotFound {
                        reference,
                        source: Some(Box::new(error)),
                    }
                } else {
                    ConvertError::Registry {
                        operation,
                        reference,
                        source: Box::new(error),
                    }
                }
            }
            OciDistributionError::ServerError { code: 404, .. }
            | OciDistributionError::ImageManifestNotFoundError(_) => ConvertError::NotFound {
                reference,
                source: Some(Box::new(error)),
            },
            OciDistributionError::ServerError {
                code: 401 | 403, ..
            } => ConvertError::Unauthorized {
                registry,
                reference,
                operation: op_name,
                source: Box::new(error),
            },
            _ => ConvertError::Registry {
                operation,
                reference,
                source: Box::new(error),
            },
        }
    }
}

fn oci_descriptor(descriptor: &Descriptor) -> OciDescriptor {
    OciDescriptor {
        media_type: descriptor.media_type.clone(),
        digest: descriptor.digest.clone(),
        size: i64::try_from(descriptor.size).unwrap_or(i64::MAX),
        ..OciDescriptor::default()
    }
}
