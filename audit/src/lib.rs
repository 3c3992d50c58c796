//! `lazypull audit`: finds the bytes an image ships for nothing, and gates CI on them.
//!
//! The image is read as `lazypull convert` reads it (registry or `oci:DIR[:TAG]`, OCI and
//! Docker manifests, gzip, zstd, plain and eStargz layers). Each layer blob is decompressed as
//! a stream and walked by the format crate's tar scanner. No layer is unpacked to disk, so
//! memory grows with the number of entries (about 150 bytes each), not with layer size.
//!
//! # Data flow
//!
//! ```text
//! image ─▶ manifest + config (history)                               (run, history)
//!       ─▶ per layer, two at a time: blob ─▶ decompress ─▶ tar scan   (layer, stream)
//!            each entry: path, kind, size; each file: sha256, secret check (secrets)
//!       ─▶ overlay merge in layer order: whiteouts, opaque dirs        (overlay)
//!       ─▶ wasted bytes, efficiency, findings                          (analyze, rules)
//!       ─▶ gate thresholds ─▶ report (text or JSON)                    (gate, report, render)
//! ```
//!
//! # Example
//!
//! ```no_run
//! use lazypull_audit::{AuditOptions, audit, render_text};
//! use lazypull_converter::ImageRef;
//!
//! # async fn example() -> Result<(), lazypull_audit::AuditError> {
//! let image = ImageRef::parse("oci:/tmp/layout:latest", false)?;
//! let report = audit(AuditOptions::new(image)).await?;
//! print!("{}", render_text(&report));
//! # Ok(())
//! # }
//! ```
#![warn(missing_docs)]

pub mod analyze;
pub mod error;
pub mod gate;
pub mod history;
pub mod layer;
pub mod overlay;
pub mod render;
pub mod report;
pub mod rules;
mod run;
pub mod secrets;
pub mod stream;

pub use error::AuditError;
pub use gate::Thresholds;
pub use render::{render_json, render_text};
pub use report::Report;
pub use run::{AuditOptions, DEFAULT_TOP_FILES, audit};
