//! Bounded retries with exponential backoff, jitter, per-attempt timeouts and `Retry-After`.

use std::future::Future;
use std::hash::{BuildHasher, Hasher};
use std::time::{Duration, SystemTime};

use super::config::RegistryConfig;
use super::error::RemoteError;
use super::stats::RemoteStats;

/// How often and how patiently one logical request is attempted.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct RetryPolicy {
    pub(crate) request_timeout: Duration,
    pub(crate) max_retries: u32,
    pub(crate) min_backoff: Duration,
    pub(crate) max_backoff: Duration,
}

impl RetryPolicy {
    pub(crate) fn from_config(cfg: &RegistryConfig) -> Self {
        RetryPolicy {
            request_timeout: cfg.request_timeout,
            max_retries: cfg.max_retries,
            min_backoff: cfg.min_backoff,
            max_backoff: cfg.max_backoff,
        }
    }

    /// Delay before retry number `retry` (1 for the first retry).
    ///
    /// The base doubles from `min_backoff` up to `max_backoff`. `jitter` in `[0, 1)` then picks
    /// a point in the upper half of the base ("equal jitter"). So clients that failed together
    /// do not retry together, yet none retries sooner than half the base.
    pub(crate) fn backoff(&self, retry: u32, jitter: f64) -> Duration {
        let exponent = retry.saturating_sub(1).min(31);
        let base = self
            .min_backoff
            .saturating_mul(1u32 << exponent)
            .min(self.max_backoff);
        let half = base / 2;
        half + half.mul_f64(jitter.clamp(0.0, 1.0))
    }

    /// Delay before retry number `retry` after `err`: the server's `Retry-After` capped at
    /// `max_backoff` when given, else the jittered backoff.
    fn delay_after(&self, retry: u32, err: &RemoteError) -> Duration {
        match err.retry_after() {
            Some(asked) => asked.min(self.max_backoff),
            None => self.backoff(retry, random_unit()),
        }
    }
}

/// Labels of a request for retry logs.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Labels<'a> {
    /// Registry host the request is for.
    pub(crate) host: &'a str,
    /// Resource being fetched, such as `blob sha256:..` or `manifest latest`.
    pub(crate) resource: &'a str,
    /// Requested byte range, for range reads.
    pub(crate) range: Option<&'a std::ops::Range<u64>>,
}

/// Runs `attempt` until it succeeds, fails with a non-retryable error, or the retries run out.
///
/// Each attempt gets `policy.request_timeout`. Every retry is logged at warn level and
/// counted in `stats`. When the retries run out the last error is returned inside
/// [`RemoteError::RetriesExhausted`].
pub(crate) async fn run<T, F, Fut>(
    policy: &RetryPolicy,
    stats: &RemoteStats,
    labels: Labels<'_>,
    mut attempt: F,
) -> Result<T, RemoteError>
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Result<T, RemoteError>>,
{
    let mut attempts: u32 = 0;
    loop {
        attempts += 1;
        let outcome = match tokio::time::timeout(policy.request_timeout, attempt()).await {
            Ok(outcome) => outcome,
            Err(_elapsed) => Err(RemoteError::Timeout {
                host: labels.host.to_owned(),
                timeout: policy.request_timeout,
            }),
        };
        let err = match outcome {
            Ok(value) => return Ok(value),
            Err(err) => err,
        };
        if !err.is_retryable() {
            return Err(err);
        }
        if attempts > policy.max_retries {
            return Err(RemoteError::RetriesExhausted {
                attempts,
                source: Box::new(err),
            });
        }
        let delay = policy.delay_after(attempts, &err);
        tracing::warn!(
            host = labels.host,
            resource = labels.resource,
            range = labels.range.map(|r| format!("{}..{}", r.start, r.end)),
            attempt = attempts,
            max_attempts = policy.max_retries + 1,
            status = err.status(),
            delay_ms = delay.as_millis() as u64,
            error = %err,
            "registry request failed, retrying"
        );
        stats.add_retry();
        tokio::time::sleep(delay).await;
    }
}

