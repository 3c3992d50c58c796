//! The description of one archive member, independent of how it is encoded.

use super::header::Magic;
use super::pax::{PaxRecord, format_time};
use super::sparse::{Sparse, SparseFormat};

/// The type of a member, and so its typeflag byte.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    /// Regular file, typeflag `0`.
    Regular,
    /// Regular file with the legacy (V7) typeflag NUL.
    RegularLegacy,
    /// Contiguous file, typeflag `7`; readers treat it as a regular file.
    Contiguous,
    /// Hard link to the member named by the link target, typeflag `1`.
    Hardlink,
    /// Symbolic link, typeflag `2`.
    Symlink,
    /// Character device, typeflag `3`.
    CharDevice,
    /// Block device, typeflag `4`.
    BlockDevice,
    /// Directory, typeflag `5`.
    Directory,
    /// Named pipe, typeflag `6`.
    Fifo,
}

impl Kind {
    /// Returns the typeflag byte at offset 156.
    pub fn typeflag(self) -> u8 {
        match self {
            Kind::Regular => b'0',
            Kind::RegularLegacy => 0,
            Kind::Contiguous => b'7',
            Kind::Hardlink => b'1',
            Kind::Symlink => b'2',
            Kind::CharDevice => b'3',
            Kind::BlockDevice => b'4',
            Kind::Directory => b'5',
            Kind::Fifo => b'6',
        }
    }

    /// Returns true for the kinds whose data follows the header.
    pub fn has_data(self) -> bool {
        matches!(self, Kind::Regular | Kind::RegularLegacy | Kind::Contiguous)
    }
}

/// The encoding of a member's path or link target.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum NameEncoding {
    /// The shortest standard form: the `name` field if it fits in 100 bytes, else a ustar
    /// `prefix`/`name` split when the dialect has `prefix` and a split exists, else a PAX
    /// record. Link targets use `linkname` or a PAX `linkpath` record.
    Auto,
    /// The header field only, cut to its width (100 bytes) when longer.
    HeaderOnly,
    /// A ustar split at a `/`: up to 155 bytes in `prefix`, up to 100 in `name`. Building
    /// fails (panics) when no split exists or the dialect has no prefix. Not for link targets.
    UstarPrefix,
    /// A PAX `path` or `linkpath` record in an `x` header. The header's own `name` keeps
    /// the first 100 bytes, and its `linkname` stays empty.
    Pax,
    /// A GNU `L` (name) or `K` (link target) member named `././@LongLink` first, holding
    /// the value and a NUL. The header's own field keeps the first 100 bytes.
    GnuLong,
}

/// One archive member: metadata, data and encoding choices.
///
/// Build one with a constructor such as [`Entry::file`] and adjust it with the chained
/// setters. Paths are bytes so tests can use names that are not UTF-8.
#[derive(Debug, Clone)]
pub struct Entry {
    /// The member path as stored, without a leading `/` unless a test wants one.
    pub path: Vec<u8>,
    /// The member type.
    pub kind: Kind,
    /// The mode field: permission bits plus setuid (0o4000), setgid (0o2000) and sticky
    /// (0o1000). File-type bits are not added.
    pub mode: u32,
    /// Owner user id. Values over 0o7777777 are written in base-256, or as a PAX record in
    /// a V7 header.
    pub uid: u64,
    /// Owner group id. Values over 0o7777777 are written in base-256, or as a PAX record in
    /// a V7 header.
    pub gid: u64,
    /// Owner user name (ustar and GNU dialects only).
    pub uname: String,
    /// Owner group name (ustar and GNU dialects only).
    pub gname: String,
    /// Modification time in whole seconds. Use [`Entry::mtime_ns`] for a fraction.
    pub mtime: u64,
    /// The stored data: file contents, or for a sparse file the data segments back to back.
    pub data: Vec<u8>,
    /// The link target of a hard or symbolic link.
    pub link: Vec<u8>,
    /// Device major number for character and block devices.
    pub dev_major: u32,
    /// Device minor number for character and block devices.
    pub dev_minor: u32,
    /// The header dialect.
    pub magic: Magic,
    /// The encoding of `path`.
    pub path_encoding: NameEncoding,
    /// The encoding of `link`.
    pub link_encoding: NameEncoding,
    /// Extra records for this member's PAX `x` header, written before any the builder adds.
    pub pax: Vec<PaxRecord>,
    /// The sparse layout, when this is a sparse file.
    pub sparse: Option<Sparse>,
}

