//! `lazypull convert SRC DST`: clap arguments, their conversion into converter options, and the
//! call into `lazypull_converter::convert`.

use std::io::IsTerminal;
use std::path::PathBuf;

use anyhow::Context;
use lazypull_converter::{
    CancellationToken, Compression, ConvertOptions, ImageRef, Platform, ProgressMode,
};

/// Arguments of `lazypull convert`.
#[derive(Debug, clap::Args)]
pub struct Args {
    /// Source image: a registry reference (plain HTTP for localhost, 127.0.0.1 and [::1]) or
    /// `oci:DIR[:TAG]` for an OCI image layout.
    pub source: String,

    /// Destination image: a registry reference or `oci:DIR[:TAG]` (the layout is created if
    /// missing; its other images are kept). The tag is written last.
    pub destination: String,

    /// Largest uncompressed chunk of a regular file, in bytes (suffixes K, M, G = KiB, MiB, GiB).
    #[arg(long, value_name = "BYTES", default_value = "4M", value_parser = parse_size)]
    pub chunk_size: u64,

    /// Compression of the new layers.
    #[arg(long, value_enum, default_value_t = CompressionArg::Gzip)]
    pub compression: CompressionArg,

    /// Compression level: 1-9 for gzip (default 6), 1-22 for zstd (default 3).
    #[arg(long, value_name = "N")]
    pub compression_level: Option<i32>,

    /// File listing paths to put first in each layer (before .prefetch.landmark), one per line;
    /// blank lines and `#` comments are ignored. A path is prioritized in every layer that
    /// contains it.
    #[arg(long, value_name = "FILE")]
    pub prioritize: Option<PathBuf>,

    /// Layers converted at the same time.
    #[arg(long, value_name = "N", default_value_t = lazypull_converter::options::DEFAULT_JOBS)]
    pub jobs: usize,

    /// Compression threads per layer (default: number of cores).
    #[arg(long, value_name = "N")]
    pub threads: Option<usize>,

    /// Rebuild layers that are already eStargz instead of keeping them.
    #[arg(long)]
    pub reconvert: bool,

    /// Use plain HTTP for every registry, not only loopback ones.
    #[arg(long)]
    pub insecure: bool,

    /// Convert only these platforms of an index (os/arch[/variant]; repeat or separate with commas).
    #[arg(long, value_name = "PLATFORM", value_delimiter = ',')]
    pub platform: Vec<String>,

    /// Directory for temporary files (default: $TMPDIR, else /tmp). Needs room for about three
    /// times the largest layer per job.
    #[arg(long, value_name = "DIR")]
    pub tmpdir: Option<PathBuf>,

    /// Print the result as JSON on stdout instead of a table.
    #[arg(long)]
    pub json: bool,

    /// Progress display on stderr: bars on a terminal, log lines otherwise (auto).
    #[arg(long, value_enum, default_value_t = ProgressArg::Auto)]
    pub progress: ProgressArg,
}

/// `--compression` values.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum CompressionArg {
    /// gzip members: eStargz as stargz-snapshotter reads it.
    Gzip,
    /// zstd frames: zstd:chunked in stargz-snapshotter's layout.
    Zstd,
}

/// `--progress` values.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum ProgressArg {
    /// Bars when stderr is a terminal, log lines otherwise.
    Auto,
    /// One progress bar per layer.
    Bars,
    /// Log lines at start, every 10 % and at the end of each layer.
    Log,
    /// No per-layer progress; start and finish lines are still logged (RUST_LOG=warn hides them).
    None,
}

/// Converts the arguments into converter options, reading the prioritized-files list.
pub fn options(args: &Args) -> anyhow::Result<ConvertOptions> {
    let source = ImageRef::parse(&args.source, args.insecure)?;
    let destination = ImageRef::parse(&args.destination, args.insecure)?;
    // A directory name such as `layout` is also a valid Docker Hub reference.
    for (text, parsed) in [(&args.source, &source), (&args.destination, &destination)] {
        if matches!(parsed, ImageRef::Registry(_)) && std::path::Path::new(text).is_dir() {
            tracing::warn!(
                argument = %text,
                reference = %parsed,
                "the argument names a local directory but is read as a registry reference; write oci:{text} for an OCI image layout"
            );
        }
    }
    let mut options = ConvertOptions::new(source, destination);
    options.chunk_size = args.chunk_size;
    options.compression = match args.compression {
        CompressionArg::Gzip => Compression::Gzip,
        CompressionArg::Zstd => Compression::Zstd,
    };
    options.level = args.compression_level;
    if let Some(path) = &args.prioritize {
        options.prioritized = lazypull_converter::prioritize::read_list(path)?;
    }
    options.jobs = args.jobs;
    if let Some(threads) = args.threads {
        options.threads = threads;
    }
    options.reconvert = args.reconvert;
    options.platforms = args
        .platform
        .iter()
        .map(|p| Platform::parse(p))
        .collect::<Result<_, _>>()?;
    options.tmpdir = args.tmpdir.clone();
    options.progress = match args.progress {
        ProgressArg::Auto if std::io::stderr().is_terminal() => ProgressMode::Bars,
        ProgressArg::Auto | ProgressArg::Log => ProgressMode::Log,
        ProgressArg::Bars => ProgressMode::Bars,
        ProgressArg::None => ProgressMode::Quiet,
    };
    Ok(options)
}

