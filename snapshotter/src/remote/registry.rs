//! Range reads of one blob from an OCI registry.

use std::ops::Range;
use std::sync::{Arc, Mutex};

use bytes::Bytes;
use estargz::digest::Digest;
use futures_util::future::BoxFuture;
use reqwest::header::{
    CONTENT_ENCODING, CONTENT_RANGE, CONTENT_TYPE, HeaderMap, HeaderValue, RANGE,
};
use reqwest::{Response, StatusCode, Url};

use super::BlobSource;
use super::body::{self, content_length, host_of};
use super::client::{RegistryClient, Target, is_redirect, try_endpoints};
use super::endpoint::Endpoint;
use super::error::{RangeIssue, RemoteError};
use super::range::{self, BodySlice};
use super::retry::{self, Labels};
use super::stats::RemoteStats;

/// A blob in a registry repository, read with single-range GET requests.
///
/// Every read sends `Range: bytes=<first>-<last>` (one range, never a list) and accepts:
/// - 206 with a `Content-Range` that covers the request; a wider range is sliced;
/// - 200, as the whole blob from byte 0 because the server ignored `Range`. The requested
///   bytes are sliced out. A 200 whose length is not the blob size is an error;
/// - redirects, followed without the registry's `Authorization`. The final URL is cached
///   for later reads. Signed storage URLs expire, so a cached URL that returns 400, 401, 403
///   or 410 is dropped and the registry is asked for a fresh one.
///
/// Network state (token, storage URL) lives in the source and its [`RegistryClient`]; the
/// source can be shared between tasks behind an `Arc`.
pub struct RegistryBlobSource {
    client: RegistryClient,
    registry: String,
    repository: String,
    digest: Digest,
    id: String,
    size: u64,
    endpoints: Vec<Endpoint>,
    /// Resolved storage URL per endpoint, from the last redirect.
    storage_urls: Mutex<Vec<Option<Url>>>,
    stats: Arc<RemoteStats>,
}

/// Result of an exchange: the response and the host that sent it.
struct Answer {
    response: Response,
    host: String,
    request: String,
}

impl RegistryBlobSource {
    /// Opens `digest` in `repository` of `registry` (the registry name as written in image
    /// references, such as `docker.io` or `localhost:5000`).
    ///
    /// `size` should come from the manifest descriptor. Without it the size is read from
    /// `GET Range: bytes=0-0` (the total in `Content-Range`); HEAD is not used because some
    /// storage backends reject it.
    pub async fn open(
        client: &RegistryClient,
        registry: &str,
        repository: &str,
        digest: &Digest,
        size: Option<u64>,
    ) -> Result<Self, RemoteError> {
        let endpoints = client.endpoints(registry);
        let mut source = RegistryBlobSource {
            client: client.clone(),
            registry: registry.to_owned(),
            repository: repository.to_owned(),
            digest: *digest,
            id: format!("{registry}/{repository}@{digest}"),
            size: size.unwrap_or(0),
            storage_urls: Mutex::new(vec![None; endpoints.len()]),
            endpoints,
            stats: Arc::new(RemoteStats::default()),
        };
        if size.is_none() {
            source.size = source
                .probe_size()
                .await
                .inspect_err(|err| source.stats.add_error(err.kind()))?;
        }
        Ok(source)
    }

    /// Shares `stats` with other sources, for per-image or per-process totals.
    pub fn with_stats(mut self, stats: Arc<RemoteStats>) -> Self {
        self.stats = stats;
        self
    }

    /// Returns the blob digest.
    pub fn digest(&self) -> &Digest {
        &self.digest
    }

    fn labels<'a>(&'a self, index: usize, range: Option<&'a Range<u64>>) -> Labels<'a> {
        Labels {
            host: &self.endpoints[index].host,
            resource: &self.id,
            range,
        }
    }

