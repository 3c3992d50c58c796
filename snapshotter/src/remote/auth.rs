//! Authorization state for one (registry host, repository) pair.
//!
//! A session stores the `Authorization` header that requests currently use: nothing
//! (anonymous), basic credentials, or a bearer token from the registry's token realm. Requests
//! read it without waiting. When a request is rejected, or the token's lifetime is over, the
//! session gets new credentials from the provider and, for bearer auth, a new token. Only one
//! refresh runs at a time; requests that were rejected with the header an earlier refresh
//! already replaced do not refresh again, so concurrent requests share one new token.

use std::sync::Mutex;
use std::time::Duration;

use base64::Engine as _;
use reqwest::header::{AUTHORIZATION, CONTENT_TYPE, HeaderValue, WWW_AUTHENTICATE};
use reqwest::{StatusCode, Url};
use serde::Deserialize;
use tokio::time::Instant;

use super::body;
use super::challenge::{Challenge, select_challenge};
use super::credentials::{Credential, CredentialError, Credentials};
use super::endpoint::Endpoint;
use super::error::RemoteError;
use super::stats::RemoteStats;

/// Token lifetime assumed when the token server does not say (distribution token spec).
const DEFAULT_TOKEN_LIFETIME: Duration = Duration::from_secs(60);
/// Largest token response accepted.
const MAX_TOKEN_RESPONSE: u64 = 1 << 20;
/// `client_id` sent with OAuth2 refresh-token grants.
const OAUTH_CLIENT_ID: &str = "lazypull";

/// The header a request should carry, with the generation it belongs to.
#[derive(Debug, Clone)]
pub(crate) struct Authorization {
    /// Incremented by every refresh; lets a rejected request tell whether someone else has
    /// already replaced the header it used.
    pub(crate) generation: u64,
    /// `Authorization` value, marked sensitive; `None` for anonymous access.
    pub(crate) header: Option<HeaderValue>,
}

/// Client resources a refresh uses.
pub(crate) struct AuthContext<'a> {
    pub(crate) http: &'a reqwest::Client,
    pub(crate) credentials: &'a dyn Credentials,
    pub(crate) stats: &'a RemoteStats,
    /// Bound on one credential lookup, so a stuck helper gives an error, not a hang.
    pub(crate) lookup_timeout: Duration,
}

/// Authorization for one endpoint and repository. See the module documentation.
pub(crate) struct AuthSession {
    endpoint: Endpoint,
    /// Name the credentials are stored under: the mirror host, or the registry name.
    credential_host: String,
    /// `repository:<name>:pull`.
    scope: String,
    state: Mutex<State>,
    refresh_lock: tokio::sync::Mutex<()>,
}

#[derive(Default)]
struct State {
    generation: u64,
    header: Option<HeaderValue>,
    bearer: bool,
    challenge: Option<Challenge>,
    /// When the bearer token should be replaced before use.
    renew_at: Option<Instant>,
}

impl AuthSession {
    pub(crate) fn new(endpoint: Endpoint, credential_host: String, repository: &str) -> Self {
        AuthSession {
            endpoint,
            credential_host,
            scope: format!("repository:{repository}:pull"),
            state: Mutex::new(State::default()),
            refresh_lock: tokio::sync::Mutex::new(()),
        }
    }

    /// Returns the header to send now.
    pub(crate) fn current(&self) -> Authorization {
        let state = self.lock_state();
        Authorization {
            generation: state.generation,
            header: state.header.clone(),
        }
    }

    /// Returns whether the bearer token is at the end of its announced lifetime.
    pub(crate) fn token_expired(&self) -> bool {
        self.lock_state()
            .renew_at
            .is_some_and(|at| Instant::now() >= at)
    }

