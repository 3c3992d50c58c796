//! Shared helpers of the `mount_*` tests: eStargz OCI layouts, the `lazypull` binary, and
//! mounts that are cleaned up even when a test panics.

#![allow(dead_code)]

use std::io::Read;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use anyhow::Context;
use estargz::build::{BuildOptions, build};
use serde_json::{Value, json};
use sha2::{Digest, Sha256};

/// Returns a command for the `lazypull` binary built for these tests.
pub fn lazypull() -> Command {
    Command::new(env!("CARGO_BIN_EXE_lazypull"))
}

/// Runs `lazypull` with `args` and returns its output, failing with stderr on a non-zero exit.
pub fn lazypull_ok(args: &[&str]) -> anyhow::Result<Output> {
    let output = lazypull()
        .args(args)
        .output()
        .context("failed to run lazypull")?;
    if !output.status.success() {
        anyhow::bail!(
            "lazypull {} failed with {}: {}",
            args.join(" "),
            output.status,
            String::from_utf8_lossy(&output.stderr)
        );
    }
    Ok(output)
}

fn sha256(bytes: &[u8]) -> String {
    format!("sha256:{}", hex::encode(Sha256::digest(bytes)))
}

fn write_blob(layout: &Path, bytes: &[u8]) -> anyhow::Result<String> {
    let digest = sha256(bytes);
    let dir = layout.join("blobs/sha256");
    std::fs::create_dir_all(&dir)?;
    std::fs::write(dir.join(digest.trim_start_matches("sha256:")), bytes)?;
    Ok(digest)
}

/// One converted layer.
#[derive(Debug, Clone)]
pub struct ConvertedLayer {
    /// Blob digest.
    pub digest: String,
    /// Blob size.
    pub size: u64,
    /// Uncompressed tar of the original layer (to extract with GNU tar as the reference).
    pub tar: PathBuf,
}

/// Writes an OCI layout at `dir` tagged `tag` whose layers are `tars` (uncompressed, bottom
/// first) converted to eStargz with `options`, with the TOC-digest annotation on each layer.
/// Keeps each input tar next to the layout for reference extraction.
pub fn write_estargz_layout(
    dir: &Path,
    tag: &str,
    tars: &[Vec<u8>],
    options: &BuildOptions,
) -> anyhow::Result<Vec<ConvertedLayer>> {
    let mut files = Vec::new();
    for (n, tar) in tars.iter().enumerate() {
        let path = dir.join(format!("layer-{n}.tar"));
        std::fs::create_dir_all(dir)?;
        std::fs::write(&path, tar)?;
        files.push(path);
    }
    write_estargz_layout_from_files(dir, tag, &files, options)
}

/// Like [`write_estargz_layout`] with the uncompressed tars already in files.
pub fn write_estargz_layout_from_files(
    dir: &Path,
    tag: &str,
    tars: &[PathBuf],
    options: &BuildOptions,
) -> anyhow::Result<Vec<ConvertedLayer>> {
    let mut descriptors = Vec::new();
    let mut diff_ids = Vec::new();
    let mut layers = Vec::new();
    for tar in tars {
        let input = std::fs::File::open(tar)
            .with_context(|| format!("failed to open {}", tar.display()))?;
        let mut blob = Vec::new();
        let out = build(std::io::BufReader::new(input), &mut blob, options)
            .with_context(|| format!("failed to convert {}", tar.display()))?;
        let digest = write_blob(dir, &blob)?;
        descriptors.push(json!({
            "mediaType": "application/vnd.oci.image.layer.v1.tar+gzip",
            "digest": digest,
            "size": blob.len(),
            "annotations": {
                "containerd.io/snapshot/stargz/toc.digest": out.toc_digest.to_string(),
                "io.containers.estargz.uncompressed-size": out.uncompressed_size.to_string(),
            },
        }));
        diff_ids.push(out.diff_id.to_string());
        layers.push(ConvertedLayer {
            digest,
            size: blob.len() as u64,
            tar: tar.clone(),
        });
    }
    write_manifest(dir, tag, descriptors, diff_ids)?;
    Ok(layers)
}

