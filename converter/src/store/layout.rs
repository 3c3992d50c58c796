//! OCI image layout directories as source and destination.
//!
//! A layout is `oci-layout`, `index.json` and `blobs/<algorithm>/<hex>`. Tags are the
//! `org.opencontainers.image.ref.name` annotations of `index.json` entries. Each file is written
//! to a temporary file in the same directory and then renamed, so writes are atomic per file.
//! `index.json` is written last, so a failed conversion never changes what a tag points at.
//! Concurrent writers to the same layout are not coordinated.

use std::io::Write;
use std::path::{Path, PathBuf};

use crate::descriptor::{Descriptor, index_view, verify_content};
use crate::error::ConvertError;
use crate::json_edit::{RawObject, to_raw};
use crate::media;

/// Annotation that carries a tag in `index.json`.
pub const REF_NAME_ANNOTATION: &str = "org.opencontainers.image.ref.name";

const OCI_LAYOUT_FILE: &str = "oci-layout";
const OCI_LAYOUT_CONTENT: &[u8] = br#"{"imageLayoutVersion":"1.0.0"}"#;
const INDEX_FILE: &str = "index.json";

/// An OCI image layout directory.
#[derive(Debug, Clone)]
pub struct Layout {
    dir: PathBuf,
}

impl Layout {
    /// Opens an existing layout for reading.
    pub fn open(dir: &Path) -> Result<Layout, ConvertError> {
        if !dir.is_dir() {
            return Err(ConvertError::InvalidLayout {
                path: dir.to_path_buf(),
                reason: "the directory does not exist".into(),
            });
        }
        if !dir.join(INDEX_FILE).is_file() {
            return Err(ConvertError::InvalidLayout {
                path: dir.to_path_buf(),
                reason: "it has no index.json, so it is not an OCI image layout".into(),
            });
        }
        Ok(Layout {
            dir: dir.to_path_buf(),
        })
    }

    /// Opens a layout for writing, creating the directory, `oci-layout` and `blobs/sha256` when
    /// missing. An existing layout keeps its other images.
    pub fn create(dir: &Path) -> Result<Layout, ConvertError> {
        let blobs = dir.join("blobs").join("sha256");
        std::fs::create_dir_all(&blobs).map_err(|e| ConvertError::io("creating", &blobs, e))?;
        let marker = dir.join(OCI_LAYOUT_FILE);
        if !marker.exists() {
            std::fs::write(&marker, OCI_LAYOUT_CONTENT)
                .map_err(|e| ConvertError::io("writing", &marker, e))?;
        }
        Ok(Layout {
            dir: dir.to_path_buf(),
        })
    }

    /// Returns the layout directory.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// Finds the descriptor tagged `tag` in `index.json`.
    ///
    /// When the tag was not given explicitly and no entry carries it, a layout with exactly one
    /// entry selects that entry (layouts written without tags are common).
    pub fn resolve_tag(&self, tag: &str, tag_defaulted: bool) -> Result<Descriptor, ConvertError> {
        let path = self.dir.join(INDEX_FILE);
        let bytes = std::fs::read(&path).map_err(|e| ConvertError::io("reading", &path, e))?;
        let object = RawObject::parse(&bytes)
            .map_err(|reason| self.invalid(format!("index.json: {reason}")))?;
        let index = index_view(object, &path.display().to_string())?;
        let tagged: Vec<&Descriptor> = index
            .manifests
            .iter()
            .filter(|d| d.annotations.get(REF_NAME_ANNOTATION).map(String::as_str) == Some(tag))
            .collect();
        match tagged.as_slice() {
            [one] => return Ok((*one).clone()),
            [] => {}
            _ => {
                return Err(self.invalid(format!(
                    "index.json lists tag {tag:?} {} times",
                    tagged.len()
                )));
            }
        }
        if tag_defaulted && index.manifests.len() == 1 {
            tracing::info!(layout = %self.dir.display(), "no tag given and none named latest: using the only image");
            return Ok(index.manifests[0].clone());
        }
        let available: Vec<&str> = index
            .manifests
            .iter()
            .filter_map(|d| d.annotations.get(REF_NAME_ANNOTATION).map(String::as_str))
            .collect();
        Err(ConvertError::TagNotInLayout {
            layout: self.dir.clone(),
            tag: tag.to_string(),
            available: if available.is_empty() {
                "none".to_string()
            } else {
                available.join(", ")
            },
        })
    }

