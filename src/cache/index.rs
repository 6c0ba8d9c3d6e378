//! The cache index: one small JSON record per cache key under
//! `IMGB_HOME/cache/`, written atomically (temp file + rename), naming the
//! layer the step produced. A damaged record is a miss, never an error.

use std::fs;
use std::io::{self, Write};
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::digest::Sha256Digest;

use super::CacheKey;

#[derive(Debug, thiserror::Error)]
pub enum CacheError {
    #[error("cache index {path}: {source}")]
    Io { path: PathBuf, source: io::Error },
}

/// The layer a cached step produced.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CachedLayer {
    /// Digest of the (compressed) blob in the content store.
    pub digest: Sha256Digest,
    pub size: u64,
    /// Digest of the uncompressed tar.
    pub diff_id: Sha256Digest,
    pub media_type: String,
}

/// What a cache key maps to.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CacheRecord {
    pub key: CacheKey,
    /// `None` for a step that changed nothing on disk.
    pub layer: Option<CachedLayer>,
    /// When the step first ran (RFC 3339), reused for history on a hit.
    pub created: String,
}

/// The cache index in a directory.
#[derive(Debug, Clone)]
pub struct CacheIndex {
    dir: PathBuf,
}

impl CacheIndex {
    /// The index in `dir` (created on first write).
    pub fn new(dir: &Path) -> Self {
        CacheIndex {
            dir: dir.to_path_buf(),
        }
    }

    fn path(&self, key: &CacheKey) -> PathBuf {
        let hex = key.digest().hex();
        self.dir.join(&hex[..2]).join(format!("{hex}.json"))
    }

    /// The record for `key`, if there is a sound one.
    pub fn get(&self, key: &CacheKey) -> Option<CacheRecord> {
        let bytes = fs::read(self.path(key)).ok()?;
        let record: CacheRecord = serde_json::from_slice(&bytes).ok()?;
        (record.key == *key).then_some(record)
    }

    /// Stores `record` under its key, atomically.
    pub fn put(&self, record: &CacheRecord) -> Result<(), CacheError> {
        let path = self.path(&record.key);
        let err = |source| CacheError::Io {
            path: path.clone(),
            source,
        };
        let parent = path.parent().unwrap_or(&self.dir);
        fs::create_dir_all(parent).map_err(err)?;
        // Unique per process and call: stages built side by side may store
        // the same key at the same time.
        static NEXT: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);
        let n = NEXT.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let tmp = parent.join(format!(
            ".tmp-{}-{n}-{}",
            std::process::id(),
            record.key.digest().hex()
        ));
        let bytes = serde_json::to_vec(record).map_err(|e| err(io::Error::other(e)))?;
        let written = (|| {
            let mut file = fs::File::create(&tmp)?;
            file.write_all(&bytes)?;
            file.sync_all()?;
            fs::rename(&tmp, &path)
        })();
        if written.is_err() {
            let _ = fs::remove_file(&tmp);
        }
        written.map_err(err)
    }

    /// Every record, for prune (blobs they name are kept) and `du`.
    pub fn records(&self) -> Vec<CacheRecord> {
        let mut out = Vec::new();
        let Ok(shards) = fs::read_dir(&self.dir) else {
            return out;
        };
        for shard in shards.flatten() {
            let Ok(files) = fs::read_dir(shard.path()) else {
                continue;
            };
            for file in files.flatten() {
                if let Ok(bytes) = fs::read(file.path()) {
                    if let Ok(record) = serde_json::from_slice::<CacheRecord>(&bytes) {
                        out.push(record);
                    }
                }
            }
        }
        out.sort_by_key(|r| r.key);
        out
    }

    /// Removes the record for `key` (prune).
    pub fn remove(&self, key: &CacheKey) -> Result<(), CacheError> {
        let path = self.path(key);
        match fs::remove_file(&path) {
            Err(e) if e.kind() != io::ErrorKind::NotFound => {
                Err(CacheError::Io { path, source: e })
            }
            _ => Ok(()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn record(n: u8, layer: bool) -> CacheRecord {
        CacheRecord {
            key: CacheKey::base(Some(&Sha256Digest::of(&[n])), "linux/amd64"),
            layer: layer.then(|| CachedLayer {
                digest: Sha256Digest::of(b"blob"),
                size: 4,
                diff_id: Sha256Digest::of(b"tar"),
                media_type: "application/vnd.oci.image.layer.v1.tar+gzip".into(),
            }),
            created: "2026-01-01T00:00:00Z".into(),
        }
    }

    #[test]
    fn put_get_records_remove() {
        let dir = tempfile::tempdir().unwrap();
        let index = CacheIndex::new(&dir.path().join("cache"));
        let (a, b) = (record(1, true), record(2, false));
        assert_eq!(index.get(&a.key), None);
        index.put(&a).unwrap();
        index.put(&b).unwrap();
        assert_eq!(index.get(&a.key), Some(a.clone()));
        assert_eq!(index.records().len(), 2);
        index.remove(&a.key).unwrap();
        assert_eq!(index.get(&a.key), None);
        assert_eq!(index.records(), vec![b]);
    }

    #[test]
    fn damaged_or_misplaced_records_are_misses() {
        let dir = tempfile::tempdir().unwrap();
        let index = CacheIndex::new(dir.path());
        let a = record(1, true);
        index.put(&a).unwrap();
        fs::write(index.path(&a.key), b"{not json").unwrap();
        assert_eq!(index.get(&a.key), None);
        // A record stored under another key's name is not trusted.
        let b = record(2, true);
        let path = index.path(&b.key);
        fs::create_dir_all(path.parent().unwrap()).unwrap();
        fs::write(&path, serde_json::to_vec(&a).unwrap()).unwrap();
        assert_eq!(index.get(&b.key), None);
    }
}
