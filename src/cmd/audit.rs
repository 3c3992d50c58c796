//! `lazypull audit IMAGE`: clap arguments, the gate thresholds from the config file and flags,
//! and the call into `lazypull_audit::audit`. Exit status: 0 when the gate passes, 2 when it
//! fails (the report is still printed), 1 on an error.

use std::io::{IsTerminal, Write};
use std::path::PathBuf;

use anyhow::Context;
use lazypull_audit::{AuditOptions, Thresholds};
use lazypull_converter::{ImageRef, Platform, ProgressMode};

/// Exit status of an audit whose gate failed. Not 2, which clap uses for invalid arguments, so
/// a CI script can tell a failed gate from a mistyped flag.
pub const GATE_FAILED: i32 = 3;

/// Arguments of `lazypull audit`.
#[derive(Debug, clap::Args)]
pub struct Args {
    /// Image: a registry reference (plain HTTP for localhost, 127.0.0.1 and [::1]) or
    /// `oci:DIR[:TAG]` for an OCI image layout.
    pub image: String,

    /// Output format on stdout.
    #[arg(long, value_enum, default_value_t = FormatArg::Text)]
    pub format: FormatArg,

    /// TOML file with gate thresholds in a `[rules]` table (see docs/audit.md); flags override it.
    #[arg(long, value_name = "FILE")]
    pub config: Option<PathBuf>,

    /// Fail when the efficiency (0 to 1) is below this.
    #[arg(long, value_name = "RATIO")]
    pub lowest_efficiency: Option<f64>,

    /// Fail when more bytes than this are wasted (suffixes K, M, G = KiB, MiB, GiB).
    #[arg(long, value_name = "BYTES", value_parser = parse_size)]
    pub highest_wasted_bytes: Option<u64>,

    /// Fail when more than this percentage of the shipped bytes is wasted.
    #[arg(long, value_name = "PERCENT")]
    pub highest_wasted_percent: Option<f64>,

    /// Fail when the layers (compressed, as pulled) take more than this.
    #[arg(long, value_name = "BYTES", value_parser = parse_size)]
    pub highest_total_size: Option<u64>,

    /// Fail when more secrets than this are found.
    #[arg(long, value_name = "N")]
    pub highest_secrets: Option<u64>,

    /// Files listed per layer.
    #[arg(long, value_name = "N", default_value_t = lazypull_audit::DEFAULT_TOP_FILES)]
    pub top_files: usize,

    /// Layers read at the same time.
    #[arg(long, value_name = "N", default_value_t = 2)]
    pub jobs: usize,

    /// Platform to audit from a multi-platform image (os/arch[/variant]).
    #[arg(long, value_name = "PLATFORM")]
    pub platform: Option<String>,

    /// Use plain HTTP for every registry, not only loopback ones.
    #[arg(long)]
    pub insecure: bool,

    /// Directory for downloaded layer blobs (default: $TMPDIR, else /tmp).
    #[arg(long, value_name = "DIR")]
    pub tmpdir: Option<PathBuf>,
}

/// `--format` values.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum FormatArg {
    /// A report for people.
    Text,
    /// The report as JSON (schema `lazypull-audit/1`).
    Json,
}

fn parse_size(text: &str) -> Result<u64, String> {
    lazypull_audit::gate::parse_size("size", text).map_err(|e| e.to_string())
}

/// Runs the audit, prints the report, and exits with [`GATE_FAILED`] when the gate fails.
pub fn run(args: Args) -> anyhow::Result<()> {
    let image = ImageRef::parse(&args.image, args.insecure)?;
    let mut options = AuditOptions::new(image);
    let from_file = match &args.config {
        Some(path) => Thresholds::from_file(path)?,
        None => Thresholds::default(),
    };
    let flags = Thresholds {
        lowest_efficiency: args.lowest_efficiency,
        highest_wasted_bytes: args.highest_wasted_bytes,
        highest_wasted_percent: args.highest_wasted_percent,
        highest_total_size: args.highest_total_size,
        highest_secrets: args.highest_secrets,
    };
    flags.validate().map_err(anyhow::Error::msg)?;
    options.thresholds = from_file.overridden_by(flags);
    options.top_files = args.top_files;
    options.jobs = args.jobs.max(1);
    options.platform = args.platform.as_deref().map(Platform::parse).transpose()?;
    options.tmpdir = args.tmpdir.clone();
    options.progress = if std::io::stderr().is_terminal() {
        ProgressMode::Bars
    } else {
        ProgressMode::Log
    };
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .context("failed to start the async runtime")?;
    let report = runtime.block_on(lazypull_audit::audit(options))?;
    let text = match args.format {
        FormatArg::Text => lazypull_audit::render_text(&report),
        FormatArg::Json => lazypull_audit::render_json(&report),
    };
    let mut stdout = std::io::stdout().lock();
    stdout
        .write_all(text.as_bytes())
        .and_then(|()| stdout.flush())
        .context("failed to write the report")?;
    if !report.gate.passed {
        for failure in &report.gate.failures {
            eprintln!("gate failed: {}: {}", failure.rule, failure.message);
        }
        std::process::exit(GATE_FAILED);
    }
    Ok(())
}
