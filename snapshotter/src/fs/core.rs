//! The filesystem core: FUSE semantics over a [`LayerIndex`], without the kernel.
//!
//! Every method takes inode numbers and returns plain values or an [`FsError`], so the whole
//! behaviour is unit-tested; the FUSE adapter only translates. Everything except
//! [`FsCore::read`] is answered from the in-memory index and never waits on the network.

use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use estargz::index::{Node, NodeId, NodeKind};

use super::attr::{Attr, BLOCK_SIZE};
use super::error::FsError;
use super::inode::Ino;
use super::source::{FileSource, FsReadError};
use super::trace::{NodeNames, TraceRecorder};
use super::xattr::{OPAQUE_VALUE, OpaqueXattr, XattrReply, is_reserved, reply_for};

/// Longest name a lookup accepts, as on Linux's common filesystems.
pub const NAME_MAX: usize = estargz::index::NAME_MAX;

/// Options of an [`FsCore`].
#[derive(Debug, Clone, Default)]
pub struct FsOptions {
    /// Which attribute marks opaque directories for overlayfs.
    pub opaque_xattr: OpaqueXattr,
    /// Where to record first accesses, if anywhere.
    pub trace: Option<Arc<TraceRecorder>>,
    /// Longest time one read may take before it fails with `EIO`; `None` waits for the source.
    pub read_timeout: Option<Duration>,
    /// Roots of the layers stacked below this one, nearest first. Directories this layer only
    /// implies report the attributes they have there, as when layers are applied one by one.
    pub lower_dirs: Vec<std::path::PathBuf>,
}

/// Filesystem statistics for `statfs`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct StatFs {
    /// Total blocks of [`StatFs::block_size`] bytes used by file contents.
    pub blocks: u64,
    /// Free blocks: always 0, the layer is read-only and full.
    pub blocks_free: u64,
    /// Inodes in the layer.
    pub files: u64,
    /// Free inodes: always 0.
    pub files_free: u64,
    /// Block size and fragment size.
    pub block_size: u32,
    /// Longest name.
    pub name_max: u32,
}

/// One directory entry of a [`FsCore::readdir`] listing.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DirEntry<'a> {
    /// Inode of the entry.
    pub ino: Ino,
    /// Offset to pass to the next `readdir` to continue after this entry.
    pub next_offset: u64,
    /// File type.
    pub kind: NodeKind,
    /// Name, `.` and `..` included.
    pub name: &'a [u8],
}

/// The filesystem of one layer.
pub struct FsCore<S: FileSource + ?Sized> {
    source: Arc<S>,
    opaque_xattr: OpaqueXattr,
    trace: Option<(Arc<TraceRecorder>, NodeNames)>,
    read_timeout: Option<Duration>,
    statfs: StatFs,
    inheritance: Option<super::inherit::Inheritance>,
}

impl<S: FileSource + ?Sized> std::fmt::Debug for FsCore<S> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("FsCore")
            .field("statfs", &self.statfs)
            .finish_non_exhaustive()
    }
}

impl<S: FileSource + ?Sized> FsCore<S> {
    /// Creates the filesystem over `source`.
    pub fn new(source: Arc<S>, options: FsOptions) -> Self {
        let index = source.index();
        let mut blocks = 0u64;
        for id in 0..index.node_count() as u32 {
            if let Some(node) = index.node(NodeId(id))
                && node.kind == NodeKind::Reg
            {
                blocks += node.size.div_ceil(u64::from(BLOCK_SIZE));
            }
        }
        let statfs = StatFs {
            blocks,
            blocks_free: 0,
            files: index.node_count() as u64,
            files_free: 0,
            block_size: BLOCK_SIZE,
            name_max: NAME_MAX as u32,
        };
        let inheritance = super::inherit::Inheritance::new(index, &options.lower_dirs);
        let trace = options
            .trace
            .map(|recorder| (recorder, NodeNames::build(index)));
        FsCore {
            source,
            opaque_xattr: options.opaque_xattr,
            trace,
            read_timeout: options.read_timeout,
            statfs,
            inheritance,
        }
    }

