//! `lazypull audit` on a purpose-built image with known waste: exact wasted bytes, findings,
//! secrets by path only, the gate's reasons and exit codes, in every layer encoding.

mod audit_support;

use audit_support::*;
use serde_json::Value;

fn u(value: &Value) -> u64 {
    value
        .as_u64()
        .unwrap_or_else(|| panic!("{value} is not a count"))
}

/// Checks every figure of the fixture's report that does not depend on the layer encoding.
fn assert_fixture_figures(report: &Value) {
    let want = waste_figures();
    let totals = &report["totals"];
    assert_eq!(u(&totals["shipped_bytes"]), want.shipped, "{totals}");
    assert_eq!(u(&totals["final_bytes"]), want.final_bytes, "{totals}");
    assert_eq!(u(&totals["hidden_bytes"]), want.hidden, "{totals}");
    assert_eq!(u(&totals["duplicate_bytes"]), want.duplicate, "{totals}");
    assert_eq!(
        u(&totals["wasted_bytes"]),
        want.hidden + want.duplicate,
        "{totals}"
    );
    let efficiency = totals["efficiency"].as_f64().unwrap();
    let expected = 1.0 - (want.hidden + want.duplicate) as f64 / want.shipped as f64;
    assert!(
        (efficiency - expected).abs() < 1e-12,
        "{efficiency} vs {expected}"
    );

    let mut wasted: Vec<(String, u64, String, Option<u64>)> = report["wasted"]
        .as_array()
        .unwrap()
        .iter()
        .map(|w| {
            (
                w["path"].as_str().unwrap().to_string(),
                u(&w["bytes"]),
                w["reason"].as_str().unwrap().to_string(),
                w["by_layer"].as_u64(),
            )
        })
        .collect();
    wasted.sort();
    let expected: Vec<(String, u64, String, Option<u64>)> = vec![
        ("/app/copy.bin".into(), 100_000, "duplicate".into(), None),
        ("/opt/data/a.bin".into(), 10_000, "deleted".into(), Some(1)),
        ("/tmp/build.log".into(), 30_000, "deleted".into(), Some(1)),
        (
            "/usr/share/app/config.json".into(),
            8_000,
            "overwritten".into(),
            Some(1),
        ),
    ];
    assert_eq!(wasted, expected);
    let duplicate = report["wasted"]
        .as_array()
        .unwrap()
        .iter()
        .find(|w| w["reason"] == "duplicate")
        .unwrap();
    assert_eq!(duplicate["same_as"], "/usr/bin/app");

    let apt = finding(report, "apt-cache").expect("apt-cache finding");
    assert_eq!(u(&apt["bytes"]), 50_000);
    assert_eq!(apt["paths"][0]["path"], "/var/lib/apt/lists");
    let git = finding(report, "git-directory").expect("git-directory finding");
    assert_eq!(u(&git["bytes"]), 20_000 + git_config().len() as u64);
    assert_eq!(git["paths"][0]["path"], "/app/.git");
    let deleted = finding(report, "deleted-later").expect("deleted-later finding");
    assert_eq!(u(&deleted["bytes"]), 40_000);
    assert_eq!(u(&deleted["files"]), 2);
    let duplicates = finding(report, "duplicate-content").expect("duplicate finding");
    assert_eq!(u(&duplicates["bytes"]), 100_000);
    assert!(finding(report, "large-base-layer").is_none());

    let secrets: Vec<(String, String, u64, bool)> = report["secrets"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| {
            (
                s["path"].as_str().unwrap().to_string(),
                s["kind"].as_str().unwrap().to_string(),
                u(&s["layer"]),
                s["hidden_later"].as_bool().unwrap(),
            )
        })
        .collect();
    assert_eq!(
        secrets,
        vec![
            (
                "/app/.git/config".into(),
                "git-credentials".into(),
                0,
                false
            ),
            ("/root/.npmrc".into(), "npm-token".into(), 1, false),
            (
                "/root/.ssh/id_ed25519".into(),
                "private-key".into(),
                1,
                false
            ),
        ]
    );

    let layers = report["layers"].as_array().unwrap();
    assert_eq!(layers.len(), 2);
    assert_eq!(layers[0]["created_by"], "ADD base.tar /");
    assert_eq!(
        layers[1]["created_by"],
        "RUN cp /usr/bin/app /app/copy.bin && rm /tmp/build.log"
    );
    assert_eq!(layers[0]["top_files"][0]["path"], "/usr/bin/app");
    assert_eq!(u(&layers[0]["top_files"][0]["bytes"]), 100_000);
    let tars = waste_layers();
    for (layer, tar) in layers.iter().zip(&tars) {
        assert_eq!(u(&layer["uncompressed_bytes"]), tar.len() as u64);
    }
}

