//! Finding and removing mounts below a directory, so tests leave none behind.

use std::ffi::CString;
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};

/// One line of `/proc/self/mountinfo`, reduced to what cleanup and assertions need.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MountInfo {
    /// The mount point.
    pub mount_point: PathBuf,
    /// The filesystem type, such as `overlay` or `fuse` (`fuse.<subtype>` via fusermount3).
    pub fs_type: String,
    /// The mount source, such as `overlay` or a device path.
    pub source: String,
}

/// Returns every mount of this mount namespace, in the kernel's order (parents first).
pub fn mount_table() -> Vec<MountInfo> {
    let text = std::fs::read_to_string("/proc/self/mountinfo").unwrap_or_default();
    text.lines().filter_map(parse_mountinfo_line).collect()
}

/// Returns the mounts whose mount point is `dir` or below it, deepest first.
pub fn mounts_under(dir: &Path) -> Vec<MountInfo> {
    let mut found: Vec<MountInfo> = mount_table()
        .into_iter()
        .filter(|mount| mount.mount_point.starts_with(dir))
        .collect();
    found.reverse();
    found
}

/// Detaches (`umount2(MNT_DETACH)`) every mount at or below `dir`, deepest first, and
/// returns the mount points it could not detach with their errors.
pub fn unmount_all_under(dir: &Path) -> Vec<(PathBuf, std::io::Error)> {
    let mut failures = Vec::new();
    // A mount point can be stacked several times; repeat while progress is made.
    for _ in 0..8 {
        let mounts = mounts_under(dir);
        if mounts.is_empty() {
            return Vec::new();
        }
        failures.clear();
        for mount in &mounts {
            if let Err(err) = detach(&mount.mount_point) {
                failures.push((mount.mount_point.clone(), err));
            }
        }
        if failures.len() == mounts.len() {
            break;
        }
    }
    failures
}

fn detach(mount_point: &Path) -> std::io::Result<()> {
    let path = CString::new(mount_point.as_os_str().as_bytes())
        .map_err(|err| std::io::Error::new(std::io::ErrorKind::InvalidInput, err))?;
    // SAFETY: `path` is a valid NUL-terminated string that outlives the call.
    let result = unsafe { libc::umount2(path.as_ptr(), libc::MNT_DETACH) };
    if result == 0 {
        Ok(())
    } else {
        Err(std::io::Error::last_os_error())
    }
}

/// Parses one mountinfo line: `id parent major:minor root mount_point options [optional
/// fields...] - fs_type source super_options` (proc(5)). Spaces and other special bytes
/// in paths are escaped as `\ooo` octal.
fn parse_mountinfo_line(line: &str) -> Option<MountInfo> {
    let (before, after) = line.split_once(" - ")?;
    let mount_point = before.split(' ').nth(4)?;
    let mut tail = after.split(' ');
    let fs_type = tail.next()?.to_string();
    let source = unescape(tail.next()?);
    Some(MountInfo {
        mount_point: PathBuf::from(std::ffi::OsStr::from_bytes(&unescape_bytes(mount_point))),
        fs_type,
        source,
    })
}

fn unescape_bytes(field: &str) -> Vec<u8> {
    let bytes = field.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut index = 0;
    while index < bytes.len() {
        let octal = bytes.get(index + 1..index + 4);
        let decoded = octal
            .filter(|digits| {
                bytes[index] == b'\\' && digits.iter().all(|d| (b'0'..=b'7').contains(d))
            })
            .and_then(|digits| u8::from_str_radix(std::str::from_utf8(digits).ok()?, 8).ok());
        match decoded {
            Some(byte) => {
                out.push(byte);
                index += 4;
            }
            None => {
                out.push(bytes[index]);
                index += 1;
            }
        }
    }
    out
}

fn unescape(field: &str) -> String {
    String::from_utf8_lossy(&unescape_bytes(field)).into_owned()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn mountinfo_line_with_escaped_space_parses() {
        let line =
            "36 35 98:0 / /mnt/with\\040space rw,noatime master:1 - overlay overlay rw,lowerdir=/a";
        let mount = parse_mountinfo_line(line).unwrap();
        assert_eq!(mount.mount_point, PathBuf::from("/mnt/with space"));
        assert_eq!(mount.fs_type, "overlay");
        assert_eq!(mount.source, "overlay");
    }

    #[test]
    fn root_is_in_mount_table() {
        assert!(
            mount_table()
                .iter()
                .any(|mount| mount.mount_point == Path::new("/"))
        );
    }
}