fn write_manifest(
    dir: &Path,
    tag: &str,
    layers: Vec<Value>,
    diff_ids: Vec<String>,
) -> anyhow::Result<()> {
    let config = serde_json::to_vec(&json!({
        "architecture": "amd64",
        "os": "linux",
        "config": { "Env": ["PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"] },
        "rootfs": { "type": "layers", "diff_ids": diff_ids },
    }))?;
    let config_digest = write_blob(dir, &config)?;
    let manifest = serde_json::to_vec(&json!({
        "schemaVersion": 2,
        "mediaType": "application/vnd.oci.image.manifest.v1+json",
        "config": { "mediaType": "application/vnd.oci.image.config.v1+json", "digest": config_digest, "size": config.len() },
        "layers": layers,
    }))?;
    let manifest_digest = write_blob(dir, &manifest)?;
    let index = json!({
        "schemaVersion": 2,
        "manifests": [{
            "mediaType": "application/vnd.oci.image.manifest.v1+json",
            "digest": manifest_digest,
            "size": manifest.len(),
            "annotations": { "org.opencontainers.image.ref.name": tag },
        }],
    });
    std::fs::write(dir.join("index.json"), serde_json::to_vec(&index)?)?;
    std::fs::write(dir.join("oci-layout"), br#"{"imageLayoutVersion":"1.0.0"}"#)?;
    Ok(())
}

/// Reads the layer blob paths of the image tagged `tag` in the layout `dir`, bottom first.
pub fn layout_layers(dir: &Path, tag: &str) -> anyhow::Result<Vec<PathBuf>> {
    let index: Value = serde_json::from_slice(&std::fs::read(dir.join("index.json"))?)?;
    let manifests = index["manifests"]
        .as_array()
        .context("index has no manifests")?;
    let entry = manifests
        .iter()
        .find(|m| m["annotations"]["org.opencontainers.image.ref.name"] == tag)
        .or_else(|| manifests.first())
        .context("no manifest in index")?;
    let blob = |digest: &str| {
        dir.join("blobs/sha256")
            .join(digest.trim_start_matches("sha256:"))
    };
    let manifest: Value = serde_json::from_slice(&std::fs::read(blob(
        entry["digest"].as_str().unwrap_or_default(),
    ))?)?;
    let layers = manifest["layers"]
        .as_array()
        .context("manifest has no layers")?;
    Ok(layers
        .iter()
        .map(|layer| blob(layer["digest"].as_str().unwrap_or_default()))
        .collect())
}

/// Decompresses a gzip layer (all members) into `out`.
pub fn gunzip_to(blob: &Path, out: &Path) -> anyhow::Result<()> {
    let input = std::fs::File::open(blob)?;
    let mut decoder = flate2::read::MultiGzDecoder::new(std::io::BufReader::new(input));
    let mut file = std::fs::File::create(out)?;
    std::io::copy(&mut decoder, &mut file)?;
    Ok(())
}

/// Converts the gzip image `tag` of layout `src` into an eStargz layout at `dst`, keeping the
/// uncompressed original tars in `dst` for reference extraction.
pub fn convert_layout(
    src: &Path,
    tag: &str,
    dst: &Path,
    options: &BuildOptions,
) -> anyhow::Result<Vec<ConvertedLayer>> {
    std::fs::create_dir_all(dst)?;
    let mut tars = Vec::new();
    for (n, blob) in layout_layers(src, tag)?.iter().enumerate() {
        let tar = dst.join(format!("layer-{n}.tar"));
        gunzip_to(blob, &tar)?;
        tars.push(tar);
    }
    write_estargz_layout_from_files(dst, tag, &tars, options)
}

/// A mount made with `lazypull mount`, unmounted with `lazypull unmount` on drop.
pub struct Mount {
    pub dir: tempfile::TempDir,
    pub state: tempfile::TempDir,
}

impl Mount {
    /// Returns the merged mount point.
    pub fn path(&self) -> &Path {
        self.dir.path()
    }

    /// Returns the state directory.
    pub fn state_dir(&self) -> &Path {
        self.state.path()
    }

    /// Mounts `image` with extra `args`, detached.
    pub fn start(image: &str, args: &[&str]) -> anyhow::Result<Mount> {
        Self::start_in(&std::env::temp_dir(), image, args)
    }

    /// Mounts `image` at a new directory inside `parent` (state directory in the system
    /// temporary directory).
    pub fn start_in(parent: &Path, image: &str, args: &[&str]) -> anyhow::Result<Mount> {
        let dir = tempfile::Builder::new()
            .prefix("lazypull-mnt-")
            .tempdir_in(parent)?;
        let state = tempfile::Builder::new()
            .prefix("lazypull-state-")
            .tempdir()?;
        let mount = Mount { dir, state };
        let mut all = vec![
            "mount",
            image,
            path_str(mount.path()),
            "--state-dir",
            path_str(mount.state_dir()),
        ];
        all.extend_from_slice(args);
        lazypull_ok(&all)?;
        Ok(mount)
    }

    /// Runs `lazypull status` and returns the parsed JSON.
    pub fn stats(&self) -> anyhow::Result<Value> {
        let output = lazypull_ok(&[
            "status",
            path_str(self.path()),
            "--state-dir",
            path_str(self.state_dir()),
        ])?;
        Ok(serde_json::from_slice(&output.stdout)?)
    }

    /// Runs `lazypull status`, which has the serving process write its counters as of now.
    pub fn fresh_stats(&self) -> anyhow::Result<Value> {
        self.stats()
    }

    /// Runs `lazypull unmount`.
    pub fn unmount(&self) -> anyhow::Result<()> {
        lazypull_ok(&[
            "unmount",
            path_str(self.path()),
            "--state-dir",
            path_str(self.state_dir()),
        ])
        .map(|_| ())
    }

    /// Reads the serving process id from the mount record.
    pub fn pid(&self) -> anyhow::Result<u32> {
        let records = self.state_dir().join("mounts");
        for entry in std::fs::read_dir(&records)? {
            // The directory also holds each mount point's lock file.
            let path = entry?.path();
            if path.extension().is_none_or(|extension| extension != "json") {
                continue;
            }
            let record: Value = serde_json::from_slice(&std::fs::read(path)?)?;
            if let Some(pid) = record["pid"].as_u64() {
                return Ok(pid as u32);
            }
        }
        anyhow::bail!("no mount record in {}", records.display())
    }

    /// Reads the serving process's log.
    pub fn log(&self) -> String {
        let mut text = String::new();
        if let Ok(entries) = std::fs::read_dir(self.state_dir()) {
            for entry in entries.flatten() {
                let path = entry.path().join("serve.log");
                if let Ok(mut file) = std::fs::File::open(&path) {
                    let _ = file.read_to_string(&mut text);
                }
            }
        }
        text
    }
}

impl Drop for Mount {
    fn drop(&mut self) {
        if self
            .state_dir()
            .join("mounts")
            .read_dir()
            .is_ok_and(|mut d| d.next().is_some())
        {
            let _ = self.unmount();
        }
        // Whatever remains (a failed unmount) must not outlive the test.
        lazypull_testkit::mounts::unmount_all_under(self.dir.path());
        lazypull_testkit::mounts::unmount_all_under(self.state.path());
    }
}

/// Converts a path to `&str` for argument lists. Test paths are always UTF-8.
pub fn path_str(path: &Path) -> &str {
    path.to_str().expect("test paths are UTF-8")
}