/// Runs the conversion and prints the result. Ctrl-C stops it cleanly: temporary files are
/// removed and nothing is tagged.
pub fn run(args: Args) -> anyhow::Result<()> {
    let options = options(&args)?;
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .context("failed to start the async runtime")?;
    let report = runtime.block_on(async {
        let cancel = CancellationToken::new();
        let on_interrupt = cancel.clone();
        tokio::spawn(async move {
            if tokio::signal::ctrl_c().await.is_ok() {
                tracing::warn!("interrupted: stopping and removing temporary files");
                on_interrupt.cancel();
            }
        });
        lazypull_converter::convert(options, cancel).await
    })?;
    if args.json {
        println!("{}", report.to_json());
    } else {
        print!("{}", lazypull_converter::render_table(&report));
    }
    Ok(())
}

/// Parses a byte count with an optional binary suffix: `4194304`, `4M`, `512K`, `1G`, `4MiB`.
pub(crate) fn parse_size(text: &str) -> Result<u64, String> {
    let text = text.trim();
    let digits_end = text
        .find(|c: char| !c.is_ascii_digit())
        .unwrap_or(text.len());
    let (digits, suffix) = text.split_at(digits_end);
    let value: u64 = digits
        .parse()
        .map_err(|_| format!("{text:?} is not a byte count such as 4194304 or 4M"))?;
    let shift = match suffix.to_ascii_lowercase().as_str() {
        "" | "b" => 0,
        "k" | "kib" => 10,
        "m" | "mib" => 20,
        "g" | "gib" => 30,
        _ => {
            return Err(format!(
                "unknown size suffix {suffix:?}; use K, M or G (binary units)"
            ));
        }
    };
    value
        .checked_mul(1 << shift)
        .ok_or_else(|| format!("{text:?} is too large"))
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

    fn parse(argv: &[&str]) -> Args {
        Wrapper::try_parse_from(std::iter::once("convert").chain(argv.iter().copied()))
            .unwrap()
            .args
    }

    #[test]
    fn defaults_match_the_converter() {
        let args = parse(&["oci:/a", "oci:/b"]);
        let options = options(&args).unwrap();
        assert_eq!(options.chunk_size, 4 << 20);
        assert_eq!(options.effective_level(), 6);
        assert_eq!(options.jobs, 2);
        assert!(!options.reconvert);
    }

    #[test]
    fn flags_reach_the_options() {
        let args = parse(&[
            "127.0.0.1:5000/a:1",
            "registry.example.com/b:2",
            "--chunk-size",
            "1M",
            "--compression",
            "zstd",
            "--compression-level",
            "9",
            "--jobs",
            "3",
            "--threads",
            "1",
            "--reconvert",
            "--insecure",
            "--platform",
            "linux/amd64,linux/arm64/v8",
        ]);
        let options = options(&args).unwrap();
        assert_eq!(options.chunk_size, 1 << 20);
        assert_eq!(options.compression, Compression::Zstd);
        assert_eq!(options.effective_level(), 9);
        assert_eq!((options.jobs, options.threads), (3, 1));
        assert!(options.reconvert);
        assert_eq!(options.platforms.len(), 2);
        let ImageRef::Registry(destination) = &options.destination else {
            panic!("registry expected")
        };
        assert!(destination.plain_http);
    }

    #[test]
    fn size_suffixes_are_binary() {
        assert_eq!(parse_size("4194304"), Ok(4 << 20));
        assert_eq!(parse_size("512K"), Ok(512 << 10));
        assert_eq!(parse_size("4MiB"), Ok(4 << 20));
        assert_eq!(parse_size("1g"), Ok(1 << 30));
        assert!(parse_size("4X").is_err());
        assert!(parse_size("M").is_err());
    }

    #[test]
    fn bad_platform_is_rejected() {
        let args = parse(&["oci:/a", "oci:/b", "--platform", "linux"]);
        assert!(
            options(&args)
                .unwrap_err()
                .to_string()
                .contains("--platform")
        );
    }
}
