//! The configuration of `lazypull serve`, read from TOML.
//!
//! The read path's own sections are embedded as they are: `[cache]` is
//! [`CacheConfig`], `[fetch]` is [`FetchConfig`], `[prefetch]` is [`PrefetchConfig`] and
//! `[registry]` is [`RegistryConfig`] (timeouts, retries, mirrors and plain-HTTP hosts). Every
//! section rejects unknown fields, every field has a default (so an empty file is a valid
//! config), and [`ServeConfig::validate`] names the field of the first invalid value.
//!
//! ```
//! use lazypull_snapshotter::config::ServeConfig;
//!
//! let config = ServeConfig::parse(r#"
//!     socket = "/run/lazypull/lazypull.sock"
//!     root = "/var/lib/lazypull"
//!
//!     [cache]
//!     memory_bytes = 268435456
//!     disk_bytes = 21474836480
//!
//!     [registry.hosts."registry.local:5000"]
//!     insecure = true
//!
//!     [metrics]
//!     address = "127.0.0.1:8234"
//! "#).unwrap();
//! assert_eq!(config.cache.disk_bytes, 20 << 30);
//! assert_eq!(config.cache_dir(), std::path::Path::new("/var/lib/lazypull/cache"));
//! ```

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::Deserialize;

use crate::cache::CacheConfig;
use crate::cache::config::duration_text;
use crate::fetch::{FetchConfig, PrefetchConfig};
use crate::fs::fuse::MAX_FUSE_THREADS;
use crate::layer::{DEFAULT_TOC_TAIL_BYTES, LayerConfig};
use crate::remote::{RegistryConfig, RemoteError};

/// Default gRPC socket.
pub const DEFAULT_SOCKET: &str = "/run/lazypull/lazypull.sock";
/// Default state directory.
pub const DEFAULT_ROOT: &str = "/var/lib/lazypull";

/// Everything `lazypull serve` reads from its config file.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ServeConfig {
    /// Unix socket of the snapshots gRPC service; containerd's `proxy_plugins` address.
    pub socket: PathBuf,
    /// State directory: snapshot metadata and directories, persisted TOCs, and (unless
    /// `cache.disk_dir` says otherwise) the disk chunk cache.
    pub root: PathBuf,
    /// Mount layers lazily even when their TOC digest is unknown (no
    /// `containerd.io/snapshot/stargz/toc.digest` label), so their metadata is not verified.
    pub allow_unverified: bool,
    /// Bytes read from the end of a layer blob in the first request when it opens; a larger
    /// TOC costs a second request.
    pub toc_tail_bytes: u64,
    /// Time limits of the daemon.
    pub timeouts: Timeouts,
    /// FUSE settings.
    pub fuse: FuseConfig,
    /// The chunk cache.
    pub cache: CacheConfig,
    /// Chunk fetching.
    pub fetch: FetchConfig,
    /// Prefetch and background fetch.
    pub prefetch: PrefetchConfig,
    /// Registry access: timeouts, retries, mirrors, plain-HTTP hosts.
    pub registry: RegistryConfig,
    /// The Prometheus endpoint.
    pub metrics: MetricsConfig,
}

/// Time limits.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Timeouts {
    /// Longest time to resolve and open one remote layer (blob size, footer, TOC); after it
    /// the layer falls back to an ordinary download by containerd.
    #[serde(with = "duration_text")]
    pub resolve: Duration,
    /// Longest wait for a chain's prefetch on its first Mounts or View.
    #[serde(with = "duration_text")]
    pub prefetch_wait: Duration,
    /// How long a successful reachability check of a remote layer is trusted before mounts
    /// that use it check again; `0s` checks every time.
    #[serde(with = "duration_text")]
    pub check_interval: Duration,
    /// Longest time one FUSE read may wait for the network before it fails with EIO.
    #[serde(with = "duration_text")]
    pub read: Duration,
    /// How long a layer resolved ahead of its Prepare (from the layers label) is kept unused.
    #[serde(with = "duration_text")]
    pub resolve_ttl: Duration,
}

impl Default for Timeouts {
    fn default() -> Self {
        Timeouts {
            resolve: Duration::from_secs(30),
            prefetch_wait: Duration::from_secs(10),
            check_interval: Duration::from_secs(60),
            read: Duration::from_secs(60),
            resolve_ttl: Duration::from_secs(120),
        }
    }
}

/// FUSE settings.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct FuseConfig {
    /// Request threads per mounted layer, each with its own `/dev/fuse` descriptor.
    pub threads: usize,
}

impl Default for FuseConfig {
    fn default() -> Self {
        FuseConfig { threads: 4 }
    }
}

/// The Prometheus endpoint.
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct MetricsConfig {
    /// TCP address serving `/metrics`, such as `127.0.0.1:8234`; no endpoint when absent.
    pub address: Option<SocketAddr>,
}

