//! The OCI image layout directory (`type=oci,dest=DIR,tar=false`):
//! `oci-layout`, `index.json`, `blobs/sha256/<hex>`.
//!
//! Several builds may write into one layout: the directory is flocked while
//! a build copies its blobs and merges its entries into `index.json`
//! (entries with the same `ref.name` are replaced), and `index.json` is
//! replaced by rename, so a reader never sees a torn index.

use std::fs::{self, File};
use std::io;
use std::path::Path;

use super::{tag_of, ExportError};
use crate::digest::Sha256Digest;
use crate::image::{
    canonical_json, oci_index, Descriptor, Index, ANNOTATION_IMAGE_NAME, ANNOTATION_REF_NAME,
};
use crate::store::{Blob, ContentStore};

pub(super) const OCI_LAYOUT: &[u8] = br#"{"imageLayoutVersion":"1.0.0"}"#;

/// The blobs an image consists of: manifest, config, layers (in that order,
/// without duplicates).
pub(super) fn image_blobs(
    store: &ContentStore,
    manifest: &Descriptor,
) -> Result<Vec<Blob>, ExportError> {
    let m = super::read_manifest(store, &manifest.digest)?;
    let mut out: Vec<Blob> = Vec::new();
    for d in std::iter::once(manifest)
        .chain(std::iter::once(&m.config))
        .chain(m.layers.iter())
    {
        let size = store.size(&d.digest)?;
        if size != d.size {
            return Err(ExportError::BadManifest {
                digest: manifest.digest,
                reason: format!(
                    "descriptor of {} says {} bytes, the store has {size}",
                    d.digest, d.size
                ),
            });
        }
        if !out.iter().any(|b| b.digest == d.digest) {
            out.push(Blob {
                digest: d.digest,
                size,
            });
        }
    }
    Ok(out)
}

/// The `index.json` entries for an image: one per name (annotated with the
/// full name and, as BuildKit does, the tag as `ref.name`), or one
/// unannotated entry when there are no names.
pub(super) fn index_entries(manifest: &Descriptor, names: &[String]) -> Vec<Descriptor> {
    let bare = Descriptor::new(&manifest.media_type, manifest.digest, manifest.size);
    if names.is_empty() {
        return vec![bare];
    }
    names
        .iter()
        .map(|name| {
            let mut d = bare.clone();
            d.set_annotation(ANNOTATION_IMAGE_NAME, name);
            if let Some(tag) = tag_of(name) {
                d.set_annotation(ANNOTATION_REF_NAME, tag);
            }
            d
        })
        .collect()
}

/// `existing` with `new` merged in: an existing entry is dropped when a new
/// one has its `ref.name`, or when both are unnamed and for the same digest.
pub(super) fn merge_index(mut existing: Index, new: Vec<Descriptor>) -> Index {
    existing.manifests.retain(|old| {
        !new.iter().any(|n| {
            match (
                old.annotation(ANNOTATION_REF_NAME),
                n.annotation(ANNOTATION_REF_NAME),
            ) {
                (Some(a), Some(b)) => a == b,
                (None, None) => old.digest == n.digest,
                _ => false,
            }
        })
    });
    existing.manifests.extend(new);
    existing
}

pub(super) fn write_layout_dir(
    store: &ContentStore,
    manifest: &Descriptor,
    names: &[String],
    dest: &Path,
) -> Result<(), ExportError> {
    let blobs = image_blobs(store, manifest)?;
    fs::create_dir_all(dest).map_err(ExportError::io("create directory", dest))?;
    // Serialise concurrent writers of this layout (flock on the directory).
    let lock = File::open(dest).map_err(ExportError::io("open", dest))?;
    lock.lock().map_err(ExportError::io("lock", dest))?;
    let layout_file = dest.join("oci-layout");
    let empty = fs::read_dir(dest)
        .map_err(ExportError::io("list", dest))?
        .next()
        .is_none();
    if !empty && !layout_file.exists() {
        return Err(ExportError::NotALayout {
            path: dest.to_path_buf(),
        });
    }
    if !layout_file.exists() {
        write_atomic(&layout_file, OCI_LAYOUT)?;
    }
    let blob_dir = dest.join("blobs/sha256");
    fs::create_dir_all(&blob_dir).map_err(ExportError::io("create directory", &blob_dir))?;
    for blob in &blobs {
        copy_blob(store, blob, &blob_dir)?;
    }
    let index_path = dest.join("index.json");
    let existing = match fs::read(&index_path) {
        Ok(bytes) => serde_json::from_slice(&bytes).map_err(|e| ExportError::Corrupt {
            path: index_path.clone(),
            reason: e.to_string(),
        })?,
        Err(e) if e.kind() == io::ErrorKind::NotFound => oci_index(Vec::new()),
        Err(e) => return Err(ExportError::io("read", &index_path)(e)),
    };
    let index = merge_index(existing, index_entries(manifest, names));
    write_atomic(&index_path, &canonical_json(&index)?)
}

/// Copies a store blob into a layout's `blobs/sha256` unless it is there.
fn copy_blob(store: &ContentStore, blob: &Blob, blob_dir: &Path) -> Result<(), ExportError> {
    let dest = blob_dir.join(blob.digest.hex());
    if fs::metadata(&dest).is_ok_and(|m| m.len() == blob.size) {
        return Ok(());
    }
    let tmp = temp_name(&dest);
    let result = (|| {
        let mut src = store.open_blob(&blob.digest)?;
        let mut out = File::create(&tmp).map_err(ExportError::io("create", &tmp))?;
        let mut hashing = crate::digest::HashingWriter::new(&mut out);
        io::copy(&mut src, &mut hashing).map_err(ExportError::io("copy to", &tmp))?;
        let (_, digest, size) = hashing.finish();
        verify(blob, digest, size)?;
        out.sync_all().map_err(ExportError::io("sync", &tmp))?;
        fs::rename(&tmp, &dest).map_err(ExportError::io("rename into place", &dest))
    })();
    if result.is_err() {
        let _ = fs::remove_file(&tmp);
    }
    result
}

/// A blob read back from the store must still be what its name says.
pub(super) fn verify(blob: &Blob, digest: Sha256Digest, size: u64) -> Result<(), ExportError> {
    if digest != blob.digest || size != blob.size {
        return Err(ExportError::Store(
            crate::store::StoreError::DigestMismatch {
                expected: blob.digest,
                found: digest,
            },
        ));
    }
    Ok(())
}

/// `.<name>.imgb-<pid>.tmp` next to `path`.
pub(super) fn temp_name(path: &Path) -> std::path::PathBuf {
    let name = path
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    path.with_file_name(format!(".{name}.imgb-{}.tmp", std::process::id()))
}

fn write_atomic(path: &Path, bytes: &[u8]) -> Result<(), ExportError> {
    let tmp = temp_name(path);
    let result = (|| {
        let mut f = File::create(&tmp).map_err(ExportError::io("create", &tmp))?;
        io::Write::write_all(&mut f, bytes).map_err(ExportError::io("write", &tmp))?;
        f.sync_all().map_err(ExportError::io("sync", &tmp))?;
        fs::rename(&tmp, path).map_err(ExportError::io("rename into place", path))
    })();
    if result.is_err() {
        let _ = fs::remove_file(&tmp);
    }
    result
}
