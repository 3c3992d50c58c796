//! Registry blob reads against fault-injecting HTTP servers on 127.0.0.1.

mod remote_mock;

use std::collections::HashMap;
use std::future::Future;
use std::ops::Range;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use estargz::digest::Digest;
use futures_util::future::BoxFuture;
use lazypull_snapshotter::remote::{
    Anonymous, BlobSource, Credential, CredentialError, Credentials, ErrorKind, HostConfig, Mirror,
    RangeIssue, RegistryBlobSource, RegistryClient, RegistryConfig, RemoteError, StaticCredentials,
};
use remote_mock::*;

const REPO: &str = "lib/app";
const BLOB_LEN: usize = 100_000;

/// Short timeouts and backoffs so failure paths finish quickly.
fn test_config() -> RegistryConfig {
    RegistryConfig {
        request_timeout: Duration::from_secs(5),
        max_retries: 3,
        min_backoff: Duration::from_millis(1),
        max_backoff: Duration::from_millis(20),
        hosts: HashMap::new(),
    }
}

fn client(credentials: Arc<dyn Credentials>) -> RegistryClient {
    RegistryClient::new(test_config(), credentials).unwrap()
}

fn client_with(config: RegistryConfig, credentials: Arc<dyn Credentials>) -> RegistryClient {
    RegistryClient::new(config, credentials).unwrap()
}

fn parse(digest: &str) -> Digest {
    digest.parse().unwrap()
}

async fn open(
    client: &RegistryClient,
    host: &str,
    data: &[u8],
    size: Option<u64>,
) -> RegistryBlobSource {
    RegistryBlobSource::open(client, host, REPO, &parse(&digest_of(data)), size)
        .await
        .unwrap()
}

/// Fails the test instead of hanging when `future` takes longer than a minute.
async fn bounded<T>(future: impl Future<Output = T>) -> T {
    tokio::time::timeout(Duration::from_secs(60), future)
        .await
        .expect("operation hung")
}

/// Three reads from different parts of the blob.
fn sample_ranges() -> [Range<u64>; 3] {
    [
        0..512,
        40_000..45_000,
        (BLOB_LEN as u64 - 700)..BLOB_LEN as u64,
    ]
}

/// Starts a registry without auth that serves one blob in `mode`.
async fn plain_registry(data: Arc<Vec<u8>>, mode: RangeMode) -> MockServer {
    MockServer::start(move |request| {
        if request.path().contains("/blobs/") {
            range_reply(&data, request, mode)
        } else {
            Response::new(404).into()
        }
    })
    .await
}

fn assert_single_ranges(server: &MockServer) {
    for request in server.requests() {
        if let Some(range) = request.header("range") {
            assert!(!range.contains(','), "multi-range request sent: {range}");
            assert!(range.starts_with("bytes="), "{range}");
        }
        assert_eq!(
            request.header("accept-encoding"),
            Some("identity"),
            "{request:?}"
        );
    }
}

#[tokio::test]
async fn range_modes_give_exact_bytes_or_errors() {
    let data = Arc::new(blob_bytes(BLOB_LEN));
    let modes = [
        RangeMode::Honour,
        RangeMode::Ignore,
        RangeMode::RejectComma,
        RangeMode::Widen(4096),
        RangeMode::OkWithOnlyRequestedBytes,
        RangeMode::AlwaysMultipart,
    ];
    for mode in modes {
        let server = plain_registry(Arc::clone(&data), mode).await;
        let client = client(Arc::new(Anonymous));
        let source = open(&client, &server.host(), &data, Some(BLOB_LEN as u64)).await;
        for range in sample_ranges() {
            let result = bounded(source.read_range(range.clone())).await;
            let expected = &data[range.start as usize..range.end as usize];
            match mode {
                RangeMode::OkWithOnlyRequestedBytes => {
                    let err =
                        result.expect_err("a 200 that is not the whole blob must not pass as data");
                    assert!(
                        matches!(
                            err.root(),
                            RemoteError::RangeResponse {
                                issue: RangeIssue::PartialBodyWith200 { .. },
                                ..
                            }
                        ),
                        "{mode:?}: {err:?}"
                    );
                }
                RangeMode::AlwaysMultipart => {
                    let err = result.expect_err("multipart answer to a single range");
                    assert!(
                        matches!(
                            err.root(),
                            RemoteError::RangeResponse {
                                issue: RangeIssue::UnexpectedMultipart,
                                ..
                            }
                        ),
                        "{mode:?}: {err:?}"
                    );
                }
                _ => assert_eq!(&result.unwrap()[..], expected, "{mode:?} {range:?}"),
            }
        }
        assert_single_ranges(&server);
        assert_eq!(
            client.ignores_ranges(&server.host()),
            mode == RangeMode::Ignore,
            "{mode:?}"
        );
    }
}

