//! A compact, read-only inode table built from a TOC: what a filesystem needs to answer lookup,
//! getattr, readdir, readlink, getxattr and read, and the map from a (file, offset) to the chunks
//! that hold it.
//!
//! Normalisation follows what eStargz readers do:
//!
//! * names are cleaned (`./a/b/` is `a/b`); missing parent directories are created with mode
//!   0755, uid and gid 0;
//! * a later entry with the same path replaces the earlier one (two directories merge, keeping
//!   their children and the later attributes);
//! * chunk entries belong to the preceding regular file, whatever name they carry; a missing
//!   `chunkSize` means "to the end of the file";
//! * hard links, chained or not, share their target's node; links whose target is missing or a
//!   directory are dropped and counted;
//! * only the permission, setuid, setgid and sticky bits of `mode` are kept, the type comes from
//!   `type`;
//! * with [`IndexOptions::overlay_whiteouts`], `.wh.<name>` entries become overlayfs whiteouts
//!   (character devices 0/0 named `<name>`) and `.wh..wh..opq` marks its directory opaque.
//!
//! Memory is a few dozen bytes per entry plus the names, far below the TOC JSON itself.

use std::collections::HashMap;
use std::ops::Range;

use crate::digest::Digest;
use crate::error::TocError;
use crate::limits::Limits;
use crate::tar::{clean_path, split_parent};
use crate::toc::{EntryKind, Timestamp, TocEntry, parse_toc_entries};
use crate::{NO_PREFETCH_LANDMARK, PREFETCH_LANDMARK};

/// Index of a node in a [`LayerIndex`]; the root is [`NodeId::ROOT`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct NodeId(pub u32);

impl NodeId {
    /// The layer's root directory.
    pub const ROOT: NodeId = NodeId(0);
}

/// File type of a node.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum NodeKind {
    /// Directory.
    Dir,
    /// Regular file.
    Reg,
    /// Symbolic link.
    Symlink,
    /// Character device (overlayfs whiteouts included).
    Char,
    /// Block device.
    Block,
    /// Named pipe.
    Fifo,
}

/// A byte range in the index's string arena.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
struct Span {
    start: u32,
    len: u32,
}

/// The attributes of one inode, returned by value by [`LayerIndex::node`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Node {
    /// File type.
    pub kind: NodeKind,
    /// Permission bits plus setuid, setgid and sticky.
    pub mode: u32,
    /// Owner uid.
    pub uid: u32,
    /// Owner gid.
    pub gid: u32,
    /// Modification time.
    pub mtime: Timestamp,
    /// Size in bytes: content length for files, target length for symlinks, 0 otherwise.
    pub size: u64,
    /// Link count: names pointing at a file, or 2 plus subdirectories for a directory.
    pub nlink: u32,
    /// Device major number.
    pub dev_major: u32,
    /// Device minor number.
    pub dev_minor: u32,
    /// Whether the directory carried an opaque marker (overlay mode only).
    pub opaque: bool,
    /// Whether the directory has no entry of its own and was created because an entry below it
    /// needed it. Its attributes are defaults (mode 0755, owner 0:0, the epoch); when layers are
    /// stacked, the directory should show the attributes it has in the layers below.
    pub implied: bool,
}

/// An inode while the index is built: every field inline, easy to update.
#[derive(Debug, Clone)]
struct BuildNode {
    kind: NodeKind,
    mode: u32,
    uid: u32,
    gid: u32,
    mtime: Timestamp,
    size: u64,
    nlink: u32,
    dev_major: u32,
    dev_minor: u32,
    opaque: bool,
    implied: bool,
    parent: u32,
    link: Span,
    xattrs: Range<u32>,
}

/// An inode as stored in a finished index: 48 bytes. Rare attributes (symlink target, xattrs,
/// device numbers, sub-second mtime) live in a side table.
#[derive(Debug, Clone, Copy)]
struct NodeRecord {
    size: u64,
    mtime_secs: i64,
    uid: u32,
    gid: u32,
    nlink: u32,
    parent: u32,
    /// First chunk; the node's chunks end where the next node's begin.
    chunk_start: u32,
    /// First directory entry; the node's entries end where the next node's begin.
    child_start: u32,
    /// Index into the side table, or `NO_EXTRA`.
    extra: u32,
    /// Permission bits in the low 12 bits, [`NodeKind`] above them.
    mode_kind: u16,
    /// `FLAG_OPAQUE` and `FLAG_IMPLIED`.
    flags: u8,
}

const FLAG_OPAQUE: u8 = 1;
const FLAG_IMPLIED: u8 = 2;

/// Attributes few nodes have.
#[derive(Debug, Clone, Default)]
struct NodeExtra {
    link: Span,
    xattrs: Range<u32>,
    dev_major: u32,
    dev_minor: u32,
    mtime_nanos: u32,
}

const NO_EXTRA: u32 = u32::MAX;

fn kind_code(kind: NodeKind) -> u16 {
    match kind {
        NodeKind::Dir => 0,
        NodeKind::Reg => 1,
        NodeKind::Symlink => 2,
        NodeKind::Char => 3,
        NodeKind::Block => 4,
        NodeKind::Fifo => 5,
    }
}

fn kind_from_code(code: u16) -> NodeKind {
    match code {
        0 => NodeKind::Dir,
        1 => NodeKind::Reg,
        2 => NodeKind::Symlink,
        3 => NodeKind::Char,
        4 => NodeKind::Block,
        _ => NodeKind::Fifo,
    }
}

/// One chunk of a regular file: where its bytes live in the blob and how to verify them.
///
/// Stored compactly (64 bytes): lengths and inner offsets are 32-bit, which the limits on chunk
/// size guarantee, and the compressed end is kept as a length.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Chunk {
    file_offset: u64,
    comp_offset: u64,
    size: u32,
    comp_len: u32,
    inner_offset: u32,
    has_digest: bool,
    digest: [u8; 32],
}

