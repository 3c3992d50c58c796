//! The fault proxy in front of a small in-process HTTP server that serves one blob with
//! range support: each fault kind changes the exchange as documented, and counters follow.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{TcpListener, TcpStream};
use std::time::Duration;

use lazypull_testkit::faultproxy::{Fault, FaultPlan, FaultProxy, ProxyOptions, Rule, Stall};

const BLOB_PATH: &str = "/v2/test/blobs/sha256:0000";

fn blob() -> Vec<u8> {
    (0..1000u32).map(|n| (n % 251) as u8).collect()
}

/// Serves `blob()` at every path, honouring `Range: bytes=A-B`, one request per connection.
fn start_upstream() -> String {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let address = listener.local_addr().unwrap().to_string();
    std::thread::spawn(move || {
        for stream in listener.incoming().flatten() {
            std::thread::spawn(move || serve_one(stream));
        }
    });
    address
}

fn serve_one(mut stream: TcpStream) {
    let mut reader = BufReader::new(stream.try_clone().unwrap());
    let mut range = None;
    loop {
        let mut line = String::new();
        if reader.read_line(&mut line).unwrap_or(0) == 0 || line == "\r\n" {
            break;
        }
        if let Some(value) = line.to_ascii_lowercase().strip_prefix("range: bytes=") {
            let (first, last) = value.trim().split_once('-').unwrap();
            range = Some((
                first.parse::<usize>().unwrap(),
                last.parse::<usize>().unwrap(),
            ));
        }
    }
    let blob = blob();
    let (head, body) = match range {
        Some((first, last)) => (
            format!(
                "HTTP/1.1 206 Partial Content\r\nContent-Range: bytes {first}-{last}/{}\r\nContent-Length: {}\r\n",
                blob.len(),
                last + 1 - first
            ),
            blob[first..=last].to_vec(),
        ),
        None => (
            format!("HTTP/1.1 200 OK\r\nContent-Length: {}\r\n", blob.len()),
            blob,
        ),
    };
    let _ = stream.write_all(format!("{head}Connection: close\r\n\r\n").as_bytes());
    let _ = stream.write_all(&body);
}

/// A parsed response: status, headers (lower-case names) and the body bytes received.
struct Answer {
    status: u16,
    headers: Vec<(String, String)>,
    body: Vec<u8>,
}

impl Answer {
    fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(key, _)| key == name)
            .map(|(_, value)| value.as_str())
    }
}

/// Sends a GET and reads until the server closes; `None` when no status line came back.
fn get(host: &str, path: &str, extra: &[&str]) -> Option<Answer> {
    let mut stream = TcpStream::connect(host).unwrap();
    stream
        .set_read_timeout(Some(Duration::from_secs(5)))
        .unwrap();
    let mut request = format!("GET {path} HTTP/1.1\r\nHost: {host}\r\nConnection: close\r\n");
    for header in extra {
        request.push_str(header);
        request.push_str("\r\n");
    }
    request.push_str("\r\n");
    stream.write_all(request.as_bytes()).unwrap();
    let mut raw = Vec::new();
    let _ = stream.read_to_end(&mut raw);
    let split = raw.windows(4).position(|window| window == b"\r\n\r\n")?;
    let head = String::from_utf8_lossy(&raw[..split]).into_owned();
    let mut lines = head.lines();
    let status = lines.next()?.split_whitespace().nth(1)?.parse().ok()?;
    let headers = lines
        .filter_map(|line| line.split_once(':'))
        .map(|(key, value)| (key.trim().to_ascii_lowercase(), value.trim().to_owned()))
        .collect();
    Some(Answer {
        status,
        headers,
        body: raw[split + 4..].to_vec(),
    })
}

fn proxy(options: ProxyOptions) -> FaultProxy {
    FaultProxy::start(&start_upstream(), options).unwrap()
}

fn every_blob_request(proxy: &FaultProxy, fault: Fault) {
    proxy.set_faults(FaultPlan::Rules(vec![Rule::blobs(fault)]));
}

#[test]
fn proxy_forwards_unchanged_without_faults() {
    let proxy = proxy(ProxyOptions::default());
    let answer = get(&proxy.host(), BLOB_PATH, &["Range: bytes=10-19"]).unwrap();
    assert_eq!(answer.status, 206);
    assert_eq!(answer.body, blob()[10..20]);
    assert_eq!(answer.header("content-range"), Some("bytes 10-19/1000"));
    assert_eq!(proxy.handle().requests(), 1);
    assert_eq!(proxy.handle().injected_total(), 0);
}

#[test]
fn status_faults_replace_the_response() {
    let proxy = proxy(ProxyOptions::default());
    every_blob_request(&proxy, Fault::Status(503));
    assert_eq!(get(&proxy.host(), BLOB_PATH, &[]).unwrap().status, 503);
    every_blob_request(
        &proxy,
        Fault::TooManyRequests {
            retry_after_secs: 7,
        },
    );
    let answer = get(&proxy.host(), BLOB_PATH, &[]).unwrap();
    assert_eq!(answer.status, 429);
    assert_eq!(answer.header("retry-after"), Some("7"));
    assert_eq!(proxy.handle().injected()["status_503"], 1);
    assert_eq!(proxy.handle().injected()["status_429_retry_after"], 1);
}