#[tokio::test]
async fn full_blob_reply_read_stops_at_range_end() {
    let data = Arc::new(blob_bytes(BLOB_LEN));
    let server = plain_registry(Arc::clone(&data), RangeMode::Ignore).await;
    let client = client(Arc::new(Anonymous));
    let source = open(&client, &server.host(), &data, Some(BLOB_LEN as u64)).await;
    let got = source.read_range(1000..1100).await.unwrap();
    assert_eq!(&got[..], &data[1000..1100]);
    // The client stops reading once it has byte 1100; socket buffering may deliver more.
    let fetched = source.stats().snapshot().bytes_fetched;
    assert!(fetched >= 1100, "{fetched}");
}

#[tokio::test]
async fn size_is_probed_with_ranged_get_not_head() {
    let data = Arc::new(blob_bytes(BLOB_LEN));
    let server = plain_registry(Arc::clone(&data), RangeMode::Honour).await;
    let client = client(Arc::new(Anonymous));
    let source = open(&client, &server.host(), &data, None).await;
    assert_eq!(source.size(), BLOB_LEN as u64);
    let requests = server.requests();
    assert!(
        requests.iter().all(|request| request.method == "GET"),
        "{requests:?}"
    );
    assert_eq!(requests[0].header("range"), Some("bytes=0-0"));
}

#[tokio::test]
async fn size_probe_accepts_full_blob_answer() {
    let data = Arc::new(blob_bytes(5000));
    let server = plain_registry(Arc::clone(&data), RangeMode::Ignore).await;
    let client = client(Arc::new(Anonymous));
    let source = open(&client, &server.host(), &data, None).await;
    assert_eq!(source.size(), 5000);
}

#[tokio::test]
async fn range_outside_blob_is_rejected_without_a_request() {
    let data = Arc::new(blob_bytes(1000));
    let server = plain_registry(Arc::clone(&data), RangeMode::Honour).await;
    let client = client(Arc::new(Anonymous));
    let source = open(&client, &server.host(), &data, Some(1000)).await;
    let err = source.read_range(900..1001).await.unwrap_err();
    assert!(
        matches!(
            err,
            RemoteError::RangeOutOfBounds {
                start: 900,
                end: 1001,
                size: 1000,
                ..
            }
        ),
        "{err:?}"
    );
    assert!(source.read_range(10..10).await.unwrap().is_empty());
    assert!(server.requests().is_empty());
    assert_eq!(source.stats().snapshot().errors_of(ErrorKind::Input), 1);
}

#[tokio::test]
async fn descriptor_size_disagreeing_with_server_is_an_error() {
    let data = Arc::new(blob_bytes(1000));
    let server = plain_registry(Arc::clone(&data), RangeMode::Honour).await;
    let client = client(Arc::new(Anonymous));
    let source = open(&client, &server.host(), &data, Some(2000)).await;
    let err = source.read_range(0..10).await.unwrap_err();
    assert!(
        matches!(
            err.root(),
            RemoteError::RangeResponse {
                issue: RangeIssue::TotalMismatch {
                    expected: 2000,
                    reported: 1000
                },
                ..
            }
        ),
        "{err:?}"
    );
}

#[tokio::test]
async fn encoded_body_is_rejected() {
    let data = Arc::new(blob_bytes(1000));
    let served = Arc::clone(&data);
    let server =
        MockServer::start(
            move |request| match range_reply(&served, request, RangeMode::Honour) {
                Reply::Send(response) => Reply::Send(response.header("Content-Encoding", "gzip")),
                other => other,
            },
        )
        .await;
    let client = client(Arc::new(Anonymous));
    let source = open(&client, &server.host(), &data, Some(1000)).await;
    let err = source.read_range(0..10).await.unwrap_err();
    assert!(
        matches!(err.root(), RemoteError::RangeResponse { issue: RangeIssue::ContentEncoding(encoding), .. } if encoding == "gzip"),
        "{err:?}"
    );
}

#[tokio::test]
async fn unexpected_416_is_reported_with_total() {
    let server = MockServer::start(|_| {
        Response::new(416)
            .header("Content-Range", "bytes */10")
            .into()
    })
    .await;
    let client = client(Arc::new(Anonymous));
    let source =
        RegistryBlobSource::open(&client, &server.host(), REPO, &Digest::of(b"x"), Some(100))
            .await
            .unwrap();
    let err = source.read_range(50..60).await.unwrap_err();
    assert!(
        matches!(
            err,
            RemoteError::RangeNotSatisfiable {
                start: 50,
                end: 60,
                total: Some(10),
                ..
            }
        ),
        "{err:?}"
    );
}