impl Chunk {
    /// Creates a chunk. Returns `None` when `size` or `inner_offset` does not fit 32 bits or
    /// `comp_end` is before `comp_offset`. A compressed span longer than 4 GiB is cut to 4 GiB, far
    /// more than any chunk within the size limit needs.
    pub fn new(
        file_offset: u64,
        size: u64,
        comp_offset: u64,
        comp_end: u64,
        inner_offset: u64,
        digest: Option<Digest>,
    ) -> Option<Chunk> {
        let comp_len = comp_end.checked_sub(comp_offset)?;
        Some(Chunk {
            file_offset,
            comp_offset,
            size: u32::try_from(size).ok()?,
            comp_len: u32::try_from(comp_len).unwrap_or(u32::MAX),
            inner_offset: u32::try_from(inner_offset).ok()?,
            has_digest: digest.is_some(),
            digest: digest.map_or([0; 32], |d| *d.as_bytes()),
        })
    }

    /// Offset of the chunk inside the file.
    pub fn file_offset(&self) -> u64 {
        self.file_offset
    }

    /// Uncompressed length.
    pub fn size(&self) -> u64 {
        u64::from(self.size)
    }

    /// Blob offset of the member or frame to start decompressing at.
    pub fn comp_offset(&self) -> u64 {
        self.comp_offset
    }

    /// Blob offset where the next payload member starts (or the TOC): the chunk's compressed bytes
    /// lie within `comp_offset()..comp_end()`.
    pub fn comp_end(&self) -> u64 {
        self.comp_offset + u64::from(self.comp_len)
    }

    /// Uncompressed bytes to skip after `comp_offset()`.
    pub fn inner_offset(&self) -> u64 {
        u64::from(self.inner_offset)
    }

    /// Expected digest of the uncompressed chunk.
    pub fn digest(&self) -> Option<Digest> {
        self.has_digest.then(|| Digest::from_bytes(self.digest))
    }

    /// The chunk's byte range inside its file.
    pub fn file_range(&self) -> Range<u64> {
        self.file_offset..self.file_offset + self.size()
    }

    /// The compressed byte range of the blob that holds the chunk.
    pub fn comp_range(&self) -> Range<u64> {
        self.comp_offset..self.comp_end()
    }
}

/// A chunk as read from the TOC, before its compressed end is known.
#[derive(Debug, Clone, Copy)]
struct ChunkSpec {
    file_offset: u64,
    size: u64,
    comp_offset: u64,
    inner_offset: u64,
    digest: Option<Digest>,
}

/// Which landmark a layer has and where its payload starts.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Landmark {
    /// `.prefetch.landmark`: blob bytes before `offset` hold the prioritized files.
    Prefetch {
        /// Blob offset of the landmark's payload: the end of the prioritized range.
        offset: u64,
    },
    /// `.no.prefetch.landmark`: nothing to prefetch.
    NoPrefetch,
}

/// Options of [`LayerIndex::from_toc_json`].
#[derive(Debug, Clone, Default)]
pub struct IndexOptions {
    /// Present whiteouts and opaque markers the way overlayfs expects them.
    pub overlay_whiteouts: bool,
    /// Hide `.prefetch.landmark` and `.no.prefetch.landmark` in the root.
    pub hide_landmarks: bool,
    /// Limits on names and entries.
    pub limits: Limits,
}

/// Counters gathered while building the index.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct IndexStats {
    /// TOC entries read, chunk entries included.
    pub toc_entries: usize,
    /// Hard links dropped because their target is missing or a directory.
    pub dangling_hardlinks: usize,
    /// Directories created because an entry needed them.
    pub implied_dirs: usize,
    /// Entries replaced by a later entry with the same path.
    pub replaced: usize,
    /// Whiteouts turned into overlayfs whiteout devices.
    pub whiteouts: usize,
    /// Entries skipped because a parent path is not a directory (for example below a symlink).
    pub skipped_below_non_dir: usize,
    /// Entries skipped because a path component is longer than [`NAME_MAX`] bytes, which no
    /// Linux file system can hold (`tar -x` fails on them with ENAMETOOLONG).
    pub skipped_long_names: usize,
}

/// Maximum length of one file name component on Linux, in bytes.
pub const NAME_MAX: usize = 255;

/// The inode table of one layer.
#[derive(Debug, Clone)]
pub struct LayerIndex {
    nodes: Vec<NodeRecord>,
    extras: Vec<NodeExtra>,
    dirents: Vec<(Span, u32)>,
    chunks: Vec<Chunk>,
    xattrs: Vec<(Span, Span)>,
    strings: Vec<u8>,
    landmark: Option<Landmark>,
    stats: IndexStats,
    blob_payload_end: u64,
}

/// A chunk whose compressed end is not known until every entry is read.
struct PendingChunk {
    node: u32,
    /// The TOC entry that listed the chunk, for error messages.
    entry: u32,
    chunk: ChunkSpec,
}

/// The regular file whose chunk entries may follow.
#[derive(Clone, Copy)]
struct CurrentReg {
    node: u32,
    size: u64,
    /// File offset at which the next chunk must start: the end of the last chunk listed.
    next_offset: u64,
}

struct Builder {
    options: IndexOptions,
    nodes: Vec<BuildNode>,
    strings: Vec<u8>,
    xattrs: Vec<(Span, Span)>,
    /// (parent, name) → index into `dirents`.
    lookup: HashMap<(u32, Box<[u8]>), u32>,
    dirents: Vec<(u32, Span, u32)>,
    chunks: Vec<PendingChunk>,
    /// (dirent, cleaned target path) of every hard link, resolved at the end.
    hardlinks: Vec<(u32, Vec<u8>)>,
    current_reg: Option<CurrentReg>,
    /// The last regular file was skipped, so its chunk entries are skipped too.
    skipping_chunks: bool,
    last_parent: Option<(Vec<u8>, u32)>,
    landmark: Option<Landmark>,
    /// Member starts of hidden landmarks: they end the compressed span of the chunk before them.
    landmark_offsets: Vec<u64>,
    stats: IndexStats,
}

const PLACEHOLDER: u32 = u32::MAX;