    /// Path of the blob with `digest`.
    pub fn blob_path(&self, digest: &str) -> Result<PathBuf, ConvertError> {
        let parsed: estargz::Digest =
            digest
                .parse()
                .map_err(|_| ConvertError::UnsupportedMediaType {
                    what: "blob",
                    digest: digest.to_string(),
                    media_type: String::new(),
                    hint: "; only sha256 digests are supported",
                })?;
        Ok(self.dir.join("blobs").join("sha256").join(parsed.hex()))
    }

    /// Reads a small blob (manifest, index, config) and checks its digest and size.
    pub fn read_blob(
        &self,
        descriptor: &Descriptor,
        what: &'static str,
        limit: u64,
    ) -> Result<Vec<u8>, ConvertError> {
        if descriptor.size > limit {
            return Err(ConvertError::TooLarge {
                what,
                digest: descriptor.digest.clone(),
                size: descriptor.size,
                limit,
            });
        }
        let path = self.blob_path(&descriptor.digest)?;
        let file = std::fs::File::open(&path)
            .map_err(|e| self.missing_blob(what, &descriptor.digest, &path, e))?;
        let mut bytes = Vec::new();
        std::io::Read::read_to_end(&mut std::io::Read::take(file, limit + 1), &mut bytes)
            .map_err(|e| ConvertError::io("reading", &path, e))?;
        verify_content(what, &descriptor.digest, Some(descriptor.size), &bytes)?;
        Ok(bytes)
    }

    /// Opens a layer blob for reading; the caller verifies its digest while reading it.
    pub fn open_blob(&self, digest: &str) -> Result<(PathBuf, std::fs::File), ConvertError> {
        let path = self.blob_path(digest)?;
        let file =
            std::fs::File::open(&path).map_err(|e| self.missing_blob("layer", digest, &path, e))?;
        Ok((path, file))
    }

    /// True when the blob is present.
    pub fn has_blob(&self, digest: &str) -> Result<bool, ConvertError> {
        Ok(self.blob_path(digest)?.is_file())
    }

    /// Writes a small blob unless it is present.
    pub fn write_blob(&self, digest: &str, bytes: &[u8]) -> Result<(), ConvertError> {
        let dest = self.blob_path(digest)?;
        if dest.is_file() {
            return Ok(());
        }
        let mut temp = self.temp_file()?;
        temp.write_all(bytes)
            .map_err(|e| ConvertError::io("writing", temp.path(), e))?;
        self.persist(temp, &dest)
    }

    /// Installs the file at `source` as the blob `digest`: a rename when possible (the source
    /// is consumed), else a hard link or a copy.
    pub fn install_blob(
        &self,
        digest: &str,
        source: &Path,
        consume: bool,
    ) -> Result<(), ConvertError> {
        let dest = self.blob_path(digest)?;
        if dest.is_file() {
            return Ok(());
        }
        if consume && std::fs::rename(source, &dest).is_ok() {
            return set_readable(&dest);
        }
        if !consume && std::fs::hard_link(source, &dest).is_ok() {
            return Ok(());
        }
        let mut temp = self.temp_file()?;
        let mut input =
            std::fs::File::open(source).map_err(|e| ConvertError::io("reading", source, e))?;
        std::io::copy(&mut input, temp.as_file_mut())
            .map_err(|e| ConvertError::io("writing", temp.path(), e))?;
        self.persist(temp, &dest)
    }

    /// Points `tag` at `descriptor` in `index.json`, replacing any entry with the same tag and
    /// keeping every other entry and member.
    pub fn set_tag(
        &self,
        tag: &str,
        media_type: &str,
        digest: &str,
        size: u64,
    ) -> Result<(), ConvertError> {
        let path = self.dir.join(INDEX_FILE);
        let mut index = match std::fs::read(&path) {
            Ok(bytes) => RawObject::parse(&bytes)
                .map_err(|reason| self.invalid(format!("index.json: {reason}")))?,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                let mut fresh = RawObject::default();
                fresh.set("schemaVersion", &2);
                fresh.set("mediaType", media::OCI_INDEX);
                fresh
            }
            Err(e) => return Err(ConvertError::io("reading", &path, e)),
        };
        let entries: Vec<RawObject> = index
            .get_as("manifests")
            .map_err(|reason| self.invalid(format!("index.json: {reason}")))?
            .unwrap_or_default();
        let mut kept: Vec<Box<serde_json::value::RawValue>> = Vec::with_capacity(entries.len() + 1);
        for entry in entries {
            let annotations: std::collections::BTreeMap<String, String> = entry
                .get_as("annotations")
                .ok()
                .flatten()
                .unwrap_or_default();
            if annotations.get(REF_NAME_ANNOTATION).map(String::as_str) != Some(tag) {
                kept.push(entry.to_raw());
            }
        }
        let mut entry = RawObject::default();
        entry.set("mediaType", media_type);
        entry.set("digest", digest);
        entry.set("size", &size);
        entry.set(
            "annotations",
            &std::collections::BTreeMap::from([(REF_NAME_ANNOTATION, tag)]),
        );
        kept.push(entry.to_raw());
        index.set_raw("manifests", to_raw(&kept));