/// A registry with bearer auth whose blob GET redirects to a signed storage URL.
struct RedirectingRegistry {
    registry: MockServer,
    storage: MockServer,
    tokens: Arc<Tokens>,
}

async fn redirecting_registry(data: Arc<Vec<u8>>, url_lifetime: Duration) -> RedirectingRegistry {
    let storage_data = Arc::clone(&data);
    let storage = MockServer::start(move |request| storage_reply(&storage_data, request)).await;
    let storage_host = storage.host();
    let tokens = Tokens::new();
    let registry_tokens = Arc::clone(&tokens);
    let serial = AtomicU64::new(0);
    let digest = digest_of(&data);
    let registry = MockServer::start(move |request| {
        let host = request.header("host").unwrap_or_default().to_owned();
        if request.path() == "/token" {
            return registry_tokens.token_reply(request);
        }
        if !registry_tokens.authorized(request) {
            return registry_tokens.challenge(&host, REPO);
        }
        if request.path() == format!("/v2/{REPO}/blobs/{digest}") {
            let n = serial.fetch_add(1, Ordering::SeqCst);
            return Response::new(307)
                .header(
                    "Location",
                    signed_url(&storage_host, &digest, url_lifetime, n),
                )
                .into();
        }
        Response::new(404).into()
    })
    .await;
    RedirectingRegistry {
        registry,
        storage,
        tokens,
    }
}

#[tokio::test]
async fn storage_redirect_survives_expiry_without_leak() {
    let data = Arc::new(blob_bytes(BLOB_LEN));
    // Long enough for the first reads to finish on a loaded machine before the URL expires.
    let lifetime = Duration::from_millis(1500);
    let setup = redirecting_registry(Arc::clone(&data), lifetime).await;
    let client = client(Arc::new(Anonymous));

    // Size unknown: the probe must work although the storage host refuses HEAD.
    let source = bounded(RegistryBlobSource::open(
        &client,
        &setup.registry.host(),
        REPO,
        &parse(&digest_of(&data)),
        None,
    ))
    .await
    .unwrap();
    assert_eq!(source.size(), BLOB_LEN as u64);

    let first = source.read_range(0..1000).await.unwrap();
    assert_eq!(&first[..], &data[..1000]);
    let blob_gets_before_expiry = setup.registry.requests_to("/blobs/").len();

    // Within the URL lifetime the cached storage URL is used directly.
    let second = source.read_range(1000..2000).await.unwrap();
    assert_eq!(&second[..], &data[1000..2000]);
    assert_eq!(
        setup.registry.requests_to("/blobs/").len(),
        blob_gets_before_expiry
    );

    tokio::time::sleep(lifetime + Duration::from_millis(200)).await;
    let after = source.read_range(50_000..60_000).await.unwrap();
    assert_eq!(&after[..], &data[50_000..60_000]);
    assert!(
        setup.registry.requests_to("/blobs/").len() > blob_gets_before_expiry,
        "the registry was not asked again"
    );

    let storage_requests = setup.storage.requests();
    assert!(
        storage_requests
            .iter()
            .all(|request| request.method == "GET"),
        "HEAD sent to storage"
    );
    assert!(
        storage_requests
            .iter()
            .all(|request| request.header("authorization").is_none()),
        "credentials leaked to storage"
    );
    assert!(
        storage_requests
            .iter()
            .any(|request| request.header("range") == Some("bytes=50000-59999"))
    );
    assert!(
        setup
            .registry
            .requests_to("/blobs/")
            .iter()
            .any(|request| request.header("authorization").is_some()),
        "the registry never got the token"
    );
    assert_eq!(source.stats().snapshot().errors, [0; ErrorKind::ALL.len()]);
}

#[tokio::test]
async fn storage_url_expiry_with_expired_token_refreshes_both() {
    let data = Arc::new(blob_bytes(BLOB_LEN));
    let lifetime = Duration::from_millis(300);
    let setup = redirecting_registry(Arc::clone(&data), lifetime).await;
    let client = client(Arc::new(Anonymous));
    let source = open(
        &client,
        &setup.registry.host(),
        &data,
        Some(BLOB_LEN as u64),
    )
    .await;
    source.read_range(0..10).await.unwrap();
    assert_eq!(setup.tokens.issued(), 1);

    setup.tokens.expire_all();
    tokio::time::sleep(lifetime + Duration::from_millis(200)).await;
    let got = source.read_range(70_000..70_100).await.unwrap();
    assert_eq!(&got[..], &data[70_000..70_100]);
    assert_eq!(setup.tokens.issued(), 2);
}

