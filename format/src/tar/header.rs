//! Decoding of one 512-byte tar header block.
//!
//! Field layout (POSIX ustar; GNU reuses the `prefix` area for times and sparse data):
//!
//! ```text
//!   0 name[100]   100 mode[8]   108 uid[8]   116 gid[8]   124 size[12]   136 mtime[12]
//! 148 chksum[8]   156 typeflag  157 linkname[100]   257 magic[6]   263 version[2]
//! 265 uname[32]   297 gname[32] 329 devmajor[8]     337 devminor[8] 345 prefix[155]
//! GNU: 345 atime[12] 357 ctime[12] 369 offset[12] 381 longnames[4] 386 sparse[4 x 24]
//!      482 isextended  483 realsize[12]
//! ```

/// Which header dialect a block uses, from its magic and version fields.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Dialect {
    /// `ustar\0`: POSIX ustar or PAX. The `prefix` field extends the name whatever the version
    /// bytes hold, as GNU tar reads it.
    Ustar,
    /// `ustar  \0`: GNU tar's own format.
    Gnu,
    /// Anything else: original Unix V7 tar.
    V7,
}

/// The entry type named by the typeflag byte.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EntryType {
    /// `0`, `\0` (old regular file) or `7` (contiguous file, extracted as regular).
    Regular,
    /// `1`.
    Hardlink,
    /// `2`.
    Symlink,
    /// `3`.
    Char,
    /// `4`.
    Block,
    /// `5`.
    Directory,
    /// `6`.
    Fifo,
    /// `x` (or Solaris `X`): PAX extended header for the next entry.
    PaxLocal,
    /// `g`: PAX global header.
    PaxGlobal,
    /// `L`: GNU long name for the next entry.
    GnuLongName,
    /// `K`: GNU long link target for the next entry.
    GnuLongLink,
    /// `S`: old GNU sparse file.
    GnuSparse,
    /// `D`: GNU dump directory (a directory whose data lists its contents).
    GnuDumpDir,
    /// `V`: GNU volume label, ignored on extraction.
    GnuVolume,
    /// Anything else.
    Other(u8),
}

impl EntryType {
    /// Decodes a typeflag byte.
    pub fn from_flag(flag: u8) -> Self {
        match flag {
            b'0' | 0 | b'7' => EntryType::Regular,
            b'1' => EntryType::Hardlink,
            b'2' => EntryType::Symlink,
            b'3' => EntryType::Char,
            b'4' => EntryType::Block,
            b'5' => EntryType::Directory,
            b'6' => EntryType::Fifo,
            b'x' | b'X' => EntryType::PaxLocal,
            b'g' => EntryType::PaxGlobal,
            b'L' => EntryType::GnuLongName,
            b'K' => EntryType::GnuLongLink,
            b'S' => EntryType::GnuSparse,
            b'D' => EntryType::GnuDumpDir,
            b'V' => EntryType::GnuVolume,
            other => EntryType::Other(other),
        }
    }

    /// A short human name, for error messages.
    pub fn describe(self) -> &'static str {
        match self {
            EntryType::Regular => "regular file",
            EntryType::Hardlink => "hard link",
            EntryType::Symlink => "symbolic link",
            EntryType::Char => "character device",
            EntryType::Block => "block device",
            EntryType::Directory => "directory",
            EntryType::Fifo => "named pipe",
            EntryType::PaxLocal => "PAX extended header",
            EntryType::PaxGlobal => "PAX global header",
            EntryType::GnuLongName => "GNU long name",
            EntryType::GnuLongLink => "GNU long link",
            EntryType::GnuSparse => "GNU sparse file",
            EntryType::GnuDumpDir => "GNU dump directory",
            EntryType::GnuVolume => "GNU volume label",
            EntryType::Other(b'M') => "GNU multi-volume continuation",
            EntryType::Other(b'N') => "GNU old long name",
            EntryType::Other(b'A') => "Solaris ACL",
            EntryType::Other(b'E') => "Solaris extended attribute",
            EntryType::Other(_) => "unknown type",
        }
    }
}

