//! Image references: a registry reference or an OCI image layout directory.

use std::fmt;
use std::path::PathBuf;

use oci_client::Reference;

use crate::error::ConvertError;

/// Prefix that selects an OCI image layout instead of a registry.
pub const LAYOUT_PREFIX: &str = "oci:";

/// Tag used when a reference names none.
pub const DEFAULT_TAG: &str = "latest";

/// Location of an image.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ImageRef {
    /// An image in a registry.
    Registry(RegistryRef),
    /// An image in an OCI image layout directory, selected by its `org.opencontainers.image.ref.name`.
    Layout {
        /// The layout directory.
        dir: PathBuf,
        /// The tag.
        tag: String,
        /// True when the text named no tag, so [`DEFAULT_TAG`] was filled in.
        tag_defaulted: bool,
    },
}

/// An image in a registry.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RegistryRef {
    /// The parsed reference (registry, repository, tag and/or digest).
    pub reference: Reference,
    /// True for plain HTTP: loopback hosts always, any host with `--insecure`.
    pub plain_http: bool,
}

impl RegistryRef {
    /// `host[:port]` of the registry as used in URLs.
    pub fn registry(&self) -> &str {
        self.reference.resolve_registry()
    }

    /// Returns the URL scheme used for this registry.
    pub fn scheme(&self) -> &'static str {
        if self.plain_http { "http" } else { "https" }
    }
}

impl ImageRef {
    /// Parses `oci:DIR[:TAG]` or a registry reference such as `127.0.0.1:5000/app:1.0`,
    /// `docker.io/library/alpine@sha256:…` or `[::1]:5000/app`.
    ///
    /// `insecure` makes every registry use plain HTTP; loopback hosts (`localhost`, `127.0.0.1`,
    /// `[::1]`) always do.
    pub fn parse(text: &str, insecure: bool) -> Result<ImageRef, ConvertError> {
        let invalid = |reason: &str| ConvertError::InvalidReference {
            reference: text.to_string(),
            reason: reason.into(),
        };
        if let Some(rest) = text.strip_prefix(LAYOUT_PREFIX) {
            // Like skopeo's `oci:` transport, the first colon separates the directory from the tag,
            // so directory names cannot contain a colon.
            let (dir, tag) = match rest.split_once(':') {
                Some((dir, tag)) => (dir, Some(tag)),
                None => (rest, None),
            };
            if dir.is_empty() {
                return Err(invalid(
                    "the OCI layout directory is empty; write oci:DIR[:TAG]",
                ));
            }
            if tag.is_some_and(str::is_empty) {
                return Err(invalid(
                    "the tag after the directory is empty; write oci:DIR[:TAG]",
                ));
            }
            return Ok(ImageRef::Layout {
                dir: PathBuf::from(dir),
                tag: tag.unwrap_or(DEFAULT_TAG).to_string(),
                tag_defaulted: tag.is_none(),
            });
        }
        let reference = parse_registry_reference(text).map_err(|reason| {
            if looks_like_path(text) {
                invalid(&format!(
                    "this is a path, not a registry reference; write {LAYOUT_PREFIX}{text} for an OCI image layout"
                ))
            } else {
                invalid(&reason)
            }
        })?;
        let plain_http = insecure || is_loopback_registry(reference.resolve_registry());
        Ok(ImageRef::Registry(RegistryRef {
            reference,
            plain_http,
        }))
    }
}

impl fmt::Display for ImageRef {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ImageRef::Registry(r) => write!(f, "{}", r.reference),
            ImageRef::Layout { dir, tag, .. } => {
                write!(f, "{LAYOUT_PREFIX}{}:{tag}", dir.display())
            }
        }
    }
}

/// Parses a registry reference, accepting bracketed IPv6 hosts that `Reference` itself rejects.
fn parse_registry_reference(text: &str) -> Result<Reference, String> {
    if text.starts_with('[') {
        let (registry, rest) = text
            .split_once('/')
            .ok_or_else(|| "an IPv6 registry must be followed by /REPOSITORY".to_string())?;
        let host_end = registry
            .find(']')
            .ok_or_else(|| "missing ] after the IPv6 address".to_string())?;
        let port = &registry[host_end + 1..];
        if !(port.is_empty()
            || port
                .strip_prefix(':')
                .is_some_and(|p| !p.is_empty() && p.bytes().all(|b| b.is_ascii_digit())))
        {
            return Err(format!("invalid port {port:?} after the IPv6 address"));
        }
        // Parse the repository part with a placeholder registry, then put the real one back.
        let placeholder: Reference = format!("placeholder.invalid/{rest}")
            .parse()
            .map_err(|e| format!("{e}"))?;
        let repository = placeholder.repository().to_string();
        let with_tag = |tag: &str| {
            Reference::with_tag(registry.to_string(), repository.clone(), tag.to_string())
        };
        return Ok(match (placeholder.tag(), placeholder.digest()) {
            (Some(tag), Some(digest)) => Reference::with_tag_and_digest(
                registry.to_string(),
                repository.clone(),
                tag.to_string(),
                digest.to_string(),
            ),
            (None, Some(digest)) => {
                Reference::with_digest(registry.to_string(), repository.clone(), digest.to_string())
            }
            (Some(tag), None) => with_tag(tag),
            (None, None) => with_tag(DEFAULT_TAG),
        });
    }
    text.parse::<Reference>().map_err(|e| format!("{e}"))
}

