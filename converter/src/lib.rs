//! Converts container images into eStargz images that can be pulled lazily.
//!
//! Source and destination are each a registry repository or an OCI image layout directory
//! (`oci:DIR[:TAG]`). OCI and Docker schema 2 manifests, indexes and manifest lists are read.
//! The result always uses OCI media types, because only OCI descriptors carry the annotations
//! lazy pulling depends on.
//!
//! # Data flow
//!
//! ```text
//! source ─▶ manifest or index ─▶ platform manifests + configs            (resolve)
//!        ─▶ unique layers, `jobs` at a time, each on a blocking thread:   (layer)
//!             blob file ─▶ decompress (gzip, multi-member; zstd; none) ─▶ temporary tar
//!                       ─▶ eStargz writer ─▶ temporary blob ─▶ destination
//!           or, for a layer that is already eStargz: verify and keep it
//!        ─▶ configs (new diffIDs) ─▶ manifests ─▶ index ─▶ tag            (assemble)
//! ```
//!
//! Memory is bounded by `jobs × threads × chunk size` plus small buffers; layer payloads never
//! sit whole in memory. Temporary files live in `--tmpdir` and are removed on every path. The
//! destination tag is written last, so a failure never leaves a partial image under it.
//!
//! # Layers
//!
//! * gzip (several members allowed), zstd and uncompressed tar layers are converted; the
//!   compression is detected from the bytes, not trusted from the media type;
//! * layers that are already eStargz pass through unchanged unless `reconvert` is set; their
//!   digest, TOC (against the TOC-digest annotation when present) and diffID are verified, and
//!   missing annotations are added;
//! * non-distributable and foreign layers are kept as they are and never fetched.
//!
//! Every eStargz layer descriptor gets `containerd.io/snapshot/stargz/toc.digest` and
//! `io.containers.estargz.uncompressed-size`; the config's `rootfs.diff_ids` is rewritten in
//! place, every other byte of it kept.
//!
//! # Example
//!
//! ```no_run
//! use lazypull_converter::{ConvertOptions, ImageRef, convert};
//! use lazypull_converter::CancellationToken;
//!
//! # async fn example() -> Result<(), lazypull_converter::ConvertError> {
//! let source = ImageRef::parse("127.0.0.1:5000/python:3.11", false)?;
//! let destination = ImageRef::parse("oci:/tmp/python-esgz:3.11", false)?;
//! let report = convert(ConvertOptions::new(source, destination), CancellationToken::new()).await?;
//! print!("{}", lazypull_converter::render_table(&report));
//! # Ok(())
//! # }
//! ```
#![warn(missing_docs)]

mod assemble;
pub mod config;
pub mod descriptor;
pub mod error;
pub mod image_ref;
pub mod json_edit;
pub mod layer;
pub mod media;
pub mod options;
mod pipeline;
pub mod platform;
pub mod prioritize;
pub mod progress;
pub mod report;
pub mod resolve;
pub mod rewrite;
pub mod store;

pub use error::ConvertError;
pub use estargz::Compression;
pub use image_ref::ImageRef;
pub use options::{ConvertOptions, ProgressMode};
pub use pipeline::convert;
pub use platform::Platform;
pub use report::{ConvertReport, LayerReport, ManifestReport, render_table};
/// The cancellation handle [`convert`] takes, re-exported so callers need no extra dependency.
pub use tokio_util::sync::CancellationToken;
