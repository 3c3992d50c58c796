//! Reference extraction with GNU tar.

use std::collections::BTreeSet;
use std::ffi::OsStr;
use std::os::unix::ffi::OsStrExt;
use std::path::{Component, Path, PathBuf};
use std::process::Command;

use anyhow::Context;

use crate::prereq::find_binary;
use crate::process::run_checked;

/// Extracts `archive` into `dest` (which must exist) with GNU tar, restoring owners by
/// number, permissions including setuid/sticky, device nodes and all xattrs:
/// `tar --xattrs --xattrs-include=* --numeric-owner --same-owner -xpf`.
///
/// `compressed` adds `-z` for a gzip layer. Owners, devices and `security.*`/`trusted.*`
/// xattrs are restored only when running as root. Fails with tar's stderr on a non-zero
/// exit.
pub fn extract_with_gnu_tar(archive: &Path, dest: &Path, compressed: bool) -> anyhow::Result<()> {
    let tar = find_binary("tar").context("GNU tar not found on PATH")?;
    let mut command = Command::new(tar);
    command
        .arg("--xattrs")
        .arg("--xattrs-include=*")
        .arg("--numeric-owner")
        .arg("--same-owner")
        .arg("-xp");
    if compressed {
        command.arg("-z");
    }
    command
        .arg("-f")
        .arg(archive)
        .arg("-C")
        .arg(dest)
        .env("LC_ALL", "C");
    run_checked(&mut command)
        .with_context(|| format!("GNU tar failed to extract {}", archive.display()))?;
    Ok(())
}

/// Lists the directories that `archive` implies without containing an entry for them:
/// parents of members that have no member of their own. Compressed archives are detected
/// by GNU tar.
///
/// Extraction creates such directories with defaults of its own choosing, so comparisons
/// usually ignore their metadata (see [`DiffOptions::ignore_dir_metadata`](super::DiffOptions)).
/// Names are read from `tar -t` output, so a member name containing a newline is not
/// supported.
pub fn implied_parent_dirs(archive: &Path) -> anyhow::Result<BTreeSet<PathBuf>> {
    let tar = find_binary("tar").context("GNU tar not found on PATH")?;
    let output = run_checked(
        Command::new(tar)
            .arg("--quoting-style=literal")
            .arg("-tf")
            .arg(archive)
            .env("LC_ALL", "C"),
    )
    .with_context(|| format!("GNU tar failed to list {}", archive.display()))?;

    let mut explicit = BTreeSet::new();
    let mut parents = BTreeSet::new();
    for line in output
        .stdout
        .split(|&byte| byte == b'\n')
        .filter(|line| !line.is_empty())
    {
        let path = normalize(Path::new(OsStr::from_bytes(line)));
        if line.ends_with(b"/") {
            explicit.insert(path.clone());
        }
        let mut parent = path.parent();
        while let Some(dir) = parent.filter(|dir| !dir.as_os_str().is_empty()) {
            parents.insert(dir.to_path_buf());
            parent = dir.parent();
        }
    }
    Ok(parents.difference(&explicit).cloned().collect())
}

/// Drops `.` components and a leading `/` so tar paths compare with snapshot paths.
fn normalize(path: &Path) -> PathBuf {
    path.components()
        .filter(|component| matches!(component, Component::Normal(_) | Component::ParentDir))
        .collect()
}
