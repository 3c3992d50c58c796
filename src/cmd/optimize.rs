//! `lazypull optimize SRC DST -- CMD [ARGS...]`: clap arguments, their conversion into
//! [`crate::optimize::OptimizeOptions`], signal handling, and the printed summary.

use std::ffi::OsString;
use std::io::IsTerminal;
use std::path::PathBuf;
use std::time::Duration;

use anyhow::Context;
use lazypull_converter::{
    CancellationToken, Compression, ConvertOptions, ImageRef, Platform, ProgressMode,
};
use tokio::signal::unix::{SignalKind, signal};

use super::convert::{CompressionArg, parse_size};
use crate::optimize::{self, OptimizeOptions, RunOptions, human_bytes};

/// Arguments of `lazypull optimize`.
#[derive(Debug, clap::Args)]
#[command(
    after_help = "Example:\n  sudo lazypull optimize 127.0.0.1:5000/app:1 127.0.0.1:5000/app:1-esgz \\\n      --wait-for READY -- python3 -c 'import json; print(\"READY\")'"
)]
pub struct Args {
    /// Source image: a registry reference or `oci:DIR[:TAG]`. It need not be eStargz.
    pub source: String,

    /// Destination image: a registry reference or `oci:DIR[:TAG]`.
    pub destination: String,

    /// The workload and its arguments, run chrooted in the mounted image. A name without `/` is
    /// searched in the image's PATH.
    #[arg(last = true, required = true, value_name = "CMD")]
    pub command: Vec<OsString>,

    /// Time limit of the workload, in seconds, 1 to 3600.
    #[arg(long, value_name = "SECONDS", default_value_t = 60, value_parser = clap::value_parser!(u64).range(1..=3600))]
    pub timeout: u64,

    /// End the workload successfully when this string appears on its stdout or stderr (the
    /// workload is then killed). Without it the run ends when CMD exits.
    #[arg(long, value_name = "STRING")]
    pub wait_for: Option<String>,

    /// Fail when the run ends without its readiness signal (time limit passed, or CMD exited
    /// without printing the --wait-for string) instead of using what was recorded.
    #[arg(long)]
    pub strict: bool,

    /// Set an environment variable of the workload, over the image config's Env (repeatable).
    #[arg(long = "env", value_name = "KEY=VALUE", value_parser = parse_env)]
    pub env: Vec<(String, String)>,

    /// Working directory of the workload in the image [default: the image config's WorkingDir,
    /// else /].
    #[arg(long, value_name = "DIR")]
    pub workdir: Option<String>,

    /// User of the workload as USER[:GROUP] or UID[:GID] [default: the image config's User,
    /// else root].
    #[arg(long, value_name = "USER")]
    pub user: Option<String>,

    /// Also write the recorded paths to FILE, in the format `lazypull convert --prioritize`
    /// reads.
    #[arg(long, value_name = "FILE")]
    pub record: Option<PathBuf>,

    /// Largest uncompressed chunk of a regular file, in bytes (suffixes K, M, G = KiB, MiB, GiB).
    #[arg(long, value_name = "BYTES", default_value = "4M", value_parser = parse_size)]
    pub chunk_size: u64,

    /// Compression of the new layers.
    #[arg(long, value_enum, default_value_t = CompressionArg::Gzip)]
    pub compression: CompressionArg,

    /// Compression level: 1-9 for gzip (default 6), 1-22 for zstd (default 3).
    #[arg(long, value_name = "N")]
    pub compression_level: Option<i32>,

    /// Layers converted at the same time.
    #[arg(long, value_name = "N", default_value_t = lazypull_converter::options::DEFAULT_JOBS)]
    pub jobs: usize,

    /// Compression threads per layer (default: number of cores).
    #[arg(long, value_name = "N")]
    pub threads: Option<usize>,

    /// Use plain HTTP for every registry, not only loopback ones.
    #[arg(long)]
    pub insecure: bool,

    /// Platform to mount and convert from a multi-platform image, as OS/ARCH[/VARIANT]
    /// [default: every platform is converted, the host's is mounted].
    #[arg(long, value_name = "OS/ARCH")]
    pub platform: Option<String>,

    /// Directory for temporary files, the recording mount and a converted copy of a source
    /// that is not eStargz (default: $TMPDIR, else /tmp).
    #[arg(long, value_name = "DIR")]
    pub tmpdir: Option<PathBuf>,
}

/// Parses `KEY=VALUE`.
fn parse_env(text: &str) -> Result<(String, String), String> {
    match text.split_once('=') {
        Some((key, value)) if !key.is_empty() => Ok((key.to_owned(), value.to_owned())),
        _ => Err(format!("{text:?} is not KEY=VALUE")),
    }
}