fn assert_no_secret(output: &std::process::Output) {
    for stream in [&output.stdout, &output.stderr] {
        let text = String::from_utf8_lossy(stream);
        for secret in [GIT_TOKEN, NPM_TOKEN, KEY_BODY] {
            assert!(
                !text.contains(secret),
                "a secret value appears in the output"
            );
        }
    }
}

#[test]
fn known_waste_is_reported_exactly() {
    let dir = tempfile::tempdir().unwrap();
    let image = waste_image(dir.path(), Encoding::Gzip);
    let (code, report, output) = audit_json(&image, &[]);
    assert_eq!(code, 0, "{}", String::from_utf8_lossy(&output.stderr));
    assert_eq!(report["schema"], "lazypull-audit/1");
    assert_eq!(report["gate"]["passed"], true);
    assert_fixture_figures(&report);
    assert_no_secret(&output);
}

#[test]
fn zstd_and_uncompressed_layers_give_the_same_figures() {
    for encoding in [Encoding::Zstd, Encoding::Plain] {
        let dir = tempfile::tempdir().unwrap();
        let image = waste_image(dir.path(), encoding);
        let (code, report, output) = audit_json(&image, &[]);
        assert_eq!(code, 0, "{}", String::from_utf8_lossy(&output.stderr));
        assert_fixture_figures(&report);
    }
}

#[test]
fn estargz_layers_give_the_same_figures() {
    let dir = tempfile::tempdir().unwrap();
    let image = waste_image(&dir.path().join("src"), Encoding::Gzip);
    let converted = format!("oci:{}:latest", dir.path().join("esgz").display());
    let output = std::process::Command::new(env!("CARGO_BIN_EXE_lazypull"))
        .args(["convert", &image, &converted, "--progress", "none"])
        .output()
        .unwrap();
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    let (code, report, output) = audit_json(&converted, &[]);
    assert_eq!(code, 0, "{}", String::from_utf8_lossy(&output.stderr));
    let want = waste_figures();
    assert_eq!(u(&report["totals"]["shipped_bytes"]), want.shipped);
    assert_eq!(u(&report["totals"]["hidden_bytes"]), want.hidden);
    assert_eq!(u(&report["totals"]["duplicate_bytes"]), want.duplicate);
    assert_eq!(report["secrets"].as_array().unwrap().len(), 3);
    assert_no_secret(&output);
}

#[test]
fn gate_failure_exits_3_with_reasons() {
    let dir = tempfile::tempdir().unwrap();
    let image = waste_image(dir.path(), Encoding::Gzip);
    let args = [
        "--lowest-efficiency",
        "0.9",
        "--highest-wasted-bytes",
        "100K",
        "--highest-wasted-percent",
        "10",
        "--highest-total-size",
        "1K",
        "--highest-secrets",
        "0",
    ];
    let (code, report, output) = audit_json(&image, &args);
    assert_eq!(code, 3, "{}", String::from_utf8_lossy(&output.stderr));
    assert_eq!(report["gate"]["passed"], false);
    let rules: Vec<&str> = report["gate"]["failures"]
        .as_array()
        .unwrap()
        .iter()
        .map(|f| f["rule"].as_str().unwrap())
        .collect();
    // 148 000 wasted bytes of 336 000-odd: efficiency about 0.56, 44 % wasted; 100K = 102 400.
    assert_eq!(
        rules,
        [
            "lowest-efficiency",
            "highest-wasted-bytes",
            "highest-wasted-percent",
            "highest-total-size",
            "highest-secrets"
        ]
    );
    let stderr = String::from_utf8_lossy(&output.stderr);
    for rule in &rules {
        assert!(
            stderr.contains(&format!("gate failed: {rule}: ")),
            "{rule} missing from stderr:\n{stderr}"
        );
    }
    assert_no_secret(&output);

    let text = audit(&image, &args);
    assert_eq!(text.status.code(), Some(3));
    let stdout = String::from_utf8_lossy(&text.stdout);
    assert!(stdout.contains("Gate: FAIL"), "{stdout}");
    assert!(
        stdout.contains("highest-wasted-bytes: 148000 bytes are wasted"),
        "{stdout}"
    );
    assert_no_secret(&text);
}

