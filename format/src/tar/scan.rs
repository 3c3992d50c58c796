//! First pass of the writer: walk a seekable tar stream, record where every entry's header blocks
//! and data sit, and decode the metadata eStargz needs. Payloads are skipped, not read.

use std::io::{BufReader, Read, Seek, SeekFrom};

use super::header::{self, EntryType, Header};
use super::pax::{self, Record};
use super::sparse::{self, SparseMap};
use super::{BLOCK, padded};
use crate::error::TarError;
use crate::limits::Limits;
use crate::toc::Timestamp;

/// File type of an entry after extension headers are resolved.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    /// Regular file (sparse files included, after expansion).
    Regular,
    /// Hard link to an earlier path.
    Hardlink,
    /// Symbolic link.
    Symlink,
    /// Character device.
    Char,
    /// Block device.
    Block,
    /// Directory.
    Directory,
    /// Named pipe.
    Fifo,
}

/// How the writer may emit an entry's header blocks.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum HeaderCopy {
    /// Copy the input's header blocks byte for byte.
    Verbatim,
    /// Copy verbatim but replace the main header's typeflag (for example the legacy `\0` regular
    /// flag becomes `0`) and fix its checksum.
    SetTypeflag(u8),
    /// Write a new header from the decoded metadata (sparse files, entries affected by a PAX
    /// global header, non-regular entries that carried data).
    Reencode,
}

/// Decoded metadata of one entry.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EntryMeta {
    /// Full path as stored (not cleaned).
    pub name: Vec<u8>,
    /// Link target for hard and symbolic links.
    pub link: Vec<u8>,
    /// File type.
    pub kind: Kind,
    /// Mode field as stored.
    pub mode: u32,
    /// Owner uid.
    pub uid: u64,
    /// Owner gid.
    pub gid: u64,
    /// Owner user name.
    pub uname: Vec<u8>,
    /// Owner group name.
    pub gname: Vec<u8>,
    /// Modification time.
    pub mtime: Timestamp,
    /// Logical size of a regular file (expanded size for sparse files); zero otherwise.
    pub size: u64,
    /// Device major number.
    pub devmajor: u32,
    /// Device minor number.
    pub devminor: u32,
    /// Extended attributes in input order (later duplicates override earlier ones).
    pub xattrs: Vec<(Vec<u8>, Vec<u8>)>,
    /// PAX records that carry no field above (atime, ctime, vendor records), kept when the entry
    /// is re-encoded.
    pub extra_records: Vec<Record>,
}

/// Where one entry sits in the input and how to copy it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct InputEntry {
    /// Offset of the first header block of this entry (its first PAX or GNU extension header, or
    /// the main header).
    pub header_start: u64,
    /// Offset of the main (ustar) header block.
    pub main_header: u64,
    /// End of the header blocks (old GNU sparse extension blocks included).
    pub header_end: u64,
    /// Offset of the first stored payload byte (after a PAX 1.0 sparse map).
    pub data_offset: u64,
    /// Number of stored payload bytes to copy for a regular file.
    pub stored_len: u64,
    /// Decoded metadata.
    pub meta: EntryMeta,
    /// How to emit the header blocks.
    pub copy: HeaderCopy,
    /// Sparse map for sparse files.
    pub sparse: Option<SparseMap>,
}

/// Result of [`scan`].
#[derive(Debug, Clone, Default)]
pub struct ScanOutput {
    /// Entries in input order.
    pub entries: Vec<InputEntry>,
    /// Number of PAX global headers that were folded into the entries after them.
    pub global_headers: usize,
    /// Number of GNU volume labels dropped.
    pub volume_labels: usize,
}

#[derive(Default)]
struct Pending {
    start: Option<u64>,
    records: Vec<Record>,
    long_name: Option<Vec<u8>>,
    long_link: Option<Vec<u8>>,
}

struct Scanner<R> {
    input: BufReader<R>,
    pos: u64,
    len: u64,
    limits: Limits,
}

