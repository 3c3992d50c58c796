//! An independent eStargz reader: the upstream Go `estargz` package, driven by our small
//! program `tests/interop/estargz-check/main.go`.
//!
//! The program is built once per source version with Debian's Go toolchain in GOPATH mode
//! against `/usr/share/gocode` (package `golang-github-containerd-stargz-snapshotter-dev`,
//! estargz v0.12), with no network access. The binary is cached under the Cargo target
//! directory as `lazypull-gochecker/estargz-check-<source hash>`, so a changed `main.go`
//! is rebuilt and parallel test processes never see a half-written binary.
//!
//! [`go_check`] verifies a blob and returns its entries as upstream reads them.
//! [`go_build_estargz`] converts a tar with upstream's `estargz.Build`, so our reader can be
//! tested against blobs written by another implementation.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::OnceLock;

use anyhow::Context;
use base64::Engine;
use serde::Deserialize;
use sha2::{Digest, Sha256};

use crate::prereq::find_binary;
use crate::process::run_checked;

/// The Go source of the checker, relative to this crate.
const SOURCE: &str = concat!(
    env!("CARGO_MANIFEST_DIR"),
    "/../tests/interop/estargz-check/main.go"
);

/// The directory where Debian installs Go library sources for GOPATH builds.
const DEBIAN_GOPATH: &str = "/usr/share/gocode";

/// One TOC entry as the upstream reader reports it (chunk entries are folded into their
/// file).
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct GoEntry {
    /// The entry name exactly as stored in the TOC (upstream writes a `./` prefix).
    pub name: String,
    /// The TOC type: `dir`, `reg`, `symlink`, `hardlink`, `char`, `block` or `fifo`.
    #[serde(rename = "type")]
    pub kind: String,
    /// The file size for `reg` entries, else 0.
    pub size: u64,
    /// The mode bits as stored in the TOC.
    pub mode: u32,
    /// Owner user id.
    pub uid: u64,
    /// Owner group id.
    pub gid: u64,
    /// Owner user name, empty when the TOC omits it (it may appear only on the first entry
    /// with the same uid).
    pub uname: String,
    /// Owner group name, with the same caveat as `uname`.
    pub gname: String,
    /// The modification time as stored: RFC 3339 in UTC, or empty.
    pub modtime: String,
    /// The link target of `symlink` and `hardlink` entries.
    pub link_name: String,
    /// Device major number of `char` and `block` entries.
    pub dev_major: u32,
    /// Device minor number of `char` and `block` entries.
    pub dev_minor: u32,
    /// Extended attributes with their raw values.
    #[serde(deserialize_with = "decode_xattrs")]
    pub xattrs: BTreeMap<String, Vec<u8>>,
    /// The TOC's whole-file digest of `reg` entries (`sha256:<hex>`), or empty.
    pub digest: String,
    /// For `reg` entries, the hex sha256 of the content read through the upstream reader
    /// with every chunk verified.
    #[serde(default)]
    pub sha256: Option<String>,
    /// For `reg` entries, the number of chunks read.
    pub chunks: u32,
}

impl GoEntry {
    /// Returns the name without a leading `./` or `/`, and without a trailing `/`.
    pub fn clean_name(&self) -> &str {
        let name = self.name.trim_start_matches("./").trim_start_matches('/');
        name.trim_end_matches('/')
    }
}

fn decode_xattrs<'de, D>(deserializer: D) -> Result<BTreeMap<String, Vec<u8>>, D::Error>
where
    D: serde::Deserializer<'de>,
{
    let encoded = BTreeMap::<String, String>::deserialize(deserializer)?;
    encoded
        .into_iter()
        .map(|(key, value)| {
            base64::engine::general_purpose::STANDARD
                .decode(value.as_bytes())
                .map(|bytes| (key, bytes))
                .map_err(serde::de::Error::custom)
        })
        .collect()
}

/// Opens `blob` with the upstream reader, verifies its TOC against `toc_digest`
/// (`sha256:<hex>`) and every chunk of every regular file, and returns all entries in TOC
/// order.
///
/// Fails with the checker's message when the footer, TOC, TOC digest, a chunk digest or a
/// whole-file digest is invalid.
pub fn go_check(blob: &Path, toc_digest: &str) -> anyhow::Result<Vec<GoEntry>> {
    let checker = checker_binary()?;
    let output = run_checked(
        Command::new(checker)
            .arg("-blob")
            .arg(blob)
            .arg("-toc-digest")
            .arg(toc_digest),
    )
    .with_context(|| format!("upstream estargz rejected {}", blob.display()))?;
    let text = String::from_utf8(output.stdout).context("checker output is not UTF-8")?;
    text.lines()
        .map(|line| {
            serde_json::from_str(line).with_context(|| format!("invalid checker line: {line}"))
        })
        .collect()
}

/// Settings for [`go_build_estargz`]; zero values mean upstream's defaults.
#[derive(Debug, Clone, Default)]
pub struct GoBuildOptions {
    /// Chunk size in bytes.
    pub chunk_size: usize,
    /// Compression level.
    pub level: i32,
    /// Write zstd:chunked instead of gzip.
    pub zstd: bool,
    /// Files to put in the prioritized section, before the landmark.
    pub prioritized: Vec<String>,
}

