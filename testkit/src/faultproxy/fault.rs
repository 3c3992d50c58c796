//! Fault kinds and the rules that choose which request gets which fault.

use std::time::Duration;

/// How long a stalled response waits.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Stall {
    /// Wait this long, then carry on with the normal response.
    For(Duration),
    /// Never carry on. The response ends only when the client gives up or the proxy stops.
    Forever,
}

/// One misbehaviour of the proxy for one request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Fault {
    /// Close the connection after reading the request, without sending a response.
    Reset,
    /// Wait before sending the status line and headers.
    StallHeaders(Stall),
    /// Send the headers and the first half of the body, then wait.
    StallBody(Stall),
    /// Respond with this status (such as 500, 502 or 503) and a short JSON error body.
    Status(u16),
    /// Respond with 429 and `Retry-After` set to this many seconds.
    TooManyRequests {
        /// Value of the `Retry-After` header, in seconds.
        retry_after_secs: u64,
    },
    /// Announce the full `Content-Length`, send half of the body, then close the connection.
    Truncate,
    /// Invert one byte in the middle of the body and keep every header.
    FlipBytes,
    /// Respond to a range request with 200 and the whole blob. Requests without `Range` pass.
    RangeAsFull,
    /// Answer a range request with 206, the requested bytes, and a `Content-Range` one byte
    /// off from them. Requests without `Range` pass.
    WrongContentRange,
    /// Invalidate every bearer token issued so far and reject this request with this status:
    /// 401 with a `WWW-Authenticate` challenge, or 403. Needs [`super::ProxyOptions::token_auth`].
    ExpireToken {
        /// 401 or 403.
        status: u16,
    },
    /// Answer a storage request with 403 as an expired signed URL does. Needs
    /// [`super::ProxyOptions::storage_redirect`].
    ExpireSignedUrl,
}

impl Fault {
    /// Returns the name under which the proxy counts this fault, such as `status_503`.
    pub fn name(&self) -> String {
        match self {
            Fault::Reset => "reset".into(),
            Fault::StallHeaders(Stall::For(_)) => "stall_headers".into(),
            Fault::StallHeaders(Stall::Forever) => "stall_headers_forever".into(),
            Fault::StallBody(Stall::For(_)) => "stall_body".into(),
            Fault::StallBody(Stall::Forever) => "stall_body_forever".into(),
            Fault::Status(status) => format!("status_{status}"),
            Fault::TooManyRequests { .. } => "status_429_retry_after".into(),
            Fault::Truncate => "truncate".into(),
            Fault::FlipBytes => "flip_bytes".into(),
            Fault::RangeAsFull => "range_as_full".into(),
            Fault::WrongContentRange => "wrong_content_range".into(),
            Fault::ExpireToken { status } => format!("expire_token_{status}"),
            Fault::ExpireSignedUrl => "expire_signed_url".into(),
        }
    }
}

/// Selects requests for a fault.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Rule {
    /// The fault to inject.
    pub fault: Fault,
    /// Only requests whose path contains this text match, such as `/blobs/`.
    pub path_contains: Option<String>,
    /// Only requests with a `Range` header match.
    pub ranged_only: bool,
    /// Of the matching requests, only every `every`-th gets the fault (1: all of them).
    pub every: u64,
}

impl Rule {
    /// Returns a rule that injects `fault` into every blob request.
    pub fn blobs(fault: Fault) -> Rule {
        Rule {
            fault,
            path_contains: Some("/blobs/".into()),
            ranged_only: false,
            every: 1,
        }
    }

    /// Restricts the rule to range requests.
    pub fn ranged(mut self) -> Rule {
        self.ranged_only = true;
        self
    }

    /// Injects the fault into every `every`-th matching request only.
    pub fn every(mut self, every: u64) -> Rule {
        self.every = every.max(1);
        self
    }
}

/// The faults the proxy injects, switchable at run time through [`super::FaultHandle`].
#[derive(Debug, Clone, PartialEq, Default)]
pub enum FaultPlan {
    /// Forward every request unchanged.
    #[default]
    None,
    /// The first rule that matches a request (and whose `every` count comes up) applies.
    Rules(Vec<Rule>),
    /// Each request whose path contains `path_contains` gets a fault with probability
    /// `rate`, drawn uniformly from `faults` by a generator seeded with `seed`.
    Random {
        /// Seed of the generator, so a failing mix can be replayed.
        seed: u64,
        /// Probability in `[0, 1]` that a matching request gets a fault.
        rate: f64,
        /// Faults to draw from.
        faults: Vec<Fault>,
        /// Only requests whose path contains this text are candidates.
        path_contains: Option<String>,
    },
}

/// Facts about a request that rules match on.
#[derive(Debug, Clone, Copy)]
pub(crate) struct RequestFacts<'a> {
    pub(crate) path: &'a str,
    pub(crate) ranged: bool,
}

impl Rule {
    pub(crate) fn matches(&self, facts: &RequestFacts<'_>) -> bool {
        let path_matches = self
            .path_contains
            .as_deref()
            .is_none_or(|text| facts.path.contains(text));
        path_matches && (!self.ranged_only || facts.ranged)
    }
}

/// A small deterministic generator (SplitMix64), enough to pick faults reproducibly.
#[derive(Debug, Clone)]
pub(crate) struct SplitMix64(u64);

impl SplitMix64 {
    pub(crate) fn new(seed: u64) -> Self {
        SplitMix64(seed)
    }

    pub(crate) fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    /// Returns a number in `[0, 1)`.
    pub(crate) fn next_unit(&mut self) -> f64 {
        (self.next_u64() >> 11) as f64 / (1u64 << 53) as f64
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn splitmix_is_reproducible() {
        let mut a = SplitMix64::new(7);
        let mut b = SplitMix64::new(7);
        for _ in 0..100 {
            assert_eq!(a.next_u64(), b.next_u64());
        }
        let unit = SplitMix64::new(1).next_unit();
        assert!((0.0..1.0).contains(&unit), "{unit}");
    }

    #[test]
    fn rule_matches_path_and_range() {
        let rule = Rule::blobs(Fault::Reset).ranged();
        let blob = RequestFacts {
            path: "/v2/a/blobs/sha256:00",
            ranged: true,
        };
        let manifest = RequestFacts {
            path: "/v2/a/manifests/latest",
            ranged: true,
        };
        let whole = RequestFacts {
            path: "/v2/a/blobs/sha256:00",
            ranged: false,
        };
        assert!(rule.matches(&blob));
        assert!(!rule.matches(&manifest));
        assert!(!rule.matches(&whole));
    }
}
