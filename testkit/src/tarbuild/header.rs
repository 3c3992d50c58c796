//! The 512-byte tar header block and its numeric field encodings.
//!
//! Field layout shared by POSIX ustar and old GNU headers (byte offsets, widths):
//!
//! ```text
//!   0 name[100]      100 mode[8]     108 uid[8]       116 gid[8]
//! 124 size[12]       136 mtime[12]   148 chksum[8]    156 typeflag[1]
//! 157 linkname[100]  257 magic[6]    263 version[2]   265 uname[32]
//! 297 gname[32]      329 devmajor[8] 337 devminor[8]
//! ustar:   345 prefix[155]  (to 500)
//! old GNU: 345 atime[12] 357 ctime[12] 369 offset[12] 381 longnames[4] 385 unused[1]
//!          386 sparse[4] of {offset[12], numbytes[12]}  482 isextended[1]  483 realsize[12]
//! ```
//!
//! Numbers are octal ASCII, zero-padded, ending in NUL (GNU tar's style). A value too large
//! for its octal field is written in GNU base-256: the first byte has its high bit set and
//! the remaining bytes hold the value big-endian.

/// The size of every tar block.
pub const BLOCK: usize = 512;

/// Offsets and widths of header fields, as `(offset, width)`.
pub(crate) mod field {
    pub const NAME: (usize, usize) = (0, 100);
    pub const MODE: (usize, usize) = (100, 8);
    pub const UID: (usize, usize) = (108, 8);
    pub const GID: (usize, usize) = (116, 8);
    pub const SIZE: (usize, usize) = (124, 12);
    pub const MTIME: (usize, usize) = (136, 12);
    pub const CHKSUM: (usize, usize) = (148, 8);
    pub const TYPEFLAG: usize = 156;
    pub const LINKNAME: (usize, usize) = (157, 100);
    pub const MAGIC: (usize, usize) = (257, 6);
    pub const VERSION: (usize, usize) = (263, 2);
    pub const UNAME: (usize, usize) = (265, 32);
    pub const GNAME: (usize, usize) = (297, 32);
    pub const DEVMAJOR: (usize, usize) = (329, 8);
    pub const DEVMINOR: (usize, usize) = (337, 8);
    pub const PREFIX: (usize, usize) = (345, 155);
    pub const GNU_SPARSE: usize = 386;
    pub const GNU_IS_EXTENDED: usize = 482;
    pub const GNU_REALSIZE: (usize, usize) = (483, 12);
}

/// The magic and version bytes at offset 257, which select the header dialect.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Magic {
    /// POSIX ustar: magic `ustar\0` followed by these two version bytes. The standard
    /// version is `00`; some writers put `\0\0` or two spaces there.
    Ustar {
        /// The two bytes at offset 263.
        version: [u8; 2],
    },
    /// Old GNU: `ustar ` then ` \0` (eight bytes `ustar  \0`). This dialect has no
    /// `prefix` field: offsets 345.. hold times and sparse data instead.
    OldGnu,
    /// Version 7 tar: no magic at all (all zero), and no uname, gname or device fields.
    V7,
}

impl Magic {
    /// POSIX ustar with version `00`.
    pub const USTAR: Magic = Magic::Ustar { version: *b"00" };

    /// Returns true when the dialect has the 155-byte `prefix` field.
    pub fn has_prefix(self) -> bool {
        matches!(self, Magic::Ustar { .. })
    }
}

/// One header block under construction.
#[derive(Clone)]
pub struct Header {
    bytes: [u8; BLOCK],
}

impl std::fmt::Debug for Header {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Header")
            .field("name", &String::from_utf8_lossy(self.field(field::NAME)))
            .field("typeflag", &char::from(self.bytes[field::TYPEFLAG]))
            .finish_non_exhaustive()
    }
}

