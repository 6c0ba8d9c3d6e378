//! Attestations in an image index, laid out as BuildKit does (its
//! `docs/attestations/attestation-storage.md`), so `docker buildx
//! imagetools`, registries and scanners find them:
//!
//! - each attestation is an in-toto statement (`application/vnd.in-toto+json`)
//!   stored as a "layer" of an *attestation manifest*, annotated with its
//!   `in-toto.io/predicate-type`;
//! - the attestation manifest is an ordinary image manifest whose config is
//!   an image config for `unknown/unknown` listing the statements as diff ids
//!   (BuildKit's default; its `oci-artifact` form is opt-in);
//! - the index lists the runnable images first, then one attestation
//!   manifest per image, with platform `unknown/unknown` (so runtimes never
//!   pick it) and the annotations `vnd.docker.reference.type =
//!   attestation-manifest` and `vnd.docker.reference.digest = <image
//!   manifest digest>`.
//!
//! [`IndexEntry`] pairs one platform's manifest with its attestation
//! manifest, so an index of several platforms is the same call.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use super::{
    canonical_json, media_types, Config, Descriptor, Extra, ImageConfig, ImageError, Index,
    Manifest,
};
use crate::digest::Sha256Digest;

/// `_type` of an in-toto statement v1.
pub const INTOTO_STATEMENT_V1: &str = "https://in-toto.io/Statement/v1";
/// The media type of an in-toto statement blob.
pub const INTOTO_MEDIA_TYPE: &str = "application/vnd.in-toto+json";
/// Layer annotation naming the statement's predicate type.
pub const ANNOTATION_PREDICATE_TYPE: &str = "in-toto.io/predicate-type";
/// Index descriptor annotation: what kind of artifact this manifest is.
pub const ANNOTATION_REFERENCE_TYPE: &str = "vnd.docker.reference.type";
/// Index descriptor annotation: the manifest the attestations describe.
pub const ANNOTATION_REFERENCE_DIGEST: &str = "vnd.docker.reference.digest";
/// The value of [`ANNOTATION_REFERENCE_TYPE`] for attestation manifests.
pub const REFERENCE_TYPE_ATTESTATION: &str = "attestation-manifest";
/// Predicate type of an SPDX document.
pub const PREDICATE_SPDX: &str = "https://spdx.dev/Document";
/// Predicate type of SLSA provenance v1.
pub const PREDICATE_SLSA_PROVENANCE_V1: &str = "https://slsa.dev/provenance/v1";

/// An in-toto statement v1.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Statement {
    #[serde(rename = "_type")]
    pub kind: String,
    pub subject: Vec<Subject>,
    pub predicate_type: String,
    pub predicate: serde_json::Value,
}

/// A statement's subject: a name and the digests of the artifact.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Subject {
    pub name: String,
    pub digest: BTreeMap<String, String>,
}

impl Subject {
    /// A subject identified by a sha256 digest.
    pub fn sha256(name: &str, digest: &Sha256Digest) -> Subject {
        Subject {
            name: name.to_string(),
            digest: BTreeMap::from([("sha256".to_string(), digest.hex().to_string())]),
        }
    }
}

impl Statement {
    /// A statement about `subject` (BuildKit names each image by its purl;
    /// an image without a name gets the in-toto placeholder `_`).
    pub fn new(subject: Vec<Subject>, predicate_type: &str, predicate: serde_json::Value) -> Self {
        Statement {
            kind: INTOTO_STATEMENT_V1.to_string(),
            subject,
            predicate_type: predicate_type.to_string(),
            predicate,
        }
    }
}

/// The subjects for an image manifest: one per image name (as a docker
/// purl with the platform), or `_` when the image has no name.
pub fn subjects(purls: &[String], manifest: &Sha256Digest) -> Vec<Subject> {
    if purls.is_empty() {
        return vec![Subject::sha256("_", manifest)];
    }
    purls.iter().map(|p| Subject::sha256(p, manifest)).collect()
}

/// The platform of attestation manifests in an index.
pub fn unknown_platform() -> oci_spec::image::Platform {
    let mut p = oci_spec::image::Platform::default();
    p.set_os(oci_spec::image::Os::Other("unknown".to_string()));
    p.set_architecture(oci_spec::image::Arch::Other("unknown".to_string()));
    p
}

/// An attestation manifest with every blob it needs, ready to store.
#[derive(Debug, Clone)]
pub struct AttestationManifest {
    /// The statements' bytes with their descriptors (the manifest's layers).
    pub statements: Vec<(Descriptor, Vec<u8>)>,
    /// The config blob and its descriptor.
    pub config: (Descriptor, Vec<u8>),
    /// The manifest blob.
    pub manifest: Vec<u8>,
    /// The manifest's descriptor as it goes into the index: platform
    /// `unknown/unknown` and the reference annotations.
    pub descriptor: Descriptor,
}