    /// The source this filesystem reads from.
    pub fn source(&self) -> &Arc<S> {
        &self.source
    }

    fn node(&self, ino: Ino) -> Result<(NodeId, Node), FsError> {
        let id = ino.node().ok_or(FsError::UnknownInode(ino))?;
        let mut node = self
            .source
            .index()
            .node(id)
            .ok_or(FsError::UnknownInode(ino))?;
        if node.implied
            && let Some(attrs) = self.inheritance.as_ref().and_then(|i| i.attrs(id))
        {
            node.mode = attrs.mode;
            node.uid = attrs.uid;
            node.gid = attrs.gid;
            node.mtime = attrs.mtime;
        }
        Ok((id, node))
    }

    fn dir(&self, ino: Ino) -> Result<(NodeId, Node), FsError> {
        let (id, node) = self.node(ino)?;
        if node.kind != NodeKind::Dir {
            return Err(FsError::NotADirectory(ino));
        }
        Ok((id, node))
    }

    fn record(&self, id: NodeId) {
        if let Some((recorder, names)) = &self.trace
            && let Some(path) = names.path_of(self.source.index(), id)
        {
            recorder.record(&path);
        }
    }

    fn record_read(&self, id: NodeId, offset: u64, len: u64) {
        if let Some((recorder, names)) = &self.trace
            && let Some(path) = names.path_of(self.source.index(), id)
        {
            recorder.record_read(&path, offset, len);
        }
    }

    /// Attributes of an inode.
    pub fn getattr(&self, ino: Ino) -> Result<Attr, FsError> {
        let (_, node) = self.node(ino)?;
        Ok(Attr::of(ino, &node))
    }

    /// Looks up `name` in directory `parent` and returns the entry's attributes. Symlinks are
    /// never followed.
    pub fn lookup(&self, parent: Ino, name: &[u8]) -> Result<Attr, FsError> {
        if name.len() > NAME_MAX {
            return Err(FsError::NameTooLong {
                len: name.len(),
                max: NAME_MAX,
            });
        }
        let (dir, _) = self.dir(parent)?;
        let index = self.source.index();
        let child = match name {
            b"." => dir,
            b".." => index.parent(dir),
            _ => index.lookup(dir, name).ok_or_else(|| FsError::NoEntry {
                parent,
                name: String::from_utf8_lossy(name).into_owned(),
            })?,
        };
        self.getattr(Ino::from_node(child))
    }

    /// Target of a symlink, byte for byte as stored.
    pub fn readlink(&self, ino: Ino) -> Result<&[u8], FsError> {
        let (id, node) = self.node(ino)?;
        if node.kind != NodeKind::Symlink {
            return Err(FsError::InvalidForType(ino));
        }
        self.record(id);
        Ok(self.source.index().symlink_target(id))
    }

    /// Checks that a file may be opened with `flags` (the `open(2)` flags): read-only access
    /// to a regular file.
    pub fn open(&self, ino: Ino, flags: i32) -> Result<(), FsError> {
        let (id, node) = self.node(ino)?;
        if node.kind == NodeKind::Dir {
            return Err(FsError::IsADirectory(ino));
        }
        if is_write_open(flags) {
            return Err(FsError::ReadOnly);
        }
        if node.kind == NodeKind::Reg {
            self.record(id);
        }
        Ok(())
    }

    /// Checks that a directory may be opened with `flags`.
    pub fn opendir(&self, ino: Ino, flags: i32) -> Result<(), FsError> {
        self.dir(ino)?;
        if is_write_open(flags) {
            return Err(FsError::ReadOnly);
        }
        Ok(())
    }

    /// Checks `access(2)` on an inode: any write access is `EROFS`; the kernel checks the
    /// permission bits itself (`default_permissions`).
    pub fn access(&self, ino: Ino, mask: i32) -> Result<(), FsError> {
        self.node(ino)?;
        if mask & libc::W_OK != 0 {
            return Err(FsError::ReadOnly);
        }
        Ok(())
    }