impl<R: Read + Seek> Scanner<R> {
    fn io(&self, source: std::io::Error) -> TarError {
        TarError::Io {
            offset: self.pos,
            source,
        }
    }

    /// Reads the block at the current position, or returns `None` at end of input.
    fn read_block(&mut self) -> Result<Option<[u8; 512]>, TarError> {
        if self.pos >= self.len {
            return Ok(None);
        }
        let mut block = [0u8; 512];
        let mut filled = 0;
        while filled < 512 {
            match self.input.read(&mut block[filled..]) {
                Ok(0) => break,
                Ok(n) => filled += n,
                Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
                Err(e) => return Err(self.io(e)),
            }
        }
        if filled == 0 && self.len == UNKNOWN_LENGTH {
            return Ok(None);
        }
        if filled < 512 {
            return Err(TarError::InvalidHeader {
                offset: self.pos,
                reason: format!("stream ends inside a header block ({filled} of 512 bytes)"),
            });
        }
        self.pos += BLOCK;
        Ok(Some(block))
    }

    fn read_data(
        &mut self,
        len: u64,
        offset: u64,
        what: &'static str,
    ) -> Result<Vec<u8>, TarError> {
        if len > self.limits.max_tar_extension_bytes {
            return Err(TarError::TooLarge {
                what,
                offset,
                value: len,
                limit: self.limits.max_tar_extension_bytes,
            });
        }
        if self.pos + len > self.len {
            return Err(TarError::Truncated {
                name: what.to_string(),
                offset,
                needed: self.pos + len - self.len,
            });
        }
        let mut data = vec![0u8; len as usize];
        self.input.read_exact(&mut data).map_err(|e| self.io(e))?;
        self.pos += len;
        self.skip(padded(len) - len)?;
        Ok(data)
    }

    fn skip(&mut self, len: u64) -> Result<(), TarError> {
        let target = (self.pos + len).min(self.len);
        let delta = i64::try_from(target - self.pos).map_err(|_| TarError::InvalidHeader {
            offset: self.pos,
            reason: "entry size out of range".into(),
        })?;
        self.input.seek_relative(delta).map_err(|e| self.io(e))?;
        self.pos = target;
        Ok(())
    }
}

fn strip_nuls(mut data: Vec<u8>) -> Vec<u8> {
    while data.last() == Some(&0) {
        data.pop();
    }
    data
}

/// Walks a tar stream and returns its entries.
///
/// Accepts ustar, PAX (local and global headers), GNU (long names, long links, old sparse) and V7
/// headers, and the PAX sparse formats 0.0, 0.1 and 1.0. Stops at the first zero block or at the
/// end of input. Rejects entry types eStargz cannot represent, bad checksums and truncated data.
pub fn scan<R: Read + Seek>(input: R, limits: &Limits) -> Result<ScanOutput, TarError> {
    let mut entries = Vec::new();
    let mut out = scan_each(input, limits, |entry, _data| {
        entries.push(entry);
        Ok::<(), TarError>(())
    })?;
    out.entries = entries;
    Ok(out)
}

/// Input length that stands for "unknown": [`scan_each`] then ends where the input ends, which
/// lets a forward-only stream (a decompressor) be scanned through an adapter whose `Seek` only
/// skips forward and reports this length for `SeekFrom::End(0)`.
pub const UNKNOWN_LENGTH: u64 = u64::MAX;

