//! Registry credentials: `lazypull convert` reads them from the docker config (`auths` entries
//! and credential helpers, found through `DOCKER_CONFIG`) and uses HTTP Basic auth against a
//! registry that requires it.

mod convert_support;

use std::io::Write;
use std::net::TcpStream;
use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use convert_support::*;
use lazypull_testkit::tarbuild::{Builder, Entry, pattern};
use lazypull_testkit::{Prereq, require_or_skip};

const USER: &str = "lazypull";
const PASSWORD: &str = "s3cret-for-tests";

/// A docker-registry requiring Basic auth from an htpasswd file; killed on drop.
struct AuthRegistry {
    child: Child,
    port: u16,
    _dir: tempfile::TempDir,
}

impl AuthRegistry {
    fn start() -> AuthRegistry {
        let dir = tempfile::tempdir().unwrap();
        // distribution accepts bcrypt entries; Python's crypt writes them as $2b$.
        let hash = Command::new("python3")
            .args([
                "-W",
                "ignore",
                "-c",
                "import crypt, sys; print(crypt.crypt(sys.argv[1], crypt.mksalt(crypt.METHOD_BLOWFISH)))",
                PASSWORD,
            ])
            .output()
            .unwrap();
        assert!(
            hash.status.success(),
            "bcrypt hashing failed: {}",
            String::from_utf8_lossy(&hash.stderr)
        );
        let htpasswd = dir.path().join("htpasswd");
        std::fs::write(
            &htpasswd,
            format!("{USER}:{}", String::from_utf8_lossy(&hash.stdout).trim()),
        )
        .unwrap();
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let config = dir.path().join("config.yml");
        std::fs::write(
            &config,
            format!(
                "version: 0.1\nlog:\n  level: error\nstorage:\n  filesystem:\n    rootdirectory: {}\n\
                 auth:\n  htpasswd:\n    realm: lazypull-test\n    path: {}\n\
                 http:\n  addr: 127.0.0.1:{port}\n  secret: lazypull-auth-test\n",
                dir.path().join("storage").display(),
                htpasswd.display()
            ),
        )
        .unwrap();
        let child = Command::new("docker-registry")
            .arg("serve")
            .arg(&config)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        let registry = AuthRegistry {
            child,
            port,
            _dir: dir,
        };
        let deadline = Instant::now() + Duration::from_secs(15);
        while TcpStream::connect(("127.0.0.1", port)).is_err() {
            assert!(
                Instant::now() < deadline,
                "the registry did not start listening on port {port}"
            );
            std::thread::sleep(Duration::from_millis(50));
        }
        registry
    }

    fn host(&self) -> String {
        format!("127.0.0.1:{}", self.port)
    }
}

