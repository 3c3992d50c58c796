//! Disk usage of a snapshot directory.

use std::collections::HashSet;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};

use super::error::SnapshotError;
use super::types::Usage;

/// Sums allocated bytes (`st_blocks` × 512) and counts inodes below `dir`, the directory
/// itself included, counting each hard-linked inode once. Symbolic links are not followed and
/// other filesystems mounted below `dir` are not entered.
pub fn disk_usage(dir: &Path) -> Result<Usage, SnapshotError> {
    let root = std::fs::symlink_metadata(dir).map_err(SnapshotError::io("measure", dir))?;
    let device = root.dev();
    let mut seen = HashSet::new();
    let mut usage = Usage::default();
    let mut pending: Vec<PathBuf> = vec![dir.to_path_buf()];
    count(&root, &mut seen, &mut usage);
    while let Some(current) = pending.pop() {
        let entries = std::fs::read_dir(&current).map_err(SnapshotError::io("list", &current))?;
        for entry in entries {
            let entry = entry.map_err(SnapshotError::io("list", &current))?;
            let path = entry.path();
            let meta = match std::fs::symlink_metadata(&path) {
                Ok(meta) => meta,
                // Removed while we walked: it no longer uses space.
                Err(error) if error.kind() == std::io::ErrorKind::NotFound => continue,
                Err(error) => return Err(SnapshotError::io("measure", &path)(error)),
            };
            count(&meta, &mut seen, &mut usage);
            if meta.is_dir() && meta.dev() == device {
                pending.push(path);
            }
        }
    }
    Ok(usage)
}

fn count(meta: &std::fs::Metadata, seen: &mut HashSet<(u64, u64)>, usage: &mut Usage) {
    if seen.insert((meta.dev(), meta.ino())) {
        usage.inodes += 1;
        usage.size += i64::try_from(meta.blocks().saturating_mul(512)).unwrap_or(i64::MAX);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hard_links_count_once() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("a"), vec![1u8; 10_000]).unwrap();
        std::fs::hard_link(dir.path().join("a"), dir.path().join("b")).unwrap();
        std::fs::create_dir(dir.path().join("sub")).unwrap();
        std::fs::write(dir.path().join("sub/c"), b"c").unwrap();

        let usage = disk_usage(dir.path()).unwrap();
        // The directory, a (= b), sub and sub/c.
        assert_eq!(usage.inodes, 4);
        assert!(usage.size >= 10_000, "size {}", usage.size);
    }

    #[test]
    fn missing_directory_is_an_error() {
        let dir = tempfile::tempdir().unwrap();
        let error = disk_usage(&dir.path().join("missing")).unwrap_err();
        assert!(
            matches!(
                error,
                SnapshotError::Io {
                    action: "measure",
                    ..
                }
            ),
            "{error}"
        );
    }
}
