//! The shared registry client: one connection pool, the auth sessions, and settings.

use std::collections::{HashMap, HashSet};
use std::future::Future;
use std::sync::{Arc, Mutex};

use reqwest::header::{ACCEPT_ENCODING, HeaderMap, HeaderValue, LOCATION, WWW_AUTHENTICATE};
use reqwest::{Response, StatusCode, Url};

use super::auth::{AuthContext, AuthSession, Authorization};
use super::body::host_of;
use super::challenge::select_challenge;
use super::config::RegistryConfig;
use super::credentials::Credentials;
use super::endpoint::{Endpoint, endpoints_for};
use super::error::RemoteError;
use super::retry::RetryPolicy;
use super::stats::RemoteStats;

/// Redirect hops followed for one request.
const MAX_REDIRECTS: usize = 5;

/// A handle to the shared registry client. Cloning is cheap; clones share connections,
/// tokens and the record of hosts that ignore `Range`.
///
/// Blob sources opened from one client share its tokens, so create one client per process
/// (or per credential set) and keep it.
#[derive(Clone)]
pub struct RegistryClient {
    shared: Arc<Shared>,
}

struct Shared {
    http: reqwest::Client,
    config: RegistryConfig,
    policy: RetryPolicy,
    credentials: Arc<dyn Credentials>,
    /// Keyed by (endpoint host, repository): tokens are scoped to one repository.
    sessions: Mutex<HashMap<(String, String), Arc<AuthSession>>>,
    hosts_ignoring_ranges: Mutex<HashSet<String>>,
    stats: RemoteStats,
}

/// The registry, repository and host one request goes to.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Target<'a> {
    /// Registry name from the image reference, such as `docker.io`.
    pub(crate) registry: &'a str,
    /// Repository path, such as `library/alpine`.
    pub(crate) repository: &'a str,
    /// The mirror or registry host to use.
    pub(crate) endpoint: &'a Endpoint,
}

impl std::fmt::Debug for RegistryClient {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RegistryClient")
            .field("config", &self.shared.config)
            .finish_non_exhaustive()
    }
}

impl RegistryClient {
    /// Builds a client after validating `config`.
    ///
    /// Automatic redirects are off: redirects are followed by this layer, which keeps the
    /// registry's `Authorization` away from other hosts and caches storage URLs per blob.
    pub fn new(
        config: RegistryConfig,
        credentials: Arc<dyn Credentials>,
    ) -> Result<Self, RemoteError> {
        config.validate()?;
        let mut headers = HeaderMap::new();
        // Byte ranges must refer to the stored blob, never to a re-encoded body.
        headers.insert(ACCEPT_ENCODING, HeaderValue::from_static("identity"));
        let http = reqwest::Client::builder()
            .redirect(reqwest::redirect::Policy::none())
            .connect_timeout(config.request_timeout)
            .user_agent(concat!("lazypull/", env!("CARGO_PKG_VERSION")))
            .default_headers(headers)
            .build()
            .map_err(RemoteError::ClientSetup)?;
        let policy = RetryPolicy::from_config(&config);
        Ok(RegistryClient {
            shared: Arc::new(Shared {
                http,
                config,
                policy,
                credentials,
                sessions: Mutex::new(HashMap::new()),
                hosts_ignoring_ranges: Mutex::new(HashSet::new()),
                stats: RemoteStats::default(),
            }),
        })
    }

    /// Returns the settings this client was built with.
    pub fn config(&self) -> &RegistryConfig {
        &self.shared.config
    }

    /// Counters for manifest, index and config requests. Blob sources keep their own.
    pub fn stats(&self) -> &RemoteStats {
        &self.shared.stats
    }

    /// Returns whether `host` has sent the whole blob in reply to a range request.
    pub fn ignores_ranges(&self, host: &str) -> bool {
        lock(&self.shared.hosts_ignoring_ranges).contains(host)
    }

    pub(crate) fn policy(&self) -> RetryPolicy {
        self.shared.policy
    }

