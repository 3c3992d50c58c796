//! Second pass of the writer: entries into members, then the TOC and the footer.

use std::collections::HashMap;
use std::io::{BufReader, Read, Seek, SeekFrom, Write};

use super::pipeline::{self, MemberCompressor, MemberId, MemberSink};
use super::plan::{self, Item, LandmarkKind};
use super::{BuildOptions, BuildOutput, Progress};
use crate::digest::{Digest, Hasher};
use crate::error::BuildError;
use crate::footer::{ZSTD_SKIPPABLE_MAGIC, gzip_footer, zstd_footer};
use crate::tar::encode::{HeaderSpec, encode};
use crate::tar::header::set_checksum;
use crate::tar::scan::{HeaderCopy, InputEntry, Kind, scan};
use crate::tar::{BLOCK, padded};
use crate::toc::{EntryKind, TOC_TAR_NAME, TOC_VERSION, Timestamp, Toc, TocEntry};
use crate::{Compression, LANDMARK_CONTENT};

struct Emitter<'a, R> {
    input: &'a mut BufReader<R>,
    entries: &'a [InputEntry],
    /// Entries written instead of the input entry of the same index.
    replaced: &'a HashMap<usize, InputEntry>,
    options: &'a BuildOptions,
    toc: Vec<TocEntry>,
    /// (TOC entry index, member holding its payload), resolved to offsets after writing.
    fixups: Vec<(usize, MemberId)>,
    last_uname: HashMap<u64, Vec<u8>>,
    last_gname: HashMap<u64, Vec<u8>>,
    progress: &'a mut dyn FnMut(Progress),
    done: u64,
    total: u64,
    sparse_expanded: usize,
}

fn typeflag(kind: Kind) -> u8 {
    match kind {
        Kind::Regular => b'0',
        Kind::Hardlink => b'1',
        Kind::Symlink => b'2',
        Kind::Char => b'3',
        Kind::Block => b'4',
        Kind::Directory => b'5',
        Kind::Fifo => b'6',
    }
}

fn entry_kind(kind: Kind) -> EntryKind {
    match kind {
        Kind::Regular => EntryKind::Reg,
        Kind::Hardlink => EntryKind::Hardlink,
        Kind::Symlink => EntryKind::Symlink,
        Kind::Char => EntryKind::Char,
        Kind::Block => EntryKind::Block,
        Kind::Directory => EntryKind::Dir,
        Kind::Fifo => EntryKind::Fifo,
    }
}

fn mod_time(name: &[u8], mtime: Timestamp) -> Result<Option<Timestamp>, BuildError> {
    if mtime.is_epoch() {
        return Ok(None);
    }
    if mtime.to_rfc3339().is_none() {
        return Err(BuildError::Unrepresentable {
            name: String::from_utf8_lossy(name).into_owned(),
            reason: format!(
                "modification time {mtime:?} is outside the years 0000-9999 that RFC 3339 can express"
            ),
        });
    }
    Ok(Some(mtime))
}