impl Entry {
    fn new(path: &[u8], kind: Kind, mode: u32) -> Self {
        Entry {
            path: path.to_vec(),
            kind,
            mode,
            uid: 0,
            gid: 0,
            uname: "root".to_string(),
            gname: "root".to_string(),
            mtime: DEFAULT_MTIME,
            data: Vec::new(),
            link: Vec::new(),
            dev_major: 0,
            dev_minor: 0,
            magic: Magic::USTAR,
            path_encoding: NameEncoding::Auto,
            link_encoding: NameEncoding::Auto,
            pax: Vec::new(),
            sparse: None,
        }
    }

    /// Creates a regular file (typeflag `0`, mode 0644) with these contents.
    pub fn file(path: impl AsRef<[u8]>, data: impl AsRef<[u8]>) -> Self {
        let mut entry = Entry::new(path.as_ref(), Kind::Regular, 0o644);
        entry.data = data.as_ref().to_vec();
        entry
    }

    /// Creates a directory (mode 0755). A trailing `/` is added when missing.
    pub fn dir(path: impl AsRef<[u8]>) -> Self {
        let mut path = path.as_ref().to_vec();
        if path.last() != Some(&b'/') {
            path.push(b'/');
        }
        Entry::new(&path, Kind::Directory, 0o755)
    }

    /// Creates a symbolic link (mode 0777) to `target`, stored verbatim.
    pub fn symlink(path: impl AsRef<[u8]>, target: impl AsRef<[u8]>) -> Self {
        let mut entry = Entry::new(path.as_ref(), Kind::Symlink, 0o777);
        entry.link = target.as_ref().to_vec();
        entry
    }

    /// Creates a hard link (mode 0644) to the earlier member `target`.
    pub fn hardlink(path: impl AsRef<[u8]>, target: impl AsRef<[u8]>) -> Self {
        let mut entry = Entry::new(path.as_ref(), Kind::Hardlink, 0o644);
        entry.link = target.as_ref().to_vec();
        entry
    }

    /// Creates a character device (mode 0666).
    pub fn char_device(path: impl AsRef<[u8]>, major: u32, minor: u32) -> Self {
        let mut entry = Entry::new(path.as_ref(), Kind::CharDevice, 0o666);
        entry.dev_major = major;
        entry.dev_minor = minor;
        entry
    }

    /// Creates a block device (mode 0660).
    pub fn block_device(path: impl AsRef<[u8]>, major: u32, minor: u32) -> Self {
        let mut entry = Entry::new(path.as_ref(), Kind::BlockDevice, 0o660);
        entry.dev_major = major;
        entry.dev_minor = minor;
        entry
    }

    /// Creates a named pipe (mode 0644).
    pub fn fifo(path: impl AsRef<[u8]>) -> Self {
        Entry::new(path.as_ref(), Kind::Fifo, 0o644)
    }

    /// Creates an OCI whiteout: an empty regular file `<dir>/.wh.<name>` that deletes `<dir>/<name>`
    /// from the layers below. `deleted` is the path to delete, such as `etc/localtime`.
    pub fn whiteout(deleted: &str) -> Self {
        let path = match deleted.trim_end_matches('/').rsplit_once('/') {
            Some((dir, name)) => format!("{dir}/.wh.{name}"),
            None => format!(".wh.{}", deleted.trim_end_matches('/')),
        };
        Entry::new(path.as_bytes(), Kind::Regular, 0o644)
    }

    /// Creates an OCI opaque-directory marker `<dir>/.wh..wh..opq`: an empty regular file that hides
    /// everything the lower layers have under `dir`.
    pub fn opaque(dir: &str) -> Self {
        let path = format!("{}/.wh..wh..opq", dir.trim_end_matches('/'));
        Entry::new(path.as_bytes(), Kind::Regular, 0o644)
    }

    /// Creates a sparse regular file of `real_size` bytes whose non-hole data is `segments`, each an
    /// offset and its bytes (sorted, not overlapping), written in `format`.
    pub fn sparse(
        path: impl AsRef<[u8]>,
        real_size: u64,
        segments: &[(u64, Vec<u8>)],
        format: SparseFormat,
    ) -> Self {
        let mut entry = Entry::new(path.as_ref(), Kind::Regular, 0o644);
        entry.data = segments
            .iter()
            .flat_map(|(_, bytes)| bytes.clone())
            .collect();
        entry.sparse = Some(Sparse {
            format,
            real_size,
            map: segments
                .iter()
                .map(|(offset, bytes)| (*offset, bytes.len() as u64))
                .collect(),
        });
        if format == SparseFormat::OldGnu {
            entry.magic = Magic::OldGnu;
        }
        entry
    }