/// Digests and size of a blob written by [`go_build_estargz`].
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct GoBuilt {
    /// The TOC digest (`sha256:<hex>`), for the layer annotation.
    pub toc_digest: String,
    /// The digest of the uncompressed blob (`sha256:<hex>`).
    #[serde(rename = "diffID")]
    pub diff_id: String,
    /// The blob size in bytes.
    pub size: u64,
}

/// Converts the uncompressed tar `tar` into an eStargz blob at `out` with upstream's
/// `estargz.Build`.
pub fn go_build_estargz(
    tar: &Path,
    out: &Path,
    options: &GoBuildOptions,
) -> anyhow::Result<GoBuilt> {
    let checker = checker_binary()?;
    let mut command = Command::new(checker);
    command
        .arg("build")
        .arg("-tar")
        .arg(tar)
        .arg("-out")
        .arg(out);
    if options.chunk_size > 0 {
        command
            .arg("-chunk-size")
            .arg(options.chunk_size.to_string());
    }
    if options.level != 0 {
        command.arg("-level").arg(options.level.to_string());
    }
    if options.zstd {
        command.arg("-zstd");
    }
    if !options.prioritized.is_empty() {
        command
            .arg("-prioritized")
            .arg(options.prioritized.join(","));
    }
    let output = run_checked(&mut command)
        .with_context(|| format!("upstream estargz.Build failed on {}", tar.display()))?;
    serde_json::from_slice(&output.stdout).context("invalid build summary from the checker")
}

/// Returns the path of the checker binary, building it on first use in this process when
/// no binary for the current source exists.
pub fn checker_binary() -> anyhow::Result<PathBuf> {
    static BUILT: OnceLock<Result<PathBuf, String>> = OnceLock::new();
    BUILT
        .get_or_init(|| build_checker().map_err(|err| format!("{err:#}")))
        .clone()
        .map_err(|message| anyhow::anyhow!("{message}"))
}

fn build_checker() -> anyhow::Result<PathBuf> {
    let source = std::fs::read(SOURCE).with_context(|| format!("failed to read {SOURCE}"))?;
    let hash = hex::encode(&Sha256::digest(&source)[..8]);
    let dir = target_dir().join("lazypull-gochecker");
    let binary = dir.join(format!("estargz-check-{hash}"));
    if binary.is_file() {
        return Ok(binary);
    }

    let go = find_binary("go").context("go not found on PATH; run scripts/setup.sh (golang-go)")?;
    let estargz_source =
        Path::new(DEBIAN_GOPATH).join("src/github.com/containerd/stargz-snapshotter/estargz");
    if !estargz_source.is_dir() {
        anyhow::bail!(
            "{} is missing; run scripts/setup.sh (golang-github-containerd-stargz-snapshotter-dev)",
            estargz_source.display()
        );
    }
    std::fs::create_dir_all(&dir).with_context(|| format!("failed to create {}", dir.display()))?;
    let work = tempfile::Builder::new()
        .prefix("build-")
        .tempdir_in(&dir)
        .context("failed to create the Go build directory")?;
    let gopath = std::env::join_paths([work.path().join("gopath"), PathBuf::from(DEBIAN_GOPATH)])
        .context("invalid GOPATH")?;
    let partial = work.path().join("estargz-check");
    run_checked(
        Command::new(go)
            .arg("build")
            .arg("-o")
            .arg(&partial)
            .arg(SOURCE)
            .env("GO111MODULE", "off")
            .env("GOPATH", gopath)
            .env("GOPROXY", "off")
            .env("GOFLAGS", "")
            .env("CGO_ENABLED", "0")
            .env("GOCACHE", dir.join("gocache")),
    )
    .context("failed to build the Go estargz checker")?;
    // A rename within one directory is atomic, so concurrent builders both succeed.
    std::fs::rename(&partial, &binary)
        .with_context(|| format!("failed to move the checker to {}", binary.display()))?;
    Ok(binary)
}

/// Returns the Cargo target directory this crate was built into.
fn target_dir() -> PathBuf {
    match option_env!("CARGO_TARGET_DIR") {
        Some(dir) => PathBuf::from(dir),
        None => Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("..")
            .join("target"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn checker_line_parses_with_binary_xattr() {
        let line = r#"{"name":"./usr/bin/ping","type":"reg","size":3,"mode":493,"uid":0,"gid":0,"uname":"root","gname":"","modtime":"2023-11-14T22:13:20Z","linkName":"","devMajor":0,"devMinor":0,"xattrs":{"security.capability":"AQAAAg=="},"digest":"sha256:ab","sha256":"ab","chunks":1}"#;
        let entry: GoEntry = serde_json::from_str(line).unwrap();
        assert_eq!(entry.kind, "reg");
        assert_eq!(entry.clean_name(), "usr/bin/ping");
        assert_eq!(entry.xattrs["security.capability"], vec![1, 0, 0, 2]);
        assert_eq!(entry.sha256.as_deref(), Some("ab"));
    }
}
