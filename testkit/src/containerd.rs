//! A private containerd daemon for tests.
//!
//! [`Containerd::start`] runs `/usr/bin/containerd` with its own root, state directory,
//! socket, config file (version 2) and log file, all inside one temporary directory, and
//! optionally with proxy snapshotter plugins. `ctr` and `ctr-remote` calls go through
//! [`Containerd::ctr`] and [`Containerd::ctr_remote`], which add the socket address and a
//! namespace unique to this instance.
//!
//! Two instances can run at once. containerd 1.6 names shim sockets
//! `/run/containerd/s/<sha256 of socket address, namespace and id>` whatever its state
//! directory, and the runc shim keeps container state under
//! `/run/containerd/runc/<namespace>`, so distinct sockets and namespaces keep them apart.
//!
//! Dropping the handle kills and deletes this namespace's tasks and containers, stops the
//! daemon (SIGTERM, then SIGKILL after 10 s), kills any shim left for its socket, detaches
//! every mount under its directory and removes the directory.

use std::ffi::OsStr;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::Duration;

use anyhow::Context;

use crate::mounts;
use crate::prereq::find_binary;
use crate::process::{Daemon, send_signal, wait_until};

/// How long the daemon gets to create its socket and respond to `ctr version`.
const READY_TIMEOUT: Duration = Duration::from_secs(30);

/// Plugins a test daemon does not need: CRI (wants CNI and a sandbox image) and the
/// snapshotters that need other filesystems or block devices.
const DISABLED_PLUGINS: [&str; 6] = [
    "io.containerd.grpc.v1.cri",
    "io.containerd.snapshotter.v1.aufs",
    "io.containerd.snapshotter.v1.btrfs",
    "io.containerd.snapshotter.v1.devmapper",
    "io.containerd.snapshotter.v1.zfs",
    "io.containerd.tracing.processor.v1.otlp",
];

/// Settings for [`Containerd::start`].
#[derive(Debug, Clone, Default)]
pub struct ContainerdOptions {
    /// Proxy snapshotter plugins as (name, Unix socket path). containerd dials the socket
    /// lazily, so it need not exist yet, but the snapshotter should listen before the
    /// first pull: after a failed dial containerd backs off for up to about 3 s.
    pub proxy_snapshotters: Vec<(String, PathBuf)>,
    /// The namespace `ctr` calls use; a unique `lazypull-test-…` name when `None`.
    pub namespace: Option<String>,
    /// containerd's log level (`debug`, `info`, ...); `info` when `None`.
    pub log_level: Option<String>,
    /// Extra TOML appended to the generated config, for plugin settings a test needs.
    pub extra_config: String,
}

impl ContainerdOptions {
    /// Adds a proxy snapshotter plugin named `name` served on the Unix socket `socket`.
    pub fn proxy_snapshotter(mut self, name: &str, socket: impl Into<PathBuf>) -> Self {
        self.proxy_snapshotters
            .push((name.to_string(), socket.into()));
        self
    }
}

/// A running containerd. Stopped and cleaned up on drop.
#[derive(Debug)]
pub struct Containerd {
    daemon: Daemon,
    namespace: String,
    dir: tempfile::TempDir,
}

impl Containerd {
    /// Writes a config, starts containerd and waits until `ctr version` succeeds.
    ///
    /// Fails when containerd or ctr is missing, when the process exits, or when it does
    /// not respond within 30 s, and the error carries the end of containerd's log.
    pub fn start(opts: ContainerdOptions) -> anyhow::Result<Containerd> {
        let binary = find_binary("containerd")
            .context("containerd not found on PATH; run scripts/setup.sh")?;
        find_binary("ctr").context("ctr not found on PATH; run scripts/setup.sh")?;

        let dir = tempfile::Builder::new()
            .prefix("lazypull-containerd-")
            .tempdir()
            .context("failed to create the containerd directory")?;
        let namespace = opts.namespace.clone().unwrap_or_else(unique_namespace);
        std::fs::create_dir(dir.path().join("tmp"))?;
        let config = dir.path().join("config.toml");
        std::fs::write(&config, config_toml(dir.path(), &opts))
            .with_context(|| format!("failed to write {}", config.display()))?;

        let mut command = Command::new(binary);
        command.arg("--config").arg(&config);
        // Keep the daemon from picking up a namespace or address from the caller.
        command
            .env_remove("CONTAINERD_ADDRESS")
            .env_remove("CONTAINERD_NAMESPACE");
        let log = dir.path().join("containerd.log");
        let daemon = Daemon::spawn(command, &log, Duration::from_secs(10))?;
        let mut containerd = Containerd {
            daemon,
            namespace,
            dir,
        };

        let socket = containerd.socket();
        let ready = wait_until(READY_TIMEOUT, || {
            if containerd.daemon.ensure_running().is_err() || !socket.exists() {
                return false;
            }
            containerd
                .try_client("ctr", ["version"])
                .map(|output| output.status.success())
                .unwrap_or(false)
        });
        containerd.daemon.ensure_running()?;
        if !ready {
            anyhow::bail!(
                "containerd did not respond on {} within {READY_TIMEOUT:?}; log tail:\n{}",
                socket.display(),
                containerd.daemon.log_tail(40)
            );
        }
        Ok(containerd)
    }

