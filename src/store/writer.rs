//! [`BlobWriter`]: ingest of one blob. Bytes go to a temp file under `tmp/`
//! while being hashed; `commit` checks digest and size and renames the file
//! to its digest name. Dropping an uncommitted writer deletes the temp file.

use std::fs::{self, File};
use std::io::{self, BufWriter, Write};
use std::path::{Path, PathBuf};

use super::{sync_dir, Blob, ContentStore, StoreError};
use crate::digest::HashingWriter;

/// Writes one blob into the store. `impl Write`; hashes as it goes.
pub struct BlobWriter {
    store: ContentStore,
    temp: PathBuf,
    /// `None` once committed or aborted.
    out: Option<HashingWriter<BufWriter<File>>>,
}

impl std::fmt::Debug for BlobWriter {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("BlobWriter")
            .field("temp", &self.temp)
            .field("written", &self.len())
            .finish()
    }
}

impl BlobWriter {
    pub(super) fn create(store: ContentStore, temp: PathBuf) -> Result<BlobWriter, StoreError> {
        let file = File::options()
            .write(true)
            .create_new(true)
            .open(&temp)
            .map_err(StoreError::io("create", &temp))?;
        Ok(BlobWriter {
            store,
            temp,
            out: Some(HashingWriter::new(BufWriter::with_capacity(
                256 * 1024,
                file,
            ))),
        })
    }

    /// The temp file being written (for error messages).
    pub fn temp_path(&self) -> &Path {
        &self.temp
    }

    /// Bytes written so far.
    pub fn len(&self) -> u64 {
        self.out.as_ref().map_or(0, |o| o.len())
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Finishes the blob: flushes and fsyncs, checks it against `expected`
    /// (digest and size, when given) and renames it to its digest name.
    ///
    /// On a mismatch nothing is left under any digest name and the temp file
    /// is removed. If the blob already exists the new copy is dropped.
    pub fn commit(mut self, expected: Option<&Blob>) -> Result<Blob, StoreError> {
        let Some(out) = self.out.take() else {
            return Err(StoreError::Io {
                op: "commit",
                path: self.temp.clone(),
                source: io::Error::other("blob writer already finished"),
            });
        };
        let result = self.finish(out, expected);
        if result.is_err() {
            let _ = fs::remove_file(&self.temp);
        }
        result
    }

    fn finish(
        &self,
        out: HashingWriter<BufWriter<File>>,
        expected: Option<&Blob>,
    ) -> Result<Blob, StoreError> {
        let (buf, digest, size) = out.finish();
        let file = buf
            .into_inner()
            .map_err(|e| StoreError::io("write", &self.temp)(e.into_error()))?;
        if let Some(want) = expected {
            // Size first: a short download is the common failure, and says more.
            if want.size != size {
                return Err(StoreError::SizeMismatch {
                    digest: want.digest,
                    expected: want.size,
                    found: size,
                });
            }
            if want.digest != digest {
                return Err(StoreError::DigestMismatch {
                    expected: want.digest,
                    found: digest,
                });
            }
        }
        let dest = self.store.blob_path(&digest);
        if fs::metadata(&dest).is_ok_and(|m| m.len() == size) {
            // Same content already there (another writer won the race).
            drop(file);
            let _ = fs::remove_file(&self.temp);
            return Ok(Blob { digest, size });
        }
        file.sync_all()
            .map_err(StoreError::io("sync", &self.temp))?;
        drop(file);
        fs::rename(&self.temp, &dest).map_err(StoreError::io("rename into place", &dest))?;
        if let Some(dir) = dest.parent() {
            sync_dir(dir)?;
        }
        Ok(Blob { digest, size })
    }
}

impl Write for BlobWriter {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        match self.out.as_mut() {
            Some(out) => out.write(buf),
            None => Err(io::Error::other("blob writer already finished")),
        }
    }

    fn flush(&mut self) -> io::Result<()> {
        match self.out.as_mut() {
            Some(out) => out.flush(),
            None => Ok(()),
        }
    }
}

impl Drop for BlobWriter {
    fn drop(&mut self) {
        if self.out.take().is_some() {
            // Abandoned: the temp file is useless to anyone.
            let _ = fs::remove_file(&self.temp);
        }
    }
}