/// Path of `node` from the directory entries, for error messages: a linear search per
/// component, so never on a hot path.
fn path_of_node(dirents: &[(u32, Span, u32)], strings: &[u8], mut node: u32) -> Vec<u8> {
    let mut parts: Vec<&[u8]> = Vec::new();
    while node != 0 && parts.len() <= dirents.len() {
        let Some(&(parent, span, _)) = dirents.iter().find(|d| d.2 == node) else {
            break;
        };
        parts.push(&strings[span.start as usize..(span.start + span.len) as usize]);
        node = parent;
    }
    parts.reverse();
    parts.join(&b'/')
}

/// Finds a chunk that sits at the same member, inner offset and size as another chunk but
/// expects other bytes (another digest), and returns its position and the reason.
///
/// Such chunks decode to the same bytes, so at most one of them can verify. Readers that share
/// one decoded copy between chunks at one place would otherwise serve the chunk that verified
/// for the one that cannot.
fn find_conflicting_chunk(chunks: &[Chunk]) -> Option<(usize, String)> {
    let place = |c: &Chunk| (c.comp_offset, c.inner_offset, c.size);
    let mut order: Vec<u32> = (0..chunks.len() as u32).collect();
    order.sort_unstable_by_key(|&i| (place(&chunks[i as usize]), i));
    for pair in order.windows(2) {
        let (a, b) = (&chunks[pair[0] as usize], &chunks[pair[1] as usize]);
        if place(a) == place(b) && a.digest() != b.digest() {
            let reason = format!(
                "chunk at blob offset {} (inner offset {}, {} bytes) has another digest than \
                 an earlier chunk at the same place",
                b.comp_offset, b.inner_offset, b.size
            );
            return Some((pair[1] as usize, reason));
        }
    }
    None
}

fn perm_bits(mode: i64) -> u32 {
    (mode & 0o7777) as u32
}

impl Builder {
    fn new(options: IndexOptions) -> Self {
        let root = BuildNode {
            kind: NodeKind::Dir,
            mode: 0o755,
            uid: 0,
            gid: 0,
            mtime: Timestamp::EPOCH,
            size: 0,
            nlink: 2,
            dev_major: 0,
            dev_minor: 0,
            opaque: false,
            implied: false,
            parent: 0,
            link: Span::default(),
            xattrs: 0..0,
        };
        Builder {
            options,
            nodes: vec![root],
            strings: Vec::new(),
            xattrs: Vec::new(),
            lookup: HashMap::new(),
            dirents: Vec::new(),
            chunks: Vec::new(),
            hardlinks: Vec::new(),
            current_reg: None,
            skipping_chunks: false,
            last_parent: None,
            landmark: None,
            landmark_offsets: Vec::new(),
            stats: IndexStats::default(),
        }
    }

    fn intern(&mut self, bytes: &[u8]) -> Span {
        let start = self.strings.len() as u32;
        self.strings.extend_from_slice(bytes);
        Span {
            start,
            len: bytes.len() as u32,
        }
    }

    fn new_node(&mut self, kind: NodeKind, parent: u32) -> u32 {
        self.nodes.push(BuildNode {
            kind,
            mode: 0o755,
            uid: 0,
            gid: 0,
            mtime: Timestamp::EPOCH,
            size: 0,
            nlink: 1,
            dev_major: 0,
            dev_minor: 0,
            opaque: false,
            implied: false,
            parent,
            link: Span::default(),
            xattrs: 0..0,
        });
        (self.nodes.len() - 1) as u32
    }

    fn add_dirent(&mut self, parent: u32, name: &[u8], node: u32) -> u32 {
        let span = self.intern(name);
        self.dirents.push((parent, span, node));
        let index = (self.dirents.len() - 1) as u32;
        self.lookup.insert((parent, name.into()), index);
        index
    }

    fn child(&self, parent: u32, name: &[u8]) -> Option<u32> {
        self.lookup.get(&(parent, Box::<[u8]>::from(name))).copied()
    }

    /// Returns the directory node for a cleaned path, creating missing directories, or `None`
    /// when a component exists but is not a directory.
    fn ensure_dir(&mut self, path: &[u8]) -> Option<u32> {
        if path.is_empty() {
            return Some(0);
        }
        if let Some((last, node)) = &self.last_parent
            && last == path
        {
            return Some(*node);
        }
        let mut node = 0u32;
        for part in path.split(|&b| b == b'/') {
            node = match self.child(node, part) {
                Some(dirent) => {
                    let target = self.dirents[dirent as usize].2;
                    if target == PLACEHOLDER || self.nodes[target as usize].kind != NodeKind::Dir {
                        return None;
                    }
                    target
                }
                None => {
                    let dir = self.new_node(NodeKind::Dir, node);
                    self.nodes[dir as usize].implied = true;
                    self.add_dirent(node, part, dir);
                    self.stats.implied_dirs += 1;
                    dir
                }
            };
        }
        self.last_parent = Some((path.to_vec(), node));
        Some(node)
    }

    fn set_attrs(&mut self, node: u32, entry: &TocEntry) {
        let xattrs_start = self.xattrs.len() as u32;
        for (name, value) in &entry.xattrs {
            let name = self.intern(name.as_bytes());
            let value = self.intern(value);
            self.xattrs.push((name, value));
        }
        let xattrs_end = self.xattrs.len() as u32;
        let n = &mut self.nodes[node as usize];
        n.mode = perm_bits(entry.mode);
        n.uid = entry.uid;
        n.gid = entry.gid;
        n.mtime = entry.mod_time.unwrap_or(Timestamp::EPOCH);
        n.xattrs = xattrs_start..xattrs_end;
    }

    fn invalid(index: usize, entry: &TocEntry, reason: impl Into<String>) -> TocError {
        TocError::InvalidEntry {
            index,
            name: entry.name.clone(),
            reason: reason.into(),
        }
    }

