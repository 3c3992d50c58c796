//! The snapshot labels that request a remote snapshot, and the layer facts they carry.
//!
//! containerd 1.6 passes a layer descriptor's annotations that start with
//! `containerd.io/snapshot/` as labels of the Prepare that unpacks it, plus
//! `containerd.io/snapshot.ref` = the chain ID the layer will have. Two producers add the image
//! reference and layer digest: CRI (`cri.image-ref`, `cri.layer-digest`, `cri.image-layers`,
//! with `disable_snapshot_annotations = false`) and `ctr-remote image rpull`
//! (`remote/stargz.reference`, `remote/stargz.digest`, `remote/stargz.layers`,
//! `remote/stargz.prefetch`). CRI labels are tried first. The TOC digest comes from the
//! converter's layer annotation `containerd.io/snapshot/stargz/toc.digest`.

use estargz::Digest;

use crate::remote::ImageRef;
use crate::snapshot::Labels;

/// The chain ID the layer will be committed as. Its presence requests a remote snapshot.
pub const SNAPSHOT_REF: &str = "containerd.io/snapshot.ref";
/// Label of committed remote snapshots, which a restart mounts again.
pub const REMOTE: &str = "containerd.io/snapshot/remote";
/// Value of [`REMOTE`].
pub const REMOTE_VALUE: &str = "remote snapshot";
/// Image reference, set by CRI.
pub const CRI_IMAGE_REF: &str = "containerd.io/snapshot/cri.image-ref";
/// Layer blob digest, set by CRI.
pub const CRI_LAYER_DIGEST: &str = "containerd.io/snapshot/cri.layer-digest";
/// This and the following layers' digests, comma-separated, set by CRI.
pub const CRI_IMAGE_LAYERS: &str = "containerd.io/snapshot/cri.image-layers";
/// Image reference, set by `ctr-remote image rpull`.
pub const STARGZ_REFERENCE: &str = "containerd.io/snapshot/remote/stargz.reference";
/// Layer blob digest, set by `ctr-remote image rpull`.
pub const STARGZ_DIGEST: &str = "containerd.io/snapshot/remote/stargz.digest";
/// This and the following layers' digests, set by `ctr-remote image rpull`.
pub const STARGZ_LAYERS: &str = "containerd.io/snapshot/remote/stargz.layers";
/// Bytes to prefetch when the layer has no landmark, set by `ctr-remote image rpull`.
pub const STARGZ_PREFETCH: &str = "containerd.io/snapshot/remote/stargz.prefetch";
/// Digest of the layer's TOC JSON, from the layer descriptor's annotation.
pub const TOC_DIGEST: &str = estargz::TOC_DIGEST_ANNOTATION;

/// The labels a remote snapshot is mounted again from after a restart.
pub const RESTORE_LABELS: [&str; 10] = [
    SNAPSHOT_REF,
    REMOTE,
    CRI_IMAGE_REF,
    CRI_LAYER_DIGEST,
    CRI_IMAGE_LAYERS,
    STARGZ_REFERENCE,
    STARGZ_DIGEST,
    STARGZ_LAYERS,
    STARGZ_PREFETCH,
    TOC_DIGEST,
];

/// The layer facts in a Prepare's labels, for a layer that can be mounted lazily.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RemoteSpec {
    /// Name to commit the remote snapshot under (the chain ID).
    pub target: String,
    /// The image the layer belongs to.
    pub image: ImageRef,
    /// The image reference as given, for logs.
    pub image_text: String,
    /// Layer blob digest.
    pub digest: Digest,
    /// TOC digest; `None` only when unverified layers are allowed.
    pub toc_digest: Option<Digest>,
    /// Digests of the following layers of the image, to resolve ahead of their Prepare.
    pub next_layers: Vec<Digest>,
    /// Prefetch size for a layer without a landmark.
    pub prefetch_bytes: Option<u64>,
}

/// The reason a Prepare is served as an ordinary snapshot that containerd unpacks.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Fallback {
    /// No image reference label.
    #[error(
        "label {CRI_IMAGE_REF} or {STARGZ_REFERENCE} is missing, so the layer's registry is unknown"
    )]
    MissingImageRef,
    /// An image reference but no layer digest from the same producer.
    #[error("label {wanted} is missing, so the layer's blob is unknown")]
    MissingLayerDigest {
        /// The label that would carry it.
        wanted: &'static str,
    },
    /// No TOC digest and unverified layers are not allowed.
    #[error(
        "label {TOC_DIGEST} is missing (the layer is not eStargz, or was converted without it), and allow_unverified is off"
    )]
    MissingTocDigest,
    /// A label value does not parse.
    #[error("label {label} has an invalid value {value:?}: {reason}")]
    InvalidLabel {
        /// The label.
        label: &'static str,
        /// The value, cut to 100 characters.
        value: String,
        /// The problem with the value.
        reason: String,
    },
}

