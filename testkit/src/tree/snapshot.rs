//! Recording a directory tree into a [`Tree`].

use std::fs::File;
use std::io::Read;
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::{FileTypeExt, MetadataExt};
use std::path::{Path, PathBuf};

use anyhow::Context;
use sha2::{Digest, Sha256};

use super::node::{Node, NodeKind, Tree};
use super::xattr::read_xattrs;

/// Records every path below `dir` without following symlinks: type, mode (with setuid,
/// setgid and sticky), owner, mtime in ns, size, content sha256, link target, device
/// numbers, all xattrs and inode identity.
///
/// Mount points below `dir` are entered like any directory. Fails on the first path that
/// cannot be read, naming it.
pub fn snapshot(dir: &Path) -> anyhow::Result<Tree> {
    let mut tree = Tree::default();
    let mut pending = vec![PathBuf::new()];
    while let Some(relative) = pending.pop() {
        let absolute = dir.join(&relative);
        let entries = std::fs::read_dir(&absolute)
            .with_context(|| format!("failed to list {}", absolute.display()))?;
        for entry in entries {
            let entry = entry.with_context(|| format!("failed to list {}", absolute.display()))?;
            let child = relative.join(entry.file_name());
            let node = read_node(&dir.join(&child))?;
            if node.kind == NodeKind::Directory {
                pending.push(child.clone());
            }
            tree.nodes.insert(child, node);
        }
    }
    Ok(tree)
}

fn read_node(path: &Path) -> anyhow::Result<Node> {
    let meta = std::fs::symlink_metadata(path)
        .with_context(|| format!("failed to stat {}", path.display()))?;
    let file_type = meta.file_type();
    let kind = if file_type.is_file() {
        NodeKind::Regular
    } else if file_type.is_dir() {
        NodeKind::Directory
    } else if file_type.is_symlink() {
        NodeKind::Symlink
    } else if file_type.is_char_device() {
        NodeKind::CharDevice
    } else if file_type.is_block_device() {
        NodeKind::BlockDevice
    } else if file_type.is_fifo() {
        NodeKind::Fifo
    } else {
        NodeKind::Socket
    };

    let sha256 = match kind {
        NodeKind::Regular => Some(hash_file(path)?),
        _ => None,
    };
    let link_target = match kind {
        NodeKind::Symlink => Some(
            std::fs::read_link(path)
                .with_context(|| format!("failed to read link {}", path.display()))?
                .as_os_str()
                .as_bytes()
                .to_vec(),
        ),
        _ => None,
    };
    let device = match kind {
        NodeKind::CharDevice | NodeKind::BlockDevice => Some(split_dev(meta.rdev())),
        _ => None,
    };
    let xattrs = read_xattrs(path)
        .with_context(|| format!("failed to read xattrs of {}", path.display()))?;

    Ok(Node {
        kind,
        mode: meta.mode() & 0o7777,
        uid: meta.uid(),
        gid: meta.gid(),
        mtime_ns: i128::from(meta.mtime()) * 1_000_000_000 + i128::from(meta.mtime_nsec()),
        size: meta.size(),
        sha256,
        link_target,
        device,
        xattrs,
        nlink: meta.nlink(),
        inode: (meta.dev(), meta.ino()),
    })
}

fn hash_file(path: &Path) -> anyhow::Result<String> {
    let mut file =
        File::open(path).with_context(|| format!("failed to open {}", path.display()))?;
    let mut hasher = Sha256::new();
    let mut buffer = vec![0u8; 1 << 20];
    loop {
        let count = file
            .read(&mut buffer)
            .with_context(|| format!("failed to read {}", path.display()))?;
        if count == 0 {
            break;
        }
        hasher.update(&buffer[..count]);
    }
    Ok(hex::encode(hasher.finalize()))
}

/// Splits a Linux `dev_t` into (major, minor), following glibc's `gnu_dev_major` and
/// `gnu_dev_minor` bit layout.
fn split_dev(dev: u64) -> (u32, u32) {
    let major = ((dev >> 8) & 0xfff) | ((dev >> 32) & !0xfff);
    let minor = (dev & 0xff) | ((dev >> 12) & !0xff);
    (
        u32::try_from(major).unwrap_or(u32::MAX),
        u32::try_from(minor).unwrap_or(u32::MAX),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dev_split_matches_glibc_layout() {
        // makedev(1, 3) and makedev(259, 65536) as glibc encodes them: the minor's low
        // byte in bits 0-7, the major's low 12 bits in 8-19, the minor's upper bits from
        // bit 20, and the major's upper bits from bit 44.
        assert_eq!(split_dev(0x0103), (1, 3));
        assert_eq!(split_dev(0x0000_0000_1001_0300), (259, 65536));
    }
}