    fn add(&mut self, index: usize, entry: TocEntry) -> Result<(), TocError> {
        self.stats.toc_entries += 1;
        let limits = &self.options.limits;
        if entry.name.len() > limits.max_name_bytes || entry.link_name.len() > limits.max_name_bytes
        {
            return Err(Self::invalid(
                index,
                &entry,
                "name or link target is too long",
            ));
        }
        if entry.xattrs.len() > limits.max_xattrs_per_entry
            || entry
                .xattrs
                .values()
                .any(|v| v.len() > limits.max_xattr_value_bytes)
        {
            return Err(Self::invalid(index, &entry, "too many or too large xattrs"));
        }
        if entry.kind == EntryKind::Chunk {
            if self.skipping_chunks {
                return Ok(());
            }
            return self.add_chunk(index, &entry);
        }
        self.current_reg = None;
        self.skipping_chunks = false;
        let raw_name = entry.raw_name();
        if raw_name.contains(&0) {
            return Err(Self::invalid(index, &entry, "name contains a NUL byte"));
        }
        let path = clean_path(&raw_name);
        if path.is_empty() {
            if entry.kind == EntryKind::Dir {
                self.set_attrs(0, &entry);
            }
            return Ok(());
        }
        if path.split(|&b| b == b'/').any(|part| part.len() > NAME_MAX) {
            self.stats.skipped_long_names += 1;
            self.skipping_chunks = true;
            return Ok(());
        }
        let (parent_path, base) = split_parent(&path);
        let Some(parent) = self.ensure_dir(parent_path) else {
            // Like `tar -x`, an entry below a symlink or a file cannot exist; skip it.
            self.stats.skipped_below_non_dir += 1;
            self.skipping_chunks = true;
            return Ok(());
        };

        if parent == 0 && self.options.hide_landmarks {
            let is_landmark =
                base == PREFETCH_LANDMARK.as_bytes() || base == NO_PREFETCH_LANDMARK.as_bytes();
            if is_landmark && entry.offset > 0 {
                self.landmark_offsets.push(entry.offset);
            }
            if base == PREFETCH_LANDMARK.as_bytes() {
                self.landmark = Some(Landmark::Prefetch {
                    offset: entry.offset,
                });
                return Ok(());
            }
            if base == NO_PREFETCH_LANDMARK.as_bytes() {
                self.landmark.get_or_insert(Landmark::NoPrefetch);
                return Ok(());
            }
        }

        let existing = self.child(parent, base);
        if let Some(dirent) = existing {
            let node = self.dirents[dirent as usize].2;
            if entry.kind == EntryKind::Dir
                && node != PLACEHOLDER
                && self.nodes[node as usize].kind == NodeKind::Dir
            {
                if self.nodes[node as usize].implied {
                    // A directory listed after its children: now it has attributes of its own.
                    self.nodes[node as usize].implied = false;
                } else {
                    self.stats.replaced += 1;
                }
                self.set_attrs(node, &entry);
                return Ok(());
            }
            self.stats.replaced += 1;
        }

        let node = match entry.kind {
            // Resolved once every entry is known; until then the dirent points nowhere.
            EntryKind::Hardlink => PLACEHOLDER,
            kind => {
                let node_kind = match kind {
                    EntryKind::Dir => NodeKind::Dir,
                    EntryKind::Reg => NodeKind::Reg,
                    EntryKind::Symlink => NodeKind::Symlink,
                    EntryKind::Char => NodeKind::Char,
                    EntryKind::Block => NodeKind::Block,
                    EntryKind::Fifo => NodeKind::Fifo,
                    EntryKind::Hardlink | EntryKind::Chunk => unreachable!("handled above"),
                };
                let node = self.new_node(node_kind, parent);
                self.set_attrs(node, &entry);
                let raw_link = entry.raw_link_name();
                let n = &mut self.nodes[node as usize];
                match node_kind {
                    NodeKind::Symlink => {
                        let link = raw_link.into_owned();
                        let span = self.intern(&link);
                        let n = &mut self.nodes[node as usize];
                        n.link = span;
                        n.size = link.len() as u64;
                    }
                    NodeKind::Char | NodeKind::Block => {
                        n.dev_major = entry.dev_major;
                        n.dev_minor = entry.dev_minor;
                    }
                    NodeKind::Reg => {
                        n.size = entry.size;
                        let mut first = 0;
                        if entry.size > 0 {
                            first = if entry.chunk_size == 0 {
                                entry.size
                            } else {
                                entry.chunk_size
                            };
                            self.push_chunk(index, &entry, node, 0, first)?;
                        }
                        self.current_reg = Some(CurrentReg {
                            node,
                            size: entry.size,
                            next_offset: first,
                        });
                    }
                    _ => {}
                }
                node
            }
        };
        match existing {
            Some(dirent) => self.dirents[dirent as usize].2 = node,
            None => {
                self.add_dirent(parent, base, node);
            }
        }
        if entry.kind == EntryKind::Hardlink {
            let dirent = self.child(parent, base).unwrap_or(PLACEHOLDER);
            let target = clean_path(&entry.raw_link_name());
            self.hardlinks.push((dirent, target));
        }
        Ok(())
    }

    fn push_chunk(
        &mut self,
        index: usize,
        entry: &TocEntry,
        node: u32,
        file_offset: u64,
        size: u64,
    ) -> Result<(), TocError> {
        if size > self.options.limits.max_chunk_bytes || size > u64::from(u32::MAX) {
            return Err(Self::invalid(
                index,
                entry,
                format!("chunk of {size} bytes is above the limit"),
            ));
        }
        if entry.inner_offset > u64::from(u32::MAX) {
            return Err(Self::invalid(
                index,
                entry,
                format!("inner offset {} is above 4 GiB", entry.inner_offset),
            ));
        }
        self.chunks.push(PendingChunk {
            node,
            entry: u32::try_from(index).unwrap_or(u32::MAX),
            chunk: ChunkSpec {
                file_offset,
                size,
                comp_offset: entry.offset,
                inner_offset: entry.inner_offset,
                digest: entry.chunk_digest.or(entry.digest),
            },
        });
        Ok(())
    }

