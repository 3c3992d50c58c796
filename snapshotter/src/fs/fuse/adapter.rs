//! The fuser `Filesystem` implementation: translate a request, call the core, reply.
//!
//! Metadata requests are answered on the fuser thread from the in-memory index. Reads may
//! fetch from the network, so they run as tokio tasks that own the reply; the request thread
//! returns at once. fuser's replies are consumed by sending, and an unsent reply answers `EIO`
//! when dropped (for example when the runtime shuts down), so every request gets exactly one
//! reply.

use std::ffi::OsStr;
use std::os::unix::ffi::OsStrExt;
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use estargz::index::NodeKind;
use estargz::toc::Timestamp;
use fuser::{
    AccessFlags, Errno, FileAttr, FileHandle, FileType, Filesystem, FopenFlags, Generation,
    INodeNo, InitFlags, KernelConfig, LockOwner, OpenFlags, ReplyAttr, ReplyData, ReplyDirectory,
    ReplyDirectoryPlus, ReplyEmpty, ReplyEntry, ReplyOpen, ReplyStatfs, ReplyXattr, Request,
};
use tokio::runtime::Handle;

use crate::fs::{Attr, FileSource, FsCore, FsError, Ino, XattrReply};

/// How long the kernel may cache attributes and directory entries. The layer never changes,
/// so the only limit is how long a stale answer could survive a remount at the same path.
const CACHE_TTL: Duration = Duration::from_secs(24 * 3600);

/// Largest read the filesystem asks the kernel for, in bytes.
pub const MAX_READ: u32 = 1 << 20;

/// The fuser filesystem of one layer.
pub struct LayerFs<S: FileSource + ?Sized> {
    core: Arc<FsCore<S>>,
    runtime: Handle,
    layer: String,
}

impl<S: FileSource + ?Sized> LayerFs<S> {
    /// Creates the adapter. Reads are spawned on `runtime`; `layer` names the layer in logs.
    pub fn new(core: Arc<FsCore<S>>, runtime: Handle, layer: String) -> Self {
        LayerFs {
            core,
            runtime,
            layer,
        }
    }
}

fn errno(error: &FsError) -> Errno {
    Errno::from_i32(error.errno())
}

fn system_time(time: Timestamp) -> SystemTime {
    if time.secs >= 0 {
        UNIX_EPOCH + Duration::new(time.secs as u64, time.nanos)
    } else {
        // Before 1970: step back whole seconds, then forward by the nanoseconds.
        UNIX_EPOCH - Duration::from_secs(time.secs.unsigned_abs())
            + Duration::from_nanos(u64::from(time.nanos))
    }
}

fn file_type(kind: NodeKind) -> FileType {
    match kind {
        NodeKind::Dir => FileType::Directory,
        NodeKind::Reg => FileType::RegularFile,
        NodeKind::Symlink => FileType::Symlink,
        NodeKind::Char => FileType::CharDevice,
        NodeKind::Block => FileType::BlockDevice,
        NodeKind::Fifo => FileType::NamedPipe,
    }
}

/// Converts core attributes into fuser's.
pub fn file_attr(attr: &Attr) -> FileAttr {
    let mtime = system_time(attr.mtime);
    FileAttr {
        ino: INodeNo(attr.ino.0),
        size: attr.size,
        blocks: attr.blocks,
        atime: mtime,
        mtime,
        ctime: mtime,
        crtime: mtime,
        kind: file_type(attr.kind),
        perm: attr.perm,
        nlink: attr.nlink,
        uid: attr.uid,
        gid: attr.gid,
        rdev: attr.rdev,
        blksize: attr.blksize,
        flags: 0,
    }
}

fn reply_xattr(result: Result<XattrReply, FsError>, reply: ReplyXattr) {
    match result {
        Ok(XattrReply::Size(size)) => reply.size(size),
        Ok(XattrReply::Data(data)) => reply.data(&data),
        Err(error) => reply.error(errno(&error)),
    }
}

impl<S: FileSource + ?Sized> Filesystem for LayerFs<S> {
    fn init(&mut self, _req: &Request, config: &mut KernelConfig) -> std::io::Result<()> {
        // fuser sends no readdirplus requests unless the capability is requested here.
        let wanted = InitFlags::FUSE_DO_READDIRPLUS
            | InitFlags::FUSE_READDIRPLUS_AUTO
            | InitFlags::FUSE_CACHE_SYMLINKS
            | InitFlags::FUSE_PARALLEL_DIROPS;
        if let Err(missing) = config.add_capabilities(wanted) {
            tracing::debug!(layer = %self.layer, ?missing, "kernel lacks some FUSE capabilities");
        }
        // The kernel caps this at the readahead it offered (128 KiB here); the mount code raises
        // the bdi read_ahead_kb afterwards to get 1 MiB buffered reads.
        let _ = config.set_max_readahead(MAX_READ);
        Ok(())
    }

    fn lookup(&self, _req: &Request, parent: INodeNo, name: &OsStr, reply: ReplyEntry) {
        match self.core.lookup(Ino(parent.0), name.as_bytes()) {
            Ok(attr) => reply.entry(&CACHE_TTL, &file_attr(&attr), Generation(0)),
            Err(error) => reply.error(errno(&error)),
        }
    }

    fn getattr(&self, _req: &Request, ino: INodeNo, _fh: Option<FileHandle>, reply: ReplyAttr) {
        match self.core.getattr(Ino(ino.0)) {
            Ok(attr) => reply.attr(&CACHE_TTL, &file_attr(&attr)),
            Err(error) => reply.error(errno(&error)),
        }
    }

