//! `lazypull mount IMAGE DIR`.

use std::path::PathBuf;
use std::time::Duration;

use anyhow::Context;
use clap::builder::RangedU64ValueParser;
use lazypull_snapshotter::fs::fuse::MAX_FUSE_THREADS;
use lazypull_snapshotter::mount::{
    self, DEFAULT_PREFETCH_TIMEOUT, DEFAULT_READ_TIMEOUT, Detached, MountOptions, MountPaths,
    Readiness,
};
use lazypull_snapshotter::remote::{HostConfig, ImageRef, Platform};

/// Arguments of `lazypull mount`.
#[derive(Debug, clap::Args)]
pub struct Args {
    /// Image to mount: a registry reference or `oci:DIR[:TAG]`. Its layers must be eStargz.
    pub image: String,
    /// Existing directory where the image appears (read-write through an overlay upper layer).
    pub dir: PathBuf,
    /// State directory for records, layer mounts and the overlay upper directory
    /// [default: $XDG_RUNTIME_DIR/lazypull, or /run/lazypull].
    #[arg(long)]
    pub state_dir: Option<PathBuf>,
    /// Write the paths the workload opens, in first-access order, to FILE (the format
    /// `lazypull convert --prioritize` reads).
    #[arg(long, value_name = "FILE")]
    pub record_trace: Option<PathBuf>,
    /// Stay attached and serve until SIGTERM or SIGINT instead of detaching.
    #[arg(long)]
    pub foreground: bool,
    /// Use plain HTTP for the image's registry (loopback registries always use it).
    #[arg(long)]
    pub insecure: bool,
    /// Platform to choose from a multi-platform image, as OS/ARCH[/VARIANT].
    #[arg(long, value_name = "OS/ARCH")]
    pub platform: Option<String>,
    /// Directory of the on-disk chunk cache, shared between mounts.
    #[arg(long, default_value = "/var/cache/lazypull/chunks")]
    pub cache_dir: PathBuf,
    /// Keep verified chunks in memory only.
    #[arg(long)]
    pub no_disk_cache: bool,
    /// Byte budget of the in-memory chunk cache shared by the layers, in MiB.
    #[arg(long, default_value_t = 256, value_name = "MIB")]
    pub memory_cache_mib: u64,
    /// Budget of the on-disk chunk cache, in MiB.
    #[arg(long, default_value_t = 10240, value_name = "MIB")]
    pub disk_cache_mib: u64,
    /// Do not fetch the prioritized files of each layer at mount time.
    #[arg(long)]
    pub no_prefetch: bool,
    /// After the prefetch, fetch the rest of every layer in the background (needs a disk cache,
    /// or a memory cache large enough for the layer).
    #[arg(long)]
    pub background_fetch: bool,
    /// Compressed bytes stored after a missed chunk that are fetched with it (whole chunks), in
    /// KiB, 0 to 65536. Files stored together are often read together. 0 turns read-ahead off.
    #[arg(long, default_value_t = 512, value_name = "KIB", value_parser = RangedU64ValueParser::<u64>::new().range(0..=MAX_READAHEAD_KIB))]
    pub readahead_kib: u64,
    /// Mount layers that have no TOC-digest annotation, trusting the TOC inside the blob
    /// (chunks are still verified against it).
    #[arg(long)]
    pub allow_unverified: bool,
    /// Maximum wait for the prioritized prefetch before the mount reports ready, in seconds.
    #[arg(long, default_value_t = DEFAULT_PREFETCH_TIMEOUT.as_secs(), value_name = "SECONDS")]
    pub prefetch_timeout: u64,
    /// Maximum time one read may take before it fails with EIO, in seconds, 1 to 3600.
    #[arg(long, default_value_t = DEFAULT_READ_TIMEOUT.as_secs(), value_name = "SECONDS", value_parser = timeout_parser())]
    pub read_timeout: u64,
    /// Time limit of one registry request attempt, in seconds, 1 to 3600.
    #[arg(long, default_value_t = 30, value_name = "SECONDS", value_parser = timeout_parser())]
    pub request_timeout: u64,
    /// Retries of a failed registry request.
    #[arg(long, default_value_t = 5)]
    pub max_retries: u32,
    /// FUSE request threads per layer, 1 to 64.
    #[arg(long, default_value_t = 2, value_parser = RangedU64ValueParser::<usize>::new().range(1..=MAX_FUSE_THREADS as u64))]
    pub fuse_threads: usize,
}

