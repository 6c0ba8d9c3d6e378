//! Unit tests of the content store against a real directory.

use std::io::Write;

use super::*;

fn store() -> (tempfile::TempDir, ContentStore) {
    let dir = tempfile::tempdir().unwrap();
    let store = ContentStore::open(dir.path()).unwrap();
    (dir, store)
}

fn tmp_files(store: &ContentStore) -> usize {
    fs::read_dir(store.root().join("tmp")).unwrap().count()
}

#[test]
fn put_and_read_back() {
    let (_d, s) = store();
    let blob = s.put_bytes(b"hello").unwrap();
    assert_eq!(blob.digest, Sha256Digest::of(b"hello"));
    assert_eq!(blob.size, 5);
    assert!(s.has(&blob.digest));
    assert_eq!(s.size(&blob.digest).unwrap(), 5);
    assert_eq!(s.read_blob(&blob.digest).unwrap(), b"hello");
    assert_eq!(
        s.blob_path(&blob.digest),
        s.root().join("blobs/sha256").join(blob.digest.hex())
    );
    assert_eq!(s.blobs().unwrap(), vec![blob.digest]);
    // Idempotent.
    assert_eq!(s.put_bytes(b"hello").unwrap(), blob);
    assert_eq!(tmp_files(&s), 0);
}

#[test]
fn missing_blob_is_not_found() {
    let (_d, s) = store();
    let d = Sha256Digest::of(b"absent");
    assert!(!s.has(&d));
    assert!(matches!(s.open_blob(&d), Err(StoreError::NotFound(x)) if x == d));
    assert!(matches!(s.size(&d), Err(StoreError::NotFound(_))));
}

#[test]
fn commit_verifies_expected_digest_and_leaves_nothing_on_mismatch() {
    let (_d, s) = store();
    let wrong = Blob {
        digest: Sha256Digest::of(b"other"),
        size: 4,
    };
    let mut w = s.writer().unwrap();
    w.write_all(b"data").unwrap();
    let err = w.commit(Some(&wrong)).unwrap_err();
    match err {
        StoreError::DigestMismatch { expected, found } => {
            assert_eq!(expected, wrong.digest);
            assert_eq!(found, Sha256Digest::of(b"data"));
        }
        other => panic!("unexpected {other:?}"),
    }
    assert!(s.blobs().unwrap().is_empty());
    assert_eq!(tmp_files(&s), 0);

    let mut w = s.writer().unwrap();
    w.write_all(b"data").unwrap();
    let short = Blob {
        digest: Sha256Digest::of(b"data"),
        size: 10,
    };
    assert!(matches!(
        w.commit(Some(&short)),
        Err(StoreError::SizeMismatch {
            expected: 10,
            found: 4,
            ..
        })
    ));
    assert!(s.blobs().unwrap().is_empty());

    let mut w = s.writer().unwrap();
    w.write_all(b"data").unwrap();
    let good = Blob {
        digest: Sha256Digest::of(b"data"),
        size: 4,
    };
    assert_eq!(w.commit(Some(&good)).unwrap(), good);
}

#[test]
fn dropped_writer_removes_its_temp_file() {
    let (_d, s) = store();
    let mut w = s.writer().unwrap();
    w.write_all(&[7u8; 100_000]).unwrap();
    assert_eq!(tmp_files(&s), 1);
    drop(w);
    assert_eq!(tmp_files(&s), 0);
    assert!(s.blobs().unwrap().is_empty());
}

#[test]
fn reopening_alone_cleans_leftover_temp_files_but_not_while_shared() {
    let dir = tempfile::tempdir().unwrap();
    fs::create_dir_all(dir.path().join("tmp")).unwrap();
    fs::write(dir.path().join("tmp/999-0.part"), b"partial").unwrap();
    let s = ContentStore::open(dir.path()).unwrap();
    assert_eq!(tmp_files(&s), 0);
    fs::write(dir.path().join("tmp/999-1.part"), b"partial").unwrap();
    // Another handle is open (the lock is per open file): not alone, keep it.
    let s2 = ContentStore::open(dir.path()).unwrap();
    assert_eq!(tmp_files(&s2), 1);
}

#[test]
fn refs_round_trip_and_validate_names() {
    let (_d, s) = store();
    let a = s.put_bytes(b"{}").unwrap().digest;
    let b = Sha256Digest::of(b"b");
    assert_eq!(s.set_ref("example.com/app:1", &a).unwrap(), None);
    assert_eq!(s.set_ref("example.com/app:1", &b).unwrap(), Some(a));
    assert_eq!(s.get_ref("example.com/app:1").unwrap(), Some(b));
    assert_eq!(s.refs().unwrap().len(), 1);
    assert_eq!(s.remove_ref("example.com/app:1").unwrap(), Some(b));
    assert_eq!(s.get_ref("example.com/app:1").unwrap(), None);
    assert!(matches!(
        s.set_ref("bad name", &a),
        Err(StoreError::InvalidRefName(_))
    ));
    assert!(matches!(
        s.set_ref("", &a),
        Err(StoreError::InvalidRefName(_))
    ));
}

#[test]
fn corrupt_refs_file_is_reported_with_its_path() {
    let (_d, s) = store();
    fs::write(s.root().join("refs.json"), b"{not json").unwrap();
    match s.refs() {
        Err(StoreError::CorruptIndex { path, .. }) => assert!(path.ends_with("refs.json")),
        other => panic!("unexpected {other:?}"),
    }
}

