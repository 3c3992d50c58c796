//! Encoding of the headers the writer creates: implied directories, landmarks, the TOC entry,
//! expanded sparse files and entries re-encoded after a PAX global header.
//!
//! Output is POSIX ustar (`ustar\0`, version `00`), preceded by a PAX `x` header only when a value
//! does not fit the ustar fields (long names, large ids or sizes, sub-second or negative times,
//! xattrs) or when extra PAX records must be preserved.

use super::header::set_checksum;
use super::pax::{self, Record};
use crate::toc::Timestamp;

/// Everything needed to write one entry header.
#[derive(Debug, Clone, Default)]
pub struct HeaderSpec<'a> {
    /// Full path.
    pub name: &'a [u8],
    /// Link target.
    pub link: &'a [u8],
    /// Typeflag byte (`0`, `1`, `2`, `3`, `4`, `5`, `6`).
    pub typeflag: u8,
    /// Mode field.
    pub mode: u32,
    /// Owner uid.
    pub uid: u64,
    /// Owner gid.
    pub gid: u64,
    /// Owner user name.
    pub uname: &'a [u8],
    /// Owner group name.
    pub gname: &'a [u8],
    /// Modification time.
    pub mtime: Timestamp,
    /// Payload size.
    pub size: u64,
    /// Device major number.
    pub devmajor: u32,
    /// Device minor number.
    pub devminor: u32,
    /// Extended attributes, written as `SCHILY.xattr.<name>` records.
    pub xattrs: &'a [(Vec<u8>, Vec<u8>)],
    /// Further PAX records to keep (atime, ctime, vendor records).
    pub extra_records: &'a [Record],
}

const MAX_OCTAL_7: u64 = 0o7_777_777;
const MAX_OCTAL_11: u64 = 0o77_777_777_777;

fn put_octal(field: &mut [u8], value: u64) {
    let digits = field.len() - 1;
    let text = format!("{value:0digits$o}");
    field[..digits].copy_from_slice(text.as_bytes());
    field[digits] = 0;
}

fn put_str(field: &mut [u8], value: &[u8]) {
    let n = value.len().min(field.len());
    field[..n].copy_from_slice(&value[..n]);
}

/// Splits a name into ustar `prefix` and `name` when it does not fit the 100-byte name field.
fn split_ustar_name(name: &[u8]) -> Option<(&[u8], &[u8])> {
    if name.len() <= 100 {
        return Some((&[], name));
    }
    if name.len() > 256 {
        return None;
    }
    // The prefix ends at a slash; choose the latest slash that keeps the prefix within 155 bytes.
    let limit = name.len().min(156);
    let slash = name[..limit].iter().rposition(|&b| b == b'/')?;
    let (prefix, rest) = (&name[..slash], &name[slash + 1..]);
    (!prefix.is_empty() && !rest.is_empty() && rest.len() <= 100).then_some((prefix, rest))
}

/// Encodes the header blocks of one entry (a PAX header when needed, then the ustar header).
pub fn encode(spec: &HeaderSpec<'_>) -> Vec<u8> {
    let mut records: Vec<Record> = Vec::new();
    let split = split_ustar_name(spec.name);
    if split.is_none() {
        records.push((b"path".to_vec(), spec.name.to_vec()));
    }
    if spec.link.len() > 100 {
        records.push((b"linkpath".to_vec(), spec.link.to_vec()));
    }
    if spec.size > MAX_OCTAL_11 {
        records.push((b"size".to_vec(), spec.size.to_string().into_bytes()));
    }
    if spec.uid > MAX_OCTAL_7 {
        records.push((b"uid".to_vec(), spec.uid.to_string().into_bytes()));
    }
    if spec.gid > MAX_OCTAL_7 {
        records.push((b"gid".to_vec(), spec.gid.to_string().into_bytes()));
    }
    if spec.uname.len() > 32 {
        records.push((b"uname".to_vec(), spec.uname.to_vec()));
    }
    if spec.gname.len() > 32 {
        records.push((b"gname".to_vec(), spec.gname.to_vec()));
    }
    let secs = spec.mtime.secs;
    if spec.mtime.nanos != 0 || secs < 0 || secs as u64 > MAX_OCTAL_11 {
        records.push((b"mtime".to_vec(), pax::format_time(secs, spec.mtime.nanos)));
    }
    if u64::from(spec.devmajor) > MAX_OCTAL_7 {
        records.push((
            b"SCHILY.devmajor".to_vec(),
            spec.devmajor.to_string().into_bytes(),
        ));
    }
    if u64::from(spec.devminor) > MAX_OCTAL_7 {
        records.push((
            b"SCHILY.devminor".to_vec(),
            spec.devminor.to_string().into_bytes(),
        ));
    }
    for (name, value) in spec.xattrs {
        let mut key = b"SCHILY.xattr.".to_vec();
        key.extend_from_slice(name);
        records.push((key, value.clone()));
    }
    records.extend(spec.extra_records.iter().cloned());
    let needs_binary = records
        .iter()
        .any(|(k, v)| (k == b"path" || k == b"linkpath") && std::str::from_utf8(v).is_err());
    if needs_binary && !records.iter().any(|(k, _)| k == b"hdrcharset") {
        records.insert(0, (b"hdrcharset".to_vec(), b"BINARY".to_vec()));
    }

    let mut out = Vec::with_capacity(1536);
    if !records.is_empty() {
        let data = pax::encode_records(&records);
        let base = spec
            .name
            .rsplit(|&b| b == b'/')
            .find(|p| !p.is_empty())
            .unwrap_or(b"entry");
        let mut pax_name = b"PaxHeaders/".to_vec();
        pax_name.extend_from_slice(&base[..base.len().min(88)]);
        let mut block = ustar_block(
            &HeaderSpec {
                name: &pax_name,
                typeflag: b'x',
                mode: 0o644,
                size: data.len() as u64,
                ..HeaderSpec::default()
            },
            (&[], &pax_name),
        );
        set_checksum(&mut block);
        out.extend_from_slice(&block);
        out.extend_from_slice(&data);
        out.resize(
            out.len() + (super::padded(data.len() as u64) as usize - data.len()),
            0,
        );
    }
    let (prefix, name) = split.unwrap_or((&[], &spec.name[..spec.name.len().min(100)]));
    let mut block = ustar_block(spec, (prefix, name));
    set_checksum(&mut block);
    out.extend_from_slice(&block);
    out
}

