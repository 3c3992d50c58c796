//! Registry endpoints: the hosts that serve a registry, and their schemes.

use std::net::IpAddr;

use reqwest::Url;

use super::config::RegistryConfig;
use super::error::RemoteError;

/// One host to send registry API requests to: a mirror or the registry itself.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Endpoint {
    /// `http` or `https`.
    pub(crate) scheme: &'static str,
    /// Host name with optional port.
    pub(crate) host: String,
    /// True for configured mirrors.
    pub(crate) mirror: bool,
}

impl Endpoint {
    /// Builds `<scheme>://<host><path>`.
    pub(crate) fn url(&self, path: &str) -> Result<Url, RemoteError> {
        let text = format!("{}://{}{}", self.scheme, self.host, path);
        Url::parse(&text).map_err(|err| RemoteError::InvalidReference {
            input: text,
            reason: format!("does not form a valid URL: {err}"),
        })
    }

    /// `/v2/<repository>/blobs/<digest>`.
    pub(crate) fn blob_url(&self, repository: &str, digest: &str) -> Result<Url, RemoteError> {
        self.url(&format!("/v2/{repository}/blobs/{digest}"))
    }

    /// `/v2/<repository>/manifests/<tag or digest>`.
    pub(crate) fn manifest_url(
        &self,
        repository: &str,
        reference: &str,
    ) -> Result<Url, RemoteError> {
        self.url(&format!("/v2/{repository}/manifests/{reference}"))
    }
}

/// Lists the endpoints for `registry` (the name from an image reference): configured mirrors
/// in order, then the registry's own API host.
///
/// Docker Hub's API lives on `registry-1.docker.io`. Loopback hosts and hosts configured
/// `insecure` use plain HTTP, everything else HTTPS.
pub(crate) fn endpoints_for(registry: &str, cfg: &RegistryConfig) -> Vec<Endpoint> {
    let host_cfg = cfg.host(registry);
    let mut endpoints: Vec<Endpoint> = host_cfg
        .mirrors
        .iter()
        .map(|mirror| Endpoint {
            scheme: scheme(&mirror.host, mirror.insecure),
            host: mirror.host.clone(),
            mirror: true,
        })
        .collect();
    let api_host = api_host(registry);
    endpoints.push(Endpoint {
        scheme: scheme(api_host, host_cfg.insecure),
        host: api_host.to_owned(),
        mirror: false,
    });
    endpoints
}

fn api_host(registry: &str) -> &str {
    match registry {
        "docker.io" | "index.docker.io" => "registry-1.docker.io",
        other => other,
    }
}

fn scheme(host: &str, insecure: bool) -> &'static str {
    if insecure || is_loopback(host) {
        "http"
    } else {
        "https"
    }
}

/// Returns whether `host` (with optional port) names the local machine.
pub(crate) fn is_loopback(host: &str) -> bool {
    let name = strip_port(host);
    if name.eq_ignore_ascii_case("localhost") {
        return true;
    }
    name.trim_start_matches('[')
        .trim_end_matches(']')
        .parse::<IpAddr>()
        .is_ok_and(|ip| ip.is_loopback())
}

fn strip_port(host: &str) -> &str {
    if let Some(rest) = host.strip_prefix('[') {
        // `[v6]` or `[v6]:port`
        return rest.split(']').next().unwrap_or(rest);
    }
    match host.rsplit_once(':') {
        // More than one colon without brackets is a bare IPv6 address.
        Some((name, port)) if !name.contains(':') && port.chars().all(|c| c.is_ascii_digit()) => {
            name
        }
        _ => host,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::remote::config::{HostConfig, Mirror};

    #[test]
    fn loopback_hosts_are_recognised() {
        for host in [
            "localhost",
            "localhost:5000",
            "127.0.0.1",
            "127.0.0.1:5000",
            "[::1]",
            "[::1]:5000",
            "::1",
        ] {
            assert!(is_loopback(host), "{host}");
        }
        for host in [
            "example.com",
            "10.0.0.1:5000",
            "localhost.example.com",
            "[2001:db8::1]:5000",
        ] {
            assert!(!is_loopback(host), "{host}");
        }
    }

    #[test]
    fn mirrors_come_before_the_registry() {
        let mut cfg = RegistryConfig::default();
        cfg.hosts.insert(
            "docker.io".into(),
            HostConfig {
                mirrors: vec![Mirror {
                    host: "mirror.internal:5000".into(),
                    insecure: true,
                }],
                insecure: false,
            },
        );
        let endpoints = endpoints_for("docker.io", &cfg);
        assert_eq!(endpoints.len(), 2);
        assert_eq!(endpoints[0].host, "mirror.internal:5000");
        assert_eq!(endpoints[0].scheme, "http");
        assert!(endpoints[0].mirror);
        assert_eq!(endpoints[1].host, "registry-1.docker.io");
        assert_eq!(endpoints[1].scheme, "https");
    }

    #[test]
    fn insecure_flag_selects_plain_http() {
        let mut cfg = RegistryConfig::default();
        cfg.hosts.insert(
            "reg.lan:5000".into(),
            HostConfig {
                mirrors: vec![],
                insecure: true,
            },
        );
        assert_eq!(endpoints_for("reg.lan:5000", &cfg)[0].scheme, "http");
        assert_eq!(endpoints_for("ghcr.io", &cfg)[0].scheme, "https");
        assert_eq!(endpoints_for("127.0.0.1:5000", &cfg)[0].scheme, "http");
    }

    #[test]
    fn blob_url_has_v2_path() {
        let ep = Endpoint {
            scheme: "http",
            host: "127.0.0.1:5000".into(),
            mirror: false,
        };
        let url = ep.blob_url("lib/app", "sha256:abc").unwrap();
        assert_eq!(
            url.as_str(),
            "http://127.0.0.1:5000/v2/lib/app/blobs/sha256:abc"
        );
    }
}
