//! `lazypull audit` of an image in a real registry (Debian's docker-registry on 127.0.0.1):
//! the same exact figures as from the OCI layout, and no secret value in any output.

mod audit_support;

use audit_support::*;
use lazypull_testkit::registry::Registry;
use lazypull_testkit::{Prereq, require_or_skip};

#[test]
fn registry_image_matches_layout_report() {
    require_or_skip!(Prereq::Binary("docker-registry"), Prereq::Binary("skopeo"));
    let registry = Registry::start().unwrap();
    let dir = tempfile::tempdir().unwrap();
    let layout = dir.path().join("image");
    let local = waste_image(&layout, Encoding::Gzip);
    let reference = registry
        .push_oci_layout(&layout, "latest", "audit/waste:latest")
        .unwrap();

    let (code, from_registry, output) = audit_json(
        &reference,
        &[
            "--highest-wasted-bytes",
            "100K",
            "--tmpdir",
            dir.path().to_str().unwrap(),
        ],
    );
    assert_eq!(code, 3, "{}", String::from_utf8_lossy(&output.stderr));
    for stream in [&output.stdout, &output.stderr] {
        let text = String::from_utf8_lossy(stream);
        for secret in [GIT_TOKEN, NPM_TOKEN, KEY_BODY] {
            assert!(
                !text.contains(secret),
                "a secret value appears in the output"
            );
        }
    }
    let (_, from_layout, _) = audit_json(&local, &["--highest-wasted-bytes", "100K"]);
    for key in ["totals", "wasted", "findings", "secrets", "gate", "layers"] {
        assert_eq!(from_registry[key], from_layout[key], "{key} differs");
    }
    let want = waste_figures();
    assert_eq!(
        from_registry["totals"]["wasted_bytes"],
        want.hidden + want.duplicate
    );
    // Downloaded blobs are removed.
    let left: Vec<_> = std::fs::read_dir(dir.path())
        .unwrap()
        .map(|e| e.unwrap().file_name())
        .filter(|n| n != "image")
        .collect();
    assert!(left.is_empty(), "files left in the tmpdir: {left:?}");
}