impl RemoteSpec {
    /// Reads the labels of a Prepare whose `containerd.io/snapshot.ref` is `target`.
    ///
    /// Returns why the layer must be unpacked instead when a label is missing or invalid.
    pub fn from_labels(
        target: &str,
        labels: &Labels,
        allow_unverified: bool,
    ) -> Result<RemoteSpec, Fallback> {
        let (image_text, digest_label, digest_text, layers_label) = match (
            labels.get(CRI_IMAGE_REF),
            labels.get(CRI_LAYER_DIGEST),
            labels.get(STARGZ_REFERENCE),
            labels.get(STARGZ_DIGEST),
        ) {
            (Some(image), Some(digest), _, _) => {
                (image, CRI_LAYER_DIGEST, digest, CRI_IMAGE_LAYERS)
            }
            (_, _, Some(image), Some(digest)) => (image, STARGZ_DIGEST, digest, STARGZ_LAYERS),
            (Some(_), None, _, _) => {
                return Err(Fallback::MissingLayerDigest {
                    wanted: CRI_LAYER_DIGEST,
                });
            }
            (None, _, Some(_), None) => {
                return Err(Fallback::MissingLayerDigest {
                    wanted: STARGZ_DIGEST,
                });
            }
            (None, _, None, _) => return Err(Fallback::MissingImageRef),
        };
        let image_label = if digest_label == CRI_LAYER_DIGEST {
            CRI_IMAGE_REF
        } else {
            STARGZ_REFERENCE
        };
        let image = ImageRef::parse(image_text)
            .map_err(|error| invalid(image_label, image_text, error.to_string()))?;
        // Labels can come from an image's own layer annotations, so they must not name files on
        // this machine.
        if matches!(image, ImageRef::Layout { .. }) {
            return Err(invalid(
                image_label,
                image_text,
                "only registry references are mounted lazily".to_owned(),
            ));
        }
        let digest = parse_digest(digest_label, digest_text)?;
        let toc_digest = match labels.get(TOC_DIGEST) {
            Some(text) => Some(parse_digest(TOC_DIGEST, text)?),
            None if allow_unverified => None,
            None => return Err(Fallback::MissingTocDigest),
        };
        let next_layers = labels
            .get(layers_label)
            .map(|list| parse_layer_list(list, digest))
            .unwrap_or_default();
        let prefetch_bytes = match labels.get(STARGZ_PREFETCH) {
            Some(text) => Some(
                text.trim()
                    .parse::<u64>()
                    .map_err(|error| invalid(STARGZ_PREFETCH, text, error.to_string()))?,
            ),
            None => None,
        };
        Ok(RemoteSpec {
            target: target.to_owned(),
            image,
            image_text: image_text.clone(),
            digest,
            toc_digest,
            next_layers,
            prefetch_bytes,
        })
    }
}

fn invalid(label: &'static str, value: &str, reason: String) -> Fallback {
    Fallback::InvalidLabel {
        label,
        value: value.chars().take(100).collect(),
        reason,
    }
}

fn parse_digest(label: &'static str, text: &str) -> Result<Digest, Fallback> {
    text.trim()
        .parse()
        .map_err(|_| invalid(label, text, "expected sha256:<64 hex digits>".to_owned()))
}