impl AttestationManifest {
    /// Every blob of the attestation manifest (manifest last), to store.
    pub fn blobs(&self) -> impl Iterator<Item = &[u8]> {
        self.statements
            .iter()
            .map(|(_, b)| b.as_slice())
            .chain(std::iter::once(self.config.1.as_slice()))
            .chain(std::iter::once(self.manifest.as_slice()))
    }
}

/// Assembles the attestation manifest for the image manifest `target`.
/// Statements are written as canonical JSON, so the same statements give
/// the same digests.
pub fn attestation_manifest(
    target: &Descriptor,
    statements: &[Statement],
) -> Result<AttestationManifest, ImageError> {
    if statements.is_empty() {
        return Err(ImageError::Invalid {
            what: "attestation manifest",
            reason: "no statements".into(),
        });
    }
    let mut layers = Vec::with_capacity(statements.len());
    for statement in statements {
        let bytes = canonical_json(statement)?;
        let mut desc = Descriptor::new(
            INTOTO_MEDIA_TYPE,
            Sha256Digest::of(&bytes),
            bytes.len() as u64,
        );
        desc.set_annotation(ANNOTATION_PREDICATE_TYPE, &statement.predicate_type);
        layers.push((desc, bytes));
    }
    // BuildKit's `attestationsConfig`: an image config for unknown/unknown
    // whose diff ids are the (uncompressed) statements.
    let mut config = ImageConfig::new("unknown", "unknown");
    config.config = Some(Config::default());
    config.rootfs.diff_ids = layers.iter().map(|(d, _)| d.digest).collect();
    let config_bytes = canonical_json(&config)?;
    let config_desc = Descriptor::new(
        media_types::OCI_CONFIG,
        Sha256Digest::of(&config_bytes),
        config_bytes.len() as u64,
    );
    let manifest = Manifest {
        schema_version: 2,
        media_type: Some(media_types::OCI_MANIFEST.to_string()),
        config: config_desc.clone(),
        layers: layers.iter().map(|(d, _)| d.clone()).collect(),
        annotations: None,
        extra: Extra::new(),
    };
    let manifest_bytes = canonical_json(&manifest)?;
    let mut descriptor = Descriptor::new(
        media_types::OCI_MANIFEST,
        Sha256Digest::of(&manifest_bytes),
        manifest_bytes.len() as u64,
    );
    descriptor.platform = Some(unknown_platform());
    descriptor.set_annotation(ANNOTATION_REFERENCE_TYPE, REFERENCE_TYPE_ATTESTATION);
    descriptor.set_annotation(ANNOTATION_REFERENCE_DIGEST, &target.digest.to_string());
    Ok(AttestationManifest {
        statements: layers,
        config: (config_desc, config_bytes),
        manifest: manifest_bytes,
        descriptor,
    })
}

/// One platform's image in an index, with its attestation manifest.
#[derive(Debug, Clone)]
pub struct IndexEntry {
    /// The image manifest's descriptor, its platform set (and any
    /// `manifest-descriptor:` annotations).
    pub manifest: Descriptor,
    /// The descriptor of its attestation manifest, if it has one.
    pub attestation: Option<Descriptor>,
}

/// An OCI index of images (in the order given) followed by their
/// attestation manifests (in the same order), as BuildKit writes it.
/// `annotations` are the `index:` annotations.
pub fn image_index(entries: &[IndexEntry], annotations: BTreeMap<String, String>) -> Index {
    let mut manifests: Vec<Descriptor> = entries.iter().map(|e| e.manifest.clone()).collect();
    manifests.extend(entries.iter().filter_map(|e| e.attestation.clone()));
    let mut index = super::oci_index(manifests);
    index.annotations = (!annotations.is_empty()).then_some(annotations);
    index
}

/// Whether an index entry is an attestation manifest (BuildKit's rule:
/// the reference type annotation says so).
pub fn is_attestation(desc: &Descriptor) -> bool {
    desc.annotation(ANNOTATION_REFERENCE_TYPE) == Some(REFERENCE_TYPE_ATTESTATION)
}

