//! `lazypull serve --config FILE`: the containerd remote snapshotter daemon.

use std::path::PathBuf;
use std::time::Duration;

use anyhow::Context;
use lazypull_snapshotter::config::ServeConfig;
use lazypull_snapshotter::service;

/// Arguments of `lazypull serve`.
#[derive(Debug, clap::Args)]
pub struct Args {
    /// TOML config file; without one, every setting takes its default.
    #[arg(long, value_name = "FILE")]
    pub config: Option<PathBuf>,
    /// Unix socket of the snapshots API, overriding `socket` in the config file.
    #[arg(long, value_name = "PATH")]
    pub socket: Option<PathBuf>,
    /// State directory, overriding `root` in the config file.
    #[arg(long, value_name = "DIR")]
    pub root: Option<PathBuf>,
}

/// Reads the config file and applies the command-line overrides.
fn config_of(args: &Args) -> anyhow::Result<ServeConfig> {
    let mut config = match &args.config {
        Some(path) => ServeConfig::load(path)?,
        None => ServeConfig::default(),
    };
    if let Some(socket) = &args.socket {
        config.socket = socket.clone();
    }
    if let Some(root) = &args.root {
        config.root = root.clone();
    }
    config.validate().context("invalid command-line override")?;
    Ok(config)
}

/// Serves until SIGTERM or SIGINT, then unmounts every remote layer and exits.
pub fn run(args: Args) -> anyhow::Result<()> {
    let config = config_of(&args)?;
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .thread_name("lazypull-serve")
        .build()
        .context("failed to start the tokio runtime")?;
    let result = runtime.block_on(service::serve(&config));
    // Reads still waiting on the network hold tasks; their FUSE requests fail once the process
    // exits, so shutdown does not wait for them.
    runtime.shutdown_timeout(Duration::from_secs(2));
    result.context("lazypull serve failed")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn overrides_replace_config_values() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("config.toml");
        std::fs::write(&file, "socket = \"/run/a.sock\"\nroot = \"/var/lib/a\"\n").unwrap();
        let args = Args {
            config: Some(file),
            socket: Some("/run/b.sock".into()),
            root: None,
        };
        let config = config_of(&args).unwrap();
        assert_eq!(config.socket, PathBuf::from("/run/b.sock"));
        assert_eq!(config.root, PathBuf::from("/var/lib/a"));
    }

    #[test]
    fn relative_override_is_rejected() {
        let args = Args {
            config: None,
            socket: Some("relative.sock".into()),
            root: None,
        };
        let error = config_of(&args).unwrap_err();
        assert!(
            format!("{error:#}").contains("socket: must be an absolute path"),
            "{error:#}"
        );
    }
}
