//! Extended attribute replies: the size-probe protocol and the overlayfs opaque marker.

use super::error::FsError;

/// How overlayfs should learn that a directory is opaque.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum OpaqueXattr {
    /// `trusted.overlay.opaque`, read by overlayfs mounted without `userxattr` (needs root).
    #[default]
    Trusted,
    /// `user.overlay.opaque`, read by overlayfs mounted with `userxattr` (rootless).
    User,
}

impl OpaqueXattr {
    /// The attribute name.
    pub fn name(self) -> &'static [u8] {
        match self {
            OpaqueXattr::Trusted => b"trusted.overlay.opaque",
            OpaqueXattr::User => b"user.overlay.opaque",
        }
    }
}

/// Value of the opaque attribute on an opaque directory.
pub const OPAQUE_VALUE: &[u8] = b"y";

/// Whether a layer's own xattr must stay hidden: overlayfs reads `trusted.overlay.*` and
/// `user.overlay.*` on lower directories as instructions (opaque, redirect, metacopy), so only
/// the whiteout translation may produce them, never data inside an image.
pub fn is_reserved(name: &[u8]) -> bool {
    name.starts_with(b"trusted.overlay.") || name.starts_with(b"user.overlay.")
}

/// The answer to a `getxattr` or `listxattr` request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum XattrReply {
    /// The caller asked with size 0: the length it needs.
    Size(u32),
    /// The value or the NUL-separated name list.
    Data(Vec<u8>),
}

/// Applies the size-probe protocol of getxattr(2): size 0 returns the length, a buffer that is
/// too small fails with `ERANGE`, anything else returns the bytes.
pub fn reply_for(bytes: Vec<u8>, size: u32) -> Result<XattrReply, FsError> {
    if size == 0 {
        let len = u32::try_from(bytes.len()).map_err(|_| FsError::BufferTooSmall {
            needed: bytes.len(),
            given: 0,
        })?;
        return Ok(XattrReply::Size(len));
    }
    if bytes.len() > size as usize {
        return Err(FsError::BufferTooSmall {
            needed: bytes.len(),
            given: size as usize,
        });
    }
    Ok(XattrReply::Data(bytes))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn size_probe_returns_length() {
        assert_eq!(reply_for(b"abc".to_vec(), 0).unwrap(), XattrReply::Size(3));
    }

    #[test]
    fn exact_buffer_returns_data() {
        assert_eq!(
            reply_for(b"abc".to_vec(), 3).unwrap(),
            XattrReply::Data(b"abc".to_vec())
        );
    }

    #[test]
    fn small_buffer_is_erange() {
        let error = reply_for(b"abc".to_vec(), 2).unwrap_err();
        assert_eq!(error.errno(), libc::ERANGE);
    }

    #[test]
    fn overlay_names_are_reserved() {
        assert!(is_reserved(b"trusted.overlay.redirect"));
        assert!(is_reserved(b"user.overlay.opaque"));
        assert!(!is_reserved(b"security.capability"));
        assert!(!is_reserved(b"trusted.other"));
    }
}
