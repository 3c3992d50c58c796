//! `lazypull status DIR`.

use std::path::PathBuf;
use std::time::Duration;

use lazypull_snapshotter::mount;

/// Arguments of `lazypull status`.
#[derive(Debug, clap::Args)]
pub struct Args {
    /// Mount point given to `lazypull mount`.
    pub dir: PathBuf,
    /// State directory used by the mount [default: $XDG_RUNTIME_DIR/lazypull, or /run/lazypull].
    #[arg(long)]
    pub state_dir: Option<PathBuf>,
}

/// Maximum wait for the serving process to rewrite its stats file.
const REFRESH_TIMEOUT: Duration = Duration::from_secs(2);

/// Prints the mount's counters (bytes fetched, requests, cache hits and misses, prefetch
/// progress, per layer and in total) as JSON, as the serving process collects them on request.
/// Fails, naming the pid, when that process is no longer running.
pub fn run(args: Args) -> anyhow::Result<()> {
    let state_dir = args.state_dir.unwrap_or_else(mount::default_state_dir);
    let stats = mount::fresh_stats(&state_dir, &args.dir, REFRESH_TIMEOUT)?;
    println!("{}", stats.to_json_pretty());
    Ok(())
}