impl Default for ServeConfig {
    fn default() -> Self {
        ServeConfig {
            socket: PathBuf::from(DEFAULT_SOCKET),
            root: PathBuf::from(DEFAULT_ROOT),
            allow_unverified: false,
            toc_tail_bytes: DEFAULT_TOC_TAIL_BYTES,
            timeouts: Timeouts::default(),
            fuse: FuseConfig::default(),
            cache: CacheConfig::default(),
            fetch: FetchConfig::default(),
            prefetch: PrefetchConfig::default(),
            registry: RegistryConfig::default(),
            metrics: MetricsConfig::default(),
        }
    }
}

/// A config that cannot be read, parsed or used.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    /// The file could not be read.
    #[error("failed to read config file {path}")]
    Read {
        /// The file.
        path: PathBuf,
        /// The cause.
        #[source]
        source: std::io::Error,
    },
    /// The text is not valid TOML for this config; the message names the key.
    #[error("invalid config{}", .path.as_ref().map(|p| format!(" file {}", p.display())).unwrap_or_default())]
    Parse {
        /// The file, when read from one.
        path: Option<PathBuf>,
        /// The parser's message, with line and key.
        #[source]
        source: toml::de::Error,
    },
    /// A value is out of range.
    #[error("{field}: {reason}")]
    Invalid {
        /// Dotted path of the field, such as `cache.disk_bytes`.
        field: String,
        /// What the value must be.
        reason: String,
    },
}

impl ConfigError {
    fn invalid(field: impl Into<String>, reason: impl Into<String>) -> ConfigError {
        ConfigError::Invalid {
            field: field.into(),
            reason: reason.into(),
        }
    }
}

