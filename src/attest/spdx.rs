//! The SBOM as an SPDX 2.3 JSON document (<https://spdx.github.io/spdx-spec/v2.3/>),
//! the predicate of an in-toto statement of type `https://spdx.dev/Document`
//! as BuildKit attaches it.
//!
//! Shape: the document DESCRIBES one package for the image (purpose
//! `CONTAINER`), which CONTAINS the operating system (purpose
//! `OPERATING-SYSTEM`) and every package found, each with its version and
//! a purl external reference. Licenses and download locations are not
//! known from what an image holds: `NOASSERTION`, as scanners write them.
//!
//! Deterministic: the same packages, name and creation time give the same
//! bytes; the document namespace is derived from the content, not random.

use serde_json::{json, Value};

use super::packages::{OsRelease, Package};
use crate::digest::Sha256Digest;

/// What the SBOM describes.
#[derive(Debug, Clone)]
pub struct SbomInput<'a> {
    /// The image's name (its first tag), or a neutral name.
    pub name: &'a str,
    /// The image manifest's digest, the root package's version.
    pub image_digest: Option<&'a Sha256Digest>,
    pub os: Option<&'a OsRelease>,
    pub packages: &'a [Package],
    /// RFC 3339 UTC time (`SOURCE_DATE_EPOCH` when given).
    pub created: &'a str,
    /// `imgb-0.1.0`.
    pub tool: &'a str,
}

const ROOT_ID: &str = "SPDXRef-Image";
const OS_ID: &str = "SPDXRef-OperatingSystem";
const NOASSERTION: &str = "NOASSERTION";

/// SPDX ids allow letters, digits, `.` and `-` only.
fn id_part(s: &str) -> String {
    let cleaned: String = s
        .chars()
        .map(|c| match c {
            'a'..='z' | 'A'..='Z' | '0'..='9' | '.' | '-' => c,
            _ => '-',
        })
        .collect();
    cleaned.trim_matches('-').chars().take(64).collect()
}

fn package_id(p: &Package) -> String {
    let key = Sha256Digest::of(format!("{}\n{}", p.purl, p.location).as_bytes());
    format!(
        "SPDXRef-Package-{}-{}-{}",
        p.ecosystem.name(),
        id_part(&p.name),
        &key.hex()[..16]
    )
}

fn relationship(from: &str, kind: &str, to: &str) -> Value {
    json!({"spdxElementId": from, "relationshipType": kind, "relatedSpdxElement": to})
}

/// The SPDX 2.3 document for an image.
pub fn document(input: &SbomInput<'_>) -> Value {
    let mut packages = Vec::new();
    let mut relationships = vec![relationship("SPDXRef-DOCUMENT", "DESCRIBES", ROOT_ID)];
    let mut root = json!({
        "name": input.name,
        "SPDXID": ROOT_ID,
        "downloadLocation": NOASSERTION,
        "filesAnalyzed": false,
        "licenseConcluded": NOASSERTION,
        "licenseDeclared": NOASSERTION,
        "copyrightText": NOASSERTION,
        "primaryPackagePurpose": "CONTAINER",
    });
    if let Some(d) = input.image_digest {
        root["versionInfo"] = json!(d.to_string());
    }
    packages.push(root);
    if let Some(os) = input.os.filter(|os| !os.id.is_empty()) {
        let mut p = json!({
            "name": os.id,
            "SPDXID": OS_ID,
            "downloadLocation": NOASSERTION,
            "filesAnalyzed": false,
            "licenseConcluded": NOASSERTION,
            "licenseDeclared": NOASSERTION,
            "copyrightText": NOASSERTION,
            "primaryPackagePurpose": "OPERATING-SYSTEM",
            "sourceInfo": "acquired operating system info from os-release",
        });
        if let Some(v) = &os.version_id {
            p["versionInfo"] = json!(v);
        }
        if let Some(pretty) = &os.pretty_name {
            p["description"] = json!(pretty);
        }
        packages.push(p);
        relationships.push(relationship(ROOT_ID, "CONTAINS", OS_ID));
    }
    for pkg in input.packages {
        let id = package_id(pkg);
        let mut p = json!({
            "name": pkg.name,
            "SPDXID": id,
            "downloadLocation": NOASSERTION,
            "filesAnalyzed": false,
            "licenseConcluded": NOASSERTION,
            "licenseDeclared": NOASSERTION,
            "copyrightText": NOASSERTION,
            "sourceInfo": format!("{}: /{}", pkg.ecosystem.source_info(), pkg.location),
            "externalRefs": [{
                "referenceCategory": "PACKAGE-MANAGER",
                "referenceType": "purl",
                "referenceLocator": pkg.purl,
            }],
        });
        if let Some(v) = &pkg.version {
            p["versionInfo"] = json!(v);
        }
        packages.push(p);
        relationships.push(relationship(ROOT_ID, "CONTAINS", &id));
    }
    // Unique per content (SPDX wants a unique URI), yet reproducible.
    let fingerprint = Sha256Digest::of(
        serde_json::to_string(&json!([input.name, input.created, packages]))
            .unwrap_or_default()
            .as_bytes(),
    );
    json!({
        "spdxVersion": "SPDX-2.3",
        "dataLicense": "CC0-1.0",
        "SPDXID": "SPDXRef-DOCUMENT",
        "name": input.name,
        "documentNamespace": format!(
            "https://spdx.org/spdxdocs/imgb-{}-{}",
            id_part(input.name),
            fingerprint.hex()
        ),
        "creationInfo": {
            "created": input.created,
            "creators": [format!("Tool: {}", input.tool)],
        },
        "packages": packages,
        "relationships": relationships,
    })
}