impl<R: Read + Seek> Emitter<'_, R> {
    fn read_at(&mut self, offset: u64, buf: &mut [u8]) -> std::io::Result<()> {
        self.input.seek(SeekFrom::Start(offset))?;
        self.input.read_exact(buf)
    }

    fn item(&mut self, sink: &mut MemberSink, item: &Item) -> Result<(), BuildError> {
        match item {
            Item::Input(index) => self.input_entry(sink, *index)?,
            Item::Landmark(kind) => self.landmark(sink, *kind)?,
        }
        sink.maybe_cut()
    }

    fn landmark(&mut self, sink: &mut MemberSink, kind: LandmarkKind) -> Result<(), BuildError> {
        let name = kind.name().as_bytes();
        sink.write(&encode(&HeaderSpec {
            name,
            typeflag: b'0',
            size: 1,
            ..HeaderSpec::default()
        }));
        let member = sink.start_member()?;
        sink.write(&[LANDMARK_CONTENT]);
        sink.write_zeros(BLOCK as usize - 1);
        let digest = Digest::of(&[LANDMARK_CONTENT]);
        let mut entry = TocEntry {
            kind: EntryKind::Reg,
            size: 1,
            digest: Some(digest),
            chunk_digest: Some(digest),
            ..TocEntry::default()
        };
        entry.set_raw_name(name);
        self.fixups.push((self.toc.len(), member));
        self.toc.push(entry);
        Ok(())
    }

    fn input_entry(&mut self, sink: &mut MemberSink, index: usize) -> Result<(), BuildError> {
        let (entries, replaced) = (self.entries, self.replaced);
        let entry = replaced.get(&index).unwrap_or(&entries[index]);
        let meta = &entry.meta;
        let name_text = || String::from_utf8_lossy(&meta.name).into_owned();
        match entry.copy {
            HeaderCopy::Verbatim | HeaderCopy::SetTypeflag(_) => {
                let len = (entry.header_end - entry.header_start) as usize;
                let mut header = vec![0u8; len];
                self.read_at(entry.header_start, &mut header)?;
                if let HeaderCopy::SetTypeflag(flag) = entry.copy {
                    let at = (entry.main_header - entry.header_start) as usize;
                    let block: &mut [u8; 512] =
                        (&mut header[at..at + 512]).try_into().map_err(|_| {
                            BuildError::Io(std::io::Error::other("main header out of range"))
                        })?;
                    block[156] = flag;
                    set_checksum(block);
                }
                sink.write(&header);
            }
            HeaderCopy::Reencode => {
                let size = if meta.kind == Kind::Regular {
                    meta.size
                } else {
                    0
                };
                sink.write(&encode(&HeaderSpec {
                    name: &meta.name,
                    link: &meta.link,
                    typeflag: typeflag(meta.kind),
                    mode: meta.mode,
                    uid: meta.uid,
                    gid: meta.gid,
                    uname: &meta.uname,
                    gname: &meta.gname,
                    mtime: meta.mtime,
                    size,
                    devmajor: meta.devmajor,
                    devminor: meta.devminor,
                    xattrs: &meta.xattrs,
                    extra_records: &meta.extra_records,
                }));
            }
        }

        let uid = u32::try_from(meta.uid).map_err(|_| BuildError::Unrepresentable {
            name: name_text(),
            reason: format!("uid {} does not fit 32 bits", meta.uid),
        })?;
        let gid = u32::try_from(meta.gid).map_err(|_| BuildError::Unrepresentable {
            name: name_text(),
            reason: format!("gid {} does not fit 32 bits", meta.gid),
        })?;
        let mut toc_entry = TocEntry {
            kind: entry_kind(meta.kind),
            mode: i64::from(meta.mode),
            uid,
            gid,
            mod_time: mod_time(&meta.name, meta.mtime)?,
            ..TocEntry::default()
        };
        toc_entry.set_raw_name(&meta.name);
        if matches!(meta.kind, Kind::Symlink | Kind::Hardlink) {
            toc_entry.set_raw_link_name(&meta.link);
        }
        if matches!(meta.kind, Kind::Char | Kind::Block) {
            toc_entry.dev_major = meta.devmajor;
            toc_entry.dev_minor = meta.devminor;
        }
        // Like the reference writer, names are written only when they change for an id.
        if self.last_uname.get(&meta.uid) != Some(&meta.uname) {
            toc_entry.user_name = String::from_utf8_lossy(&meta.uname).into_owned();
            self.last_uname.insert(meta.uid, meta.uname.clone());
        }
        if self.last_gname.get(&meta.gid) != Some(&meta.gname) {
            toc_entry.group_name = String::from_utf8_lossy(&meta.gname).into_owned();
            self.last_gname.insert(meta.gid, meta.gname.clone());
        }
        for (name, value) in &meta.xattrs {
            toc_entry
                .xattrs
                .insert(String::from_utf8_lossy(name).into_owned(), value.clone());
        }
        if entry.sparse.is_some() {
            self.sparse_expanded += 1;
        }

        if meta.kind != Kind::Regular {
            self.toc.push(toc_entry);
            return Ok(());
        }
        if meta.size == 0 {
            toc_entry.digest = Some(Digest::EMPTY);
            self.toc.push(toc_entry);
            return Ok(());
        }
        self.payload(sink, entry, toc_entry)
    }

    fn payload(
        &mut self,
        sink: &mut MemberSink,
        entry: &InputEntry,
        mut reg: TocEntry,
    ) -> Result<(), BuildError> {
        let size = entry.meta.size;
        let chunk_size = self.options.chunk_size;
        reg.size = size;
        let reg_index = self.toc.len();
        self.toc.push(reg);
        let mut file_hash = (size > chunk_size).then(Hasher::new);
        let mut written = 0u64;
        while written < size {
            let n = chunk_size.min(size - written);
            let member = sink.start_member()?;
            let data_offset = entry.data_offset;
            let sparse = entry.sparse.clone();
            let input = &mut *self.input;
            let chunk = sink.write_with(n as usize, |buf| -> std::io::Result<()> {
                match &sparse {
                    None => {
                        input.seek(SeekFrom::Start(data_offset + written))?;
                        input.read_exact(buf)
                    }
                    Some(map) => map.fill(written, buf, |stored, dest| {
                        input.seek(SeekFrom::Start(data_offset + stored))?;
                        input.read_exact(dest)
                    }),
                }
            })?;
            let chunk_digest = Digest::of(chunk);
            if let Some(hash) = file_hash.as_mut() {
                hash.update(chunk);
            }
            let chunk_entry_index = if written == 0 {
                reg_index
            } else {
                let chunk_entry = TocEntry {
                    name: self.toc[reg_index].name.clone(),
                    name_bytes: self.toc[reg_index].name_bytes.clone(),
                    kind: EntryKind::Chunk,
                    chunk_offset: written,
                    ..TocEntry::default()
                };
                self.toc.push(chunk_entry);
                self.toc.len() - 1
            };
            let toc_chunk = &mut self.toc[chunk_entry_index];
            toc_chunk.chunk_digest = Some(chunk_digest);
            // The last chunk's size is omitted unless it is a whole chunk, as the reference writes it.
            if size - written >= chunk_size {
                toc_chunk.chunk_size = chunk_size;
            }
            self.fixups.push((chunk_entry_index, member));
            written += n;
            self.done += n;
            (self.progress)(Progress {
                done: self.done,
                total: self.total,
            });
        }
        self.toc[reg_index].digest = Some(match file_hash {
            Some(hash) => hash.finish(),
            None => self.toc[reg_index].chunk_digest.unwrap_or(Digest::EMPTY),
        });
        let padding = padded(size) - size;
        sink.write_zeros(padding as usize);
        Ok(())
    }
}

