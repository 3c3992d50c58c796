//! Request handling: token checks, storage redirects, forwarding, and fault injection.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use bytes::Bytes;
use http_body_util::{BodyExt, Empty};
use hyper::header::{self, HeaderMap, HeaderValue};
use hyper::{Request, Response, StatusCode};
use hyper_util::rt::TokioIo;

use super::ProxyOptions;
use super::body::{self, ProxyBody, Tail};
use super::fault::{Fault, RequestFacts};
use super::state::FaultHandle;

/// Error that makes hyper close the client's connection without a response.
pub(crate) type ServiceError = Box<dyn std::error::Error + Send + Sync>;

/// Path prefix of the storage endpoint's signed URLs.
const STORAGE_PREFIX: &str = "/storage";

/// Which listener a request arrived on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Role {
    /// The registry side: `/v2/...` and the token endpoint.
    Registry,
    /// The storage side that blob redirects point to.
    Storage,
}

/// Everything a connection needs to answer requests.
#[derive(Debug)]
pub(crate) struct Context {
    pub(crate) handle: FaultHandle,
    pub(crate) upstream: SocketAddr,
    pub(crate) options: ProxyOptions,
    pub(crate) registry_port: u16,
    pub(crate) storage_port: Option<u16>,
}

/// Answers one request that arrived on the listener of `role`.
pub(crate) async fn handle(
    ctx: Arc<Context>,
    role: Role,
    request: Request<hyper::body::Incoming>,
) -> Result<Response<ProxyBody>, ServiceError> {
    ctx.handle.count_request();
    let path = request.uri().path().to_owned();
    let facts = RequestFacts {
        path: &path,
        ranged: request.headers().contains_key(header::RANGE),
    };
    let fault = ctx.handle.choose(&facts);
    match role {
        Role::Registry => registry(&ctx, request, fault).await,
        Role::Storage => storage(&ctx, request, fault).await,
    }
}

async fn registry(
    ctx: &Context,
    request: Request<hyper::body::Incoming>,
    fault: Option<Fault>,
) -> Result<Response<ProxyBody>, ServiceError> {
    let path = request.uri().path().to_owned();
    if ctx.options.token_auth {
        if path == "/token" {
            return Ok(token_response(ctx));
        }
        if let Some(Fault::ExpireToken { status }) = fault {
            ctx.handle.record(&Fault::ExpireToken { status });
            ctx.handle.expire_tokens();
            return Ok(denied(ctx, &path, status));
        }
        if !holds_current_token(ctx, request.headers()) {
            return Ok(denied(ctx, &path, 401));
        }
    }
    // Only faults that make sense for this hop are injected; the others pass unrecorded.
    let fault =
        fault.filter(|fault| !matches!(fault, Fault::ExpireToken { .. } | Fault::ExpireSignedUrl));
    if let Some(storage_port) = ctx.storage_port
        && is_blob_get(&request)
    {
        let fault = fault.filter(is_before_response);
        if let Some(response) = inject_before_response(ctx, fault).await? {
            return Ok(response);
        }
        return Ok(redirect(storage_port, &request, ctx.options.signed_url_ttl));
    }
    let target = request
        .uri()
        .path_and_query()
        .map_or_else(|| path.clone(), |target| target.as_str().to_owned());
    forward(ctx, &request, &target, fault).await
}

async fn storage(
    ctx: &Context,
    request: Request<hyper::body::Incoming>,
    fault: Option<Fault>,
) -> Result<Response<ProxyBody>, ServiceError> {
    let Some(path) = request.uri().path().strip_prefix(STORAGE_PREFIX) else {
        return Ok(plain(StatusCode::NOT_FOUND, "not a storage path\n"));
    };
    let path = path.to_owned();
    if fault == Some(Fault::ExpireSignedUrl) {
        ctx.handle.record(&Fault::ExpireSignedUrl);
        return Ok(expired_url());
    }
    let expires = request
        .uri()
        .query()
        .and_then(|query| query.strip_prefix("expires="))
        .and_then(|value| value.parse::<u128>().ok());
    match expires {
        Some(expires) if expires >= unix_millis() => {}
        _ => return Ok(expired_url()),
    }
    let fault = fault.filter(|fault| !matches!(fault, Fault::ExpireToken { .. }));
    forward(ctx, &request, &path, fault).await
}

