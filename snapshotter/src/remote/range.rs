//! Interpreting responses to single-range GET requests (RFC 9110 section 14).
//!
//! Servers do not always honour `Range`. A 206 may cover more than was asked for, a 200 means
//! the body is the whole blob from byte 0, and some proxies send 200 with a `Content-Range`
//! and only the requested bytes. The functions here turn the response headers into the
//! position of the wanted bytes in the body, or reject the response. They never trust a body
//! to be the requested range unless the headers prove it.

use std::ops::Range;

use super::error::RangeIssue;

/// A byte range from a `Content-Range` header, end exclusive.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct ContentRange {
    /// First byte in the body.
    pub(crate) start: u64,
    /// One past the last byte in the body.
    pub(crate) end: u64,
    /// Complete length of the blob, unless the server sent `*`.
    pub(crate) total: Option<u64>,
}

/// Position of the requested bytes in a response body.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct BodySlice {
    /// Body bytes to discard first.
    pub(crate) skip: u64,
    /// Body bytes to return after that.
    pub(crate) take: u64,
}

/// Formats the `Range` header value for a non-empty half-open range.
pub(crate) fn range_header(range: &Range<u64>) -> String {
    format!("bytes={}-{}", range.start, range.end - 1)
}

/// Parses `bytes <first>-<last>/<total or *>`.
pub(crate) fn parse_content_range(value: &str) -> Option<ContentRange> {
    let rest = strip_bytes_unit(value)?;
    let (span, total) = rest.split_once('/')?;
    let (first, last) = span.trim().split_once('-')?;
    let start: u64 = first.trim().parse().ok()?;
    let last: u64 = last.trim().parse().ok()?;
    let total = match total.trim() {
        "*" => None,
        digits => Some(digits.parse::<u64>().ok()?),
    };
    if last < start || total.is_some_and(|total| last >= total) {
        return None;
    }
    Some(ContentRange {
        start,
        end: last.checked_add(1)?,
        total,
    })
}

/// Parses the blob size from the `bytes */<total>` form a 416 carries.
pub(crate) fn parse_unsatisfied_total(value: &str) -> Option<u64> {
    strip_bytes_unit(value)?
        .strip_prefix("*/")?
        .trim()
        .parse()
        .ok()
}

fn strip_bytes_unit(value: &str) -> Option<&str> {
    let value = value.trim();
    let (unit, rest) = value.split_once(' ')?;
    unit.eq_ignore_ascii_case("bytes")
        .then(|| rest.trim_start())
}

/// Plans the body of a 206 response to `requested`.
///
/// The header must name a range that covers the request; a wider range is sliced. When the
/// blob size is known, the total in `Content-Range` must match it, because a different total
/// means a different blob.
pub(crate) fn plan_partial(
    requested: &Range<u64>,
    blob_size: Option<u64>,
    content_range: Option<&str>,
    content_type: Option<&str>,
    content_length: Option<u64>,
) -> Result<BodySlice, RangeIssue> {
    if content_type.is_some_and(|value| {
        value
            .trim_start()
            .to_ascii_lowercase()
            .starts_with("multipart/")
    }) {
        return Err(RangeIssue::UnexpectedMultipart);
    }
    let header = content_range.ok_or(RangeIssue::MissingContentRange)?;
    let got = parse_content_range(header)
        .ok_or_else(|| RangeIssue::MalformedContentRange(header.chars().take(100).collect()))?;
    if let (Some(expected), Some(reported)) = (blob_size, got.total)
        && expected != reported
    {
        return Err(RangeIssue::TotalMismatch { expected, reported });
    }
    if got.start > requested.start || got.end < requested.end {
        return Err(RangeIssue::NotCovering {
            start: got.start,
            end: got.end,
        });
    }
    let range_length = got.end - got.start;
    if let Some(content_length) = content_length
        && content_length != range_length
    {
        return Err(RangeIssue::LengthMismatch {
            content_length,
            range_length,
        });
    }
    Ok(BodySlice {
        skip: requested.start - got.start,
        take: requested.end - requested.start,
    })
}