/// Starts a bearer-token registry that serves one blob. An expired token gets `expired_status`.
async fn token_registry(
    data: Arc<Vec<u8>>,
    tokens: Arc<Tokens>,
    expired_status: u16,
) -> MockServer {
    let digest = digest_of(&data);
    MockServer::start(move |request| {
        let host = request.header("host").unwrap_or_default().to_owned();
        if request.path() == "/token" {
            return tokens.token_reply(request);
        }
        let has_token = request
            .header("authorization")
            .is_some_and(|value| value.starts_with("Bearer "));
        if !tokens.authorized(request) {
            return if has_token && expired_status == 403 {
                denied()
            } else {
                tokens.challenge(&host, REPO)
            };
        }
        if request.path() == format!("/v2/{REPO}/blobs/{digest}") {
            return range_reply(&data, request, RangeMode::Honour);
        }
        Response::new(404).into()
    })
    .await
}

#[tokio::test]
async fn expired_token_answered_with_403_is_refreshed() {
    for expired_status in [403, 401] {
        let data = Arc::new(blob_bytes(BLOB_LEN));
        let tokens = Tokens::new();
        let server = token_registry(Arc::clone(&data), Arc::clone(&tokens), expired_status).await;
        let client = client(Arc::new(Anonymous));
        let source = open(&client, &server.host(), &data, Some(BLOB_LEN as u64)).await;

        assert_eq!(&source.read_range(0..100).await.unwrap()[..], &data[..100]);
        assert_eq!(tokens.issued(), 1);
        tokens.expire_all();
        let got = source.read_range(60_000..61_000).await.unwrap();
        assert_eq!(&got[..], &data[60_000..61_000], "status {expired_status}");
        assert_eq!(tokens.issued(), 2, "status {expired_status}");
        let stats = source.stats().snapshot();
        assert_eq!(stats.auth_refreshes, 2, "status {expired_status}");
        assert_eq!(stats.retries, 0, "an auth refresh is not a retry");
    }
}

#[tokio::test]
async fn token_is_renewed_when_its_lifetime_ends() {
    let data = Arc::new(blob_bytes(1000));
    let tokens = Tokens::new();
    tokens.expires_in.store(1, Ordering::SeqCst);
    let server = token_registry(Arc::clone(&data), Arc::clone(&tokens), 403).await;
    let client = client(Arc::new(Anonymous));
    let source = open(&client, &server.host(), &data, Some(1000)).await;
    source.read_range(0..10).await.unwrap();
    tokio::time::sleep(Duration::from_millis(1100)).await;
    source.read_range(10..20).await.unwrap();
    assert_eq!(tokens.issued(), 2);
    // Renewed before use, so no request was sent with the old token after its lifetime.
    let blob_requests = server.requests_to("/blobs/");
    assert_eq!(blob_requests.len(), 3, "{blob_requests:?}");
}

#[tokio::test]
async fn concurrent_reads_share_one_token() {
    let data = Arc::new(blob_bytes(BLOB_LEN));
    let tokens = Tokens::new();
    let server = token_registry(Arc::clone(&data), Arc::clone(&tokens), 403).await;
    let client = client(Arc::new(Anonymous));
    let source = Arc::new(open(&client, &server.host(), &data, Some(BLOB_LEN as u64)).await);
    let mut reads = Vec::new();
    for i in 0..8u64 {
        let source = Arc::clone(&source);
        reads.push(tokio::spawn(async move {
            source.read_range(i * 1000..i * 1000 + 500).await
        }));
    }
    for (i, read) in reads.into_iter().enumerate() {
        let start = i * 1000;
        assert_eq!(&read.await.unwrap().unwrap()[..], &data[start..start + 500]);
    }
    assert_eq!(tokens.issued(), 1);
}

/// Credentials a test can change or withdraw while the source runs.
#[derive(Default)]
struct SwitchableCredentials {
    current: Mutex<Option<Credential>>,
    lookups: AtomicUsize,
}

impl SwitchableCredentials {
    fn set(&self, credential: Option<Credential>) {
        *self.current.lock().unwrap() = credential;
    }
}

impl Credentials for SwitchableCredentials {
    fn lookup<'a>(
        &'a self,
        _host: &'a str,
    ) -> BoxFuture<'a, Result<Option<Credential>, CredentialError>> {
        self.lookups.fetch_add(1, Ordering::SeqCst);
        let current = self.current.lock().unwrap().clone();
        Box::pin(async move { Ok(current) })
    }
}