    fn target(&self, index: usize) -> Target<'_> {
        Target {
            registry: &self.registry,
            repository: &self.repository,
            endpoint: &self.endpoints[index],
        }
    }

    async fn fetch(&self, range: &Range<u64>) -> Result<Bytes, RemoteError> {
        let policy = self.client.policy();
        try_endpoints(&self.registry, &self.endpoints, |index| {
            retry::run(
                &policy,
                &self.stats,
                self.labels(index, Some(range)),
                move || self.read_once(index, range),
            )
        })
        .await
    }

    async fn read_once(&self, index: usize, range: &Range<u64>) -> Result<Bytes, RemoteError> {
        let answer = self.exchange(index, Some(range)).await?;
        self.take_range(answer, range).await
    }

    async fn probe_size(&self) -> Result<u64, RemoteError> {
        let policy = self.client.policy();
        let probe = 0..1;
        try_endpoints(&self.registry, &self.endpoints, |index| {
            let probe = &probe;
            retry::run(
                &policy,
                &self.stats,
                self.labels(index, Some(probe)),
                move || async move {
                    let answer = self.exchange(index, Some(probe)).await?;
                    self.size_from(answer).await
                },
            )
        })
        .await
    }

    async fn check_once(&self, index: usize) -> Result<(), RemoteError> {
        if self.size == 0 {
            // `bytes=0-0` is unsatisfiable for an empty blob; ask for the whole (empty) body.
            let answer = self.exchange(index, None).await?;
            if answer.response.status().is_success() {
                return Ok(());
            }
            return Err(body::error_from_response(answer.response, &answer.request).await);
        }
        let probe = 0..1;
        self.read_once(index, &probe).await.map(|_| ())
    }

    /// Sends the GET for `range` through the cached storage URL, or through the registry
    /// and its redirects, and returns the response to interpret.
    async fn exchange(
        &self,
        index: usize,
        range: Option<&Range<u64>>,
    ) -> Result<Answer, RemoteError> {
        let mut headers = HeaderMap::new();
        if let Some(range) = range {
            let value = HeaderValue::from_str(&range::range_header(range))
                .expect("digits and '-' form a valid header");
            headers.insert(RANGE, value);
        }

        if let Some(storage) = self.cached_storage_url(index) {
            let response = self
                .client
                .send(&storage, &headers, None, &self.stats)
                .await?;
            if !storage_url_rejected(response.status()) {
                return Ok(self.answer(response, &storage));
            }
            tracing::info!(
                blob = %self.id,
                host = %host_of(&storage),
                status = response.status().as_u16(),
                "storage URL rejected (expired signature?); asking the registry for a fresh one"
            );
            self.forget_storage_url(index, &storage);
        }

        let blob_url =
            self.endpoints[index].blob_url(&self.repository, &self.digest.to_string())?;
        let (response, auth) = self
            .client
            .send_authorized(&self.target(index), &blob_url, &headers, &self.stats)
            .await?;
        if !is_redirect(response.status()) {
            return Ok(self.answer(response, &blob_url));
        }
        let (response, final_url) = self
            .client
            .follow_redirects(
                response,
                &blob_url,
                auth.header.as_ref(),
                &headers,
                &self.stats,
            )
            .await?;
        self.stats.add_redirect();
        if response.status().is_success() && final_url.origin() != blob_url.origin() {
            self.remember_storage_url(index, final_url.clone());
        }
        Ok(self.answer(response, &final_url))
    }

    fn answer(&self, response: Response, url: &Url) -> Answer {
        Answer {
            response,
            host: host_of(url),
            request: format!("GET {}", url.path()),
        }
    }

    /// Cuts `range` out of a response to a request for it.
    async fn take_range(&self, answer: Answer, range: &Range<u64>) -> Result<Bytes, RemoteError> {
        let Answer {
            response,
            host,
            request,
        } = answer;
        let issue = |issue: RangeIssue| RemoteError::RangeResponse {
            host: host.clone(),
            start: range.start,
            end: range.end,
            issue,
        };
        if response.status().is_success()
            && let Some(encoding) = header_text(&response, CONTENT_ENCODING)
            && !encoding.trim().eq_ignore_ascii_case("identity")
        {
            return Err(issue(RangeIssue::ContentEncoding(
                encoding.chars().take(50).collect(),
            )));
        }
        let slice: BodySlice = match response.status() {
            StatusCode::PARTIAL_CONTENT => range::plan_partial(
                range,
                Some(self.size),
                header_text(&response, CONTENT_RANGE),
                header_text(&response, CONTENT_TYPE),
                content_length(&response),
            )
            .map_err(issue)?,
            StatusCode::OK => {
                let slice =
                    range::plan_full(range, self.size, content_length(&response)).map_err(issue)?;
                self.client.note_ranges_ignored(&host);
                slice
            }
            StatusCode::RANGE_NOT_SATISFIABLE => {
                let total =
                    header_text(&response, CONTENT_RANGE).and_then(range::parse_unsatisfied_total);
                return Err(RemoteError::RangeNotSatisfiable {
                    host,
                    start: range.start,
                    end: range.end,
                    total,
                });
            }
            _ => return Err(body::error_from_response(response, &request).await),
        };
        body::read_slice(response, slice, &host, &self.stats).await
    }

    /// Reads the blob size from the response to `bytes=0-0`.
    async fn size_from(&self, answer: Answer) -> Result<u64, RemoteError> {
        let Answer {
            response,
            host,
            request,
        } = answer;
        let issue = |issue: RangeIssue| RemoteError::RangeResponse {
            host: host.clone(),
            start: 0,
            end: 1,
            issue,
        };
        match response.status() {
            StatusCode::PARTIAL_CONTENT => {
                let header = header_text(&response, CONTENT_RANGE)
                    .ok_or_else(|| issue(RangeIssue::MissingContentRange))?;
                range::parse_content_range(header)
                    .and_then(|got| got.total)
                    .ok_or_else(|| {
                        issue(RangeIssue::MalformedContentRange(
                            header.chars().take(100).collect(),
                        ))
                    })
            }
            StatusCode::OK => {
                self.client.note_ranges_ignored(&host);
                content_length(&response).ok_or_else(|| RemoteError::RangeResponse {
                    host: host.clone(),
                    start: 0,
                    end: 1,
                    issue: RangeIssue::MissingContentRange,
                })
            }
            StatusCode::RANGE_NOT_SATISFIABLE => {
                match header_text(&response, CONTENT_RANGE).and_then(range::parse_unsatisfied_total)
                {
                    // Only an empty blob has no byte 0.
                    Some(0) => Ok(0),
                    total => Err(RemoteError::RangeNotSatisfiable {
                        host,
                        start: 0,
                        end: 1,
                        total,
                    }),
                }
            }
            _ => Err(body::error_from_response(response, &request).await),
        }
    }

    fn cached_storage_url(&self, index: usize) -> Option<Url> {
        lock(&self.storage_urls)[index].clone()
    }

    fn remember_storage_url(&self, index: usize, url: Url) {
        lock(&self.storage_urls)[index] = Some(url);
    }

    fn forget_storage_url(&self, index: usize, rejected: &Url) {
        let mut urls = lock(&self.storage_urls);
        // Another task may already have stored a fresh URL; keep that one.
        if urls[index].as_ref() == Some(rejected) {
            urls[index] = None;
        }
    }
}

