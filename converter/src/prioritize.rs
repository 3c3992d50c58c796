//! The prioritized-files list given with `--prioritize FILE`.
//!
//! Format (the one `lazypull mount --record-trace` writes): one path per line, in the order the
//! files should come first in each layer. Paths may be absolute (`/usr/bin/python3`) or relative
//! (`usr/bin/python3`); they are matched after cleaning `.`, `..` and repeated slashes. Blank lines
//! and lines whose first non-blank character is `#` are ignored. Surrounding spaces, tabs and a
//! trailing `\r` are trimmed, so a path cannot start or end with whitespace. A path listed twice
//! keeps its first position. Paths need not be UTF-8.
//!
//! Multi-layer images: every path is prioritized in every layer that contains it, not only in the
//! topmost one. A source layer is converted once even when several platforms or images share it,
//! and layers convert in parallel without a first pass that lists every layer's files; both need
//! a list that does not depend on the other layers. The cost is that a file shadowed by an upper
//! layer is prefetched needlessly, typically a handful of package-database files.

use std::collections::HashSet;
use std::path::Path;

use crate::error::ConvertError;

/// Reads and parses a prioritized-files list.
pub fn read_list(path: &Path) -> Result<Vec<Vec<u8>>, ConvertError> {
    let bytes = std::fs::read(path).map_err(|source| ConvertError::PrioritizeFile {
        path: path.to_path_buf(),
        source,
    })?;
    Ok(parse_list(&bytes))
}

/// Parses the text of a prioritized-files list.
pub fn parse_list(text: &[u8]) -> Vec<Vec<u8>> {
    let mut seen = HashSet::new();
    let mut paths = Vec::new();
    for line in text.split(|&b| b == b'\n') {
        let line = line.trim_ascii();
        if line.is_empty() || line.starts_with(b"#") {
            continue;
        }
        if seen.insert(line) {
            paths.push(line.to_vec());
        }
    }
    paths
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn comments_blank_lines_and_duplicates_are_skipped() {
        let text =
            b"# recorded trace\n/usr/bin/python3\n\n  usr/lib/libz.so.1 \r\n   # indented comment\n/usr/bin/python3\n";
        assert_eq!(
            parse_list(text),
            vec![b"/usr/bin/python3".to_vec(), b"usr/lib/libz.so.1".to_vec()]
        );
    }

    #[test]
    fn non_utf8_paths_are_kept() {
        assert_eq!(parse_list(b"caf\xe9\n"), vec![b"caf\xe9".to_vec()]);
    }

    #[test]
    fn missing_file_names_the_path() {
        let err = read_list(Path::new("/nonexistent/lazypull-list")).unwrap_err();
        assert!(
            err.to_string().contains("/nonexistent/lazypull-list"),
            "{err}"
        );
    }
}
