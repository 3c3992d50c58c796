//! Output order of a layer's entries.
//!
//! Rules, applied to the scanned input:
//!
//! 1. Duplicate paths (compared after cleaning): the last entry wins and keeps its own position;
//!    earlier ones are dropped. This matches what GNU tar leaves on disk.
//! 2. Root-level `stargz.index.json`, `.prefetch.landmark` and `.no.prefetch.landmark` entries are
//!    dropped: re-converting an eStargz layer must yield exactly one TOC and one landmark.
//! 3. Prioritized paths come first, in the given order, followed by `.prefetch.landmark`. Without
//!    prioritized paths, `.no.prefetch.landmark` is the very first entry.
//! 4. Every entry is preceded by the entries of its parent directories: a directory entry that
//!    appears later in the input is moved up. A directory with no entry at all gets none: an
//!    invented entry would override the directory's mode, owner and mtime from the layers below
//!    when the layers are stacked (an upper layer holding only `tmp/file` would turn a lower
//!    `tmp/` of mode 1777 into 0755). Readers create such directories themselves.
//! 5. A hard link is preceded by its target (moved up if needed), so GNU tar can extract it.
//! 6. A hard link whose target path is replaced later in the layer keeps the old content: see
//!    [`super::links`].
//! 7. A hard link that resolves to nothing in the layer (its target is missing, only in a lower
//!    layer, a directory, or the link itself through a cycle) is dropped. GNU tar fails on it,
//!    so it creates no file, and readers of the reference format reject or loop on it.

use std::collections::{HashMap, HashSet};

use crate::tar::scan::{InputEntry, Kind};
use crate::tar::{clean_path, split_parent};
use crate::toc::TOC_TAR_NAME;
use crate::{NO_PREFETCH_LANDMARK, PREFETCH_LANDMARK};

/// One entry of the output, in order.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Item {
    /// An input entry, by index into the scanned entries.
    Input(usize),
    /// A landmark file.
    Landmark(LandmarkKind),
}

/// Which landmark a layer gets.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LandmarkKind {
    /// `.prefetch.landmark`: the entries before it are prioritized.
    Prefetch,
    /// `.no.prefetch.landmark`: nothing is prioritized.
    NoPrefetch,
}

impl LandmarkKind {
    /// File name of the landmark.
    pub fn name(self) -> &'static str {
        match self {
            LandmarkKind::Prefetch => PREFETCH_LANDMARK,
            LandmarkKind::NoPrefetch => NO_PREFETCH_LANDMARK,
        }
    }
}

/// The planned output.
#[derive(Debug, Clone, Default)]
pub struct Plan {
    /// Entries in output order.
    pub items: Vec<Item>,
    /// Input entries dropped because a later entry has the same path.
    pub duplicates_dropped: usize,
    /// Prioritized paths that the layer does not contain.
    pub prioritized_missing: Vec<Vec<u8>>,
    /// Prioritized paths that were found.
    pub prioritized_found: usize,
    /// Entries to write instead of the input entry of the same index (rule 6).
    pub replaced: HashMap<usize, InputEntry>,
    /// Hard links dropped because they resolve to nothing in the layer (rule 7), as written.
    pub dangling_links: Vec<Vec<u8>>,
}

impl Plan {
    /// The entry to write for input index `index`.
    pub fn entry<'a>(&'a self, entries: &'a [InputEntry], index: usize) -> &'a InputEntry {
        self.replaced.get(&index).unwrap_or(&entries[index])
    }
}

struct Planner<'a> {
    entries: &'a [InputEntry],
    replaced: &'a HashMap<usize, InputEntry>,
    cleaned: Vec<Vec<u8>>,
    survivor: HashMap<Vec<u8>, usize>,
    emitted: HashSet<Vec<u8>>,
    items: Vec<Item>,
}

