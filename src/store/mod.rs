//! The content store under `IMGB_HOME`: content-addressed blobs
//! (`blobs/sha256/<hex>`) written to a temp file while hashing and renamed
//! into place, verification, locking between processes, references and GC.
//!
//! Layout of the state directory:
//!
//! ```text
//! IMGB_HOME/
//!   store.lock          flock: shared while a ContentStore is open, exclusive for GC
//!   blobs/sha256/<hex>  complete, verified blobs (never written in place)
//!   tmp/                blobs being written (`<pid>-<n>.part`), cleaned when stale
//!   refs.json           image name -> manifest digest (replaced atomically)
//!   refs.lock           flock serialising read-modify-write of refs.json
//!   roots/<ns>/<hex>    GC roots registered by other modules (the cache)
//! ```
//!
//! Invariant: a file at `blobs/sha256/<hex>` always holds exactly the bytes
//! whose sha256 is `<hex>`. Writers hash while writing to `tmp/`, fsync, check
//! the digest (and the expected one, when given) and only then rename; a
//! process killed at any moment leaves at most a file in `tmp/`, which the
//! next process to open the store alone removes.
//!
//! Uses `digest`; touches the file system.

mod gc;
mod refs;
mod writer;

pub use gc::{DiskUsage, PruneOptions, PruneReport};
pub use refs::Root;
pub use writer::BlobWriter;

use std::fs::{self, File};
use std::io;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use crate::digest::Sha256Digest;

/// What can go wrong in the store.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("{op} {path}: {source}")]
    Io {
        op: &'static str,
        path: PathBuf,
        #[source]
        source: io::Error,
    },
    #[error("content digest mismatch: expected {expected}, found {found}")]
    DigestMismatch {
        expected: Sha256Digest,
        found: Sha256Digest,
    },
    #[error("content size mismatch for {digest}: expected {expected} bytes, found {found}")]
    SizeMismatch {
        digest: Sha256Digest,
        expected: u64,
        found: u64,
    },
    #[error("blob {0} is not in the store")]
    NotFound(Sha256Digest),
    #[error("{path} is corrupt: {reason}")]
    CorruptIndex { path: PathBuf, reason: String },
    #[error("invalid reference name {0:?}: must be non-empty printable text without whitespace")]
    InvalidRefName(String),
    #[error("invalid root namespace {0:?}: use lowercase letters, digits, '-' and '_'")]
    InvalidNamespace(String),
    #[error("the store at {0} is in use by another imgb process")]
    Busy(PathBuf),
}

impl StoreError {
    pub(crate) fn io(op: &'static str, path: &Path) -> impl FnOnce(io::Error) -> StoreError {
        let path = path.to_path_buf();
        move |source| StoreError::Io { op, path, source }
    }
}

/// A blob in the store: its digest and size.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Blob {
    pub digest: Sha256Digest,
    pub size: u64,
}

/// A handle on the content store. Cheap to clone; `Send + Sync`.
///
/// While any handle is alive the process holds a shared lock on
/// `store.lock`, so GC in another process waits (or reports `Busy`) instead of
/// deleting blobs this process has written but not yet referenced.
#[derive(Clone, Debug)]
pub struct ContentStore {
    inner: Arc<Inner>,
}

#[derive(Debug)]
struct Inner {
    root: PathBuf,
    /// Held with a shared flock for the handle's lifetime.
    lock: File,
    /// Distinguishes temp files of one process.
    counter: AtomicU64,
}

impl ContentStore {
    /// Opens (creating if needed) the store at `root`.
    ///
    /// When no other process has the store open, leftover temp files of
    /// killed writers are removed.
    pub fn open(root: &Path) -> Result<ContentStore, StoreError> {
        for dir in [
            root.to_path_buf(),
            root.join("blobs/sha256"),
            root.join("tmp"),
            root.join("roots"),
        ] {
            fs::create_dir_all(&dir).map_err(StoreError::io("create directory", &dir))?;
        }
        let lock_path = root.join("store.lock");
        let lock = File::options()
            .read(true)
            .write(true)
            .create(true)
            .truncate(false)
            .open(&lock_path)
            .map_err(StoreError::io("open", &lock_path))?;
        // Alone with the store? Then every temp file is a leftover.
        if lock.try_lock().is_ok() {
            clean_dir(&root.join("tmp"))?;
        }
        // flock converts an exclusive lock to a shared one in place.
        lock.lock_shared()
            .map_err(StoreError::io("lock", &lock_path))?;
        Ok(ContentStore {
            inner: Arc::new(Inner {
                root: root.to_path_buf(),
                lock,
                counter: AtomicU64::new(0),
            }),
        })
    }

    /// The state directory this store lives in.
    pub fn root(&self) -> &Path {
        &self.inner.root
    }

    /// Where the blob with this digest lives (whether or not it exists).
    pub fn blob_path(&self, digest: &Sha256Digest) -> PathBuf {
        self.inner.root.join("blobs/sha256").join(digest.hex())
    }

    /// Whether the blob is in the store.
    pub fn has(&self, digest: &Sha256Digest) -> bool {
        self.blob_path(digest).is_file()
    }

    /// Opens a blob for reading.
    pub fn open_blob(&self, digest: &Sha256Digest) -> Result<File, StoreError> {
        let path = self.blob_path(digest);
        File::open(&path).map_err(|e| not_found_or(e, digest, "open", &path))
    }

    /// Reads a whole blob (meant for manifests and configs, not layers).
    pub fn read_blob(&self, digest: &Sha256Digest) -> Result<Vec<u8>, StoreError> {
        let path = self.blob_path(digest);
        fs::read(&path).map_err(|e| not_found_or(e, digest, "read", &path))
    }