fn ustar_block(spec: &HeaderSpec<'_>, (prefix, name): (&[u8], &[u8])) -> [u8; 512] {
    let mut b = [0u8; 512];
    put_str(&mut b[0..100], name);
    put_octal(&mut b[100..108], u64::from(spec.mode) & MAX_OCTAL_7);
    put_octal(&mut b[108..116], spec.uid.min(MAX_OCTAL_7));
    put_octal(&mut b[116..124], spec.gid.min(MAX_OCTAL_7));
    put_octal(
        &mut b[124..136],
        if spec.size > MAX_OCTAL_11 {
            0
        } else {
            spec.size
        },
    );
    put_octal(
        &mut b[136..148],
        (spec.mtime.secs.max(0) as u64).min(MAX_OCTAL_11),
    );
    b[156] = spec.typeflag;
    put_str(&mut b[157..257], &spec.link[..spec.link.len().min(100)]);
    b[257..263].copy_from_slice(b"ustar\0");
    b[263..265].copy_from_slice(b"00");
    put_str(&mut b[265..297], &spec.uname[..spec.uname.len().min(32)]);
    put_str(&mut b[297..329], &spec.gname[..spec.gname.len().min(32)]);
    put_octal(&mut b[329..337], u64::from(spec.devmajor).min(MAX_OCTAL_7));
    put_octal(&mut b[337..345], u64::from(spec.devminor).min(MAX_OCTAL_7));
    put_str(&mut b[345..500], prefix);
    b
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::limits::Limits;
    use crate::tar::scan::{Kind, scan};

    fn round_trip(spec: &HeaderSpec<'_>, payload: &[u8]) -> crate::tar::InputEntry {
        let mut data = encode(spec);
        data.extend_from_slice(payload);
        data.resize(super::super::padded(data.len() as u64) as usize, 0);
        data.extend_from_slice(&[0u8; 1024]);
        let out = scan(std::io::Cursor::new(data), &Limits::default()).unwrap();
        assert_eq!(out.entries.len(), 1);
        out.entries.into_iter().next().unwrap()
    }

    #[test]
    fn short_names_need_no_pax_header() {
        let spec = HeaderSpec {
            name: b"etc/passwd",
            typeflag: b'0',
            mode: 0o644,
            size: 3,
            ..Default::default()
        };
        assert_eq!(encode(&spec).len(), 512);
        let entry = round_trip(&spec, b"abc");
        assert_eq!(entry.meta.name, b"etc/passwd");
        assert_eq!(entry.meta.size, 3);
    }

    #[test]
    fn long_names_use_prefix_or_pax() {
        let medium = [b"d/".repeat(60).as_slice(), b"file"].concat();
        let spec = HeaderSpec {
            name: &medium,
            typeflag: b'0',
            ..Default::default()
        };
        assert_eq!(encode(&spec).len(), 512, "fits ustar prefix + name");
        assert_eq!(round_trip(&spec, b"").meta.name, medium);

        let long = [b"x".repeat(300).as_slice(), b"/y"].concat();
        let spec = HeaderSpec {
            name: &long,
            typeflag: b'0',
            ..Default::default()
        };
        assert!(encode(&spec).len() > 512, "needs a PAX header");
        assert_eq!(round_trip(&spec, b"").meta.name, long);
    }

    #[test]
    fn large_values_and_xattrs_round_trip() {
        let xattrs = vec![(
            b"security.capability".to_vec(),
            vec![1, 0, 0, 2, 0, 0x20, 0, 0],
        )];
        let link = b"t".repeat(150);
        let spec = HeaderSpec {
            name: b"usr/bin/ping",
            link: &link,
            typeflag: b'2',
            mode: 0o4755,
            uid: 5_000_000,
            gid: 70_000_000,
            mtime: Timestamp::new(-5, 250_000_000),
            xattrs: &xattrs,
            ..Default::default()
        };
        let entry = round_trip(&spec, b"");
        assert_eq!(entry.meta.kind, Kind::Symlink);
        assert_eq!(entry.meta.link, link);
        assert_eq!((entry.meta.uid, entry.meta.gid), (5_000_000, 70_000_000));
        assert_eq!(entry.meta.mtime, Timestamp::new(-5, 250_000_000));
        assert_eq!(entry.meta.xattrs, xattrs);
        assert_eq!(entry.meta.mode, 0o4755);
    }
}