/// Parses a `Retry-After` value: delay seconds or an HTTP date (RFC 9110 section 10.2.3).
///
/// A date in the past gives zero; unparseable values give `None`.
pub(crate) fn parse_retry_after(value: &str, now: SystemTime) -> Option<Duration> {
    let value = value.trim();
    if let Ok(seconds) = value.parse::<u64>() {
        return Some(Duration::from_secs(seconds));
    }
    let when = httpdate::parse_http_date(value).ok()?;
    Some(when.duration_since(now).unwrap_or(Duration::ZERO))
}

/// Returns a number in `[0, 1)` that differs between calls. It is good enough for jitter, not
/// for secrets.
fn random_unit() -> f64 {
    // std seeds each RandomState from OS randomness (once per thread, then incremented).
    let mut hasher = std::hash::RandomState::new().build_hasher();
    hasher.write_u64(0);
    (hasher.finish() >> 11) as f64 / (1u64 << 53) as f64
}

#[cfg(test)]
mod tests {
    use std::cell::Cell;

    use super::*;
    use crate::remote::error::RangeIssue;

    fn policy() -> RetryPolicy {
        RetryPolicy {
            request_timeout: Duration::from_secs(30),
            max_retries: 3,
            min_backoff: Duration::from_millis(100),
            max_backoff: Duration::from_secs(2),
        }
    }