/// Plans the body of a 200 response to `requested`: the body is the whole blob from byte 0.
///
/// A declared length other than the blob size proves the body is something else (such as
/// only the requested bytes, as some proxies send), so it is rejected rather than sliced.
pub(crate) fn plan_full(
    requested: &Range<u64>,
    blob_size: u64,
    content_length: Option<u64>,
) -> Result<BodySlice, RangeIssue> {
    if let Some(content_length) = content_length
        && content_length != blob_size
    {
        return Err(RangeIssue::PartialBodyWith200 {
            content_length,
            blob_size,
        });
    }
    Ok(BodySlice {
        skip: requested.start,
        take: requested.end - requested.start,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn content_range_forms() {
        assert_eq!(
            parse_content_range("bytes 0-99/1000"),
            Some(ContentRange {
                start: 0,
                end: 100,
                total: Some(1000)
            })
        );
        assert_eq!(
            parse_content_range("Bytes  5-5/*"),
            Some(ContentRange {
                start: 5,
                end: 6,
                total: None
            })
        );
        assert_eq!(
            parse_content_range("bytes 10-5/100"),
            None,
            "last before first"
        );
        assert_eq!(
            parse_content_range("bytes 0-100/100"),
            None,
            "last past total"
        );
        assert_eq!(parse_content_range("items 0-1/2"), None);
        assert_eq!(parse_content_range("bytes */100"), None);
        assert_eq!(
            parse_content_range("bytes 0-18446744073709551615/*"),
            None,
            "end overflows"
        );
        assert_eq!(parse_unsatisfied_total("bytes */4096"), Some(4096));
        assert_eq!(parse_unsatisfied_total("bytes 0-1/4096"), None);
    }

    #[test]
    fn range_header_is_inclusive() {
        assert_eq!(range_header(&(0..1)), "bytes=0-0");
        assert_eq!(range_header(&(100..200)), "bytes=100-199");
    }

    #[test]
    fn exact_partial_is_taken_whole() {
        let plan = plan_partial(
            &(100..200),
            Some(1000),
            Some("bytes 100-199/1000"),
            None,
            Some(100),
        );
        assert_eq!(plan, Ok(BodySlice { skip: 0, take: 100 }));
    }

    #[test]
    fn wider_partial_is_sliced() {
        let plan = plan_partial(
            &(100..200),
            Some(1000),
            Some("bytes 0-511/1000"),
            Some("application/octet-stream"),
            None,
        );
        assert_eq!(
            plan,
            Ok(BodySlice {
                skip: 100,
                take: 100
            })
        );
    }

    #[test]
    fn partial_not_covering_request_is_rejected() {
        let plan = plan_partial(
            &(100..200),
            Some(1000),
            Some("bytes 150-299/1000"),
            None,
            None,
        );
        assert_eq!(
            plan,
            Err(RangeIssue::NotCovering {
                start: 150,
                end: 300
            })
        );
        let plan = plan_partial(
            &(100..200),
            Some(1000),
            Some("bytes 100-149/1000"),
            None,
            None,
        );
        assert_eq!(
            plan,
            Err(RangeIssue::NotCovering {
                start: 100,
                end: 150
            })
        );
    }

    #[test]
    fn partial_of_another_blob_size_is_rejected() {
        let plan = plan_partial(&(0..10), Some(1000), Some("bytes 0-9/999"), None, None);
        assert_eq!(
            plan,
            Err(RangeIssue::TotalMismatch {
                expected: 1000,
                reported: 999
            })
        );
    }

    #[test]
    fn partial_needs_content_range() {
        assert_eq!(
            plan_partial(&(0..10), Some(1000), None, None, Some(10)),
            Err(RangeIssue::MissingContentRange)
        );
        assert!(matches!(
            plan_partial(&(0..10), Some(1000), Some("bytes zero-9/1000"), None, None),
            Err(RangeIssue::MalformedContentRange(_))
        ));
    }

    #[test]
    fn multipart_partial_is_rejected() {
        let plan = plan_partial(
            &(0..10),
            Some(1000),
            None,
            Some("multipart/byteranges; boundary=XYZ"),
            None,
        );
        assert_eq!(plan, Err(RangeIssue::UnexpectedMultipart));
    }

    #[test]
    fn partial_with_inconsistent_length_is_rejected() {
        let plan = plan_partial(
            &(0..10),
            Some(1000),
            Some("bytes 0-9/1000"),
            None,
            Some(1000),
        );
        assert_eq!(
            plan,
            Err(RangeIssue::LengthMismatch {
                content_length: 1000,
                range_length: 10
            })
        );
    }

    #[test]
    fn full_body_is_sliced_from_offset() {
        assert_eq!(
            plan_full(&(300..400), 1000, Some(1000)),
            Ok(BodySlice {
                skip: 300,
                take: 100
            })
        );
        assert_eq!(
            plan_full(&(300..400), 1000, None),
            Ok(BodySlice {
                skip: 300,
                take: 100
            })
        );
    }

    #[test]
    fn full_status_with_only_requested_bytes_is_rejected() {
        assert_eq!(
            plan_full(&(300..400), 1000, Some(100)),
            Err(RangeIssue::PartialBodyWith200 {
                content_length: 100,
                blob_size: 1000
            })
        );
    }
}