    fn add_chunk(&mut self, index: usize, entry: &TocEntry) -> Result<(), TocError> {
        let Some(current) = self.current_reg else {
            return Err(Self::invalid(
                index,
                entry,
                "chunk entry does not follow a regular file",
            ));
        };
        let (node, file_size) = (current.node, current.size);
        // Chunks are listed in file order, each starting where the previous one ends. A reader
        // that sorted them instead would serve verified chunks in the wrong order.
        if entry.chunk_offset != current.next_offset {
            return Err(Self::invalid(
                index,
                entry,
                format!(
                    "chunk starts at file offset {}, but the file's previous chunk ends at {}",
                    entry.chunk_offset, current.next_offset
                ),
            ));
        }
        if entry.chunk_offset >= file_size {
            return Err(Self::invalid(
                index,
                entry,
                format!(
                    "chunk offset {} is past the file size {file_size}",
                    entry.chunk_offset
                ),
            ));
        }
        let size = if entry.chunk_size == 0 {
            file_size - entry.chunk_offset
        } else {
            entry.chunk_size
        };
        let digest_entry = TocEntry {
            digest: None,
            ..entry.clone()
        };
        self.push_chunk(index, &digest_entry, node, entry.chunk_offset, size)?;
        if let Some(current) = self.current_reg.as_mut() {
            current.next_offset = entry.chunk_offset.saturating_add(size);
        }
        Ok(())
    }

    fn resolve_hardlinks(&mut self) {
        let hardlinks = std::mem::take(&mut self.hardlinks);
        let link_target: HashMap<u32, &[u8]> =
            hardlinks.iter().map(|h| (h.0, h.1.as_slice())).collect();
        for (dirent, target) in &hardlinks {
            if *dirent == PLACEHOLDER {
                continue;
            }
            // Follow chains of links iteratively; a cycle or a missing target drops the link.
            let mut current = target.clone();
            let mut resolved = None;
            for _ in 0..=hardlinks.len() {
                let Some(found) = self.lookup_path_dirent(&current) else {
                    break;
                };
                let node = self.dirents[found as usize].2;
                if node != PLACEHOLDER {
                    resolved = Some(node);
                    break;
                }
                match link_target.get(&found) {
                    Some(next) => current = next.to_vec(),
                    None => break,
                }
            }
            match resolved {
                Some(node) if self.nodes[node as usize].kind != NodeKind::Dir => {
                    self.dirents[*dirent as usize].2 = node;
                }
                _ => self.stats.dangling_hardlinks += 1,
            }
        }
    }

    fn lookup_path_dirent(&self, path: &[u8]) -> Option<u32> {
        if path.is_empty() {
            return None;
        }
        let mut node = 0u32;
        let mut found = None;
        for part in path.split(|&b| b == b'/') {
            if node == PLACEHOLDER {
                return None;
            }
            let dirent = self.child(node, part)?;
            found = Some(dirent);
            node = self.dirents[dirent as usize].2;
        }
        found
    }

    fn apply_whiteouts(&mut self) {
        let count = self.dirents.len();
        for i in 0..count {
            let (parent, span, node) = self.dirents[i];
            if node == PLACEHOLDER {
                continue;
            }
            let name = self.strings[span.start as usize..(span.start + span.len) as usize].to_vec();
            let Some(target) = name.strip_prefix(b".wh.") else {
                continue;
            };
            if target == b".wh..opq" {
                self.nodes[parent as usize].opaque = true;
                self.dirents[i].2 = PLACEHOLDER;
                continue;
            }
            if target.starts_with(b".wh.") {
                // Other `.wh..wh.` names are AUFS bookkeeping, never user files.
                self.dirents[i].2 = PLACEHOLDER;
                continue;
            }
            if target.is_empty() || target == b"." || target == b".." || target.contains(&b'/') {
                // A whiteout must name something; this one stays an ordinary file.
                continue;
            }
            self.dirents[i].2 = PLACEHOLDER;
            let same_layer = self
                .child(parent, target)
                .map(|d| self.dirents[d as usize].2)
                .filter(|&n| n != PLACEHOLDER);
            if let Some(existing) = same_layer {
                // The layer deletes what lower layers have under this name and creates its own
                // entry (a whiteout applies only to lower layers). A directory recreated this
                // way must not merge with the deleted one, so it becomes opaque; any other kind
                // hides the lower entry by itself.
                if self.nodes[existing as usize].kind == NodeKind::Dir {
                    self.nodes[existing as usize].opaque = true;
                }
                continue;
            }
            let whiteout = self.new_node(NodeKind::Char, parent);
            let n = &mut self.nodes[whiteout as usize];
            n.mode = 0;
            let span = self.intern(target);
            self.dirents.push((parent, span, whiteout));
            self.stats.whiteouts += 1;
        }
    }