/// Runs both passes. Options are already validated.
pub(super) fn build<R, W>(
    input: R,
    out: W,
    options: &BuildOptions,
    progress: &mut dyn FnMut(Progress),
) -> Result<BuildOutput, BuildError>
where
    R: Read + Seek,
    W: Write + Send,
{
    let mut input = BufReader::with_capacity(256 * 1024, input);
    let scanned = scan(&mut input, &options.limits)?;
    let plan = plan::plan(&scanned.entries, &options.prioritized);
    let total: u64 = plan
        .items
        .iter()
        .filter_map(|item| match item {
            Item::Input(i) => {
                let entry = plan.entry(&scanned.entries, *i);
                (entry.meta.kind == Kind::Regular).then_some(entry.meta.size)
            }
            _ => None,
        })
        .sum();
    let member_cap = options.chunk_size.clamp(64 << 10, 4 << 20) as usize;

    let (emitted, produced, written) = pipeline::run(
        out,
        options.threads,
        options.compression,
        options.level,
        member_cap,
        |sink| {
            let mut emitter = Emitter {
                input: &mut input,
                entries: &scanned.entries,
                replaced: &plan.replaced,
                options,
                toc: Vec::with_capacity(scanned.entries.len() + 8),
                fixups: Vec::new(),
                last_uname: HashMap::new(),
                last_gname: HashMap::new(),
                progress,
                done: 0,
                total,
                sparse_expanded: 0,
            };
            for item in &plan.items {
                emitter.item(sink, item)?;
            }
            if options.compression == Compression::Zstd {
                // zstd:chunked keeps the TOC outside the tar stream; end the tar here so legacy
                // readers see a complete archive.
                sink.start_member()?;
                sink.write_zeros(2 * BLOCK as usize);
            }
            Ok((emitter.toc, emitter.fixups, emitter.sparse_expanded))
        },
    )?;
    let (mut toc_entries, fixups, sparse_expanded) = emitted;
    for (entry, member) in fixups {
        toc_entries[entry].offset = written.member_offsets[member];
    }
    let entries_written = plan.items.len() - 1;
    let toc = Toc {
        version: TOC_VERSION,
        entries: toc_entries,
    };
    let json = toc.to_json()?;
    let toc_digest = Digest::of(&json);

    let mut tail = Tail {
        out: written.out,
        hasher: written.hasher,
        len: written.len,
    };
    let mut uncompressed = produced.uncompressed;
    let mut uncompressed_len = produced.uncompressed_len;
    let mut compressor = MemberCompressor::new(options.compression, options.level)?;
    let toc_offset;
    match options.compression {
        Compression::Gzip => {
            let mut member = encode(&HeaderSpec {
                name: TOC_TAR_NAME.as_bytes(),
                typeflag: b'0',
                size: json.len() as u64,
                ..HeaderSpec::default()
            });
            let header_len = member.len();
            member.extend_from_slice(&json);
            member.resize(
                header_len + padded(json.len() as u64) as usize + 2 * BLOCK as usize,
                0,
            );
            uncompressed.update(&member);
            uncompressed_len += member.len() as u64;
            toc_offset = tail.len;
            tail.write(&compressor.compress(&member)?)?;
            tail.write(&gzip_footer(toc_offset))?;
        }
        Compression::Zstd => {
            let frame = compressor.compress(&json)?;
            let frame_len =
                u32::try_from(frame.len()).map_err(|_| BuildError::Unrepresentable {
                    name: TOC_TAR_NAME.into(),
                    reason: "compressed TOC is larger than 4 GiB".into(),
                })?;
            tail.write(&ZSTD_SKIPPABLE_MAGIC)?;
            tail.write(&frame_len.to_le_bytes())?;
            toc_offset = tail.len;
            tail.write(&frame)?;
            tail.write(&zstd_footer(
                toc_offset,
                frame.len() as u64,
                json.len() as u64,
            ))?;
        }
    }
    tail.out.flush()?;
    let (blob_digest, blob_len) = (tail.hasher.finish(), tail.len);

    Ok(BuildOutput {
        toc_digest,
        diff_id: uncompressed.finish(),
        uncompressed_size: uncompressed_len,
        blob_digest,
        blob_size: blob_len,
        toc_offset,
        toc_entries: toc.entries.len(),
        entries: entries_written,
        duplicates_dropped: plan.duplicates_dropped,
        prioritized_found: plan.prioritized_found,
        prioritized_missing: plan
            .prioritized_missing
            .iter()
            .map(|p| String::from_utf8_lossy(p).into_owned())
            .collect(),
        sparse_expanded,
        dangling_links: plan
            .dangling_links
            .iter()
            .map(|p| String::from_utf8_lossy(p).into_owned())
            .collect(),
    })
}

/// The end of the blob: written after the pipeline, still hashed and counted.
struct Tail<W> {
    out: W,
    hasher: Hasher,
    len: u64,
}

impl<W: Write> Tail<W> {
    fn write(&mut self, bytes: &[u8]) -> std::io::Result<()> {
        self.out.write_all(bytes)?;
        self.hasher.update(bytes);
        self.len += bytes.len() as u64;
        Ok(())
    }
}
