//! Layers: the deterministic tar writer, compression, diffs of two trees or of
//! an overlay upper dir, whiteouts, safe unpacking, and reading an image's
//! final files from its layer blobs ([`scan_files`], for the SBOM).
//!
//! A [`LayerWriter`] streams in one pass: tar bytes -> sha256 (the diff id)
//! -> compressor -> sha256 (the blob digest, in the store's `BlobWriter`) ->
//! temp file -> rename. A layer is never held in memory.
//!
//! Determinism: entries must be appended in [`entry_order`] (the tree walk
//! does this), headers carry numeric uid/gid and no user/group names, no
//! atime/ctime, whole-second mtimes clamped to `SOURCE_DATE_EPOCH` when it is
//! given, and PAX records for long names, long link targets, xattrs and
//! large files. Whiteouts are `.wh.<name>` files and opaque directories a
//! `.wh..wh..opq` file, as the OCI image spec defines them.
//!
//! Uses `store` and `digest`; touches the file system.

mod compress;
mod header;
mod memo;
mod pgzip;
mod scan;
mod tree;
mod unpack;

pub use compress::{Compression, DEFAULT_GZIP_LEVEL, DEFAULT_ZSTD_LEVEL};
use memo::ChunkMemo;
pub use scan::{scan_files, scan_layer, Extract, FileInfo};
pub use tree::TreeOptions;
pub use unpack::{
    decompressed, is_overlay_opaque, is_overlay_whiteout, unpack_layer, unpack_layer_overlay,
    OVERLAY_OPAQUE_XATTR,
};

use std::cmp::Ordering;
use std::collections::BTreeMap;
use std::io::{self, Read, Write};
use std::os::unix::ffi::OsStrExt;
use std::path::{Component, Path, PathBuf};

use crate::digest::{HashingWriter, Sha256Digest};
use crate::store::{ContentStore, StoreError};
use compress::Encoder;
use header::{HeaderFields, TypeFlag, BLOCK};

/// The prefix of a whiteout file.
pub const WHITEOUT_PREFIX: &str = ".wh.";
/// The name of the opaque-directory marker.
pub const OPAQUE_MARKER: &str = ".wh..wh..opq";

/// What can go wrong writing a layer.
#[derive(Debug, thiserror::Error)]
pub enum LayerError {
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error("{op} {path}: {source}")]
    Io {
        op: &'static str,
        path: PathBuf,
        #[source]
        source: io::Error,
    },
    #[error("writing the layer stream: {source}")]
    Stream {
        #[source]
        source: io::Error,
    },
    #[error("starting the compressor: {source}")]
    Compress {
        #[source]
        source: io::Error,
    },
    #[error(
        "layer entries out of order: {path} after {previous} (entries must be sorted and unique)"
    )]
    OutOfOrder { previous: PathBuf, path: PathBuf },
    #[error("invalid path in layer {path:?}: {reason}")]
    InvalidPath { path: PathBuf, reason: &'static str },
    #[error("{path} changed while being read: expected {expected} bytes, got {found}")]
    FileChanged {
        path: PathBuf,
        expected: u64,
        found: u64,
    },
    #[error("no content given for the {size}-byte file {path}")]
    MissingContent { path: PathBuf, size: u64 },
    #[error("xattr name {name:?} on {path} is not UTF-8")]
    XattrName { path: PathBuf, name: String },
    #[error("compression level {level} is out of range for {compression} ({min}..={max})")]
    InvalidLevel {
        compression: &'static str,
        level: i32,
        min: i32,
        max: i32,
    },
    #[error("unknown compression {0:?} (expected gzip, zstd or uncompressed)")]
    UnknownCompression(String),
}

impl LayerError {
    fn io(op: &'static str, path: &Path) -> impl FnOnce(io::Error) -> LayerError {
        let path = path.to_path_buf();
        move |source| LayerError::Io { op, path, source }
    }
}

/// How layers are written.
#[derive(Debug, Clone, Default)]
pub struct LayerOptions {
    pub compression: Compression,
    /// `None` picks the compression's default level.
    pub level: Option<i32>,
    /// Clamp every mtime to this (seconds since the epoch): `SOURCE_DATE_EPOCH`.
    pub source_date_epoch: Option<u64>,
}

/// A layer in the store.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Layer {
    /// Digest of the (compressed) blob.
    pub digest: Sha256Digest,
    /// Size of the blob in bytes.
    pub size: u64,
    /// Digest of the uncompressed tar (`rootfs.diff_ids`).
    pub diff_id: Sha256Digest,
    /// Size of the uncompressed tar.
    pub diff_size: u64,
    /// OCI layer media type.
    pub media_type: String,
}

/// The type of a layer entry, with what the type needs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum EntryKind {
    /// A regular file of `size` bytes; content is passed to `append`.
    File {
        size: u64,
    },
    Dir,
    Symlink {
        target: PathBuf,
    },
    /// A hard link to an entry earlier in the same layer.
    Hardlink {
        target: PathBuf,
    },
    CharDevice {
        major: u32,
        minor: u32,
    },
    BlockDevice {
        major: u32,
        minor: u32,
    },
    Fifo,
}