/// Largest `--read-timeout` and `--request-timeout`, in seconds. A longer wait looks like a hang.
const MAX_TIMEOUT_SECS: u64 = 3600;

/// Largest `--readahead-kib`: 64 MiB, eight times the default largest merged range request. It
/// is a bound against typing errors, not a tuned value.
const MAX_READAHEAD_KIB: u64 = 64 << 10;

fn timeout_parser() -> RangedU64ValueParser<u64> {
    RangedU64ValueParser::<u64>::new().range(1..=MAX_TIMEOUT_SECS)
}

/// Converts the arguments into library options.
fn options(args: &Args) -> anyhow::Result<MountOptions> {
    let dir = std::fs::canonicalize(&args.dir)
        .with_context(|| format!("mount point {} not found", args.dir.display()))?;
    let state_dir = match &args.state_dir {
        Some(dir) => std::path::absolute(dir)
            .with_context(|| format!("invalid state directory {}", dir.display()))?,
        None => mount::default_state_dir(),
    };
    let mut options = MountOptions::new(args.image.clone(), dir, state_dir);
    options.record_trace = match &args.record_trace {
        Some(path) => Some(
            std::path::absolute(path)
                .with_context(|| format!("invalid trace path {}", path.display()))?,
        ),
        None => None,
    };
    if let Some(text) = &args.platform {
        options.platform = Platform::parse(text).with_context(|| {
            format!("invalid platform {text:?}: expected OS/ARCH[/VARIANT], such as linux/amd64")
        })?;
    }
    options.registry.request_timeout = Duration::from_secs(args.request_timeout);
    options.registry.max_retries = args.max_retries;
    if args.insecure
        && let Ok(ImageRef::Registry(reference)) = ImageRef::parse(&args.image)
    {
        options.registry.hosts.insert(
            reference.registry().to_owned(),
            HostConfig {
                insecure: true,
                ..HostConfig::default()
            },
        );
    }
    options.layer.cache.disk_dir = (!args.no_disk_cache).then(|| args.cache_dir.clone());
    options.layer.cache.disk_bytes = args.disk_cache_mib << 20;
    options.layer.cache.memory_bytes = args.memory_cache_mib << 20;
    options.layer.prefetch.enabled = !args.no_prefetch;
    options.layer.prefetch.background = args.background_fetch;
    options.layer.allow_unverified = args.allow_unverified;
    options.layer.fetch.readahead_bytes = args.readahead_kib << 10;
    options
        .layer
        .validate()
        .context("invalid cache or prefetch option")?;
    options.prefetch_timeout = Duration::from_secs(args.prefetch_timeout);
    options.read_timeout = Duration::from_secs(args.read_timeout);
    options.fuse_threads = args.fuse_threads;
    Ok(options)
}

/// Mounts the image; unless `--foreground`, returns once the detached server is ready.
pub fn run(args: Args) -> anyhow::Result<()> {
    let options = options(&args)?;
    if args.foreground {
        return Ok(mount::serve(options, Readiness::none())?);
    }
    let log = MountPaths::new(&options.state_dir, &options.mountpoint).log();
    match mount::detach(&log).context("failed to start the serving process")? {
        Detached::Parent(Ok(())) => Ok(()),
        Detached::Parent(Err(message)) => anyhow::bail!("{message}"),
        Detached::Child(readiness) => {
            let result = mount::serve(options, readiness);
            if let Err(error) = &result {
                tracing::error!(error = %mount::error_chain(error), "mount failed");
            }
            // The parent already printed the error it received through the pipe.
            std::process::exit(i32::from(result.is_err()));
        }
    }
}
