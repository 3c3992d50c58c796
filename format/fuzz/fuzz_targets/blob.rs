//! Whole-blob reader: any bytes opened as a blob give an error or chunks that verify.
#![no_main]

use estargz::blob::{open_blob, read_chunk, BlobOptions};
use estargz::index::NodeId;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(opened) = open_blob(&data, &BlobOptions::default()) else { return };
    for i in 0..opened.index.node_count() {
        for chunk in opened.index.chunks(NodeId(i as u32)) {
            let _ = read_chunk(&data, chunk, opened.compression);
        }
    }
});
