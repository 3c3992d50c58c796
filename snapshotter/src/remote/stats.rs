//! Request counters of one blob source or client.

use std::sync::atomic::{AtomicU64, Ordering};

use super::error::ErrorKind;

/// Counters updated by a blob source as it works. All are monotonic.
///
/// Reads use relaxed ordering: each counter is exact, but a [`StatsSnapshot`] taken while
/// requests run may mix values from slightly different moments.
#[derive(Debug, Default)]
pub struct RemoteStats {
    requests: AtomicU64,
    bytes_fetched: AtomicU64,
    retries: AtomicU64,
    auth_refreshes: AtomicU64,
    redirects_resolved: AtomicU64,
    errors: [AtomicU64; ErrorKind::ALL.len()],
}

/// A copy of [`RemoteStats`] at one moment.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct StatsSnapshot {
    /// HTTP requests sent, including token requests and redirected requests.
    pub requests: u64,
    /// Body bytes received for range reads, including bytes skipped in oversized responses.
    pub bytes_fetched: u64,
    /// Attempts repeated after a retryable failure.
    pub retries: u64,
    /// Times new credentials or tokens were obtained after a rejection or expiry.
    pub auth_refreshes: u64,
    /// Times a registry redirect was followed to find the storage URL of a blob.
    pub redirects_resolved: u64,
    /// Failures returned to callers, by kind, in [`ErrorKind::ALL`] order.
    pub errors: [u64; ErrorKind::ALL.len()],
}

impl StatsSnapshot {
    /// Failures returned to callers with the given kind.
    pub fn errors_of(&self, kind: ErrorKind) -> u64 {
        self.errors[kind.index()]
    }
}

impl RemoteStats {
    /// Copies the counters.
    pub fn snapshot(&self) -> StatsSnapshot {
        let mut errors = [0; ErrorKind::ALL.len()];
        for (slot, counter) in errors.iter_mut().zip(&self.errors) {
            *slot = counter.load(Ordering::Relaxed);
        }
        StatsSnapshot {
            requests: self.requests.load(Ordering::Relaxed),
            bytes_fetched: self.bytes_fetched.load(Ordering::Relaxed),
            retries: self.retries.load(Ordering::Relaxed),
            auth_refreshes: self.auth_refreshes.load(Ordering::Relaxed),
            redirects_resolved: self.redirects_resolved.load(Ordering::Relaxed),
            errors,
        }
    }

    pub(crate) fn add_request(&self) {
        self.requests.fetch_add(1, Ordering::Relaxed);
    }

    pub(crate) fn add_bytes(&self, bytes: u64) {
        self.bytes_fetched.fetch_add(bytes, Ordering::Relaxed);
    }

    pub(crate) fn add_retry(&self) {
        self.retries.fetch_add(1, Ordering::Relaxed);
    }

    pub(crate) fn add_auth_refresh(&self) {
        self.auth_refreshes.fetch_add(1, Ordering::Relaxed);
    }

    pub(crate) fn add_redirect(&self) {
        self.redirects_resolved.fetch_add(1, Ordering::Relaxed);
    }

    pub(crate) fn add_error(&self, kind: ErrorKind) {
        self.errors[kind.index()].fetch_add(1, Ordering::Relaxed);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn snapshot_reports_errors_by_kind() {
        let stats = RemoteStats::default();
        stats.add_error(ErrorKind::Auth);
        stats.add_error(ErrorKind::Auth);
        stats.add_error(ErrorKind::Timeout);
        let snap = stats.snapshot();
        assert_eq!(snap.errors_of(ErrorKind::Auth), 2);
        assert_eq!(snap.errors_of(ErrorKind::Timeout), 1);
        assert_eq!(snap.errors_of(ErrorKind::Status), 0);
    }
}
