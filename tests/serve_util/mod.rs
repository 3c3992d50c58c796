//! Shared helpers of the `serve_*` tests: the `lazypull serve` daemon as a child process, a
//! private containerd that uses it as a proxy snapshotter, and the converted python image.

#![allow(dead_code)]

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::OnceLock;
use std::time::{Duration, Instant};

use anyhow::Context;
use lazypull_testkit::containerd::{Containerd, ContainerdOptions};
use lazypull_testkit::image::{PYTHON_IMAGE_TAG, cache_dir, python_image};
use lazypull_testkit::registry::Registry;
use serde_json::Value;
use sha2::{Digest, Sha256};

/// Name of the proxy snapshotter in the containerd config.
pub const SNAPSHOTTER: &str = "lazypull";

/// How long the daemon gets to report ready (restores included).
const READY_TIMEOUT: Duration = Duration::from_secs(60);

/// A `lazypull serve` process with its own root, socket, config and log. Killed on drop, and
/// every mount below its root is detached.
pub struct Serve {
    dir: tempfile::TempDir,
    child: Option<Child>,
    metrics_port: u16,
}

impl Serve {
    /// Writes a config (socket, root and metrics address inside a new temporary directory, plus
    /// `extra` TOML) and starts the daemon.
    pub fn start(extra: &str) -> anyhow::Result<Serve> {
        let dir = tempfile::Builder::new()
            .prefix("lazypull-serve-")
            .tempdir()?;
        let metrics_port = free_port()?;
        let config = format!(
            "socket = {socket:?}\nroot = {root:?}\n{extra}\n[metrics]\naddress = \"127.0.0.1:{metrics_port}\"\n",
            socket = dir.path().join("lazypull.sock").display().to_string(),
            root = dir.path().join("root").display().to_string(),
        );
        std::fs::write(dir.path().join("config.toml"), config)?;
        let mut serve = Serve {
            dir,
            child: None,
            metrics_port,
        };
        serve.spawn()?;
        Ok(serve)
    }

