//! Parsing of the registry's JSON request log.
//!
//! With `log.formatter: json`, distribution 2.8 writes one JSON object per finished request
//! whose `msg` is `response completed` (or `response completed with error`). The fields
//! used here are `http.request.method`, `http.request.uri`, `http.response.status` and
//! `http.response.written` (body bytes sent). The log has no field for the `Range` header,
//! so a ranged GET shows up only through its status (206) and its byte count.

use serde_json::Value;

/// One request the registry answered.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AccessEntry {
    /// The HTTP method, such as `GET` or `HEAD`.
    pub method: String,
    /// The request URI: path plus query string, for example `/v2/python/blobs/sha256:...`.
    pub path: String,
    /// The response status code.
    pub status: u16,
    /// The response body bytes the registry wrote.
    pub bytes_written: u64,
}

impl AccessEntry {
    /// Returns true for a GET of the blob with this digest (`sha256:<hex>`) in any repository.
    pub fn is_blob_get(&self, digest: &str) -> bool {
        self.method == "GET" && blob_digest_of(&self.path) == Some(digest)
    }
}

/// Returns the digest in a `/v2/<name>/blobs/<digest>` URI, ignoring any query string.
pub fn blob_digest_of(uri: &str) -> Option<&str> {
    let path = uri.split('?').next().unwrap_or(uri);
    let (_, digest) = path.rsplit_once("/blobs/")?;
    (!digest.is_empty() && !digest.contains('/')).then_some(digest)
}

/// Parses every request record in `log`, skipping lines that are not request records.
pub fn parse(log: &str) -> Vec<AccessEntry> {
    log.lines().filter_map(parse_line).collect()
}

fn parse_line(line: &str) -> Option<AccessEntry> {
    let line = line.trim();
    if !line.starts_with('{') {
        return None;
    }
    let record: Value = serde_json::from_str(line).ok()?;
    let method = record.get("http.request.method")?.as_str()?.to_owned();
    let path = record.get("http.request.uri")?.as_str()?.to_owned();
    let status = u16::try_from(record.get("http.response.status")?.as_u64()?).ok()?;
    let bytes_written = record
        .get("http.response.written")
        .and_then(Value::as_u64)
        .unwrap_or(0);
    Some(AccessEntry {
        method,
        path,
        status,
        bytes_written,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    // A record as distribution 2.8.2 writes it for a ranged blob GET (fields trimmed to
    // those this parser reads plus two it ignores).
    const RANGED_GET: &str = r#"{"http.request.method":"GET","http.request.uri":"/v2/python/blobs/sha256:ab12","http.response.status":206,"http.response.written":4096,"level":"info","msg":"response completed"}"#;

    #[test]
    fn request_record_is_parsed() {
        let entries = parse(RANGED_GET);
        assert_eq!(
            entries,
            vec![AccessEntry {
                method: "GET".into(),
                path: "/v2/python/blobs/sha256:ab12".into(),
                status: 206,
                bytes_written: 4096,
            }]
        );
    }

    #[test]
    fn non_request_lines_are_skipped() {
        let log = format!(
            "{}\n127.0.0.1 - - [x] \"GET /v2/ HTTP/1.1\" 200 2\n{}\n",
            r#"{"level":"info","msg":"listening on 127.0.0.1:5000"}"#, RANGED_GET
        );
        assert_eq!(parse(&log).len(), 1);
    }

    #[test]
    fn blob_digest_ignores_query_and_manifests() {
        assert_eq!(
            blob_digest_of("/v2/a/b/blobs/sha256:ff?x=1"),
            Some("sha256:ff")
        );
        assert_eq!(blob_digest_of("/v2/a/manifests/latest"), None);
        assert_eq!(blob_digest_of("/v2/a/blobs/uploads/"), None);
    }
}
