//! File attributes derived from the layer index, independent of the kernel interface.

use estargz::index::{Node, NodeKind};
use estargz::toc::Timestamp;

use super::inode::Ino;

/// Block size reported by `stat` and `statfs`.
pub const BLOCK_SIZE: u32 = 4096;

/// Size reported for directories, matching what `tar -x` leaves on ext4 for a small directory.
const DIR_SIZE: u64 = 4096;

/// Attributes of one inode, as `stat(2)` reports them.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Attr {
    /// Inode number.
    pub ino: Ino,
    /// File type.
    pub kind: NodeKind,
    /// Permission bits plus setuid, setgid and sticky (`st_mode & 0o7777`).
    pub perm: u16,
    /// `st_size`: content length, symlink target length, or [`DIR_SIZE`] for directories.
    pub size: u64,
    /// `st_blocks`: 512-byte units, `ceil(size / 512)`.
    pub blocks: u64,
    /// `st_nlink`, at least 1.
    pub nlink: u32,
    /// Owner uid.
    pub uid: u32,
    /// Owner gid.
    pub gid: u32,
    /// Modification time; access and change times report the same value.
    pub mtime: Timestamp,
    /// Device number in the kernel's 32-bit encoding (see [`encode_dev`]).
    pub rdev: u32,
    /// `st_blksize`.
    pub blksize: u32,
}

impl Attr {
    /// Builds the attributes of `node`, numbered `ino`.
    pub fn of(ino: Ino, node: &Node) -> Attr {
        let size = match node.kind {
            NodeKind::Dir => DIR_SIZE,
            NodeKind::Reg | NodeKind::Symlink => node.size,
            NodeKind::Char | NodeKind::Block | NodeKind::Fifo => 0,
        };
        let rdev = match node.kind {
            NodeKind::Char | NodeKind::Block => encode_dev(node.dev_major, node.dev_minor),
            _ => 0,
        };
        Attr {
            ino,
            kind: node.kind,
            perm: (node.mode & 0o7777) as u16,
            size,
            blocks: size.div_ceil(512),
            nlink: node.nlink.max(1),
            uid: node.uid,
            gid: node.gid,
            mtime: node.mtime,
            rdev,
            blksize: BLOCK_SIZE,
        }
    }

    /// The full `st_mode`: file type bits plus [`Attr::perm`].
    pub fn mode(&self) -> u32 {
        let kind = match self.kind {
            NodeKind::Dir => libc::S_IFDIR,
            NodeKind::Reg => libc::S_IFREG,
            NodeKind::Symlink => libc::S_IFLNK,
            NodeKind::Char => libc::S_IFCHR,
            NodeKind::Block => libc::S_IFBLK,
            NodeKind::Fifo => libc::S_IFIFO,
        };
        kind | u32::from(self.perm)
    }
}

/// Encodes a device number the way the FUSE protocol carries it: the kernel's
/// `new_encode_dev` (include/linux/kdev_t.h), which keeps 12 bits of major and 20 bits of minor.
/// Larger numbers are truncated, as the 32-bit field cannot hold them.
pub fn encode_dev(major: u32, minor: u32) -> u32 {
    let (major, minor) = (major & 0xfff, minor & 0xf_ffff);
    (minor & 0xff) | (major << 8) | ((minor & !0xff) << 12)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn encode_dev_matches_kernel_layout() {
        assert_eq!(encode_dev(1, 3), 0x103);
        assert_eq!(encode_dev(0, 0), 0);
        // Minor 0x12345: low byte in bits 0-7, the rest in bits 20-31.
        assert_eq!(encode_dev(8, 0x12345), 0x45 | (8 << 8) | (0x123 << 20));
        // Matches glibc's makedev for numbers that fit both encodings.
        assert_eq!(u64::from(encode_dev(259, 7)), libc::makedev(259, 7));
    }
}
