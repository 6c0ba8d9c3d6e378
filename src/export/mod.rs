//! Exporters: the OCI image layout, OCI and Docker archives, and push
//! orchestration.
//!
//! Every output appears atomically: archives are written to a temp file next
//! to the destination and renamed; a layout directory gets its blobs first
//! (each renamed into place) and its `index.json` last, replaced by rename
//! under a lock so several builds can add tags to one layout.
//!
//! Uses `store`, `image` and `registry`; touches the file system and network.

mod archive;
mod layout;
mod target;

pub use target::ExportTarget;

use std::io;
use std::path::{Path, PathBuf};

use crate::digest::Sha256Digest;
use crate::image::{
    canonical_json, docker_manifest, oci_manifest, Descriptor, ImageConfig, ImageError,
    ImageFormat, Manifest,
};
use crate::store::{ContentStore, StoreError};

/// What can go wrong exporting.
#[derive(Debug, thiserror::Error)]
pub enum ExportError {
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error(transparent)]
    Image(#[from] ImageError),
    #[error("{op} {path}: {source}")]
    Io {
        op: &'static str,
        path: PathBuf,
        #[source]
        source: io::Error,
    },
    #[error("invalid --output {spec:?}: {reason}")]
    Spec { spec: String, reason: String },
    #[error("{path} exists and is not an OCI image layout (no oci-layout file); refusing to write into it")]
    NotALayout { path: PathBuf },
    #[error("{path} is corrupt: {reason}")]
    Corrupt { path: PathBuf, reason: String },
    #[error("manifest {digest} in the store is not a valid image manifest: {reason}")]
    BadManifest {
        digest: Sha256Digest,
        reason: String,
    },
    #[error("a registry output is pushed by the registry module, not written by export")]
    NotLocal,
}

impl ExportError {
    fn io(op: &'static str, path: &Path) -> impl FnOnce(io::Error) -> ExportError {
        let path = path.to_path_buf();
        move |source| ExportError::Io { op, path, source }
    }
}

/// Stores `config` and an OCI manifest for it and `layers` (descriptors of
/// blobs already in the store); returns the manifest's descriptor.
/// `created` becomes the `org.opencontainers.image.created` annotation.
pub fn commit_image(
    store: &ContentStore,
    config: &ImageConfig,
    layers: Vec<Descriptor>,
    created: Option<&str>,
) -> Result<Descriptor, ExportError> {
    let config_blob = store.put_bytes(&canonical_json(config)?)?;
    let config_desc = Descriptor::new(
        ImageFormat::Oci.config_media_type(),
        config_blob.digest,
        config_blob.size,
    );
    let manifest = oci_manifest(config_desc, layers, created);
    let blob = store.put_bytes(&canonical_json(&manifest)?)?;
    Ok(Descriptor::new(
        ImageFormat::Oci.manifest_media_type(),
        blob.digest,
        blob.size,
    ))
}

/// Stores the Docker v2s2 twin of an OCI manifest (same config and layer
/// blobs, Docker media types); returns its descriptor and the manifest.
pub fn docker_twin(
    store: &ContentStore,
    oci: &Descriptor,
) -> Result<(Descriptor, Manifest), ExportError> {
    let manifest = read_manifest(store, &oci.digest)?;
    let docker = docker_manifest(&manifest.config, &manifest.layers)?;
    let blob = store.put_bytes(&canonical_json(&docker)?)?;
    let desc = Descriptor::new(
        ImageFormat::Docker.manifest_media_type(),
        blob.digest,
        blob.size,
    );
    Ok((desc, docker))
}

/// Reads and parses a manifest from the store.
pub fn read_manifest(store: &ContentStore, digest: &Sha256Digest) -> Result<Manifest, ExportError> {
    let bytes = store.read_blob(digest)?;
    serde_json::from_slice(&bytes).map_err(|e| ExportError::BadManifest {
        digest: *digest,
        reason: e.to_string(),
    })
}

/// Writes the image whose (OCI) manifest is `manifest` to `target`, named
/// `names` (the target's own `name=` values win when given). Returns the
/// descriptor of the manifest written (the Docker twin for docker archives).
pub fn export(
    store: &ContentStore,
    manifest: &Descriptor,
    names: &[String],
    target: &ExportTarget,
) -> Result<Descriptor, ExportError> {
    let names = if target.names().is_empty() {
        names
    } else {
        target.names()
    };
    match target {
        ExportTarget::OciLayout { dest, .. } => {
            layout::write_layout_dir(store, manifest, names, dest)?;
            Ok(manifest.clone())
        }
        ExportTarget::OciArchive { dest, .. } => {
            archive::write_oci_archive(store, manifest, names, dest)?;
            Ok(manifest.clone())
        }
        ExportTarget::DockerArchive { dest, .. } => {
            archive::write_docker_archive(store, manifest, names, dest)
        }
        ExportTarget::Registry { .. } => Err(ExportError::NotLocal),
    }
}

/// The tag of an image name, as BuildKit puts it in `ref.name`:
/// `example.com:5000/app:1.2` -> `1.2`; no tag -> `latest`; digest-only
/// references have no tag.
pub fn tag_of(name: &str) -> Option<&str> {
    let without_digest = name.split('@').next().unwrap_or(name);
    let last = without_digest.rsplit('/').next().unwrap_or(without_digest);
    match last.split_once(':') {
        Some((_, tag)) => Some(tag),
        None if name.contains('@') => None,
        None => Some("latest"),
    }
}

/// `name` with `:latest` added when it has neither tag nor digest, as
/// Docker shows names in `RepoTags`.
fn with_tag(name: &str) -> Option<String> {
    let last = name.rsplit('/').next().unwrap_or(name);
    if name.contains('@') {
        None
    } else if last.contains(':') {
        Some(name.to_string())
    } else {
        Some(format!("{name}:latest"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tags_are_found_after_the_last_slash() {
        assert_eq!(tag_of("app"), Some("latest"));
        assert_eq!(tag_of("app:1"), Some("1"));
        assert_eq!(tag_of("localhost:5000/app"), Some("latest"));
        assert_eq!(tag_of("localhost:5000/team/app:v2"), Some("v2"));
        assert_eq!(tag_of("app@sha256:abc"), None);
        assert_eq!(
            with_tag("localhost:5000/app").as_deref(),
            Some("localhost:5000/app:latest")
        );
        assert_eq!(with_tag("app:1").as_deref(), Some("app:1"));
    }
}