impl ServeConfig {
    /// Reads, parses and validates the config file at `path`.
    pub fn load(path: &Path) -> Result<ServeConfig, ConfigError> {
        let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
            path: path.to_owned(),
            source,
        })?;
        let config: ServeConfig = toml::from_str(&text).map_err(|source| ConfigError::Parse {
            path: Some(path.to_owned()),
            source,
        })?;
        config.validate()?;
        Ok(config)
    }

    /// Parses and validates config text.
    pub fn parse(text: &str) -> Result<ServeConfig, ConfigError> {
        let config: ServeConfig =
            toml::from_str(text).map_err(|source| ConfigError::Parse { path: None, source })?;
        config.validate()?;
        Ok(config)
    }

    /// Checks values that parse but cannot work; the error names the first bad field.
    pub fn validate(&self) -> Result<(), ConfigError> {
        if self.socket.as_os_str().is_empty() {
            return Err(ConfigError::invalid("socket", "must not be empty"));
        }
        if !self.socket.is_absolute() {
            return Err(ConfigError::invalid("socket", "must be an absolute path"));
        }
        if !self.root.is_absolute() {
            return Err(ConfigError::invalid("root", "must be an absolute path"));
        }
        if !(1..=MAX_FUSE_THREADS).contains(&self.fuse.threads) {
            return Err(ConfigError::invalid(
                "fuse.threads",
                format!("must be between 1 and {MAX_FUSE_THREADS}"),
            ));
        }
        for (field, value) in [
            ("timeouts.resolve", self.timeouts.resolve),
            ("timeouts.read", self.timeouts.read),
            ("timeouts.resolve_ttl", self.timeouts.resolve_ttl),
        ] {
            if value.is_zero() {
                return Err(ConfigError::invalid(field, "must be greater than 0s"));
            }
        }
        // The embedded cache section allows a zero disk budget without a directory (memory
        // only), but the daemon always has a disk tier: under `root` by default.
        if self.cache.disk_bytes == 0 {
            return Err(ConfigError::invalid("cache.disk_bytes", "must be > 0"));
        }
        self.layer_config()
            .validate()
            .map_err(|error| ConfigError::invalid(error.field, error.reason))?;
        match self.registry.validate() {
            Ok(()) => Ok(()),
            Err(RemoteError::InvalidConfig { field, reason }) => {
                Err(ConfigError::invalid(format!("registry.{field}"), reason))
            }
            Err(other) => Err(ConfigError::invalid("registry", other.to_string())),
        }
    }

    /// The directory of the disk chunk cache: `cache.disk_dir`, or `<root>/cache`.
    pub fn cache_dir(&self) -> PathBuf {
        self.cache
            .disk_dir
            .clone()
            .unwrap_or_else(|| self.root.join("cache"))
    }

    /// The cache section with the disk directory filled in.
    pub fn effective_cache(&self) -> CacheConfig {
        CacheConfig {
            disk_dir: Some(self.cache_dir()),
            ..self.cache.clone()
        }
    }

    /// The settings every lazily read layer gets.
    pub fn layer_config(&self) -> LayerConfig {
        LayerConfig {
            allow_unverified: self.allow_unverified,
            toc_tail_bytes: self.toc_tail_bytes,
            cache: self.effective_cache(),
            fetch: self.fetch.clone(),
            prefetch: self.prefetch.clone(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn invalid_field(text: &str) -> String {
        match ServeConfig::parse(text).unwrap_err() {
            ConfigError::Invalid { field, .. } => field,
            other => panic!("expected an invalid field, got {other}"),
        }
    }

    #[test]
    fn empty_file_gives_defaults() {
        let config = ServeConfig::parse("").unwrap();
        assert_eq!(config, ServeConfig::default());
        assert_eq!(config.socket, Path::new(DEFAULT_SOCKET));
        assert_eq!(config.cache_dir(), Path::new("/var/lib/lazypull/cache"));
        assert_eq!(config.timeouts.prefetch_wait, Duration::from_secs(10));
    }

    #[test]
    fn sections_of_the_read_path_are_embedded() {
        let config = ServeConfig::parse(
            r#"
            allow_unverified = true
            [timeouts]
            prefetch_wait = "2s"
            check_interval = "0s"
            [prefetch]
            prefetch_default_bytes = 1048576
            background = false
            [fetch]
            merge_gap_bytes = 0
            [cache]
            disk_dir = "/srv/chunks"
            [registry]
            request_timeout = "5s"
            [registry.hosts."docker.io"]
            mirrors = [{ host = "mirror.local:5000", insecure = true }]
            [metrics]
            address = "127.0.0.1:9000"
            "#,
        )
        .unwrap();
        assert!(config.allow_unverified);
        assert_eq!(config.timeouts.check_interval, Duration::ZERO);
        assert_eq!(config.prefetch.prefetch_default_bytes, 1 << 20);
        assert!(!config.prefetch.background);
        assert_eq!(config.fetch.merge_gap_bytes, 0);
        assert_eq!(config.cache_dir(), Path::new("/srv/chunks"));
        assert_eq!(
            config.registry.hosts["docker.io"].mirrors[0].host,
            "mirror.local:5000"
        );
        assert_eq!(
            config.metrics.address,
            Some("127.0.0.1:9000".parse().unwrap())
        );
    }

    #[test]
    fn unknown_fields_are_rejected_with_their_name() {
        for text in [
            "sockets = \"/x\"",
            "[cache]\nmemory = 1",
            "[registry]\ntimeout = \"1s\"",
            "[metrics]\naddr = \"x\"",
        ] {
            let error = ServeConfig::parse(text).unwrap_err();
            let message = format!("{}", std::error::Error::source(&error).unwrap());
            assert!(message.contains("unknown field"), "{text}: {message}");
        }
    }

    #[test]
    fn invalid_values_name_their_field() {
        assert_eq!(invalid_field("[cache]\ndisk_bytes = 0"), "cache.disk_bytes");
        assert_eq!(invalid_field("socket = \"relative.sock\""), "socket");
        assert_eq!(invalid_field("root = \"var/lib\""), "root");
        assert_eq!(invalid_field("[fuse]\nthreads = 0"), "fuse.threads");
        assert_eq!(invalid_field("[fuse]\nthreads = 30000"), "fuse.threads");
        assert_eq!(
            invalid_field("[timeouts]\nresolve = \"0s\""),
            "timeouts.resolve"
        );
        assert_eq!(
            invalid_field("[fetch]\nparallel_requests = 0"),
            "fetch.parallel_requests"
        );
        assert_eq!(
            invalid_field("[prefetch]\nconcurrency = 0"),
            "prefetch.concurrency"
        );
        assert_eq!(
            invalid_field("[registry]\nrequest_timeout = \"0s\""),
            "registry.request_timeout"
        );
        assert_eq!(invalid_field("toc_tail_bytes = 10"), "toc_tail_bytes");
    }

    #[test]
    fn disk_budget_message_reads_as_field_and_reason() {
        let error = ServeConfig::parse("[cache]\ndisk_bytes = 0").unwrap_err();
        assert_eq!(error.to_string(), "cache.disk_bytes: must be > 0");
    }

    #[test]
    fn documented_example_config_is_valid() {
        let doc = include_str!("../../../docs/containerd.md");
        let start = doc
            .find("```toml\n")
            .expect("docs/containerd.md has a TOML block")
            + "```toml\n".len();
        let end = start + doc[start..].find("```").expect("the TOML block ends");
        let config = ServeConfig::parse(&doc[start..end]).unwrap();
        assert_eq!(config.socket, Path::new("/run/lazypull/lazypull.sock"));
        assert_eq!(config.registry.hosts["docker.io"].mirrors.len(), 1);
        assert_eq!(
            config,
            ServeConfig {
                registry: config.registry.clone(),
                metrics: config.metrics.clone(),
                ..ServeConfig::default()
            }
        );
    }

    #[test]
    fn bad_durations_are_parse_errors() {
        let error = ServeConfig::parse("[timeouts]\nread = \"soon\"").unwrap_err();
        assert!(matches!(error, ConfigError::Parse { .. }), "{error}");
    }
}