    /// Returns the gRPC socket path.
    pub fn socket(&self) -> PathBuf {
        self.dir.path().join("containerd.sock")
    }

    /// Returns the namespace that [`Containerd::ctr`] and [`Containerd::ctr_remote`] use.
    pub fn namespace(&self) -> &str {
        &self.namespace
    }

    /// Returns containerd's root directory (content store, snapshots, metadata).
    pub fn root_dir(&self) -> PathBuf {
        self.dir.path().join("root")
    }

    /// Returns containerd's state directory.
    pub fn state_dir(&self) -> PathBuf {
        self.dir.path().join("state")
    }

    /// Returns the file that receives containerd's stdout and stderr.
    pub fn log_path(&self) -> PathBuf {
        self.dir.path().join("containerd.log")
    }

    /// Returns the path of the generated config file.
    pub fn config_path(&self) -> PathBuf {
        self.dir.path().join("config.toml")
    }

    /// Returns the daemon's process id.
    pub fn pid(&self) -> u32 {
        self.daemon.pid()
    }

    /// Runs `ctr --address <socket> --namespace <namespace> ARGS...` and returns its
    /// output, whatever the exit status.
    ///
    /// # Panics
    ///
    /// When `ctr` cannot be started at all ([`Containerd::start`] already checked that it
    /// is on `PATH`).
    pub fn ctr<I, S>(&self, args: I) -> Output
    where
        I: IntoIterator<Item = S>,
        S: AsRef<OsStr>,
    {
        self.client("ctr", args)
    }

    /// Runs `ctr-remote --address <socket> --namespace <namespace> ARGS...` (from the
    /// stargz-snapshotter package) and returns its output, whatever the exit status.
    ///
    /// # Panics
    ///
    /// When `ctr-remote` cannot be started, for example because it is not installed.
    pub fn ctr_remote<I, S>(&self, args: I) -> Output
    where
        I: IntoIterator<Item = S>,
        S: AsRef<OsStr>,
    {
        self.client("ctr-remote", args)
    }

    /// Runs `ctr ARGS...` and returns its stdout, failing with stderr on a non-zero exit.
    pub fn ctr_ok<I, S>(&self, args: I) -> anyhow::Result<String>
    where
        I: IntoIterator<Item = S>,
        S: AsRef<OsStr>,
    {
        let args: Vec<S> = args.into_iter().collect();
        let shown: Vec<String> = args
            .iter()
            .map(|arg| arg.as_ref().to_string_lossy().into_owned())
            .collect();
        let output = self.try_client("ctr", args)?;
        if !output.status.success() {
            anyhow::bail!(
                "ctr {} failed with {}: {}",
                shown.join(" "),
                output.status,
                String::from_utf8_lossy(&output.stderr)
            );
        }
        Ok(String::from_utf8_lossy(&output.stdout).into_owned())
    }

    fn client<I, S>(&self, program: &str, args: I) -> Output
    where
        I: IntoIterator<Item = S>,
        S: AsRef<OsStr>,
    {
        self.try_client(program, args)
            .unwrap_or_else(|err| panic!("{err:#}"))
    }

    fn try_client<I, S>(&self, program: &str, args: I) -> anyhow::Result<Output>
    where
        I: IntoIterator<Item = S>,
        S: AsRef<OsStr>,
    {
        Command::new(program)
            .arg("--address")
            .arg(self.socket())
            .arg("--namespace")
            .arg(&self.namespace)
            .args(args)
            .env_remove("CONTAINERD_ADDRESS")
            .env_remove("CONTAINERD_NAMESPACE")
            .env_remove("CONTAINERD_SNAPSHOTTER")
            .stdin(Stdio::null())
            .output()
            .with_context(|| format!("failed to run {program}"))
    }

    /// Kills and deletes every task and container in this instance's namespace.
    fn remove_containers(&self) {
        let listed = |what: &str| -> Vec<String> {
            self.try_client("ctr", [what, "ls", "-q"])
                .map(|output| {
                    String::from_utf8_lossy(&output.stdout)
                        .lines()
                        .map(str::to_owned)
                        .collect()
                })
                .unwrap_or_default()
        };
        for task in listed("tasks") {
            let _ = self.try_client(
                "ctr",
                ["tasks", "kill", "--all", "--signal", "SIGKILL", &task],
            );
        }
        for task in listed("tasks") {
            let _ = wait_until(Duration::from_secs(5), || {
                self.try_client("ctr", ["tasks", "delete", &task])
                    .map(|output| output.status.success())
                    .unwrap_or(true)
            });
        }
        for container in listed("containers") {
            let _ = self.try_client("ctr", ["containers", "delete", &container]);
        }
    }

