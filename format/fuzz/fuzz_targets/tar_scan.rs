//! Tar scanner and writer: any input gives a blob or a typed error, never a panic.
#![no_main]

use estargz::build::{build, BuildOptions};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let options = BuildOptions { chunk_size: 4096, ..BuildOptions::default() };
    let _ = build(std::io::Cursor::new(data), Vec::new(), &options);
});
