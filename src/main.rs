//! `lazypull`: convert images to eStargz, mount them lazily, and serve containerd.
//!
//! The binary only parses arguments, sets up logging and calls into the library crates; each
//! subcommand lives in its own module under `cmd/`.

mod cmd;
mod logging;
mod optimize;

use std::process::ExitCode;

use clap::{Parser, Subcommand};

/// Lazy pulling of container images with eStargz.
#[derive(Debug, Parser)]
#[command(name = "lazypull", version, about, propagate_version = true)]
struct Cli {
    /// Log format on stderr.
    #[arg(long, global = true, value_enum, default_value_t = logging::LogFormat::Text, env = "LAZYPULL_LOG_FORMAT")]
    log_format: logging::LogFormat,

    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Convert an image into an eStargz image (registry or OCI layout, both ways).
    Convert(cmd::convert::Args),
    /// Mount an eStargz image lazily at a directory (FUSE layers stacked with overlayfs).
    Mount(cmd::mount::Args),
    /// Unmount a directory mounted by `lazypull mount` and stop its serving process.
    Unmount(cmd::unmount::Args),
    /// Print the counters of a mount made by `lazypull mount`, as JSON.
    Status(cmd::status::Args),
    /// Serve containerd's snapshots API: a remote snapshotter that mounts eStargz layers lazily.
    Serve(cmd::serve::Args),
    /// Record the files a workload opens in a lazy mount and convert with them first.
    Optimize(cmd::optimize::Args),
    /// Report an image's wasted bytes, efficiency, findings and secrets; gate CI on thresholds.
    Audit(cmd::audit::Args),
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    logging::init(cli.log_format);
    let result = match cli.command {
        Command::Convert(args) => cmd::convert::run(args),
        Command::Mount(args) => cmd::mount::run(args),
        Command::Unmount(args) => cmd::unmount::run(args),
        Command::Status(args) => cmd::status::run(args),
        Command::Serve(args) => cmd::serve::run(args),
        Command::Audit(args) => cmd::audit::run(args),
        Command::Optimize(args) => cmd::optimize::run(args),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => {
            // Print the whole cause chain once, most specific cause last.
            eprintln!("error: {error:#}");
            ExitCode::FAILURE
        }
    }
}