    fn spawn(&mut self) -> anyhow::Result<()> {
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(self.log_path())?;
        let offset = log.metadata()?.len();
        let child = Command::new(env!("CARGO_BIN_EXE_lazypull"))
            .args(["--log-format", "json", "serve", "--config"])
            .arg(self.dir.path().join("config.toml"))
            .env("RUST_LOG", "info,lazypull_snapshotter=debug")
            .stdin(Stdio::null())
            .stdout(log.try_clone()?)
            .stderr(log)
            .spawn()
            .context("failed to start lazypull serve")?;
        self.child = Some(child);
        let started = Instant::now();
        loop {
            let text = self.log_since(offset);
            if text.contains("lazypull snapshotter ready") {
                return Ok(());
            }
            if let Some(status) = self
                .child
                .as_mut()
                .and_then(|child| child.try_wait().ok().flatten())
            {
                anyhow::bail!(
                    "lazypull serve exited with {status} before it was ready; log:\n{text}"
                );
            }
            if started.elapsed() > READY_TIMEOUT {
                anyhow::bail!(
                    "lazypull serve was not ready within {READY_TIMEOUT:?}; log:\n{text}"
                );
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// Starts the daemon again with the same config and root.
    pub fn restart(&mut self) -> anyhow::Result<()> {
        anyhow::ensure!(self.child.is_none(), "the daemon still runs");
        self.spawn()
    }

    /// Sends SIGTERM and waits for the exit.
    pub fn terminate(&mut self) -> anyhow::Result<ExitStatus> {
        self.signal_and_wait("TERM")
    }

    /// Sends SIGKILL and waits for the exit.
    pub fn kill(&mut self) -> anyhow::Result<ExitStatus> {
        self.signal_and_wait("KILL")
    }

    fn signal_and_wait(&mut self, signal: &str) -> anyhow::Result<ExitStatus> {
        let mut child = self.child.take().context("the daemon is not running")?;
        // The child is not reaped before the wait below, so its pid still names it.
        let status = Command::new("kill")
            .arg(format!("-{signal}"))
            .arg(child.id().to_string())
            .status()?;
        anyhow::ensure!(status.success(), "kill -{signal} {} failed", child.id());
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            if let Some(status) = child.try_wait()? {
                return Ok(status);
            }
            if Instant::now() > deadline {
                let _ = child.kill();
                anyhow::bail!("lazypull serve did not exit within 60 s of SIG{signal}");
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// The gRPC socket.
    pub fn socket(&self) -> PathBuf {
        self.dir.path().join("lazypull.sock")
    }

    /// The daemon's root directory.
    pub fn root(&self) -> PathBuf {
        self.dir.path().join("root")
    }

    fn log_path(&self) -> PathBuf {
        self.dir.path().join("serve.log")
    }

    fn log_since(&self, offset: u64) -> String {
        let text = std::fs::read(self.log_path()).unwrap_or_default();
        String::from_utf8_lossy(text.get(offset as usize..).unwrap_or_default()).into_owned()
    }

    /// Everything the daemon logged, across restarts.
    pub fn log(&self) -> String {
        self.log_since(0)
    }

    /// The log lines as JSON objects.
    pub fn log_events(&self) -> Vec<Value> {
        self.log()
            .lines()
            .filter_map(|line| serde_json::from_str(line).ok())
            .collect()
    }

    /// The Prometheus text from `/metrics`.
    pub fn metrics(&self) -> anyhow::Result<String> {
        use std::io::Read;
        let mut stream = std::net::TcpStream::connect(("127.0.0.1", self.metrics_port))?;
        stream.write_all(b"GET /metrics HTTP/1.1\r\nHost: localhost\r\n\r\n")?;
        let mut response = String::new();
        stream.read_to_string(&mut response)?;
        let (head, body) = response
            .split_once("\r\n\r\n")
            .context("response without a head")?;
        anyhow::ensure!(head.starts_with("HTTP/1.1 200"), "metrics answered {head}");
        Ok(body.to_owned())
    }
}

impl Drop for Serve {
    fn drop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
        for (mount_point, error) in lazypull_testkit::mounts::unmount_all_under(self.dir.path()) {
            eprintln!(
                "serve cleanup: failed to unmount {}: {error}",
                mount_point.display()
            );
        }
    }
}

fn free_port() -> anyhow::Result<u16> {
    let listener = std::net::TcpListener::bind("127.0.0.1:0")?;
    Ok(listener.local_addr()?.port())
}

/// A registry, the daemon and a containerd that declares it as proxy snapshotter. Fields drop
/// in order: containerd (and its containers) first, then the daemon, then the registry.
pub struct Stack {
    /// containerd.
    pub containerd: Containerd,
    /// The daemon.
    pub serve: Serve,
    /// The registry.
    pub registry: Registry,
}

impl Stack {
    /// Starts all three; `extra` goes into the daemon's config.
    pub fn start(extra: &str) -> anyhow::Result<Stack> {
        let registry = Registry::start()?;
        let serve = Serve::start(extra)?;
        let options = ContainerdOptions::default().proxy_snapshotter(SNAPSHOTTER, serve.socket());
        let containerd = Containerd::start(options)?;
        Ok(Stack {
            containerd,
            serve,
            registry,
        })
    }

    /// Restarts the daemon and waits until containerd reaches it again: after a failed dial,
    /// containerd 1.6 waits up to about 3 s before it dials a proxy snapshotter again.
    pub fn restart_serve(&mut self) -> anyhow::Result<()> {
        self.serve.restart()?;
        let reached = wait_until(Duration::from_secs(30), || {
            self.containerd
                .ctr(["snapshots", "--snapshotter", SNAPSHOTTER, "usage"])
                .status
                .success()
        });
        anyhow::ensure!(
            reached,
            "containerd did not reach the restarted daemon within 30 s"
        );
        Ok(())
    }

    /// Runs `ctr ARGS` and returns stdout, failing with stderr and the daemon's log tail.
    pub fn ctr(&self, args: &[&str]) -> String {
        let output = self.containerd.ctr(args);
        assert!(
            output.status.success(),
            "ctr {} failed: {}\nlazypull log tail:\n{}",
            args.join(" "),
            String::from_utf8_lossy(&output.stderr),
            tail(&self.serve.log(), 40)
        );
        String::from_utf8_lossy(&output.stdout).into_owned()
    }

    /// Runs `ctr snapshots --snapshotter lazypull ARGS`.
    pub fn snapshots(&self, args: &[&str]) -> String {
        let mut all = vec!["snapshots", "--snapshotter", SNAPSHOTTER];
        all.extend_from_slice(args);
        self.ctr(&all)
    }

    /// `ctr-remote image rpull --plain-http --snapshotter lazypull REFERENCE`, timed.
    pub fn rpull(&self, reference: &str) -> Duration {
        let started = Instant::now();
        let output = self.containerd.ctr_remote([
            "image",
            "rpull",
            "--plain-http",
            "--snapshotter",
            SNAPSHOTTER,
            reference,
        ]);
        let elapsed = started.elapsed();
        assert!(
            output.status.success(),
            "rpull {reference} failed: {}\nlazypull log tail:\n{}",
            String::from_utf8_lossy(&output.stderr),
            tail(&self.serve.log(), 40)
        );
        elapsed
    }

    /// `ctr run --snapshotter lazypull --rm IMAGE ID ARGS`, returning stdout.
    pub fn run(&self, image: &str, id: &str, command: &[&str]) -> String {
        let mut args = vec!["run", "--snapshotter", SNAPSHOTTER, "--rm", image, id];
        args.extend_from_slice(command);
        self.ctr(&args)
    }
}

/// The last `lines` lines of `text`.
pub fn tail(text: &str, lines: usize) -> String {
    let all: Vec<&str> = text.lines().collect();
    all[all.len().saturating_sub(lines)..].join("\n")
}

/// The python workload of the tests.
pub const PYTHON_WORKLOAD: [&str; 3] = ["python3", "-c", "import sqlite3, json; print(42)"];

/// The python test image converted with `lazypull convert`, cached next to the source image
/// and converted again when the source changes.
pub fn converted_python() -> &'static Path {
    static LAYOUT: OnceLock<PathBuf> = OnceLock::new();
    LAYOUT.get_or_init(|| {
        let source = python_image().expect("python test image builds");
        let source_index =
            std::fs::read(source.join("index.json")).expect("python layout has an index");
        let stamp = hex::encode(Sha256::digest(&source_index));
        let dir = cache_dir().join("images").join("python-esgz-serve");
        if std::fs::read_to_string(dir.join(".source-index"))
            .ok()
            .as_deref()
            == Some(stamp.as_str())
        {
            return dir;
        }
        let work = cache_dir()
            .join("images")
            .join(format!("python-esgz-serve.tmp-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&work);
        let started = Instant::now();
        let output = Command::new(env!("CARGO_BIN_EXE_lazypull"))
            .args(["convert", "--compression-level", "1"])
            .arg(format!("oci:{}:{PYTHON_IMAGE_TAG}", source.display()))
            .arg(format!("oci:{}:{PYTHON_IMAGE_TAG}", work.display()))
            .output()
            .expect("lazypull convert runs");
        assert!(
            output.status.success(),
            "lazypull convert failed: {}",
            String::from_utf8_lossy(&output.stderr)
        );
        std::fs::write(work.join(".source-index"), &stamp).unwrap();
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::rename(&work, &dir).expect("converted layout moves into the cache");
        eprintln!(
            "converted the python image in {:.1} s",
            started.elapsed().as_secs_f64()
        );
        dir
    })
}

/// The layer descriptors (digest, size) of the image tagged `tag` in the OCI layout `dir`.
pub fn layout_layers(dir: &Path, tag: &str) -> Vec<(String, u64, Option<String>)> {
    let index: Value =
        serde_json::from_slice(&std::fs::read(dir.join("index.json")).unwrap()).unwrap();
    let manifest = index["manifests"]
        .as_array()
        .unwrap()
        .iter()
        .find(|m| m["annotations"]["org.opencontainers.image.ref.name"] == tag)
        .expect("tag in layout");
    let digest = manifest["digest"]
        .as_str()
        .unwrap()
        .trim_start_matches("sha256:");
    let manifest: Value =
        serde_json::from_slice(&std::fs::read(dir.join("blobs/sha256").join(digest)).unwrap())
            .unwrap();
    manifest["layers"]
        .as_array()
        .unwrap()
        .iter()
        .map(|layer| {
            (
                layer["digest"].as_str().unwrap().to_owned(),
                layer["size"].as_u64().unwrap(),
                layer["annotations"]["containerd.io/snapshot/stargz/toc.digest"]
                    .as_str()
                    .map(str::to_owned),
            )
        })
        .collect()
}

/// Waits until `condition` holds, at most `timeout`.
pub fn wait_until(timeout: Duration, mut condition: impl FnMut() -> bool) -> bool {
    let deadline = Instant::now() + timeout;
    while Instant::now() < deadline {
        if condition() {
            return true;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    condition()
}
