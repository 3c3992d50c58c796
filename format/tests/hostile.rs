//! Hostile and corrupt input never panics, hangs or yields wrong bytes: every parser either
//! accepts the input or returns a typed error.

use std::io::Cursor;

use estargz::blob::{BlobOptions, decode_chunk, open_blob, read_chunk};
use estargz::build::{BuildOptions, build};
use estargz::index::{Chunk, IndexOptions, LayerIndex};
use estargz::toc::{EntryKind, TocEntry};
use estargz::{BlobError, Compression, Digest, Limits, TocError};
use proptest::prelude::*;

fn sample_blob() -> (Vec<u8>, Digest) {
    let mut tar = Vec::new();
    for (i, size) in [0usize, 10, 70_000, 200_000].iter().enumerate() {
        let content: Vec<u8> = (0..*size).map(|b| (b * 31 + i) as u8).collect();
        tar.extend_from_slice(&estargz::tar::encode::encode(
            &estargz::tar::encode::HeaderSpec {
                name: format!("dir/file{i}").as_bytes(),
                typeflag: b'0',
                mode: 0o644,
                size: *size as u64,
                ..Default::default()
            },
        ));
        tar.extend_from_slice(&content);
        tar.resize(tar.len().div_ceil(512) * 512, 0);
    }
    tar.resize(tar.len() + 1024, 0);
    let mut blob = Vec::new();
    let out = build(
        Cursor::new(tar),
        &mut blob,
        &BuildOptions {
            chunk_size: 65536,
            ..Default::default()
        },
    )
    .unwrap();
    (blob, out.toc_digest)
}

fn read_everything(blob: &[u8], digest: Option<Digest>) -> Result<Vec<Vec<u8>>, BlobError> {
    let options = BlobOptions {
        toc_digest: digest,
        index: IndexOptions::default(),
    };
    let opened = open_blob(&blob, &options)?;
    let mut files = Vec::new();
    for i in 0..opened.index.node_count() {
        let id = estargz::index::NodeId(i as u32);
        let mut content = Vec::new();
        for chunk in opened.index.chunks(id) {
            content.extend(read_chunk(&blob, chunk, opened.compression)?);
        }
        files.push(content);
    }
    Ok(files)
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(256))]

    #[test]
    fn random_bytes_are_never_a_blob(data in proptest::collection::vec(any::<u8>(), 0..2048)) {
        prop_assert!(open_blob(&data.as_slice(), &BlobOptions::default()).is_err());
    }

    #[test]
    fn random_tail_never_panics_the_footer_parser(tail in proptest::collection::vec(any::<u8>(), 0..64), size in 0u64..1 << 40) {
        let size = size.max(tail.len() as u64);
        let _ = estargz::footer::parse_footer(&tail, size);
    }

    #[test]
    fn random_json_never_panics_the_index(json in "\\PC{0,400}") {
        let _ = LayerIndex::from_toc_json(json.as_bytes(), 1 << 20, &IndexOptions::default());
    }

    #[test]
    fn corrupted_blob_gives_an_error_or_the_right_bytes(position in any::<prop::sample::Index>(), byte in any::<u8>()) {
        let (blob, digest) = sample_blob();
        let good = read_everything(&blob, Some(digest)).unwrap();
        let mut bad = blob.clone();
        let at = position.index(bad.len());
        prop_assume!(bad[at] != byte);
        bad[at] = byte;
        // With the TOC digest, any change is either harmless (it hit padding or a gzip header
        // field that is not checked) or detected; a wrong byte is never returned.
        if let Ok(files) = read_everything(&bad, Some(digest)) {
            prop_assert_eq!(files, good);
        }
    }

    #[test]
    fn truncated_tar_input_is_an_error(cut in 1usize..4096) {
        let tar = {
            let mut t = estargz::tar::encode::encode(&estargz::tar::encode::HeaderSpec {
                name: b"f", typeflag: b'0', size: 3000, ..Default::default()
            });
            t.extend(vec![7u8; 3000]);
            t.resize(t.len().div_ceil(512) * 512 + 1024, 0);
            t
        };
        let cut = cut.min(tar.len() - 1024 - 1);
        let truncated = &tar[..tar.len() - 1024 - cut];
        let result = build(Cursor::new(truncated), Vec::new(), &BuildOptions::default());
        if cut > 512 - 3000 % 512 {
            prop_assert!(result.is_err(), "cut {} must be detected", cut);
        }
    }
}

