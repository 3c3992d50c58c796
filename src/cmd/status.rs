//! `lazypull status DIR`.

use std::path::PathBuf;

use anyhow::Context;
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

/// Prints the mount's counters (bytes fetched, requests, cache hits and misses, prefetch
/// progress, per layer and in total) as JSON, as last written by the serving process.
pub fn run(args: Args) -> anyhow::Result<()> {
    let state_dir = args.state_dir.unwrap_or_else(mount::default_state_dir);
    let record = mount::find_record(&state_dir, &args.dir)?;
    let stats = mount::read_stats(&record.stats)
        .with_context(|| format!("failed to read the stats file {}", record.stats.display()))?;
    println!("{}", stats.to_json_pretty());
    Ok(())
}