impl BlobSource for RegistryBlobSource {
    fn size(&self) -> u64 {
        self.size
    }

    fn read_range(&self, range: Range<u64>) -> BoxFuture<'_, Result<Bytes, RemoteError>> {
        Box::pin(async move {
            if range.start > range.end || range.end > self.size {
                let err = RemoteError::RangeOutOfBounds {
                    blob: self.id.clone(),
                    start: range.start,
                    end: range.end,
                    size: self.size,
                };
                self.stats.add_error(err.kind());
                return Err(err);
            }
            if range.is_empty() {
                return Ok(Bytes::new());
            }
            self.fetch(&range)
                .await
                .inspect_err(|err| self.stats.add_error(err.kind()))
        })
    }

    fn check(&self) -> BoxFuture<'_, Result<(), RemoteError>> {
        Box::pin(async move {
            let policy = self.client.policy();
            try_endpoints(&self.registry, &self.endpoints, |index| {
                retry::run(&policy, &self.stats, self.labels(index, None), move || {
                    self.check_once(index)
                })
            })
            .await
            .inspect_err(|err| self.stats.add_error(err.kind()))
        })
    }

    fn id(&self) -> &str {
        &self.id
    }

    fn stats(&self) -> &RemoteStats {
        &self.stats
    }
}

/// Statuses with which object stores reject a signed URL whose signature has expired:
/// S3 sends 403, GCS 400 or 401, some CDNs 410.
fn storage_url_rejected(status: StatusCode) -> bool {
    matches!(status.as_u16(), 400 | 401 | 403 | 410)
}

fn header_text(response: &Response, name: reqwest::header::HeaderName) -> Option<&str> {
    response.headers().get(name)?.to_str().ok()
}

fn lock<T>(mutex: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    // Critical sections are single assignments, so a poisoned lock holds valid data.
    mutex
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner())
}