    fn finish(mut self, toc_offset: u64) -> Result<LayerIndex, TocError> {
        self.resolve_hardlinks();
        if self.options.overlay_whiteouts {
            self.apply_whiteouts();
        }
        self.lookup = HashMap::new();

        // Directory entries sorted by (parent, name); drop removed ones.
        let strings = &self.strings;
        let name_of = |span: Span| &strings[span.start as usize..(span.start + span.len) as usize];
        let mut dirents: Vec<(u32, Span, u32)> = std::mem::take(&mut self.dirents)
            .into_iter()
            .filter(|d| d.2 != PLACEHOLDER)
            .collect();
        dirents.sort_by(|a, b| a.0.cmp(&b.0).then_with(|| name_of(a.1).cmp(name_of(b.1))));
        dirents.dedup_by(|b, a| a.0 == b.0 && name_of(a.1) == name_of(b.1));
        for node in &mut self.nodes {
            node.nlink = if node.kind == NodeKind::Dir { 2 } else { 0 };
        }
        for &(parent, _, node) in &dirents {
            if self.nodes[node as usize].kind == NodeKind::Dir {
                self.nodes[parent as usize].nlink += 1;
            } else {
                self.nodes[node as usize].nlink += 1;
            }
        }

        // Chunks grouped by node, in file order, with their compressed spans.
        let mut offsets: Vec<u64> = self.chunks.iter().map(|c| c.chunk.comp_offset).collect();
        offsets.push(toc_offset);
        offsets.extend_from_slice(&self.landmark_offsets);
        offsets.sort_unstable();
        offsets.dedup();
        let mut pending = std::mem::take(&mut self.chunks);
        pending.sort_by_key(|c| (c.node, c.chunk.file_offset));
        let mut chunks = Vec::with_capacity(pending.len());
        let mut chunk_start = vec![0u32; self.nodes.len() + 1];
        let mut i = 0;
        for node in 0..self.nodes.len() as u32 {
            chunk_start[node as usize] = chunks.len() as u32;
            if i >= pending.len() || pending[i].node != node {
                continue;
            }
            let first_entry = pending[i].entry;
            let invalid = |reason: String| TocError::InvalidEntry {
                index: first_entry as usize,
                name: String::from_utf8_lossy(&path_of_node(&dirents, &self.strings, node))
                    .into_owned(),
                reason,
            };
            let mut expected = 0u64;
            while i < pending.len() && pending[i].node == node {
                let spec = pending[i].chunk;
                if spec.file_offset != expected {
                    return Err(invalid(format!(
                        "chunk at file offset {} does not continue at {expected}",
                        spec.file_offset
                    )));
                }
                if spec.comp_offset >= toc_offset {
                    return Err(invalid(format!(
                        "chunk offset {} is not before the TOC at {toc_offset}",
                        spec.comp_offset
                    )));
                }
                let next = offsets.partition_point(|&o| o <= spec.comp_offset);
                let comp_end = offsets.get(next).copied().unwrap_or(toc_offset);
                let chunk = Chunk::new(
                    spec.file_offset,
                    spec.size,
                    spec.comp_offset,
                    comp_end,
                    spec.inner_offset,
                    spec.digest,
                )
                .ok_or_else(|| invalid("chunk size or inner offset does not fit 32 bits".into()))?;
                expected = spec.file_offset + spec.size;
                chunks.push(chunk);
                i += 1;
            }
            let size = self.nodes[node as usize].size;
            if expected != size {
                return Err(invalid(format!(
                    "chunks cover {expected} bytes of a {size}-byte file"
                )));
            }
        }
        chunk_start[self.nodes.len()] = chunks.len() as u32;
        // `chunks[k]` was made from `pending[k]`.
        if let Some((k, reason)) = find_conflicting_chunk(&chunks) {
            return Err(TocError::InvalidEntry {
                index: pending[k].entry as usize,
                name: String::from_utf8_lossy(&path_of_node(
                    &dirents,
                    &self.strings,
                    pending[k].node,
                ))
                .into_owned(),
                reason,
            });
        }
        drop(pending);

        // Directory entries are sorted by parent, so each directory's entries start where the
        // previous node's end.
        let mut child_start = vec![0u32; self.nodes.len() + 1];
        let mut d = 0usize;
        for (node, start) in child_start.iter_mut().enumerate().take(self.nodes.len()) {
            *start = d as u32;
            while d < dirents.len() && dirents[d].0 as usize == node {
                d += 1;
            }
        }
        child_start[self.nodes.len()] = dirents.len() as u32;

        let mut extras = Vec::new();
        let mut records = Vec::with_capacity(self.nodes.len() + 1);
        for (n, node) in self.nodes.iter().enumerate() {
            let needs_extra = node.link.len > 0
                || !node.xattrs.is_empty()
                || node.dev_major != 0
                || node.dev_minor != 0
                || node.mtime.nanos != 0;
            let extra = if needs_extra {
                extras.push(NodeExtra {
                    link: node.link,
                    xattrs: node.xattrs.clone(),
                    dev_major: node.dev_major,
                    dev_minor: node.dev_minor,
                    mtime_nanos: node.mtime.nanos,
                });
                (extras.len() - 1) as u32
            } else {
                NO_EXTRA
            };
            records.push(NodeRecord {
                size: node.size,
                mtime_secs: node.mtime.secs,
                uid: node.uid,
                gid: node.gid,
                nlink: node.nlink,
                parent: node.parent,
                chunk_start: chunk_start[n],
                child_start: child_start[n],
                extra,
                mode_kind: (node.mode & 0o7777) as u16 | (kind_code(node.kind) << 12),
                flags: if node.opaque { FLAG_OPAQUE } else { 0 }
                    | if node.implied { FLAG_IMPLIED } else { 0 },
            });
        }
        // A sentinel record closes the chunk and entry ranges of the last node.
        records.push(NodeRecord {
            size: 0,
            mtime_secs: 0,
            uid: 0,
            gid: 0,
            nlink: 0,
            parent: 0,
            chunk_start: chunk_start[self.nodes.len()],
            child_start: child_start[self.nodes.len()],
            extra: NO_EXTRA,
            mode_kind: 0,
            flags: 0,
        });
        drop(std::mem::take(&mut self.nodes));

        // The vectors grew by doubling; the index lives as long as the mount, so drop the slack.
        extras.shrink_to_fit();
        self.xattrs.shrink_to_fit();
        self.strings.shrink_to_fit();
        Ok(LayerIndex {
            nodes: records,
            extras,
            dirents: dirents
                .into_iter()
                .map(|(_, span, node)| (span, node))
                .collect(),
            chunks,
            xattrs: self.xattrs,
            strings: self.strings,
            landmark: self.landmark,
            stats: self.stats,
            blob_payload_end: toc_offset,
        })
    }
}

impl LayerIndex {
    /// Builds the index from TOC JSON. `toc_offset` bounds the payload of the last chunk.
    pub fn from_toc_json(
        json: &[u8],
        toc_offset: u64,
        options: &IndexOptions,
    ) -> Result<Self, TocError> {
        let mut builder = Builder::new(options.clone());
        parse_toc_entries(json, &options.limits, |index, entry| {
            builder.add(index, entry)
        })?;
        builder.finish(toc_offset)
    }

