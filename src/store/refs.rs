//! Named references and GC roots.
//!
//! * `refs.json` maps an image name (normalised by the caller, e.g.
//!   `docker.io/library/busybox:latest`) to a manifest or index digest. It is
//!   rewritten whole under an exclusive flock on `refs.lock` and replaced by
//!   rename, so readers never see a torn file and no update is lost.
//! * `roots/<namespace>/<hex>` are empty marker files: a module (the cache)
//!   registers a blob it wants kept. One file per root keeps adding a root
//!   O(1) and free of read-modify-write races; the file's mtime records when
//!   the root was last used, which `prune --keep-storage` uses to drop the
//!   least recently used roots first.

use std::collections::BTreeMap;
use std::fs::{self, File};
use std::io;
use std::path::PathBuf;
use std::time::SystemTime;

use serde::{Deserialize, Serialize};

use super::{write_atomic, ContentStore, StoreError};
use crate::digest::Sha256Digest;

#[derive(Debug, Default, Serialize, Deserialize)]
struct RefsFile {
    version: u32,
    refs: BTreeMap<String, Sha256Digest>,
}

const REFS_VERSION: u32 = 1;

/// A registered GC root.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Root {
    pub namespace: String,
    pub digest: Sha256Digest,
    /// When the root was last registered or touched.
    pub used: SystemTime,
}

impl ContentStore {
    fn refs_path(&self) -> PathBuf {
        self.root().join("refs.json")
    }

    /// All named references, sorted by name.
    pub fn refs(&self) -> Result<BTreeMap<String, Sha256Digest>, StoreError> {
        Ok(self.read_refs()?.refs)
    }

    /// The manifest digest a name points to.
    pub fn get_ref(&self, name: &str) -> Result<Option<Sha256Digest>, StoreError> {
        Ok(self.read_refs()?.refs.get(name).copied())
    }

    /// Points `name` at `digest` (which should be in the store); returns the
    /// digest it pointed to before.
    pub fn set_ref(
        &self,
        name: &str,
        digest: &Sha256Digest,
    ) -> Result<Option<Sha256Digest>, StoreError> {
        validate_ref_name(name)?;
        self.update_refs(|refs| refs.insert(name.to_string(), *digest))
    }

    /// Removes a name; returns the digest it pointed to.
    pub fn remove_ref(&self, name: &str) -> Result<Option<Sha256Digest>, StoreError> {
        self.update_refs(|refs| refs.remove(name))
    }

    fn read_refs(&self) -> Result<RefsFile, StoreError> {
        let path = self.refs_path();
        let bytes = match fs::read(&path) {
            Ok(b) => b,
            Err(e) if e.kind() == io::ErrorKind::NotFound => {
                return Ok(RefsFile {
                    version: REFS_VERSION,
                    refs: BTreeMap::new(),
                })
            }
            Err(e) => return Err(StoreError::io("read", &path)(e)),
        };
        let file: RefsFile =
            serde_json::from_slice(&bytes).map_err(|e| StoreError::CorruptIndex {
                path: path.clone(),
                reason: e.to_string(),
            })?;
        if file.version != REFS_VERSION {
            return Err(StoreError::CorruptIndex {
                path,
                reason: format!(
                    "unsupported version {} (this imgb reads {REFS_VERSION})",
                    file.version
                ),
            });
        }
        Ok(file)
    }

    /// Read-modify-write of refs.json under `refs.lock`.
    pub(super) fn update_refs<T>(
        &self,
        f: impl FnOnce(&mut BTreeMap<String, Sha256Digest>) -> T,
    ) -> Result<T, StoreError> {
        let lock_path = self.root().join("refs.lock");
        let lock = File::options()
            .write(true)
            .create(true)
            .truncate(false)
            .open(&lock_path)
            .map_err(StoreError::io("open", &lock_path))?;
        lock.lock().map_err(StoreError::io("lock", &lock_path))?;
        let mut file = self.read_refs()?;
        let out = f(&mut file.refs);
        let mut bytes = serde_json::to_vec_pretty(&file).map_err(|e| StoreError::Io {
            op: "serialize",
            path: self.refs_path(),
            source: e.into(),
        })?;
        bytes.push(b'\n');
        write_atomic(&self.refs_path(), &bytes)?;
        Ok(out)
        // `lock` is released when dropped.
    }

