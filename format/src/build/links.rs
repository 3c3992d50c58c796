//! Hard links whose target path is replaced later in the same layer.
//!
//! GNU tar creates a hard link to whatever the target path holds when it reaches the link. When
//! a later entry replaces that path (an appended member, `tar -r`, a layer squasher), the link
//! keeps the old inode and its content. Since only the last entry of each path is written (see
//! [`super::plan`]), such links are rewritten so the output extracts to the same files:
//!
//! - the first surviving link to an inode whose own path was replaced becomes that inode's
//!   entry: its name, with the replaced entry's type, attributes and content;
//! - every other surviving link is pointed at the path that holds its inode in the output.
//!
//! A link whose target appears only after it (GNU tar fails on it) is left alone: the planner
//! moves the target up before it.

use std::collections::HashMap;

use crate::tar::clean_path;
use crate::tar::scan::{HeaderCopy, InputEntry, Kind};

/// Returns replacement entries by input index, for the surviving hard links that need one.
/// `cleaned` holds each entry's cleaned path and `survivor` the index of the last entry of each
/// path (reserved names excluded).
pub(super) fn rewrite_stale_links(
    entries: &[InputEntry],
    cleaned: &[Vec<u8>],
    survivor: &HashMap<Vec<u8>, usize>,
) -> HashMap<usize, InputEntry> {
    // The entry each hard link refers to when GNU tar reaches it, followed through links.
    let mut origin: Vec<Option<usize>> = vec![None; entries.len()];
    let mut current: HashMap<&[u8], usize> = HashMap::new();
    for (index, entry) in entries.iter().enumerate() {
        if entry.meta.kind == Kind::Hardlink {
            let target = clean_path(&entry.meta.link);
            origin[index] =
                current
                    .get(target.as_slice())
                    .and_then(|&at| match entries[at].meta.kind {
                        Kind::Hardlink => origin[at],
                        // Not a valid link target: readers drop the link, nothing to carry over.
                        Kind::Directory => None,
                        _ => Some(at),
                    });
        }
        current.insert(&cleaned[index], index);
    }

    let mut replaced = HashMap::new();
    // Output path of each replaced inode, once its first surviving link took it over.
    let mut holder: HashMap<usize, usize> = HashMap::new();
    for (index, entry) in entries.iter().enumerate() {
        let Some(o) = origin[index] else {
            continue;
        };
        if survivor.get(&cleaned[index]) != Some(&index) {
            continue;
        }
        let inode_survives = survivor.get(&cleaned[o]) == Some(&o);
        let path_holder = if inode_survives {
            o
        } else if let Some(&first) = holder.get(&o) {
            first
        } else {
            holder.insert(o, index);
            let mut taken = entries[o].clone();
            taken.meta.name = entry.meta.name.clone();
            taken.copy = HeaderCopy::Reencode;
            replaced.insert(index, taken);
            continue;
        };
        if clean_path(&entry.meta.link) != cleaned[path_holder] {
            let mut relinked = entry.clone();
            relinked.meta.link = entries[path_holder].meta.name.clone();
            relinked.copy = HeaderCopy::Reencode;
            replaced.insert(index, relinked);
        }
    }
    replaced
}