    /// Builds the index from entries already in memory.
    pub fn from_entries(
        entries: impl IntoIterator<Item = TocEntry>,
        toc_offset: u64,
        options: &IndexOptions,
    ) -> Result<Self, TocError> {
        let mut builder = Builder::new(options.clone());
        for (index, entry) in entries.into_iter().enumerate() {
            builder.add(index, entry)?;
        }
        builder.finish(toc_offset)
    }

    fn string(&self, span: Span) -> &[u8] {
        &self.strings[span.start as usize..(span.start + span.len) as usize]
    }

    fn record(&self, id: NodeId) -> Option<&NodeRecord> {
        // The last record is the sentinel, not a node.
        self.nodes
            .get(id.0 as usize)
            .filter(|_| (id.0 as usize) + 1 < self.nodes.len())
    }

    fn extra(&self, id: NodeId) -> Option<&NodeExtra> {
        self.record(id)
            .and_then(|r| self.extras.get(r.extra as usize))
    }

    fn children_range(&self, id: NodeId) -> Range<usize> {
        match self.record(id) {
            Some(r) => r.child_start as usize..self.nodes[id.0 as usize + 1].child_start as usize,
            None => 0..0,
        }
    }

    /// Number of nodes, the root included. Node ids are `0..node_count()`.
    pub fn node_count(&self) -> usize {
        self.nodes.len().saturating_sub(1)
    }

    /// The attributes of the node with this id.
    pub fn node(&self, id: NodeId) -> Option<Node> {
        let record = self.record(id)?;
        let extra = self.extra(id);
        Some(Node {
            kind: kind_from_code(record.mode_kind >> 12),
            mode: u32::from(record.mode_kind & 0o7777),
            uid: record.uid,
            gid: record.gid,
            mtime: Timestamp::new(record.mtime_secs, extra.map_or(0, |e| e.mtime_nanos)),
            size: record.size,
            nlink: record.nlink,
            dev_major: extra.map_or(0, |e| e.dev_major),
            dev_minor: extra.map_or(0, |e| e.dev_minor),
            opaque: record.flags & FLAG_OPAQUE != 0,
            implied: record.flags & FLAG_IMPLIED != 0,
        })
    }

    /// The path of a node relative to the root, without a leading slash (empty for the root).
    /// For a hard-linked file, the first name found. Costs one scan of each ancestor's entries.
    pub fn path_of(&self, id: NodeId) -> Option<Vec<u8>> {
        let mut parts: Vec<&[u8]> = Vec::new();
        let mut current = id;
        while current != NodeId::ROOT {
            // Directories know their parent; other nodes are found in any directory naming them.
            let parent = match self.node(current)?.kind {
                NodeKind::Dir => self.parent(current),
                _ => (0..self.node_count() as u32)
                    .map(NodeId)
                    .find(|&d| self.children(d).any(|(_, child)| child == current))?,
            };
            let (name, _) = self.children(parent).find(|&(_, child)| child == current)?;
            parts.push(name);
            if parts.len() > self.node_count() {
                return None;
            }
            current = parent;
        }
        parts.reverse();
        Some(parts.join(&b'/'))
    }

    /// Directories that have no entry of their own (see [`Node::implied`]), with their paths.
    pub fn implied_dirs(&self) -> Vec<(NodeId, Vec<u8>)> {
        (0..self.node_count() as u32)
            .map(NodeId)
            .filter(|&id| id != NodeId::ROOT && self.node(id).is_some_and(|n| n.implied))
            .filter_map(|id| Some((id, self.path_of(id)?)))
            .collect()
    }

    /// The parent directory of a directory (the root is its own parent).
    pub fn parent(&self, id: NodeId) -> NodeId {
        self.record(id).map_or(NodeId::ROOT, |r| NodeId(r.parent))
    }

    /// Looks up `name` in directory `dir`.
    pub fn lookup(&self, dir: NodeId, name: &[u8]) -> Option<NodeId> {
        let children = &self.dirents[self.children_range(dir)];
        children
            .binary_search_by(|(span, _)| self.string(*span).cmp(name))
            .ok()
            .map(|i| NodeId(children[i].1))
    }

    /// Resolves a path relative to the root, cleaning it first. Symlinks are not followed.
    pub fn lookup_path(&self, path: &[u8]) -> Option<NodeId> {
        let clean = clean_path(path);
        if clean.is_empty() {
            return Some(NodeId::ROOT);
        }
        clean
            .split(|&b| b == b'/')
            .try_fold(NodeId::ROOT, |dir, part| self.lookup(dir, part))
    }

    /// Number of entries in a directory (without `.` and `..`).
    pub fn child_count(&self, dir: NodeId) -> usize {
        self.children_range(dir).len()
    }

    /// The `index`-th entry of a directory in name order.
    pub fn child_at(&self, dir: NodeId, index: usize) -> Option<(&[u8], NodeId)> {
        let range = self.children_range(dir);
        let i = range.start + index;
        if i >= range.end {
            return None;
        }
        let (span, id) = self.dirents[i];
        Some((self.string(span), NodeId(id)))
    }