/// A decoded header block. Numeric fields that fail to parse make the whole block invalid.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Header {
    /// Name, with the ustar prefix joined in when present.
    pub name: Vec<u8>,
    /// Raw typeflag byte.
    pub typeflag: u8,
    /// Mode field (may hold file-type bits).
    pub mode: u32,
    /// Owner uid.
    pub uid: u64,
    /// Owner gid.
    pub gid: u64,
    /// Data size in the archive.
    pub size: u64,
    /// Modification time in seconds.
    pub mtime: i64,
    /// Link target.
    pub linkname: Vec<u8>,
    /// Owner user name.
    pub uname: Vec<u8>,
    /// Owner group name.
    pub gname: Vec<u8>,
    /// Device major number.
    pub devmajor: u32,
    /// Device minor number.
    pub devminor: u32,
    /// Header dialect.
    pub dialect: Dialect,
}

/// Whether a block is all zeros (an end-of-archive marker).
pub fn is_zero_block(block: &[u8; 512]) -> bool {
    block.iter().all(|&b| b == 0)
}

/// Cuts a NUL-terminated field.
pub fn field_str(field: &[u8]) -> &[u8] {
    match field.iter().position(|&b| b == 0) {
        Some(end) => &field[..end],
        None => field,
    }
}

/// Parses a numeric field: octal ASCII (spaces and NULs around it allowed) or GNU base-256 when
/// the high bit of the first byte is set. Returns `None` when the field is not a number.
pub fn parse_numeric(field: &[u8]) -> Option<i128> {
    if field.is_empty() {
        return Some(0);
    }
    if field[0] & 0x80 != 0 {
        // Base-256: big-endian two's complement; 0x80 marks positive, 0xff negative values.
        let negative = field[0] & 0x40 != 0;
        let mut value: i128 = if negative { -1 } else { 0 };
        let first = if negative { field[0] } else { field[0] & 0x7f };
        for (i, &byte) in std::iter::once(&first).chain(&field[1..]).enumerate() {
            if i >= 15 && value.unsigned_abs() > (1u128 << 100) {
                return None;
            }
            value = (value << 8) | i128::from(byte);
        }
        return Some(value);
    }
    let text = field_str(field);
    let trimmed: &[u8] = {
        let start = text.iter().position(|&b| b != b' ').unwrap_or(text.len());
        let end = text
            .iter()
            .rposition(|&b| b != b' ')
            .map_or(start, |i| i + 1);
        &text[start..end.max(start)]
    };
    if trimmed.is_empty() {
        return Some(0);
    }
    let mut value: i128 = 0;
    for &b in trimmed {
        if !(b'0'..=b'7').contains(&b) {
            return None;
        }
        value = value.checked_mul(8)?.checked_add(i128::from(b - b'0'))?;
    }
    Some(value)
}

/// Verifies a header checksum: the sum of all bytes with the checksum field read as spaces,
/// as unsigned or (for old tar implementations) signed bytes.
pub fn checksum_ok(block: &[u8; 512]) -> bool {
    let Some(stored) = parse_numeric(&block[148..156]) else {
        return false;
    };
    let mut unsigned: i128 = 0;
    let mut signed: i128 = 0;
    for (i, &b) in block.iter().enumerate() {
        let b = if (148..156).contains(&i) { b' ' } else { b };
        unsigned += i128::from(b);
        signed += i128::from(b as i8);
    }
    stored == unsigned || stored == signed
}

/// Computes and stores the checksum of a header block in place.
pub fn set_checksum(block: &mut [u8; 512]) {
    block[148..156].fill(b' ');
    let sum: u32 = block.iter().map(|&b| u32::from(b)).sum();
    let text = format!("{sum:06o}\0 ");
    block[148..156].copy_from_slice(text.as_bytes());
}

