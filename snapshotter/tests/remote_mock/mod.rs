//! Fault-injecting HTTP/1.1 servers on 127.0.0.1 for the remote layer tests.
//!
//! [`MockServer`] speaks plain HTTP/1.1 over TCP with keep-alive, records every request, and
//! calls a handler closure for each reply. A reply can also be a body cut short, a connection
//! that never answers, or a close without an answer. The helpers below build the usual
//! registry answers: range responses in the modes real servers use, token endpoints and
//! signed storage URLs.

#![allow(dead_code)]

use std::collections::HashSet;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use sha2::{Digest as _, Sha256};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::task::JoinSet;

/// Largest request head the server reads.
const MAX_HEAD: usize = 64 * 1024;

/// One request as received.
#[derive(Debug, Clone)]
pub struct Request {
    pub method: String,
    /// Path and query.
    pub target: String,
    /// Header names in lower case, in arrival order.
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
}

impl Request {
    pub fn header(&self, name: &str) -> Option<&str> {
        let name = name.to_ascii_lowercase();
        self.headers
            .iter()
            .find(|(key, _)| *key == name)
            .map(|(_, value)| value.as_str())
    }

    pub fn path(&self) -> &str {
        self.target.split('?').next().unwrap_or(&self.target)
    }

    pub fn query_param(&self, name: &str) -> Option<String> {
        let query = self.target.split_once('?')?.1;
        query.split('&').find_map(|pair| {
            let (key, value) = pair.split_once('=')?;
            (key == name).then(|| value.to_owned())
        })
    }
}

/// A complete response.
#[derive(Debug, Clone)]
pub struct Response {
    pub status: u16,
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
}

impl Response {
    pub fn new(status: u16) -> Self {
        Response {
            status,
            headers: Vec::new(),
            body: Vec::new(),
        }
    }

    pub fn header(mut self, name: &str, value: impl Into<String>) -> Self {
        self.headers.push((name.to_owned(), value.into()));
        self
    }

    pub fn body(mut self, body: impl Into<Vec<u8>>) -> Self {
        self.body = body.into();
        self
    }

    pub fn json(self, body: &str) -> Self {
        self.header("Content-Type", "application/json")
            .body(body.as_bytes().to_vec())
    }
}

/// What the server does with one request.
#[derive(Debug, Clone)]
pub enum Reply {
    Send(Response),
    /// Sends the head with `Content-Length` of the full body, then only `sent` bytes of it,
    /// then closes the connection.
    Truncated {
        response: Response,
        sent: usize,
    },
    /// Keeps the connection open and never sends a response.
    Hang,
    /// Closes the connection without a response.
    Close,
}

impl From<Response> for Reply {
    fn from(response: Response) -> Self {
        Reply::Send(response)
    }
}

type Handler = Arc<dyn Fn(&Request) -> Reply + Send + Sync>;

/// A running server; stops (with all its connections) when dropped.
pub struct MockServer {
    addr: SocketAddr,
    log: Arc<Mutex<Vec<Request>>>,
    task: tokio::task::JoinHandle<()>,
}

impl MockServer {
    pub async fn start(handler: impl Fn(&Request) -> Reply + Send + Sync + 'static) -> MockServer {
        let listener = TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind 127.0.0.1:0");
        let addr = listener.local_addr().expect("local address");
        let log = Arc::new(Mutex::new(Vec::new()));
        let handler: Handler = Arc::new(handler);
        let task_log = Arc::clone(&log);
        let task = tokio::spawn(async move {
            // Owning the connections here means aborting this task closes them all.
            let mut connections = JoinSet::new();
            loop {
                let Ok((stream, _)) = listener.accept().await else {
                    break;
                };
                connections.spawn(serve_connection(
                    stream,
                    Arc::clone(&handler),
                    Arc::clone(&task_log),
                ));
                while connections.try_join_next().is_some() {}
            }
        });
        MockServer { addr, log, task }
    }

    /// `127.0.0.1:PORT`.
    pub fn host(&self) -> String {
        self.addr.to_string()
    }

    pub fn requests(&self) -> Vec<Request> {
        self.log.lock().unwrap().clone()
    }

    /// Requests whose path contains `fragment`.
    pub fn requests_to(&self, fragment: &str) -> Vec<Request> {
        self.requests()
            .into_iter()
            .filter(|request| request.path().contains(fragment))
            .collect()
    }
}

