//! Rewriting manifests and indexes for the converted image.
//!
//! Every member not listed here is kept with its original text: manifest and descriptor
//! annotations, `subject`, `artifactType`, platforms and unknown vendor fields. Docker media
//! types become OCI ones, because only OCI descriptors carry the annotations lazy pulling needs.
//! A document with nothing to change is returned byte for byte, so converting an already
//! converted image yields the same digests.

use crate::error::ConvertError;
use crate::json_edit::{RawObject, to_raw};
use crate::layer::{LayerAction, LayerResult};
use crate::media;

/// A new descriptor's core fields.
#[derive(Debug, Clone)]
pub struct NewDescriptor {
    /// Media type.
    pub media_type: String,
    /// Digest.
    pub digest: String,
    /// Size in bytes.
    pub size: u64,
}

/// Returns the manifest for the new config and layers, or the original bytes when nothing
/// changes. `layers` contains one result per layer, in order.
pub fn rewrite_manifest(
    original: &[u8],
    object: &RawObject,
    digest: &str,
    config: &NewDescriptor,
    layers: &[&LayerResult],
) -> Result<Vec<u8>, ConvertError> {
    let invalid = |reason: String| ConvertError::InvalidDocument {
        what: "manifest",
        digest: digest.to_string(),
        reason,
    };
    let mut manifest = object.clone();
    let mut changed = false;
    if manifest.get("mediaType").is_some() {
        changed |= manifest.set("mediaType", media::OCI_MANIFEST);
    }

    let mut config_object = manifest
        .get("config")
        .map(RawObject::from_raw)
        .transpose()
        .map_err(invalid)?
        .ok_or_else(|| invalid("no config".into()))?;
    if update_descriptor(&mut config_object, config, &[], false) {
        manifest.set_raw("config", config_object.to_raw());
        changed = true;
    }

    let raw_layers: Vec<Box<serde_json::value::RawValue>> = manifest
        .get_as("layers")
        .map_err(invalid)?
        .unwrap_or_default();
    if raw_layers.len() != layers.len() {
        return Err(invalid(format!(
            "{} layers, {} results",
            raw_layers.len(),
            layers.len()
        )));
    }
    let mut new_layers = Vec::with_capacity(raw_layers.len());
    let mut layers_changed = false;
    for (raw, result) in raw_layers.iter().zip(layers) {
        let mut layer = RawObject::from_raw(raw).map_err(invalid)?;
        let new = NewDescriptor {
            media_type: result.media_type.clone(),
            digest: result.digest.clone(),
            size: result.size,
        };
        let converted = result.action == LayerAction::Converted;
        if update_descriptor(&mut layer, &new, &result.annotations, converted) {
            layers_changed = true;
            new_layers.push(layer.to_raw());
        } else {
            new_layers.push(raw.clone());
        }
    }
    if layers_changed {
        manifest.set_raw("layers", to_raw(&new_layers));
        changed = true;
    }
    Ok(if changed {
        manifest.to_vec()
    } else {
        original.to_vec()
    })
}

/// Returns the index listing `entries` (original entry objects with their new descriptor), or the
/// original bytes when nothing changes.
pub fn rewrite_index(
    original: &[u8],
    object: &RawObject,
    digest: &str,
    entries: &[(Box<serde_json::value::RawValue>, NewDescriptor)],
    dropped_entries: bool,
) -> Result<Vec<u8>, ConvertError> {
    let invalid = |reason: String| ConvertError::InvalidDocument {
        what: "index",
        digest: digest.to_string(),
        reason,
    };
    let mut index = object.clone();
    let mut changed = dropped_entries;
    if index.get("mediaType").is_some() {
        changed |= index.set("mediaType", media::OCI_INDEX);
    }
    let mut new_entries = Vec::with_capacity(entries.len());
    for (raw, new) in entries {
        let mut entry = RawObject::from_raw(raw).map_err(invalid)?;
        if update_descriptor(&mut entry, new, &[], false) {
            changed = true;
            new_entries.push(entry.to_raw());
        } else {
            new_entries.push(raw.clone());
        }
    }
    if changed {
        index.set_raw("manifests", to_raw(&new_entries));
    }
    Ok(if changed {
        index.to_vec()
    } else {
        original.to_vec()
    })
}