    /// Kills shims that still serve this instance: their command line names its socket.
    fn kill_leftover_shims(&self) {
        let socket = self.socket();
        let socket = socket.as_os_str().as_encoded_bytes();
        let Ok(entries) = std::fs::read_dir("/proc") else {
            return;
        };
        for entry in entries.flatten() {
            let Some(pid) = entry
                .file_name()
                .to_str()
                .and_then(|name| name.parse::<u32>().ok())
            else {
                continue;
            };
            let Ok(cmdline) = std::fs::read(entry.path().join("cmdline")) else {
                continue;
            };
            let is_shim = cmdline.starts_with(b"/usr/bin/containerd-shim")
                || cmdline.starts_with(b"containerd-shim");
            let names_socket = cmdline.windows(socket.len()).any(|window| window == socket);
            if is_shim && names_socket {
                eprintln!("containerd cleanup: killing leftover shim {pid}");
                send_signal(pid, libc::SIGKILL);
            }
        }
    }
}

impl Drop for Containerd {
    fn drop(&mut self) {
        if self.daemon.ensure_running().is_ok() {
            self.remove_containers();
        }
        self.daemon.stop();
        self.kill_leftover_shims();
        for (mount_point, err) in mounts::unmount_all_under(self.dir.path()) {
            eprintln!(
                "containerd cleanup: failed to unmount {}: {err}",
                mount_point.display()
            );
        }
        // The runc state of this namespace lives outside our directory.
        let runc_state = Path::new("/run/containerd/runc").join(&self.namespace);
        let _ = std::fs::remove_dir_all(runc_state);
    }
}

/// Returns a namespace unique to this instance: `lazypull-test-[<run id>-]<pid>-<n>`.
///
/// `scripts/test.sh` exports `LAZYPULL_TEST_RUN_ID`, so it can find the container
/// processes of its own run by cgroup path and no others.
fn unique_namespace() -> String {
    static COUNTER: AtomicU32 = AtomicU32::new(0);
    let run = std::env::var("LAZYPULL_TEST_RUN_ID")
        .ok()
        .filter(|id| !id.is_empty() && id.bytes().all(|byte| byte.is_ascii_alphanumeric()))
        .map(|id| format!("{id}-"))
        .unwrap_or_default();
    format!(
        "lazypull-test-{run}{}-{}",
        std::process::id(),
        COUNTER.fetch_add(1, Ordering::Relaxed)
    )
}

fn toml_string(value: &str) -> String {
    serde_json::to_string(value).unwrap_or_else(|_| format!("\"{value}\""))
}

fn config_toml(dir: &Path, opts: &ContainerdOptions) -> String {
    let path = |name: &str| toml_string(&dir.join(name).to_string_lossy());
    let disabled: Vec<String> = DISABLED_PLUGINS
        .iter()
        .map(|name| toml_string(name))
        .collect();
    let mut config = format!(
        "version = 2\n\
         root = {root}\n\
         state = {state}\n\
         temp = {temp}\n\
         disabled_plugins = [{disabled}]\n\
         \n\
         [grpc]\n  address = {socket}\n\
         \n\
         [ttrpc]\n  address = {ttrpc}\n\
         \n\
         [debug]\n  level = {level}\n\
         \n\
         [plugins.\"io.containerd.internal.v1.opt\"]\n  path = {opt}\n",
        root = path("root"),
        state = path("state"),
        temp = path("tmp"),
        disabled = disabled.join(", "),
        socket = path("containerd.sock"),
        ttrpc = path("containerd.sock.ttrpc"),
        level = toml_string(opts.log_level.as_deref().unwrap_or("info")),
        opt = path("opt"),
    );
    for (name, socket) in &opts.proxy_snapshotters {
        config.push_str(&format!(
            "\n[proxy_plugins.{name}]\n  type = \"snapshot\"\n  address = {address}\n",
            name = toml_string(name),
            address = toml_string(&socket.to_string_lossy()),
        ));
    }
    if !opts.extra_config.is_empty() {
        config.push('\n');
        config.push_str(&opts.extra_config);
        config.push('\n');
    }
    config
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn config_declares_proxy_snapshotter() {
        let opts = ContainerdOptions::default().proxy_snapshotter("lazypull", "/run/lp.sock");
        let config = config_toml(Path::new("/tmp/x"), &opts);
        assert!(config.contains("[proxy_plugins.\"lazypull\"]"), "{config}");
        assert!(config.contains("address = \"/run/lp.sock\""), "{config}");
        assert!(config.contains("root = \"/tmp/x/root\""), "{config}");
        assert!(config.contains("\"io.containerd.grpc.v1.cri\""), "{config}");
    }

    #[test]
    fn namespaces_are_unique() {
        assert_ne!(unique_namespace(), unique_namespace());
    }
}