impl Drop for MockServer {
    fn drop(&mut self) {
        self.task.abort();
    }
}

async fn serve_connection(mut stream: TcpStream, handler: Handler, log: Arc<Mutex<Vec<Request>>>) {
    let mut buffer = Vec::new();
    loop {
        let Some(request) = read_request(&mut stream, &mut buffer).await else {
            return;
        };
        log.lock().unwrap().push(request.clone());
        let close_after = request
            .header("connection")
            .is_some_and(|value| value.eq_ignore_ascii_case("close"));
        let reply = handler(&request);
        let head_only = request.method == "HEAD";
        match reply {
            Reply::Send(response) => {
                let sent = response.body.len();
                if write_response(&mut stream, &response, sent, head_only)
                    .await
                    .is_err()
                {
                    return;
                }
            }
            Reply::Truncated { response, sent } => {
                let _ = write_response(&mut stream, &response, sent, head_only).await;
                return;
            }
            Reply::Hang => std::future::pending::<()>().await,
            Reply::Close => return,
        }
        if close_after {
            return;
        }
    }
}

async fn read_request(stream: &mut TcpStream, buffer: &mut Vec<u8>) -> Option<Request> {
    let head_end = loop {
        if let Some(pos) = buffer.windows(4).position(|window| window == b"\r\n\r\n") {
            break pos;
        }
        if buffer.len() > MAX_HEAD {
            return None;
        }
        let mut chunk = [0u8; 4096];
        let n = stream.read(&mut chunk).await.ok()?;
        if n == 0 {
            return None;
        }
        buffer.extend_from_slice(&chunk[..n]);
    };

    let head = String::from_utf8(buffer[..head_end].to_vec()).ok()?;
    buffer.drain(..head_end + 4);
    let mut lines = head.split("\r\n");
    let mut request_line = lines.next()?.split(' ');
    let method = request_line.next()?.to_owned();
    let target = request_line.next()?.to_owned();
    let headers: Vec<(String, String)> = lines
        .filter_map(|line| {
            let (name, value) = line.split_once(':')?;
            Some((name.trim().to_ascii_lowercase(), value.trim().to_owned()))
        })
        .collect();

    let body_len: usize = headers
        .iter()
        .find(|(name, _)| name == "content-length")
        .and_then(|(_, value)| value.parse().ok())
        .unwrap_or(0);
    while buffer.len() < body_len {
        let mut chunk = [0u8; 4096];
        let n = stream.read(&mut chunk).await.ok()?;
        if n == 0 {
            return None;
        }
        buffer.extend_from_slice(&chunk[..n]);
    }
    let body = buffer.drain(..body_len).collect();
    Some(Request {
        method,
        target,
        headers,
        body,
    })
}

async fn write_response(
    stream: &mut TcpStream,
    response: &Response,
    sent: usize,
    head_only: bool,
) -> std::io::Result<()> {
    let mut head = format!(
        "HTTP/1.1 {} {}\r\n",
        response.status,
        reason(response.status)
    );
    let has_length = response
        .headers
        .iter()
        .any(|(name, _)| name.eq_ignore_ascii_case("content-length"));
    for (name, value) in &response.headers {
        head.push_str(&format!("{name}: {value}\r\n"));
    }
    if !has_length {
        head.push_str(&format!("Content-Length: {}\r\n", response.body.len()));
    }
    head.push_str("\r\n");
    stream.write_all(head.as_bytes()).await?;
    if !head_only {
        stream
            .write_all(&response.body[..sent.min(response.body.len())])
            .await?;
    }
    stream.flush().await
}

fn reason(status: u16) -> &'static str {
    match status {
        200 => "OK",
        206 => "Partial Content",
        307 => "Temporary Redirect",
        400 => "Bad Request",
        401 => "Unauthorized",
        403 => "Forbidden",
        404 => "Not Found",
        416 => "Range Not Satisfiable",
        429 => "Too Many Requests",
        500 => "Internal Server Error",
        501 => "Not Implemented",
        503 => "Service Unavailable",
        _ => "Status",
    }
}

// ---------------------------------------------------------------------------------------
// Blob content and range responses
// ---------------------------------------------------------------------------------------

/// `sha256:<hex>` of `data`.
pub fn digest_of(data: &[u8]) -> String {
    format!("sha256:{}", hex::encode(Sha256::digest(data)))
}