impl Planner<'_> {
    fn entry(&self, index: usize) -> &InputEntry {
        self.replaced.get(&index).unwrap_or(&self.entries[index])
    }

    /// Returns whether entry `index` is a hard link that leads to no file of the layer.
    fn is_dangling_link(&self, index: usize) -> bool {
        if self.entry(index).meta.kind != Kind::Hardlink {
            return false;
        }
        let mut current = index;
        let mut seen = HashSet::new();
        while self.entry(current).meta.kind == Kind::Hardlink {
            if !seen.insert(current) {
                return true;
            }
            match self
                .survivor
                .get(&clean_path(&self.entry(current).meta.link))
            {
                Some(&next) => current = next,
                None => return true,
            }
        }
        self.entry(current).meta.kind == Kind::Directory
    }

    fn emit(&mut self, start: usize) {
        // Hard-link chains are walked iteratively so hostile input cannot exhaust the stack.
        let mut chain = vec![start];
        let mut seen = HashSet::new();
        while let Some(&last) = chain.last() {
            let entry = self.entry(last);
            if entry.meta.kind != Kind::Hardlink || !seen.insert(last) {
                break;
            }
            let target = clean_path(&entry.meta.link);
            match self.survivor.get(&target) {
                Some(&t) if !self.emitted.contains(&target) && t != last && !chain.contains(&t) => {
                    chain.push(t)
                }
                _ => break,
            }
        }
        while let Some(index) = chain.pop() {
            self.emit_one(index);
        }
    }

    fn emit_one(&mut self, index: usize) {
        let path = self.cleaned[index].clone();
        if self.emitted.contains(&path) {
            return;
        }
        self.ensure_parents(&path);
        self.emitted.insert(path);
        self.items.push(Item::Input(index));
    }

    fn ensure_parents(&mut self, path: &[u8]) {
        // The root has no name to synthesize, but a root entry ("./") is moved before everything.
        if !path.is_empty()
            && !self.emitted.contains(&b""[..])
            && let Some(&root) = self.survivor.get(&b""[..])
        {
            self.emitted.insert(Vec::new());
            self.items.push(Item::Input(root));
        }
        let (parent, _) = split_parent(path);
        let mut ancestors = Vec::new();
        let mut current = parent;
        while !current.is_empty() {
            ancestors.push(current);
            current = split_parent(current).0;
        }
        for dir in ancestors.into_iter().rev() {
            let Some(index) = self.survivor.get(dir).copied() else {
                continue;
            };
            if !self.emitted.contains(dir) {
                self.emitted.insert(dir.to_vec());
                self.items.push(Item::Input(index));
            }
            // Below a symlink or file nothing can be created: the entry stays as it is (GNU tar
            // and eStargz readers skip it).
            if self.entries[index].meta.kind != Kind::Directory {
                return;
            }
        }
    }
}