#[cfg(test)]
mod tests {
    use super::super::packages::Ecosystem;
    use super::*;

    fn pkg(name: &str, version: &str, purl: &str) -> Package {
        Package {
            ecosystem: Ecosystem::Deb,
            name: name.into(),
            version: Some(version.into()),
            purl: purl.into(),
            location: "var/lib/dpkg/status".into(),
        }
    }

    #[test]
    fn a_document_describes_the_image_and_contains_its_packages() {
        let os = OsRelease::parse("ID=debian\nVERSION_ID=12\nPRETTY_NAME=\"Debian 12\"\n");
        let pkgs = [
            pkg(
                "python3",
                "3.11.2-1+b1",
                "pkg:deb/debian/python3@3.11.2-1%2Bb1",
            ),
            pkg("libc6", "2.36", "pkg:deb/debian/libc6@2.36"),
        ];
        let digest = Sha256Digest::of(b"manifest");
        let input = SbomInput {
            name: "127.0.0.1:5000/app:1",
            image_digest: Some(&digest),
            os: Some(&os),
            packages: &pkgs,
            created: "2024-01-01T00:00:00Z",
            tool: "imgb-0.1.0",
        };
        let doc = document(&input);
        assert_eq!(doc["spdxVersion"], "SPDX-2.3");
        assert_eq!(doc["creationInfo"]["created"], "2024-01-01T00:00:00Z");
        let packages = doc["packages"].as_array().unwrap();
        assert_eq!(packages.len(), 4);
        assert_eq!(packages[0]["primaryPackagePurpose"], "CONTAINER");
        assert_eq!(packages[0]["versionInfo"], digest.to_string());
        assert_eq!(packages[1]["name"], "debian");
        assert_eq!(packages[2]["versionInfo"], "3.11.2-1+b1");
        assert_eq!(
            packages[2]["externalRefs"][0]["referenceLocator"],
            "pkg:deb/debian/python3@3.11.2-1%2Bb1"
        );
        let ids: Vec<&str> = packages
            .iter()
            .map(|p| p["SPDXID"].as_str().unwrap())
            .collect();
        for id in &ids {
            assert!(id
                .strip_prefix("SPDXRef-")
                .unwrap()
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || c == '.' || c == '-'));
        }
        let rels = doc["relationships"].as_array().unwrap();
        assert_eq!(rels.len(), 4);
        assert_eq!(rels[0]["relationshipType"], "DESCRIBES");
        assert!(rels[1..]
            .iter()
            .all(|r| ids.contains(&r["relatedSpdxElement"].as_str().unwrap())));
        let ns = doc["documentNamespace"].as_str().unwrap();
        assert!(ns.starts_with("https://spdx.org/spdxdocs/imgb-127.0.0.1-5000-app-1-"));
        assert!(!ns.contains('#'));
        // Reproducible, and unique per content.
        assert_eq!(document(&input), doc);
        let other = document(&SbomInput {
            packages: &pkgs[..1],
            ..input.clone()
        });
        assert_ne!(other["documentNamespace"], doc["documentNamespace"]);
    }
}