#[test]
fn concurrent_ref_updates_from_threads_are_not_lost() {
    let (_d, s) = store();
    let handles: Vec<_> = (0..8)
        .map(|i| {
            let s = s.clone();
            std::thread::spawn(move || {
                for j in 0..10 {
                    let d = Sha256Digest::of(format!("{i}-{j}").as_bytes());
                    s.set_ref(&format!("img{i}:{j}"), &d).unwrap();
                }
            })
        })
        .collect();
    for h in handles {
        h.join().unwrap();
    }
    assert_eq!(s.refs().unwrap().len(), 80);
}

fn manifest_with(config: &Blob, layers: &[Blob]) -> Vec<u8> {
    let layers: Vec<_> = layers
        .iter()
        .map(|l| serde_json::json!({"mediaType": "x", "digest": l.digest, "size": l.size}))
        .collect();
    serde_json::to_vec(&serde_json::json!({
        "schemaVersion": 2,
        "config": {"mediaType": "c", "digest": config.digest, "size": config.size},
        "layers": layers,
    }))
    .unwrap()
}

#[test]
fn prune_keeps_what_refs_and_roots_reach_and_removes_the_rest() {
    let (_d, s) = store();
    let layer = s.put_bytes(&[1u8; 1000]).unwrap();
    let config = s.put_bytes(b"{\"config\":{}}").unwrap();
    let manifest = s.put_bytes(&manifest_with(&config, &[layer])).unwrap();
    let index = s
        .put_bytes(
            serde_json::to_vec(&serde_json::json!({
                "manifests": [{"digest": manifest.digest, "size": manifest.size}]
            }))
            .unwrap()
            .as_slice(),
        )
        .unwrap();
    let cached = s.put_bytes(&[2u8; 500]).unwrap();
    let garbage = s.put_bytes(&[3u8; 300]).unwrap();
    s.set_ref("app:1", &index.digest).unwrap();
    s.add_root("cache", &cached.digest).unwrap();

    let du = s.disk_usage().unwrap();
    assert_eq!(du.blob_count, 6);
    assert_eq!(du.unreferenced, 300);
    assert_eq!(du.unreferenced_count, 1);
    assert_eq!(du.roots_only.get("cache"), Some(&500));
    assert_eq!(
        du.referenced,
        layer.size + config.size + manifest.size + index.size
    );

    let report = s.prune(&PruneOptions::default()).unwrap();
    assert_eq!(report.removed, vec![garbage]);
    for b in [layer, config, manifest, index, cached] {
        assert!(s.has(&b.digest));
    }

    // keep-storage drops cache roots (never refs) until the store fits.
    let report = s
        .prune(&PruneOptions {
            keep_storage: Some(0),
            ..PruneOptions::default()
        })
        .unwrap();
    assert_eq!(report.removed, vec![cached]);
    assert_eq!(report.dropped_roots.len(), 1);
    assert!(s.has(&layer.digest));

    let report = s
        .prune(&PruneOptions {
            all: true,
            ..PruneOptions::default()
        })
        .unwrap();
    assert_eq!(report.dropped_refs, vec!["app:1".to_string()]);
    assert!(s.blobs().unwrap().is_empty());
}

#[test]
fn prune_verify_removes_blobs_whose_bytes_do_not_match() {
    let (_d, s) = store();
    let good = s.put_bytes(b"good").unwrap();
    let bad = s.put_bytes(b"will be damaged").unwrap();
    s.add_root("test", &good.digest).unwrap();
    s.add_root("test", &bad.digest).unwrap();
    fs::write(s.blob_path(&bad.digest), b"damaged").unwrap();
    let report = s
        .prune(&PruneOptions {
            verify: true,
            ..PruneOptions::default()
        })
        .unwrap();
    assert_eq!(report.corrupt.len(), 1);
    assert_eq!(report.corrupt[0].0.digest, bad.digest);
    assert_eq!(report.corrupt[0].1, Sha256Digest::of(b"damaged"));
    assert!(!s.has(&bad.digest));
    assert!(s.has(&good.digest));
}

#[test]
fn prune_is_refused_while_another_handle_has_the_store_open() {
    let (d, s) = store();
    let other = ContentStore::open(d.path()).unwrap();
    assert!(matches!(
        s.prune(&PruneOptions::default()),
        Err(StoreError::Busy(_))
    ));
    drop(other);
    // Our shared lock survived the failed attempt and prune now works.
    s.prune(&PruneOptions::default()).unwrap();
}

#[test]
fn prune_empties_derived_directories() {
    let (d, s) = store();
    let derived = d.path().join("snapshots");
    fs::create_dir_all(derived.join("chain/usr/bin")).unwrap();
    fs::write(derived.join("chain/usr/bin/tool"), b"12345").unwrap();
    std::os::unix::fs::symlink("/etc", derived.join("chain/link")).unwrap();
    let report = s
        .prune(&PruneOptions {
            derived: vec![derived.clone(), d.path().join("missing")],
            ..PruneOptions::default()
        })
        .unwrap();
    assert_eq!(report.derived_bytes, 5);
    assert!(derived.is_dir(), "the directory itself stays");
    assert_eq!(fs::read_dir(&derived).unwrap().count(), 0);
    assert!(
        std::path::Path::new("/etc").is_dir(),
        "links are not followed"
    );
}
