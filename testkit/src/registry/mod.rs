//! A real OCI registry on 127.0.0.1 for tests.
//!
//! [`Registry::start`] runs Debian's `docker-registry` (CNCF distribution 2.8) with a
//! private storage directory, a generated config with blob deletion enabled, and a free
//! port chosen on 127.0.0.1. Its JSON log goes to a file, and [`Registry::access_log`]
//! parses it so a test can count requests and the bytes served per blob.
//!
//! Dropping the handle stops the daemon and deletes its storage.

mod access_log;
mod http_probe;

use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use anyhow::Context;

pub use access_log::{AccessEntry, blob_digest_of};

use crate::prereq::find_binary;
use crate::process::{Daemon, run_checked, wait_until};

/// Names under which Debian and upstream install the distribution binary.
const BINARY_NAMES: [&str; 2] = ["docker-registry", "registry"];

/// How long the registry gets to answer `GET /v2/` after it starts.
const READY_TIMEOUT: Duration = Duration::from_secs(15);

/// How many times a start is retried when the chosen port was taken meanwhile.
const START_ATTEMPTS: usize = 5;

/// A running registry. Stopped and deleted on drop.
#[derive(Debug)]
pub struct Registry {
    // Field order matters: the daemon must stop before its directory is removed.
    daemon: Daemon,
    port: u16,
    dir: tempfile::TempDir,
}

impl Registry {
    /// Starts a registry on a free port of 127.0.0.1 and waits until `/v2/` answers 200.
    ///
    /// Fails when the binary is missing, the process exits, or it does not answer within
    /// 15 seconds; the error carries the end of the registry's log.
    pub fn start() -> anyhow::Result<Registry> {
        let binary = BINARY_NAMES
            .iter()
            .find_map(|name| find_binary(name))
            .context("docker-registry not found on PATH; run scripts/setup.sh")?;
        let mut last_error = None;
        for _ in 0..START_ATTEMPTS {
            match Self::start_once(&binary) {
                Ok(registry) => return Ok(registry),
                Err(err) => last_error = Some(err),
            }
        }
        Err(last_error.unwrap_or_else(|| anyhow::anyhow!("registry never started")))
    }

    fn start_once(binary: &Path) -> anyhow::Result<Registry> {
        let dir = tempfile::Builder::new()
            .prefix("lazypull-registry-")
            .tempdir()
            .context("failed to create the registry directory")?;
        let port = free_port()?;
        let storage = dir.path().join("storage");
        std::fs::create_dir(&storage)?;
        let config = dir.path().join("config.yml");
        std::fs::write(&config, config_yaml(&storage, port))
            .with_context(|| format!("failed to write {}", config.display()))?;

        let mut command = Command::new(binary);
        command.arg("serve").arg(&config);
        // Keep the daemon away from any config or secret in the caller's environment.
        for (key, _) in std::env::vars_os() {
            if key.to_string_lossy().starts_with("REGISTRY_") {
                command.env_remove(&key);
            }
        }
        let log = dir.path().join("registry.log");
        let mut daemon = Daemon::spawn(command, &log, Duration::from_secs(5))?;

        let ready = wait_until(READY_TIMEOUT, || {
            daemon.ensure_running().is_ok() && http_probe::get_status(port, "/v2/") == Some(200)
        });
        daemon.ensure_running()?;
        if !ready {
            anyhow::bail!(
                "registry on port {port} did not answer /v2/ within {READY_TIMEOUT:?}; log tail:\n{}",
                daemon.log_tail(40)
            );
        }
        Ok(Registry { daemon, port, dir })
    }

    /// Returns the address, `127.0.0.1:PORT`, as used in image references.
    pub fn host(&self) -> String {
        format!("127.0.0.1:{}", self.port)
    }

    /// Returns the base URL, `http://127.0.0.1:PORT`.
    pub fn url(&self) -> String {
        format!("http://{}", self.host())
    }

    /// Returns the TCP port.
    pub fn port(&self) -> u16 {
        self.port
    }

    /// Returns the process id of the registry daemon.
    pub fn pid(&self) -> u32 {
        self.daemon.pid()
    }