    fn readlink(&self, _req: &Request, ino: INodeNo, reply: ReplyData) {
        match self.core.readlink(Ino(ino.0)) {
            Ok(target) => reply.data(target),
            Err(error) => reply.error(errno(&error)),
        }
    }

    fn open(&self, _req: &Request, ino: INodeNo, flags: OpenFlags, reply: ReplyOpen) {
        match self.core.open(Ino(ino.0), flags.0) {
            // The layer is immutable, so cached pages stay valid across opens.
            Ok(()) => reply.opened(FileHandle(0), FopenFlags::FOPEN_KEEP_CACHE),
            Err(error) => reply.error(errno(&error)),
        }
    }

    fn read(
        &self,
        _req: &Request,
        ino: INodeNo,
        _fh: FileHandle,
        offset: u64,
        size: u32,
        _flags: OpenFlags,
        _lock_owner: Option<LockOwner>,
        reply: ReplyData,
    ) {
        let core = Arc::clone(&self.core);
        let layer = self.layer.clone();
        self.runtime.spawn(async move {
            match core.read(Ino(ino.0), offset, size).await {
                Ok(bytes) => reply.data(&bytes),
                Err(error) => {
                    tracing::error!(%layer, ino = ino.0, offset, size, error = %error_chain(&error), "read failed");
                    reply.error(errno(&error));
                }
            }
        });
    }

    fn flush(
        &self,
        _req: &Request,
        _ino: INodeNo,
        _fh: FileHandle,
        _lock_owner: LockOwner,
        reply: ReplyEmpty,
    ) {
        // Nothing is ever written, so there is nothing to flush; answering keeps fuser from
        // logging an unimplemented operation on every close.
        reply.ok();
    }

    fn opendir(&self, _req: &Request, ino: INodeNo, flags: OpenFlags, reply: ReplyOpen) {
        match self.core.opendir(Ino(ino.0), flags.0) {
            Ok(()) => reply.opened(
                FileHandle(0),
                FopenFlags::FOPEN_KEEP_CACHE | FopenFlags::FOPEN_CACHE_DIR,
            ),
            Err(error) => reply.error(errno(&error)),
        }
    }

    fn readdir(
        &self,
        _req: &Request,
        ino: INodeNo,
        _fh: FileHandle,
        offset: u64,
        mut reply: ReplyDirectory,
    ) {
        let entries = match self.core.readdir(Ino(ino.0), offset) {
            Ok(entries) => entries,
            Err(error) => return reply.error(errno(&error)),
        };
        for entry in entries {
            let full = reply.add(
                INodeNo(entry.ino.0),
                entry.next_offset,
                file_type(entry.kind),
                OsStr::from_bytes(entry.name),
            );
            if full {
                break;
            }
        }
        reply.ok();
    }

    fn readdirplus(
        &self,
        _req: &Request,
        ino: INodeNo,
        _fh: FileHandle,
        offset: u64,
        mut reply: ReplyDirectoryPlus,
    ) {
        let entries = match self.core.readdir(Ino(ino.0), offset) {
            Ok(entries) => entries,
            Err(error) => return reply.error(errno(&error)),
        };
        for entry in entries {
            let attr = match self.core.getattr(entry.ino) {
                Ok(attr) => attr,
                Err(error) => return reply.error(errno(&error)),
            };
            let full = reply.add(
                INodeNo(entry.ino.0),
                entry.next_offset,
                OsStr::from_bytes(entry.name),
                &CACHE_TTL,
                &file_attr(&attr),
                Generation(0),
            );
            if full {
                break;
            }
        }
        reply.ok();
    }

    fn statfs(&self, _req: &Request, _ino: INodeNo, reply: ReplyStatfs) {
        let stat = self.core.statfs();
        reply.statfs(
            stat.blocks,
            stat.blocks_free,
            stat.blocks_free,
            stat.files,
            stat.files_free,
            stat.block_size,
            stat.name_max,
            stat.block_size,
        );
    }

    fn getxattr(&self, _req: &Request, ino: INodeNo, name: &OsStr, size: u32, reply: ReplyXattr) {
        reply_xattr(self.core.getxattr(Ino(ino.0), name.as_bytes(), size), reply);
    }

    fn listxattr(&self, _req: &Request, ino: INodeNo, size: u32, reply: ReplyXattr) {
        reply_xattr(self.core.listxattr(Ino(ino.0), size), reply);
    }

    fn access(&self, _req: &Request, ino: INodeNo, mask: AccessFlags, reply: ReplyEmpty) {
        match self.core.access(Ino(ino.0), mask.bits()) {
            Ok(()) => reply.ok(),
            Err(error) => reply.error(errno(&error)),
        }
    }
}

/// Formats an error with its sources, `outer: inner: innermost`.
pub(crate) fn error_chain(error: &dyn std::error::Error) -> String {
    let mut text = error.to_string();
    let mut source = error.source();
    while let Some(cause) = source {
        text.push_str(": ");
        text.push_str(&cause.to_string());
        source = cause.source();
    }
    text
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn times_before_epoch_convert() {
        let time = system_time(Timestamp {
            secs: -2,
            nanos: 500_000_000,
        });
        assert_eq!(
            UNIX_EPOCH.duration_since(time).unwrap(),
            Duration::from_millis(1500)
        );
        let time = system_time(Timestamp {
            secs: 1_700_000_000,
            nanos: 5,
        });
        assert_eq!(
            time.duration_since(UNIX_EPOCH).unwrap(),
            Duration::new(1_700_000_000, 5)
        );
    }
}
