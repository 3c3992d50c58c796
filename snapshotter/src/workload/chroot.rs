//! The steps between `fork` and `exec` that put the workload inside the image: a private mount
//! namespace, `/proc`, `/dev` and `/sys`, `chroot`, the working directory and the user.
//!
//! [`ChrootPlan::enter`] runs in the forked child of a multi-threaded parent, so it may only make
//! async-signal-safe calls: every path is turned into a `CString` beforehand and the function
//! itself makes raw system calls and allocates nothing.

use std::ffi::CString;
use std::os::unix::ffi::OsStrExt;
use std::path::{Component, Path};

use super::error::WorkloadError;
use super::user::UserIds;

/// Everything the child needs, prepared before the fork.
#[derive(Debug)]
pub(super) struct ChrootPlan {
    root: CString,
    proc_dir: CString,
    dev_dir: CString,
    sys_dir: CString,
    /// The working directory and each of its ancestors (below `/`), shallowest first, as paths
    /// inside the image.
    workdir_steps: Vec<CString>,
    ids: Option<UserIds>,
}

/// Converts a host path into a `CString`.
fn c_path(path: &Path) -> Result<CString, WorkloadError> {
    CString::new(path.as_os_str().as_bytes()).map_err(|_| WorkloadError::NulByte {
        what: "path",
        value: path.display().to_string(),
    })
}

/// Checks that `root/name` is a directory, creating it (in the overlay's upper layer) when it
/// is missing. A symlink is rejected: a mount on it would follow the link outside the image.
fn ensure_mount_dir(root: &Path, name: &str) -> Result<CString, WorkloadError> {
    let path = root.join(name);
    match std::fs::symlink_metadata(&path) {
        Ok(metadata) if metadata.is_dir() => {}
        Ok(_) => return Err(WorkloadError::NotADirectory { path }),
        Err(error) if error.kind() == std::io::ErrorKind::NotFound => {
            std::fs::create_dir(&path).map_err(|source| WorkloadError::Prepare {
                path: path.clone(),
                source,
            })?;
        }
        Err(source) => return Err(WorkloadError::Prepare { path, source }),
    }
    c_path(&path)
}

impl ChrootPlan {
    /// Prepares the plan for the image mounted at `root`, creating `/proc`, `/dev` and `/sys`
    /// when the image lacks them. `workdir` must be absolute; it is created inside the chroot.
    pub(super) fn new(
        root: &Path,
        workdir: &str,
        ids: Option<UserIds>,
    ) -> Result<ChrootPlan, WorkloadError> {
        if !workdir.starts_with('/') {
            return Err(WorkloadError::RelativeWorkdir(workdir.to_owned()));
        }
        let mut workdir_steps = Vec::new();
        let mut current = std::path::PathBuf::from("/");
        for component in Path::new(workdir).components() {
            if let Component::Normal(name) = component {
                current.push(name);
                workdir_steps.push(c_path(&current)?);
            }
        }
        Ok(ChrootPlan {
            root: c_path(root)?,
            proc_dir: ensure_mount_dir(root, "proc")?,
            dev_dir: ensure_mount_dir(root, "dev")?,
            sys_dir: ensure_mount_dir(root, "sys")?,
            workdir_steps,
            ids,
        })
    }

    /// Enters the image. Runs in the child between `fork` and `exec`.
    pub(super) fn enter(&self) -> std::io::Result<()> {
        // Every unsafe block below is a plain system call on NUL-terminated strings that outlive
        // it. Null pointers are passed only where mount(2) allows them (no source, type or data).
        // The workload dies with the thread that started it, even when `lazypull` is killed
        // with SIGKILL. Its own children are not covered.
        // SAFETY: PR_SET_PDEATHSIG takes a signal number and no pointers.
        check(unsafe { libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL as libc::c_ulong) })?;
        // SAFETY: no pointer arguments.
        check(unsafe { libc::unshare(libc::CLONE_NEWNS) })?;
        // Mounts made from now on must not propagate to the host's namespace, whose root is
        // usually a shared mount (systemd makes it one).
        // SAFETY: a static string and null pointers that mount(2) allows for a propagation change.
        check(unsafe {
            libc::mount(
                std::ptr::null(),
                c"/".as_ptr(),
                std::ptr::null(),
                libc::MS_REC | libc::MS_PRIVATE,
                std::ptr::null(),
            )
        })?;

        // SAFETY: static strings and a path owned by `self`; mount(2) allows null data.
        check(unsafe {
            libc::mount(
                c"proc".as_ptr(),
                self.proc_dir.as_ptr(),
                c"proc".as_ptr(),
                libc::MS_NOSUID | libc::MS_NODEV | libc::MS_NOEXEC,
                std::ptr::null(),
            )
        })?;
        for (source, target) in [(c"/dev", &self.dev_dir), (c"/sys", &self.sys_dir)] {
            // SAFETY: a static string and a path owned by `self`; null type and data are ignored
            // for a bind mount.
            check(unsafe {
                libc::mount(
                    source.as_ptr(),
                    target.as_ptr(),
                    std::ptr::null(),
                    libc::MS_BIND | libc::MS_REC,
                    std::ptr::null(),
                )
            })?;
        }

        // SAFETY: a path owned by `self`.
        check(unsafe { libc::chroot(self.root.as_ptr()) })?;
        // SAFETY: a static string.
        check(unsafe { libc::chdir(c"/".as_ptr()) })?;
        for step in &self.workdir_steps {
            // Inside the chroot, so symlinks in the path resolve within the image.
            // SAFETY: a path owned by `self`.
            if unsafe { libc::mkdir(step.as_ptr(), 0o755) } != 0 {
                let error = std::io::Error::last_os_error();
                if error.raw_os_error() != Some(libc::EEXIST) {
                    return Err(error);
                }
            }
        }
        if let Some(workdir) = self.workdir_steps.last() {
            // SAFETY: a path owned by `self`.
            check(unsafe { libc::chdir(workdir.as_ptr()) })?;
        }

        if let Some(ids) = &self.ids {
            let groups = [ids.gid as libc::gid_t];
            // The group list and gid go first: after setuid the process may no longer change
            // them.
            // SAFETY: `groups` contains exactly the one entry that the count gives.
            check(unsafe { libc::setgroups(1, groups.as_ptr()) })?;
            // SAFETY: no pointer arguments.
            check(unsafe { libc::setgid(ids.gid) })?;
            // SAFETY: no pointer arguments.
            check(unsafe { libc::setuid(ids.uid) })?;
        }
        Ok(())
    }
}

fn check(result: libc::c_int) -> std::io::Result<()> {
    if result == 0 {
        Ok(())
    } else {
        Err(std::io::Error::last_os_error())
    }
}