fn basic(user: &str, password: &str) -> Credential {
    Credential::UsernamePassword {
        username: user.into(),
        password: password.into(),
    }
}

#[tokio::test]
async fn rotated_credentials_are_picked_up_on_refresh() {
    let data = Arc::new(blob_bytes(10_000));
    let tokens = Tokens::new();
    tokens.require_basic("ci", "first");
    let server = token_registry(Arc::clone(&data), Arc::clone(&tokens), 403).await;
    let credentials = Arc::new(SwitchableCredentials::default());
    credentials.set(Some(basic("ci", "first")));
    let client = client(Arc::clone(&credentials) as Arc<dyn Credentials>);
    let source = open(&client, &server.host(), &data, Some(10_000)).await;
    source.read_range(0..10).await.unwrap();

    tokens.require_basic("ci", "second");
    credentials.set(Some(basic("ci", "second")));
    tokens.expire_all();
    let got = source.read_range(5000..5010).await.unwrap();
    assert_eq!(&got[..], &data[5000..5010]);
    assert_eq!(credentials.lookups.load(Ordering::SeqCst), 2);
}

#[tokio::test]
async fn withdrawn_credentials_fail_promptly_with_auth_error() {
    let data = Arc::new(blob_bytes(10_000));
    let tokens = Tokens::new();
    tokens.require_basic("ci", "secret");
    let server = token_registry(Arc::clone(&data), Arc::clone(&tokens), 403).await;
    let credentials = Arc::new(SwitchableCredentials::default());
    credentials.set(Some(basic("ci", "secret")));
    let client = client(Arc::clone(&credentials) as Arc<dyn Credentials>);
    let source = open(&client, &server.host(), &data, Some(10_000)).await;
    source.read_range(0..10).await.unwrap();

    credentials.set(None);
    tokens.expire_all();
    let err = bounded(source.read_range(100..200)).await.unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Auth, "{err:?}");
    assert!(
        matches!(err.root(), RemoteError::Unauthorized { status: 401, .. }),
        "{err:?}"
    );
    assert_eq!(source.stats().snapshot().errors_of(ErrorKind::Auth), 1);
    assert_eq!(
        source.stats().snapshot().retries,
        0,
        "auth failures are not retried"
    );
    // check() reports the same failure before mounts are handed out.
    let err = bounded(source.check()).await.unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Auth);
    // A later read queries the credential source again instead of caching the failure.
    let lookups = credentials.lookups.load(Ordering::SeqCst);
    credentials.set(Some(basic("ci", "secret")));
    assert_eq!(
        &source.read_range(100..200).await.unwrap()[..],
        &data[100..200]
    );
    assert!(credentials.lookups.load(Ordering::SeqCst) > lookups);
}

/// A credential helper that never returns.
struct StuckCredentials;

impl Credentials for StuckCredentials {
    fn lookup<'a>(
        &'a self,
        _host: &'a str,
    ) -> BoxFuture<'a, Result<Option<Credential>, CredentialError>> {
        Box::pin(std::future::pending())
    }
}

#[tokio::test]
async fn stuck_credential_helper_times_out() {
    let data = Arc::new(blob_bytes(1000));
    let tokens = Tokens::new();
    let server = token_registry(Arc::clone(&data), Arc::clone(&tokens), 403).await;
    let mut config = test_config();
    config.request_timeout = Duration::from_millis(600);
    let client = client_with(config, Arc::new(StuckCredentials));
    let source = open(&client, &server.host(), &data, Some(1000)).await;
    let err = bounded(source.read_range(0..10)).await.unwrap_err();
    assert!(
        matches!(
            err.root(),
            RemoteError::Credentials {
                source: CredentialError::TimedOut,
                ..
            }
        ),
        "{err:?}"
    );
    assert_eq!(err.kind(), ErrorKind::Auth);
}