/// Parses the comma-separated layers label, skipping `own` and entries that do not parse:
/// containerd cuts the label to fit its 4096-byte limit, so the last entry may be partial.
fn parse_layer_list(list: &str, own: Digest) -> Vec<Digest> {
    list.split(',')
        .filter_map(|item| item.trim().parse::<Digest>().ok())
        .filter(|digest| *digest != own)
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    const D1: &str = "sha256:1111111111111111111111111111111111111111111111111111111111111111";
    const D2: &str = "sha256:2222222222222222222222222222222222222222222222222222222222222222";
    const TOC: &str = "sha256:3333333333333333333333333333333333333333333333333333333333333333";

    fn labels(pairs: &[(&str, &str)]) -> Labels {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    #[test]
    fn rpull_labels_give_a_spec() {
        let labels = labels(&[
            (SNAPSHOT_REF, "sha256:chain"),
            (STARGZ_REFERENCE, "127.0.0.1:5000/python-esgz:latest"),
            (STARGZ_DIGEST, D1),
            (STARGZ_LAYERS, &format!("{D1},{D2},sha256:22")),
            (STARGZ_PREFETCH, "10485760"),
            (TOC_DIGEST, TOC),
        ]);
        let spec = RemoteSpec::from_labels("sha256:chain", &labels, false).unwrap();
        assert_eq!(spec.target, "sha256:chain");
        assert_eq!(spec.digest.to_string(), D1);
        assert_eq!(spec.toc_digest.unwrap().to_string(), TOC);
        assert_eq!(
            spec.next_layers
                .iter()
                .map(ToString::to_string)
                .collect::<Vec<_>>(),
            [D2]
        );
        assert_eq!(spec.prefetch_bytes, Some(10 << 20));
        assert_eq!(spec.image_text, "127.0.0.1:5000/python-esgz:latest");
    }

    #[test]
    fn cri_labels_win_over_rpull_labels() {
        let labels = labels(&[
            (CRI_IMAGE_REF, "registry.local/app:1"),
            (CRI_LAYER_DIGEST, D2),
            (STARGZ_REFERENCE, "other.local/app:1"),
            (STARGZ_DIGEST, D1),
            (TOC_DIGEST, TOC),
        ]);
        let spec = RemoteSpec::from_labels("c", &labels, false).unwrap();
        assert_eq!(spec.digest.to_string(), D2);
        assert_eq!(spec.image_text, "registry.local/app:1");
    }

    #[test]
    fn missing_labels_name_what_is_missing() {
        let only_ref = labels(&[(SNAPSHOT_REF, "c"), (TOC_DIGEST, TOC)]);
        assert_eq!(
            RemoteSpec::from_labels("c", &only_ref, false).unwrap_err(),
            Fallback::MissingImageRef
        );

        let no_digest = labels(&[(STARGZ_REFERENCE, "r.local/a:1"), (TOC_DIGEST, TOC)]);
        assert_eq!(
            RemoteSpec::from_labels("c", &no_digest, false).unwrap_err(),
            Fallback::MissingLayerDigest {
                wanted: STARGZ_DIGEST
            }
        );

        let no_toc = labels(&[(STARGZ_REFERENCE, "r.local/a:1"), (STARGZ_DIGEST, D1)]);
        let error = RemoteSpec::from_labels("c", &no_toc, false).unwrap_err();
        assert_eq!(error, Fallback::MissingTocDigest);
        assert!(error.to_string().contains(TOC_DIGEST), "{error}");
    }

    #[test]
    fn unverified_layers_need_the_setting() {
        let no_toc = labels(&[(STARGZ_REFERENCE, "r.local/a:1"), (STARGZ_DIGEST, D1)]);
        let spec = RemoteSpec::from_labels("c", &no_toc, true).unwrap();
        assert_eq!(spec.toc_digest, None);
    }

    #[test]
    fn invalid_values_are_reported() {
        let bad_digest = labels(&[
            (STARGZ_REFERENCE, "r.local/a:1"),
            (STARGZ_DIGEST, "md5:00"),
            (TOC_DIGEST, TOC),
        ]);
        let error = RemoteSpec::from_labels("c", &bad_digest, false).unwrap_err();
        assert!(
            matches!(
                error,
                Fallback::InvalidLabel {
                    label: STARGZ_DIGEST,
                    ..
                }
            ),
            "{error}"
        );

        let bad_prefetch = labels(&[
            (STARGZ_REFERENCE, "r.local/a:1"),
            (STARGZ_DIGEST, D1),
            (TOC_DIGEST, TOC),
            (STARGZ_PREFETCH, "lots"),
        ]);
        let error = RemoteSpec::from_labels("c", &bad_prefetch, false).unwrap_err();
        assert!(
            matches!(
                error,
                Fallback::InvalidLabel {
                    label: STARGZ_PREFETCH,
                    ..
                }
            ),
            "{error}"
        );

        let local = labels(&[
            (STARGZ_REFERENCE, "oci:/var/lib/images"),
            (STARGZ_DIGEST, D1),
            (TOC_DIGEST, TOC),
        ]);
        let error = RemoteSpec::from_labels("c", &local, false).unwrap_err();
        assert!(
            matches!(
                error,
                Fallback::InvalidLabel {
                    label: STARGZ_REFERENCE,
                    ..
                }
            ),
            "{error}"
        );
    }
}
