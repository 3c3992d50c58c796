//! Shared helpers of the `audit_*` tests: OCI layouts with layers in any compression and a
//! config history, the purpose-built image with known waste, and running `lazypull audit`.

#![allow(dead_code)]

use std::path::Path;
use std::process::{Command, Output};

use lazypull_testkit::tarbuild::{Builder, Entry, gzip, pattern, zstd};
use serde_json::{Value, json};
use sha2::{Digest, Sha256};

/// The token inside the fixture's `.git/config` URL. It must never be printed.
pub const GIT_TOKEN: &str = "ghp_AuditFixtureToken0123456789abcdef";
/// The token inside the fixture's `.npmrc`. It must never be printed.
pub const NPM_TOKEN: &str = "npm_AuditFixtureSecret9876543210";

/// The body of the fixture's private key. It must never be printed.
pub const KEY_BODY: &str = "b3BlbnNzaC1rZXktdjEAAAAABG5vbmUAAAAEbm9uZQAuditFixtureKeyBody";

/// Returns a PEM private key file with [`KEY_BODY`].
pub fn private_key() -> Vec<u8> {
    format!("-----BEGIN OPENSSH PRIVATE KEY-----\n{KEY_BODY}\n-----END OPENSSH PRIVATE KEY-----\n")
        .into_bytes()
}

/// `.git/config` of the fixture, with [`GIT_TOKEN`] in the remote URL.
pub fn git_config() -> Vec<u8> {
    format!(
        "[core]\n\trepositoryformatversion = 0\n[remote \"origin\"]\n\turl = https://deploy:{GIT_TOKEN}@git.example.test/app.git\n\tfetch = +refs/heads/*:refs/remotes/origin/*\n"
    )
    .into_bytes()
}

/// `.npmrc` of the fixture, with [`NPM_TOKEN`].
pub fn npmrc() -> Vec<u8> {
    format!(
        "registry=https://registry.example.test/\n//registry.example.test/:_authToken={NPM_TOKEN}\n"
    )
    .into_bytes()
}

/// Layer compression in a test layout.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Encoding {
    /// gzip, level 6.
    Gzip,
    /// zstd, level 3.
    Zstd,
    /// No compression.
    Plain,
}

/// The two layers of the fixture image, bottom first. Known waste:
/// - `/tmp/build.log` (30 000 bytes) deleted by a whiteout in layer 1;
/// - `/opt/data/a.bin` (10 000 bytes) hidden by an opaque `/opt/data` in layer 1;
/// - `/usr/share/app/config.json` (8 000 bytes) overwritten in layer 1 (by 9 000 bytes);
/// - `/app/copy.bin` (100 000 bytes) in layer 1 has the content of `/usr/bin/app`;
/// - `/var/lib/apt/lists/` keeps 50 000 bytes of package lists;
/// - `/app/.git` contains a pack of 20 000 bytes and a config with a token;
/// - `/root/.npmrc` contains an auth token and `/root/.ssh/id_ed25519` a private key.
///
/// `/app/lib/app-link` is a hard link to `/usr/bin/app`: one file, not a duplicate.
pub fn waste_layers() -> Vec<Vec<u8>> {
    let app = pattern(100_000, 1);
    let mut base = Builder::new();
    base.append(&Entry::dir("etc"))
        .append(&Entry::file("etc/os-release", b"ID=audit-test\n"))
        .append(&Entry::dir("usr"))
        .append(&Entry::dir("usr/bin"))
        .append(&Entry::file("usr/bin/app", &app))
        .append(&Entry::dir("var/lib/apt/lists"))
        .append(&Entry::file(
            "var/lib/apt/lists/deb.example.test_dists_bookworm_main_binary-amd64_Packages",
            pattern(50_000, 2),
        ))
        .append(&Entry::file("var/lib/apt/lists/lock", b""))
        .append(&Entry::dir("tmp"))
        .append(&Entry::file("tmp/build.log", pattern(30_000, 3)))
        .append(&Entry::dir("app"))
        .append(&Entry::dir("app/.git"))
        .append(&Entry::file("app/.git/config", git_config()))
        .append(&Entry::file(
            "app/.git/objects/pack/pack-1.pack",
            pattern(20_000, 4),
        ))
        .append(&Entry::dir("app/lib"))
        .append(&Entry::hardlink("app/lib/app-link", "usr/bin/app"))
        .append(&Entry::dir("opt/data"))
        .append(&Entry::file("opt/data/a.bin", pattern(10_000, 5)))
        .append(&Entry::file("usr/share/app/config.json", pattern(8_000, 8)));
    let mut top = Builder::new();
    top.append(&Entry::whiteout("tmp/build.log"))
        .append(&Entry::opaque("opt/data"))
        .append(&Entry::file("opt/data/b.bin", pattern(5_000, 6)))
        .append(&Entry::file("usr/share/app/config.json", pattern(9_000, 9)))
        .append(&Entry::file("app/copy.bin", &app))
        .append(&Entry::dir("root"))
        .append(&Entry::file("root/.npmrc", npmrc()))
        .append(&Entry::file("root/.ssh/id_ed25519", private_key()).mode(0o600));
    vec![base.finish(), top.finish()]
}

/// Config history of the fixture: two layer-making steps around `empty_layer` ones.
pub fn waste_history() -> Value {
    json!([
        {"created_by": "ADD base.tar /"},
        {"created_by": "ENV APP_HOME=/app", "empty_layer": true},
        {"created_by": "RUN cp /usr/bin/app /app/copy.bin && rm /tmp/build.log"},
        {"created_by": "CMD [\"/usr/bin/app\"]", "empty_layer": true}
    ])
}

