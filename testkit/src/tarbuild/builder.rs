//! The archive writer: turns [`Entry`] values and raw blocks into tar bytes.

use std::io::Write;

use super::entry::{Entry, Kind, NameEncoding};
use super::header::{BLOCK, Header, Magic, field, fits_octal};
use super::pax::{self, PaxRecord};
use super::sparse::SparseFormat;

/// The width of the `name` and `linkname` fields.
const NAME_WIDTH: usize = 100;
/// The width of the ustar `prefix` field.
const PREFIX_WIDTH: usize = 155;

/// Writes a tar stream entry by entry.
///
/// Every header field is chosen by the [`Entry`]; the builder adds only what the chosen
/// encoding requires (PAX `x` headers, GNU `L`/`K` members, sparse maps and padding).
/// Writes go straight to the inner writer, so large archives need not fit in memory.
/// Errors of the inner writer panic, because this is test code writing to memory or to a
/// temporary file.
#[derive(Debug)]
pub struct Builder<W: Write = Vec<u8>> {
    out: W,
    written: u64,
}

impl Builder<Vec<u8>> {
    /// Creates a builder that writes into memory.
    pub fn new() -> Self {
        Builder {
            out: Vec::new(),
            written: 0,
        }
    }
}

impl Default for Builder<Vec<u8>> {
    fn default() -> Self {
        Builder::new()
    }
}

impl<W: Write> Builder<W> {
    /// Creates a builder that writes into `out`.
    pub fn from_writer(out: W) -> Self {
        Builder { out, written: 0 }
    }

    /// Returns the number of bytes written so far.
    pub fn position(&self) -> u64 {
        self.written
    }

    /// Appends bytes exactly as given, with no padding.
    pub fn append_raw(&mut self, bytes: &[u8]) -> &mut Self {
        self.out
            .write_all(bytes)
            .expect("tar builder: the inner writer failed");
        self.written += bytes.len() as u64;
        self
    }

    /// Appends a PAX global header (typeflag `g`) holding `records`.
    pub fn append_pax_global(&mut self, records: &[PaxRecord]) -> &mut Self {
        self.append_pax_header(b'g', b"pax_global_header", records)
    }

    /// Appends a PAX extended header (typeflag `x`) holding `records`, which applies to
    /// the next member. [`Builder::append`] writes one itself when an entry needs it.
    pub fn append_pax_extended(&mut self, name: &[u8], records: &[PaxRecord]) -> &mut Self {
        self.append_pax_header(b'x', name, records)
    }

    /// Appends a GNU long-name member (`././@LongLink`, typeflag `L` for a path or `K` for
    /// a link target) holding `value` and a terminating NUL.
    pub fn append_gnu_long(&mut self, typeflag: u8, value: &[u8]) -> &mut Self {
        let mut data = value.to_vec();
        data.push(0);
        let mut header = Header::new(Magic::OldGnu, typeflag);
        header.put_bytes(field::NAME, b"././@LongLink");
        header.put_number(field::MODE, 0o644);
        header.put_number(field::UID, 0);
        header.put_number(field::GID, 0);
        header.put_number(field::SIZE, data.len() as u64);
        header.put_number(field::MTIME, 0);
        header.put_bytes(field::UNAME, b"root");
        header.put_bytes(field::GNAME, b"root");
        self.append_raw(&header.finish());
        self.append_padded(&data)
    }