/// Walks a tar stream like [`scan`], but hands each entry to `visit` as soon as it is decoded,
/// with a reader over its stored data (from `data_offset`, `stored_len` bytes; for sparse files
/// the stored segments, without the map). Whatever `visit` leaves unread is skipped. The
/// returned output has no entries, only the counts.
///
/// The scanner only seeks forward, except to peek at a PAX 1.0 sparse map (at most
/// `max_tar_extension_bytes` back). When the input's length is [`UNKNOWN_LENGTH`], a clean end
/// of input at a block boundary ends the walk like a zero block.
pub fn scan_each<R, E, F>(input: R, limits: &Limits, mut visit: F) -> Result<ScanOutput, E>
where
    R: Read + Seek,
    E: From<TarError>,
    F: FnMut(InputEntry, &mut dyn Read) -> Result<(), E>,
{
    let mut input = BufReader::with_capacity(64 * 1024, input);
    let len = input
        .seek(SeekFrom::End(0))
        .map_err(|source| TarError::Io { offset: 0, source })?;
    input
        .seek(SeekFrom::Start(0))
        .map_err(|source| TarError::Io { offset: 0, source })?;
    let mut s = Scanner {
        input,
        pos: 0,
        len,
        limits: limits.clone(),
    };
    let mut out = ScanOutput::default();
    let mut count = 0usize;
    let mut pending = Pending::default();
    let mut global: Vec<Record> = Vec::new();

    loop {
        let offset = s.pos;
        let Some(block) = s.read_block()? else {
            break;
        };
        if header::is_zero_block(&block) {
            break;
        }
        let hdr =
            header::decode(&block).map_err(|reason| TarError::InvalidHeader { offset, reason })?;
        let entry_type = EntryType::from_flag(hdr.typeflag);
        match entry_type {
            EntryType::PaxLocal => {
                pending.start.get_or_insert(offset);
                let data = s.read_data(hdr.size, offset, "PAX header")?;
                let records =
                    pax::parse_records(&data).map_err(|reason| TarError::InvalidExtension {
                        what: "PAX header",
                        offset,
                        reason,
                    })?;
                pending.records.extend(records);
                continue;
            }
            EntryType::PaxGlobal => {
                let data = s.read_data(hdr.size, offset, "PAX global header")?;
                let records =
                    pax::parse_records(&data).map_err(|reason| TarError::InvalidExtension {
                        what: "PAX global header",
                        offset,
                        reason,
                    })?;
                for (key, value) in records {
                    // A comment has no effect on extraction.
                    if key == b"comment" {
                        continue;
                    }
                    global.retain(|(k, _)| *k != key);
                    if !value.is_empty() {
                        global.push((key, value));
                    }
                }
                out.global_headers += 1;
                // The global header itself is not copied; a pending extension stays attached
                // to the next real entry.
                continue;
            }
            EntryType::GnuLongName | EntryType::GnuLongLink => {
                pending.start.get_or_insert(offset);
                let what = if entry_type == EntryType::GnuLongName {
                    "GNU long name"
                } else {
                    "GNU long link"
                };
                let data = strip_nuls(s.read_data(hdr.size, offset, what)?);
                if entry_type == EntryType::GnuLongName {
                    pending.long_name = Some(data);
                } else {
                    pending.long_link = Some(data);
                }
                continue;
            }
            EntryType::GnuVolume => {
                s.skip(padded(hdr.size))?;
                pending = Pending::default();
                out.volume_labels += 1;
                continue;
            }
            EntryType::Other(flag) => {
                return Err(TarError::UnsupportedType {
                    name: String::from_utf8_lossy(&hdr.name).into_owned(),
                    offset,
                    typeflag: char::from(flag),
                    kind: entry_type.describe(),
                }
                .into());
            }
            _ => {}
        }
        let pend = std::mem::take(&mut pending);
        let (entry, data_size) =
            read_entry(&mut s, offset, &block, hdr, entry_type, pend, &global)?;
        if count >= limits.max_entries {
            return Err(TarError::TooLarge {
                what: "number of entries",
                offset,
                value: count as u64 + 1,
                limit: limits.max_entries as u64,
            }
            .into());
        }
        count += 1;
        // The payload: [header_end, header_end + data_size), padded to a block; the stored
        // data of the entry starts `data_offset - header_end` bytes into it.
        let payload_end = s
            .pos
            .saturating_add(data_size.div_ceil(BLOCK).saturating_mul(BLOCK));
        s.skip(entry.data_offset.saturating_sub(s.pos))?;
        let stored_len = entry.stored_len;
        let mut data = (&mut s.input).take(stored_len);
        visit(entry, &mut data)?;
        let consumed = stored_len - data.limit();
        s.pos += consumed;
        s.skip(payload_end.saturating_sub(s.pos))?;
    }
    if pending.start.is_some() {
        return Err(TarError::Truncated {
            name: "extension header without its entry".into(),
            offset: pending.start.unwrap_or(0),
            needed: BLOCK,
        }
        .into());
    }
    Ok(out)
}

