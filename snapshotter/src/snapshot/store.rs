//! The metadata store: every snapshot record, persisted as an append-only log of JSON lines.
//!
//! Each change is one line holding all of its operations (a commit deletes the active key and
//! puts the committed name in the same line), written with one `write` and made durable with
//! `fdatasync` before the in-memory state changes. So a crash leaves either the whole change or
//! none of it. A torn last line (the crash hit during the write) is ignored at the next open. A
//! bad line anywhere else is reported as corruption rather than guessed around.
//!
//! At open, and when the log grows well beyond the number of live records, the log is
//! compacted: the current state is written to a temporary file, synced, renamed over the log,
//! and the directory synced, so the old or the new file is always complete.

use std::collections::BTreeMap;
use std::fs::{File, OpenOptions};
use std::io::{BufRead, BufReader, Write};
use std::path::{Path, PathBuf};
use std::time::SystemTime;

use serde::{Deserialize, Serialize};

use super::types::{Kind, Labels, Usage};

/// Version written in the log's first line.
const FORMAT_VERSION: u32 = 1;

/// Appended lines tolerated before compaction, beyond twice the number of live records.
const COMPACT_SLACK: usize = 1000;

/// Failure of the store. The operation that hit the failure was not applied.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// Reading, writing or syncing the log failed.
    #[error("failed to {action} snapshot metadata {path}")]
    Io {
        /// The operation that failed.
        action: &'static str,
        /// The file.
        path: PathBuf,
        /// The cause.
        #[source]
        source: std::io::Error,
    },
    /// A line other than the last one does not parse.
    #[error("snapshot metadata {path} is corrupt at line {line}")]
    Corrupt {
        /// The file.
        path: PathBuf,
        /// 1-based line number.
        line: usize,
        /// The parse failure.
        #[source]
        source: serde_json::Error,
    },
    /// The log was written by a newer version.
    #[error(
        "snapshot metadata {path} has format version {found}; this build reads version {FORMAT_VERSION}"
    )]
    UnsupportedVersion {
        /// The file.
        path: PathBuf,
        /// The version found.
        found: u32,
    },
    /// An earlier append failed and the log could not be restored to its last good length.
    #[error("snapshot metadata {path} is read-only after a failed write; restart the daemon")]
    Poisoned {
        /// The file.
        path: PathBuf,
    },
}

/// The persisted facts of one snapshot; its key is the map key in [`State`].
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Record {
    /// Directory number: the snapshot lives in `snapshots/<id>`.
    pub id: u64,
    /// Kind.
    pub kind: Kind,
    /// Parent name.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub parent: Option<String>,
    /// Labels.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub labels: Labels,
    /// Creation time.
    pub created: SystemTime,
    /// Last change.
    pub updated: SystemTime,
    /// Usage measured at commit; `None` for active and view snapshots, and for remote layers.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub usage: Option<Usage>,
}

/// One change to the records.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Op {
    /// Insert or replace a record.
    Put {
        /// Key or name.
        key: String,
        /// The record.
        record: Record,
    },
    /// Delete a record.
    Delete {
        /// Key or name.
        key: String,
    },
}

/// Every record, by key or name, and the next directory number.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct State {
    /// Next unused directory number; never reused, so a leftover directory cannot be adopted.
    pub next_id: u64,
    /// Records by key (active, view) or name (committed).
    pub snapshots: BTreeMap<String, Record>,
}

impl State {
    fn apply(&mut self, next_id: u64, ops: &[Op]) {
        self.next_id = self.next_id.max(next_id);
        for op in ops {
            match op {
                Op::Put { key, record } => {
                    self.next_id = self.next_id.max(record.id + 1);
                    self.snapshots.insert(key.clone(), record.clone());
                }
                Op::Delete { key } => {
                    self.snapshots.remove(key);
                }
            }
        }
    }
}

#[derive(Debug, Serialize, Deserialize)]
struct Header {
    format: u32,
}

#[derive(Debug, Serialize, Deserialize)]
struct Entry {
    next_id: u64,
    ops: Vec<Op>,
}

/// The open log and the state it describes.
#[derive(Debug)]
pub struct Store {
    path: PathBuf,
    file: File,
    /// Length of the log after the last complete line.
    len: u64,
    appended: usize,
    poisoned: bool,
    state: State,
}

