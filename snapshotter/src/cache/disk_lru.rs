//! Byte accounting and least-recently-used order of the disk tier, kept in memory.
//!
//! The files are the truth; this table mirrors them so that lookups, budget checks and eviction
//! never touch the file system. It is rebuilt from the directory at startup.

use std::collections::{BTreeMap, HashMap};

use estargz::Digest;

use super::key::ChunkKey;

#[derive(Debug, Clone, Copy)]
struct Entry {
    size: u64,
    tick: u64,
    /// The file's bytes are known to hash to the chunk digest: this process wrote them after
    /// verifying them, or read and checked them once.
    verified: bool,
}

/// Sizes and access order of the files of the disk tier, plus bytes reserved by writes in
/// progress.
///
/// Invariant: `committed` is the sum of the sizes in `entries`, and `order` contains exactly one
/// `tick → key` pair per entry.
#[derive(Debug)]
pub(crate) struct DiskLru {
    budget: u64,
    entries: HashMap<ChunkKey, Entry>,
    order: BTreeMap<u64, ChunkKey>,
    next_tick: u64,
    committed: u64,
    reserved: u64,
}

/// A file to delete, chosen by eviction.
pub(crate) type Victim = (ChunkKey, u64);

impl DiskLru {
    pub(crate) fn new(budget: u64) -> Self {
        DiskLru {
            budget,
            entries: HashMap::new(),
            order: BTreeMap::new(),
            next_tick: 0,
            committed: 0,
            reserved: 0,
        }
    }

    /// Bytes of committed files plus reservations.
    pub(crate) fn used(&self) -> u64 {
        self.committed + self.reserved
    }

    pub(crate) fn contains(&self, key: &ChunkKey) -> bool {
        self.entries.contains_key(key)
    }

    /// Marks `key` as just used; returns `None` when it is absent, otherwise whether its file is
    /// known to be verified.
    pub(crate) fn touch(&mut self, key: &ChunkKey) -> Option<bool> {
        let tick = self.next_tick;
        let entry = self.entries.get_mut(key)?;
        self.order.remove(&entry.tick);
        entry.tick = tick;
        self.order.insert(tick, *key);
        self.next_tick += 1;
        Some(entry.verified)
    }

    /// Records that the file of `key` was read and matched its digest.
    pub(crate) fn mark_verified(&mut self, key: &ChunkKey) {
        if let Some(entry) = self.entries.get_mut(key) {
            entry.verified = true;
        }
    }

    /// Reserves `size` bytes for a write, evicting least recently used files as needed.
    ///
    /// Returns the files to delete, or `None` when `size` alone exceeds the budget or the
    /// reservations of other writes leave no room.
    pub(crate) fn reserve(&mut self, size: u64) -> Option<Vec<Victim>> {
        if size > self.budget || self.reserved + size > self.budget {
            return None;
        }
        let mut victims = Vec::new();
        while self.used() + size > self.budget {
            match self.pop_oldest() {
                Some(victim) => victims.push(victim),
                None => break,
            }
        }
        self.reserved += size;
        Some(victims)
    }

    /// Gives back a reservation whose write failed or was dropped.
    pub(crate) fn release(&mut self, size: u64) {
        self.reserved = self.reserved.saturating_sub(size);
    }

    /// Turns a reservation into a committed file holding verified bytes. A file already recorded
    /// under `key` (two writers of the same chunk) is replaced, and its size is returned to the
    /// budget.
    pub(crate) fn commit(&mut self, key: ChunkKey, size: u64) {
        self.release(size);
        self.record(key, size, true);
    }

    /// Records a file found at startup, not verified yet. Call in ascending age order: the last
    /// call is the most recently used.
    pub(crate) fn insert(&mut self, key: ChunkKey, size: u64) {
        self.record(key, size, false);
    }

    fn record(&mut self, key: ChunkKey, size: u64, verified: bool) {
        self.remove(&key);
        let tick = self.next_tick;
        self.next_tick += 1;
        self.entries.insert(
            key,
            Entry {
                size,
                tick,
                verified,
            },
        );
        self.order.insert(tick, key);
        self.committed += size;
    }

    /// Forgets a file; returns its size when it was recorded.
    pub(crate) fn remove(&mut self, key: &ChunkKey) -> Option<u64> {
        let entry = self.entries.remove(key)?;
        self.order.remove(&entry.tick);
        self.committed -= entry.size;
        Some(entry.size)
    }

    /// Picks least recently used files totalling at least `bytes` (or all files).
    pub(crate) fn evict(&mut self, bytes: u64) -> Vec<Victim> {
        let mut freed = 0;
        let mut victims = Vec::new();
        while freed < bytes {
            match self.pop_oldest() {
                Some(victim) => {
                    freed += victim.1;
                    victims.push(victim);
                }
                None => break,
            }
        }
        victims
    }

    /// Forgets every file of one layer; returns the bytes freed.
    pub(crate) fn remove_layer(&mut self, layer: &Digest) -> u64 {
        let keys: Vec<ChunkKey> = self
            .entries
            .keys()
            .filter(|k| k.layer == *layer)
            .copied()
            .collect();
        keys.iter().filter_map(|k| self.remove(k)).sum()
    }

    fn pop_oldest(&mut self) -> Option<Victim> {
        let (_, key) = self.order.pop_first()?;
        let entry = self.entries.remove(&key)?;
        self.committed -= entry.size;
        Some((key, entry.size))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key(layer: &[u8], offset: u64) -> ChunkKey {
        ChunkKey {
            layer: Digest::of(layer),
            comp_offset: offset,
            inner_offset: 0,
            size: 10,
        }
    }

    #[test]
    fn reserve_evicts_least_recently_used_first() {
        let mut lru = DiskLru::new(30);
        for i in 0..3 {
            lru.reserve(10).unwrap();
            lru.commit(key(b"a", i), 10);
        }
        assert!(lru.touch(&key(b"a", 0)).is_some());
        let victims = lru.reserve(10).unwrap();
        assert_eq!(victims, vec![(key(b"a", 1), 10)]);
        assert_eq!(lru.used(), 30);
    }

    #[test]
    fn oversized_write_is_refused() {
        let mut lru = DiskLru::new(30);
        assert!(lru.reserve(31).is_none());
        assert_eq!(lru.used(), 0);
    }

    #[test]
    fn reservations_count_against_budget() {
        let mut lru = DiskLru::new(20);
        lru.reserve(10).unwrap();
        lru.reserve(10).unwrap();
        assert!(lru.reserve(10).is_none());
        lru.release(10);
        assert!(lru.reserve(10).is_some());
    }

    #[test]
    fn committing_same_key_twice_counts_once() {
        let mut lru = DiskLru::new(100);
        lru.reserve(10).unwrap();
        lru.commit(key(b"a", 0), 10);
        lru.reserve(10).unwrap();
        lru.commit(key(b"a", 0), 10);
        assert_eq!(lru.used(), 10);
    }

    #[test]
    fn remove_layer_frees_only_that_layer() {
        let mut lru = DiskLru::new(100);
        lru.insert(key(b"a", 0), 10);
        lru.insert(key(b"a", 1), 10);
        lru.insert(key(b"b", 0), 10);
        assert_eq!(lru.remove_layer(&Digest::of(b"a")), 20);
        assert_eq!(lru.used(), 10);
        assert!(lru.contains(&key(b"b", 0)));
        assert_eq!(lru.evict(100), vec![(key(b"b", 0), 10)]);
    }
}
