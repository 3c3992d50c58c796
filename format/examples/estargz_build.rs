//! Converts an uncompressed tar file into an eStargz blob and prints what was written.
//!
//! ```text
//! cargo run --release -p lazypull-format --example estargz_build -- IN.tar OUT.blob [LEVEL] [THREADS] [gzip|zstd]
//! ```
//!
//! Used to measure the writer on its own, without registry or image handling.

use std::time::Instant;

use estargz::Compression;
use estargz::build::{BuildOptions, build};

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let args: Vec<String> = std::env::args().collect();
    if args.len() < 3 {
        return Err("usage: estargz_build IN.tar OUT.blob [LEVEL] [THREADS] [gzip|zstd]".into());
    }
    let compression = match args.get(5).map(String::as_str) {
        Some("zstd") => Compression::Zstd,
        _ => Compression::Gzip,
    };
    let default_level = if compression == Compression::Zstd {
        3
    } else {
        6
    };
    let options = BuildOptions {
        level: args
            .get(3)
            .map(|l| l.parse())
            .transpose()?
            .unwrap_or(default_level),
        threads: args.get(4).map(|t| t.parse()).transpose()?.unwrap_or(1),
        compression,
        ..BuildOptions::default()
    };
    let input = std::fs::File::open(&args[1])?;
    let output = std::io::BufWriter::new(std::fs::File::create(&args[2])?);
    let start = Instant::now();
    let out = build(input, output, &options)?;
    let seconds = start.elapsed().as_secs_f64();
    println!(
        "{{\"seconds\":{seconds:.3},\"level\":{},\"threads\":{},\"uncompressed\":{},\"blob\":{},\"toc_entries\":{},\"toc_digest\":\"{}\"}}",
        options.level,
        options.threads,
        out.uncompressed_size,
        out.blob_size,
        out.toc_entries,
        out.toc_digest
    );
    Ok(())
}