    /// Entries of directory `ino` from `offset` on: `.` and `..` first, then the children in
    /// byte order of their names. Offset `n` resumes at the `n`-th entry, so offsets stay valid
    /// across calls (the layer never changes).
    pub fn readdir(
        &self,
        ino: Ino,
        offset: u64,
    ) -> Result<impl Iterator<Item = DirEntry<'_>> + '_, FsError> {
        let (dir, _) = self.dir(ino)?;
        let index = self.source.index();
        let entries = 2 + index.child_count(dir) as u64;
        if offset > entries {
            return Err(FsError::InvalidOffset {
                ino,
                offset,
                entries,
            });
        }
        let parent = index.parent(dir);
        Ok((offset..entries).filter_map(move |position| {
            let next_offset = position + 1;
            match position {
                0 => Some(DirEntry {
                    ino,
                    next_offset,
                    kind: NodeKind::Dir,
                    name: b".",
                }),
                1 => Some(DirEntry {
                    ino: Ino::from_node(parent),
                    next_offset,
                    kind: NodeKind::Dir,
                    name: b"..",
                }),
                _ => {
                    let (name, child) = index.child_at(dir, (position - 2) as usize)?;
                    let kind = index.node(child)?.kind;
                    Some(DirEntry {
                        ino: Ino::from_node(child),
                        next_offset,
                        kind,
                        name,
                    })
                }
            }
        }))
    }

    /// Value of extended attribute `name`, with the size-probe protocol of getxattr(2).
    pub fn getxattr(&self, ino: Ino, name: &[u8], size: u32) -> Result<XattrReply, FsError> {
        let (id, node) = self.node(ino)?;
        if node.kind == NodeKind::Dir && node.opaque && name == self.opaque_xattr.name() {
            return reply_for(OPAQUE_VALUE.to_vec(), size);
        }
        if !is_reserved(name)
            && let Some((_, value)) = self.source.index().xattrs(id).find(|(key, _)| *key == name)
        {
            return reply_for(value.to_vec(), size);
        }
        Err(FsError::NoXattr {
            ino,
            name: String::from_utf8_lossy(name).into_owned(),
        })
    }

    /// Names of the extended attributes, each followed by a NUL, with the size-probe protocol of
    /// listxattr(2).
    pub fn listxattr(&self, ino: Ino, size: u32) -> Result<XattrReply, FsError> {
        let (id, node) = self.node(ino)?;
        let mut list = Vec::new();
        for (name, _) in self.source.index().xattrs(id) {
            if !is_reserved(name) {
                list.extend_from_slice(name);
                list.push(0);
            }
        }
        if node.kind == NodeKind::Dir && node.opaque {
            list.extend_from_slice(self.opaque_xattr.name());
            list.push(0);
        }
        reply_for(list, size)
    }

    /// Filesystem statistics.
    pub fn statfs(&self) -> StatFs {
        self.statfs
    }

    /// Reads up to `size` bytes of regular file `ino` at `offset`. Returns fewer bytes at the
    /// end of the file and none past it, without asking the source.
    pub async fn read(&self, ino: Ino, offset: u64, size: u32) -> Result<Bytes, FsError> {
        let (id, node) = self.node(ino)?;
        match node.kind {
            NodeKind::Reg => {}
            NodeKind::Dir => return Err(FsError::IsADirectory(ino)),
            _ => return Err(FsError::InvalidForType(ino)),
        }
        if offset >= node.size || size == 0 {
            return Ok(Bytes::new());
        }
        let len = u64::from(size).min(node.size - offset);
        self.record_read(id, offset, len);
        let read = self.source.read(id, offset, len);
        let result = match self.read_timeout {
            None => read.await,
            Some(limit) => {
                tokio::time::timeout(limit, read)
                    .await
                    .unwrap_or(Err(FsReadError::Timeout {
                        node: id.0,
                        seconds: limit.as_secs(),
                    }))
            }
        };
        result.map_err(|source| FsError::Read { ino, source })
    }
}

/// Whether `open(2)` flags ask for write access or would change the file.
fn is_write_open(flags: i32) -> bool {
    let access = flags & libc::O_ACCMODE;
    access == libc::O_WRONLY || access == libc::O_RDWR || flags & libc::O_TRUNC != 0
}