#[test]
fn thresholds_the_image_meets_pass_with_exit_0() {
    let dir = tempfile::tempdir().unwrap();
    let image = waste_image(dir.path(), Encoding::Gzip);
    let args = [
        "--lowest-efficiency",
        "0.5",
        "--highest-wasted-bytes",
        "148000",
        "--highest-secrets",
        "3",
    ];
    let output = audit(&image, &args);
    assert_eq!(
        output.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    assert!(String::from_utf8_lossy(&output.stdout).contains("Gate: PASS"));
}

#[test]
fn config_thresholds_yield_to_flags() {
    let dir = tempfile::tempdir().unwrap();
    let image = waste_image(&dir.path().join("image"), Encoding::Gzip);
    let config = dir.path().join("audit.toml");
    std::fs::write(
        &config,
        "[rules]\nhighest-wasted-bytes = \"100K\"\nlowest-efficiency = 0.9\n",
    )
    .unwrap();
    let config = config.to_str().unwrap();
    let (code, report, _) = audit_json(&image, &["--config", config]);
    assert_eq!(code, 3);
    let rules: Vec<&str> = report["gate"]["failures"]
        .as_array()
        .unwrap()
        .iter()
        .map(|f| f["rule"].as_str().unwrap())
        .collect();
    assert_eq!(rules, ["lowest-efficiency", "highest-wasted-bytes"]);
    let (code, report, _) = audit_json(
        &image,
        &[
            "--config",
            config,
            "--highest-wasted-bytes",
            "1M",
            "--lowest-efficiency",
            "0.5",
        ],
    );
    assert_eq!(code, 0, "{report}");
}

#[test]
fn text_report_lists_waste_and_secrets() {
    let dir = tempfile::tempdir().unwrap();
    let image = waste_image(dir.path(), Encoding::Gzip);
    let output = audit(&image, &["--format", "text"]);
    assert_eq!(output.status.code(), Some(0));
    let stdout = String::from_utf8_lossy(&output.stdout);
    for expected in [
        "/tmp/build.log  (deleted by layer 1)",
        "/app/copy.bin  (duplicate of /usr/bin/app)",
        "apt-cache",
        "git-directory",
        "git-credentials  layer  0  /app/.git/config",
        "created by: ADD base.tar /",
    ] {
        assert!(stdout.contains(expected), "{expected:?} missing:\n{stdout}");
    }
    assert_no_secret(&output);
}

#[test]
fn missing_image_exits_1() {
    let dir = tempfile::tempdir().unwrap();
    let output = audit(&format!("oci:{}", dir.path().join("none").display()), &[]);
    assert_eq!(output.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&output.stderr).contains("error:"));
}

#[test]
fn invalid_flag_value_exits_2_not_3() {
    let dir = tempfile::tempdir().unwrap();
    let image = waste_image(&dir.path().join("image"), Encoding::Gzip);
    let output = audit(&image, &["--highest-wasted-bytes", "1X"]);
    assert_eq!(output.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&output.stderr).contains("1X"));
}

#[test]
fn invalid_config_exits_1() {
    let dir = tempfile::tempdir().unwrap();
    let image = waste_image(&dir.path().join("image"), Encoding::Gzip);
    let config = dir.path().join("audit.toml");
    std::fs::write(&config, "[rules]\nlowest-efficiency = 2.0\n").unwrap();
    let output = audit(&image, &["--config", config.to_str().unwrap()]);
    assert_eq!(output.status.code(), Some(1));
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        stderr.contains("lowest-efficiency must be between 0 and 1"),
        "{stderr}"
    );
}
