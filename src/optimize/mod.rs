//! `lazypull optimize`: mount an image lazily, run a workload in it, record the files it opens,
//! and convert the image with those files first in each layer.
//!
//! Steps, each undone on failure or interruption by [`Workspace`]'s drop:
//! 1. resolve the source. A lazy mount needs eStargz layers, so if a layer has no TOC-digest
//!    annotation, convert the image to a temporary OCI layout first;
//! 2. `lazypull mount --record-trace` of the (converted) source in a temporary directory;
//! 3. run the workload chrooted in the mount (see `lazypull_snapshotter::workload`);
//! 4. unmount, then convert the source to the destination with the recorded paths prioritized,
//!    rebuilding eStargz layers so their new order takes effect.
//!
//! The converter orders entries itself, without sorting the tar stream, so layers whose parent
//! directories have no tar entry (umoci diff layers, for example) convert as they are.

mod trace;
mod workspace;

use std::ffi::OsString;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::Context;
use lazypull_converter::{CancellationToken, ConvertOptions, ConvertReport, ImageRef};
use lazypull_snapshotter::remote::{self, DockerConfigCredentials, HostConfig, RegistryConfig};
use lazypull_snapshotter::workload::{
    self, ImageRuntimeConfig, WorkloadEnd, WorkloadSpec, merge_env, resolve_user,
};

pub use trace::prioritized_paths;
use workspace::Workspace;

/// Tag of the temporary eStargz copy of a source that is not eStargz.
const SOURCE_COPY_TAG: &str = "optimize-source";

/// Prefix of the workload's echoed output lines.
const OUTPUT_PREFIX: &str = "  | ";

/// How to run the workload.
#[derive(Debug, Clone)]
pub struct RunOptions {
    /// The command and its arguments.
    pub command: Vec<OsString>,
    /// Time limit.
    pub timeout: Duration,
    /// End the run when this string appears on stdout or stderr.
    pub wait_for: Option<String>,
    /// Environment overrides, applied over the image config's `Env`.
    pub env: Vec<(String, String)>,
    /// Working directory; `None` takes the image config's `WorkingDir`, else `/`.
    pub workdir: Option<String>,
    /// User; `None` takes the image config's `User`, else root.
    pub user: Option<String>,
    /// Fail instead of warning when the run ends without its readiness signal.
    pub strict: bool,
}

/// Everything `lazypull optimize` needs.
#[derive(Debug, Clone)]
pub struct OptimizeOptions {
    /// The source as typed, for messages and for `lazypull mount`.
    pub source_text: String,
    /// Conversion settings, with source and destination set. `prioritized` and `reconvert` are
    /// set by the run.
    pub convert: ConvertOptions,
    /// Use plain HTTP for the source's registry.
    pub insecure: bool,
    /// Platform to mount from a multi-platform source, as OS/ARCH[/VARIANT].
    pub platform: Option<String>,
    /// The workload.
    pub run: RunOptions,
    /// Also write the prioritized-files list here.
    pub record: Option<PathBuf>,
}

/// Result of an optimization.
#[derive(Debug)]
pub struct OptimizeSummary {
    /// Regular files and symlinks among them, as seen in the mounted image.
    pub files: usize,
    /// Their uncompressed size in bytes.
    pub bytes: u64,
    /// The final conversion.
    pub report: ConvertReport,
    /// Wall time of the whole run.
    pub elapsed: Duration,
}

