//! TOC JSON to index: any bytes give an index or a typed error, and an index answers every
//! query without panicking.
#![no_main]

use estargz::index::{IndexOptions, LayerIndex, NodeId};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let options = IndexOptions { overlay_whiteouts: true, hide_landmarks: true, ..IndexOptions::default() };
    let Ok(index) = LayerIndex::from_toc_json(data, 1 << 30, &options) else { return };
    for i in 0..index.node_count() {
        let id = NodeId(i as u32);
        let _ = index.children(id).count();
        let _ = index.xattrs(id).count();
        let _ = index.chunks_in(id, 0..u64::MAX);
        let _ = index.symlink_target(id);
    }
});
