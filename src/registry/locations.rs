//! Where blobs were last seen: `digest -> [registry/repository]`, learned
//! from pulls and pushes and kept in a small JSON file, so that a push can
//! ask the registry to mount a blob from another repository instead of
//! uploading it (Docker keeps the same knowledge in its distribution
//! metadata).
//!
//! This is a cache: an unreadable file counts as empty and a failed write
//! only costs a later upload, so I/O errors here are deliberately dropped.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use crate::digest::Sha256Digest;

/// Repositories remembered per blob; older ones fall off.
const MAX_PER_BLOB: usize = 8;
/// Blobs remembered at all; past this, arbitrary entries are forgotten
/// (a hint cache needs no fairness).
const MAX_BLOBS: usize = 50_000;

#[derive(Debug, Default)]
pub struct BlobLocations {
    path: Option<PathBuf>,
    map: BTreeMap<Sha256Digest, Vec<String>>,
    changed: bool,
}

impl BlobLocations {
    /// Loads the file at `path` (`None`: remember nothing across runs).
    pub fn load(path: Option<&Path>) -> BlobLocations {
        let map = path
            .and_then(|p| std::fs::read(p).ok())
            .and_then(|bytes| serde_json::from_slice(&bytes).ok())
            .unwrap_or_default();
        BlobLocations {
            path: path.map(Path::to_path_buf),
            map,
            changed: false,
        }
    }

    /// Notes that `digest` is in `registry/repository` (most recent first).
    pub fn record(&mut self, digest: &Sha256Digest, registry: &str, repository: &str) {
        let entry = format!("{registry}/{repository}");
        let list = self.map.entry(*digest).or_default();
        if list.first() == Some(&entry) {
            return;
        }
        list.retain(|e| e != &entry);
        list.insert(0, entry);
        list.truncate(MAX_PER_BLOB);
        self.changed = true;
        while self.map.len() > MAX_BLOBS {
            let Some(victim) = self.map.keys().find(|k| *k != digest).copied() else {
                break;
            };
            self.map.remove(&victim);
        }
    }

    /// Another repository of `registry` known to hold `digest`.
    pub fn mount_source(
        &self,
        digest: &Sha256Digest,
        registry: &str,
        repository: &str,
    ) -> Option<String> {
        let prefix = format!("{registry}/");
        self.map.get(digest)?.iter().find_map(|e| {
            e.strip_prefix(&prefix)
                .filter(|repo| *repo != repository)
                .map(str::to_string)
        })
    }

    /// Writes the file back if anything was recorded (atomically; a
    /// concurrent writer may win, which only loses hints).
    pub fn save(&self) {
        let Some(path) = &self.path else { return };
        if !self.changed {
            return;
        }
        let Ok(json) = serde_json::to_vec(&self.map) else {
            return;
        };
        if let Some(dir) = path.parent() {
            let _ = std::fs::create_dir_all(dir);
        }
        let tmp = path.with_extension(format!("tmp.{}", std::process::id()));
        if std::fs::write(&tmp, json).is_ok() && std::fs::rename(&tmp, path).is_err() {
            let _ = std::fs::remove_file(&tmp);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn mount_sources_come_from_the_same_registry_and_another_repository() {
        let d = Sha256Digest::of(b"layer");
        let mut l = BlobLocations::default();
        l.record(&d, "127.0.0.1:5000", "a/base");
        l.record(&d, "other:1", "x");
        assert_eq!(
            l.mount_source(&d, "127.0.0.1:5000", "b/app").as_deref(),
            Some("a/base")
        );
        assert_eq!(l.mount_source(&d, "127.0.0.1:5000", "a/base"), None);
        assert_eq!(l.mount_source(&d, "127.0.0.1:6000", "b/app"), None);
        assert_eq!(
            l.mount_source(&Sha256Digest::of(b"x"), "other:1", "y"),
            None
        );
    }

    #[test]
    fn the_file_round_trips_and_lists_are_bounded() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("sub/locations.json");
        let d = Sha256Digest::of(b"layer");
        let mut l = BlobLocations::load(Some(&path));
        for i in 0..20 {
            l.record(&d, "r", &format!("repo{i}"));
        }
        l.save();
        let again = BlobLocations::load(Some(&path));
        assert_eq!(again.map[&d].len(), MAX_PER_BLOB);
        assert_eq!(again.map[&d][0], "r/repo19");
        std::fs::write(&path, "garbage").unwrap();
        assert!(BlobLocations::load(Some(&path)).map.is_empty());
    }
}
