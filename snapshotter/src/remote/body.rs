//! Reading response bodies: bounded reads, range slices and error bodies.

use std::time::SystemTime;

use bytes::{Bytes, BytesMut};
use reqwest::header::{CONTENT_LENGTH, RETRY_AFTER};
use reqwest::{Response, StatusCode, Url};
use serde::Deserialize;

use super::error::RemoteError;
use super::range::BodySlice;
use super::retry::parse_retry_after;
use super::stats::RemoteStats;

/// Bytes of an error body read to find the registry's error code.
const MAX_ERROR_BODY: usize = 4096;
/// Characters of a registry error message kept in errors.
const MAX_DETAIL_CHARS: usize = 200;
/// Capacity reserved up front for a range read; larger reads grow as data arrives.
const MAX_PREALLOCATION: u64 = 8 << 20;

/// `host[:port]` of `url`, for errors and logs (never the path or query).
pub(crate) fn host_of(url: &Url) -> String {
    let host = url.host_str().unwrap_or("<no host>");
    match url.port() {
        Some(port) => format!("{host}:{port}"),
        None => host.to_owned(),
    }
}

/// `Content-Length` as a number, if present and valid.
pub(crate) fn content_length(response: &Response) -> Option<u64> {
    response
        .headers()
        .get(CONTENT_LENGTH)?
        .to_str()
        .ok()?
        .trim()
        .parse()
        .ok()
}

/// Turns an unwanted response into an error, reading at most a few KiB of its body.
///
/// `request` describes the request for the message, such as `GET /v2/app/blobs/sha256:..`;
/// it must not contain a query string, because signed URLs carry secrets there.
pub(crate) async fn error_from_response(response: Response, request: &str) -> RemoteError {
    let host = host_of(response.url());
    let status = response.status();
    let retry_after = if status == StatusCode::TOO_MANY_REQUESTS || status.is_server_error() {
        response
            .headers()
            .get(RETRY_AFTER)
            .and_then(|value| value.to_str().ok())
            .and_then(|value| parse_retry_after(value, SystemTime::now()))
    } else {
        None
    };
    let detail = registry_error_detail(response).await;
    let request = request.to_owned();
    match status {
        StatusCode::UNAUTHORIZED | StatusCode::FORBIDDEN => RemoteError::Unauthorized {
            host,
            status: status.as_u16(),
            request,
            detail,
        },
        StatusCode::NOT_FOUND => RemoteError::NotFound { host, request },
        _ => RemoteError::Status {
            host,
            status: status.as_u16(),
            request,
            retry_after,
            detail,
        },
    }
}

/// Extracts the first `code: message` of a registry error body
/// (`{"errors":[{"code":..,"message":..}]}`), if the body has that form.
async fn registry_error_detail(mut response: Response) -> Option<String> {
    #[derive(Deserialize)]
    struct Errors {
        errors: Vec<ErrorEntry>,
    }
    #[derive(Deserialize)]
    struct ErrorEntry {
        code: Option<String>,
        message: Option<String>,
    }

    let mut raw = Vec::new();
    while raw.len() < MAX_ERROR_BODY {
        match response.chunk().await {
            Ok(Some(chunk)) => raw.extend_from_slice(&chunk),
            _ => break,
        }
    }
    let parsed: Errors = serde_json::from_slice(&raw).ok()?;
    let first = parsed.errors.into_iter().next()?;
    let text = match (first.code, first.message) {
        (Some(code), Some(message)) => format!("{code}: {message}"),
        (Some(text), None) | (None, Some(text)) => text,
        (None, None) => return None,
    };
    Some(text.chars().take(MAX_DETAIL_CHARS).collect())
}

/// Reads a whole body of at most `limit` bytes.
pub(crate) async fn read_limited(
    mut response: Response,
    limit: u64,
    what: &'static str,
    host: &str,
) -> Result<Bytes, RemoteError> {
    let too_large = || RemoteError::BodyTooLarge {
        from: host.to_owned(),
        what,
        limit,
    };
    let declared = content_length(&response);
    if declared.is_some_and(|len| len > limit) {
        return Err(too_large());
    }
    let mut out = BytesMut::with_capacity(declared.unwrap_or(0) as usize);
    loop {
        match response.chunk().await {
            Ok(Some(chunk)) => {
                if out.len() as u64 + chunk.len() as u64 > limit {
                    return Err(too_large());
                }
                out.extend_from_slice(&chunk);
            }
            Ok(None) => break,
            Err(source) => {
                return Err(RemoteError::BodyInterrupted {
                    host: host.to_owned(),
                    received: out.len() as u64,
                    source: source.without_url(),
                });
            }
        }
    }
    if let Some(declared) = declared
        && declared != out.len() as u64
    {
        return Err(RemoteError::ShortBody {
            host: host.to_owned(),
            expected: declared,
            received: out.len() as u64,
        });
    }
    Ok(out.freeze())
}

/// Discards `slice.skip` body bytes, returns the next `slice.take`, and stops reading.
///
/// Every body byte received is counted in `stats`. Dropping the response afterwards closes
/// the connection if bytes remain, which is the only way to stop a server that sends a whole
/// blob when part of it was wanted.
pub(crate) async fn read_slice(
    mut response: Response,
    slice: BodySlice,
    host: &str,
    stats: &RemoteStats,
) -> Result<Bytes, RemoteError> {
    let declared = content_length(&response);
    let mut out = BytesMut::with_capacity(slice.take.min(MAX_PREALLOCATION) as usize);
    let mut to_skip = slice.skip;
    let mut received: u64 = 0;
    while (out.len() as u64) < slice.take {
        let chunk = match response.chunk().await {
            Ok(Some(chunk)) => chunk,
            Ok(None) => {
                return Err(RemoteError::ShortBody {
                    host: host.to_owned(),
                    expected: slice.skip + slice.take,
                    received,
                });
            }
            Err(source) => {
                return Err(RemoteError::BodyInterrupted {
                    host: host.to_owned(),
                    received,
                    source: source.without_url(),
                });
            }
        };
        received += chunk.len() as u64;
        stats.add_bytes(chunk.len() as u64);
        let mut usable: &[u8] = &chunk;
        if to_skip > 0 {
            let skipped = to_skip.min(usable.len() as u64);
            usable = &usable[skipped as usize..];
            to_skip -= skipped;
        }
        let wanted = (slice.take - out.len() as u64).min(usable.len() as u64) as usize;
        out.extend_from_slice(&usable[..wanted]);
    }
    if declared == Some(received) {
        // Let the client see the end of the body so it can reuse the connection.
        let _ = response.chunk().await;
    }
    Ok(out.freeze())
}