    /// Appends one member with whatever auxiliary headers its encoding choices need.
    ///
    /// # Panics
    ///
    /// When the entry requests an impossible encoding: [`NameEncoding::UstarPrefix`] for a
    /// path with no valid split, or for a dialect without a `prefix` field.
    pub fn append(&mut self, entry: &Entry) -> &mut Self {
        let real_path = entry.path.as_slice();
        let header_path = match &entry.sparse {
            Some(sparse) => sparse.header_name(real_path),
            None => real_path.to_vec(),
        };

        let mut records = entry.pax.clone();
        if let Some(sparse) = &entry.sparse {
            records.extend(sparse.pax_records(real_path));
        }

        let path_fields = self.place_path(&header_path, entry, &mut records);
        let link_field = self.place_link(entry, &mut records);
        let size = stored_size(entry);
        let numbers = [
            ("uid", entry.uid, field::UID.1),
            ("gid", entry.gid, field::GID.1),
            ("size", size, field::SIZE.1),
            ("mtime", entry.mtime, field::MTIME.1),
        ];
        // V7 headers cannot hold base-256, so large numbers go to PAX records there.
        if entry.magic == Magic::V7 {
            for (key, value, width) in numbers {
                if !fits_octal(value, width) {
                    records.push(PaxRecord::new(key, value.to_string()));
                }
            }
        }

        if !records.is_empty() {
            let mut pax_name = b"PaxHeaders.0/".to_vec();
            let base = header_path
                .split(|&byte| byte == b'/')
                .rfind(|part| !part.is_empty())
                .unwrap_or(b"entry");
            pax_name.extend_from_slice(base);
            self.append_pax_extended(&pax_name, &records);
        }

        let typeflag = match (&entry.sparse, entry.kind) {
            (Some(sparse), _) if sparse.format == SparseFormat::OldGnu => b'S',
            (_, kind) => kind.typeflag(),
        };
        let mut header = Header::new(entry.magic, typeflag);
        header.put_bytes(field::NAME, &path_fields.name);
        if let Some(prefix) = &path_fields.prefix {
            header.put_bytes(field::PREFIX, prefix);
        }
        header.put_bytes(field::LINKNAME, &link_field);
        header.put_number(field::MODE, u64::from(entry.mode));
        header.put_number(field::UID, entry.uid);
        header.put_number(field::GID, entry.gid);
        header.put_number(field::SIZE, size);
        header.put_number(field::MTIME, entry.mtime);
        if entry.magic != Magic::V7 {
            header.put_bytes(field::UNAME, entry.uname.as_bytes());
            header.put_bytes(field::GNAME, entry.gname.as_bytes());
            if matches!(entry.kind, Kind::CharDevice | Kind::BlockDevice) {
                header.put_number(field::DEVMAJOR, u64::from(entry.dev_major));
                header.put_number(field::DEVMINOR, u64::from(entry.dev_minor));
            }
        }

        let mut extension_blocks = Vec::new();
        if let Some(sparse) = &entry.sparse
            && sparse.format == SparseFormat::OldGnu
        {
            extension_blocks = sparse.fill_old_gnu(&mut header);
        }
        self.append_raw(&header.finish());
        for block in &extension_blocks {
            self.append_raw(block);
        }

        if let Some(sparse) = &entry.sparse
            && sparse.format == SparseFormat::Pax10
        {
            self.append_raw(&sparse.pax10_map_prefix());
        }
        if entry.kind.has_data() {
            self.append_padded(&entry.data);
        }
        self
    }

    /// Appends the two zero blocks that end an archive and returns the writer.
    pub fn finish(self) -> W {
        self.finish_with_zero_blocks(2)
    }

    /// Returns the writer without any end-of-archive blocks (a truncated archive, as some
    /// writers produce).
    pub fn finish_without_terminator(self) -> W {
        self.finish_with_zero_blocks(0)
    }

    /// Appends `count` zero blocks and returns the writer.
    pub fn finish_with_zero_blocks(mut self, count: usize) -> W {
        for _ in 0..count {
            self.append_raw(&[0u8; BLOCK]);
        }
        self.out
            .flush()
            .expect("tar builder: flushing the inner writer failed");
        self.out
    }

    fn append_padded(&mut self, data: &[u8]) -> &mut Self {
        self.append_raw(data);
        let padding = (BLOCK - data.len() % BLOCK) % BLOCK;
        self.append_raw(&[0u8; BLOCK][..padding])
    }

    fn append_pax_header(&mut self, typeflag: u8, name: &[u8], records: &[PaxRecord]) -> &mut Self {
        let data = pax::encode(records);
        let mut header = Header::new(Magic::USTAR, typeflag);
        header.put_bytes(field::NAME, name);
        header.put_number(field::MODE, 0o644);
        header.put_number(field::UID, 0);
        header.put_number(field::GID, 0);
        header.put_number(field::SIZE, data.len() as u64);
        header.put_number(field::MTIME, 0);
        self.append_raw(&header.finish());
        self.append_padded(&data)
    }

