//! The content store under kill -9 and with two processes writing at once,
//! and `imgb prune --verify` / `imgb du` on the real binary.

use std::collections::BTreeMap;
use std::fs;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use imgb::layer::{Compression, LayerOptions, LayerWriter};
use imgb::store::{ContentStore, PruneOptions};

use super::trees::noise;
use crate::harness::imgb_bin;
use crate::world::run_ok;

const CHILD_ROOT: &str = "IMGB_EXPORT_TEST_STORE";
const CHILD_ROUNDS: &str = "IMGB_EXPORT_TEST_ROUNDS";
const CHILD_SEED: &str = "IMGB_EXPORT_TEST_SEED";

/// Streams layers of a generated 16 MiB file into a store and checks each
/// one. Also the worker of the kill -9 and two-process tests, which run
/// this test binary again with `IMGB_EXPORT_TEST_STORE` set (rounds: env
/// `IMGB_EXPORT_TEST_ROUNDS`, 0 = until killed; `IMGB_EXPORT_TEST_SEED`
/// varies the content).
#[test]
fn store_streams_large_layers_and_verifies_them() {
    let own = tempfile::tempdir().unwrap();
    let root = std::env::var_os(CHILD_ROOT).map_or(own.path().to_path_buf(), PathBuf::from);
    let rounds: u64 = std::env::var(CHILD_ROUNDS)
        .ok()
        .and_then(|r| r.parse().ok())
        .unwrap_or(1);
    let seed: u64 = std::env::var(CHILD_SEED)
        .ok()
        .and_then(|r| r.parse().ok())
        .unwrap_or(0);
    let store = ContentStore::open(&root).unwrap();
    let content = noise(16 << 20, 42);
    let mut round = 0;
    while rounds == 0 || round < rounds {
        let compression = [Compression::Uncompressed, Compression::Gzip][(round % 2) as usize];
        let mut w = LayerWriter::new(
            &store,
            &LayerOptions {
                compression,
                ..LayerOptions::default()
            },
        )
        .unwrap();
        let entry = imgb::layer::Entry {
            path: "big".into(),
            kind: imgb::layer::EntryKind::File {
                size: content.len() as u64,
            },
            mode: 0o644,
            uid: 0,
            gid: 0,
            mtime: seed * 1000 + round,
            xattrs: BTreeMap::new(),
        };
        let mut reader = &content[..];
        w.append(&entry, Some(&mut reader)).unwrap();
        let layer = w.finish().unwrap();
        assert_eq!(store.rehash(&layer.digest).unwrap(), layer.digest);
        assert_eq!(layer.diff_size, 512 + content.len() as u64 + 1024);
        store
            .put_bytes(format!("small {round}").as_bytes())
            .unwrap();
        store
            .set_ref(
                &format!("pid{}:r{round}", std::process::id()),
                &layer.digest,
            )
            .unwrap();
        round += 1;
    }
}

fn spawn_worker(root: &Path, rounds: u64, seed: u64) -> std::process::Child {
    Command::new(std::env::current_exe().unwrap())
        .args([
            "--exact",
            "export::store::store_streams_large_layers_and_verifies_them",
            "--test-threads=1",
        ])
        .env(CHILD_ROOT, root)
        .env(CHILD_ROUNDS, rounds.to_string())
        .env(CHILD_SEED, seed.to_string())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap()
}

/// Every blob hashes to its name and no temp file is left once the store is
/// opened again.
fn assert_consistent(root: &Path) -> ContentStore {
    let store = ContentStore::open(root).unwrap();
    assert_eq!(
        fs::read_dir(root.join("tmp")).unwrap().count(),
        0,
        "temp files cleaned"
    );
    for d in store.blobs().unwrap() {
        assert_eq!(store.rehash(&d).unwrap(), d, "blob {d} is complete");
    }
    store
}

