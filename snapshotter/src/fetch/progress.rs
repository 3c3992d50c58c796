//! The chunks of a layer in blob order, and which compressed spans have been obtained.

use std::ops::Range;
use std::sync::atomic::{AtomicU64, Ordering};

use estargz::index::Chunk;

/// Every chunk of a layer sorted by compressed offset, with one "obtained" bit per distinct
/// compressed span.
///
/// Chunks are named by their index in `LayerIndex::all_chunks()`; this table stores 4 bytes and
/// one bit per chunk. Chunks decoded from one member (inner offsets) share a span and its bit.
#[derive(Debug)]
pub(crate) struct BlobOrder {
    order: Vec<u32>,
    obtained: Vec<AtomicU64>,
    total_bytes: u64,
    obtained_bytes: AtomicU64,
}

impl BlobOrder {
    /// Sorts `all` (the layer's chunks) into blob order.
    pub(crate) fn new(all: &[Chunk]) -> Self {
        let mut order: Vec<u32> = (0..all.len() as u32).collect();
        order.sort_by_key(|&i| {
            let c = &all[i as usize];
            (c.comp_offset(), c.inner_offset())
        });
        let mut total_bytes = 0;
        let mut previous = None;
        for &i in &order {
            let chunk = &all[i as usize];
            if previous != Some(chunk.comp_offset()) {
                total_bytes += chunk.comp_end() - chunk.comp_offset();
                previous = Some(chunk.comp_offset());
            }
        }
        let words = order.len().div_ceil(64);
        BlobOrder {
            order,
            obtained: (0..words).map(|_| AtomicU64::new(0)).collect(),
            total_bytes,
            obtained_bytes: AtomicU64::new(0),
        }
    }

    /// Number of chunks.
    pub(crate) fn len(&self) -> usize {
        self.order.len()
    }

    /// Returns the chunk at blob-order position `position`.
    pub(crate) fn chunk<'a>(&self, all: &'a [Chunk], position: usize) -> &'a Chunk {
        &all[self.order[position] as usize]
    }

    /// Positions of the chunks whose member starts before blob offset `end`.
    pub(crate) fn starting_before(&self, all: &[Chunk], end: u64) -> Range<usize> {
        0..self
            .order
            .partition_point(|&i| all[i as usize].comp_offset() < end)
    }

    /// Chunks after the span starting at `comp_offset`, in blob order, whose compressed span ends
    /// at or before `limit` and has not been obtained: the read-ahead candidates of a demand miss.
    pub(crate) fn following<'a>(
        &'a self,
        all: &'a [Chunk],
        comp_offset: u64,
        limit: u64,
    ) -> impl Iterator<Item = &'a Chunk> + 'a {
        let start = self
            .order
            .partition_point(|&i| all[i as usize].comp_offset() <= comp_offset);
        (start..self.order.len())
            .map(move |position| (position, self.chunk(all, position)))
            .take_while(move |(_, chunk)| chunk.comp_end() <= limit)
            .filter(move |&(position, _)| !self.is_obtained(all, position))
            .map(|(_, chunk)| chunk)
    }

    /// Position of the first chunk of the span starting at `comp_offset`.
    fn span_position(&self, all: &[Chunk], comp_offset: u64) -> usize {
        self.order
            .partition_point(|&i| all[i as usize].comp_offset() < comp_offset)
    }

    /// Records that `chunk` has been obtained.
    pub(crate) fn mark(&self, all: &[Chunk], chunk: &Chunk) {
        let position = self.span_position(all, chunk.comp_offset());
        let Some(word) = self.obtained.get(position / 64) else {
            return;
        };
        let bit = 1u64 << (position % 64);
        if word.fetch_or(bit, Ordering::Relaxed) & bit == 0 {
            self.obtained_bytes
                .fetch_add(chunk.comp_end() - chunk.comp_offset(), Ordering::Relaxed);
        }
    }

    /// Returns whether the span holding `chunk` has been obtained.
    pub(crate) fn is_chunk_obtained(&self, all: &[Chunk], chunk: &Chunk) -> bool {
        let first = self.span_position(all, chunk.comp_offset());
        self.obtained
            .get(first / 64)
            .is_some_and(|w| w.load(Ordering::Relaxed) & (1 << (first % 64)) != 0)
    }

    /// Returns whether the span of the chunk at `position` has been obtained.
    pub(crate) fn is_obtained(&self, all: &[Chunk], position: usize) -> bool {
        let first = self.span_position(all, self.chunk(all, position).comp_offset());
        self.obtained
            .get(first / 64)
            .is_some_and(|w| w.load(Ordering::Relaxed) & (1 << (first % 64)) != 0)
    }

    /// Obtained share of the compressed payload, from 0.0 to 1.0 (1.0 for a layer without chunks).
    pub(crate) fn fraction(&self) -> f64 {
        if self.total_bytes == 0 {
            return 1.0;
        }
        self.obtained_bytes.load(Ordering::Relaxed) as f64 / self.total_bytes as f64
    }

    /// Heap bytes held.
    pub(crate) fn heap_bytes(&self) -> usize {
        self.order.capacity() * 4 + self.obtained.capacity() * 8
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn chunk(comp: Range<u64>, inner: u64) -> Chunk {
        Chunk::new(0, 10, comp.start, comp.end, inner, None).unwrap()
    }

    #[test]
    fn fraction_counts_shared_spans_once() {
        let all = [chunk(100..200, 0), chunk(0..100, 0), chunk(100..200, 10)];
        let order = BlobOrder::new(&all);
        assert_eq!(order.chunk(&all, 0).comp_offset(), 0);
        order.mark(&all, &all[2]);
        assert_eq!(order.fraction(), 0.5);
        order.mark(&all, &all[0]);
        assert_eq!(order.fraction(), 0.5);
        assert!(order.is_obtained(&all, 1));
        assert!(order.is_obtained(&all, 2));
        assert!(!order.is_obtained(&all, 0));
        order.mark(&all, &all[1]);
        assert_eq!(order.fraction(), 1.0);
    }

    #[test]
    fn following_stops_at_the_limit_and_skips_obtained_spans() {
        let all = [
            chunk(0..100, 0),
            chunk(100..200, 0),
            chunk(200..300, 0),
            chunk(300..450, 0),
        ];
        let order = BlobOrder::new(&all);
        order.mark(&all, &all[2]);
        let ahead: Vec<u64> = order
            .following(&all, 0, 400)
            .map(|c| c.comp_offset())
            .collect();
        assert_eq!(ahead, [100]);
        let ahead: Vec<u64> = order
            .following(&all, 0, 450)
            .map(|c| c.comp_offset())
            .collect();
        assert_eq!(ahead, [100, 300]);
    }

    #[test]
    fn starting_before_selects_prefix() {
        let all = [chunk(0..100, 0), chunk(100..200, 0), chunk(200..300, 0)];
        let order = BlobOrder::new(&all);
        assert_eq!(order.starting_before(&all, 150), 0..2);
        assert_eq!(order.starting_before(&all, 0), 0..0);
    }
}
