//! From the access trace a mount records to the prioritized-files list the converter takes.

use std::collections::{HashMap, HashSet};

use lazypull_snapshotter::fs::READ_PAGE;

/// Entries the converter writes itself; a trace of an eStargz mount may list them.
const FORMAT_ENTRIES: [&[u8]; 3] = [
    b"stargz.index.json",
    estargz::PREFETCH_LANDMARK.as_bytes(),
    estargz::NO_PREFETCH_LANDMARK.as_bytes(),
];

/// Turns the text of a trace file into the paths to prioritize, in first-access order.
///
/// Lines are parsed as `lazypull convert --prioritize` parses them (blank lines and `#`
/// comments skipped, whitespace trimmed). A path is then written without leading slashes and
/// kept once, at its first position, whatever its spelling (`/usr/bin/x` and `usr/bin/x` are
/// one path). The TOC and landmark entries are dropped, because every conversion writes new
/// ones.
///
/// Hard links need nothing here: the trace names one of the linked paths, and the format's
/// planner moves the file that contains the content along with any prioritized link to it.
pub fn prioritized_paths(trace: &[u8]) -> Vec<Vec<u8>> {
    let mut seen = HashSet::new();
    let mut paths = Vec::new();
    for line in lazypull_converter::prioritize::parse_list(trace) {
        let start = line.iter().position(|&b| b != b'/').unwrap_or(line.len());
        let path = &line[start..];
        if path.is_empty() || FORMAT_ENTRIES.contains(&path) {
            continue;
        }
        if seen.insert(path.to_vec()) {
            paths.push(path.to_vec());
        }
    }
    paths
}

/// Files up to this size are prioritized whole whenever the workload opened them.
pub const WHOLE_FILE_LIMIT: u64 = 1 << 20;

/// Sums, per path, the bytes of the read-log pages the workload touched (see
/// `lazypull_snapshotter::fs::read_log_path`). Lines that do not parse are skipped.
pub fn touched_bytes(log: &[u8]) -> HashMap<Vec<u8>, u64> {
    let mut pages: HashMap<Vec<u8>, HashSet<u64>> = HashMap::new();
    for line in log.split(|&b| b == b'\n') {
        let mut fields = line.splitn(3, |&b| b == b'\t');
        let (Some(offset), Some(len), Some(path)) = (fields.next(), fields.next(), fields.next())
        else {
            continue;
        };
        let number = |field: &[u8]| std::str::from_utf8(field).ok()?.parse::<u64>().ok();
        let (Some(offset), Some(len)) = (number(offset), number(len)) else {
            continue;
        };
        if len == 0 {
            continue;
        }
        let start = path.iter().position(|&b| b != b'/').unwrap_or(path.len());
        let set = pages.entry(path[start..].to_vec()).or_default();
        let first = offset / READ_PAGE;
        let last = offset.saturating_add(len - 1) / READ_PAGE;
        set.extend(first..=last.min(first + (1 << 24)));
    }
    pages
        .into_iter()
        .map(|(path, set)| (path, set.len() as u64 * READ_PAGE))
        .collect()
}

