//! Tar stream handling for the writer: a header parser that keeps the exact header bytes of every
//! entry, and an encoder for the entries the writer creates itself.
//!
//! We parse tar ourselves instead of using the `tar` crate for two reasons. The writer copies each
//! entry's header blocks verbatim (PAX records, GNU long names and all), which needs the byte range
//! of every extension header, not only of the final ustar header. And eStargz must see the same
//! names GNU tar extracts: the `tar` crate 0.4 ignores the ustar `prefix` field when the version
//! bytes are not `00` (composefs/tar-rs issue 369) and does not decode PAX sparse files.

pub mod encode;
pub mod header;
pub mod pax;
pub mod scan;
pub mod sparse;

pub use header::EntryType;
pub use scan::{InputEntry, ScanOutput, scan};
pub use sparse::SparseMap;

/// Size of a tar block.
pub const BLOCK: u64 = 512;

/// Rounds `len` up to a whole number of tar blocks.
pub const fn padded(len: u64) -> u64 {
    len.div_ceil(BLOCK) * BLOCK
}

/// Cleans a tar path the way eStargz readers do: `path.Clean("/" + name)` without the leading
/// slash. `./a//b/` becomes `a/b`, `a/../b` becomes `b`, and the root (`./`, `/`, ``) becomes an
/// empty string. `..` never climbs above the root.
pub fn clean_path(name: &[u8]) -> Vec<u8> {
    let mut parts: Vec<&[u8]> = Vec::new();
    for part in name.split(|&b| b == b'/') {
        match part {
            b"" | b"." => {}
            b".." => {
                parts.pop();
            }
            other => parts.push(other),
        }
    }
    parts.join(&b'/')
}

/// Splits a cleaned path into its parent and final component (`a/b/c` → (`a/b`, `c`)).
pub fn split_parent(path: &[u8]) -> (&[u8], &[u8]) {
    match path.iter().rposition(|&b| b == b'/') {
        Some(i) => (&path[..i], &path[i + 1..]),
        None => (&[], path),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn clean_path_matches_go_path_clean() {
        let cases: [(&[u8], &[u8]); 9] = [
            (b"./etc/passwd", b"etc/passwd"),
            (b"bin/", b"bin"),
            (b"./", b""),
            (b"/", b""),
            (b"", b""),
            (b"a//b/./c/", b"a/b/c"),
            (b"a/../b", b"b"),
            (b"../../x", b"x"),
            (b"/abs/path", b"abs/path"),
        ];
        for (input, expected) in cases {
            assert_eq!(
                clean_path(input),
                expected,
                "{}",
                String::from_utf8_lossy(input)
            );
        }
    }

    #[test]
    fn split_parent_handles_top_level() {
        assert_eq!(split_parent(b"a/b/c"), (&b"a/b"[..], &b"c"[..]));
        assert_eq!(split_parent(b"c"), (&b""[..], &b"c"[..]));
    }
}