#[allow(clippy::too_many_arguments)]
fn read_entry<R: Read + Seek>(
    s: &mut Scanner<R>,
    offset: u64,
    block: &[u8; 512],
    hdr: Header,
    entry_type: EntryType,
    pend: Pending,
    global: &[Record],
) -> Result<(InputEntry, u64), TarError> {
    let header_start = pend.start.unwrap_or(offset);
    let mut copy = if global.is_empty() {
        HeaderCopy::Verbatim
    } else {
        HeaderCopy::Reencode
    };

    // Effective PAX records: global ones, minus those a local record overrides, then the local
    // ones in order. Local keys may repeat (PAX sparse 0.0 repeats offset/numbytes pairs).
    let mut records: Vec<Record> = global
        .iter()
        .filter(|(key, _)| !pend.records.iter().any(|(k, _)| k == key))
        .cloned()
        .collect();
    records.extend(pend.records);

    let mut meta = EntryMeta {
        name: pend.long_name.unwrap_or(hdr.name.clone()),
        link: pend.long_link.unwrap_or(hdr.linkname.clone()),
        kind: Kind::Regular,
        mode: hdr.mode,
        uid: hdr.uid,
        gid: hdr.gid,
        uname: hdr.uname.clone(),
        gname: hdr.gname.clone(),
        mtime: Timestamp::new(hdr.mtime, 0),
        size: 0,
        devmajor: hdr.devmajor,
        devminor: hdr.devminor,
        xattrs: Vec::new(),
        extra_records: Vec::new(),
    };
    let mut data_size = hdr.size;
    let mut sparse_records: Vec<Record> = Vec::new();
    let bad = |what: &'static str, reason: String| TarError::InvalidExtension {
        what,
        offset,
        reason,
    };

    for (key, value) in records {
        let number = |v: &[u8]| -> Result<u64, TarError> {
            std::str::from_utf8(v)
                .ok()
                .and_then(|t| t.parse::<u64>().ok())
                .ok_or_else(|| {
                    bad(
                        "PAX header",
                        format!(
                            "{} value {:?} is not a number",
                            String::from_utf8_lossy(&key),
                            String::from_utf8_lossy(v)
                        ),
                    )
                })
        };
        match key.as_slice() {
            b"path" => meta.name = value,
            b"linkpath" => meta.link = value,
            b"size" => data_size = number(&value)?,
            b"uid" => meta.uid = number(&value)?,
            b"gid" => meta.gid = number(&value)?,
            b"uname" => meta.uname = value,
            b"gname" => meta.gname = value,
            b"mtime" => {
                let (secs, nanos) = pax::parse_time(&value).ok_or_else(|| {
                    bad(
                        "PAX header",
                        format!("mtime {:?} is invalid", String::from_utf8_lossy(&value)),
                    )
                })?;
                meta.mtime = Timestamp::new(secs, nanos);
            }
            b"SCHILY.devmajor" => {
                meta.devmajor = u32::try_from(number(&value)?)
                    .map_err(|_| bad("PAX header", "devmajor out of range".into()))?
            }
            b"SCHILY.devminor" => {
                meta.devminor = u32::try_from(number(&value)?)
                    .map_err(|_| bad("PAX header", "devminor out of range".into()))?
            }
            b"comment" | b"hdrcharset" | b"charset" => {}
            k if k.starts_with(b"SCHILY.xattr.") => {
                let name = k[b"SCHILY.xattr.".len()..].to_vec();
                if !name.is_empty() {
                    meta.xattrs.retain(|(n, _)| *n != name);
                    meta.xattrs.push((name, value));
                }
            }
            // libarchive's own xattr records are not applied by GNU tar, Go's archive/tar
            // (containerd, Docker) or the reference converter, so a container never sees them:
            // they stay in the header as ordinary records and are not exposed as xattrs.
            k if k.starts_with(b"GNU.sparse.") => sparse_records.push((key, value)),
            _ => meta.extra_records.push((key, value)),
        }
    }

    let mut header_end = s.pos;
    let mut sparse_map = None;
    let mut data_offset = header_end;
    let mut stored_len = 0u64;

    match entry_type {
        EntryType::Regular | EntryType::GnuSparse => {
            meta.kind = Kind::Regular;
            if hdr.typeflag != b'0' && entry_type == EntryType::Regular {
                copy = merge_copy(copy, HeaderCopy::SetTypeflag(b'0'));
            }
        }
        EntryType::Hardlink => meta.kind = Kind::Hardlink,
        EntryType::Symlink => meta.kind = Kind::Symlink,
        EntryType::Char => meta.kind = Kind::Char,
        EntryType::Block => meta.kind = Kind::Block,
        EntryType::Directory | EntryType::GnuDumpDir => meta.kind = Kind::Directory,
        EntryType::Fifo => meta.kind = Kind::Fifo,
        _ => unreachable!("extension headers are handled by the caller"),
    }
    if entry_type == EntryType::GnuDumpDir {
        copy = HeaderCopy::Reencode;
    }
    // Old archives mark directories with a trailing slash on a regular-file header.
    if meta.kind == Kind::Regular && entry_type == EntryType::Regular && meta.name.ends_with(b"/") {
        meta.kind = Kind::Directory;
        copy = merge_copy(copy, HeaderCopy::SetTypeflag(b'5'));
    }

    if entry_type == EntryType::GnuSparse {
        let (mut segments, real_size, mut extended) =
            sparse::old_gnu_header(block).map_err(|reason| bad("sparse map", reason))?;
        while extended {
            let ext_offset = s.pos;
            let ext = s.read_block()?.ok_or(TarError::Truncated {
                name: String::from_utf8_lossy(&meta.name).into_owned(),
                offset: ext_offset,
                needed: BLOCK,
            })?;
            extended = sparse::old_gnu_extension(&ext, &mut segments)
                .map_err(|reason| bad("sparse map", reason))?;
            if segments.len() > 1_000_000 {
                return Err(bad("sparse map", "more than 1000000 segments".into()));
            }
        }
        header_end = s.pos;
        data_offset = header_end;
        sparse_map = Some(SparseMap {
            segments,
            real_size,
        });
        stored_len = data_size;
        copy = HeaderCopy::Reencode;
    } else if !sparse_records.is_empty() && meta.kind == Kind::Regular {
        let (map, map_len) = pax_sparse(s, &sparse_records, &mut meta, data_size, offset)?;
        sparse_map = Some(map);
        data_offset = header_end + map_len;
        stored_len = data_size - map_len;
        copy = HeaderCopy::Reencode;
    } else if meta.kind == Kind::Regular {
        stored_len = data_size;
    } else if data_size != 0 && entry_type != EntryType::GnuDumpDir {
        // Non-regular entries carry no content; write them without the stray data.
        copy = HeaderCopy::Reencode;
    }

    if let Some(map) = &sparse_map {
        map.validate(stored_len)
            .map_err(|reason| bad("sparse map", reason))?;
        meta.size = map.real_size;
    } else if meta.kind == Kind::Regular {
        meta.size = stored_len;
    }

    if meta.name.len() > s.limits.max_name_bytes || meta.link.len() > s.limits.max_name_bytes {
        return Err(TarError::TooLarge {
            what: "name or link target",
            offset,
            value: meta.name.len().max(meta.link.len()) as u64,
            limit: s.limits.max_name_bytes as u64,
        });
    }
    if meta.name.contains(&0) || meta.link.contains(&0) {
        return Err(bad(
            "PAX header",
            "name or link target contains a NUL byte".into(),
        ));
    }

    // Skip the payload; `data_size` counts what is stored in the archive after the headers.
    let payload_end = header_end
        .checked_add(data_size)
        .ok_or_else(|| bad("PAX header", "size overflows".into()))?;
    if payload_end > s.len {
        return Err(TarError::Truncated {
            name: String::from_utf8_lossy(&meta.name).into_owned(),
            offset,
            needed: payload_end - s.len,
        });
    }
    // The caller hands the payload to its visitor and skips the rest.
    Ok((
        InputEntry {
            header_start,
            main_header: offset,
            header_end,
            data_offset,
            stored_len,
            meta,
            copy,
            sparse: sparse_map,
        },
        data_size,
    ))
}