    pub(crate) fn endpoints(&self, registry: &str) -> Vec<Endpoint> {
        endpoints_for(registry, &self.shared.config)
    }

    /// Records that `host` ignored `Range`; logs the first time only.
    pub(crate) fn note_ranges_ignored(&self, host: &str) {
        let first = lock(&self.shared.hosts_ignoring_ranges).insert(host.to_owned());
        if first {
            tracing::warn!(
                host,
                "host ignores Range and sends whole blobs; each read downloads the blob up to its end offset"
            );
        }
    }

    fn session(&self, target: &Target<'_>) -> Arc<AuthSession> {
        let key = (target.endpoint.host.clone(), target.repository.to_owned());
        let mut sessions = lock(&self.shared.sessions);
        let session = sessions.entry(key).or_insert_with(|| {
            let credential_host = if target.endpoint.mirror {
                target.endpoint.host.clone()
            } else {
                target.registry.to_owned()
            };
            Arc::new(AuthSession::new(
                target.endpoint.clone(),
                credential_host,
                target.repository,
            ))
        });
        Arc::clone(session)
    }

    fn auth_context<'a>(&'a self, stats: &'a RemoteStats) -> AuthContext<'a> {
        AuthContext {
            http: &self.shared.http,
            credentials: self.shared.credentials.as_ref(),
            stats,
            lookup_timeout: self.shared.policy.request_timeout / 2,
        }
    }

    /// Sends one GET to `url`, with `authorization` if given.
    pub(crate) async fn send(
        &self,
        url: &Url,
        headers: &HeaderMap,
        authorization: Option<&HeaderValue>,
        stats: &RemoteStats,
    ) -> Result<Response, RemoteError> {
        let mut request = self.shared.http.get(url.clone()).headers(headers.clone());
        if let Some(value) = authorization {
            request = request.header(reqwest::header::AUTHORIZATION, value.clone());
        }
        stats.add_request();
        tracing::debug!(host = %host_of(url), path = url.path(), "sending registry request");
        request.send().await.map_err(|err| RemoteError::Transport {
            host: host_of(url),
            source: err.without_url(),
        })
    }

    /// Sends one GET to a registry URL with the session's authorization. After a rejection it
    /// refreshes the credentials and sends the request once more.
    ///
    /// A rejection is a 401, or a 403 while credentials were sent: some registries reject an
    /// expired bearer token, or expired Basic credentials (ECR's `AWS:<token>` pair), with 403.
    /// A 403 for a resource the credentials may truly not read costs one extra request. The response to the second send is returned whatever its
    /// status. Redirects are returned, not followed; the authorization used comes back for
    /// [`Self::follow_redirects`].
    pub(crate) async fn send_authorized(
        &self,
        target: &Target<'_>,
        url: &Url,
        headers: &HeaderMap,
        stats: &RemoteStats,
    ) -> Result<(Response, Authorization), RemoteError> {
        let session = self.session(target);
        let ctx = self.auth_context(stats);
        if session.token_expired() {
            let seen = session.current().generation;
            if session.refresh(seen, None, &ctx).await? {
                stats.add_auth_refresh();
                tracing::debug!(host = %target.endpoint.host, "renewed bearer token at the end of its lifetime");
            }
        }

        let auth = session.current();
        let response = self.send(url, headers, auth.header.as_ref(), stats).await?;
        let status = response.status();
        let rejected = status == StatusCode::UNAUTHORIZED
            || (status == StatusCode::FORBIDDEN && auth.header.is_some());
        if !rejected {
            return Ok((response, auth));
        }

        let values = response.headers().get_all(WWW_AUTHENTICATE);
        let challenge = select_challenge(values.iter().filter_map(|value| value.to_str().ok()));
        drop(response);
        if auth.header.is_some() {
            tracing::info!(
                host = %target.endpoint.host,
                repository = target.repository,
                status = status.as_u16(),
                "registry rejected the current credentials; obtaining new ones"
            );
        }
        if session.refresh(auth.generation, challenge, &ctx).await? {
            stats.add_auth_refresh();
        }
        let auth = session.current();
        let response = self.send(url, headers, auth.header.as_ref(), stats).await?;
        Ok((response, auth))
    }