/// One entry: a relative path (no `/` prefix, no `.` or `..`) and metadata.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Entry {
    pub path: PathBuf,
    pub kind: EntryKind,
    /// Permission bits with setuid/setgid/sticky (`0o7777`).
    pub mode: u32,
    pub uid: u32,
    pub gid: u32,
    /// Seconds since the epoch.
    pub mtime: u64,
    pub xattrs: BTreeMap<String, Vec<u8>>,
}

impl Entry {
    /// A root-owned empty regular file, for whiteouts and markers.
    fn marker(path: PathBuf, mtime: u64) -> Entry {
        Entry {
            path,
            kind: EntryKind::File { size: 0 },
            mode: 0o644,
            uid: 0,
            gid: 0,
            mtime,
            xattrs: BTreeMap::new(),
        }
    }
}

/// The order entries must be appended in: component by component, by bytes,
/// a directory before what it contains, and the opaque marker first in its
/// directory (so it is applied before the directory's new entries).
pub fn entry_order(a: &Path, b: &Path) -> Ordering {
    let mut ac = a.components();
    let mut bc = b.components();
    loop {
        match (ac.next(), bc.next()) {
            (None, None) => return Ordering::Equal,
            (None, Some(_)) => return Ordering::Less,
            (Some(_), None) => return Ordering::Greater,
            (Some(x), Some(y)) => {
                let (x, y) = (x.as_os_str().as_bytes(), y.as_os_str().as_bytes());
                let opq = OPAQUE_MARKER.as_bytes();
                let ord = match (x == opq, y == opq) {
                    (true, true) => Ordering::Equal,
                    (true, false) => Ordering::Less,
                    (false, true) => Ordering::Greater,
                    (false, false) => x.cmp(y),
                };
                if ord != Ordering::Equal {
                    return ord;
                }
            }
        }
    }
}

/// Writes one layer into the store; see the module docs.
pub struct LayerWriter {
    out: HashingWriter<Encoder>,
    /// Where a gzip layer's chunks are recorded once committed.
    memo: Option<std::sync::Arc<ChunkMemo>>,
    media_type: &'static str,
    source_date_epoch: Option<u64>,
    previous: Option<PathBuf>,
    copy_buf: Vec<u8>,
}

impl LayerWriter {
    pub fn new(store: &ContentStore, opts: &LayerOptions) -> Result<LayerWriter, LayerError> {
        let level = opts.compression.level(opts.level)?;
        let blob = store.writer()?;
        let memo = (opts.compression == Compression::Gzip).then(|| ChunkMemo::of_store(store));
        Ok(LayerWriter {
            out: HashingWriter::new(Encoder::new(opts.compression, level, blob, memo.clone())?),
            memo,
            media_type: opts.compression.media_type(),
            source_date_epoch: opts.source_date_epoch,
            previous: None,
            copy_buf: vec![0; 256 * 1024],
        })
    }

    /// Appends one entry. For `File` entries `content` must yield at least
    /// `size` bytes (only `size` are read); it is ignored for other kinds.
    pub fn append(
        &mut self,
        entry: &Entry,
        content: Option<&mut dyn Read>,
    ) -> Result<(), LayerError> {
        let name = validate_path(&entry.path)?;
        if let Some(prev) = &self.previous {
            if entry_order(prev, &entry.path) != Ordering::Less {
                return Err(LayerError::OutOfOrder {
                    previous: prev.clone(),
                    path: entry.path.clone(),
                });
            }
        }
        let mut name = name.to_vec();
        let (flag, link, size, dev) = match &entry.kind {
            EntryKind::File { size } => (TypeFlag::File, Vec::new(), *size, (0, 0)),
            EntryKind::Dir => {
                // Docker compatibility: directory names end in '/'.
                name.push(b'/');
                (TypeFlag::Dir, Vec::new(), 0, (0, 0))
            }
            EntryKind::Symlink { target } => (
                TypeFlag::Symlink,
                target.as_os_str().as_bytes().to_vec(),
                0,
                (0, 0),
            ),
            EntryKind::Hardlink { target } => (
                TypeFlag::Hardlink,
                validate_path(target)?.to_vec(),
                0,
                (0, 0),
            ),
            EntryKind::CharDevice { major, minor } => {
                (TypeFlag::CharDevice, Vec::new(), 0, (*major, *minor))
            }
            EntryKind::BlockDevice { major, minor } => {
                (TypeFlag::BlockDevice, Vec::new(), 0, (*major, *minor))
            }
            EntryKind::Fifo => (TypeFlag::Fifo, Vec::new(), 0, (0, 0)),
        };
        let mtime = match self.source_date_epoch {
            Some(epoch) => entry.mtime.min(epoch),
            None => entry.mtime,
        };
        let bytes = header::encode(&HeaderFields {
            name: &name,
            link: &link,
            flag,
            mode: entry.mode,
            uid: u64::from(entry.uid),
            gid: u64::from(entry.gid),
            size,
            mtime,
            devmajor: dev.0,
            devminor: dev.1,
            xattrs: &entry.xattrs,
        });
        self.write(&bytes)?;
        if size > 0 {
            let Some(content) = content else {
                return Err(LayerError::MissingContent {
                    path: entry.path.clone(),
                    size,
                });
            };
            self.copy_exact(content, size, &entry.path)?;
            self.write(&vec![0; header::padding(size)])?;
        }
        self.previous = Some(entry.path.clone());
        Ok(())
    }