/// Sizes of the fixture's regular files, for the expected figures.
pub struct WasteFigures {
    /// Every regular file of both layers.
    pub shipped: u64,
    /// What reaches the final filesystem (hard link counted once).
    pub final_bytes: u64,
    /// Deleted and overwritten.
    pub hidden: u64,
    /// The extra copy of `/usr/bin/app`.
    pub duplicate: u64,
}

/// Returns the expected figures of [`waste_layers`].
pub fn waste_figures() -> WasteFigures {
    let git = git_config().len() as u64;
    let npm = npmrc().len() as u64;
    let os_release = b"ID=audit-test\n".len() as u64;
    let base = os_release + 100_000 + 50_000 + 30_000 + git + 20_000 + 10_000 + 8_000;
    let top = 5_000 + 9_000 + 100_000 + npm + private_key().len() as u64;
    let hidden = 30_000 + 10_000 + 8_000;
    WasteFigures {
        shipped: base + top,
        final_bytes: base + top - hidden,
        hidden,
        duplicate: 100_000,
    }
}

/// `sha256:<hex>` of `bytes`.
pub fn sha256(bytes: &[u8]) -> String {
    format!("sha256:{}", hex::encode(Sha256::digest(bytes)))
}

/// Writes an OCI layout at `dir` with one image tagged `tag`: the given uncompressed layer
/// tars, each stored with `encoding`, and `history` as the config's history.
pub fn write_layout(
    dir: &Path,
    tag: &str,
    layers: &[Vec<u8>],
    encoding: Encoding,
    history: Value,
) -> Vec<String> {
    let blobs = dir.join("blobs/sha256");
    std::fs::create_dir_all(&blobs).unwrap();
    let put = |bytes: &[u8]| {
        let digest = sha256(bytes);
        std::fs::write(blobs.join(&digest["sha256:".len()..]), bytes).unwrap();
        digest
    };
    let media_type = match encoding {
        Encoding::Gzip => "application/vnd.oci.image.layer.v1.tar+gzip",
        Encoding::Zstd => "application/vnd.oci.image.layer.v1.tar+zstd",
        Encoding::Plain => "application/vnd.oci.image.layer.v1.tar",
    };
    let encode = |tar: &[u8]| match encoding {
        Encoding::Gzip => gzip(tar, 6),
        Encoding::Zstd => zstd(tar, 3),
        Encoding::Plain => tar.to_vec(),
    };
    let mut descriptors = Vec::new();
    let mut digests = Vec::new();
    for tar in layers {
        let blob = encode(tar);
        let digest = put(&blob);
        descriptors.push(json!({"mediaType": media_type, "digest": digest, "size": blob.len()}));
        digests.push(digest);
    }
    let diff_ids: Vec<String> = layers.iter().map(|t| sha256(t)).collect();
    let config = serde_json::to_vec(&json!({
        "architecture": "amd64",
        "os": "linux",
        "config": {"Cmd": ["/usr/bin/app"]},
        "rootfs": {"type": "layers", "diff_ids": diff_ids},
        "history": history,
    }))
    .unwrap();
    let config_digest = put(&config);
    let manifest = serde_json::to_vec(&json!({
        "schemaVersion": 2,
        "mediaType": "application/vnd.oci.image.manifest.v1+json",
        "config": {"mediaType": "application/vnd.oci.image.config.v1+json", "digest": config_digest, "size": config.len()},
        "layers": descriptors,
    }))
    .unwrap();
    let manifest_digest = put(&manifest);
    let index = json!({
        "schemaVersion": 2,
        "manifests": [{
            "mediaType": "application/vnd.oci.image.manifest.v1+json",
            "digest": manifest_digest,
            "size": manifest.len(),
            "annotations": {"org.opencontainers.image.ref.name": tag},
        }],
    });
    std::fs::write(dir.join("index.json"), serde_json::to_vec(&index).unwrap()).unwrap();
    std::fs::write(dir.join("oci-layout"), br#"{"imageLayoutVersion":"1.0.0"}"#).unwrap();
    digests
}

/// Writes the fixture image to `dir` (tag `latest`) and returns `oci:DIR:latest`.
pub fn waste_image(dir: &Path, encoding: Encoding) -> String {
    write_layout(dir, "latest", &waste_layers(), encoding, waste_history());
    format!("oci:{}:latest", dir.display())
}

/// Runs `lazypull audit IMAGE ARGS`.
pub fn audit(image: &str, args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_lazypull"))
        .arg("audit")
        .arg(image)
        .args(args)
        .output()
        .expect("failed to run lazypull")
}

/// Runs `lazypull audit IMAGE --format json ARGS` and returns the exit code and the report.
pub fn audit_json(image: &str, args: &[&str]) -> (i32, Value, Output) {
    let mut all = vec!["--format", "json"];
    all.extend_from_slice(args);
    let output = audit(image, &all);
    let code = output.status.code().unwrap_or(-1);
    let report: Value = serde_json::from_slice(&output.stdout).unwrap_or_else(|e| {
        panic!(
            "audit printed no JSON ({e}), exit {code}:\n{}\n{}",
            String::from_utf8_lossy(&output.stdout),
            String::from_utf8_lossy(&output.stderr)
        )
    });
    (code, report, output)
}

/// Finds the finding of `kind` in a JSON report.
pub fn finding<'a>(report: &'a Value, kind: &str) -> Option<&'a Value> {
    report["findings"]
        .as_array()
        .and_then(|f| f.iter().find(|f| f["kind"] == kind))
}