/// Splits the recorded paths into those worth prefetching whole and the rest. A file is kept
/// when it is at most [`WHOLE_FILE_LIMIT`] bytes, or when the workload touched at least half of
/// it. A larger file read in a few places (a dataset sampled at random, a library mapped and
/// touched here and there) stays where it is and is fetched on demand, chunk by chunk.
/// Putting it first would make every mount fetch bytes the workload never reads. `size` gives
/// a path's size in the image, `None` when unknown (the path is then kept).
pub fn select_whole_files(
    paths: Vec<Vec<u8>>,
    touched: &HashMap<Vec<u8>, u64>,
    size: impl Fn(&[u8]) -> Option<u64>,
) -> (Vec<Vec<u8>>, Vec<Vec<u8>>) {
    paths.into_iter().partition(|path| match size(path) {
        None => true,
        Some(bytes) if bytes <= WHOLE_FILE_LIMIT => true,
        Some(bytes) => touched.get(path).copied().unwrap_or(0).saturating_mul(2) >= bytes,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use estargz::blob::{decode_toc, locate_toc};
    use estargz::build::{BuildOptions, build};

    fn as_strings(paths: &[Vec<u8>]) -> Vec<String> {
        paths
            .iter()
            .map(|path| String::from_utf8_lossy(path).into_owned())
            .collect()
    }

    #[test]
    fn trace_order_is_kept() {
        let paths = prioritized_paths(b"usr/bin/python3\nlib/libc.so.6\netc/ld.so.cache\n");
        assert_eq!(
            as_strings(&paths),
            ["usr/bin/python3", "lib/libc.so.6", "etc/ld.so.cache"]
        );
    }

    #[test]
    fn touched_bytes_counts_each_page_once() {
        let log = b"0\t4096\tdata/big\n100\t10\t/data/big\n65536\t131072\tdata/big\nbad line\n0\t1\tetc/x\n";
        let touched = touched_bytes(log);
        assert_eq!(touched[b"data/big".as_slice()], 3 * READ_PAGE);
        assert_eq!(touched[b"etc/x".as_slice()], READ_PAGE);
        assert_eq!(touched.len(), 2);
    }

    #[test]
    fn sampled_large_files_are_left_out() {
        let paths: Vec<Vec<u8>> = [
            "small",
            "big-read-whole",
            "big-sampled",
            "big-unread",
            "unknown",
        ]
        .iter()
        .map(|p| p.as_bytes().to_vec())
        .collect();
        let touched = HashMap::from([
            (b"big-read-whole".to_vec(), 60 << 20),
            (b"big-sampled".to_vec(), 4 << 20),
            (b"small".to_vec(), READ_PAGE),
        ]);
        let sizes = HashMap::from([
            (b"small".to_vec(), 512 << 10),
            (b"big-read-whole".to_vec(), 100 << 20),
            (b"big-sampled".to_vec(), 100 << 20),
            (b"big-unread".to_vec(), 8 << 20),
        ]);
        let (kept, left) = select_whole_files(paths, &touched, |p| sizes.get(p).copied());
        assert_eq!(as_strings(&kept), ["small", "big-read-whole", "unknown"]);
        assert_eq!(as_strings(&left), ["big-sampled", "big-unread"]);
    }

    #[test]
    fn duplicates_keep_first_position() {
        let paths = prioritized_paths(b"a\nb\n/a\n//b\nc\na\n");
        assert_eq!(as_strings(&paths), ["a", "b", "c"]);
    }

    #[test]
    fn format_entries_and_blank_lines_are_dropped() {
        let paths =
            prioritized_paths(b"\n# comment\n.prefetch.landmark\nstargz.index.json\n/\nbin/sh\n");
        assert_eq!(as_strings(&paths), ["bin/sh"]);
    }

    /// Builds a tar stream from (name, typeflag, link target, content) entries.
    fn tar_of(entries: &[(&str, u8, &str, &[u8])]) -> Vec<u8> {
        let mut builder = tar::Builder::new(Vec::new());
        for (name, kind, link, content) in entries {
            let mut header = tar::Header::new_ustar();
            header.set_entry_type(tar::EntryType::new(*kind));
            header.set_mode(0o755);
            header.set_size(content.len() as u64);
            if !link.is_empty() {
                header.set_link_name(link).unwrap();
            }
            builder.append_data(&mut header, name, *content).unwrap();
        }
        builder.into_inner().unwrap()
    }

    /// Returns the TOC entry names of a blob built with `prioritized`, in TOC order.
    fn toc_names(tar: Vec<u8>, prioritized: Vec<Vec<u8>>) -> Vec<String> {
        let options = BuildOptions {
            prioritized,
            ..BuildOptions::default()
        };
        let mut blob = Vec::new();
        build(std::io::Cursor::new(tar), &mut blob, &options).unwrap();
        let location = locate_toc(&blob.as_slice()).unwrap();
        let start = location.offset as usize;
        let compressed = &blob[start..start + location.compressed_len as usize];
        let limits = estargz::Limits::default();
        let json = decode_toc(compressed, &location, &limits).unwrap();
        estargz::toc::parse_toc(&json, &limits)
            .unwrap()
            .entries
            .into_iter()
            .map(|entry| entry.name)
            .collect()
    }

    #[test]
    fn hard_link_in_trace_brings_its_target_first() {
        // The trace names the link; the content lives in the earlier entry `usr/bin/python3.11`.
        let tar = tar_of(&[
            ("usr/", b'5', "", b""),
            ("usr/bin/", b'5', "", b""),
            ("usr/bin/other", b'0', "", b"unrelated"),
            ("usr/bin/python3.11", b'0', "", b"interpreter"),
            ("usr/bin/python3", b'1', "usr/bin/python3.11", b""),
        ]);
        let paths = prioritized_paths(b"/usr/bin/python3\nusr/bin/python3\n");
        let names = toc_names(tar, paths);
        let landmark = names
            .iter()
            .position(|name| name == estargz::PREFETCH_LANDMARK)
            .expect("prioritized layer has the prefetch landmark");
        let before: Vec<&str> = names[..landmark].iter().map(String::as_str).collect();
        assert!(
            before.contains(&"usr/bin/python3.11"),
            "TOC order: {names:?}"
        );
        assert!(before.contains(&"usr/bin/python3"), "TOC order: {names:?}");
        assert!(!before.contains(&"usr/bin/other"), "TOC order: {names:?}");
    }
}