/// Deterministic bytes that differ at every offset within a 251-byte period.
pub fn blob_bytes(len: usize) -> Vec<u8> {
    (0..len)
        .map(|i| (i % 251) as u8 ^ ((i / 251) % 256) as u8)
        .collect()
}

/// How a server answers a `Range` request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RangeMode {
    /// 206 with exactly the requested single range; multi-range gets multipart.
    Honour,
    /// 200 with a `Content-Range` header and only the requested bytes (a broken proxy).
    OkWithOnlyRequestedBytes,
    /// 200 with the whole blob.
    Ignore,
    /// 400 for any `Range` with a comma, else like `Honour`.
    RejectComma,
    /// `multipart/byteranges` for every range request, even a single range.
    AlwaysMultipart,
    /// 206 widened to whole blocks of this many bytes.
    Widen(u64),
}

/// Parses `bytes=a-b[,c-d...]` into inclusive pairs.
pub fn parse_range_header(value: &str) -> Option<Vec<(u64, u64)>> {
    let list = value.strip_prefix("bytes=")?;
    list.split(',')
        .map(|part| {
            let (first, last) = part.trim().split_once('-')?;
            Some((first.parse().ok()?, last.parse().ok()?))
        })
        .collect()
}

/// Answers a GET of `data` according to `mode`.
pub fn range_reply(data: &[u8], request: &Request, mode: RangeMode) -> Reply {
    let total = data.len() as u64;
    let Some(header) = request.header("range") else {
        return Response::new(200).body(data.to_vec()).into();
    };
    let Some(ranges) = parse_range_header(header) else {
        return Response::new(400).into();
    };
    if ranges
        .iter()
        .any(|&(first, last)| first > last || first >= total)
    {
        return Response::new(416)
            .header("Content-Range", format!("bytes */{total}"))
            .into();
    }
    let clamp = |last: u64| last.min(total - 1);
    let slice = |first: u64, last: u64| data[first as usize..=clamp(last) as usize].to_vec();
    match mode {
        RangeMode::Ignore => Response::new(200).body(data.to_vec()).into(),
        RangeMode::OkWithOnlyRequestedBytes => {
            let (first, last) = ranges[0];
            Response::new(200)
                .header(
                    "Content-Range",
                    format!("bytes {first}-{}/{total}", clamp(last)),
                )
                .body(slice(first, last))
                .into()
        }
        RangeMode::RejectComma if ranges.len() > 1 => Response::new(400).into(),
        RangeMode::AlwaysMultipart => multipart(data, &ranges),
        _ if ranges.len() > 1 => multipart(data, &ranges),
        RangeMode::Widen(block) => {
            let (first, last) = ranges[0];
            let first = first / block * block;
            let last = clamp((last / block + 1) * block - 1);
            Response::new(206)
                .header("Content-Range", format!("bytes {first}-{last}/{total}"))
                .body(slice(first, last))
                .into()
        }
        _ => {
            let (first, last) = ranges[0];
            Response::new(206)
                .header(
                    "Content-Range",
                    format!("bytes {first}-{}/{total}", clamp(last)),
                )
                .body(slice(first, last))
                .into()
        }
    }
}

fn multipart(data: &[u8], ranges: &[(u64, u64)]) -> Reply {
    let total = data.len() as u64;
    let boundary = "LAZYPULLBOUNDARY";
    let mut body = Vec::new();
    for &(first, last) in ranges {
        let last = last.min(total - 1);
        body.extend_from_slice(format!("--{boundary}\r\nContent-Type: application/octet-stream\r\nContent-Range: bytes {first}-{last}/{total}\r\n\r\n").as_bytes());
        body.extend_from_slice(&data[first as usize..=last as usize]);
        body.extend_from_slice(b"\r\n");
    }
    body.extend_from_slice(format!("--{boundary}--\r\n").as_bytes());
    Response::new(206)
        .header(
            "Content-Type",
            format!("multipart/byteranges; boundary={boundary}"),
        )
        .body(body)
        .into()
}

// ---------------------------------------------------------------------------------------
// Bearer tokens
// ---------------------------------------------------------------------------------------