/// Plans the output order of `entries` with the given prioritized paths.
pub fn plan(entries: &[InputEntry], prioritized: &[Vec<u8>]) -> Plan {
    let cleaned: Vec<Vec<u8>> = entries.iter().map(|e| clean_path(&e.meta.name)).collect();
    let reserved = [
        TOC_TAR_NAME.as_bytes(),
        PREFETCH_LANDMARK.as_bytes(),
        NO_PREFETCH_LANDMARK.as_bytes(),
    ];
    let mut survivor = HashMap::with_capacity(entries.len());
    for (index, path) in cleaned.iter().enumerate() {
        if !reserved.contains(&path.as_slice()) {
            survivor.insert(path.clone(), index);
        }
    }
    let kept = survivor.len();
    let replaced = super::links::rewrite_stale_links(entries, &cleaned, &survivor);
    let reserved_count = cleaned
        .iter()
        .filter(|p| reserved.contains(&p.as_slice()))
        .count();

    let mut planner = Planner {
        entries,
        replaced: &replaced,
        cleaned,
        survivor,
        emitted: HashSet::with_capacity(entries.len()),
        items: Vec::with_capacity(entries.len() + 2),
    };
    let mut plan = Plan {
        duplicates_dropped: entries.len() - kept - reserved_count,
        ..Plan::default()
    };

    // Dangling links are removed from the survivors first, so no rule brings them back.
    let dangling: Vec<usize> = (0..entries.len())
        .filter(|&index| {
            planner.survivor.get(&planner.cleaned[index]) == Some(&index)
                && planner.is_dangling_link(index)
        })
        .collect();
    for &index in &dangling {
        planner.survivor.remove(&planner.cleaned[index]);
        plan.dangling_links.push(entries[index].meta.name.clone());
    }

    for path in prioritized {
        let path = clean_path(path);
        match planner.survivor.get(&path) {
            Some(&index) => {
                plan.prioritized_found += 1;
                planner.emit(index);
            }
            None => plan.prioritized_missing.push(path),
        }
    }
    if plan.prioritized_found > 0 {
        planner.items.push(Item::Landmark(LandmarkKind::Prefetch));
    } else {
        planner
            .items
            .insert(0, Item::Landmark(LandmarkKind::NoPrefetch));
    }
    for index in 0..entries.len() {
        let path = &planner.cleaned[index];
        if planner.survivor.get(path) == Some(&index) {
            planner.emit(index);
        }
    }
    plan.items = planner.items;
    plan.replaced = replaced;
    plan
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::tar::scan::{EntryMeta, HeaderCopy};

    fn entry(name: &str, kind: Kind, link: &str) -> InputEntry {
        InputEntry {
            header_start: 0,
            main_header: 0,
            header_end: 0,
            data_offset: 0,
            stored_len: 0,
            meta: EntryMeta {
                name: name.as_bytes().to_vec(),
                link: link.as_bytes().to_vec(),
                kind,
                mode: 0o644,
                uid: 0,
                gid: 0,
                uname: vec![],
                gname: vec![],
                mtime: crate::toc::Timestamp::new(7, 0),
                size: 0,
                devmajor: 0,
                devminor: 0,
                xattrs: vec![],
                extra_records: vec![],
            },
            copy: HeaderCopy::Verbatim,
            sparse: None,
        }
    }

    fn names(plan: &Plan, entries: &[InputEntry]) -> Vec<String> {
        plan.items
            .iter()
            .map(|item| match item {
                Item::Input(i) => String::from_utf8_lossy(&entries[*i].meta.name).into_owned(),
                Item::Landmark(kind) => kind.name().to_string(),
            })
            .collect()
    }

    #[test]
    fn prioritized_hardlink_brings_its_target() {
        let entries = vec![
            entry("usr/", Kind::Directory, ""),
            entry("usr/bin/", Kind::Directory, ""),
            entry("usr/bin/python3.8", Kind::Regular, ""),
            entry("usr/bin/python3", Kind::Hardlink, "usr/bin/python3.8"),
            entry("usr/lib/", Kind::Directory, ""),
        ];
        let plan = plan(&entries, &[b"usr/bin/python3".to_vec()]);
        assert_eq!(
            names(&plan, &entries),
            [
                "usr/",
                "usr/bin/",
                "usr/bin/python3.8",
                "usr/bin/python3",
                ".prefetch.landmark",
                "usr/lib/"
            ]
        );
    }

    #[test]
    fn implied_parents_get_no_entry() {
        let entries = vec![
            entry("bin/app", Kind::Regular, ""),
            entry("bin/app.runfiles/_main/main.go", Kind::Regular, ""),
            entry("bin/app.runfiles/_main/app_/app", Kind::Hardlink, "bin/app"),
        ];
        let plan = plan(&entries, &[]);
        assert_eq!(
            names(&plan, &entries),
            [
                ".no.prefetch.landmark",
                "bin/app",
                "bin/app.runfiles/_main/main.go",
                "bin/app.runfiles/_main/app_/app"
            ]
        );
    }

    #[test]
    fn directory_between_implied_ancestors_moves_up() {
        let entries = vec![
            entry("a/b/c/f", Kind::Regular, ""),
            entry("a/b/", Kind::Directory, ""),
        ];
        let plan = plan(&entries, &[]);
        assert_eq!(
            names(&plan, &entries),
            [".no.prefetch.landmark", "a/b/", "a/b/c/f"]
        );
    }

    #[test]
    fn directory_listed_after_children_moves_up() {
        let entries = vec![
            entry("d/f", Kind::Regular, ""),
            entry("d/", Kind::Directory, ""),
        ];
        let plan = plan(&entries, &[]);
        assert_eq!(
            names(&plan, &entries),
            [".no.prefetch.landmark", "d/", "d/f"]
        );
    }

    #[test]
    fn duplicates_keep_the_last_entry_in_its_position() {
        let entries = vec![
            entry("etc/", Kind::Directory, ""),
            entry("etc/conf", Kind::Regular, ""),
            entry("etc/", Kind::Directory, ""),
            entry("etc/conf", Kind::Regular, ""),
        ];
        let plan = plan(&entries, &[]);
        assert_eq!(
            plan.items,
            vec![
                Item::Landmark(LandmarkKind::NoPrefetch),
                Item::Input(2),
                Item::Input(3)
            ]
        );
        assert_eq!(plan.duplicates_dropped, 2);
    }

    #[test]
    fn links_to_a_replaced_file_keep_the_old_inode() {
        let mut entries = vec![
            entry("etc/f", Kind::Regular, ""),
            entry("etc/h", Kind::Hardlink, "etc/f"),
            entry("etc/h2", Kind::Hardlink, "etc/h"),
            entry("etc/f", Kind::Regular, ""),
            entry("etc/g", Kind::Hardlink, "etc/f"),
        ];
        entries[0].meta.size = 10;
        entries[0].data_offset = 512;
        entries[3].meta.size = 18;
        entries[3].data_offset = 2048;
        let plan = plan(&entries, &[]);
        assert_eq!(
            names(&plan, &entries),
            [".no.prefetch.landmark", "etc/h", "etc/h2", "etc/f", "etc/g"]
        );
        // etc/h takes over the first etc/f: its content, as a regular file.
        let h = plan.entry(&entries, 1);
        assert_eq!(h.meta.name, b"etc/h");
        assert_eq!(h.meta.kind, Kind::Regular);
        assert_eq!((h.meta.size, h.data_offset), (10, 512));
        // etc/h2 already names etc/h, and etc/g the etc/f that stays: both unchanged.
        assert_eq!(plan.replaced.keys().collect::<Vec<_>>(), [&1]);
    }

    #[test]
    fn links_through_a_replaced_link_point_at_the_inode_holder() {
        let entries = vec![
            entry("f", Kind::Regular, ""),
            entry("h", Kind::Hardlink, "f"),
            entry("h2", Kind::Hardlink, "h"),
            entry("h", Kind::Regular, ""),
        ];
        let plan = plan(&entries, &[]);
        // h was replaced, so h2 (the same inode as f) must name f.
        assert_eq!(plan.entry(&entries, 2).meta.link, b"f");
        assert_eq!(plan.entry(&entries, 2).meta.kind, Kind::Hardlink);
        assert_eq!(plan.replaced.len(), 1);
    }

    #[test]
    fn links_whose_target_stays_are_untouched() {
        let entries = vec![
            entry("a", Kind::Regular, ""),
            entry("b", Kind::Hardlink, "a"),
            entry("c", Kind::Hardlink, "./a"),
            entry("d", Kind::Hardlink, "later"),
            entry("later", Kind::Regular, ""),
        ];
        let plan = plan(&entries, &[]);
        assert!(plan.replaced.is_empty(), "{:?}", plan.replaced.keys());
    }

    #[test]
    fn old_toc_and_landmarks_are_dropped() {
        let entries = vec![
            entry(".prefetch.landmark", Kind::Regular, ""),
            entry("a", Kind::Regular, ""),
            entry("stargz.index.json", Kind::Regular, ""),
            entry("sub/stargz.index.json", Kind::Regular, ""),
        ];
        let plan = plan(&entries, &[]);
        assert_eq!(
            names(&plan, &entries),
            [".no.prefetch.landmark", "a", "sub/stargz.index.json"]
        );
        assert_eq!(plan.duplicates_dropped, 0);
    }

    #[test]
    fn no_directory_is_invented_below_a_symlink() {
        let entries = vec![
            entry("up", Kind::Symlink, ".."),
            entry("up/outside/dir/file", Kind::Regular, ""),
        ];
        let plan = plan(&entries, &[]);
        assert_eq!(
            names(&plan, &entries),
            [".no.prefetch.landmark", "up", "up/outside/dir/file"]
        );
    }

    #[test]
    fn hardlink_cycle_is_dropped() {
        let entries = vec![
            entry("a", Kind::Hardlink, "b"),
            entry("b", Kind::Hardlink, "a"),
        ];
        let plan = plan(&entries, &[]);
        assert_eq!(names(&plan, &entries), [".no.prefetch.landmark"]);
        assert_eq!(plan.dangling_links, [b"a".to_vec(), b"b".to_vec()]);
    }

    #[test]
    fn links_to_nothing_in_the_layer_are_dropped() {
        let entries = vec![
            entry("d/", Kind::Directory, ""),
            entry("self", Kind::Hardlink, "self"),
            entry("lower", Kind::Hardlink, "usr/bin/only-in-a-lower-layer"),
            entry("to-dir", Kind::Hardlink, "d"),
            entry("f", Kind::Regular, ""),
            entry("chained", Kind::Hardlink, "later"),
            entry("later", Kind::Hardlink, "f"),
        ];
        let plan = plan(&entries, &[b"self".to_vec(), b"chained".to_vec()]);
        assert_eq!(
            names(&plan, &entries),
            ["f", "later", "chained", ".prefetch.landmark", "d/"]
        );
        assert_eq!(plan.dangling_links.len(), 3);
        assert_eq!(plan.prioritized_missing, [b"self".to_vec()]);
    }

    #[test]
    fn missing_prioritized_paths_are_reported() {
        let entries = vec![entry("a", Kind::Regular, "")];
        let plan = plan(&entries, &[b"./nope".to_vec(), b"a".to_vec()]);
        assert_eq!(plan.prioritized_missing, vec![b"nope".to_vec()]);
        assert_eq!(names(&plan, &entries), ["a", ".prefetch.landmark"]);
    }
}