    /// Decides the `name`/`prefix` fields for `path`, adding a PAX record or writing a GNU
    /// `L` member when the encoding calls for one.
    fn place_path(
        &mut self,
        path: &[u8],
        entry: &Entry,
        records: &mut Vec<PaxRecord>,
    ) -> PathFields {
        let truncated = path[..path.len().min(NAME_WIDTH)].to_vec();
        match entry.path_encoding {
            NameEncoding::HeaderOnly => PathFields::name(truncated),
            NameEncoding::UstarPrefix => {
                assert!(
                    entry.magic.has_prefix(),
                    "ustar prefix needs the ustar dialect"
                );
                let (prefix, name) = split_ustar(path).unwrap_or_else(|| {
                    panic!(
                        "no ustar prefix split for {:?}",
                        String::from_utf8_lossy(path)
                    )
                });
                PathFields {
                    name,
                    prefix: Some(prefix),
                }
            }
            NameEncoding::Pax => {
                records.push(PaxRecord::new("path", path));
                PathFields::name(truncated)
            }
            NameEncoding::GnuLong => {
                self.append_gnu_long(b'L', path);
                PathFields::name(truncated)
            }
            NameEncoding::Auto => {
                if path.len() <= NAME_WIDTH {
                    PathFields::name(path.to_vec())
                } else if let Some((prefix, name)) =
                    split_ustar(path).filter(|_| entry.magic.has_prefix())
                {
                    PathFields {
                        name,
                        prefix: Some(prefix),
                    }
                } else {
                    records.push(PaxRecord::new("path", path));
                    PathFields::name(truncated)
                }
            }
        }
    }

    /// Decides the `linkname` field, adding a PAX record or a GNU `K` member when needed.
    fn place_link(&mut self, entry: &Entry, records: &mut Vec<PaxRecord>) -> Vec<u8> {
        let link = entry.link.as_slice();
        if link.is_empty() {
            return Vec::new();
        }
        let truncated = link[..link.len().min(NAME_WIDTH)].to_vec();
        match entry.link_encoding {
            NameEncoding::HeaderOnly => truncated,
            NameEncoding::UstarPrefix => panic!("link targets have no ustar prefix field"),
            NameEncoding::Pax => {
                records.push(PaxRecord::new("linkpath", link));
                Vec::new()
            }
            NameEncoding::GnuLong => {
                self.append_gnu_long(b'K', link);
                truncated
            }
            NameEncoding::Auto if link.len() <= NAME_WIDTH => link.to_vec(),
            NameEncoding::Auto => {
                records.push(PaxRecord::new("linkpath", link));
                Vec::new()
            }
        }
    }
}

/// The `name` and optional `prefix` field contents of a header.
struct PathFields {
    name: Vec<u8>,
    prefix: Option<Vec<u8>>,
}

impl PathFields {
    fn name(name: Vec<u8>) -> Self {
        PathFields { name, prefix: None }
    }
}

/// Splits `path` at the last `/` that leaves at most 155 bytes before it and at most 100
/// non-empty bytes after it (the slash itself is dropped, as POSIX ustar specifies).
pub fn split_ustar(path: &[u8]) -> Option<(Vec<u8>, Vec<u8>)> {
    // A directory's trailing slash belongs to the name part.
    let search_end = if path.ends_with(b"/") {
        path.len() - 1
    } else {
        path.len()
    };
    (0..search_end)
        .rev()
        .filter(|&index| path[index] == b'/')
        .find(|&index| index <= PREFIX_WIDTH && path.len() - index - 1 <= NAME_WIDTH && index > 0)
        .map(|index| (path[..index].to_vec(), path[index + 1..].to_vec()))
}

/// Returns the value of the header `size` field: data bytes, plus the map for PAX 1.0 sparse files.
fn stored_size(entry: &Entry) -> u64 {
    if !entry.kind.has_data() {
        return 0;
    }
    let data = entry.data.len() as u64;
    match &entry.sparse {
        Some(sparse) if sparse.format == SparseFormat::Pax10 => {
            data + sparse.pax10_map_prefix().len() as u64
        }
        _ => data,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ustar_split_prefers_longest_prefix() {
        let path = format!("{}/{}", "p".repeat(70), "n".repeat(60));
        let (prefix, name) = split_ustar(path.as_bytes()).unwrap();
        assert_eq!(prefix.len(), 70);
        assert_eq!(name.len(), 60);
    }

    #[test]
    fn ustar_split_fails_for_long_final_component() {
        let path = format!("dir/{}", "n".repeat(101));
        assert!(split_ustar(path.as_bytes()).is_none());
    }

    #[test]
    fn data_is_padded_to_block() {
        let mut builder = Builder::new();
        builder.append(&Entry::file("a", b"xyz"));
        let bytes = builder.finish();
        // Header, one data block, two zero blocks.
        assert_eq!(bytes.len(), 4 * BLOCK);
        assert_eq!(&bytes[BLOCK..BLOCK + 3], b"xyz");
    }
}