impl Store {
    /// Opens the log at `path`, creating it when missing, replays it and compacts it.
    pub fn open(path: &Path) -> Result<Store, StoreError> {
        let state = match File::open(path) {
            Ok(file) => replay(path, file)?,
            Err(error) if error.kind() == std::io::ErrorKind::NotFound => State::default(),
            Err(source) => {
                return Err(StoreError::Io {
                    action: "open",
                    path: path.to_owned(),
                    source,
                });
            }
        };
        let len = write_compacted(path, &state)?;
        let file = OpenOptions::new()
            .append(true)
            .open(path)
            .map_err(|source| StoreError::Io {
                action: "open",
                path: path.to_owned(),
                source,
            })?;
        Ok(Store {
            path: path.to_owned(),
            file,
            len,
            appended: 0,
            poisoned: false,
            state,
        })
    }

    /// Returns the current records.
    pub fn state(&self) -> &State {
        &self.state
    }

    /// Makes `ops` durable, then applies them to the in-memory state. On error nothing changes.
    pub fn apply(&mut self, next_id: u64, ops: Vec<Op>) -> Result<(), StoreError> {
        if self.poisoned {
            return Err(StoreError::Poisoned {
                path: self.path.clone(),
            });
        }
        let entry = Entry { next_id, ops };
        let mut line = serde_json::to_vec(&entry).map_err(|source| StoreError::Io {
            action: "encode",
            path: self.path.clone(),
            source: std::io::Error::other(source),
        })?;
        line.push(b'\n');
        if let Err(source) = self.append(&line) {
            // A partial line would corrupt every later one; cut the file back to the last
            // complete line, or stop writing when even that fails.
            if self
                .file
                .set_len(self.len)
                .and_then(|()| self.file.sync_data())
                .is_err()
            {
                self.poisoned = true;
            }
            return Err(StoreError::Io {
                action: "append to",
                path: self.path.clone(),
                source,
            });
        }
        self.len += line.len() as u64;
        self.appended += 1;
        self.state.apply(entry.next_id, &entry.ops);
        if self.appended > COMPACT_SLACK + 2 * self.state.snapshots.len() {
            self.compact();
        }
        Ok(())
    }

    fn append(&mut self, line: &[u8]) -> std::io::Result<()> {
        self.file.write_all(line)?;
        self.file.sync_data()
    }

    /// Rewrites the log as one entry. A failure keeps the long log, which is still valid.
    fn compact(&mut self) {
        let reopened = write_compacted(&self.path, &self.state).and_then(|len| {
            let file = OpenOptions::new()
                .append(true)
                .open(&self.path)
                .map_err(|source| StoreError::Io {
                    action: "open",
                    path: self.path.clone(),
                    source,
                })?;
            Ok((len, file))
        });
        match reopened {
            Ok((len, file)) => {
                self.file = file;
                self.len = len;
                self.appended = 0;
            }
            Err(error) => {
                tracing::warn!(path = %self.path.display(), %error, "failed to compact snapshot metadata")
            }
        }
    }
}

fn replay(path: &Path, file: File) -> Result<State, StoreError> {
    let io_error = |source| StoreError::Io {
        action: "read",
        path: path.to_owned(),
        source,
    };
    let mut lines = Vec::new();
    let mut reader = BufReader::new(file);
    loop {
        let mut line = Vec::new();
        let read = reader.read_until(b'\n', &mut line).map_err(io_error)?;
        if read == 0 {
            break;
        }
        lines.push(line);
    }
    let mut state = State::default();
    let count = lines.len();
    for (index, line) in lines.iter().enumerate() {
        let number = index + 1;
        if !line.ends_with(b"\n") {
            // Only the last line can lack its newline. It is a write that never completed, so
            // the change it carried was never reported as done.
            tracing::warn!(path = %path.display(), line = number, "ignoring a torn last line of snapshot metadata");
            debug_assert_eq!(number, count);
            break;
        }
        let corrupt = |source| StoreError::Corrupt {
            path: path.to_owned(),
            line: number,
            source,
        };
        if index == 0 {
            let header: Header = serde_json::from_slice(line).map_err(corrupt)?;
            if header.format != FORMAT_VERSION {
                return Err(StoreError::UnsupportedVersion {
                    path: path.to_owned(),
                    found: header.format,
                });
            }
            continue;
        }
        let entry: Entry = serde_json::from_slice(line).map_err(corrupt)?;
        state.apply(entry.next_id, &entry.ops);
    }
    Ok(state)
}

