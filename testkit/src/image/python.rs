//! The cached Debian-based python image built by `scripts/build-test-image.sh`.

use std::path::{Path, PathBuf};
use std::process::Command;

use anyhow::Context;

/// The image build script, relative to this crate.
const BUILD_SCRIPT: &str = concat!(
    env!("CARGO_MANIFEST_DIR"),
    "/../scripts/build-test-image.sh"
);

/// The tag the build script gives the image inside its layout.
pub const PYTHON_IMAGE_TAG: &str = "latest";

/// Returns the cache directory: `$LAZYPULL_CACHE_DIR`, or `/var/cache/lazypull`.
pub fn cache_dir() -> PathBuf {
    std::env::var_os("LAZYPULL_CACHE_DIR")
        .filter(|value| !value.is_empty())
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from("/var/cache/lazypull"))
}

/// Returns the OCI layout of the python test image (tag [`PYTHON_IMAGE_TAG`]), building
/// it first when it is missing or was built by an older recipe.
///
/// The image has two gzip layers (a minbase Debian bookworm, then python3 as an umoci diff
/// layer with whiteouts) and about 80 MB of blobs. A build needs root and the Debian
/// archive, and takes about a minute. Tests must treat the layout as read-only: copy it
/// before changing anything.
pub fn python_image() -> anyhow::Result<PathBuf> {
    let layout = cache_dir().join("images").join("python");
    let wanted = recipe_version(Path::new(BUILD_SCRIPT))?;
    let built = std::fs::read_to_string(layout.join(".lazypull-recipe")).ok();
    if built.as_deref().map(str::trim) == Some(wanted.as_str())
        && layout.join("index.json").is_file()
    {
        return Ok(layout);
    }

    let status = Command::new("bash")
        .arg(BUILD_SCRIPT)
        .env("LAZYPULL_CACHE_DIR", cache_dir())
        .status()
        .with_context(|| format!("failed to run {BUILD_SCRIPT}"))?;
    if !status.success() {
        anyhow::bail!("{BUILD_SCRIPT} failed with {status}; it needs root and the Debian archive");
    }
    if !layout.join("index.json").is_file() {
        anyhow::bail!(
            "{BUILD_SCRIPT} succeeded but {} has no index.json",
            layout.display()
        );
    }
    Ok(layout)
}

/// Reads `RECIPE_VERSION=<value>` from the build script.
fn recipe_version(script: &Path) -> anyhow::Result<String> {
    let text = std::fs::read_to_string(script)
        .with_context(|| format!("failed to read {}", script.display()))?;
    text.lines()
        .find_map(|line| line.strip_prefix("RECIPE_VERSION="))
        .map(|value| value.trim().to_string())
        .with_context(|| format!("no RECIPE_VERSION= line in {}", script.display()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn build_script_declares_recipe_version() {
        let version = recipe_version(Path::new(BUILD_SCRIPT)).unwrap();
        assert!(!version.is_empty());
    }
}
