//! `lazypull convert` on the real python test image, between OCI layouts and a real registry.
//!
//! Every converted layer is extracted with GNU tar and compared with the original layer's
//! extraction, its annotations and diffID are recomputed, and the upstream Go eStargz reader
//! verifies it and reads every file (see `convert_support::check_converted_layer`).

mod convert_support;

use std::path::Path;

use convert_support::*;
use lazypull_testkit::image::python_image;
use lazypull_testkit::registry::Registry;
use lazypull_testkit::{Prereq, require_or_skip};
use serde_json::Value;

fn actions(report: &Value) -> Vec<String> {
    report["layers"]
        .as_array()
        .unwrap()
        .iter()
        .map(|l| l["action"].as_str().unwrap().to_string())
        .collect()
}

fn oci(dir: &Path, tag: &str) -> String {
    format!("oci:{}:{tag}", dir.display())
}

#[test]
fn python_oci_to_oci_matches_original_and_reconverts() {
    require_or_skip!(Prereq::Binary("tar"), Prereq::Binary("go"));
    let python = python_image().unwrap();
    let original = LayoutImage::read_tag(&python, "latest");
    let work = scratch("lazypull-convert-work-");
    let tmp = scratch("lazypull-convert-tmp-");
    let out = work.path().join("out");

    let report = convert_ok(&oci(&python, "latest"), &oci(&out, "esgz"), &[], tmp.path());
    assert_dir_empty(tmp.path());
    assert_eq!(actions(&report), ["converted", "converted"]);
    let converted = LayoutImage::read_tag(&out, "esgz");
    assert_eq!(report["digest"], converted.digest.as_str());
    let checks = check_converted_image(&python, &original, &out, &converted, work.path());
    for check in &checks {
        assert_eq!(check.landmark, ".no.prefetch.landmark");
    }
    assert_config_changed_only_in_diff_ids(&original, &converted);
    for (layer, report_layer) in converted
        .layers()
        .iter()
        .zip(report["layers"].as_array().unwrap())
    {
        assert_eq!(layer["digest"], report_layer["digest"]);
        assert_eq!(layer["annotations"][TOC_DIGEST], report_layer["toc_digest"]);
    }

    // Converting the output again keeps every layer and so the whole image.
    let again = convert_ok(&oci(&out, "esgz"), &oci(&out, "again"), &[], tmp.path());
    assert_eq!(actions(&again), ["passed-through", "passed-through"]);
    assert_eq!(
        again["digest"],
        converted.digest.as_str(),
        "a second conversion changed the image"
    );
    assert!(
        tagged(&out, "esgz").is_some(),
        "the layout lost its first image"
    );

    // --reconvert rebuilds the layers from their tar content: one TOC, one landmark, same tree.
    let reconverted_layout = work.path().join("reconverted");
    let report = convert_ok(
        &oci(&out, "esgz"),
        &oci(&reconverted_layout, "re"),
        &["--reconvert", "--compression-level", "1"],
        tmp.path(),
    );
    assert_eq!(actions(&report), ["converted", "converted"]);
    let reconverted = LayoutImage::read_tag(&reconverted_layout, "re");
    let checks = check_converted_image(
        &python,
        &original,
        &reconverted_layout,
        &reconverted,
        work.path(),
    );
    for check in &checks {
        let count = |name: &str| {
            check
                .tar_names
                .iter()
                .filter(|n| n.trim_start_matches("./") == name)
                .count()
        };
        assert_eq!(
            count("stargz.index.json"),
            1,
            "reconverted layer has several TOCs"
        );
        assert_eq!(
            count(".no.prefetch.landmark") + count(".prefetch.landmark"),
            1
        );
    }
    assert_dir_empty(tmp.path());
}

#[test]
fn python_registry_conversions_match_original() {
    require_or_skip!(
        Prereq::Binary("docker-registry"),
        Prereq::Binary("skopeo"),
        Prereq::Binary("tar"),
        Prereq::Binary("go")
    );
    let python = python_image().unwrap();
    let original = LayoutImage::read_tag(&python, "latest");
    let registry = Registry::start().unwrap();
    let source = registry
        .push_oci_layout(&python, "latest", "python:latest")
        .unwrap();
    let work = scratch("lazypull-convert-work-");
    let tmp = scratch("lazypull-convert-tmp-");
    let host = registry.host();

    // OCI layout to registry.
    let from_layout = format!("{host}/python-esgz:from-layout");
    let report = convert_ok(&oci(&python, "latest"), &from_layout, &[], tmp.path());
    assert_eq!(actions(&report), ["converted", "converted"]);
    // Registry to registry, into the source repository itself.
    let from_registry = format!("{host}/python:esgz");
    let report = convert_ok(
        &source,
        &from_registry,
        &["--compression-level", "1"],
        tmp.path(),
    );
    assert_eq!(actions(&report), ["converted", "converted"]);
    assert_dir_empty(tmp.path());

    for (reference, name) in [(&from_layout, "a"), (&from_registry, "b")] {
        assert!(
            skopeo_inspect_raw(reference).is_some(),
            "skopeo cannot inspect {reference}"
        );
        let layout = work.path().join(name);
        pull_to_layout(reference, &layout, name);
        let converted = LayoutImage::read_tag(&layout, name);
        check_converted_image(&python, &original, &layout, &converted, work.path());
        assert_config_changed_only_in_diff_ids(&original, &converted);
    }

    // A converted image copied to another repository of the same registry passes through, and
    // its layers are mounted across repositories instead of uploaded.
    let before = registry.access_log().len();
    let copy = format!("{host}/copy:esgz");
    let report = convert_ok(&from_layout, &copy, &[], tmp.path());
    assert_eq!(actions(&report), ["passed-through", "passed-through"]);
    let uploads: Vec<_> = registry.access_log()[before..]
        .iter()
        .filter(|e| e.method == "PUT" && e.path.contains("/blobs/uploads/"))
        .cloned()
        .collect();
    // Only the config may be uploaded; layers are mounted.
    assert!(
        uploads.len() <= 1,
        "layers were uploaded instead of mounted: {uploads:#?}"
    );
    assert_eq!(
        skopeo_inspect_raw(&copy),
        skopeo_inspect_raw(&from_layout),
        "passing through changed the manifest"
    );
    assert_dir_empty(tmp.path());
}