/// Runs an optimization. `cancel` is triggered by SIGINT or SIGTERM; every step then stops and
/// the mount is removed before the error returns.
pub fn run(
    options: OptimizeOptions,
    runtime: &tokio::runtime::Runtime,
    cancel: CancellationToken,
) -> anyhow::Result<OptimizeSummary> {
    let started = Instant::now();
    workload::check_host()?;
    let mut workspace = Workspace::create(&options.convert.tmpdir())?;

    let image_config = runtime.block_on(read_image_config(&options))?;
    let (mount_image, convert_source) = match image_config.lazy {
        true => (options.source_text.clone(), options.convert.source.clone()),
        false => {
            eprintln!(
                "{} is not eStargz: converting it to a temporary OCI layout first",
                options.source_text
            );
            let copy = format!(
                "oci:{}:{SOURCE_COPY_TAG}",
                workspace.source_layout().display()
            );
            let destination = ImageRef::parse(&copy, false)?;
            let mut pre = options.convert.clone();
            pre.destination = destination.clone();
            pre.prioritized = Vec::new();
            pre.reconvert = false;
            runtime
                .block_on(lazypull_converter::convert(pre, cancel.clone()))
                .context("failed to convert the source to eStargz for the recording mount")?;
            (copy, destination)
        }
    };
    if cancel.is_cancelled() {
        anyhow::bail!("interrupted");
    }

    let mut mount_args = Vec::new();
    if options.insecure {
        mount_args.push("--insecure".to_owned());
    }
    if let Some(platform) = &options.platform {
        mount_args.extend(["--platform".to_owned(), platform.clone()]);
    }
    eprintln!("mounting {mount_image} lazily to record the workload's reads");
    workspace.mount(&mount_image, &mount_args)?;
    if cancel.is_cancelled() {
        anyhow::bail!("interrupted");
    }

    let spec = workload_spec(&options.run, &image_config.runtime, &workspace.root())?;
    eprintln!(
        "running {} (time limit {} s{})",
        shell_words(&spec.command),
        spec.timeout.as_secs(),
        spec.wait_for
            .as_deref()
            .map(|text| format!(", ready when {text:?} is printed"))
            .unwrap_or_default()
    );
    let end = workload::run_workload(&spec, &|| cancel.is_cancelled())?;
    check_end(&end, &options.run)?;

    let trace = std::fs::read(workspace.trace())
        .with_context(|| format!("failed to read the trace {}", workspace.trace().display()))?;
    let recorded = prioritized_paths(&trace);
    let recorded_count = recorded.len();
    // A missing read log (an older mount binary) leaves every file whole, as before.
    let read_log = std::fs::read(lazypull_snapshotter::fs::read_log_path(&workspace.trace()))
        .unwrap_or_default();
    let touched = trace::touched_bytes(&read_log);
    let sizes = sizes_in(&workspace.root(), &recorded);
    let (paths, left) = trace::select_whole_files(recorded, &touched, |path| {
        sizes.get(path).copied().flatten()
    });
    let (files, bytes) = measure(&workspace.root(), &paths);
    workspace.unmount()?;
    eprintln!("recorded {recorded_count} paths in first-access order");
    if !left.is_empty() {
        let total: u64 = left
            .iter()
            .filter_map(|p| sizes.get(p).copied().flatten())
            .sum();
        let read: u64 = left.iter().filter_map(|p| touched.get(p)).sum();
        eprintln!(
            "left {} large files out of the prioritized part ({} in all, about {} of it read); they load on demand",
            left.len(),
            human_bytes(total),
            human_bytes(read.min(total))
        );
    }
    if paths.is_empty() {
        anyhow::bail!(
            "the workload opened no file of the image, so there is nothing to prioritize; check that the command reads the files it needs"
        );
    }
    eprintln!(
        "prioritizing {} paths ({files} files, {})",
        paths.len(),
        human_bytes(bytes)
    );
    if let Some(record) = &options.record {
        write_list(record, &paths)?;
    }

    let mut convert = options.convert.clone();
    convert.source = convert_source;
    convert.prioritized = paths;
    // Layers that are already eStargz must be rebuilt, or they keep their old order.
    convert.reconvert = true;
    let mut report = runtime
        .block_on(lazypull_converter::convert(convert, cancel))
        .context("failed to convert the image with the recorded files prioritized")?;
    // The conversion may have read the temporary eStargz copy; name what the user gave.
    report.source.clone_from(&options.source_text);
    drop(workspace);
    Ok(OptimizeSummary {
        files,
        bytes,
        report,
        elapsed: started.elapsed(),
    })
}