/// Writes `state` as a fresh log through a synced temporary file and a rename. Returns the
/// new file's length.
fn write_compacted(path: &Path, state: &State) -> Result<u64, StoreError> {
    let io_error = |action| {
        move |source| StoreError::Io {
            action,
            path: path.to_owned(),
            source,
        }
    };
    let dir = path.parent().unwrap_or(Path::new("."));
    let temp = path.with_extension("log.tmp");
    let mut bytes = serde_json::to_vec(&Header {
        format: FORMAT_VERSION,
    })
    .map_err(|e| io_error("encode")(std::io::Error::other(e)))?;
    bytes.push(b'\n');
    let ops = state
        .snapshots
        .iter()
        .map(|(key, record)| Op::Put {
            key: key.clone(),
            record: record.clone(),
        })
        .collect();
    let entry = Entry {
        next_id: state.next_id,
        ops,
    };
    bytes.extend(
        serde_json::to_vec(&entry).map_err(|e| io_error("encode")(std::io::Error::other(e)))?,
    );
    bytes.push(b'\n');

    let mut file = File::create(&temp).map_err(io_error("create"))?;
    file.write_all(&bytes).map_err(io_error("write"))?;
    file.sync_all().map_err(io_error("sync"))?;
    drop(file);
    std::fs::rename(&temp, path).map_err(io_error("replace"))?;
    File::open(dir)
        .and_then(|dir| dir.sync_all())
        .map_err(io_error("sync the directory of"))?;
    Ok(bytes.len() as u64)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn record(id: u64, kind: Kind) -> Record {
        let now = SystemTime::UNIX_EPOCH + std::time::Duration::from_secs(1_700_000_000);
        Record {
            id,
            kind,
            parent: None,
            labels: Labels::new(),
            created: now,
            updated: now,
            usage: None,
        }
    }

    #[test]
    fn changes_survive_reopen() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("metadata.log");
        let mut store = Store::open(&path).unwrap();
        store
            .apply(
                1,
                vec![Op::Put {
                    key: "a".into(),
                    record: record(0, Kind::Active),
                }],
            )
            .unwrap();
        store
            .apply(
                2,
                vec![
                    Op::Delete { key: "a".into() },
                    Op::Put {
                        key: "b".into(),
                        record: record(0, Kind::Committed),
                    },
                ],
            )
            .unwrap();
        drop(store);

        let store = Store::open(&path).unwrap();
        assert_eq!(store.state().snapshots.len(), 1);
        assert_eq!(store.state().snapshots["b"].kind, Kind::Committed);
        assert_eq!(store.state().next_id, 2);
    }

    #[test]
    fn torn_last_line_is_ignored() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("metadata.log");
        let mut store = Store::open(&path).unwrap();
        store
            .apply(
                1,
                vec![Op::Put {
                    key: "a".into(),
                    record: record(0, Kind::Active),
                }],
            )
            .unwrap();
        drop(store);
        let mut file = OpenOptions::new().append(true).open(&path).unwrap();
        file.write_all(br#"{"next_id":2,"ops":[{"put":{"key":"b","rec"#)
            .unwrap();
        drop(file);

        let store = Store::open(&path).unwrap();
        assert_eq!(store.state().snapshots.keys().collect::<Vec<_>>(), ["a"]);
    }

    #[test]
    fn corrupt_middle_line_is_rejected() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("metadata.log");
        std::fs::write(
            &path,
            "{\"format\":1}\nnot json\n{\"next_id\":0,\"ops\":[]}\n",
        )
        .unwrap();
        let error = Store::open(&path).unwrap_err();
        assert!(
            matches!(error, StoreError::Corrupt { line: 2, .. }),
            "{error}"
        );
    }

    #[test]
    fn newer_format_is_rejected() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("metadata.log");
        std::fs::write(&path, "{\"format\":9}\n").unwrap();
        let error = Store::open(&path).unwrap_err();
        assert!(
            matches!(error, StoreError::UnsupportedVersion { found: 9, .. }),
            "{error}"
        );
    }

    #[test]
    fn directory_numbers_are_not_reused_after_delete() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("metadata.log");
        let mut store = Store::open(&path).unwrap();
        store
            .apply(
                8,
                vec![Op::Put {
                    key: "a".into(),
                    record: record(7, Kind::Active),
                }],
            )
            .unwrap();
        store
            .apply(8, vec![Op::Delete { key: "a".into() }])
            .unwrap();
        drop(store);
        let store = Store::open(&path).unwrap();
        assert_eq!(store.state().next_id, 8);
    }

    #[test]
    fn long_log_is_compacted() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("metadata.log");
        let mut store = Store::open(&path).unwrap();
        for n in 0..(COMPACT_SLACK as u64 + 10) {
            store
                .apply(
                    n + 1,
                    vec![Op::Put {
                        key: "a".into(),
                        record: record(n, Kind::Active),
                    }],
                )
                .unwrap();
        }
        let lines = std::fs::read_to_string(&path).unwrap().lines().count();
        assert!(lines < 20, "log has {lines} lines");
        drop(store);
        let store = Store::open(&path).unwrap();
        assert_eq!(store.state().snapshots["a"].id, COMPACT_SLACK as u64 + 9);
    }
}