fn wait_until(what: &str, mut cond: impl FnMut() -> bool) {
    let start = Instant::now();
    while !cond() {
        assert!(
            start.elapsed() < Duration::from_secs(300),
            "timed out waiting for {what}"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
}

fn tmp_bytes(root: &Path) -> u64 {
    fs::read_dir(root.join("tmp"))
        .map(|rd| {
            rd.filter_map(|e| e.ok()?.metadata().ok())
                .map(|m| m.len())
                .sum()
        })
        .unwrap_or(0)
}

#[test]
fn kill_9_during_writes_leaves_the_store_consistent_and_prune_verify_repairs() {
    let home = tempfile::tempdir().unwrap();
    let root = home.path();
    // Kill at different moments: mid-first-write, after commits, mid-later-write.
    let blobs_dir = root.join("blobs/sha256");
    let count = || fs::read_dir(&blobs_dir).map(|rd| rd.count()).unwrap_or(0);
    for (round, new_blobs, min_tmp) in [(0, 0, 1 << 20), (1, 2, 0), (2, 3, 4 << 20)] {
        let before = count();
        let mut child = spawn_worker(root, 0, round);
        wait_until(&format!("round {round} progress"), || {
            count() >= before + new_blobs && tmp_bytes(root) >= min_tmp
        });
        child.kill().unwrap(); // SIGKILL
        child.wait().unwrap();
        drop(assert_consistent(root));
    }

    // Damage one blob; `imgb prune --verify` finds and removes it, and
    // keeps the good blob that a root refers to.
    let store = assert_consistent(root);
    let blobs = store.blobs().unwrap();
    assert!(blobs.len() >= 3, "{blobs:?}");
    let (bad, good) = (blobs[0], blobs[1]);
    store.add_root("test", &bad).unwrap();
    store.add_root("test", &good).unwrap();
    let mut f = fs::OpenOptions::new()
        .append(true)
        .open(store.blob_path(&bad))
        .unwrap();
    f.write_all(b"garbage").unwrap();
    drop(f);
    drop(store);
    let out = run_ok(
        Command::new(imgb_bin())
            .arg("--root")
            .arg(root)
            .args(["prune", "--verify"]),
    );
    assert!(out.contains(&format!("corrupt: {bad}")), "{out}");
    assert!(out.contains("verified: 1 corrupt blob found"), "{out}");
    let store = assert_consistent(root);
    assert!(!store.has(&bad));
    assert!(store.has(&good));
    let du = run_ok(Command::new(imgb_bin()).arg("--root").arg(root).arg("du"));
    assert!(
        du.contains("total (") && du.contains("unreferenced"),
        "{du}"
    );
}

#[test]
fn two_processes_writing_the_same_store_never_corrupt_it() {
    let home = tempfile::tempdir().unwrap();
    let mut a = spawn_worker(home.path(), 3, 9);
    let mut b = spawn_worker(home.path(), 3, 9);
    assert!(a.wait().unwrap().success());
    assert!(b.wait().unwrap().success());
    let store = assert_consistent(home.path());
    // Both wrote the same layers (same content): one blob each, all refs kept.
    assert_eq!(store.refs().unwrap().len(), 6);
    let distinct: std::collections::BTreeSet<_> = store.refs().unwrap().into_values().collect();
    assert_eq!(distinct.len(), 3);
    // Prune with refs in place removes only the unreferenced small blobs.
    let report = store.prune(&PruneOptions::default()).unwrap();
    assert_eq!(report.removed.len(), 3);
}

#[test]
fn imgb_du_and_prune_keep_storage_on_the_real_binary() {
    let home = tempfile::tempdir().unwrap();
    let root = home.path();
    let store = ContentStore::open(root).unwrap();
    let layer = store.put_bytes(&noise(300_000, 1)).unwrap();
    let manifest = store
        .put_bytes(
            serde_json::json!({
                "schemaVersion": 2,
                "config": {"mediaType": "c", "digest": layer.digest, "size": layer.size},
                "layers": []
            })
            .to_string()
            .as_bytes(),
        )
        .unwrap();
    store
        .set_ref("example.com/app:1", &manifest.digest)
        .unwrap();
    let cached = store.put_bytes(&noise(200_000, 2)).unwrap();
    store.add_root("cache", &cached.digest).unwrap();
    let garbage = store.put_bytes(&noise(100_000, 3)).unwrap();
    drop(store);

    let imgb = |args: &[&str]| run_ok(Command::new(imgb_bin()).arg("--root").arg(root).args(args));
    let du = imgb(&["du"]);
    assert!(du.contains("image example.com/app:1"), "{du}");
    assert!(
        du.contains("cache (not in an image)") && du.contains("200kB"),
        "{du}"
    );
    assert!(
        du.contains("unreferenced (1 blobs)") && du.contains("100kB"),
        "{du}"
    );

    let out = imgb(&["prune"]);
    assert!(
        out.contains(&format!("deleted: {}", garbage.digest)),
        "{out}"
    );
    assert!(out.contains("Total reclaimed space: 100kB"), "{out}");

    // 400 KB is less than image + cache: the cache root goes, the image stays.
    let out = imgb(&["prune", "--keep-storage", "400KB"]);
    assert!(
        out.contains(&format!("dropped cache root: {}", cached.digest)),
        "{out}"
    );
    let store = ContentStore::open(root).unwrap();
    assert!(!store.has(&cached.digest));
    assert!(store.has(&layer.digest) && store.has(&manifest.digest));
    drop(store);

    let bad = Command::new(imgb_bin())
        .arg("--root")
        .arg(root)
        .args(["prune", "--keep-storage", "lots"])
        .output()
        .unwrap();
    assert_eq!(bad.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&bad.stderr).contains("invalid size \"lots\""));

    let out = imgb(&["prune", "--all"]);
    assert!(out.contains("untagged: example.com/app:1"), "{out}");
    assert!(ContentStore::open(root)
        .unwrap()
        .blobs()
        .unwrap()
        .is_empty());
}
