//! The image model: the image config (a Docker-compatible superset of OCI's
//! that round-trips unknown fields), manifests and indexes, history entries,
//! `ChainId`, canonical JSON for everything that gets digested, image
//! indexes with attestation manifests (BuildKit's layout), `--annotation`
//! parsing and package URLs.
//!
//! Pure: no I/O. Uses `digest`.

mod annotations;
pub mod attest;
mod config;
mod manifest;
mod purl;
mod resolved;

pub use annotations::{Annotation, AnnotationTarget, Annotations};
pub use purl::Purl;

pub use config::{Config, Empty, Extra, Healthcheck, History, ImageConfig, RootFs};
pub use manifest::{
    docker_manifest, media_types, oci_index, oci_manifest, Descriptor, DockerManifest, ImageFormat,
    Index, Manifest, ANNOTATION_CREATED, ANNOTATION_IMAGE_NAME, ANNOTATION_REF_NAME,
};
pub use resolved::ResolvedImage;

use std::fmt;

use serde::Serialize;

use crate::digest::Sha256Digest;

/// What can go wrong building image documents.
#[derive(Debug, thiserror::Error)]
pub enum ImageError {
    #[error("cannot serialize {what}: {source}")]
    Serialize {
        what: &'static str,
        #[source]
        source: serde_json::Error,
    },
    #[error("invalid {what}: {reason}")]
    Invalid { what: &'static str, reason: String },
    #[error("{compression} layers have no Docker media type; use the OCI format")]
    NoDockerMediaType { compression: String },
}

/// Canonical JSON: object keys sorted (by bytes), no insignificant
/// whitespace. Every JSON document imgb digests is written with this, so the
/// same value always gives the same bytes.
///
/// Keys are sorted explicitly rather than relying on `serde_json`'s map type,
/// which becomes insertion-ordered if any crate in the build enables its
/// `preserve_order` feature.
pub fn canonical_json(value: &impl Serialize) -> Result<Vec<u8>, ImageError> {
    let value = serde_json::to_value(value).map_err(|source| ImageError::Serialize {
        what: "JSON document",
        source,
    })?;
    serde_json::to_vec(&sorted(value)).map_err(|source| ImageError::Serialize {
        what: "JSON document",
        source,
    })
}

fn sorted(value: serde_json::Value) -> serde_json::Value {
    use serde_json::Value;
    match value {
        Value::Object(map) => {
            let mut entries: Vec<(String, Value)> = map.into_iter().collect();
            entries.sort_by(|a, b| a.0.cmp(&b.0));
            Value::Object(entries.into_iter().map(|(k, v)| (k, sorted(v))).collect())
        }
        Value::Array(items) => Value::Array(items.into_iter().map(sorted).collect()),
        other => other,
    }
}

/// The chain id of a stack of layers: identifies the unpacked filesystem
/// (OCI image spec, "ChainID"). `ChainID(L0) = DiffID(L0)`,
/// `ChainID(L0..Ln) = sha256(ChainID(L0..Ln-1) + " " + DiffID(Ln))`.
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, serde::Deserialize)]
#[serde(transparent)]
pub struct ChainId(pub Sha256Digest);

impl ChainId {
    /// The chain id of one more layer on top of `parent` (or of a first
    /// layer when `parent` is `None`).
    pub fn next(parent: Option<&ChainId>, diff_id: &Sha256Digest) -> ChainId {
        match parent {
            None => ChainId(*diff_id),
            Some(p) => ChainId(Sha256Digest::of(format!("{} {}", p.0, diff_id).as_bytes())),
        }
    }

    /// The chain id of a whole stack; `None` for no layers.
    pub fn of(diff_ids: &[Sha256Digest]) -> Option<ChainId> {
        diff_ids
            .iter()
            .fold(None, |acc, d| Some(ChainId::next(acc.as_ref(), d)))
    }

    /// The chain ids of every prefix of the stack, bottom first.
    pub fn all(diff_ids: &[Sha256Digest]) -> Vec<ChainId> {
        let mut out: Vec<ChainId> = Vec::with_capacity(diff_ids.len());
        for d in diff_ids {
            let next = ChainId::next(out.last(), d);
            out.push(next);
        }
        out
    }

    pub fn digest(&self) -> &Sha256Digest {
        &self.0
    }
}

impl fmt::Display for ChainId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.0.fmt(f)
    }
}

impl fmt::Debug for ChainId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "ChainId({})", self.0)
    }
}

#[cfg(test)]
mod tests;