/// Forwards the request to the registry as `target` (path and query) and injects `fault`
/// into the exchange.
async fn forward(
    ctx: &Context,
    request: &Request<hyper::body::Incoming>,
    target: &str,
    fault: Option<Fault>,
) -> Result<Response<ProxyBody>, ServiceError> {
    if let Some(response) = inject_before_response(ctx, fault).await? {
        return Ok(response);
    }
    let ranged = request.headers().contains_key(header::RANGE);
    let mut headers = request.headers().clone();
    if fault == Some(Fault::RangeAsFull) && ranged {
        ctx.handle.record(&Fault::RangeAsFull);
        headers.remove(header::RANGE);
    }
    let (mut parts, bytes) =
        send_upstream(ctx.upstream, request.method().clone(), target, headers).await?;
    parts.headers.remove(header::TRANSFER_ENCODING);
    parts.headers.remove(header::CONNECTION);

    let has_body =
        request.method() != hyper::Method::HEAD && parts.status.is_success() && !bytes.is_empty();
    let body = match fault {
        Some(Fault::WrongContentRange) if parts.status == StatusCode::PARTIAL_CONTENT => {
            if let Some(shifted) = shifted_content_range(&parts.headers) {
                ctx.handle.record(&Fault::WrongContentRange);
                parts.headers.insert(header::CONTENT_RANGE, shifted);
            }
            body::full(bytes)
        }
        Some(fault @ Fault::FlipBytes) if has_body => {
            ctx.handle.record(&fault);
            body::full(body::flip_middle(&bytes))
        }
        Some(fault @ Fault::Truncate) if has_body => {
            ctx.handle.record(&fault);
            let half = bytes.slice(..bytes.len() / 2);
            body::split(half, Tail::Abort)
        }
        Some(fault @ Fault::StallBody(stall)) if has_body => {
            ctx.handle.record(&fault);
            let half = bytes.len() / 2;
            body::split(bytes.slice(..half), Tail::Stall(stall, bytes.slice(half..)))
        }
        _ => body::full(bytes),
    };
    // The registry's Content-Length stays, so a truncated body is visibly short.
    Ok(Response::from_parts(parts, body))
}

fn is_before_response(fault: &Fault) -> bool {
    matches!(
        fault,
        Fault::Reset | Fault::StallHeaders(_) | Fault::Status(_) | Fault::TooManyRequests { .. }
    )
}

/// Injects the faults that replace or delay the whole response. Returns the response to
/// send instead of the registry's, or `None` to go on forwarding.
async fn inject_before_response(
    ctx: &Context,
    fault: Option<Fault>,
) -> Result<Option<Response<ProxyBody>>, ServiceError> {
    let Some(fault) = fault.filter(is_before_response) else {
        return Ok(None);
    };
    ctx.handle.record(&fault);
    match fault {
        Fault::Reset => Err("connection reset by the fault proxy".into()),
        Fault::StallHeaders(stall) => {
            body::wait(stall).await;
            Ok(None)
        }
        Fault::Status(status) => {
            let status = StatusCode::from_u16(status).unwrap_or(StatusCode::SERVICE_UNAVAILABLE);
            Ok(Some(registry_error(status, "UNAVAILABLE")))
        }
        Fault::TooManyRequests { retry_after_secs } => {
            let mut response = registry_error(StatusCode::TOO_MANY_REQUESTS, "TOOMANYREQUESTS");
            response
                .headers_mut()
                .insert(header::RETRY_AFTER, HeaderValue::from(retry_after_secs));
            Ok(Some(response))
        }
        _ => Ok(None),
    }
}

/// Sends one request without a body to the registry and reads the whole response.
async fn send_upstream(
    upstream: SocketAddr,
    method: hyper::Method,
    path_and_query: &str,
    mut headers: HeaderMap,
) -> Result<(hyper::http::response::Parts, Bytes), ServiceError> {
    let stream = tokio::net::TcpStream::connect(upstream).await?;
    let (mut sender, connection) =
        hyper::client::conn::http1::handshake(TokioIo::new(stream)).await?;
    tokio::spawn(connection);
    headers.remove(header::AUTHORIZATION);
    headers.remove(header::CONNECTION);
    headers.insert(header::HOST, HeaderValue::from_str(&upstream.to_string())?);
    let mut request = Request::builder()
        .method(method)
        .uri(path_and_query)
        .body(Empty::<Bytes>::new())?;
    *request.headers_mut() = headers;
    let response = sender.send_request(request).await?;
    let (parts, incoming) = response.into_parts();
    let bytes = incoming.collect().await?.to_bytes();
    Ok((parts, bytes))
}

/// Returns `Content-Range` moved one byte off the range it states, or `None` when the header
/// is missing or malformed.
fn shifted_content_range(headers: &HeaderMap) -> Option<HeaderValue> {
    let value = headers.get(header::CONTENT_RANGE)?.to_str().ok()?;
    let (span, total) = value.strip_prefix("bytes ")?.split_once('/')?;
    let (first, last) = span.split_once('-')?;
    let (first, last): (u64, u64) = (first.parse().ok()?, last.parse().ok()?);
    // Moving down keeps the stated range inside the blob; the first range moves up.
    let (first, last) = if first > 0 {
        (first - 1, last - 1)
    } else {
        (first + 1, last + 1)
    };
    HeaderValue::from_str(&format!("bytes {first}-{last}/{total}")).ok()
}