#[test]
fn reset_sends_no_response() {
    let proxy = proxy(ProxyOptions::default());
    every_blob_request(&proxy, Fault::Reset);
    assert!(get(&proxy.host(), BLOB_PATH, &[]).is_none());
    assert_eq!(proxy.handle().injected()["reset"], 1);
}

#[test]
fn body_faults_corrupt_or_cut_the_body() {
    let proxy = proxy(ProxyOptions::default());
    every_blob_request(&proxy, Fault::Truncate);
    let answer = get(&proxy.host(), BLOB_PATH, &[]).unwrap();
    assert_eq!(answer.header("content-length"), Some("1000"));
    assert_eq!(answer.body, blob()[..500]);

    every_blob_request(&proxy, Fault::FlipBytes);
    let answer = get(&proxy.host(), BLOB_PATH, &[]).unwrap();
    let differing: Vec<usize> = (0..1000).filter(|&n| answer.body[n] != blob()[n]).collect();
    assert_eq!(differing, [500]);
}

#[test]
fn range_faults_change_status_or_content_range() {
    let proxy = proxy(ProxyOptions::default());
    every_blob_request(&proxy, Fault::RangeAsFull);
    let answer = get(&proxy.host(), BLOB_PATH, &["Range: bytes=10-19"]).unwrap();
    assert_eq!(answer.status, 200);
    assert_eq!(answer.body, blob());

    every_blob_request(&proxy, Fault::WrongContentRange);
    let answer = get(&proxy.host(), BLOB_PATH, &["Range: bytes=10-19"]).unwrap();
    assert_eq!(answer.status, 206);
    assert_eq!(answer.header("content-range"), Some("bytes 9-18/1000"));
    assert_eq!(answer.body, blob()[10..20]);
}

#[test]
fn stall_mid_body_delays_the_second_half() {
    let proxy = proxy(ProxyOptions::default());
    every_blob_request(
        &proxy,
        Fault::StallBody(Stall::For(Duration::from_millis(300))),
    );
    let started = std::time::Instant::now();
    let answer = get(&proxy.host(), BLOB_PATH, &[]).unwrap();
    assert!(started.elapsed() >= Duration::from_millis(300));
    assert_eq!(answer.body, blob());
}

#[test]
fn expired_token_needs_a_new_one() {
    let proxy = proxy(ProxyOptions {
        token_auth: true,
        ..ProxyOptions::default()
    });
    let host = proxy.host();
    let challenge = get(&host, BLOB_PATH, &[]).unwrap();
    assert_eq!(challenge.status, 401);
    let realm = challenge.header("www-authenticate").unwrap().to_owned();
    assert!(realm.contains("/token"), "{realm}");
    assert!(realm.contains("scope=\"repository:test:pull\""), "{realm}");

    let token = |host: &str| -> String {
        let answer = get(host, "/token", &[]).unwrap();
        let body: serde_json::Value = serde_json::from_slice(&answer.body).unwrap();
        format!("Authorization: Bearer {}", body["token"].as_str().unwrap())
    };
    let first = token(&host);
    assert_eq!(get(&host, BLOB_PATH, &[&first]).unwrap().status, 200);

    every_blob_request(&proxy, Fault::ExpireToken { status: 403 });
    assert_eq!(get(&host, BLOB_PATH, &[&first]).unwrap().status, 403);
    proxy.clear();
    assert_eq!(get(&host, BLOB_PATH, &[&first]).unwrap().status, 401);
    let second = token(&host);
    assert_ne!(first, second);
    assert_eq!(get(&host, BLOB_PATH, &[&second]).unwrap().status, 200);
}

#[test]
fn blob_redirect_reaches_storage_until_expiry() {
    let proxy = proxy(ProxyOptions {
        storage_redirect: true,
        ..ProxyOptions::default()
    });
    let redirect = get(&proxy.host(), BLOB_PATH, &[]).unwrap();
    assert_eq!(redirect.status, 307);
    let location = redirect.header("location").unwrap().to_owned();
    let storage_host = format!("127.0.0.1:{}", proxy.storage_port().unwrap());
    let path = location
        .strip_prefix(&format!("http://{storage_host}"))
        .unwrap()
        .to_owned();
    let answer = get(&storage_host, &path, &["Range: bytes=0-9"]).unwrap();
    assert_eq!(answer.status, 206);
    assert_eq!(answer.body, blob()[..10]);

    every_blob_request(&proxy, Fault::ExpireSignedUrl);
    assert_eq!(get(&storage_host, &path, &[]).unwrap().status, 403);
    assert_eq!(proxy.handle().injected()["expire_signed_url"], 1);
}