    /// Replaces the header after a rejection or expiry of the header of `seen_generation`.
    ///
    /// `challenge` comes from the rejection's `WWW-Authenticate`; without it the last known
    /// challenge is used, and without that the registry's `/v2/` endpoint is asked for one.
    /// Returns `true` if this call fetched new credentials, `false` if another call already
    /// had.
    pub(crate) async fn refresh(
        &self,
        seen_generation: u64,
        challenge: Option<Challenge>,
        ctx: &AuthContext<'_>,
    ) -> Result<bool, RemoteError> {
        let _one_refresh_at_a_time = self.refresh_lock.lock().await;
        let cached = {
            let state = self.lock_state();
            if state.generation != seen_generation {
                return Ok(false);
            }
            state.challenge.clone()
        };
        let challenge = match challenge.or(cached) {
            Some(challenge) => Some(challenge),
            None => self.ping(ctx).await?,
        };
        let (header, bearer, renew_at) = match &challenge {
            None => (None, false, None),
            Some(Challenge::Basic) => (Some(self.basic_header(ctx).await?), false, None),
            Some(Challenge::Bearer { realm, service }) => {
                let token = self.fetch_token(realm, service.as_deref(), ctx).await?;
                (
                    Some(token.header),
                    true,
                    Some(Instant::now() + token.renew_after),
                )
            }
        };
        let mut state = self.lock_state();
        state.generation += 1;
        state.header = header;
        state.bearer = bearer;
        state.challenge = challenge;
        state.renew_at = renew_at;
        Ok(true)
    }

    fn lock_state(&self) -> std::sync::MutexGuard<'_, State> {
        // The state is replaced whole under the lock, so a panic elsewhere cannot leave it
        // half-written; recover it.
        self.state
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// Asks `GET /v2/` which challenge the registry uses; `None` means no auth is needed.
    async fn ping(&self, ctx: &AuthContext<'_>) -> Result<Option<Challenge>, RemoteError> {
        let url = self.endpoint.url("/v2/")?;
        ctx.stats.add_request();
        let response = ctx
            .http
            .get(url.clone())
            .send()
            .await
            .map_err(|err| transport(&self.endpoint.host, err))?;
        match response.status() {
            status if status.is_success() => Ok(None),
            StatusCode::UNAUTHORIZED => {
                let values = response.headers().get_all(WWW_AUTHENTICATE);
                match select_challenge(values.iter().filter_map(|v| v.to_str().ok())) {
                    Some(challenge) => Ok(Some(challenge)),
                    None => {
                        Err(self
                            .protocol("401 from /v2/ without a usable WWW-Authenticate challenge"))
                    }
                }
            }
            _ => Err(body::error_from_response(response, "GET /v2/").await),
        }
    }

    async fn lookup(&self, ctx: &AuthContext<'_>) -> Result<Option<Credential>, RemoteError> {
        let lookup = ctx.credentials.lookup(&self.credential_host);
        let result = match tokio::time::timeout(ctx.lookup_timeout, lookup).await {
            Ok(result) => result,
            Err(_elapsed) => Err(CredentialError::TimedOut),
        };
        result.map_err(|source| RemoteError::Credentials {
            host: self.credential_host.clone(),
            source,
        })
    }

    async fn basic_header(&self, ctx: &AuthContext<'_>) -> Result<HeaderValue, RemoteError> {
        match self.lookup(ctx).await? {
            Some(Credential::UsernamePassword { username, password }) => {
                sensitive_header(&format!("Basic {}", basic_token(&username, &password)))
                    .ok_or_else(|| {
                        self.protocol(
                            "user name or password contains characters not allowed in a header",
                        )
                    })
            }
            Some(Credential::IdentityToken(_)) => {
                Err(self.credential_error(CredentialError::IdentityTokenForBasic))
            }
            None => Err(self.credential_error(CredentialError::Missing)),
        }
    }

