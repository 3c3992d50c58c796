//! One layer's tar stream, walked once: each entry's path, kind and size, the sha256 of every
//! regular file's content, and the secrets and `package.json` manifests found on the way.
//! Payloads pass through a fixed buffer. Only two kinds of file are kept whole, up to
//! [`MAX_CHECKED_FILE`] each: the small files checked for credentials, and the `package.json`
//! files of applications.

use std::io::Read;

use estargz::Limits;
use estargz::tar::scan::{InputEntry, Kind};
use estargz::tar::{clean_path, scan::scan_each, split_parent};
use sha2::{Digest as _, Sha256};

use crate::error::AuditError;
use crate::secrets::{self, HEAD_BYTES, MAX_CHECKED_FILE, SecretKind};
use crate::stream::ForwardSeek;

/// Names eStargz adds to a layer that are no part of the image's filesystem.
const ESTARGZ_NAMES: [&[u8]; 3] = [
    b"stargz.index.json",
    b".prefetch.landmark",
    b".no.prefetch.landmark",
];

/// Effect of an entry on the filesystem.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EntryKind {
    /// A regular file with its content.
    File,
    /// A hard link to `link`, an earlier path.
    Hardlink,
    /// A directory.
    Directory,
    /// A symlink, device or fifo: no content bytes.
    Special,
    /// A whiteout: deletes `path` (and below) from the lower layers.
    Whiteout,
    /// An opaque marker: hides everything below the directory `path` in the lower layers.
    Opaque,
}

/// One tar entry as the audit records it. Paths are cleaned (no leading `/` or `./`).
#[derive(Debug, Clone)]
pub struct Record {
    /// Path the entry creates or deletes.
    pub path: Vec<u8>,
    /// Effect of the entry.
    pub kind: EntryKind,
    /// Apparent size of a regular file (the real size of a sparse file), else 0.
    pub size: u64,
    /// sha256 of a regular file's content (of its stored segments for a sparse file).
    pub digest: [u8; 32],
    /// Cleaned target of a hard link.
    pub link: Vec<u8>,
}

/// A secret found in a layer: path and kind only.
#[derive(Debug, Clone)]
pub struct SecretHit {
    /// Cleaned path of the file.
    pub path: Vec<u8>,
    /// Kind of secret.
    pub kind: SecretKind,
}

/// The `devDependencies` of an application's `package.json` (one outside `node_modules`).
#[derive(Debug, Clone)]
pub struct DevManifest {
    /// Directory of the `package.json`.
    pub dir: Vec<u8>,
    /// Names listed under `devDependencies`.
    pub dev_dependencies: Vec<String>,
}

/// Everything the audit keeps of one layer.
#[derive(Debug, Default)]
pub struct LayerScan {
    /// Entries in stream order.
    pub records: Vec<Record>,
    /// Secrets found in the layer's files.
    pub secrets: Vec<SecretHit>,
    /// Application manifests with development dependencies.
    pub manifests: Vec<DevManifest>,
    /// Bytes of the decompressed tar stream (the layer's uncompressed size).
    pub tar_bytes: u64,
}

/// Walks one decompressed layer stream to its end. `is_estargz` drops the eStargz metadata
/// entries; `progress` is called after each entry.
pub fn scan_layer<R: Read>(
    stream: R,
    layer: &str,
    is_estargz: bool,
    mut progress: impl FnMut(),
) -> Result<(LayerScan, R), AuditError> {
    let mut out = LayerScan::default();
    let mut input = ForwardSeek::new(stream);
    let limits = Limits::default();
    let tar_error = |source| AuditError::Tar {
        layer: layer.to_string(),
        source,
    };
    let mut buffer = vec![0u8; 64 << 10];
    scan_each(
        &mut input,
        &limits,
        |entry: InputEntry, data: &mut dyn Read| {
            let path = clean_path(&entry.meta.name);
            if path.is_empty() || (is_estargz && ESTARGZ_NAMES.contains(&path.as_slice())) {
                return Ok(());
            }
            let (parent, name) = split_parent(&path);
            if let Some(hidden) = name.strip_prefix(b".wh.") {
                let record = if hidden == b".wh..opq" {
                    Record::new(parent.to_vec(), EntryKind::Opaque)
                } else {
                    let mut target = parent.to_vec();
                    if !target.is_empty() {
                        target.push(b'/');
                    }
                    target.extend_from_slice(hidden);
                    Record::new(target, EntryKind::Whiteout)
                };
                out.records.push(record);
                progress();
                return Ok(());
            }
            let kind = match entry.meta.kind {
                Kind::Regular => EntryKind::File,
                Kind::Hardlink => EntryKind::Hardlink,
                Kind::Directory => EntryKind::Directory,
                Kind::Symlink | Kind::Char | Kind::Block | Kind::Fifo => EntryKind::Special,
            };
            let mut record = Record::new(path, kind);
            match kind {
                EntryKind::Hardlink => record.link = clean_path(&entry.meta.link),
                EntryKind::File => {
                    record.size = entry.meta.size;
                    let keep = wants_whole(&record.path, record.size);
                    let (digest, content) =
                        hash_content(data, &mut buffer, keep).map_err(|source| {
                            estargz::TarError::Io {
                                offset: entry.data_offset,
                                source,
                            }
                        })?;
                    record.digest = digest;
                    inspect(&record.path, &content, &mut out);
                }
                _ => {}
            }
            out.records.push(record);
            progress();
            Ok::<(), estargz::TarError>(())
        },
    )
    .map_err(tar_error)?;
    let (stream, tar_bytes) = input
        .drain()
        .map_err(|source| tar_error(estargz::TarError::Io { offset: 0, source }))?;
    out.tar_bytes = tar_bytes;
    Ok((out, stream))
}

