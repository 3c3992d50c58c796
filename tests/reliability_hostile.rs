//! Hostile eStargz layers, each built by editing the TOC of a valid blob and recomputing the
//! TOC digest so that the annotation check passes and the validation under test is what
//! rejects the layer.
//!
//! Each case is checked twice: through the format library (`open_blob` and `read_chunk`, which
//! give the typed error) and through `lazypull mount` on an OCI layout (which fails to mount
//! with that error, or mounts and answers EIO on the damaged file). Nothing may appear outside
//! the mount and state directories.

mod hostile_support;
mod mount_util;
mod serve_util;

use std::io::ErrorKind;
use std::path::Path;
use std::time::Duration;

use estargz::blob::{BlobOptions, open_blob, read_chunk};
use estargz::footer::{GZIP_FOOTER_SIZE, gzip_footer};
use estargz::index::{IndexOptions, NodeId};
use estargz::{BlobError, ChunkError, Digest, Limits, TocError};
use hostile_support::{
    HostileBlob, base_blob, edit_toc, entry_mut, random_bytes, with_toc_json, write_layout,
};
use lazypull_testkit::tree::snapshot;
use lazypull_testkit::{Prereq, require_or_skip};
use mount_util::{Mount, path_str};
use serde_json::{Value, json};
use serve_util::{Stack, tail, wait_until};

/// What a hostile layer must lead to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Expect {
    /// `open_blob` fails, and so does `lazypull mount`.
    RejectedAtOpen,
    /// The layer opens; reading `dir/<file>` fails with a chunk error, EIO through the mount.
    EioAtRead(&'static str),
    /// The layer opens and every listed file reads back its original bytes.
    Served,
}

struct Case {
    name: &'static str,
    blob: HostileBlob,
    expect: Expect,
    /// Checks the library error of a case rejected at open.
    check: fn(&BlobError) -> bool,
}

fn any_error(_: &BlobError) -> bool {
    true
}

fn chunks_of<'a>(toc: &'a mut Value, name: &str) -> Vec<&'a mut Value> {
    toc["entries"]
        .as_array_mut()
        .unwrap()
        .iter_mut()
        .filter(|entry| entry["name"] == name)
        .collect()
}

fn push_entries(toc: &mut Value, entries: Vec<Value>) {
    toc["entries"].as_array_mut().unwrap().extend(entries);
}

