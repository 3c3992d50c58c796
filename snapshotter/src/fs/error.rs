//! Domain errors of the filesystem core and the one function that maps them to errno values.

use super::inode::Ino;
use super::source::FsReadError;

/// Why a filesystem request failed.
#[derive(Debug, thiserror::Error)]
pub enum FsError {
    /// The inode number names no node of this layer.
    #[error("inode {0} does not exist")]
    UnknownInode(Ino),
    /// The directory has no entry with this name.
    #[error("no entry {name:?} in directory inode {parent}")]
    NoEntry {
        /// Directory searched.
        parent: Ino,
        /// Name looked up, lossily decoded.
        name: String,
    },
    /// A name longer than the filesystem allows.
    #[error("name of {len} bytes exceeds the maximum of {max}")]
    NameTooLong {
        /// Length of the name.
        len: usize,
        /// Maximum accepted.
        max: usize,
    },
    /// A directory operation on something that is not a directory.
    #[error("inode {0} is not a directory")]
    NotADirectory(Ino),
    /// A file operation on a directory.
    #[error("inode {0} is a directory")]
    IsADirectory(Ino),
    /// `readlink` on something that is not a symlink, or a read of a special file.
    #[error("inode {0} does not support this operation")]
    InvalidForType(Ino),
    /// The extended attribute does not exist.
    #[error("inode {ino} has no extended attribute {name:?}")]
    NoXattr {
        /// Inode asked.
        ino: Ino,
        /// Attribute name, lossily decoded.
        name: String,
    },
    /// The caller's buffer is smaller than the value or list.
    #[error("buffer of {given} bytes is too small for {needed} bytes")]
    BufferTooSmall {
        /// Bytes the reply needs.
        needed: usize,
        /// Buffer size the caller offered.
        given: usize,
    },
    /// A request to change the read-only layer.
    #[error("the layer is read-only")]
    ReadOnly,
    /// A directory offset that was never handed out.
    #[error("directory offset {offset} is past the {entries} entries of inode {ino}")]
    InvalidOffset {
        /// Directory inode.
        ino: Ino,
        /// Offset the caller passed.
        offset: u64,
        /// Entries in the directory, `.` and `..` included.
        entries: u64,
    },
    /// File bytes could not be fetched or verified.
    #[error("failed to read inode {ino}")]
    Read {
        /// Inode being read.
        ino: Ino,
        /// The cause.
        #[source]
        source: FsReadError,
    },
}

impl FsError {
    /// The errno value the kernel receives for this error.
    ///
    /// Missing things are `ENOENT` and `ENODATA` (Linux's `ENOATTR`), wrong types are
    /// `ENOTDIR`, `EISDIR` or `EINVAL` (what `readlink(2)` returns for non-links), a small buffer
    /// is `ERANGE` (the xattr size-probe protocol), writes are `EROFS`, and every failed fetch or
    /// verification is `EIO`, so applications see an I/O error rather than wrong bytes.
    pub fn errno(&self) -> i32 {
        match self {
            FsError::UnknownInode(_) | FsError::NoEntry { .. } => libc::ENOENT,
            FsError::NameTooLong { .. } => libc::ENAMETOOLONG,
            FsError::NotADirectory(_) => libc::ENOTDIR,
            FsError::IsADirectory(_) => libc::EISDIR,
            FsError::InvalidForType(_) | FsError::InvalidOffset { .. } => libc::EINVAL,
            FsError::NoXattr { .. } => libc::ENODATA,
            FsError::BufferTooSmall { .. } => libc::ERANGE,
            FsError::ReadOnly => libc::EROFS,
            FsError::Read { .. } => libc::EIO,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn errno_table_maps_each_error() {
        let ino = Ino(7);
        let cases: Vec<(FsError, i32)> = vec![
            (FsError::UnknownInode(ino), libc::ENOENT),
            (
                FsError::NoEntry {
                    parent: ino,
                    name: "x".into(),
                },
                libc::ENOENT,
            ),
            (
                FsError::NameTooLong { len: 300, max: 255 },
                libc::ENAMETOOLONG,
            ),
            (FsError::NotADirectory(ino), libc::ENOTDIR),
            (FsError::IsADirectory(ino), libc::EISDIR),
            (FsError::InvalidForType(ino), libc::EINVAL),
            (
                FsError::InvalidOffset {
                    ino,
                    offset: 9,
                    entries: 2,
                },
                libc::EINVAL,
            ),
            (
                FsError::NoXattr {
                    ino,
                    name: "user.x".into(),
                },
                libc::ENODATA,
            ),
            (
                FsError::BufferTooSmall {
                    needed: 4,
                    given: 2,
                },
                libc::ERANGE,
            ),
            (FsError::ReadOnly, libc::EROFS),
            (
                FsError::Read {
                    ino,
                    source: FsReadError::Timeout {
                        node: 6,
                        seconds: 1,
                    },
                },
                libc::EIO,
            ),
            (
                FsError::Read {
                    ino,
                    source: FsReadError::Fetch {
                        node: 6,
                        offset: 0,
                        end: 10,
                        source: "refused".into(),
                    },
                },
                libc::EIO,
            ),
            (
                FsError::Read {
                    ino,
                    source: FsReadError::Verify {
                        node: 6,
                        offset: 0,
                        source: "digest mismatch".into(),
                    },
                },
                libc::EIO,
            ),
            (
                FsError::Read {
                    ino,
                    source: FsReadError::Layer {
                        node: 6,
                        source: "registry gone".into(),
                    },
                },
                libc::EIO,
            ),
        ];
        for (error, expected) in cases {
            assert_eq!(error.errno(), expected, "{error}");
        }
    }

    #[test]
    fn enodata_is_linux_enoattr() {
        // Linux has no separate ENOATTR; getfattr and overlayfs expect ENODATA.
        assert_eq!(
            FsError::NoXattr {
                ino: Ino(1),
                name: "a".into()
            }
            .errno(),
            libc::ENODATA
        );
    }
}