#[test]
fn toc_digest_mismatch_is_rejected() {
    let (blob, _) = sample_blob();
    let err = open_blob(
        &blob.as_slice(),
        &BlobOptions::verify_with(Digest::of(b"other")),
    )
    .unwrap_err();
    assert!(
        matches!(err, BlobError::Toc(TocError::DigestMismatch { .. })),
        "{err}"
    );
}

#[test]
fn chunk_with_wrong_digest_is_rejected() {
    let (blob, digest) = sample_blob();
    let opened = open_blob(&blob.as_slice(), &BlobOptions::verify_with(digest)).unwrap();
    let id = opened.index.lookup_path(b"dir/file2").unwrap();
    let real = opened.index.chunks(id)[0];
    let with_digest = |digest| {
        Chunk::new(
            real.file_offset(),
            real.size(),
            real.comp_offset(),
            real.comp_end(),
            real.inner_offset(),
            digest,
        )
        .unwrap()
    };
    let span = &blob[real.comp_offset() as usize..real.comp_end() as usize];
    let lying = with_digest(Some(Digest::of(b"lie")));
    assert!(matches!(
        decode_chunk(span, &lying, Compression::Gzip),
        Err(estargz::ChunkError::DigestMismatch { .. })
    ));
    let unverifiable = with_digest(None);
    assert!(matches!(
        decode_chunk(span, &unverifiable, Compression::Gzip),
        Err(estargz::ChunkError::NoDigest { .. })
    ));
}

fn reg(name: &str, size: u64, offset: u64, chunk_size: u64) -> TocEntry {
    TocEntry {
        name: name.into(),
        kind: EntryKind::Reg,
        size,
        offset,
        chunk_size,
        chunk_digest: Some(Digest::EMPTY),
        ..TocEntry::default()
    }
}

#[test]
fn toc_with_gap_between_chunks_is_rejected() {
    let entries = vec![
        reg("f", 100, 10, 40),
        TocEntry {
            name: "f".into(),
            kind: EntryKind::Chunk,
            offset: 20,
            chunk_offset: 50,
            chunk_size: 50,
            ..TocEntry::default()
        },
    ];
    let err = LayerIndex::from_entries(entries, 1000, &IndexOptions::default()).unwrap_err();
    assert!(
        matches!(&err, TocError::InvalidEntry { index: 1, name, .. } if name == "f"),
        "{err}"
    );
}

#[test]
fn chunks_listed_out_of_file_order_are_rejected() {
    // Each chunk would verify on its own; sorted by offset they would put the file's bytes in
    // the wrong order.
    let chunk = |offset, chunk_offset| TocEntry {
        name: "d/big".into(),
        kind: EntryKind::Chunk,
        offset,
        chunk_offset,
        chunk_size: 30,
        chunk_digest: Some(Digest::EMPTY),
        ..TocEntry::default()
    };
    let entries = vec![
        TocEntry {
            name: "d/".into(),
            kind: EntryKind::Dir,
            ..TocEntry::default()
        },
        reg("d/big", 120, 10, 30),
        chunk(20, 60),
        chunk(30, 30),
        TocEntry {
            chunk_size: 0,
            ..chunk(40, 90)
        },
    ];
    let err = LayerIndex::from_entries(entries, 1000, &IndexOptions::default()).unwrap_err();
    match &err {
        TocError::InvalidEntry {
            index,
            name,
            reason,
        } => {
            assert_eq!((*index, name.as_str()), (2, "d/big"), "{err}");
            assert!(
                reason.contains("offset 60") && reason.contains("ends at 30"),
                "{err}"
            );
        }
        other => panic!("expected an invalid entry, got {other}"),
    }
}