fn merge_copy(current: HeaderCopy, wanted: HeaderCopy) -> HeaderCopy {
    match current {
        HeaderCopy::Reencode => HeaderCopy::Reencode,
        _ => wanted,
    }
}

fn pax_sparse<R: Read + Seek>(
    s: &mut Scanner<R>,
    records: &[Record],
    meta: &mut EntryMeta,
    data_size: u64,
    offset: u64,
) -> Result<(SparseMap, u64), TarError> {
    let bad = |reason: String| TarError::InvalidExtension {
        what: "sparse map",
        offset,
        reason,
    };
    let get = |key: &[u8]| {
        records
            .iter()
            .rev()
            .find(|(k, _)| k == key)
            .map(|(_, v)| v.as_slice())
    };
    let number = |key: &[u8]| -> Result<Option<u64>, TarError> {
        match get(key) {
            None => Ok(None),
            Some(v) => std::str::from_utf8(v)
                .ok()
                .and_then(|t| t.parse().ok())
                .map(Some)
                .ok_or_else(|| bad(format!("{} is not a number", String::from_utf8_lossy(key)))),
        }
    };
    if let Some(name) = get(b"GNU.sparse.name") {
        meta.name = name.to_vec();
    }
    let real_size = number(b"GNU.sparse.realsize")?
        .or(number(b"GNU.sparse.size")?)
        .ok_or_else(|| bad("no GNU.sparse.realsize or GNU.sparse.size record".into()))?;
    let major = number(b"GNU.sparse.major")?;
    if major == Some(1) {
        // Format 1.0: the map is at the start of the data.
        let peek_len = data_size.min(s.limits.max_tar_extension_bytes);
        let saved = s.pos;
        let mut head = vec![0u8; peek_len as usize];
        s.input.read_exact(&mut head).map_err(|e| s.io(e))?;
        s.input
            .seek_relative(-(peek_len as i64))
            .map_err(|e| s.io(e))?;
        s.pos = saved;
        let (segments, map_len) = sparse::pax_10_map(&head, 1_000_000).map_err(bad)?;
        if map_len > data_size {
            return Err(bad(format!(
                "sparse map of {map_len} bytes is longer than the entry data"
            )));
        }
        return Ok((
            SparseMap {
                segments,
                real_size,
            },
            map_len,
        ));
    }
    if let Some(map) = get(b"GNU.sparse.map") {
        // Format 0.1.
        let segments = sparse::pax_01_map(map).map_err(bad)?;
        return Ok((
            SparseMap {
                segments,
                real_size,
            },
            0,
        ));
    }
    // Format 0.0: repeated offset/numbytes records, in order.
    let mut segments = Vec::new();
    let mut pending_offset = None;
    for (key, value) in records {
        let parse = || {
            std::str::from_utf8(value)
                .ok()
                .and_then(|t| t.parse::<u64>().ok())
                .ok_or_else(|| bad(format!("{} is not a number", String::from_utf8_lossy(key))))
        };
        match key.as_slice() {
            b"GNU.sparse.offset" => pending_offset = Some(parse()?),
            b"GNU.sparse.numbytes" => {
                let start = pending_offset
                    .take()
                    .ok_or_else(|| bad("numbytes without offset".into()))?;
                segments.push((start, parse()?));
            }
            _ => {}
        }
    }
    Ok((
        SparseMap {
            segments,
            real_size,
        },
        0,
    ))
}
