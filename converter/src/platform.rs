//! Platforms (`os/arch[/variant]`) and how `--platform` selects manifests of an index.

use std::fmt;

use serde::Deserialize;

use crate::error::ConvertError;

/// A platform as found in an index entry or an image config.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
pub struct Platform {
    /// Operating system, e.g. `linux`.
    pub os: String,
    /// CPU architecture, e.g. `amd64`.
    pub architecture: String,
    /// CPU variant, e.g. `v8`; empty when absent.
    #[serde(default)]
    pub variant: String,
}

impl Platform {
    /// Parses `os/arch[/variant]`.
    pub fn parse(text: &str) -> Result<Platform, ConvertError> {
        let invalid = || ConvertError::InvalidOption {
            option: "--platform",
            reason: format!(
                "{text:?} is not os/arch[/variant], e.g. linux/amd64 or linux/arm64/v8"
            ),
        };
        let parts: Vec<&str> = text.split('/').collect();
        if !(2..=3).contains(&parts.len()) || parts.iter().any(|p| p.is_empty()) {
            return Err(invalid());
        }
        Ok(Platform {
            os: parts[0].to_string(),
            architecture: parts[1].to_string(),
            variant: parts.get(2).map(|v| v.to_string()).unwrap_or_default(),
        })
    }

    /// True when `self`, used as a filter, selects `candidate`: os and architecture must be
    /// equal, and the variant too when the filter names one.
    pub fn selects(&self, candidate: &Platform) -> bool {
        self.os == candidate.os
            && self.architecture == candidate.architecture
            && (self.variant.is_empty() || self.variant == candidate.variant)
    }

    /// True for the `unknown/unknown` platform that BuildKit gives attestation manifests.
    pub fn is_unknown(&self) -> bool {
        self.os == "unknown" && self.architecture == "unknown"
    }
}

impl fmt::Display for Platform {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.os, self.architecture)?;
        if !self.variant.is_empty() {
            write!(f, "/{}", self.variant)?;
        }
        Ok(())
    }
}

/// True when no filter is given or any filter selects `candidate`.
pub fn selected(filters: &[Platform], candidate: Option<&Platform>) -> bool {
    if filters.is_empty() {
        return true;
    }
    candidate.is_some_and(|c| filters.iter().any(|f| f.selects(c)))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parse_accepts_two_and_three_parts() {
        assert_eq!(
            Platform::parse("linux/amd64").unwrap().to_string(),
            "linux/amd64"
        );
        assert_eq!(Platform::parse("linux/arm64/v8").unwrap().variant, "v8");
    }

    #[test]
    fn parse_rejects_malformed_text() {
        for text in ["linux", "linux/", "/amd64", "a/b/c/d", ""] {
            assert!(Platform::parse(text).is_err(), "{text}");
        }
    }

    #[test]
    fn filter_without_variant_selects_any_variant() {
        let filter = Platform::parse("linux/arm64").unwrap();
        assert!(filter.selects(&Platform::parse("linux/arm64/v8").unwrap()));
        assert!(!filter.selects(&Platform::parse("linux/amd64").unwrap()));
        let filter = Platform::parse("linux/arm/v7").unwrap();
        assert!(!filter.selects(&Platform::parse("linux/arm/v6").unwrap()));
    }

    #[test]
    fn empty_filter_selects_everything() {
        assert!(selected(&[], None));
        assert!(!selected(&[Platform::parse("linux/amd64").unwrap()], None));
    }
}
