//! `lazypull unmount DIR`.

use std::path::PathBuf;
use std::time::Duration;

use lazypull_snapshotter::mount::{self, DEFAULT_STOP_TIMEOUT};

/// Arguments of `lazypull unmount`.
#[derive(Debug, clap::Args)]
pub struct Args {
    /// Mount point given to `lazypull mount`.
    pub dir: PathBuf,
    /// State directory used by the mount [default: $XDG_RUNTIME_DIR/lazypull, or /run/lazypull].
    #[arg(long)]
    pub state_dir: Option<PathBuf>,
    /// Seconds to wait for the serving process after SIGTERM before sending SIGKILL.
    #[arg(long, default_value_t = DEFAULT_STOP_TIMEOUT.as_secs(), value_name = "SECONDS")]
    pub stop_timeout: u64,
}

/// Stops the serving process and removes every mount and state file of `DIR`.
pub fn run(args: Args) -> anyhow::Result<()> {
    let state_dir = args.state_dir.unwrap_or_else(mount::default_state_dir);
    mount::unmount(
        &state_dir,
        &args.dir,
        Duration::from_secs(args.stop_timeout),
    )?;
    Ok(())
}
