//! Whole-document GETs from a registry: manifests, indexes and config blobs.

use bytes::Bytes;
use reqwest::Url;
use reqwest::header::{ACCEPT, CONTENT_TYPE, HeaderMap, HeaderValue};

use super::body::{self, host_of};
use super::client::{RegistryClient, Target, try_endpoints};
use super::endpoint::Endpoint;
use super::error::RemoteError;
use super::manifest::MANIFEST_ACCEPT;
use super::retry::{self, Labels};

/// A fetched document and the media type it was served with.
pub(crate) struct Fetched {
    pub(crate) bytes: Bytes,
    pub(crate) content_type: Option<String>,
}

/// Repository to fetch from, shared by every request of one image.
#[derive(Clone, Copy)]
pub(crate) struct Repo<'a> {
    pub(crate) client: &'a RegistryClient,
    pub(crate) registry: &'a str,
    pub(crate) repository: &'a str,
}

impl Repo<'_> {
    /// `GET /v2/<repository>/manifests/<reference>` (a tag or a digest), at most `limit`
    /// bytes. The caller verifies the digest.
    pub(crate) async fn manifest(
        &self,
        reference: &str,
        limit: u64,
    ) -> Result<Fetched, RemoteError> {
        let label = format!("manifest {}/{}:{reference}", self.registry, self.repository);
        self.get(
            &label,
            Some(MANIFEST_ACCEPT),
            "manifest",
            limit,
            |endpoint| endpoint.manifest_url(self.repository, reference),
        )
        .await
    }

    /// `GET /v2/<repository>/blobs/<digest>`, at most `limit` bytes. The caller verifies the
    /// digest.
    pub(crate) async fn blob(&self, digest: &str, limit: u64) -> Result<Bytes, RemoteError> {
        let label = format!("blob {}/{}@{digest}", self.registry, self.repository);
        let fetched = self
            .get(&label, None, "blob", limit, |endpoint| {
                endpoint.blob_url(self.repository, digest)
            })
            .await?;
        Ok(fetched.bytes)
    }

    async fn get(
        &self,
        label: &str,
        accept: Option<&'static str>,
        what: &'static str,
        limit: u64,
        url_for: impl Fn(&Endpoint) -> Result<Url, RemoteError>,
    ) -> Result<Fetched, RemoteError> {
        let client = self.client;
        let stats = client.stats();
        let policy = client.policy();
        let endpoints = client.endpoints(self.registry);
        let mut headers = HeaderMap::new();
        if let Some(accept) = accept {
            headers.insert(ACCEPT, HeaderValue::from_static(accept));
        }
        let (headers, url_for) = (&headers, &url_for);
        let result = try_endpoints(self.registry, &endpoints, |index| {
            let endpoint = &endpoints[index];
            let labels = Labels {
                host: &endpoint.host,
                resource: label,
                range: None,
            };
            retry::run(&policy, stats, labels, move || async move {
                let url = url_for(endpoint)?;
                let target = Target {
                    registry: self.registry,
                    repository: self.repository,
                    endpoint,
                };
                let (response, auth) = client
                    .send_authorized(&target, &url, headers, stats)
                    .await?;
                let (response, final_url) = client
                    .follow_redirects(response, &url, auth.header.as_ref(), headers, stats)
                    .await?;
                if !response.status().is_success() {
                    return Err(body::error_from_response(
                        response,
                        &format!("GET {}", final_url.path()),
                    )
                    .await);
                }
                let content_type = response
                    .headers()
                    .get(CONTENT_TYPE)
                    .and_then(|value| value.to_str().ok())
                    .map(str::to_owned);
                let bytes = body::read_limited(response, limit, what, &host_of(&final_url)).await?;
                Ok(Fetched {
                    bytes,
                    content_type,
                })
            })
        })
        .await;
        result.inspect_err(|err| stats.add_error(err.kind()))
    }
}