fn cases(canary: &Path) -> Vec<Case> {
    let base = base_blob();
    let canary_name = path_str(canary).to_owned();
    let blob_len = base.bytes.len() as u64;
    let mut cases = vec![
        Case {
            name: "chunks_overlap_within_a_file",
            // The second chunk of dir/big points at the member of the first one. Both decode to
            // the same bytes under two digests, so the index rejects the pair: a reader that
            // shares one decoded copy per place would serve the first chunk for the second.
            blob: edit_toc(&base, |toc| {
                let mut chunks = chunks_of(toc, "dir/big");
                let first = chunks[0]["offset"].clone();
                chunks[1]["offset"] = first;
            }),
            expect: Expect::RejectedAtOpen,
            check: |err| {
                matches!(err, BlobError::Toc(TocError::InvalidEntry { name, reason, .. })
                if name == "dir/big" && reason.contains("another digest"))
            },
        },
        Case {
            // dir/small (10 bytes) is pointed at the first member of dir/big: it decodes to the
            // first 10 bytes of dir/big, which fail the chunk digest of dir/small.
            name: "files_share_one_member",
            blob: edit_toc(&base, |toc| {
                let big = chunks_of(toc, "dir/big")[0]["offset"].clone();
                entry_mut(toc, "dir/small")["offset"] = big;
            }),
            expect: Expect::EioAtRead("small"),
            check: any_error,
        },
        Case {
            name: "chunk_offset_past_the_toc",
            blob: edit_toc(&base, |toc| {
                entry_mut(toc, "dir/small")["offset"] = json!(blob_len + 4096);
            }),
            expect: Expect::RejectedAtOpen,
            check: |err| matches!(err, BlobError::Toc(TocError::InvalidEntry { name, .. }) if name == "dir/small"),
        },
        Case {
            name: "negative_size",
            blob: edit_toc(&base, |toc| {
                entry_mut(toc, "dir/small")["size"] = json!(-1);
            }),
            expect: Expect::RejectedAtOpen,
            check: |err| matches!(err, BlobError::Toc(TocError::Json(_))),
        },
        Case {
            name: "huge_size",
            blob: edit_toc(&base, |toc| {
                entry_mut(toc, "dir/small")["size"] = json!(u64::MAX);
            }),
            expect: Expect::RejectedAtOpen,
            check: |err| matches!(err, BlobError::Toc(TocError::InvalidEntry { name, .. }) if name == "dir/small"),
        },
        Case {
            name: "huge_chunk_size",
            blob: edit_toc(&base, |toc| {
                let mut chunks = chunks_of(toc, "dir/big");
                chunks[2]["chunkSize"] = json!(u64::MAX / 2);
            }),
            expect: Expect::RejectedAtOpen,
            check: |err| matches!(err, BlobError::Toc(TocError::InvalidEntry { name, .. }) if name == "dir/big"),
        },
        Case {
            name: "hard_link_cycle",
            // Links that only lead to each other, and a link to itself, have no file behind them.
            blob: edit_toc(&base, |toc| {
                push_entries(
                    toc,
                    vec![
                        json!({"name": "dir/a", "type": "hardlink", "linkName": "dir/b"}),
                        json!({"name": "dir/b", "type": "hardlink", "linkName": "dir/a"}),
                        json!({"name": "dir/self", "type": "hardlink", "linkName": "dir/self"}),
                    ],
                );
            }),
            expect: Expect::Served,
            check: any_error,
        },
        Case {
            name: "dotdot_and_absolute_names",
            blob: edit_toc(&base, |toc| {
                let escape = format!("../../../../../../..{canary_name}/dotdot");
                let absolute = format!("{canary_name}/absolute");
                push_entries(
                    toc,
                    vec![
                        json!({"name": escape, "type": "dir", "mode": 493}),
                        json!({"name": absolute, "type": "dir", "mode": 493}),
                        json!({"name": "../../up-link", "type": "symlink", "linkName": "../../../../etc/passwd"}),
                    ],
                );
            }),
            expect: Expect::Served,
            check: any_error,
        },
        Case {
            name: "footer_points_outside_the_blob",
            blob: {
                let mut blob = base.clone();
                let at = blob.bytes.len() - GZIP_FOOTER_SIZE;
                blob.bytes.truncate(at);
                blob.bytes.extend_from_slice(&gzip_footer(blob_len * 4));
                blob
            },
            expect: Expect::RejectedAtOpen,
            check: |err| matches!(err, BlobError::Footer(_)),
        },
        Case {
            name: "chunk_digest_mismatch",
            blob: edit_toc(&base, |toc| {
                entry_mut(toc, "dir/small")["chunkDigest"] =
                    json!(Digest::of(b"other").to_string());
            }),
            expect: Expect::EioAtRead("small"),
            check: any_error,
        },
    ];
    // A TOC whose JSON is not what its digest says never gets as far as the index.
    let mut lying = with_toc_json(&base, br#"{"version":1,"entries":[]}"#);
    lying.toc_digest = base.toc_digest;
    cases.push(Case {
        name: "toc_digest_annotation_mismatch",
        blob: lying,
        expect: Expect::RejectedAtOpen,
        check: |err| matches!(err, BlobError::Toc(TocError::DigestMismatch { .. })),
    });
    cases
}

/// Opens `blob` with its annotation digest and reads every chunk of every file.
fn open_and_read(blob: &HostileBlob, limits: Limits) -> Result<(), BlobError> {
    let options = BlobOptions {
        toc_digest: Some(blob.toc_digest),
        index: IndexOptions {
            limits,
            ..IndexOptions::default()
        },
    };
    let opened = open_blob(&blob.bytes.as_slice(), &options)?;
    for i in 0..opened.index.node_count() {
        for chunk in opened.index.chunks(NodeId(i as u32)) {
            read_chunk(&blob.bytes.as_slice(), chunk, opened.compression)?;
        }
    }
    Ok(())
}

#[test]
fn hostile_tocs_give_typed_errors_in_the_library() {
    let canary = tempfile::tempdir().unwrap();
    for case in cases(canary.path()) {
        let result = open_and_read(&case.blob, Limits::default());
        match case.expect {
            Expect::RejectedAtOpen => {
                let Err(err) = result else {
                    panic!("{}: the layer opened and read", case.name)
                };
                assert!(
                    (case.check)(&err),
                    "{}: unexpected error {err:?}",
                    case.name
                );
                let opened = open_blob(
                    &case.blob.bytes.as_slice(),
                    &BlobOptions::verify_with(case.blob.toc_digest),
                );
                assert!(opened.is_err(), "{}: open succeeded", case.name);
            }
            Expect::EioAtRead(_) => {
                let Err(err) = result else {
                    panic!("{}: the layer opened and read", case.name)
                };
                assert!(
                    matches!(err, BlobError::Chunk(ChunkError::DigestMismatch { .. })),
                    "{}: unexpected error {err:?}",
                    case.name
                );
            }
            Expect::Served => result.unwrap_or_else(|e| panic!("{}: {e}", case.name)),
        }
    }
}

#[test]
fn toc_above_the_configured_limit_is_rejected() {
    let base = base_blob();
    let limits = Limits {
        max_toc_json_bytes: 200,
        ..Limits::default()
    };
    let err = open_and_read(&base, limits).unwrap_err();
    assert!(
        matches!(
            err,
            BlobError::Toc(TocError::TooLarge {
                what: "TOC JSON",
                limit: 200,
                ..
            })
        ),
        "{err:?}"
    );
    let compressed = Limits {
        max_toc_compressed_bytes: 64,
        ..Limits::default()
    };
    let err = open_and_read(&base, compressed).unwrap_err();
    assert!(
        matches!(
            err,
            BlobError::Toc(TocError::TooLarge {
                what: "compressed TOC",
                ..
            })
        ),
        "{err:?}"
    );
}

#[test]
fn hostile_layers_mount_safely_or_fail_clearly() {
    require_or_skip!(
        Prereq::Root,
        Prereq::Fuse,
        Prereq::Overlayfs,
        Prereq::Binary("fusermount3")
    );
    // Every directory of the test lives below `root`, so its listing shows anything created
    // next to the mount or state directories.
    let root = tempfile::Builder::new()
        .prefix("lazypull-hostile-")
        .tempdir()
        .unwrap();
    let canary = root.path().join("canary");
    std::fs::create_dir(&canary).unwrap();
    std::fs::write(canary.join("keep"), b"canary\n").unwrap();
    let canary_before = snapshot(&canary).unwrap();

    for case in cases(&canary) {
        let layout = root.path().join(format!("layout-{}", case.name));
        write_layout(&layout, "latest", &case.blob);
        let image = format!("oci:{}:latest", path_str(&layout));
        let mounted = Mount::start_in(root.path(), &image, &["--no-disk-cache"]);
        match case.expect {
            Expect::RejectedAtOpen => {
                let err = mounted
                    .err()
                    .unwrap_or_else(|| panic!("{}: mounted", case.name));
                let message = format!("{err:#}");
                assert!(
                    message.contains("TOC")
                        || message.contains("footer")
                        || message.contains("eStargz"),
                    "{}: message does not name the cause: {message}",
                    case.name
                );
            }
            Expect::EioAtRead(file) => {
                let mount = mounted.unwrap_or_else(|e| panic!("{}: {e:#}", case.name));
                let err = match std::fs::read(mount.path().join("dir").join(file)) {
                    Ok(content) => panic!(
                        "{}: read {} bytes of dir/{file}, correct: {}",
                        case.name,
                        content.len(),
                        content == random_bytes(150_000, 2) || content == random_bytes(10, 1)
                    ),
                    Err(err) => err,
                };
                assert_eq!(err.raw_os_error(), Some(libc_eio()), "{}: {err}", case.name);
                let other = if file == "big" { "small" } else { "big" };
                let content = std::fs::read(mount.path().join("dir").join(other)).unwrap();
                let expected = if other == "big" {
                    random_bytes(150_000, 2)
                } else {
                    random_bytes(10, 1)
                };
                assert!(content == expected, "{}: dir/{other} changed", case.name);
                mount.unmount().unwrap();
            }
            Expect::Served => {
                let mount = mounted.unwrap_or_else(|e| panic!("{}: {e:#}", case.name));
                let tree = snapshot(mount.path()).unwrap();
                let big = std::fs::read(mount.path().join("dir/big")).unwrap();
                assert!(
                    big == random_bytes(150_000, 2),
                    "{}: dir/big changed",
                    case.name
                );
                for name in ["dir/a", "dir/b", "dir/self"] {
                    let err = std::fs::metadata(mount.path().join(name)).unwrap_err();
                    assert_eq!(err.kind(), ErrorKind::NotFound, "{}: {name}", case.name);
                }
                if case.name == "dotdot_and_absolute_names" {
                    // Names are cleaned below the layer root, so both land inside the mount.
                    let inside = canary.strip_prefix("/").unwrap();
                    assert!(
                        mount.path().join(inside).join("dotdot").is_dir(),
                        "{:?}",
                        tree.paths()
                    );
                    assert!(
                        mount.path().join(inside).join("absolute").is_dir(),
                        "{:?}",
                        tree.paths()
                    );
                    assert_eq!(
                        std::fs::read_link(mount.path().join("up-link")).unwrap(),
                        Path::new("../../../../etc/passwd")
                    );
                }
                mount.unmount().unwrap();
            }
        }

        assert_eq!(
            canary_before.diff(&snapshot(&canary).unwrap()),
            Vec::<String>::new(),
            "{}: canary changed",
            case.name
        );
        let mut names: Vec<String> = std::fs::read_dir(root.path())
            .unwrap()
            .map(|entry| entry.unwrap().file_name().to_string_lossy().into_owned())
            .filter(|name| !name.starts_with("layout-") && !name.starts_with("lazypull-mnt-"))
            .collect();
        names.sort();
        assert_eq!(
            names,
            ["canary"],
            "{}: files appeared next to the mount",
            case.name
        );
        std::fs::remove_dir_all(&layout).unwrap();
    }
}

fn libc_eio() -> i32 {
    5
}

#[test]
fn serve_survives_hostile_layers_from_containerd() {
    require_or_skip!(
        Prereq::Root,
        Prereq::Fuse,
        Prereq::Overlayfs,
        Prereq::Binary("containerd"),
        Prereq::Binary("ctr"),
        Prereq::Binary("ctr-remote"),
        Prereq::Binary("docker-registry"),
        Prereq::Binary("skopeo")
    );
    let canary = tempfile::tempdir().unwrap();
    let stack = Stack::start("").unwrap();
    let work = tempfile::tempdir().unwrap();
    for case in cases(canary.path()) {
        let layout = work.path().join(case.name);
        write_layout(&layout, "latest", &case.blob);
        let repository = format!("hostile-{}:latest", case.name.replace('_', "-"));
        let reference = stack
            .registry
            .push_oci_layout(&layout, "latest", &repository)
            .unwrap();

        // rpull sends the remote-snapshotter labels. The pull itself may fail: a layer the
        // daemon rejects is handed back to containerd, whose unpack then finds the edited TOC
        // member at odds with the diff id.
        let output = stack.containerd.ctr_remote([
            "image",
            "rpull",
            "--plain-http",
            "--snapshotter",
            "lazypull",
            &reference,
        ]);
        eprintln!(
            "{}: rpull exited with {}: {}",
            case.name,
            output.status,
            tail(&String::from_utf8_lossy(&output.stderr), 3)
        );

        // The daemon still answers containerd's gRPC calls.
        let answered = wait_until(Duration::from_secs(10), || {
            stack
                .containerd
                .ctr(["snapshots", "--snapshotter", "lazypull", "ls"])
                .status
                .success()
        });
        assert!(
            answered,
            "{}: the daemon stopped answering\n{}",
            case.name,
            tail(&stack.serve.log(), 40)
        );
        let _ = stack.containerd.ctr(["images", "rm", "--sync", &reference]);
    }
    assert!(
        std::fs::read_dir(canary.path()).unwrap().next().is_none(),
        "something was created in the canary directory"
    );
}
