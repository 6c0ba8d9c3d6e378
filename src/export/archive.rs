//! Archives: an OCI layout in a tar file (`type=oci`), and the `docker load`
//! format (`type=docker`): Docker 25's layout, i.e. the OCI layout plus
//! `manifest.json` and `repositories`, with a Docker v2s2 manifest.
//!
//! The tar is written to a temp file next to the destination and renamed
//! when complete; any failure removes the temp file, so the destination is
//! either the old file or a whole new archive. Headers are fixed (mode,
//! owner 0:0, mtime 0) so the same image gives the same archive bytes.

use std::fs::{self, File};
use std::io::{self, BufWriter, Write};
use std::path::Path;

use serde::Serialize;

use super::layout::{image_blobs, index_entries, temp_name, verify, OCI_LAYOUT};
use super::{docker_twin, tag_of, with_tag, ExportError};
use crate::image::{canonical_json, oci_index, Descriptor};
use crate::store::{Blob, ContentStore};

pub(super) fn write_oci_archive(
    store: &ContentStore,
    manifest: &Descriptor,
    names: &[String],
    dest: &Path,
) -> Result<(), ExportError> {
    let blobs = image_blobs(store, manifest)?;
    let index = oci_index(index_entries(manifest, names));
    let index = canonical_json(&index)?;
    write_archive(dest, |tar| {
        tar.file("oci-layout", OCI_LAYOUT)?;
        tar.file("index.json", &index)?;
        tar.blobs(store, &blobs)
    })
}

/// One image in Docker's `manifest.json`.
#[derive(Serialize)]
#[serde(rename_all = "PascalCase")]
struct DockerLoadEntry {
    config: String,
    repo_tags: Vec<String>,
    layers: Vec<String>,
}

pub(super) fn write_docker_archive(
    store: &ContentStore,
    manifest: &Descriptor,
    names: &[String],
    dest: &Path,
) -> Result<Descriptor, ExportError> {
    let (docker_desc, docker) = docker_twin(store, manifest)?;
    let blobs = image_blobs(store, &docker_desc)?;
    let index = canonical_json(&oci_index(index_entries(&docker_desc, names)))?;
    let blob_path = |d: &crate::digest::Sha256Digest| format!("blobs/sha256/{}", d.hex());
    let repo_tags: Vec<String> = names.iter().filter_map(|n| with_tag(n)).collect();
    let load = vec![DockerLoadEntry {
        config: blob_path(&docker.config.digest),
        repo_tags: repo_tags.clone(),
        layers: docker.layers.iter().map(|l| blob_path(&l.digest)).collect(),
    }];
    // Docker writes `manifest.json` with Go's field order, not sorted keys.
    let load = serde_json::to_vec(&load).map_err(|e| ExportError::Io {
        op: "serialize",
        path: dest.join("manifest.json"),
        source: e.into(),
    })?;
    // Legacy `repositories`: repository -> tag -> top layer id.
    let mut repositories: std::collections::BTreeMap<
        String,
        std::collections::BTreeMap<String, String>,
    > = Default::default();
    if let Some(top) = docker.layers.last() {
        for name in &repo_tags {
            if let (Some(tag), Some((repo, _))) = (tag_of(name), name.rsplit_once(':')) {
                repositories
                    .entry(repo.to_string())
                    .or_default()
                    .insert(tag.to_string(), top.digest.hex());
            }
        }
    }
    let repositories = canonical_json(&repositories)?;
    write_archive(dest, |tar| {
        tar.blobs(store, &blobs)?;
        tar.file("index.json", &index)?;
        tar.file("manifest.json", &load)?;
        tar.file("oci-layout", OCI_LAYOUT)?;
        if !repo_tags.is_empty() {
            tar.file("repositories", &repositories)?;
        }
        Ok(())
    })?;
    Ok(docker_desc)
}

/// A tar being written with fixed headers.
struct Tar {
    out: tar::Builder<BufWriter<File>>,
}

impl Tar {
    fn header(
        path: &str,
        kind: tar::EntryType,
        size: u64,
        mode: u32,
    ) -> Result<tar::Header, ExportError> {
        let mut h = tar::Header::new_ustar();
        h.set_entry_type(kind);
        h.set_size(size);
        h.set_mode(mode);
        h.set_uid(0);
        h.set_gid(0);
        h.set_mtime(0);
        // Paths here are short and ASCII (at most "blobs/sha256/" + 64).
        h.set_path(path)
            .map_err(ExportError::io("name archive entry", Path::new(path)))?;
        h.set_cksum();
        Ok(h)
    }

    fn file(&mut self, path: &str, bytes: &[u8]) -> Result<(), ExportError> {
        let h = Self::header(path, tar::EntryType::Regular, bytes.len() as u64, 0o644)?;
        self.out
            .append(&h, bytes)
            .map_err(ExportError::io("write archive entry", Path::new(path)))
    }

    fn dir(&mut self, path: &str) -> Result<(), ExportError> {
        let h = Self::header(path, tar::EntryType::Directory, 0, 0o755)?;
        self.out
            .append(&h, io::empty())
            .map_err(ExportError::io("write archive entry", Path::new(path)))
    }

    /// `blobs/`, `blobs/sha256/` and each blob, streamed from the store and
    /// re-verified on the way.
    fn blobs(&mut self, store: &ContentStore, blobs: &[Blob]) -> Result<(), ExportError> {
        self.dir("blobs/")?;
        self.dir("blobs/sha256/")?;
        let mut sorted = blobs.to_vec();
        sorted.sort();
        for blob in &sorted {
            let path = format!("blobs/sha256/{}", blob.digest.hex());
            let h = Self::header(&path, tar::EntryType::Regular, blob.size, 0o644)?;
            let mut reader = crate::digest::HashingReader::new(io::Read::take(
                store.open_blob(&blob.digest)?,
                blob.size,
            ));
            self.out
                .append(&h, &mut reader)
                .map_err(ExportError::io("write archive entry", Path::new(&path)))?;
            let (_, digest, size) = reader.finish();
            verify(blob, digest, size)?;
        }
        Ok(())
    }
}

/// Writes a tar through `fill` to a temp file next to `dest`, then renames.
fn write_archive(
    dest: &Path,
    fill: impl FnOnce(&mut Tar) -> Result<(), ExportError>,
) -> Result<(), ExportError> {
    if let Some(parent) = dest.parent().filter(|p| !p.as_os_str().is_empty()) {
        fs::create_dir_all(parent).map_err(ExportError::io("create directory", parent))?;
    }
    if dest.is_dir() {
        return Err(ExportError::Io {
            op: "write archive to",
            path: dest.to_path_buf(),
            source: io::Error::other("is a directory (for a layout directory add tar=false)"),
        });
    }
    let tmp = temp_name(dest);
    let result = (|| {
        let file = File::create(&tmp).map_err(ExportError::io("create", &tmp))?;
        let mut tar = Tar {
            out: tar::Builder::new(BufWriter::with_capacity(1 << 20, file)),
        };
        fill(&mut tar)?;
        let mut buf = tar
            .out
            .into_inner()
            .map_err(ExportError::io("finish archive", &tmp))?;
        buf.flush().map_err(ExportError::io("write", &tmp))?;
        let file = buf
            .into_inner()
            .map_err(|e| ExportError::io("write", &tmp)(e.into_error()))?;
        file.sync_all().map_err(ExportError::io("sync", &tmp))?;
        fs::rename(&tmp, dest).map_err(ExportError::io("rename into place", dest))
    })();
    if result.is_err() {
        let _ = fs::remove_file(&tmp);
    }
    result
}