impl Header {
    /// Creates an all-zero header with the given dialect and type flag.
    pub fn new(magic: Magic, typeflag: u8) -> Self {
        let mut header = Header { bytes: [0; BLOCK] };
        header.bytes[field::TYPEFLAG] = typeflag;
        match magic {
            Magic::Ustar { version } => {
                header.put_bytes(field::MAGIC, b"ustar\0");
                header.put_bytes(field::VERSION, &version);
            }
            Magic::OldGnu => {
                header.put_bytes(field::MAGIC, b"ustar ");
                header.put_bytes(field::VERSION, b" \0");
            }
            Magic::V7 => {}
        }
        header
    }

    fn field(&self, (offset, width): (usize, usize)) -> &[u8] {
        &self.bytes[offset..offset + width]
    }

    /// Copies `value` into a field, truncating it to the field width. The rest stays NUL.
    pub fn put_bytes(&mut self, (offset, width): (usize, usize), value: &[u8]) {
        let count = value.len().min(width);
        self.bytes[offset..offset + width].fill(0);
        self.bytes[offset..offset + count].copy_from_slice(&value[..count]);
    }

    /// Writes a number in octal when it fits, otherwise in GNU base-256.
    pub fn put_number(&mut self, range: (usize, usize), value: u64) {
        let (offset, width) = range;
        let encoded = encode_number(value, width);
        self.bytes[offset..offset + width].copy_from_slice(&encoded);
    }

    /// Writes a number in base-256 even when octal would fit.
    pub fn put_base256(&mut self, (offset, width): (usize, usize), value: u64) {
        let encoded = encode_base256(value, width);
        self.bytes[offset..offset + width].copy_from_slice(&encoded);
    }

    /// Sets one raw byte, for layouts this type has no setter for.
    pub fn put_byte(&mut self, offset: usize, value: u8) {
        self.bytes[offset] = value;
    }

    /// Computes and stores the checksum, then returns the finished block.
    ///
    /// The checksum is the unsigned sum of all 512 bytes with the checksum field read as
    /// eight spaces, written as six octal digits, NUL, space (as GNU tar writes it).
    pub fn finish(mut self) -> [u8; BLOCK] {
        let (offset, width) = field::CHKSUM;
        self.bytes[offset..offset + width].fill(b' ');
        let sum: u32 = self.bytes.iter().map(|&byte| u32::from(byte)).sum();
        let text = format!("{sum:06o}\0 ");
        self.bytes[offset..offset + width].copy_from_slice(text.as_bytes());
        self.bytes
    }
}

/// Returns true when `value` fits the octal form of a field `width` bytes wide.
pub fn fits_octal(value: u64, width: usize) -> bool {
    let digits = width - 1;
    digits >= 22 || value < (1u64 << (3 * digits))
}

pub(crate) fn encode_number(value: u64, width: usize) -> Vec<u8> {
    if fits_octal(value, width) {
        let mut text = format!("{value:0digits$o}", digits = width - 1).into_bytes();
        text.push(0);
        text
    } else {
        encode_base256(value, width)
    }
}

fn encode_base256(value: u64, width: usize) -> Vec<u8> {
    let mut out = vec![0u8; width];
    let be = value.to_be_bytes();
    let count = be.len().min(width - 1);
    out[width - count..].copy_from_slice(&be[be.len() - count..]);
    out[0] |= 0x80;
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn octal_field_is_zero_padded_with_nul() {
        assert_eq!(encode_number(0o755, 8), b"0000755\0".to_vec());
    }

    #[test]
    fn large_uid_switches_to_base256() {
        // 2^21 does not fit 7 octal digits.
        let encoded = encode_number(1 << 21, 8);
        assert_eq!(encoded, vec![0x80, 0, 0, 0, 0, 0x20, 0, 0]);
    }

    #[test]
    fn checksum_matches_unsigned_sum() {
        let mut header = Header::new(Magic::USTAR, b'0');
        header.put_bytes(field::NAME, b"a");
        let block = header.finish();
        let mut copy = block;
        copy[148..156].fill(b' ');
        let sum: u32 = copy.iter().map(|&b| u32::from(b)).sum();
        let stored = std::str::from_utf8(&block[148..154]).unwrap();
        assert_eq!(u32::from_str_radix(stored, 8).unwrap(), sum);
        assert_eq!(&block[154..156], b"\0 ");
    }
}