/// A token endpoint plus the registry-side token check.
///
/// Tokens are `tok-<n>`. [`Tokens::expire_all`] makes every issued token invalid, which is
/// how tests stand in for a token lifetime without waiting.
#[derive(Default)]
pub struct Tokens {
    valid: Mutex<HashSet<String>>,
    issued: AtomicU64,
    /// `Basic <base64>` the token endpoint demands; `None` issues tokens to anyone.
    required_basic: Mutex<Option<String>>,
    /// `expires_in` announced with each token.
    pub expires_in: AtomicU64,
}

impl Tokens {
    pub fn new() -> Arc<Self> {
        let tokens = Tokens::default();
        tokens.expires_in.store(300, Ordering::SeqCst);
        Arc::new(tokens)
    }

    pub fn require_basic(&self, user: &str, password: &str) {
        use base64::Engine as _;
        let encoded =
            base64::engine::general_purpose::STANDARD.encode(format!("{user}:{password}"));
        *self.required_basic.lock().unwrap() = Some(format!("Basic {encoded}"));
    }

    pub fn expire_all(&self) {
        self.valid.lock().unwrap().clear();
    }

    pub fn issued(&self) -> u64 {
        self.issued.load(Ordering::SeqCst)
    }

    /// Answers `GET /token?service=..&scope=..`.
    pub fn token_reply(&self, request: &Request) -> Reply {
        let required = self.required_basic.lock().unwrap().clone();
        if let Some(required) = required
            && request.header("authorization") != Some(required.as_str())
        {
            return Response::new(401)
                .json(r#"{"errors":[{"code":"UNAUTHORIZED","message":"authentication required"}]}"#)
                .into();
        }
        if request
            .query_param("scope")
            .is_none_or(|scope| !scope.starts_with("repository"))
        {
            return Response::new(400).into();
        }
        let n = self.issued.fetch_add(1, Ordering::SeqCst) + 1;
        let token = format!("tok-{n}");
        self.valid.lock().unwrap().insert(token.clone());
        let expires_in = self.expires_in.load(Ordering::SeqCst);
        Response::new(200)
            .json(&format!(
                r#"{{"token":"{token}","expires_in":{expires_in}}}"#
            ))
            .into()
    }

    /// Returns whether `request` carries a valid token.
    pub fn authorized(&self, request: &Request) -> bool {
        let Some(token) = request
            .header("authorization")
            .and_then(|value| value.strip_prefix("Bearer "))
        else {
            return false;
        };
        self.valid.lock().unwrap().contains(token)
    }

    /// Builds the 401 challenge of a registry at `host`.
    pub fn challenge(&self, host: &str, repository: &str) -> Reply {
        Response::new(401)
            .header(
                "WWW-Authenticate",
                format!(r#"Bearer realm="http://{host}/token",service="mock",scope="repository:{repository}:pull""#),
            )
            .json(r#"{"errors":[{"code":"UNAUTHORIZED","message":"authentication required"}]}"#)
            .into()
    }
}

/// Builds the 403 that some registries (ECR among them) send for an expired token.
pub fn denied() -> Reply {
    Response::new(403)
        .json(r#"{"errors":[{"code":"DENIED","message":"Your authorization token has expired."}]}"#)
        .into()
}

// ---------------------------------------------------------------------------------------
// Signed storage URLs
// ---------------------------------------------------------------------------------------

/// Milliseconds since the Unix epoch.
pub fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_millis() as u64
}

/// `http://<storage>/storage/<digest>?exp=<ms>&sig=<n>` valid for `lifetime`.
pub fn signed_url(storage_host: &str, digest: &str, lifetime: Duration, serial: u64) -> String {
    let exp = now_ms() + lifetime.as_millis() as u64;
    format!("http://{storage_host}/storage/{digest}?exp={exp}&sig=s{serial}")
}

/// Serves `data` like an object store: HEAD gets 403, and so does a GET after `exp`, with an
/// S3-style error body.
pub fn storage_reply(data: &[u8], request: &Request) -> Reply {
    if request.method == "HEAD" {
        return Response::new(403).into();
    }
    let exp: u64 = request
        .query_param("exp")
        .and_then(|value| value.parse().ok())
        .unwrap_or(0);
    if now_ms() > exp {
        return Response::new(403)
            .header("Content-Type", "application/xml")
            .body(
                b"<Error><Code>AccessDenied</Code><Message>Request has expired</Message></Error>"
                    .to_vec(),
            )
            .into();
    }
    range_reply(data, request, RangeMode::Honour)
}