    /// Appends a whiteout: `path` (present in a lower layer) is deleted.
    pub fn append_whiteout(&mut self, path: &Path) -> Result<(), LayerError> {
        let name = path
            .file_name()
            .ok_or_else(|| LayerError::InvalidPath {
                path: path.to_path_buf(),
                reason: "a whiteout needs a file name",
            })?
            .as_bytes();
        let mut wh = WHITEOUT_PREFIX.as_bytes().to_vec();
        wh.extend_from_slice(name);
        let wh_path = path.with_file_name(std::ffi::OsStr::from_bytes(&wh));
        self.append(&Entry::marker(wh_path, self.marker_mtime()), None)
    }

    /// Appends the opaque marker of `dir`: the lower layers' contents of
    /// `dir` are hidden. Append the directory itself first.
    pub fn append_opaque(&mut self, dir: &Path) -> Result<(), LayerError> {
        let marker = dir.join(OPAQUE_MARKER);
        self.append(&Entry::marker(marker, self.marker_mtime()), None)
    }

    /// Appends a directory tree from disk (see [`TreeOptions`]).
    pub fn append_tree(&mut self, src: &Path, opts: &TreeOptions) -> Result<(), LayerError> {
        tree::append_tree(self, src, opts)
    }

    /// Ends the tar stream, finishes compression and commits the blob.
    pub fn finish(mut self) -> Result<Layer, LayerError> {
        self.write(&[0; 2 * BLOCK])?;
        let (encoder, diff_id, diff_size) = self.out.finish();
        let (writer, chunks) = encoder
            .finish()
            .map_err(|source| LayerError::Stream { source })?;
        let blob = writer.commit(None)?;
        if let (Some(memo), false) = (&self.memo, chunks.is_empty()) {
            memo.record(&blob.digest, &chunks);
        }
        Ok(Layer {
            digest: blob.digest,
            size: blob.size,
            diff_id,
            diff_size,
            media_type: self.media_type.to_string(),
        })
    }

    fn marker_mtime(&self) -> u64 {
        self.source_date_epoch.unwrap_or(0)
    }

    fn write(&mut self, bytes: &[u8]) -> Result<(), LayerError> {
        self.out
            .write_all(bytes)
            .map_err(|source| LayerError::Stream { source })
    }

    fn copy_exact(
        &mut self,
        content: &mut dyn Read,
        size: u64,
        path: &Path,
    ) -> Result<(), LayerError> {
        let mut left = size;
        let mut buf = std::mem::take(&mut self.copy_buf);
        let result = (|| {
            while left > 0 {
                let want = buf.len().min(usize::try_from(left).unwrap_or(usize::MAX));
                let n = match content.read(&mut buf[..want]) {
                    Ok(0) => {
                        return Err(LayerError::FileChanged {
                            path: path.to_path_buf(),
                            expected: size,
                            found: size - left,
                        })
                    }
                    Ok(n) => n,
                    Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                    Err(e) => return Err(LayerError::io("read", path)(e)),
                };
                self.write(&buf[..n])?;
                left -= n as u64;
            }
            Ok(())
        })();
        self.copy_buf = buf;
        result
    }
}

/// The path's bytes, if it is relative and has only normal components.
fn validate_path(path: &Path) -> Result<&[u8], LayerError> {
    let bad = |reason| LayerError::InvalidPath {
        path: path.to_path_buf(),
        reason,
    };
    if path.as_os_str().is_empty() {
        return Err(bad("empty path"));
    }
    for c in path.components() {
        match c {
            Component::Normal(_) => {}
            Component::RootDir => return Err(bad("must be relative")),
            _ => return Err(bad("'.' and '..' are not allowed")),
        }
    }
    let bytes = path.as_os_str().as_bytes();
    // `components()` hides "a//b", "a/./b" and a trailing '/'.
    let normal: Vec<&[u8]> = path
        .components()
        .map(|c| c.as_os_str().as_bytes())
        .collect();
    if normal.join(&b'/') != bytes {
        return Err(bad("not normalised (repeated '/', '.' or a trailing '/')"));
    }
    Ok(bytes)
}

#[cfg(test)]
mod tests;