    /// Registers (or touches) a GC root: prune keeps `digest` and, if it is
    /// a manifest or index, everything it refers to.
    pub fn add_root(&self, namespace: &str, digest: &Sha256Digest) -> Result<(), StoreError> {
        validate_namespace(namespace)?;
        let dir = self.root().join("roots").join(namespace);
        fs::create_dir_all(&dir).map_err(StoreError::io("create directory", &dir))?;
        let path = dir.join(digest.hex());
        // Re-creating the marker refreshes its mtime (least-recently-used order).
        File::create(&path).map_err(StoreError::io("create", &path))?;
        Ok(())
    }

    /// Forgets a root; returns whether it existed.
    pub fn remove_root(&self, namespace: &str, digest: &Sha256Digest) -> Result<bool, StoreError> {
        validate_namespace(namespace)?;
        let path = self.root().join("roots").join(namespace).join(digest.hex());
        match fs::remove_file(&path) {
            Ok(()) => Ok(true),
            Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(false),
            Err(e) => Err(StoreError::io("remove", &path)(e)),
        }
    }

    /// The roots of one namespace, sorted by digest.
    pub fn roots(&self, namespace: &str) -> Result<Vec<Sha256Digest>, StoreError> {
        validate_namespace(namespace)?;
        let mut all: Vec<Sha256Digest> = self
            .all_roots()?
            .into_iter()
            .filter(|r| r.namespace == namespace)
            .map(|r| r.digest)
            .collect();
        all.sort();
        Ok(all)
    }

    /// Every registered root of every namespace.
    pub fn all_roots(&self) -> Result<Vec<Root>, StoreError> {
        let base = self.root().join("roots");
        let mut out = Vec::new();
        let namespaces = match fs::read_dir(&base) {
            Ok(rd) => rd,
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(out),
            Err(e) => return Err(StoreError::io("list", &base)(e)),
        };
        for ns in namespaces {
            let ns = ns.map_err(StoreError::io("list", &base))?;
            let Some(namespace) = ns.file_name().to_str().map(str::to_string) else {
                continue;
            };
            let dir = ns.path();
            if !dir.is_dir() {
                continue;
            }
            for entry in fs::read_dir(&dir).map_err(StoreError::io("list", &dir))? {
                let entry = entry.map_err(StoreError::io("list", &dir))?;
                let Some(digest) = entry
                    .file_name()
                    .to_str()
                    .and_then(|n| Sha256Digest::from_hex(n).ok())
                else {
                    continue;
                };
                let used = entry
                    .metadata()
                    .and_then(|m| m.modified())
                    .unwrap_or(SystemTime::UNIX_EPOCH);
                out.push(Root {
                    namespace: namespace.clone(),
                    digest,
                    used,
                });
            }
        }
        out.sort_by(|a, b| (&a.namespace, a.digest).cmp(&(&b.namespace, b.digest)));
        Ok(out)
    }
}

fn validate_ref_name(name: &str) -> Result<(), StoreError> {
    if name.is_empty() || name.chars().any(|c| c.is_whitespace() || c.is_control()) {
        return Err(StoreError::InvalidRefName(name.to_string()));
    }
    Ok(())
}

fn validate_namespace(ns: &str) -> Result<(), StoreError> {
    let ok = !ns.is_empty()
        && ns
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-' || b == b'_');
    if ok {
        Ok(())
    } else {
        Err(StoreError::InvalidNamespace(ns.to_string()))
    }
}
