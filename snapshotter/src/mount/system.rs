//! Mount-table queries and the mount and unmount system calls used by `mount` and `unmount`.

use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};
use std::process::Command;

use nix::mount::{MntFlags, MsFlags};

/// Errors of mount system calls.
#[derive(Debug, thiserror::Error)]
pub enum SystemError {
    /// mount(2) of the overlay failed.
    #[error("failed to mount overlayfs at {target} with {options}")]
    Overlay {
        /// Mount point.
        target: PathBuf,
        /// The option string passed.
        options: String,
        /// The errno.
        #[source]
        source: nix::Error,
    },
    /// The overlay option string does not fit the one page mount(2) accepts, and the kernel
    /// refused the layer-by-layer configuration (`lowerdir+`, Linux 6.8 and later) as well.
    #[error(
        "overlayfs options for {target} are {len} bytes, above the {max}-byte limit of mount(2), \
         and the kernel refused adding lower layers one by one with fsconfig (needs Linux 6.8 or \
         later); mount an image with fewer layers or use a shorter --state-dir"
    )]
    OptionsTooLong {
        /// Mount point.
        target: PathBuf,
        /// Length of the option string.
        len: usize,
        /// The limit.
        max: usize,
        /// The error of the fsconfig path.
        #[source]
        source: rustix::io::Errno,
    },
    /// A mount could not be removed, even lazily.
    #[error("failed to unmount {target}")]
    Unmount {
        /// Mount point.
        target: PathBuf,
        /// The errno of the lazy detach.
        #[source]
        source: nix::Error,
    },
}

/// One page: the most option bytes mount(2) copies from user space.
const MAX_MOUNT_DATA: usize = 4095;

/// Mounts overlayfs at `target` with `lowers` (top layer first), `upper` and `work`.
pub fn mount_overlay(
    target: &Path,
    lowers: &[PathBuf],
    upper: &Path,
    work: &Path,
) -> Result<(), SystemError> {
    let lowerdir: Vec<String> = lowers.iter().map(|dir| escape_overlay_path(dir)).collect();
    let options = format!(
        "lowerdir={},upperdir={},workdir={}",
        lowerdir.join(":"),
        escape_overlay_path(upper),
        escape_overlay_path(work)
    );
    if options.len() > MAX_MOUNT_DATA {
        return mount_overlay_layer_by_layer(target, lowers, upper, work).map_err(|source| {
            SystemError::OptionsTooLong {
                target: target.to_path_buf(),
                len: options.len(),
                max: MAX_MOUNT_DATA,
                source,
            }
        });
    }
    nix::mount::mount(
        Some("overlay"),
        target,
        Some("overlay"),
        MsFlags::empty(),
        Some(options.as_str()),
    )
    .map_err(|source| SystemError::Overlay {
        target: target.to_path_buf(),
        options,
        source,
    })
}

/// Mounts overlayfs through the file-system context API, passing each lower layer as its own
/// `lowerdir+` parameter, so the number of layers is not limited by the one-page option string
/// of mount(2). Paths are passed whole and need no escaping.
fn mount_overlay_layer_by_layer(
    target: &Path,
    lowers: &[PathBuf],
    upper: &Path,
    work: &Path,
) -> Result<(), rustix::io::Errno> {
    use rustix::mount::{
        FsMountFlags, FsOpenFlags, MountAttrFlags, MoveMountFlags, fsconfig_create,
        fsconfig_set_string, fsmount, fsopen, move_mount,
    };
    let context = fsopen("overlay", FsOpenFlags::FSOPEN_CLOEXEC)?;
    fsconfig_set_string(&context, "source", "overlay")?;
    for lower in lowers {
        fsconfig_set_string(&context, "lowerdir+", lower.as_path())?;
    }
    fsconfig_set_string(&context, "upperdir", upper)?;
    fsconfig_set_string(&context, "workdir", work)?;
    fsconfig_create(&context)?;
    let mount = fsmount(
        &context,
        FsMountFlags::FSMOUNT_CLOEXEC,
        MountAttrFlags::empty(),
    )?;
    move_mount(
        &mount,
        "",
        rustix::fs::CWD,
        target,
        MoveMountFlags::MOVE_MOUNT_F_EMPTY_PATH,
    )
}

/// Escapes the characters overlayfs treats as separators in its path options.
fn escape_overlay_path(path: &Path) -> String {
    let text = path.to_string_lossy();
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        if matches!(c, ':' | ',' | '\\') {
            out.push('\\');
        }
        out.push(c);
    }
    out
}

/// Checks whether something is mounted exactly at `path`. Reads `/proc/self/mountinfo` and never
/// touches the path itself, which may be a dead FUSE mount.
pub fn is_mount_point(path: &Path) -> bool {
    mount_points().iter().any(|mounted| mounted == path)
}