#[test]
fn toc_with_chunks_short_of_the_file_size_is_rejected() {
    let entries = vec![
        TocEntry {
            name: "a".into(),
            kind: EntryKind::Dir,
            ..TocEntry::default()
        },
        reg("a/f", 100, 10, 40),
    ];
    let err = LayerIndex::from_entries(entries, 1000, &IndexOptions::default()).unwrap_err();
    assert!(
        matches!(&err, TocError::InvalidEntry { index: 1, name, reason }
            if name == "a/f" && reason.contains("40 bytes of a 100-byte file")),
        "{err}"
    );
}

#[test]
fn toc_with_offset_past_the_toc_is_rejected() {
    let entries = vec![reg("f", 100, 5000, 0)];
    assert!(LayerIndex::from_entries(entries, 1000, &IndexOptions::default()).is_err());
}

#[test]
fn chunk_entry_without_a_file_is_rejected() {
    let entries = vec![TocEntry {
        name: "x".into(),
        kind: EntryKind::Chunk,
        offset: 1,
        chunk_offset: 5,
        ..TocEntry::default()
    }];
    assert!(LayerIndex::from_entries(entries, 1000, &IndexOptions::default()).is_err());
}

#[test]
fn oversized_names_and_entry_counts_are_limited() {
    let limits = Limits {
        max_name_bytes: 10,
        max_entries: 3,
        ..Limits::default()
    };
    let options = IndexOptions {
        limits,
        ..IndexOptions::default()
    };
    let long = vec![TocEntry {
        name: "a".repeat(11),
        kind: EntryKind::Dir,
        ..TocEntry::default()
    }];
    assert!(LayerIndex::from_entries(long, 1000, &options).is_err());
    let json = br#"{"version":1,"entries":[{"type":"dir","name":"a"},{"type":"dir","name":"b"},{"type":"dir","name":"c"},{"type":"dir","name":"d"}]}"#;
    assert!(matches!(
        LayerIndex::from_toc_json(json, 1000, &options),
        Err(TocError::TooManyEntries { limit: 3 })
    ));
}

#[test]
fn not_a_tar_is_a_clear_error() {
    let err = build(
        Cursor::new(vec![0x55u8; 4096]),
        Vec::new(),
        &BuildOptions::default(),
    )
    .unwrap_err();
    let text = err.to_string();
    assert!(
        text.contains("offset 0") && text.contains("not a tar"),
        "{text}"
    );
}

#[test]
fn invalid_options_are_rejected_with_the_option_name() {
    for options in [
        BuildOptions {
            chunk_size: 0,
            ..Default::default()
        },
        BuildOptions {
            level: 10,
            ..Default::default()
        },
        BuildOptions {
            threads: 0,
            ..Default::default()
        },
    ] {
        let err = build(Cursor::new(vec![0u8; 1024]), Vec::new(), &options).unwrap_err();
        assert!(
            matches!(err, estargz::BuildError::InvalidOption { .. }),
            "{err}"
        );
    }
}

#[test]
fn chunks_at_one_place_with_two_digests_are_rejected() {
    let chunk = |file_offset, digest| TocEntry {
        name: "f".into(),
        kind: EntryKind::Chunk,
        offset: 10,
        chunk_offset: file_offset,
        chunk_size: 30,
        chunk_digest: Some(digest),
        ..TocEntry::default()
    };
    let mut first = reg("f", 60, 10, 30);
    first.chunk_digest = Some(Digest::of(b"first"));
    let entries = vec![first, chunk(30, Digest::of(b"second"))];
    let err = LayerIndex::from_entries(entries, 1000, &IndexOptions::default()).unwrap_err();
    assert!(
        matches!(&err, TocError::InvalidEntry { index: 1, name, reason }
            if name == "f" && reason.contains("another digest")),
        "{err}"
    );

    // The same bytes twice under one digest are valid: both chunks verify.
    let mut first = reg("f", 60, 10, 30);
    first.chunk_digest = Some(Digest::of(b"same"));
    let entries = vec![first, chunk(30, Digest::of(b"same"))];
    assert!(LayerIndex::from_entries(entries, 1000, &IndexOptions::default()).is_ok());
}