    /// Follows redirects from `response` (the response to `url`) until a response that is not
    /// a redirect.
    ///
    /// `authorization` is sent again only to the origin (scheme, host and port) of the
    /// original URL; storage hosts never see the registry's credentials. Returns the final
    /// response and the URL that produced it.
    pub(crate) async fn follow_redirects(
        &self,
        mut response: Response,
        url: &Url,
        authorization: Option<&HeaderValue>,
        headers: &HeaderMap,
        stats: &RemoteStats,
    ) -> Result<(Response, Url), RemoteError> {
        let origin = url.origin();
        let mut current = url.clone();
        for _ in 0..MAX_REDIRECTS {
            if !is_redirect(response.status()) {
                return Ok((response, current));
            }
            let next = redirect_target(&response, &current)?;
            let same_origin = next.origin() == origin;
            tracing::debug!(
                from = %host_of(&current),
                to = %host_of(&next),
                status = response.status().as_u16(),
                same_origin,
                "following redirect"
            );
            drop(response);
            let hop_auth = if same_origin { authorization } else { None };
            response = self.send(&next, headers, hop_auth, stats).await?;
            current = next;
        }
        if !is_redirect(response.status()) {
            return Ok((response, current));
        }
        Err(RemoteError::Redirect {
            host: host_of(&current),
            reason: format!("more than {MAX_REDIRECTS} redirects"),
        })
    }
}

/// 301, 302, 303, 307 and 308: the statuses that carry a `Location` to fetch instead.
pub(crate) fn is_redirect(status: StatusCode) -> bool {
    matches!(status.as_u16(), 301 | 302 | 303 | 307 | 308)
}

fn redirect_target(response: &Response, current: &Url) -> Result<Url, RemoteError> {
    let host = host_of(current);
    let location = response
        .headers()
        .get(LOCATION)
        .and_then(|value| value.to_str().ok())
        .ok_or_else(|| RemoteError::Redirect {
            host: host.clone(),
            reason: "no valid Location header".into(),
        })?;
    let next = current.join(location).map_err(|_| RemoteError::Redirect {
        host: host.clone(),
        reason: "Location is not a valid URL".into(),
    })?;
    if !matches!(next.scheme(), "http" | "https") {
        return Err(RemoteError::Redirect {
            host,
            reason: format!("Location uses scheme {}", next.scheme()),
        });
    }
    Ok(next)
}

/// Runs `op` on each endpoint in order (mirrors first) until one succeeds.
///
/// Any failure of a mirror moves on to the next host. The last host's failure is returned,
/// wrapped in [`RemoteError::AllHostsFailed`] when there was more than one host.
pub(crate) async fn try_endpoints<T, F, Fut>(
    registry: &str,
    endpoints: &[Endpoint],
    mut op: F,
) -> Result<T, RemoteError>
where
    F: FnMut(usize) -> Fut,
    Fut: Future<Output = Result<T, RemoteError>>,
{
    let mut index = 0;
    loop {
        let err = match op(index).await {
            Ok(value) => return Ok(value),
            Err(err) => err,
        };
        if index + 1 >= endpoints.len() {
            if endpoints.len() == 1 {
                return Err(err);
            }
            return Err(RemoteError::AllHostsFailed {
                registry: registry.to_owned(),
                hosts: endpoints.len(),
                source: Box::new(err),
            });
        }
        tracing::warn!(
            mirror = %endpoints[index].host,
            next = %endpoints[index + 1].host,
            error = %err,
            "mirror failed, trying the next host"
        );
        index += 1;
    }
}

fn lock<T>(mutex: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    // Every critical section is a single insert or lookup, so a poisoned lock holds valid data.
    mutex
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner())
}
