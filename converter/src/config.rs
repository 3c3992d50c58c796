//! Image configs: reading `rootfs.diff_ids` and the platform, and rewriting the diffIDs.
//!
//! The rewrite replaces the bytes of the `rootfs.diff_ids` array and nothing else, so history,
//! labels, key order and formatting stay exactly as they were.

use serde::Deserialize;

use crate::error::ConvertError;
use crate::json_edit::{member_range, splice_member};
use crate::platform::Platform;

/// The config fields the converter reads.
#[derive(Debug, Clone)]
pub struct ConfigView {
    /// `rootfs.diff_ids`, bottom layer first.
    pub diff_ids: Vec<String>,
    /// `os`, `architecture` and `variant`, when the config has them.
    pub platform: Option<Platform>,
}

#[derive(Deserialize)]
struct RootFs {
    #[serde(default)]
    diff_ids: Vec<String>,
}

#[derive(Deserialize)]
struct Config {
    rootfs: RootFs,
    #[serde(default)]
    os: Option<String>,
    #[serde(default)]
    architecture: Option<String>,
    #[serde(default)]
    variant: Option<String>,
}

/// Decodes the diffIDs and platform of a config.
pub fn read_config(bytes: &[u8], digest: &str) -> Result<ConfigView, ConvertError> {
    let invalid = |reason: String| ConvertError::InvalidDocument {
        what: "config",
        digest: digest.to_string(),
        reason,
    };
    let config: Config = serde_json::from_slice(bytes).map_err(|e| invalid(e.to_string()))?;
    for id in &config.rootfs.diff_ids {
        id.parse::<estargz::Digest>()
            .map_err(|_| invalid(format!("diffID {id:?} is not a sha256 digest")))?;
    }
    // Checked now: `rewrite_diff_ids` locates the same member in the same bytes.
    member_range(bytes, &["rootfs", "diff_ids"]).map_err(invalid)?;
    let platform = match (config.os, config.architecture) {
        (Some(os), Some(architecture)) => Some(Platform {
            os,
            architecture,
            variant: config.variant.unwrap_or_default(),
        }),
        _ => None,
    };
    Ok(ConfigView {
        diff_ids: config.rootfs.diff_ids,
        platform,
    })
}

/// Returns the config with `rootfs.diff_ids` replaced by `diff_ids`, every other byte unchanged.
pub fn rewrite_diff_ids(
    bytes: &[u8],
    digest: &str,
    diff_ids: &[String],
) -> Result<Vec<u8>, ConvertError> {
    let array = serde_json::to_string(diff_ids).unwrap_or_else(|_| "[]".into());
    splice_member(bytes, &["rootfs", "diff_ids"], &array).map_err(|reason| {
        ConvertError::InvalidDocument {
            what: "config",
            digest: digest.to_string(),
            reason,
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    const A: &str = "sha256:aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa";
    const B: &str = "sha256:bbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbb";

    #[test]
    fn diff_ids_and_platform_are_read() {
        let doc = format!(
            r#"{{"architecture":"arm64","os":"linux","variant":"v8","rootfs":{{"type":"layers","diff_ids":["{A}"]}}}}"#
        );
        let view = read_config(doc.as_bytes(), "c").unwrap();
        assert_eq!(view.diff_ids, vec![A.to_string()]);
        assert_eq!(view.platform.unwrap().to_string(), "linux/arm64/v8");
    }

    #[test]
    fn rewrite_keeps_other_bytes() {
        let doc = format!(
            "{{\"created\": \"2024\",\n \"rootfs\": {{ \"type\": \"layers\", \"diff_ids\": [ \"{A}\" ] }},\n \"history\": [] }}\n"
        );
        let out = rewrite_diff_ids(doc.as_bytes(), "c", &[B.to_string()]).unwrap();
        let expected = doc.replace(&format!("[ \"{A}\" ]"), &format!("[\"{B}\"]"));
        assert_eq!(String::from_utf8(out).unwrap(), expected);
    }

    #[test]
    fn config_without_rootfs_is_rejected() {
        assert!(read_config(br#"{"os":"linux"}"#, "c").is_err());
        assert!(read_config(br#"{"rootfs":{"diff_ids":["md5:x"]}}"#, "c").is_err());
    }
}