    fn labels() -> Labels<'static> {
        Labels {
            host: "r.example",
            resource: "blob",
            range: None,
        }
    }

    fn unavailable(retry_after: Option<Duration>) -> RemoteError {
        RemoteError::Status {
            host: "r.example".into(),
            status: 503,
            request: "GET /v2/".into(),
            retry_after,
            detail: None,
        }
    }

    #[test]
    fn backoff_doubles_and_caps() {
        let p = policy();
        assert_eq!(
            p.backoff(1, 0.999_999),
            Duration::from_millis(100) - Duration::from_nanos(50)
        );
        assert_eq!(p.backoff(1, 0.0), Duration::from_millis(50));
        assert_eq!(p.backoff(2, 0.0), Duration::from_millis(100));
        assert_eq!(p.backoff(3, 0.0), Duration::from_millis(200));
        assert_eq!(p.backoff(10, 0.0), Duration::from_secs(1));
        assert_eq!(p.backoff(u32::MAX, 0.0), Duration::from_secs(1));
    }

    #[test]
    fn random_unit_stays_in_range() {
        for _ in 0..1000 {
            let x = random_unit();
            assert!((0.0..1.0).contains(&x), "{x}");
        }
    }

    #[test]
    fn retry_after_seconds_and_dates() {
        let now = SystemTime::UNIX_EPOCH + Duration::from_secs(1_445_412_470); // 2015-10-21 07:27:50 UTC
        assert_eq!(
            parse_retry_after("120", now),
            Some(Duration::from_secs(120))
        );
        assert_eq!(parse_retry_after(" 0 ", now), Some(Duration::ZERO));
        assert_eq!(
            parse_retry_after("Wed, 21 Oct 2015 07:28:00 GMT", now),
            Some(Duration::from_secs(10))
        );
        assert_eq!(
            parse_retry_after("Wed, 21 Oct 2015 07:00:00 GMT", now),
            Some(Duration::ZERO)
        );
        assert_eq!(parse_retry_after("soon", now), None);
        assert_eq!(parse_retry_after("-5", now), None);
    }

    #[tokio::test(start_paused = true)]
    async fn run_retries_until_success_with_growing_delays() {
        let stats = RemoteStats::default();
        let calls = Cell::new(0);
        let start = tokio::time::Instant::now();
        let result = run(&policy(), &stats, labels(), || {
            calls.set(calls.get() + 1);
            let n = calls.get();
            async move { if n < 3 { Err(unavailable(None)) } else { Ok(n) } }
        })
        .await;
        assert_eq!(result.unwrap(), 3);
        assert_eq!(stats.snapshot().retries, 2);
        // Two delays: [50, 100) ms and [100, 200) ms.
        let waited = start.elapsed();
        assert!(waited >= Duration::from_millis(150), "{waited:?}");
        assert!(waited < Duration::from_millis(300), "{waited:?}");
    }

    #[tokio::test(start_paused = true)]
    async fn run_honours_retry_after_up_to_the_cap() {
        let stats = RemoteStats::default();
        for (asked, expected) in [
            (Duration::from_millis(1500), Duration::from_millis(1500)),
            (Duration::from_secs(3600), Duration::from_secs(2)),
        ] {
            let calls = Cell::new(0);
            let start = tokio::time::Instant::now();
            run(&policy(), &stats, labels(), || {
                calls.set(calls.get() + 1);
                let first = calls.get() == 1;
                async move {
                    if first {
                        Err(unavailable(Some(asked)))
                    } else {
                        Ok(())
                    }
                }
            })
            .await
            .unwrap();
            assert_eq!(start.elapsed(), expected);
        }
    }

    #[tokio::test(start_paused = true)]
    async fn run_gives_up_after_max_retries() {
        let stats = RemoteStats::default();
        let calls = Cell::new(0);
        let err = run(&policy(), &stats, labels(), || {
            calls.set(calls.get() + 1);
            async { Err::<(), _>(unavailable(None)) }
        })
        .await
        .unwrap_err();
        assert_eq!(calls.get(), 4);
        assert!(
            matches!(err, RemoteError::RetriesExhausted { attempts: 4, .. }),
            "{err:?}"
        );
        assert_eq!(err.status(), Some(503));
    }

    #[tokio::test(start_paused = true)]
    async fn retry_range_response_missing_request() {
        let stats = RemoteStats::default();
        let calls = Cell::new(0);
        let result = run(&policy(), &stats, labels(), || {
            calls.set(calls.get() + 1);
            let first = calls.get() == 1;
            async move {
                if first {
                    Err(RemoteError::RangeResponse {
                        host: "r".into(),
                        start: 10,
                        end: 20,
                        issue: RangeIssue::NotCovering { start: 11, end: 20 },
                    })
                } else {
                    Ok(7)
                }
            }
        })
        .await;
        assert_eq!(result.unwrap(), 7);
        assert_eq!(calls.get(), 2);
    }

    #[tokio::test(start_paused = true)]
    async fn retry_skips_encoded_range_response() {
        let stats = RemoteStats::default();
        let calls = Cell::new(0);
        let err = run(&policy(), &stats, labels(), || {
            calls.set(calls.get() + 1);
            async {
                Err::<(), _>(RemoteError::RangeResponse {
                    host: "r".into(),
                    start: 10,
                    end: 20,
                    issue: RangeIssue::ContentEncoding("gzip".into()),
                })
            }
        })
        .await
        .unwrap_err();
        assert_eq!(calls.get(), 1);
        assert!(matches!(err, RemoteError::RangeResponse { .. }), "{err:?}");
    }

    #[tokio::test(start_paused = true)]
    async fn run_does_not_retry_permanent_errors() {
        let stats = RemoteStats::default();
        let calls = Cell::new(0);
        let err = run(&policy(), &stats, labels(), || {
            calls.set(calls.get() + 1);
            async {
                Err::<(), _>(RemoteError::Status {
                    host: "r".into(),
                    status: 501,
                    request: "GET /".into(),
                    retry_after: None,
                    detail: None,
                })
            }
        })
        .await
        .unwrap_err();
        assert_eq!(calls.get(), 1);
        assert_eq!(err.status(), Some(501));
        assert_eq!(stats.snapshot().retries, 0);
    }

    #[tokio::test(start_paused = true)]
    async fn run_times_out_each_attempt() {
        let stats = RemoteStats::default();
        let calls = Cell::new(0);
        let start = tokio::time::Instant::now();
        let err = run(&policy(), &stats, labels(), || {
            calls.set(calls.get() + 1);
            std::future::pending::<Result<(), RemoteError>>()
        })
        .await
        .unwrap_err();
        assert_eq!(calls.get(), 4);
        assert!(matches!(err.root(), RemoteError::Timeout { .. }), "{err:?}");
        // Four timeouts of 30 s plus three backoffs of at most 400 ms in total.
        assert!(start.elapsed() >= Duration::from_secs(120));
        assert!(start.elapsed() < Duration::from_secs(121));
    }
}
