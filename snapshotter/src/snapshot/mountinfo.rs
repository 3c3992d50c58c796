//! The mount table of this mount namespace, and unmounting.
//!
//! Paths are read from `/proc/self/mountinfo` so that a dead FUSE mount ("transport endpoint
//! is not connected") is found without touching it.

use std::ffi::OsStr;
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};

use nix::mount::MntFlags;

/// Mount points of this mount namespace, in mountinfo order.
pub fn mount_points() -> Vec<PathBuf> {
    let text = std::fs::read_to_string("/proc/self/mountinfo").unwrap_or_default();
    parse_mount_points(&text)
}

fn parse_mount_points(text: &str) -> Vec<PathBuf> {
    text.lines()
        .filter_map(|line| line.split(' ').nth(4))
        .map(|field| PathBuf::from(OsStr::from_bytes(&unescape_octal(field))))
        .collect()
}

/// Whether something is mounted exactly at `path`.
pub fn is_mount_point(path: &Path) -> bool {
    mount_points().iter().any(|point| point == path)
}

/// Mount points strictly below `dir`, deepest first (the order to unmount them in).
pub fn mounts_below(dir: &Path) -> Vec<PathBuf> {
    let mut below: Vec<PathBuf> = mount_points()
        .into_iter()
        .filter(|point| point != dir && point.starts_with(dir))
        .collect();
    below.sort_by_key(|point| std::cmp::Reverse(point.components().count()));
    below.dedup();
    below
}

/// Removes the mount at `path`: a plain unmount, then a lazy detach when it is busy or its
/// server is gone. Stacked mounts at the same path are removed one after the other. Returns
/// whether anything was mounted there.
pub fn unmount(path: &Path) -> Result<bool, nix::Error> {
    let mut removed = false;
    // Bounded: each round removes one mount or returns.
    for _ in 0..16 {
        if !is_mount_point(path) {
            return Ok(removed);
        }
        if let Err(error) = nix::mount::umount2(path, MntFlags::empty()) {
            tracing::debug!(path = %path.display(), %error, "plain unmount failed; detaching lazily");
            nix::mount::umount2(path, MntFlags::MNT_DETACH)?;
        }
        removed = true;
    }
    Ok(removed)
}

/// Decodes the `\ooo` escapes mountinfo uses for spaces, tabs, newlines and backslashes.
fn unescape_octal(field: &str) -> Vec<u8> {
    let bytes = field.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        let escape = bytes
            .get(i + 1..i + 4)
            .filter(|digits| bytes[i] == b'\\' && digits.iter().all(|b| (b'0'..=b'7').contains(b)));
        match escape {
            Some(digits) => {
                let value = digits
                    .iter()
                    .fold(0u32, |acc, digit| acc * 8 + u32::from(digit - b'0'));
                out.push(u8::try_from(value).unwrap_or(b'?'));
                i += 4;
            }
            None => {
                out.push(bytes[i]);
                i += 1;
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn mountinfo_paths_are_unescaped() {
        let text = "36 35 98:0 / /mnt/with\\040space rw - ext3 /dev/root rw\n37 35 0:5 / /plain rw - tmpfs t rw\n";
        assert_eq!(
            parse_mount_points(text),
            [PathBuf::from("/mnt/with space"), PathBuf::from("/plain")]
        );
    }

    #[test]
    fn root_is_a_mount_point() {
        assert!(is_mount_point(Path::new("/")));
    }

    #[test]
    fn unmounting_a_plain_directory_does_nothing() {
        let dir = tempfile::tempdir().unwrap();
        assert!(!unmount(dir.path()).unwrap());
    }
}