/// Sets media type, digest, size and annotations of a descriptor object. For a new blob, the
/// `urls` and embedded `data` of the old one are dropped. Returns true when anything changed.
fn update_descriptor(
    object: &mut RawObject,
    new: &NewDescriptor,
    annotations: &[(String, String)],
    new_blob: bool,
) -> bool {
    let mut changed = object.set("mediaType", &new.media_type);
    changed |= object.set("digest", &new.digest);
    changed |= object.set("size", &new.size);
    if new_blob {
        changed |= object.remove("urls");
        changed |= object.remove("data");
    }
    if !annotations.is_empty() {
        let mut map = object
            .get("annotations")
            .and_then(|raw| RawObject::from_raw(raw).ok())
            .unwrap_or_default();
        let mut map_changed = false;
        for (key, value) in annotations {
            map_changed |= map.set(key, value);
        }
        if map_changed {
            object.set_raw("annotations", map.to_raw());
            changed = true;
        }
    }
    changed
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::descriptor::Descriptor;

    const OLD: &str = "sha256:1111111111111111111111111111111111111111111111111111111111111111";
    const NEW: &str = "sha256:2222222222222222222222222222222222222222222222222222222222222222";
    const CFG: &str = "sha256:3333333333333333333333333333333333333333333333333333333333333333";

    fn result(action: LayerAction) -> LayerResult {
        let mut r = LayerResult::foreign(
            &Descriptor {
                media_type: media::OCI_LAYER_GZIP.into(),
                digest: OLD.into(),
                size: 10,
                annotations: Default::default(),
                platform: None,
            },
            OLD,
        );
        r.action = action;
        r.media_type = media::OCI_LAYER_GZIP.into();
        r.digest = NEW.into();
        r.size = 20;
        r.annotations = vec![(estargz::TOC_DIGEST_ANNOTATION.into(), OLD.into())];
        r
    }

    fn docker_manifest() -> String {
        format!(
            r#"{{"schemaVersion":2,"mediaType":"application/vnd.docker.distribution.manifest.v2+json","config":{{"mediaType":"application/vnd.docker.container.image.v1+json","size":5,"digest":"{CFG}"}},"layers":[{{"mediaType":"application/vnd.docker.image.rootfs.diff.tar.gzip","size":10,"digest":"{OLD}","urls":["https://example.com/x"],"annotations":{{"keep":"me"}}}}]}}"#
        )
    }

    #[test]
    fn docker_manifest_becomes_oci_with_annotations() {
        let original = docker_manifest();
        let object = RawObject::parse(original.as_bytes()).unwrap();
        let config = NewDescriptor {
            media_type: media::OCI_CONFIG.into(),
            digest: CFG.into(),
            size: 6,
        };
        let converted = result(LayerAction::Converted);
        let out =
            rewrite_manifest(original.as_bytes(), &object, "m", &config, &[&converted]).unwrap();
        let value: serde_json::Value = serde_json::from_slice(&out).unwrap();
        assert_eq!(value["mediaType"], media::OCI_MANIFEST);
        assert_eq!(value["config"]["mediaType"], media::OCI_CONFIG);
        assert_eq!(value["config"]["size"], 6);
        let layer = &value["layers"][0];
        assert_eq!(layer["digest"], NEW);
        assert_eq!(layer["size"], 20);
        assert_eq!(layer["annotations"]["keep"], "me");
        assert_eq!(layer["annotations"][estargz::TOC_DIGEST_ANNOTATION], OLD);
        assert!(layer.get("urls").is_none());
    }

    #[test]
    fn unchanged_manifest_keeps_its_bytes() {
        let original = format!(
            r#"{{ "schemaVersion": 2, "mediaType": "{}", "config": {{"mediaType":"{}","digest":"{CFG}","size":5}}, "layers": [ {{"mediaType":"{}","digest":"{NEW}","size":20,"annotations":{{"{}":"{OLD}"}}}} ] }}"#,
            media::OCI_MANIFEST,
            media::OCI_CONFIG,
            media::OCI_LAYER_GZIP,
            estargz::TOC_DIGEST_ANNOTATION
        );
        let object = RawObject::parse(original.as_bytes()).unwrap();
        let config = NewDescriptor {
            media_type: media::OCI_CONFIG.into(),
            digest: CFG.into(),
            size: 5,
        };
        let passed = result(LayerAction::PassedThrough);
        let out = rewrite_manifest(original.as_bytes(), &object, "m", &config, &[&passed]).unwrap();
        assert_eq!(out, original.as_bytes());
    }

    #[test]
    fn index_entries_get_new_digests_and_keep_platforms() {
        let entry = format!(
            r#"{{"mediaType":"{}","digest":"{OLD}","size":10,"platform":{{"os":"linux","architecture":"arm64"}}}}"#,
            media::DOCKER_MANIFEST
        );
        let original = format!(
            r#"{{"schemaVersion":2,"mediaType":"{}","manifests":[{entry}]}}"#,
            media::DOCKER_MANIFEST_LIST
        );
        let object = RawObject::parse(original.as_bytes()).unwrap();
        let raw = serde_json::value::RawValue::from_string(entry).unwrap();
        let new = NewDescriptor {
            media_type: media::OCI_MANIFEST.into(),
            digest: NEW.into(),
            size: 99,
        };
        let out = rewrite_index(original.as_bytes(), &object, "i", &[(raw, new)], false).unwrap();
        let value: serde_json::Value = serde_json::from_slice(&out).unwrap();
        assert_eq!(value["mediaType"], media::OCI_INDEX);
        assert_eq!(value["manifests"][0]["digest"], NEW);
        assert_eq!(value["manifests"][0]["platform"]["architecture"], "arm64");
    }
}