/// Decodes a header block. The caller has checked that it is not a zero block.
pub fn decode(block: &[u8; 512]) -> Result<Header, String> {
    if !checksum_ok(block) {
        return Err(
            "header checksum does not match (the data is not a tar archive, or it is corrupt)"
                .into(),
        );
    }
    let dialect = match (&block[257..263], &block[263..265]) {
        (b"ustar\0", _) => Dialect::Ustar,
        (b"ustar ", b" \0") => Dialect::Gnu,
        _ => Dialect::V7,
    };
    let number = |range: std::ops::Range<usize>, what: &str| {
        parse_numeric(&block[range]).ok_or_else(|| format!("{what} field is not a number"))
    };
    let to_u64 = |value: i128, what: &str| {
        u64::try_from(value).map_err(|_| format!("{what} {value} is out of range"))
    };
    let to_u32 = |value: i128, what: &str| {
        u32::try_from(value).map_err(|_| format!("{what} {value} is out of range"))
    };

    let mut name = field_str(&block[0..100]).to_vec();
    if dialect == Dialect::Ustar {
        let prefix = field_str(&block[345..500]);
        if !prefix.is_empty() {
            let mut joined = prefix.to_vec();
            joined.push(b'/');
            joined.extend_from_slice(&name);
            name = joined;
        }
    }
    let (uname, gname, devmajor, devminor) = if dialect == Dialect::V7 {
        (Vec::new(), Vec::new(), 0, 0)
    } else {
        (
            field_str(&block[265..297]).to_vec(),
            field_str(&block[297..329]).to_vec(),
            to_u32(number(329..337, "devmajor")?, "devmajor")?,
            to_u32(number(337..345, "devminor")?, "devminor")?,
        )
    };
    Ok(Header {
        name,
        typeflag: block[156],
        mode: to_u32(number(100..108, "mode")?, "mode")?,
        uid: to_u64(number(108..116, "uid")?, "uid")?,
        gid: to_u64(number(116..124, "gid")?, "gid")?,
        size: to_u64(number(124..136, "size")?, "size")?,
        mtime: i64::try_from(number(136..148, "mtime")?)
            .map_err(|_| "mtime is out of range".to_string())?,
        linkname: field_str(&block[157..257]).to_vec(),
        uname,
        gname,
        devmajor,
        devminor,
        dialect,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn block_with(name: &[u8], prefix: &[u8], magic: &[u8; 6], version: &[u8; 2]) -> [u8; 512] {
        let mut b = [0u8; 512];
        b[..name.len()].copy_from_slice(name);
        b[100..108].copy_from_slice(b"0000644\0");
        b[108..116].copy_from_slice(b"0000000\0");
        b[116..124].copy_from_slice(b"0000000\0");
        b[124..136].copy_from_slice(b"00000000000\0");
        b[136..148].copy_from_slice(b"00000000000\0");
        b[156] = b'0';
        b[257..263].copy_from_slice(magic);
        b[263..265].copy_from_slice(version);
        b[345..345 + prefix.len()].copy_from_slice(prefix);
        set_checksum(&mut b);
        b
    }

    #[test]
    fn ustar_prefix_is_joined_whatever_the_version_bytes() {
        for version in [b"00", b"\0\0", b"  "] {
            let block = block_with(b"name.rb", b"some/long/prefix", b"ustar\0", version);
            let header = decode(&block).unwrap();
            assert_eq!(
                header.name, b"some/long/prefix/name.rb",
                "version {version:?}"
            );
        }
    }

    #[test]
    fn gnu_header_ignores_prefix_area() {
        let block = block_with(b"file", b"", b"ustar ", b" \0");
        let header = decode(&block).unwrap();
        assert_eq!(header.dialect, Dialect::Gnu);
        assert_eq!(header.name, b"file");
    }

    #[test]
    fn bad_checksum_is_rejected() {
        let mut block = block_with(b"file", b"", b"ustar\0", b"00");
        block[0] = b'g';
        assert!(decode(&block).is_err());
    }

    #[test]
    fn base256_numbers_are_decoded() {
        let mut field = [0u8; 8];
        field[0] = 0x80;
        field[4..8].copy_from_slice(&0x1234_5678u32.to_be_bytes());
        assert_eq!(parse_numeric(&field), Some(0x1234_5678));
        let negative = [0xffu8; 12];
        assert_eq!(parse_numeric(&negative), Some(-1));
    }

    #[test]
    fn octal_with_spaces_is_decoded() {
        assert_eq!(parse_numeric(b"  755 \0"), Some(0o755));
        assert_eq!(parse_numeric(b"\0\0\0\0"), Some(0));
        assert_eq!(parse_numeric(b"12a"), None);
    }
}