impl Drop for AuthRegistry {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Runs `lazypull convert` with `DOCKER_CONFIG` (and a `PATH` that may hold a helper).
fn convert_with_config(
    source: &str,
    destination: &str,
    docker_config: &Path,
    path_prefix: Option<&Path>,
) -> std::process::Output {
    let tmp = scratch("lazypull-convert-tmp-");
    let mut command = lazypull();
    command
        .args([
            "convert",
            source,
            destination,
            "--json",
            "--progress",
            "none",
            "--tmpdir",
        ])
        .arg(tmp.path())
        .env("DOCKER_CONFIG", docker_config);
    if let Some(prefix) = path_prefix {
        let path = std::env::var("PATH").unwrap_or_default();
        command.env("PATH", format!("{}:{path}", prefix.display()));
    }
    let output = command.output().unwrap();
    assert_dir_empty(tmp.path());
    output
}

#[test]
fn basic_auth_credentials_come_from_docker_config() {
    require_or_skip!(
        Prereq::Binary("docker-registry"),
        Prereq::Binary("skopeo"),
        Prereq::Binary("python3")
    );
    let registry = AuthRegistry::start();
    let work = scratch("lazypull-convert-work-");
    let source = work.path().join("source");
    let mut tar = Builder::new();
    tar.append(&Entry::file("app/data.bin", pattern(100_000, 1)));
    let tar = tar.finish();
    write_layout(
        &source,
        "v1",
        &[SourceLayer::new(gzip(&tar), LAYER_GZIP, tar.clone())],
    );
    let image = format!("{}/app:v1", registry.host());
    let status = Command::new("skopeo")
        .args([
            "--insecure-policy",
            "copy",
            "--quiet",
            "--dest-tls-verify=false",
            "--dest-creds",
            &format!("{USER}:{PASSWORD}"),
        ])
        .arg(format!("oci:{}:v1", source.display()))
        .arg(format!("docker://{image}"))
        .status()
        .unwrap();
    assert!(
        status.success(),
        "skopeo could not push to the auth registry"
    );
    let destination = format!("{}/app:esgz", registry.host());

    // No credentials: rejected with advice, and the password never appears.
    let empty = work.path().join("no-credentials");
    std::fs::create_dir_all(&empty).unwrap();
    let output = convert_with_config(&image, &destination, &empty, None);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        !output.status.success(),
        "anonymous access succeeded: {stderr}"
    );
    assert!(stderr.contains("denied access"), "{stderr}");
    assert!(stderr.contains("docker login"), "{stderr}");

    // An `auths` entry.
    let with_auths = work.path().join("auths");
    std::fs::create_dir_all(&with_auths).unwrap();
    let encoded = base64_encode(format!("{USER}:{PASSWORD}").as_bytes());
    std::fs::write(
        with_auths.join("config.json"),
        format!(
            r#"{{"auths":{{"{}":{{"auth":"{encoded}"}}}}}}"#,
            registry.host()
        ),
    )
    .unwrap();
    let output = convert_with_config(&image, &destination, &with_auths, None);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        output.status.success(),
        "conversion with an auths entry failed: {stderr}"
    );
    assert!(!stderr.contains(PASSWORD), "the password was logged");

    // A credential helper named in `credHelpers`.
    let with_helper = work.path().join("helper");
    let bin = work.path().join("bin");
    std::fs::create_dir_all(&with_helper).unwrap();
    std::fs::create_dir_all(&bin).unwrap();
    std::fs::write(
        with_helper.join("config.json"),
        format!(
            r#"{{"credHelpers":{{"{}":"lazypulltest"}}}}"#,
            registry.host()
        ),
    )
    .unwrap();
    let helper = bin.join("docker-credential-lazypulltest");
    let mut script = std::fs::File::create(&helper).unwrap();
    writeln!(script, "#!/bin/sh\nread server\necho '{{\"ServerURL\":\"'$server'\",\"Username\":\"{USER}\",\"Secret\":\"{PASSWORD}\"}}'").unwrap();
    drop(script);
    std::fs::set_permissions(&helper, std::fs::Permissions::from_mode(0o755)).unwrap();
    let output = convert_with_config(
        &image,
        &format!("{}/app:helper", registry.host()),
        &with_helper,
        Some(&bin),
    );
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        output.status.success(),
        "conversion with a credential helper failed: {stderr}"
    );
    assert!(!stderr.contains(PASSWORD), "the password was logged");
}

/// Standard base64 with padding, for the `auth` field of the docker config.
fn base64_encode(bytes: &[u8]) -> String {
    const ALPHABET: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let mut out = String::new();
    for chunk in bytes.chunks(3) {
        let n = chunk
            .iter()
            .enumerate()
            .fold(0u32, |acc, (i, &b)| acc | (u32::from(b) << (16 - 8 * i)));
        for i in 0..4 {
            if i <= chunk.len() {
                out.push(ALPHABET[((n >> (18 - 6 * i)) & 63) as usize] as char);
            } else {
                out.push('=');
            }
        }
    }
    out
}