/// The parts of the source image the run needs before mounting.
struct SourceFacts {
    /// Every layer carries a TOC-digest annotation, so the image mounts lazily as it is.
    lazy: bool,
    /// Env, WorkingDir and User.
    runtime: ImageRuntimeConfig,
}

/// Resolves the source and reads its config and layer annotations.
async fn read_image_config(options: &OptimizeOptions) -> anyhow::Result<SourceFacts> {
    let reference = remote::ImageRef::parse(&options.source_text)
        .with_context(|| format!("invalid source image {}", options.source_text))?;
    let mut registry = RegistryConfig::default();
    if options.insecure
        && let remote::ImageRef::Registry(reference) = &reference
    {
        registry.hosts.insert(
            reference.registry().to_owned(),
            HostConfig {
                insecure: true,
                ..HostConfig::default()
            },
        );
    }
    let platform = match &options.platform {
        Some(text) => remote::Platform::parse(text).with_context(|| {
            format!("invalid platform {text:?}: expected OS/ARCH[/VARIANT], such as linux/amd64")
        })?,
        None => remote::Platform::host(),
    };
    let client = remote::RegistryClient::new(registry, Arc::new(DockerConfigCredentials::new()))?;
    let resolved = remote::image::resolve_with(&client, &reference, &platform)
        .await
        .with_context(|| format!("failed to resolve {}", options.source_text))?;
    let lazy = !resolved.layers.is_empty()
        && resolved.layers.iter().all(|layer| {
            layer
                .annotations
                .contains_key(estargz::TOC_DIGEST_ANNOTATION)
        });
    let runtime = ImageRuntimeConfig::from_config_json(&resolved.config.bytes)
        .with_context(|| format!("failed to read the config of {}", options.source_text))?;
    Ok(SourceFacts { lazy, runtime })
}

/// Builds the workload from the options and the image config.
fn workload_spec(
    run: &RunOptions,
    image: &ImageRuntimeConfig,
    root: &Path,
) -> anyhow::Result<WorkloadSpec> {
    let user = match run.user.as_deref().or(image.user.as_deref()) {
        Some(spec) => Some(resolve_user(root, spec)?),
        None => None,
    };
    let mut env = merge_env(&image.env, &run.env);
    if !env.iter().any(|(key, _)| key == "HOME") {
        let home = match &user {
            Some(ids) => ids.home.clone().unwrap_or_else(|| "/".to_owned()),
            None => "/root".to_owned(),
        };
        env.push(("HOME".to_owned(), home));
    }
    let workdir = run
        .workdir
        .clone()
        .or_else(|| image.working_dir.clone())
        .unwrap_or_else(|| "/".to_owned());
    Ok(WorkloadSpec {
        root: root.to_path_buf(),
        command: run.command.clone(),
        env,
        workdir,
        user,
        timeout: run.timeout,
        wait_for: run.wait_for.clone(),
        output_prefix: OUTPUT_PREFIX.to_owned(),
    })
}

/// Decides whether the recording is usable: errors for a failed command, and for a missing
/// readiness signal under `--strict`; warnings otherwise.
fn check_end(end: &WorkloadEnd, run: &RunOptions) -> anyhow::Result<()> {
    let command = shell_words(&run.command);
    match (end, &run.wait_for) {
        (WorkloadEnd::Ready { elapsed }, Some(text)) => {
            eprintln!(
                "{text:?} appeared after {:.2} s; the workload was stopped",
                elapsed.as_secs_f64()
            );
            Ok(())
        }
        (WorkloadEnd::Ready { .. }, None) => Ok(()),
        (WorkloadEnd::Exited { status, .. }, _) if !status.success() => anyhow::bail!(
            "{command} failed with {status} in the image (its output is above); fix the command, or its environment with --env, --workdir and --user"
        ),
        (WorkloadEnd::Exited { elapsed, .. }, None) => {
            eprintln!("{command} finished after {:.2} s", elapsed.as_secs_f64());
            Ok(())
        }
        (WorkloadEnd::Exited { .. }, Some(text)) => lenient(
            run.strict,
            format!("{command} exited without printing {text:?}"),
        ),
        (WorkloadEnd::TimedOut { limit }, wait_for) => {
            let what = match wait_for {
                Some(text) => format!("{text:?} did not appear"),
                None => format!("{command} did not finish"),
            };
            lenient(
                run.strict,
                format!(
                    "{what} within the time limit of {} s (raise it with --timeout)",
                    limit.as_secs()
                ),
            )
        }
    }
}