        let mut temp = self.temp_file()?;
        temp.write_all(&index.to_vec())
            .map_err(|e| ConvertError::io("writing", temp.path(), e))?;
        self.persist(temp, &path)
    }

    fn temp_file(&self) -> Result<tempfile::NamedTempFile, ConvertError> {
        tempfile::Builder::new()
            .prefix(".lazypull-")
            .tempfile_in(&self.dir)
            .map_err(|e| ConvertError::io("creating a temporary file in", &self.dir, e))
    }

    fn persist(&self, temp: tempfile::NamedTempFile, dest: &Path) -> Result<(), ConvertError> {
        temp.as_file()
            .sync_all()
            .map_err(|e| ConvertError::io("writing", temp.path(), e))?;
        temp.persist(dest)
            .map_err(|e| ConvertError::io("renaming a temporary file to", dest, e.error))?;
        set_readable(dest)
    }

    fn invalid(&self, reason: String) -> ConvertError {
        ConvertError::InvalidLayout {
            path: self.dir.clone(),
            reason,
        }
    }

    fn missing_blob(
        &self,
        what: &str,
        digest: &str,
        path: &Path,
        error: std::io::Error,
    ) -> ConvertError {
        if error.kind() == std::io::ErrorKind::NotFound {
            self.invalid(format!(
                "{what} blob {digest} is missing ({})",
                path.display()
            ))
        } else {
            ConvertError::io("reading", path, error)
        }
    }
}

/// Gives a stored file mode 0644: temporary files are created 0600, but layouts are usually
/// read by other users and tools too.
fn set_readable(path: &Path) -> Result<(), ConvertError> {
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o644))
        .map_err(|e| ConvertError::io("setting permissions of", path, e))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn digest_of(bytes: &[u8]) -> String {
        estargz::Digest::of(bytes).to_string()
    }

    #[test]
    fn set_tag_keeps_other_images() {
        let dir = tempfile::tempdir().unwrap();
        let layout = Layout::create(dir.path()).unwrap();
        let a = digest_of(b"a");
        let b = digest_of(b"b");
        layout.set_tag("one", media::OCI_MANIFEST, &a, 1).unwrap();
        layout.set_tag("two", media::OCI_MANIFEST, &b, 1).unwrap();
        layout.set_tag("one", media::OCI_MANIFEST, &b, 1).unwrap();
        let one = layout.resolve_tag("one", false).unwrap();
        let two = layout.resolve_tag("two", false).unwrap();
        assert_eq!(one.digest, b);
        assert_eq!(two.digest, b);
        let text = std::fs::read_to_string(dir.path().join("index.json")).unwrap();
        assert_eq!(text.matches(REF_NAME_ANNOTATION).count(), 2, "{text}");
    }

    #[test]
    fn missing_tag_lists_present_tags() {
        let dir = tempfile::tempdir().unwrap();
        let layout = Layout::create(dir.path()).unwrap();
        layout
            .set_tag("v1", media::OCI_MANIFEST, &digest_of(b"x"), 1)
            .unwrap();
        let err = layout.resolve_tag("v2", false).unwrap_err();
        assert!(err.to_string().contains("v1"), "{err}");
    }

    #[test]
    fn tampered_blob_is_rejected() {
        let dir = tempfile::tempdir().unwrap();
        let layout = Layout::create(dir.path()).unwrap();
        let digest = digest_of(b"{}");
        layout.write_blob(&digest, b"{}").unwrap();
        std::fs::write(layout.blob_path(&digest).unwrap(), b"[]").unwrap();
        let descriptor = Descriptor {
            media_type: media::OCI_MANIFEST.into(),
            digest,
            size: 2,
            annotations: Default::default(),
            platform: None,
        };
        let err = layout.read_blob(&descriptor, "manifest", 100).unwrap_err();
        assert!(matches!(err, ConvertError::DigestMismatch { .. }), "{err}");
    }

    #[test]
    fn directory_without_index_is_not_a_layout() {
        let dir = tempfile::tempdir().unwrap();
        let err = Layout::open(dir.path()).unwrap_err();
        assert!(err.to_string().contains("index.json"), "{err}");
    }
}
