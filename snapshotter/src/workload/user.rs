//! The user a workload runs as, from the image config's `User` field, looked up in the image's
//! own `/etc/passwd` and `/etc/group` as container runtimes do.

use std::path::Path;

use super::error::WorkloadError;

/// Numeric identity of the workload's process.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UserIds {
    /// User id.
    pub uid: u32,
    /// Primary group id.
    pub gid: u32,
    /// Home directory from `/etc/passwd`, when the user is listed there.
    pub home: Option<String>,
}

/// Resolves `spec` (`user`, `uid`, `user:group`, `uid:gid` and mixes) against the image at
/// `root`. A numeric user missing from `/etc/passwd` gets group 0, as with Docker.
///
/// Only regular files are read: an `/etc/passwd` that is a symlink is treated as missing,
/// because resolving it from outside the image could read a host file.
pub fn resolve_user(root: &Path, spec: &str) -> Result<UserIds, WorkloadError> {
    let (user, group) = match spec.split_once(':') {
        Some((user, group)) => (user, Some(group)),
        None => (spec, None),
    };
    let passwd = read_image_file(root, "etc/passwd");
    // passwd fields: name:password:uid:gid:gecos:home:shell
    let entry = passwd
        .lines()
        .map(|line| line.split(':').collect::<Vec<_>>())
        .find(|fields| fields.len() >= 4 && (fields[0] == user || fields[2] == user));
    let (uid, mut gid, home) = match (&entry, user.parse::<u32>()) {
        (Some(fields), _) => {
            let uid = fields[2].parse().map_err(|_| WorkloadError::UnknownUser {
                user: user.to_owned(),
            })?;
            let gid = fields[3].parse().unwrap_or(0);
            (uid, gid, fields.get(5).map(|home| (*home).to_owned()))
        }
        (None, Ok(uid)) => (uid, 0, None),
        (None, Err(_)) => {
            return Err(WorkloadError::UnknownUser {
                user: user.to_owned(),
            });
        }
    };
    if let Some(group) = group {
        gid = match group.parse::<u32>() {
            Ok(gid) => gid,
            Err(_) => lookup_group(root, group)?,
        };
    }
    Ok(UserIds { uid, gid, home })
}

fn lookup_group(root: &Path, group: &str) -> Result<u32, WorkloadError> {
    // group fields: name:password:gid:members
    read_image_file(root, "etc/group")
        .lines()
        .map(|line| line.split(':').collect::<Vec<_>>())
        .find(|fields| fields.len() >= 3 && fields[0] == group)
        .and_then(|fields| fields[2].parse().ok())
        .ok_or_else(|| WorkloadError::UnknownGroup {
            group: group.to_owned(),
        })
}

/// Reads a regular file of the image, or returns an empty string.
fn read_image_file(root: &Path, relative: &str) -> String {
    let path = root.join(relative);
    match std::fs::symlink_metadata(&path) {
        Ok(metadata) if metadata.is_file() => std::fs::read_to_string(&path).unwrap_or_default(),
        _ => String::new(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn image() -> tempfile::TempDir {
        let root = tempfile::tempdir().unwrap();
        std::fs::create_dir(root.path().join("etc")).unwrap();
        std::fs::write(
            root.path().join("etc/passwd"),
            "root:x:0:0:root:/root:/bin/sh\napp:x:1000:1001::/home/app:/bin/sh\n",
        )
        .unwrap();
        std::fs::write(root.path().join("etc/group"), "root:x:0:\nstaff:x:50:\n").unwrap();
        root
    }

    #[test]
    fn user_name_gets_passwd_ids_and_home() {
        let root = image();
        let ids = resolve_user(root.path(), "app").unwrap();
        assert_eq!(ids.uid, 1000);
        assert_eq!(ids.gid, 1001);
        assert_eq!(ids.home.as_deref(), Some("/home/app"));
    }

    #[test]
    fn group_name_overrides_primary_group() {
        let root = image();
        assert_eq!(resolve_user(root.path(), "app:staff").unwrap().gid, 50);
        assert_eq!(resolve_user(root.path(), "1000:7").unwrap().gid, 7);
    }

    #[test]
    fn unlisted_numeric_user_gets_group_zero() {
        let root = image();
        let ids = resolve_user(root.path(), "4242").unwrap();
        assert_eq!((ids.uid, ids.gid, ids.home), (4242, 0, None));
    }

    #[test]
    fn unknown_names_are_rejected() {
        let root = image();
        assert!(matches!(
            resolve_user(root.path(), "nobody-here"),
            Err(WorkloadError::UnknownUser { .. })
        ));
        assert!(matches!(
            resolve_user(root.path(), "app:nogroup"),
            Err(WorkloadError::UnknownGroup { .. })
        ));
    }
}
