//! Footer parser: any tail bytes and blob size give a location or a typed error.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if data.len() < 8 {
        return;
    }
    let (size, tail) = data.split_at(8);
    let size = u64::from_le_bytes(size.try_into().unwrap_or_default()).max(tail.len() as u64);
    if let Ok(location) = estargz::footer::parse_footer(tail, size) {
        assert!(location.offset.saturating_add(location.compressed_len) <= size);
    }
});