    /// The size of a blob in bytes.
    pub fn size(&self, digest: &Sha256Digest) -> Result<u64, StoreError> {
        let path = self.blob_path(digest);
        fs::metadata(&path)
            .map(|m| m.len())
            .map_err(|e| not_found_or(e, digest, "stat", &path))
    }

    /// The blob's digest and size, if it is in the store.
    pub fn stat(&self, digest: &Sha256Digest) -> Result<Blob, StoreError> {
        Ok(Blob {
            digest: *digest,
            size: self.size(digest)?,
        })
    }

    /// Starts writing a new blob into `tmp/`; see [`BlobWriter`].
    pub fn writer(&self) -> Result<BlobWriter, StoreError> {
        let n = self.inner.counter.fetch_add(1, Ordering::Relaxed);
        let path = self
            .inner
            .root
            .join("tmp")
            .join(format!("{}-{n}.part", std::process::id()));
        BlobWriter::create(self.clone(), path)
    }

    /// Stores `bytes` and returns the blob.
    pub fn put_bytes(&self, bytes: &[u8]) -> Result<Blob, StoreError> {
        let digest = Sha256Digest::of(bytes);
        if let Ok(size) = self.size(&digest) {
            if size == bytes.len() as u64 {
                return Ok(Blob { digest, size });
            }
        }
        let mut w = self.writer()?;
        io::Write::write_all(&mut w, bytes).map_err(StoreError::io("write", w.temp_path()))?;
        w.commit(None)
    }

    /// Every blob digest in the store (sorted). Files whose names are not
    /// digests are ignored.
    pub fn blobs(&self) -> Result<Vec<Sha256Digest>, StoreError> {
        let dir = self.inner.root.join("blobs/sha256");
        let mut out = Vec::new();
        for entry in fs::read_dir(&dir).map_err(StoreError::io("list", &dir))? {
            let entry = entry.map_err(StoreError::io("list", &dir))?;
            if let Some(d) = entry
                .file_name()
                .to_str()
                .and_then(|n| Sha256Digest::from_hex(n).ok())
            {
                out.push(d);
            }
        }
        out.sort();
        Ok(out)
    }

    /// Re-hashes a blob and returns the digest its bytes actually have.
    pub fn rehash(&self, digest: &Sha256Digest) -> Result<Sha256Digest, StoreError> {
        let path = self.blob_path(digest);
        let mut file = self.open_blob(digest)?;
        let mut hasher = crate::digest::HashingWriter::new(io::sink());
        io::copy(&mut file, &mut hasher).map_err(StoreError::io("read", &path))?;
        Ok(hasher.finish().1)
    }

    /// Runs `f` while holding the store lock exclusively (no other process
    /// has the store open). Returns `Busy` at once if another process does.
    pub(crate) fn with_exclusive<T>(
        &self,
        f: impl FnOnce() -> Result<T, StoreError>,
    ) -> Result<T, StoreError> {
        let lock_path = self.inner.root.join("store.lock");
        if self.inner.lock.try_lock().is_err() {
            // Put our shared lock back before reporting.
            self.inner
                .lock
                .lock_shared()
                .map_err(StoreError::io("lock", &lock_path))?;
            return Err(StoreError::Busy(self.inner.root.clone()));
        }
        let result = f();
        self.inner
            .lock
            .lock_shared()
            .map_err(StoreError::io("lock", &lock_path))?;
        result
    }

    fn tmp_dir(&self) -> PathBuf {
        self.inner.root.join("tmp")
    }
}

fn not_found_or(e: io::Error, digest: &Sha256Digest, op: &'static str, path: &Path) -> StoreError {
    if e.kind() == io::ErrorKind::NotFound {
        StoreError::NotFound(*digest)
    } else {
        StoreError::Io {
            op,
            path: path.to_path_buf(),
            source: e,
        }
    }
}

/// Removes every file in `dir` (not recursive: tmp/ holds only files).
fn clean_dir(dir: &Path) -> Result<u64, StoreError> {
    let mut removed = 0;
    for entry in fs::read_dir(dir).map_err(StoreError::io("list", dir))? {
        let entry = entry.map_err(StoreError::io("list", dir))?;
        let path = entry.path();
        let size = entry.metadata().map(|m| m.len()).unwrap_or(0);
        match fs::remove_file(&path) {
            Ok(()) => removed += size,
            Err(e) if e.kind() == io::ErrorKind::NotFound => {}
            Err(e) => return Err(StoreError::io("remove", &path)(e)),
        }
    }
    Ok(removed)
}

/// Writes `bytes` to `path` atomically: temp file in the same directory,
/// fsync, rename, fsync the directory.
pub(crate) fn write_atomic(path: &Path, bytes: &[u8]) -> Result<(), StoreError> {
    let dir = path.parent().unwrap_or(Path::new("."));
    let name = path
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    // Unique per process and call: threads of one build write side by side.
    static NEXT: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);
    let n = NEXT.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    let tmp = dir.join(format!(".{name}.{}-{n}.tmp", std::process::id()));
    let result = (|| {
        let mut f = File::create(&tmp).map_err(StoreError::io("create", &tmp))?;
        io::Write::write_all(&mut f, bytes).map_err(StoreError::io("write", &tmp))?;
        f.sync_all().map_err(StoreError::io("sync", &tmp))?;
        fs::rename(&tmp, path).map_err(StoreError::io("rename into place", path))?;
        sync_dir(dir)
    })();
    if result.is_err() {
        let _ = fs::remove_file(&tmp);
    }
    result
}

/// fsyncs a directory so a rename in it survives a crash.
pub(crate) fn sync_dir(dir: &Path) -> Result<(), StoreError> {
    File::open(dir)
        .and_then(|d| d.sync_all())
        .map_err(StoreError::io("sync directory", dir))
}

#[cfg(test)]
mod tests;