    /// Entries of a directory in name order.
    pub fn children(&self, dir: NodeId) -> impl Iterator<Item = (&[u8], NodeId)> + '_ {
        (0..self.child_count(dir)).filter_map(move |i| self.child_at(dir, i))
    }

    /// Target of a symlink (empty for other nodes).
    pub fn symlink_target(&self, id: NodeId) -> &[u8] {
        self.extra(id).map_or(&[][..], |e| self.string(e.link))
    }

    /// Extended attributes of a node, sorted by name.
    pub fn xattrs(&self, id: NodeId) -> impl Iterator<Item = (&[u8], &[u8])> + '_ {
        let range = self.extra(id).map_or(0..0, |e| e.xattrs.clone());
        self.xattrs[range.start as usize..range.end as usize]
            .iter()
            .map(|&(name, value)| (self.string(name), self.string(value)))
    }

    /// All chunks of a regular file, in file order.
    pub fn chunks(&self, id: NodeId) -> &[Chunk] {
        match self.record(id) {
            Some(r) => {
                &self.chunks
                    [r.chunk_start as usize..self.nodes[id.0 as usize + 1].chunk_start as usize]
            }
            None => &[],
        }
    }

    /// The chunks of a file that overlap `range` (a half-open byte range of the file).
    pub fn chunks_in(&self, id: NodeId, range: Range<u64>) -> &[Chunk] {
        let all = self.chunks(id);
        if range.start >= range.end {
            return &[];
        }
        let first = all.partition_point(|c| c.file_offset + c.size() <= range.start);
        let last = all.partition_point(|c| c.file_offset < range.end);
        &all[first..last.max(first)]
    }

    /// Every chunk of the layer, grouped by file.
    pub fn all_chunks(&self) -> &[Chunk] {
        &self.chunks
    }

    /// The layer's landmark, when it has one and landmarks are hidden.
    pub fn landmark(&self) -> Option<Landmark> {
        self.landmark
    }

    /// Counters gathered while building.
    pub fn stats(&self) -> &IndexStats {
        &self.stats
    }

    /// End of the payload region of the blob (the TOC offset).
    pub fn payload_end(&self) -> u64 {
        self.blob_payload_end
    }

    /// Approximate heap memory held by the index, in bytes.
    pub fn heap_bytes(&self) -> usize {
        self.nodes.capacity() * std::mem::size_of::<NodeRecord>()
            + self.extras.capacity() * std::mem::size_of::<NodeExtra>()
            + self.dirents.capacity() * std::mem::size_of::<(Span, u32)>()
            + self.chunks.capacity() * std::mem::size_of::<Chunk>()
            + self.xattrs.capacity() * std::mem::size_of::<(Span, Span)>()
            + self.strings.capacity()
    }
}

#[cfg(test)]
mod layout_tests {
    use super::*;

    #[test]
    fn implied_directories_are_marked_until_listed() {
        let entry = |name: &str, kind| TocEntry {
            name: name.into(),
            kind,
            mode: 0o700,
            ..TocEntry::default()
        };
        let entries = vec![entry("a/b/f", EntryKind::Reg), entry("a/", EntryKind::Dir)];
        let index = LayerIndex::from_entries(entries, 100, &IndexOptions::default()).unwrap();
        let a = index.lookup_path(b"a").unwrap();
        let b = index.lookup_path(b"a/b").unwrap();
        assert!(
            !index.node(a).unwrap().implied,
            "a has an entry, after its child"
        );
        assert_eq!(index.node(a).unwrap().mode, 0o700);
        assert!(index.node(b).unwrap().implied);
        assert_eq!(index.implied_dirs(), vec![(b, b"a/b".to_vec())]);
        assert_eq!(
            index.path_of(index.lookup_path(b"a/b/f").unwrap()),
            Some(b"a/b/f".to_vec())
        );
    }

    #[test]
    fn directory_recreated_after_its_whiteout_is_opaque() {
        let entry = |name: &str, kind| TocEntry {
            name: name.into(),
            kind,
            mode: 0o755,
            ..TocEntry::default()
        };
        let options = IndexOptions {
            overlay_whiteouts: true,
            ..IndexOptions::default()
        };
        let orders = [
            [".wh.b", "b/", "b/y", ".wh.f", "f"],
            ["b/", "b/y", ".wh.b", "f", ".wh.f"],
        ];
        for order in orders {
            let entries: Vec<TocEntry> = order
                .iter()
                .map(|name| match name.strip_suffix('/') {
                    Some(_) => entry(name, EntryKind::Dir),
                    None => entry(name, EntryKind::Reg),
                })
                .collect();
            let index = LayerIndex::from_entries(entries, 100, &options).unwrap();
            let b = index.node(index.lookup_path(b"b").unwrap()).unwrap();
            assert_eq!(b.kind, NodeKind::Dir, "{order:?}");
            assert!(
                b.opaque,
                "the lower b is deleted, so the new one must not merge: {order:?}"
            );
            let f = index.node(index.lookup_path(b"f").unwrap()).unwrap();
            assert_eq!(f.kind, NodeKind::Reg, "{order:?}");
            assert!(index.lookup_path(b".wh.b").is_none(), "{order:?}");
            assert!(index.lookup_path(b"b/y").is_some(), "{order:?}");
        }
    }

    #[test]
    fn impossible_entries_skip_their_chunks() {
        let long = "n".repeat(NAME_MAX + 1);
        let file = |name: &str| TocEntry {
            name: name.into(),
            kind: EntryKind::Reg,
            size: 20,
            chunk_size: 10,
            offset: 1,
            chunk_digest: Some(Digest::EMPTY),
            ..TocEntry::default()
        };
        let chunk = |name: &str| TocEntry {
            name: name.into(),
            kind: EntryKind::Chunk,
            offset: 2,
            chunk_offset: 10,
            chunk_digest: Some(Digest::EMPTY),
            ..TocEntry::default()
        };
        let entries = vec![
            file(&format!("a/{long}")),
            chunk(&format!("a/{long}")),
            TocEntry {
                name: "up".into(),
                kind: EntryKind::Symlink,
                link_name: "..".into(),
                ..TocEntry::default()
            },
            file("up/escaped"),
            chunk("up/escaped"),
            file("a/ok"),
            chunk("a/ok"),
        ];
        let index = LayerIndex::from_entries(entries, 100, &IndexOptions::default()).unwrap();
        let a = index.lookup_path(b"a").unwrap();
        let names: Vec<&[u8]> = index.children(a).map(|(name, _)| name).collect();
        assert_eq!(names, [&b"ok"[..]]);
        assert_eq!(index.stats().skipped_long_names, 1);
        assert_eq!(index.stats().skipped_below_non_dir, 1);
        let ok = index.lookup_path(b"a/ok").unwrap();
        assert_eq!(index.chunks(ok).len(), 2);
    }

    #[test]
    fn records_stay_compact() {
        assert_eq!(std::mem::size_of::<NodeRecord>(), 48);
        assert_eq!(std::mem::size_of::<Chunk>(), 64);
    }
}
