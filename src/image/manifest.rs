//! Descriptors, manifests and indexes: OCI image manifest and index, and the
//! Docker v2 schema 2 manifest (same shape, other media types, no
//! annotations). Our own serde types so digests are typed and maps ordered;
//! `oci_spec::image::Platform` is reused for platforms.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use super::{Extra, ImageError};
use crate::digest::Sha256Digest;

/// `org.opencontainers.image.created` (RFC 3339).
pub const ANNOTATION_CREATED: &str = "org.opencontainers.image.created";
/// `org.opencontainers.image.ref.name`: the tag, in an OCI layout's index.
pub const ANNOTATION_REF_NAME: &str = "org.opencontainers.image.ref.name";
/// `io.containerd.image.name`: the full image name, as BuildKit writes it
/// next to `ref.name` in index.json (containerd's import uses it).
pub const ANNOTATION_IMAGE_NAME: &str = "io.containerd.image.name";

/// Media types imgb writes.
pub mod media_types {
    pub const OCI_MANIFEST: &str = "application/vnd.oci.image.manifest.v1+json";
    pub const OCI_INDEX: &str = "application/vnd.oci.image.index.v1+json";
    pub const OCI_CONFIG: &str = "application/vnd.oci.image.config.v1+json";
    pub const OCI_LAYER: &str = "application/vnd.oci.image.layer.v1.tar";
    pub const OCI_LAYER_GZIP: &str = "application/vnd.oci.image.layer.v1.tar+gzip";
    pub const OCI_LAYER_ZSTD: &str = "application/vnd.oci.image.layer.v1.tar+zstd";
    pub const DOCKER_MANIFEST: &str = "application/vnd.docker.distribution.manifest.v2+json";
    pub const DOCKER_MANIFEST_LIST: &str =
        "application/vnd.docker.distribution.manifest.list.v2+json";
    pub const DOCKER_CONFIG: &str = "application/vnd.docker.container.image.v1+json";
    pub const DOCKER_LAYER: &str = "application/vnd.docker.image.rootfs.diff.tar";
    pub const DOCKER_LAYER_GZIP: &str = "application/vnd.docker.image.rootfs.diff.tar.gzip";
}

/// Which family of media types to write.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum ImageFormat {
    #[default]
    Oci,
    /// Docker v2 schema 2, for `type=docker` and registries that want it.
    Docker,
}

impl ImageFormat {
    pub fn manifest_media_type(self) -> &'static str {
        match self {
            ImageFormat::Oci => media_types::OCI_MANIFEST,
            ImageFormat::Docker => media_types::DOCKER_MANIFEST,
        }
    }

    pub fn config_media_type(self) -> &'static str {
        match self {
            ImageFormat::Oci => media_types::OCI_CONFIG,
            ImageFormat::Docker => media_types::DOCKER_CONFIG,
        }
    }

    /// The layer media type in this format for a layer written with the OCI
    /// type `oci` (what `LayerWriter` records).
    pub fn layer_media_type(self, oci: &str) -> Result<String, ImageError> {
        match self {
            ImageFormat::Oci => Ok(oci.to_string()),
            ImageFormat::Docker => match oci {
                media_types::OCI_LAYER_GZIP | media_types::DOCKER_LAYER_GZIP => {
                    Ok(media_types::DOCKER_LAYER_GZIP.to_string())
                }
                media_types::OCI_LAYER | media_types::DOCKER_LAYER => {
                    Ok(media_types::DOCKER_LAYER.to_string())
                }
                // Docker compatibility: v2s2 has no zstd layer type; BuildKit
                // switches to OCI media types for zstd, and so must the caller.
                other => Err(ImageError::NoDockerMediaType {
                    compression: other.to_string(),
                }),
            },
        }
    }
}

/// A content descriptor.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Descriptor {
    pub media_type: String,
    pub digest: Sha256Digest,
    pub size: u64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub platform: Option<oci_spec::image::Platform>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub annotations: Option<BTreeMap<String, String>>,
    #[serde(flatten)]
    pub extra: Extra,
}

impl Descriptor {
    pub fn new(media_type: &str, digest: Sha256Digest, size: u64) -> Descriptor {
        Descriptor {
            media_type: media_type.to_string(),
            digest,
            size,
            platform: None,
            annotations: None,
            extra: Extra::new(),
        }
    }

    /// The value of an annotation.
    pub fn annotation(&self, key: &str) -> Option<&str> {
        self.annotations
            .as_ref()
            .and_then(|a| a.get(key))
            .map(String::as_str)
    }

    /// Sets an annotation.
    pub fn set_annotation(&mut self, key: &str, value: &str) {
        self.annotations
            .get_or_insert_with(BTreeMap::new)
            .insert(key.to_string(), value.to_string());
    }
}

/// An image manifest: OCI (`application/vnd.oci.image.manifest.v1+json`) or
/// Docker v2s2; the shapes are the same.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Manifest {
    pub schema_version: u32,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub media_type: Option<String>,
    pub config: Descriptor,
    pub layers: Vec<Descriptor>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub annotations: Option<BTreeMap<String, String>>,
    #[serde(flatten)]
    pub extra: Extra,
}

/// The Docker v2s2 manifest is the same document with Docker media types.
pub type DockerManifest = Manifest;

/// An image index (`index.json` of a layout, or a multi-platform image).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Index {
    pub schema_version: u32,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub media_type: Option<String>,
    pub manifests: Vec<Descriptor>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub annotations: Option<BTreeMap<String, String>>,
    #[serde(flatten)]
    pub extra: Extra,
}

/// An OCI manifest for `config` and `layers` (OCI media types expected).
/// `created`, when given, becomes the `org.opencontainers.image.created`
/// annotation.
pub fn oci_manifest(
    config: Descriptor,
    layers: Vec<Descriptor>,
    created: Option<&str>,
) -> Manifest {
    let annotations =
        created.map(|c| BTreeMap::from([(ANNOTATION_CREATED.to_string(), c.to_string())]));
    Manifest {
        schema_version: 2,
        media_type: Some(media_types::OCI_MANIFEST.to_string()),
        config,
        layers,
        annotations,
        extra: Extra::new(),
    }
}

/// A Docker v2s2 manifest: converts the config and layer media types.
pub fn docker_manifest(
    config: &Descriptor,
    layers: &[Descriptor],
) -> Result<DockerManifest, ImageError> {
    let fmt = ImageFormat::Docker;
    let mut config = Descriptor::new(fmt.config_media_type(), config.digest, config.size);
    config.annotations = None;
    let layers = layers
        .iter()
        .map(|l| {
            Ok(Descriptor::new(
                &fmt.layer_media_type(&l.media_type)?,
                l.digest,
                l.size,
            ))
        })
        .collect::<Result<Vec<_>, ImageError>>()?;
    Ok(Manifest {
        schema_version: 2,
        media_type: Some(media_types::DOCKER_MANIFEST.to_string()),
        config,
        layers,
        annotations: None,
        extra: Extra::new(),
    })
}

/// An OCI index listing `manifests`.
pub fn oci_index(manifests: Vec<Descriptor>) -> Index {
    Index {
        schema_version: 2,
        media_type: Some(media_types::OCI_INDEX.to_string()),
        manifests,
        annotations: None,
        extra: Extra::new(),
    }
}
