//! A raw tar writer with full control over how each header is encoded.
//!
//! The `tar` crate and GNU tar each pick one encoding for a given member. Edge-case tests
//! need the others too. They include ustar `prefix` splits with odd version bytes, PAX `x` and `g`
//! headers with arbitrary (binary) records, GNU `L`/`K` long names, the four GNU sparse
//! encodings, legacy and contiguous typeflags, base-256 ids, whiteouts, and archives with
//! or without the closing zero blocks. [`Builder`] writes all of them from [`Entry`]
//! descriptions, and [`recipes`] builds the layers of known failure cases.
//!
//! Every generated archive is checked against GNU tar in this crate's tests.
//!
//! ```
//! use lazypull_testkit::tarbuild::{Builder, Entry, NameEncoding, gzip};
//!
//! let mut tar = Builder::new();
//! tar.append(&Entry::dir("etc"));
//! tar.append(&Entry::file("etc/motd", "hello\n").mode(0o600).xattr("user.tag", [0, 1, 2]));
//! tar.append(&Entry::symlink("etc/link", "motd").link_encoding(NameEncoding::Pax));
//! let layer = gzip(&tar.finish(), 6);
//! assert_eq!(&layer[..2], &[0x1f, 0x8b]);
//! ```

mod builder;
mod compress;
mod content;
mod entry;
mod header;
mod pax;
pub mod recipes;
mod sparse;

pub use builder::{Builder, split_ustar};
pub use compress::{gzip, gzip_multi_member, zstd};
pub use content::{pattern, text_pattern};
pub use entry::{DEFAULT_MTIME, Entry, Kind, NameEncoding};
pub use header::{BLOCK, Header, Magic};
pub use pax::{PaxRecord, format_time as pax_time};
pub use sparse::{Sparse, SparseFormat};