    /// Gets a token from `realm` for this session's scope.
    async fn fetch_token(
        &self,
        realm: &str,
        service: Option<&str>,
        ctx: &AuthContext<'_>,
    ) -> Result<Token, RemoteError> {
        let realm_url =
            Url::parse(realm).map_err(|_| self.protocol("token realm is not a valid URL"))?;
        match realm_url.scheme() {
            "https" => {}
            // Credentials may travel in clear text only if the registry itself is plain HTTP.
            "http" if self.endpoint.scheme == "http" => {}
            _ => return Err(self.protocol("token realm must use https")),
        }
        let realm_host = body::host_of(&realm_url);

        let credential = self.lookup(ctx).await?;
        let request = match &credential {
            Some(Credential::IdentityToken(refresh_token)) => {
                // OAuth2 refresh-token grant, as docker does for identity tokens.
                let form = form_encode(&[
                    ("grant_type", "refresh_token"),
                    ("refresh_token", refresh_token),
                    ("service", service.unwrap_or("")),
                    ("scope", &self.scope),
                    ("client_id", OAUTH_CLIENT_ID),
                ]);
                ctx.http
                    .post(realm_url.clone())
                    .header(CONTENT_TYPE, "application/x-www-form-urlencoded")
                    .body(form)
            }
            other => {
                let mut url = realm_url.clone();
                {
                    let mut query = url.query_pairs_mut();
                    if let Some(service) = service {
                        query.append_pair("service", service);
                    }
                    query.append_pair("scope", &self.scope);
                }
                let mut request = ctx.http.get(url);
                if let Some(Credential::UsernamePassword { username, password }) = other {
                    let header =
                        sensitive_header(&format!("Basic {}", basic_token(username, password)))
                            .ok_or_else(|| {
                                self.protocol(
                            "user name or password contains characters not allowed in a header",
                        )
                            })?;
                    request = request.header(AUTHORIZATION, header);
                }
                request
            }
        };

        ctx.stats.add_request();
        let response = request
            .send()
            .await
            .map_err(|err| transport(&realm_host, err))?;
        let description = format!("token request to {}", realm_url.path());
        if !response.status().is_success() {
            return Err(body::error_from_response(response, &description).await);
        }

        let raw =
            body::read_limited(response, MAX_TOKEN_RESPONSE, "token response", &realm_host).await?;
        let answer: TokenAnswer = serde_json::from_slice(&raw)
            .map_err(|_| self.protocol("token response is not the expected JSON"))?;
        let token = answer
            .token
            .or(answer.access_token)
            .filter(|token| !token.is_empty());
        let token = token.ok_or_else(|| self.protocol("token response has no token"))?;
        let header = sensitive_header(&format!("Bearer {token}"))
            .ok_or_else(|| self.protocol("token contains characters not allowed in a header"))?;
        let lifetime = answer
            .expires_in
            .filter(|secs| *secs > 0)
            .map(Duration::from_secs)
            .unwrap_or(DEFAULT_TOKEN_LIFETIME);
        // Renew a little early so that a token does not expire between check and use.
        Ok(Token {
            header,
            renew_after: lifetime.mul_f64(0.9),
        })
    }

    fn protocol(&self, reason: &str) -> RemoteError {
        RemoteError::AuthProtocol {
            host: self.endpoint.host.clone(),
            reason: reason.to_owned(),
        }
    }

    fn credential_error(&self, source: CredentialError) -> RemoteError {
        RemoteError::Credentials {
            host: self.credential_host.clone(),
            source,
        }
    }
}

struct Token {
    header: HeaderValue,
    renew_after: Duration,
}

/// Token endpoint response. Docker's token servers send `token`, OAuth2 servers `access_token`.
#[derive(Deserialize)]
struct TokenAnswer {
    token: Option<String>,
    access_token: Option<String>,
    expires_in: Option<u64>,
}

fn basic_token(username: &str, password: &str) -> String {
    base64::engine::general_purpose::STANDARD.encode(format!("{username}:{password}"))
}

fn sensitive_header(value: &str) -> Option<HeaderValue> {
    let mut header = HeaderValue::from_str(value).ok()?;
    header.set_sensitive(true);
    Some(header)
}

fn transport(host: &str, err: reqwest::Error) -> RemoteError {
    RemoteError::Transport {
        host: host.to_owned(),
        source: err.without_url(),
    }
}

/// `application/x-www-form-urlencoded` encoding of `pairs`.
fn form_encode(pairs: &[(&str, &str)]) -> String {
    // Url's query serializer implements exactly this encoding; the base URL is a placeholder.
    let mut scratch = Url::parse("http://form.invalid/").expect("static URL parses");
    scratch.query_pairs_mut().extend_pairs(pairs);
    scratch.query().unwrap_or_default().to_owned()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn form_encoding_escapes_reserved_characters() {
        let body = form_encode(&[("scope", "repository:a/b:pull"), ("x", "a b&c=d")]);
        assert_eq!(body, "scope=repository%3Aa%2Fb%3Apull&x=a+b%26c%3Dd");
    }

    #[test]
    fn basic_token_is_base64_of_user_colon_password() {
        assert_eq!(basic_token("alice", "one"), "YWxpY2U6b25l");
    }

    #[test]
    fn headers_are_marked_sensitive() {
        assert!(sensitive_header("Bearer abc").unwrap().is_sensitive());
        assert!(sensitive_header("Bearer a\nb").is_none());
    }
}