impl Record {
    fn new(path: Vec<u8>, kind: EntryKind) -> Self {
        Record {
            path,
            kind,
            size: 0,
            digest: [0; 32],
            link: Vec::new(),
        }
    }
}

/// Credential files and application manifests are held whole when small.
fn wants_whole(path: &[u8], size: u64) -> bool {
    size <= MAX_CHECKED_FILE && (secrets::credential_file(path).is_some() || is_app_manifest(path))
}

/// Directories where distributions install node packages (Debian's `node-*` packages): their
/// manifests describe packages, not applications.
const DISTRIBUTION_NODE_DIRS: [&[u8]; 3] = [
    b"usr/share/nodejs/",
    b"usr/lib/nodejs/",
    b"usr/share/javascript/",
];

/// Tells whether `path` is an application's `package.json`: one outside `node_modules` and
/// outside the distribution's package directories.
fn is_app_manifest(path: &[u8]) -> bool {
    let (_, name) = split_parent(path);
    name == b"package.json"
        && !path.split(|&b| b == b'/').any(|c| c == b"node_modules")
        && !DISTRIBUTION_NODE_DIRS
            .iter()
            .any(|dir| path.starts_with(dir))
}

/// Hashes the whole payload. Returns the first [`HEAD_BYTES`], or everything when `keep`.
fn hash_content(
    data: &mut dyn Read,
    buffer: &mut [u8],
    keep: bool,
) -> std::io::Result<([u8; 32], Vec<u8>)> {
    let mut hasher = Sha256::new();
    let mut kept = Vec::new();
    loop {
        let n = match data.read(buffer) {
            Ok(0) => break,
            Ok(n) => n,
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(e),
        };
        hasher.update(&buffer[..n]);
        let room = if keep {
            n
        } else {
            HEAD_BYTES.saturating_sub(kept.len()).min(n)
        };
        kept.extend_from_slice(&buffer[..room]);
    }
    Ok((hasher.finalize().into(), kept))
}

fn inspect(path: &[u8], content: &[u8], out: &mut LayerScan) {
    let found = match secrets::credential_file(path) {
        Some(kind) if secrets::credential_in(kind, content) => Some(kind),
        _ if secrets::private_key_in(content) => Some(SecretKind::PrivateKey),
        _ => None,
    };
    if let Some(kind) = found {
        out.secrets.push(SecretHit {
            path: path.to_vec(),
            kind,
        });
    }
    if is_app_manifest(path)
        && let Some(names) = dev_dependencies(content)
    {
        out.manifests.push(DevManifest {
            dir: split_parent(path).0.to_vec(),
            dev_dependencies: names,
        });
    }
}

fn dev_dependencies(content: &[u8]) -> Option<Vec<String>> {
    let value: serde_json::Value = serde_json::from_slice(content).ok()?;
    let names: Vec<String> = value
        .get("devDependencies")?
        .as_object()?
        .keys()
        .cloned()
        .collect();
    (!names.is_empty()).then_some(names)
}

#[cfg(test)]
mod tests {
    use super::*;
    use lazypull_testkit::tarbuild::{Builder, Entry, pattern};

    fn scan(bytes: &[u8]) -> Result<LayerScan, AuditError> {
        scan_layer(bytes, "sha256:test", false, || {}).map(|(scan, _)| scan)
    }

    #[test]
    fn entries_whiteouts_and_links_are_recorded() {
        let mut tar = Builder::new();
        tar.append(&Entry::file("./etc/a", pattern(1000, 1)))
            .append(&Entry::hardlink("etc/b", "etc/a"))
            .append(&Entry::whiteout("usr/old"))
            .append(&Entry::opaque("var/lib"));
        let bytes = tar.finish();
        let scan = scan(&bytes).unwrap();
        let kinds: Vec<(String, EntryKind)> = scan
            .records
            .iter()
            .map(|r| (String::from_utf8_lossy(&r.path).into_owned(), r.kind))
            .collect();
        assert_eq!(
            kinds,
            [
                ("etc/a".to_string(), EntryKind::File),
                ("etc/b".to_string(), EntryKind::Hardlink),
                ("usr/old".to_string(), EntryKind::Whiteout),
                ("var/lib".to_string(), EntryKind::Opaque),
            ]
        );
        assert_eq!(scan.records[0].size, 1000);
        let digest: [u8; 32] = Sha256::digest(pattern(1000, 1)).into();
        assert_eq!(scan.records[0].digest, digest);
        assert_eq!(scan.records[1].link, b"etc/a");
        assert_eq!(scan.tar_bytes, bytes.len() as u64);
    }

    #[test]
    fn stream_without_end_blocks_ends_cleanly() {
        let mut tar = Builder::new();
        tar.append(&Entry::file("a", pattern(700, 2)));
        let bytes = tar.finish_without_terminator();
        assert_eq!(scan(&bytes).unwrap().records.len(), 1);
    }

    #[test]
    fn truncated_payload_is_an_error() {
        let mut tar = Builder::new();
        tar.append(&Entry::file("a", pattern(5000, 3)));
        let bytes = tar.finish_without_terminator();
        let cut = &bytes[..bytes.len() - 2048];
        assert!(matches!(scan(cut), Err(AuditError::Tar { .. })));
    }
}