#[tokio::test]
async fn basic_auth_registry_gets_credentials() {
    use base64::Engine as _;
    let data = Arc::new(blob_bytes(1000));
    let expected = format!(
        "Basic {}",
        base64::engine::general_purpose::STANDARD.encode("u:p")
    );
    let served = Arc::clone(&data);
    let server = MockServer::start(move |request| {
        if request.header("authorization") != Some(expected.as_str()) {
            return Response::new(401)
                .header("WWW-Authenticate", r#"Basic realm="registry""#)
                .into();
        }
        range_reply(&served, request, RangeMode::Honour)
    })
    .await;
    let credentials = StaticCredentials::new().with(server.host(), basic("u", "p"));
    let client = client(Arc::new(credentials));
    let source = open(&client, &server.host(), &data, Some(1000)).await;
    assert_eq!(&source.read_range(10..20).await.unwrap()[..], &data[10..20]);
    assert_eq!(&source.read_range(20..30).await.unwrap()[..], &data[20..30]);
    // One challenge, then the header is sent up front.
    assert_eq!(server.requests().len(), 3);
}

/// ECR's pattern: Basic credentials whose password is a token; once it expires the registry
/// responds with 403, and the rotated token must be read from the credential store.
#[tokio::test]
async fn expired_basic_credentials_answered_with_403_are_reread() {
    use base64::Engine as _;
    let data = Arc::new(blob_bytes(1000));
    let valid = Arc::new(Mutex::new(String::new()));
    let header_for = |password: &str| {
        format!(
            "Basic {}",
            base64::engine::general_purpose::STANDARD.encode(format!("AWS:{password}"))
        )
    };
    *valid.lock().unwrap() = header_for("token-1");
    let (served, accepted) = (Arc::clone(&data), Arc::clone(&valid));
    let server = MockServer::start(move |request| match request.header("authorization") {
        None => Response::new(401)
            .header("WWW-Authenticate", r#"Basic realm="registry""#)
            .into(),
        Some(sent) if sent == accepted.lock().unwrap().as_str() => {
            range_reply(&served, request, RangeMode::Honour)
        }
        Some(_) => Response::new(403).into(),
    })
    .await;
    let credentials = Arc::new(SwitchableCredentials::default());
    credentials.set(Some(basic("AWS", "token-1")));
    let client = client(Arc::clone(&credentials) as Arc<dyn Credentials>);
    let source = open(&client, &server.host(), &data, Some(1000)).await;
    assert_eq!(&source.read_range(0..10).await.unwrap()[..], &data[..10]);

    *valid.lock().unwrap() = header_for("token-2");
    credentials.set(Some(basic("AWS", "token-2")));
    assert_eq!(&source.read_range(10..20).await.unwrap()[..], &data[10..20]);
    let last = server.requests().last().cloned().unwrap();
    assert_eq!(
        last.header("authorization"),
        Some(header_for("token-2").as_str())
    );
}

#[tokio::test]
async fn identity_token_uses_oauth_refresh_grant() {
    let data = Arc::new(blob_bytes(1000));
    let served = Arc::clone(&data);
    let server = MockServer::start(move |request| {
        let host = request.header("host").unwrap_or_default().to_owned();
        if request.path() == "/token" {
            let form = String::from_utf8_lossy(&request.body).into_owned();
            let grant_ok = request.method == "POST"
                && form.contains("grant_type=refresh_token")
                && form.contains("refresh_token=rt-1")
                && form.contains("scope=repository%3Alib%2Fapp%3Apull")
                && form.contains("service=mock");
            return if grant_ok {
                Response::new(200)
                    .json(r#"{"access_token":"at-1","expires_in":300}"#)
                    .into()
            } else {
                Response::new(401).into()
            };
        }
        if request.header("authorization") != Some("Bearer at-1") {
            return Tokens::new().challenge(&host, REPO);
        }
        range_reply(&served, request, RangeMode::Honour)
    })
    .await;
    let credentials =
        StaticCredentials::new().with(server.host(), Credential::IdentityToken("rt-1".into()));
    let client = client(Arc::new(credentials));
    let source = open(&client, &server.host(), &data, Some(1000)).await;
    assert_eq!(&source.read_range(0..10).await.unwrap()[..], &data[..10]);
    let token_requests = server.requests_to("/token");
    assert_eq!(token_requests.len(), 1);
    assert_eq!(
        token_requests[0].header("content-type"),
        Some("application/x-www-form-urlencoded")
    );
}

#[tokio::test]
async fn basic_challenge_without_credentials_is_an_auth_error() {
    let server = MockServer::start(|_| {
        Response::new(401)
            .header("WWW-Authenticate", r#"Basic realm="r""#)
            .into()
    })
    .await;
    let client = client(Arc::new(Anonymous));
    let source =
        RegistryBlobSource::open(&client, &server.host(), REPO, &Digest::of(b"x"), Some(100))
            .await
            .unwrap();
    let err = source.read_range(0..10).await.unwrap_err();
    assert!(
        matches!(
            err.root(),
            RemoteError::Credentials {
                source: CredentialError::Missing,
                ..
            }
        ),
        "{err:?}"
    );
}

/// Starts a blob server that first sends the given replies, then serves normally.
async fn flaky_registry(data: Arc<Vec<u8>>, faults: Vec<Reply>) -> MockServer {
    let faults = Mutex::new(std::collections::VecDeque::from(faults));
    MockServer::start(move |request| match faults.lock().unwrap().pop_front() {
        Some(fault) => fault,
        None => range_reply(&data, request, RangeMode::Honour),
    })
    .await
}

#[tokio::test]
async fn service_unavailable_then_success_is_retried() {
    let data = Arc::new(blob_bytes(1000));
    let server = flaky_registry(
        Arc::clone(&data),
        vec![Response::new(503).into(), Response::new(500).into()],
    )
    .await;
    let client = client(Arc::new(Anonymous));
    let source = open(&client, &server.host(), &data, Some(1000)).await;
    assert_eq!(
        &source.read_range(100..300).await.unwrap()[..],
        &data[100..300]
    );
    assert_eq!(source.stats().snapshot().retries, 2);
    assert_eq!(server.requests().len(), 3);
}

#[tokio::test]
async fn too_many_requests_waits_for_retry_after() {
    let data = Arc::new(blob_bytes(1000));
    let mut config = test_config();
    config.max_backoff = Duration::from_secs(5);
    let server = flaky_registry(
        Arc::clone(&data),
        vec![Response::new(429).header("Retry-After", "1").into()],
    )
    .await;
    let client = client_with(config, Arc::new(Anonymous));
    let source = open(&client, &server.host(), &data, Some(1000)).await;
    let start = std::time::Instant::now();
    assert_eq!(&source.read_range(0..10).await.unwrap()[..], &data[..10]);
    // A lower bound only: the client must not come back before the server's delay.
    assert!(
        start.elapsed() >= Duration::from_secs(1),
        "retried after {:?}",
        start.elapsed()
    );
    assert_eq!(server.requests().len(), 2);
}

#[tokio::test]
async fn not_implemented_is_not_retried() {
    let data = Arc::new(blob_bytes(1000));
    let server = flaky_registry(Arc::clone(&data), vec![Response::new(501).into()]).await;
    let client = client(Arc::new(Anonymous));
    let source = open(&client, &server.host(), &data, Some(1000)).await;
    let err = source.read_range(0..10).await.unwrap_err();
    assert_eq!(err.status(), Some(501));
    assert_eq!(server.requests().len(), 1);
}

#[tokio::test]
async fn persistent_server_errors_end_in_a_typed_error() {
    let server = MockServer::start(|_| {
        Response::new(502)
            .json(r#"{"errors":[{"code":"UNAVAILABLE","message":"backend down"}]}"#)
            .into()
    })
    .await;
    let client = client(Arc::new(Anonymous));
    let source =
        RegistryBlobSource::open(&client, &server.host(), REPO, &Digest::of(b"x"), Some(100))
            .await
            .unwrap();
    let err = source.read_range(0..10).await.unwrap_err();
    assert!(
        matches!(err, RemoteError::RetriesExhausted { attempts: 4, .. }),
        "{err:?}"
    );
    assert_eq!(err.status(), Some(502));
    assert!(
        format!("{}", err.root()).contains("UNAVAILABLE: backend down"),
        "{}",
        err.root()
    );
    assert_eq!(server.requests().len(), 4);
    assert_eq!(source.stats().snapshot().errors_of(ErrorKind::Status), 1);
}

#[tokio::test]
async fn silent_server_times_out_within_bounded_time() {
    let server = MockServer::start(|_| Reply::Hang).await;
    let mut config = test_config();
    config.request_timeout = Duration::from_millis(300);
    config.max_retries = 2;
    let client = client_with(config, Arc::new(Anonymous));
    let source =
        RegistryBlobSource::open(&client, &server.host(), REPO, &Digest::of(b"x"), Some(100))
            .await
            .unwrap();
    let err = bounded(source.read_range(0..10)).await.unwrap_err();
    assert!(
        matches!(err, RemoteError::RetriesExhausted { attempts: 3, .. }),
        "{err:?}"
    );
    assert!(matches!(err.root(), RemoteError::Timeout { .. }), "{err:?}");
    assert_eq!(err.kind(), ErrorKind::Timeout);
    assert_eq!(server.requests().len(), 3);
}

#[tokio::test]
async fn truncated_body_is_retried() {
    let data = Arc::new(blob_bytes(10_000));
    let expected = data[1000..3000].to_vec();
    let cut = Reply::Truncated {
        response: Response::new(206)
            .header("Content-Range", "bytes 1000-2999/10000")
            .body(expected.clone()),
        sent: 700,
    };
    let server = flaky_registry(Arc::clone(&data), vec![cut]).await;
    let client = client(Arc::new(Anonymous));
    let source = open(&client, &server.host(), &data, Some(10_000)).await;
    assert_eq!(
        &source.read_range(1000..3000).await.unwrap()[..],
        &expected[..]
    );
    assert_eq!(source.stats().snapshot().retries, 1);
}

#[tokio::test]
async fn always_truncated_body_ends_in_an_error() {
    let data = Arc::new(blob_bytes(10_000));
    let served = Arc::clone(&data);
    let server =
        MockServer::start(
            move |request| match range_reply(&served, request, RangeMode::Honour) {
                Reply::Send(response) => Reply::Truncated { response, sent: 10 },
                other => other,
            },
        )
        .await;
    let client = client(Arc::new(Anonymous));
    let source = open(&client, &server.host(), &data, Some(10_000)).await;
    let err = bounded(source.read_range(0..5000)).await.unwrap_err();
    assert!(
        matches!(err, RemoteError::RetriesExhausted { attempts: 4, .. }),
        "{err:?}"
    );
    assert!(
        matches!(
            err.root(),
            RemoteError::BodyInterrupted { .. } | RemoteError::ShortBody { .. }
        ),
        "{:?}",
        err.root()
    );
}

#[tokio::test]
async fn closed_connection_is_retried() {
    let data = Arc::new(blob_bytes(1000));
    let server = flaky_registry(Arc::clone(&data), vec![Reply::Close]).await;
    let client = client(Arc::new(Anonymous));
    let source = open(&client, &server.host(), &data, Some(1000)).await;
    assert_eq!(&source.read_range(0..10).await.unwrap()[..], &data[..10]);
}

#[tokio::test]
async fn mirror_is_tried_before_the_registry() {
    let data = Arc::new(blob_bytes(1000));
    let origin = plain_registry(Arc::clone(&data), RangeMode::Honour).await;
    let mirror = plain_registry(Arc::clone(&data), RangeMode::Honour).await;
    let mut config = test_config();
    config.hosts.insert(
        origin.host(),
        HostConfig {
            mirrors: vec![Mirror {
                host: mirror.host(),
                insecure: true,
            }],
            insecure: false,
        },
    );
    let client = client_with(config, Arc::new(Anonymous));
    let source = open(&client, &origin.host(), &data, Some(1000)).await;
    assert_eq!(&source.read_range(0..10).await.unwrap()[..], &data[..10]);
    assert_eq!(mirror.requests().len(), 1);
    assert!(origin.requests().is_empty());
}

#[tokio::test]
async fn registry_used_when_mirror_lacks_blob() {
    let data = Arc::new(blob_bytes(1000));
    let origin = plain_registry(Arc::clone(&data), RangeMode::Honour).await;
    let mirror = MockServer::start(|_| Response::new(404).into()).await;
    let mut config = test_config();
    config.hosts.insert(
        origin.host(),
        HostConfig {
            mirrors: vec![Mirror {
                host: mirror.host(),
                insecure: false,
            }],
            insecure: false,
        },
    );
    let client = client_with(config, Arc::new(Anonymous));
    let source = open(&client, &origin.host(), &data, Some(1000)).await;
    assert_eq!(&source.read_range(0..10).await.unwrap()[..], &data[..10]);
    assert_eq!(mirror.requests().len(), 1, "a 404 is not retried");
    assert_eq!(origin.requests().len(), 1);
}

#[tokio::test]
async fn check_reads_one_byte_and_reports_denial() {
    let data = Arc::new(blob_bytes(1000));
    let allow = Arc::new(std::sync::atomic::AtomicBool::new(true));
    let served = Arc::clone(&data);
    let gate = Arc::clone(&allow);
    let server = MockServer::start(move |request| {
        if gate.load(Ordering::SeqCst) {
            range_reply(&served, request, RangeMode::Honour)
        } else {
            denied()
        }
    })
    .await;
    let client = client(Arc::new(Anonymous));
    let source = open(&client, &server.host(), &data, Some(1000)).await;
    source.check().await.unwrap();
    assert_eq!(server.requests()[0].header("range"), Some("bytes=0-0"));

    allow.store(false, Ordering::SeqCst);
    let err = source.check().await.unwrap_err();
    assert!(
        matches!(err.root(), RemoteError::Unauthorized { status: 403, .. }),
        "{err:?}"
    );
    assert!(err.to_string().contains("403"), "{err}");
    assert!(
        format!("{}", err.root()).contains("DENIED"),
        "{}",
        err.root()
    );
}
