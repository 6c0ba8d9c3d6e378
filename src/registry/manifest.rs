//! Manifest media types: what to ask registries for, and what a fetched
//! document is (image manifest, index, or something refused).

use crate::image::{Index, Manifest};

use super::RegistryError;

pub const OCI_MANIFEST: &str = "application/vnd.oci.image.manifest.v1+json";
pub const OCI_INDEX: &str = "application/vnd.oci.image.index.v1+json";
pub const DOCKER_MANIFEST: &str = "application/vnd.docker.distribution.manifest.v2+json";
pub const DOCKER_LIST: &str = "application/vnd.docker.distribution.manifest.list.v2+json";
const DOCKER_SCHEMA1: &str = "application/vnd.docker.distribution.manifest.v1+json";
const DOCKER_SCHEMA1_SIGNED: &str = "application/vnd.docker.distribution.manifest.v1+prettyjws";

/// The `Accept` header for manifest requests.
// Docker-compatibility quirk: distribution 2.8 answers 404 for an OCI
// manifest not listed in Accept, and converts v2s2 to schema 1 when Accept
// is missing, so every type we understand is always listed.
pub const MANIFEST_ACCEPT: &str = "application/vnd.oci.image.index.v1+json, application/vnd.oci.image.manifest.v1+json, application/vnd.docker.distribution.manifest.list.v2+json, application/vnd.docker.distribution.manifest.v2+json";

/// What a manifest document is.
#[derive(Debug, Clone)]
pub enum MediaKind {
    Manifest {
        media_type: String,
        manifest: Box<Manifest>,
    },
    Index {
        media_type: String,
        index: Index,
    },
}

impl MediaKind {
    pub fn media_type(&self) -> &str {
        match self {
            MediaKind::Manifest { media_type, .. } | MediaKind::Index { media_type, .. } => {
                media_type
            }
        }
    }
}

/// Classifies `bytes` served as `content_type` (which may be missing or
/// generic): by the document's own `mediaType`, else the header, else its shape.
pub fn classify(
    reference: &str,
    content_type: Option<&str>,
    bytes: &[u8],
) -> Result<MediaKind, RegistryError> {
    let invalid = |reason: String| RegistryError::InvalidManifest {
        reference: reference.to_string(),
        reason,
    };
    let value: serde_json::Value =
        serde_json::from_slice(bytes).map_err(|e| invalid(format!("not JSON: {e}")))?;
    if value.get("schemaVersion").and_then(|v| v.as_u64()) == Some(1) {
        return Err(RegistryError::Schema1 {
            reference: reference.to_string(),
        });
    }
    let header = content_type
        .map(|c| c.split(';').next().unwrap_or("").trim())
        .filter(|c| !c.is_empty() && *c != "application/json" && *c != "application/octet-stream");
    let media_type = value
        .get("mediaType")
        .and_then(|m| m.as_str())
        .map(str::to_string)
        .or(header.map(str::to_string))
        .unwrap_or_else(|| {
            if value.get("manifests").is_some() {
                OCI_INDEX.to_string()
            } else {
                OCI_MANIFEST.to_string()
            }
        });
    match media_type.as_str() {
        OCI_MANIFEST | DOCKER_MANIFEST => {
            let manifest: Manifest = serde_json::from_value(value)
                .map_err(|e| invalid(format!("not an image manifest: {e}")))?;
            Ok(MediaKind::Manifest {
                media_type,
                manifest: Box::new(manifest),
            })
        }
        OCI_INDEX | DOCKER_LIST => {
            let index: Index = serde_json::from_value(value)
                .map_err(|e| invalid(format!("not an image index: {e}")))?;
            Ok(MediaKind::Index { media_type, index })
        }
        DOCKER_SCHEMA1 | DOCKER_SCHEMA1_SIGNED => Err(RegistryError::Schema1 {
            reference: reference.to_string(),
        }),
        other => Err(RegistryError::UnsupportedMediaType {
            reference: reference.to_string(),
            media_type: other.to_string(),
        }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const CFG: &str = r#"{"mediaType":"application/vnd.docker.container.image.v1+json","digest":"sha256:1111111111111111111111111111111111111111111111111111111111111111","size":2}"#;

    #[test]
    fn docker_and_oci_manifests_are_recognised() {
        let docker = format!(
            r#"{{"schemaVersion":2,"mediaType":"{DOCKER_MANIFEST}","config":{CFG},"layers":[]}}"#
        );
        let kind = classify("x", Some(DOCKER_MANIFEST), docker.as_bytes()).unwrap();
        assert!(matches!(kind, MediaKind::Manifest { .. }));
        assert_eq!(kind.media_type(), DOCKER_MANIFEST);
        // OCI manifests may omit mediaType; the header then decides.
        let oci = format!(r#"{{"schemaVersion":2,"config":{CFG},"layers":[]}}"#);
        let kind = classify("x", Some(OCI_MANIFEST), oci.as_bytes()).unwrap();
        assert_eq!(kind.media_type(), OCI_MANIFEST);
        let list = format!(r#"{{"schemaVersion":2,"mediaType":"{DOCKER_LIST}","manifests":[]}}"#);
        assert!(matches!(
            classify("x", None, list.as_bytes()).unwrap(),
            MediaKind::Index { .. }
        ));
    }

    #[test]
    fn schema1_is_refused_clearly() {
        let s1 = r#"{"schemaVersion":1,"name":"library/x","tag":"latest","fsLayers":[]}"#;
        let err = classify(
            "docker.io/library/x:latest",
            Some(DOCKER_SCHEMA1_SIGNED),
            s1.as_bytes(),
        )
        .unwrap_err();
        assert!(matches!(err, RegistryError::Schema1 { .. }));
        assert!(err.to_string().contains("schema 1"), "{err}");
    }

    #[test]
    fn other_types_and_garbage_are_errors() {
        let art = r#"{"schemaVersion":2,"mediaType":"application/vnd.example+json"}"#;
        assert!(matches!(
            classify("x", None, art.as_bytes()),
            Err(RegistryError::UnsupportedMediaType { .. })
        ));
        assert!(matches!(
            classify("x", None, b"<html>"),
            Err(RegistryError::InvalidManifest { .. })
        ));
    }
}