    /// Sets the mode field (permission, setuid, setgid and sticky bits).
    pub fn mode(mut self, mode: u32) -> Self {
        self.mode = mode;
        self
    }

    /// Sets the numeric owner.
    pub fn owner(mut self, uid: u64, gid: u64) -> Self {
        self.uid = uid;
        self.gid = gid;
        self
    }

    /// Sets the owner names.
    pub fn owner_names(mut self, uname: &str, gname: &str) -> Self {
        self.uname = uname.to_string();
        self.gname = gname.to_string();
        self
    }

    /// Sets the modification time in whole seconds.
    pub fn mtime(mut self, seconds: u64) -> Self {
        self.mtime = seconds;
        self
    }

    /// Sets the header mtime to `seconds` and adds a PAX `mtime` record with the fraction.
    pub fn mtime_ns(mut self, seconds: u64, nanos: u32) -> Self {
        self.mtime = seconds;
        let seconds = i64::try_from(seconds).unwrap_or(i64::MAX);
        self.pax
            .push(PaxRecord::new("mtime", format_time(seconds, nanos)));
        self
    }

    /// Adds a PAX `atime` record.
    pub fn atime_ns(mut self, seconds: i64, nanos: u32) -> Self {
        self.pax
            .push(PaxRecord::new("atime", format_time(seconds, nanos)));
        self
    }

    /// Adds an extended attribute as a `SCHILY.xattr.<name>` PAX record (the form GNU tar
    /// and most Go and Rust writers use). The value is stored byte for byte.
    pub fn xattr(mut self, name: &str, value: impl AsRef<[u8]>) -> Self {
        self.pax
            .push(PaxRecord::new(format!("SCHILY.xattr.{name}"), value));
        self
    }

    /// Adds an extended attribute in libarchive's form: keyword `LIBARCHIVE.xattr.` plus
    /// the percent-encoded name, and the value in base64 without `=` padding.
    // NOTE: whether libarchive's own writer pads the base64 value was not checked here.
    // Readers that accept both forms read either.
    pub fn libarchive_xattr(mut self, name: &str, value: impl AsRef<[u8]>) -> Self {
        use base64::Engine;
        let encoded = base64::engine::general_purpose::STANDARD_NO_PAD.encode(value.as_ref());
        self.pax.push(PaxRecord::new(
            format!("LIBARCHIVE.xattr.{}", url_encode(name)),
            encoded,
        ));
        self
    }

    /// Adds an arbitrary PAX record to this member's `x` header.
    pub fn pax(mut self, key: &str, value: impl AsRef<[u8]>) -> Self {
        self.pax.push(PaxRecord::new(key, value));
        self
    }

    /// Chooses the header dialect.
    pub fn magic(mut self, magic: Magic) -> Self {
        self.magic = magic;
        self
    }

    /// Chooses how the path is encoded.
    pub fn path_encoding(mut self, encoding: NameEncoding) -> Self {
        self.path_encoding = encoding;
        self
    }

    /// Chooses how the link target is encoded.
    pub fn link_encoding(mut self, encoding: NameEncoding) -> Self {
        self.link_encoding = encoding;
        self
    }

    /// Changes the member type, keeping everything else (for example to
    /// [`Kind::RegularLegacy`] or [`Kind::Contiguous`]).
    pub fn kind(mut self, kind: Kind) -> Self {
        self.kind = kind;
        self
    }
}

/// The default modification time of generated members: 2023-11-14 22:13:20 UTC.
pub const DEFAULT_MTIME: u64 = 1_700_000_000;

/// Percent-encodes every byte outside `A-Za-z0-9-._~` (RFC 3986 unreserved characters).
fn url_encode(name: &str) -> String {
    let mut out = String::new();
    for byte in name.bytes() {
        if byte.is_ascii_alphanumeric() || b"-._~".contains(&byte) {
            out.push(char::from(byte));
        } else {
            out.push_str(&format!("%{byte:02X}"));
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn whiteout_names_follow_oci_convention() {
        assert_eq!(Entry::whiteout("etc/localtime").path, b"etc/.wh.localtime");
        assert_eq!(Entry::whiteout("top").path, b".wh.top");
        assert_eq!(
            Entry::opaque("etc/network/").path,
            b"etc/network/.wh..wh..opq"
        );
    }

    #[test]
    fn dir_gets_trailing_slash() {
        assert_eq!(Entry::dir("etc").path, b"etc/");
        assert_eq!(Entry::dir("etc/").path, b"etc/");
    }
}