/// Converts the arguments into optimize options.
fn options(args: Args) -> anyhow::Result<OptimizeOptions> {
    let source = ImageRef::parse(&args.source, args.insecure)?;
    let destination = ImageRef::parse(&args.destination, args.insecure)?;
    let mut convert = ConvertOptions::new(source, destination);
    convert.chunk_size = args.chunk_size;
    convert.compression = match args.compression {
        CompressionArg::Gzip => Compression::Gzip,
        CompressionArg::Zstd => Compression::Zstd,
    };
    convert.level = args.compression_level;
    convert.jobs = args.jobs;
    if let Some(threads) = args.threads {
        convert.threads = threads;
    }
    if let Some(platform) = &args.platform {
        convert.platforms = vec![Platform::parse(platform)?];
    }
    convert.tmpdir = args.tmpdir.clone();
    // Log lines every 10 % of each layer would bury the workload's output.
    convert.progress = if std::io::stderr().is_terminal() {
        ProgressMode::Bars
    } else {
        ProgressMode::Quiet
    };
    convert.validate()?;
    Ok(OptimizeOptions {
        source_text: args.source,
        convert,
        insecure: args.insecure,
        platform: args.platform,
        run: RunOptions {
            command: args.command,
            timeout: Duration::from_secs(args.timeout),
            wait_for: args.wait_for.filter(|text| !text.is_empty()),
            env: args.env,
            workdir: args.workdir,
            user: args.user,
            strict: args.strict,
        },
        record: args.record,
    })
}

/// Runs the optimization and prints its summary. SIGINT and SIGTERM stop it: the workload is
/// killed, the image unmounted and temporary files removed.
pub fn run(args: Args) -> anyhow::Result<()> {
    let options = options(args)?;
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .context("failed to start the async runtime")?;
    let cancel = CancellationToken::new();
    {
        // Registered before any work starts, so an early signal is not lost.
        let _context = runtime.enter();
        let mut interrupt = signal(SignalKind::interrupt()).context("failed to handle SIGINT")?;
        let mut terminate = signal(SignalKind::terminate()).context("failed to handle SIGTERM")?;
        let on_signal = cancel.clone();
        runtime.spawn(async move {
            tokio::select! {
                _ = interrupt.recv() => {}
                _ = terminate.recv() => {}
            }
            eprintln!(
                "interrupted: stopping the workload, unmounting and removing temporary files"
            );
            on_signal.cancel();
        });
    }
    let summary = optimize::run(options, &runtime, cancel)?;
    let layers_with_hits = summary
        .report
        .layers
        .iter()
        .filter(|layer| layer.prioritized_found > 0)
        .count();
    println!(
        "prioritized {} files ({}) before the prefetch landmark in {layers_with_hits} of {} layers; {} -> {} in {:.1} s",
        summary.files,
        human_bytes(summary.bytes),
        summary.report.layers.len(),
        summary.report.source,
        summary.report.destination,
        summary.elapsed.as_secs_f64()
    );
    print!("{}", lazypull_converter::render_table(&summary.report));
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::Parser;

    #[derive(Debug, clap::Parser)]
    struct Wrapper {
        #[command(flatten)]
        args: Args,
    }

    fn parse(argv: &[&str]) -> Result<Args, clap::Error> {
        Wrapper::try_parse_from(std::iter::once("optimize").chain(argv.iter().copied()))
            .map(|wrapper| wrapper.args)
    }

    #[test]
    fn command_after_double_dash_is_kept_whole() {
        let args = parse(&[
            "oci:/a",
            "oci:/b",
            "--wait-for",
            "READY",
            "--env",
            "A=1=2",
            "--",
            "python3",
            "-c",
            "print('READY')",
        ])
        .unwrap();
        assert_eq!(args.command, ["python3", "-c", "print('READY')"]);
        assert_eq!(args.env, [("A".to_owned(), "1=2".to_owned())]);
        assert_eq!(args.timeout, 60);
    }

    #[test]
    fn missing_command_is_rejected() {
        assert!(parse(&["oci:/a", "oci:/b"]).is_err());
    }

    #[test]
    fn env_without_equals_is_rejected() {
        assert!(parse(&["oci:/a", "oci:/b", "--env", "A", "--", "true"]).is_err());
    }

    #[test]
    fn timeout_out_of_range_is_rejected() {
        assert!(parse(&["oci:/a", "oci:/b", "--timeout", "0", "--", "true"]).is_err());
    }
}