/// The attestation manifest an index holds for the image `manifest`.
pub fn attestation_for<'a>(index: &'a Index, manifest: &Sha256Digest) -> Option<&'a Descriptor> {
    let digest = manifest.to_string();
    index
        .manifests
        .iter()
        .find(|d| is_attestation(d) && d.annotation(ANNOTATION_REFERENCE_DIGEST) == Some(&digest))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn image() -> Descriptor {
        let mut d = Descriptor::new(media_types::OCI_MANIFEST, Sha256Digest::of(b"m"), 500);
        d.platform = Some(
            oci_spec::image::PlatformBuilder::default()
                .os(oci_spec::image::Os::Linux)
                .architecture(oci_spec::image::Arch::Amd64)
                .build()
                .unwrap(),
        );
        d
    }

    fn statement(kind: &str) -> Statement {
        Statement::new(
            subjects(
                &["pkg:docker/app@1?platform=linux%2Famd64".into()],
                &image().digest,
            ),
            kind,
            serde_json::json!({"k": "v"}),
        )
    }

    #[test]
    fn attestation_manifests_are_laid_out_as_buildkit_does() {
        let att = attestation_manifest(
            &image(),
            &[
                statement(PREDICATE_SLSA_PROVENANCE_V1),
                statement(PREDICATE_SPDX),
            ],
        )
        .unwrap();
        let manifest: serde_json::Value = serde_json::from_slice(&att.manifest).unwrap();
        assert_eq!(manifest["mediaType"], media_types::OCI_MANIFEST);
        assert_eq!(manifest["config"]["mediaType"], media_types::OCI_CONFIG);
        let layers = manifest["layers"].as_array().unwrap();
        assert_eq!(layers.len(), 2);
        assert_eq!(layers[0]["mediaType"], INTOTO_MEDIA_TYPE);
        assert_eq!(
            layers[1]["annotations"][ANNOTATION_PREDICATE_TYPE],
            PREDICATE_SPDX
        );
        let config: serde_json::Value = serde_json::from_slice(&att.config.1).unwrap();
        assert_eq!(
            config,
            serde_json::json!({
                "architecture": "unknown", "os": "unknown", "config": {},
                "rootfs": {"type": "layers", "diff_ids": [
                    layers[0]["digest"], layers[1]["digest"]
                ]}
            })
        );
        let first: serde_json::Value = serde_json::from_slice(&att.statements[0].1).unwrap();
        assert_eq!(first["_type"], INTOTO_STATEMENT_V1);
        assert_eq!(
            first["subject"][0]["digest"]["sha256"],
            image().digest.hex()
        );
        let d = serde_json::to_value(&att.descriptor).unwrap();
        assert_eq!(
            d["platform"],
            serde_json::json!({"architecture": "unknown", "os": "unknown"})
        );
        assert_eq!(
            d["annotations"][ANNOTATION_REFERENCE_DIGEST],
            image().digest.to_string()
        );
        assert_eq!(
            d["annotations"][ANNOTATION_REFERENCE_TYPE],
            "attestation-manifest"
        );
        assert_eq!(att.descriptor.digest, Sha256Digest::of(&att.manifest));
        assert_eq!(att.blobs().count(), 4);
        // Same statements, same bytes.
        let again = attestation_manifest(
            &image(),
            &[
                statement(PREDICATE_SLSA_PROVENANCE_V1),
                statement(PREDICATE_SPDX),
            ],
        )
        .unwrap();
        assert_eq!(again.descriptor.digest, att.descriptor.digest);
        assert!(attestation_manifest(&image(), &[]).is_err());
    }

    #[test]
    fn indexes_list_images_then_attestations() {
        let mut arm = image();
        arm.digest = Sha256Digest::of(b"arm");
        let att_amd = attestation_manifest(&image(), &[statement(PREDICATE_SPDX)]).unwrap();
        let att_arm = attestation_manifest(&arm, &[statement(PREDICATE_SPDX)]).unwrap();
        let index = image_index(
            &[
                IndexEntry {
                    manifest: image(),
                    attestation: Some(att_amd.descriptor.clone()),
                },
                IndexEntry {
                    manifest: arm.clone(),
                    attestation: Some(att_arm.descriptor.clone()),
                },
            ],
            BTreeMap::from([("org.example".to_string(), "x".to_string())]),
        );
        let digests: Vec<_> = index.manifests.iter().map(|d| d.digest).collect();
        assert_eq!(
            digests,
            vec![
                image().digest,
                arm.digest,
                att_amd.descriptor.digest,
                att_arm.descriptor.digest
            ]
        );
        assert_eq!(
            attestation_for(&index, &arm.digest).map(|d| d.digest),
            Some(att_arm.descriptor.digest)
        );
        assert!(!is_attestation(&index.manifests[0]));
        assert!(is_attestation(&index.manifests[3]));
        assert_eq!(
            index.annotations.as_ref().unwrap()["org.example"],
            "x".to_string()
        );
        let unannotated = image_index(
            &[IndexEntry {
                manifest: image(),
                attestation: None,
            }],
            BTreeMap::new(),
        );
        assert!(unannotated.annotations.is_none());
        assert_eq!(
            subjects(&[], &image().digest)[0].name,
            "_",
            "in-toto's placeholder name"
        );
    }
}