fn is_blob_get(request: &Request<hyper::body::Incoming>) -> bool {
    matches!(*request.method(), hyper::Method::GET | hyper::Method::HEAD)
        && request.uri().path().starts_with("/v2/")
        && request.uri().path().contains("/blobs/sha256:")
}

fn redirect(
    storage_port: u16,
    request: &Request<hyper::body::Incoming>,
    ttl: Duration,
) -> Response<ProxyBody> {
    let expires = unix_millis() + ttl.as_millis();
    let location = format!(
        "http://127.0.0.1:{storage_port}{STORAGE_PREFIX}{}?expires={expires}",
        request.uri().path()
    );
    let mut response = Response::new(body::full(Bytes::new()));
    *response.status_mut() = StatusCode::TEMPORARY_REDIRECT;
    if let Ok(value) = HeaderValue::from_str(&location) {
        response.headers_mut().insert(header::LOCATION, value);
    }
    response
}

/// The answer of object storage to a signed URL past its expiry.
fn expired_url() -> Response<ProxyBody> {
    let mut response = Response::new(body::full(
        "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n\
         <Error><Code>AccessDenied</Code><Message>Request has expired</Message></Error>\n",
    ));
    *response.status_mut() = StatusCode::FORBIDDEN;
    response.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/xml"),
    );
    response
}

fn token_value(ctx: &Context) -> String {
    format!("fault-proxy-token-{}", ctx.handle.token_generation())
}

fn holds_current_token(ctx: &Context, headers: &HeaderMap) -> bool {
    let expected = format!("Bearer {}", token_value(ctx));
    headers
        .get(header::AUTHORIZATION)
        .and_then(|value| value.to_str().ok())
        .is_some_and(|value| value == expected)
}

fn token_response(ctx: &Context) -> Response<ProxyBody> {
    let token = token_value(ctx);
    let body = serde_json::json!({ "token": token, "access_token": token, "expires_in": 3600 });
    let mut response = Response::new(body::full(body.to_string()));
    response.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    response
}

/// Rejects a request for lack of a current token: 401 with a bearer challenge, or 403.
fn denied(ctx: &Context, path: &str, status: u16) -> Response<ProxyBody> {
    if status == 403 {
        return registry_error(StatusCode::FORBIDDEN, "DENIED");
    }
    let mut challenge = format!(
        "Bearer realm=\"http://127.0.0.1:{}/token\",service=\"fault-proxy\"",
        ctx.registry_port
    );
    if let Some(repository) = repository_of(path) {
        challenge.push_str(&format!(",scope=\"repository:{repository}:pull\""));
    }
    let mut response = registry_error(StatusCode::UNAUTHORIZED, "UNAUTHORIZED");
    if let Ok(value) = HeaderValue::from_str(&challenge) {
        response
            .headers_mut()
            .insert(header::WWW_AUTHENTICATE, value);
    }
    response
}

/// Returns `name` of `/v2/<name>/(blobs|manifests)/...`.
fn repository_of(path: &str) -> Option<&str> {
    let rest = path.strip_prefix("/v2/")?;
    ["/blobs/", "/manifests/"]
        .iter()
        .filter_map(|marker| rest.find(marker).map(|at| &rest[..at]))
        .next()
}

/// Returns an error response in the registry API's JSON shape.
fn registry_error(status: StatusCode, code: &str) -> Response<ProxyBody> {
    let body = serde_json::json!({
        "errors": [{ "code": code, "message": "injected by the fault proxy" }]
    });
    let mut response = Response::new(body::full(body.to_string()));
    *response.status_mut() = status;
    response.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    response
}

fn plain(status: StatusCode, text: &'static str) -> Response<ProxyBody> {
    let mut response = Response::new(body::full(text));
    *response.status_mut() = status;
    response
}

fn unix_millis() -> u128 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|elapsed| elapsed.as_millis())
        .unwrap_or(0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn content_range_is_shifted_by_one_byte() {
        let mut headers = HeaderMap::new();
        headers.insert(
            header::CONTENT_RANGE,
            HeaderValue::from_static("bytes 10-19/100"),
        );
        assert_eq!(shifted_content_range(&headers).unwrap(), "bytes 9-18/100");
        headers.insert(
            header::CONTENT_RANGE,
            HeaderValue::from_static("bytes 0-9/100"),
        );
        assert_eq!(shifted_content_range(&headers).unwrap(), "bytes 1-10/100");
    }

    #[test]
    fn repository_comes_from_blob_and_manifest_paths() {
        assert_eq!(repository_of("/v2/a/b/blobs/sha256:00"), Some("a/b"));
        assert_eq!(repository_of("/v2/python/manifests/esgz"), Some("python"));
        assert_eq!(repository_of("/v2/"), None);
    }
}