    /// Returns the registry's storage directory (filesystem driver root).
    pub fn storage_dir(&self) -> PathBuf {
        self.dir.path().join("storage")
    }

    /// Returns the file that receives the registry's stdout and stderr.
    pub fn log_path(&self) -> PathBuf {
        self.dir.path().join("registry.log")
    }

    /// Returns every request the registry has logged so far, oldest first.
    ///
    /// The registry writes a record only after it finished the response, which can be
    /// just after the client has read the last byte. So this waits until the log file
    /// stops growing for 50 ms (at most 2 s) before parsing it.
    pub fn access_log(&self) -> Vec<AccessEntry> {
        let path = self.log_path();
        let size = || std::fs::metadata(&path).map(|meta| meta.len()).unwrap_or(0);
        let mut last = size();
        let _ = wait_until(Duration::from_secs(2), || {
            std::thread::sleep(Duration::from_millis(50));
            let now = size();
            let settled = now == last;
            last = now;
            settled
        });
        access_log::parse(&std::fs::read_to_string(&path).unwrap_or_default())
    }

    /// Sums the body bytes written for every GET of the blob `digest` (`sha256:<hex>`), in
    /// any repository and with any status.
    ///
    /// The filesystem storage driver serves blobs itself, so there are no redirects whose
    /// targets would need counting.
    pub fn blob_bytes_served(&self, digest: &str) -> u64 {
        self.access_log()
            .iter()
            .filter(|entry| entry.is_blob_get(digest))
            .map(|entry| entry.bytes_written)
            .sum()
    }

    /// Pushes the image tagged `tag` in the OCI layout `dir` to `repo_ref` (such as
    /// `python:latest`) in this registry with `skopeo copy --preserve-digests`, keeping the
    /// manifest, its media types and the blob bytes as they are.
    ///
    /// Returns the full reference, `127.0.0.1:PORT/<repo_ref>`.
    pub fn push_oci_layout(&self, dir: &Path, tag: &str, repo_ref: &str) -> anyhow::Result<String> {
        let reference = format!("{}/{repo_ref}", self.host());
        push_oci_layout_to(dir, tag, &reference)?;
        Ok(reference)
    }
}

/// Copies the image `tag` of the OCI layout `dir` to `reference` (`HOST:PORT/REPO:TAG`)
/// over plain HTTP with skopeo, preserving digests.
pub fn push_oci_layout_to(dir: &Path, tag: &str, reference: &str) -> anyhow::Result<()> {
    let skopeo = find_binary("skopeo").context("skopeo not found on PATH; run scripts/setup.sh")?;
    let source = format!("oci:{}:{tag}", dir.display());
    let destination = format!("docker://{reference}");
    run_checked(
        Command::new(skopeo)
            // The machine's policy.json may reject unsigned images; these are ours.
            .arg("--insecure-policy")
            .args([
                "copy",
                "--quiet",
                "--preserve-digests",
                "--dest-tls-verify=false",
            ])
            .arg(&source)
            .arg(&destination),
    )
    .with_context(|| format!("failed to push {source} to {destination}"))?;
    Ok(())
}

/// Reserves nothing: binds port 0, reads the port and releases it. Another process could
/// take it before the registry binds, so callers retry on failure.
fn free_port() -> anyhow::Result<u16> {
    let listener = TcpListener::bind("127.0.0.1:0").context("failed to bind 127.0.0.1:0")?;
    Ok(listener.local_addr()?.port())
}

fn config_yaml(storage: &Path, port: u16) -> String {
    // The secret only signs upload state between requests of this single instance.
    format!(
        "version: 0.1\n\
         log:\n  level: info\n  formatter: json\n  accesslog:\n    disabled: true\n\
         storage:\n  filesystem:\n    rootdirectory: {storage}\n  delete:\n    enabled: true\n  \
         maintenance:\n    uploadpurging:\n      enabled: false\n\
         http:\n  addr: 127.0.0.1:{port}\n  secret: lazypull-test-registry\n",
        storage = storage.display(),
    )
}
