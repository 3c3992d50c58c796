//! Detects files read sequentially, so the chunks after the current one are loaded only for
//! readers that will need them.

use std::collections::HashMap;
use std::sync::Mutex;

use estargz::index::NodeId;

/// Maximum number of files whose position is tracked. When the table is full, it starts over. A reader whose
/// position is forgotten is seen as sequential again after its next read.
const TRACKED_FILES: usize = 1024;

/// End offset of the last read of each recently read file.
#[derive(Debug, Default)]
pub(crate) struct SequentialReads {
    ends: Mutex<HashMap<NodeId, u64>>,
}

impl SequentialReads {
    /// Records a read of `[offset, end)` of `node` and returns whether it starts where the
    /// previous read of the same file ended (the kernel splits a sequential reader's requests
    /// into adjacent ranges).
    pub(crate) fn record(&self, node: NodeId, offset: u64, end: u64) -> bool {
        let mut ends = self
            .ends
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        if ends.len() >= TRACKED_FILES && !ends.contains_key(&node) {
            ends.clear();
        }
        let previous = ends.insert(node, end);
        previous == Some(offset) && offset > 0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn adjacent_reads_are_sequential() {
        let reads = SequentialReads::default();
        assert!(!reads.record(NodeId(3), 0, 4096));
        assert!(reads.record(NodeId(3), 4096, 8192));
        assert!(reads.record(NodeId(3), 8192, 65536));
    }

    #[test]
    fn jumps_and_other_files_are_not() {
        let reads = SequentialReads::default();
        assert!(!reads.record(NodeId(3), 0, 4096));
        assert!(!reads.record(NodeId(4), 4096, 8192));
        assert!(!reads.record(NodeId(3), 1 << 20, (1 << 20) + 4096));
        assert!(!reads.record(NodeId(3), 0, 4096));
    }

    #[test]
    fn table_stays_bounded() {
        let reads = SequentialReads::default();
        for node in 0..(3 * TRACKED_FILES as u32) {
            reads.record(NodeId(node), 0, 10);
        }
        assert!(reads.ends.lock().unwrap().len() <= TRACKED_FILES);
    }
}