/// Fails with `problem` under `--strict`; otherwise warns that the partial recording is used.
fn lenient(strict: bool, problem: String) -> anyhow::Result<()> {
    if strict {
        anyhow::bail!("{problem}; --strict rejects an incomplete recording");
    }
    eprintln!(
        "warning: {problem}; optimizing with the files recorded until then (pass --strict to fail instead)"
    );
    Ok(())
}

/// Sizes of the recorded paths that are regular files in the mounted image (`None` for other
/// kinds and for paths that cannot be looked up). Only metadata is read.
fn sizes_in(root: &Path, paths: &[Vec<u8>]) -> std::collections::HashMap<Vec<u8>, Option<u64>> {
    use std::os::unix::ffi::OsStrExt;
    paths
        .iter()
        .map(|path| {
            let host = root.join(std::ffi::OsStr::from_bytes(path));
            let size = std::fs::symlink_metadata(&host)
                .ok()
                .filter(std::fs::Metadata::is_file)
                .map(|metadata| metadata.len());
            (path.clone(), size)
        })
        .collect()
}

/// Counts the recorded paths that are files or symlinks in the mounted image and sums their
/// sizes. Only metadata is read, which the mount serves from the TOC without fetching.
fn measure(root: &Path, paths: &[Vec<u8>]) -> (usize, u64) {
    use std::os::unix::ffi::OsStrExt;
    let mut files = 0;
    let mut bytes = 0;
    for path in paths {
        let host = root.join(std::ffi::OsStr::from_bytes(path));
        if let Ok(metadata) = std::fs::symlink_metadata(&host)
            && !metadata.is_dir()
        {
            files += 1;
            bytes += metadata.len();
        }
    }
    (files, bytes)
}

/// Writes the prioritized-files list in the format `lazypull convert --prioritize` reads.
fn write_list(path: &Path, paths: &[Vec<u8>]) -> anyhow::Result<()> {
    let mut text = Vec::new();
    for item in paths {
        text.extend_from_slice(item);
        text.push(b'\n');
    }
    std::fs::write(path, text)
        .with_context(|| format!("failed to write the recorded list to {}", path.display()))
}

/// Joins a command for display, quoting words that a shell would split or expand.
fn shell_words(command: &[OsString]) -> String {
    command
        .iter()
        .map(|word| {
            let word = word.to_string_lossy();
            let plain = !word.is_empty()
                && word
                    .chars()
                    .all(|c| c.is_ascii_alphanumeric() || "-_./=:,+@%".contains(c));
            if plain {
                word.into_owned()
            } else {
                format!("'{}'", word.replace('\'', "'\\''"))
            }
        })
        .collect::<Vec<_>>()
        .join(" ")
}

/// Formats a byte count in binary units.
pub fn human_bytes(bytes: u64) -> String {
    const UNITS: [&str; 4] = ["B", "KiB", "MiB", "GiB"];
    let mut value = bytes as f64;
    let mut unit = 0;
    while value >= 1024.0 && unit + 1 < UNITS.len() {
        value /= 1024.0;
        unit += 1;
    }
    if unit == 0 {
        format!("{bytes} B")
    } else {
        format!("{value:.1} {}", UNITS[unit])
    }
}
