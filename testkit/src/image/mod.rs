//! Test images as OCI layouts: tiny generated ones, and the cached Debian-based image.

mod layout;
mod python;

pub use layout::{
    CONFIG_MEDIA_TYPE, LAYER_GZIP_MEDIA_TYPE, MANIFEST_MEDIA_TYPE, WrittenImage, sha256_digest,
    write_oci_layout,
};
pub use python::{PYTHON_IMAGE_TAG, cache_dir, python_image};