/// True when `text` starts like a file system path or names an existing directory.
fn looks_like_path(text: &str) -> bool {
    text.starts_with('/')
        || text.starts_with("./")
        || text.starts_with("../")
        || std::path::Path::new(text).is_dir()
}

/// True for `localhost`, `127.0.0.1` and `[::1]`, with or without a port.
pub fn is_loopback_registry(registry: &str) -> bool {
    let host = if let Some(rest) = registry.strip_prefix('[') {
        rest.split(']').next().unwrap_or("")
    } else {
        registry.split(':').next().unwrap_or("")
    };
    matches!(host, "localhost" | "127.0.0.1" | "::1")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn layout_reference_defaults_to_latest() {
        let parsed = ImageRef::parse("oci:/tmp/img", false).unwrap();
        assert_eq!(
            parsed,
            ImageRef::Layout {
                dir: PathBuf::from("/tmp/img"),
                tag: "latest".into(),
                tag_defaulted: true
            }
        );
    }

    #[test]
    fn layout_reference_with_tag() {
        let parsed = ImageRef::parse("oci:out/dir:v1-esgz", false).unwrap();
        assert_eq!(
            parsed,
            ImageRef::Layout {
                dir: PathBuf::from("out/dir"),
                tag: "v1-esgz".into(),
                tag_defaulted: false
            }
        );
    }

    #[test]
    fn layout_reference_without_directory_is_rejected() {
        assert!(ImageRef::parse("oci:", false).is_err());
        assert!(ImageRef::parse("oci::tag", false).is_err());
        assert!(ImageRef::parse("oci:dir:", false).is_err());
    }

    #[test]
    fn loopback_registry_uses_plain_http() {
        let ImageRef::Registry(r) = ImageRef::parse("127.0.0.1:5000/app:1", false).unwrap() else {
            panic!()
        };
        assert!(r.plain_http);
        assert_eq!(r.registry(), "127.0.0.1:5000");
        assert_eq!(r.reference.repository(), "app");
        assert_eq!(r.reference.tag(), Some("1"));
        let ImageRef::Registry(r) = ImageRef::parse("localhost/app", false).unwrap() else {
            panic!()
        };
        assert!(r.plain_http);
    }

    #[test]
    fn remote_registry_uses_https_unless_insecure() {
        let ImageRef::Registry(r) =
            ImageRef::parse("registry.example.com/team/app:1", false).unwrap()
        else {
            panic!()
        };
        assert!(!r.plain_http);
        let ImageRef::Registry(r) =
            ImageRef::parse("registry.example.com/team/app:1", true).unwrap()
        else {
            panic!()
        };
        assert!(r.plain_http);
    }

    #[test]
    fn ipv6_loopback_registry_is_parsed() {
        let ImageRef::Registry(r) = ImageRef::parse("[::1]:5000/ns/app:2", false).unwrap() else {
            panic!()
        };
        assert_eq!(r.registry(), "[::1]:5000");
        assert_eq!(r.reference.repository(), "ns/app");
        assert_eq!(r.reference.tag(), Some("2"));
        assert!(r.plain_http);
    }

    #[test]
    fn digest_reference_keeps_digest() {
        let digest = format!("sha256:{}", "a".repeat(64));
        let ImageRef::Registry(r) =
            ImageRef::parse(&format!("127.0.0.1:5000/app@{digest}"), false).unwrap()
        else {
            panic!()
        };
        assert_eq!(r.reference.digest(), Some(digest.as_str()));
    }

    #[test]
    fn path_without_prefix_suggests_oci_form() {
        for text in ["/path/to/layout", "/path/to/layout:v1", "./out", "../out"] {
            let message = ImageRef::parse(text, false).unwrap_err().to_string();
            assert!(message.contains(&format!("write oci:{text} ")), "{message}");
        }
    }

    #[test]
    fn invalid_reference_without_path_gets_no_oci_hint() {
        let message = ImageRef::parse("UPPER/Case", false)
            .unwrap_err()
            .to_string();
        assert!(!message.contains("oci:"), "{message}");
    }

    #[test]
    fn invalid_registry_reference_is_rejected() {
        assert!(ImageRef::parse("UPPER/Case", false).is_err());
        assert!(ImageRef::parse("[::1/app", false).is_err());
    }
}