/// Mount points of this mount namespace, in mountinfo order.
pub fn mount_points() -> Vec<PathBuf> {
    let text = std::fs::read_to_string("/proc/self/mountinfo").unwrap_or_default();
    text.lines()
        .filter_map(|line| line.split(' ').nth(4))
        .map(|field| PathBuf::from(std::ffi::OsStr::from_bytes(&unescape_octal(field))))
        .collect()
}

/// Decodes the `\ooo` escapes mountinfo uses for spaces, tabs, newlines and backslashes.
fn unescape_octal(field: &str) -> Vec<u8> {
    let bytes = field.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'\\'
            && i + 3 < bytes.len()
            && bytes[i + 1..i + 4]
                .iter()
                .all(|b| (b'0'..=b'7').contains(b))
        {
            let value =
                (bytes[i + 1] - b'0') * 64 + (bytes[i + 2] - b'0') * 8 + (bytes[i + 3] - b'0');
            out.push(value);
            i += 4;
        } else {
            out.push(bytes[i]);
            i += 1;
        }
    }
    out
}

/// Maximum number of mounts stacked at one mount point that [`unmount`] removes.
const MAX_STACKED: usize = 8;

/// Removes every mount stacked at `path` (at most [`MAX_STACKED`]), each with
/// [`unmount_one`]. Returns whether a mount was removed.
pub fn unmount(path: &Path) -> Result<bool, SystemError> {
    let mut removed = false;
    for _ in 0..MAX_STACKED {
        if !unmount_one(path)? {
            break;
        }
        removed = true;
    }
    Ok(removed)
}

/// Removes the top mount at `path`: a plain unmount first, a lazy detach if it is busy or its
/// server is gone, and for FUSE mounts `fusermount3 -u -z` as a last resort. Does nothing when
/// nothing is mounted there. Returns whether a mount was removed.
fn unmount_one(path: &Path) -> Result<bool, SystemError> {
    if !is_mount_point(path) {
        return Ok(false);
    }
    match nix::mount::umount2(path, MntFlags::empty()) {
        Ok(()) => return Ok(true),
        Err(error) => {
            tracing::debug!(path = %path.display(), %error, "plain unmount failed; detaching lazily")
        }
    }
    let detach = nix::mount::umount2(path, MntFlags::MNT_DETACH);
    if detach.is_ok() {
        return Ok(true);
    }
    let fusermount = Command::new("fusermount3")
        .arg("-u")
        .arg("-z")
        .arg(path)
        .output();
    if matches!(&fusermount, Ok(output) if output.status.success()) {
        return Ok(true);
    }
    Err(SystemError::Unmount {
        target: path.to_path_buf(),
        source: detach.err().unwrap_or(nix::Error::EBUSY),
    })
}

/// Checks that process `pid` exists and runs a `lazypull` binary, which guards against a reused
/// pid.
pub fn is_lazypull_process(pid: u32) -> bool {
    let Ok(cmdline) = std::fs::read(format!("/proc/{pid}/cmdline")) else {
        return false;
    };
    let argv0 = cmdline.split(|&b| b == 0).next().unwrap_or_default();
    let name = Path::new(std::ffi::OsStr::from_bytes(argv0))
        .file_name()
        .map(|n| n.as_bytes().to_vec());
    name.is_some_and(|n| n.starts_with(b"lazypull"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn overlay_paths_escape_separators() {
        assert_eq!(
            escape_overlay_path(Path::new("/a:b,c\\d")),
            "/a\\:b\\,c\\\\d"
        );
    }

    #[test]
    fn mountinfo_escapes_decode() {
        assert_eq!(unescape_octal("/mnt/with\\040space"), b"/mnt/with space");
        assert_eq!(unescape_octal("/plain"), b"/plain");
    }

    #[test]
    fn unmount_removes_stacked_mounts() {
        lazypull_testkit::require_or_skip!(lazypull_testkit::Prereq::Root);
        let dir = tempfile::tempdir().unwrap();
        for _ in 0..3 {
            nix::mount::mount(
                Some("tmpfs"),
                dir.path(),
                Some("tmpfs"),
                nix::mount::MsFlags::empty(),
                Some("size=1m"),
            )
            .unwrap();
        }
        assert!(is_mount_point(dir.path()));
        assert!(unmount(dir.path()).unwrap());
        assert!(!is_mount_point(dir.path()));
        assert!(!unmount(dir.path()).unwrap(), "nothing left to remove");
    }

    #[test]
    fn root_is_a_mount_point() {
        assert!(is_mount_point(Path::new("/")));
    }
}
