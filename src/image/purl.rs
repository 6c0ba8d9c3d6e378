//! Package URLs (purl, <https://github.com/package-url/purl-spec>): the
//! identifiers SBOM packages and provenance materials carry, e.g.
//! `pkg:deb/debian/libc6@2.36-9%2Bdeb12u4?arch=amd64&distro=debian-12` or
//! `pkg:docker/alpine@3.19?platform=linux%2Famd64`.
//!
//! Components are percent-encoded as the spec says: everything but ASCII
//! letters, digits, `.`, `-`, `_`, `~` and `:` (which the spec leaves
//! unencoded) is written `%XX`; namespace segments keep their `/`
//! separators; qualifiers are sorted by key.

use std::collections::BTreeMap;
use std::fmt;

/// A package URL.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Purl {
    pub kind: String,
    /// `/`-separated segments, each encoded on its own.
    pub namespace: Option<String>,
    pub name: String,
    pub version: Option<String>,
    pub qualifiers: BTreeMap<String, String>,
}

impl Purl {
    pub fn new(kind: &str, namespace: Option<&str>, name: &str, version: Option<&str>) -> Purl {
        Purl {
            kind: kind.to_ascii_lowercase(),
            namespace: namespace
                .map(|n| n.trim_matches('/').to_string())
                .filter(|n| !n.is_empty()),
            name: name.to_string(),
            version: version.filter(|v| !v.is_empty()).map(str::to_string),
            qualifiers: BTreeMap::new(),
        }
    }

    /// Adds a qualifier (empty values are left out, as the spec says).
    pub fn qualifier(mut self, key: &str, value: &str) -> Purl {
        if !value.is_empty() {
            self.qualifiers
                .insert(key.to_ascii_lowercase(), value.to_string());
        }
        self
    }

    /// The purl of a container image as BuildKit writes it in provenance
    /// materials and attestation subjects: `familiar` is Docker's short
    /// name (`alpine`, `user/app`, `127.0.0.1:5000/team/app`), the tag is the
    /// version (`latest` when there is neither tag nor digest), a digest
    /// becomes the `digest` qualifier and the platform the `platform` one.
    pub fn docker(
        familiar: &str,
        tag: Option<&str>,
        digest: Option<&str>,
        platform: Option<&str>,
    ) -> Purl {
        let (namespace, name) = match familiar.rsplit_once('/') {
            Some((ns, name)) => (Some(ns), name),
            None => (None, familiar),
        };
        let tag = match (tag, digest) {
            (None, None) => Some("latest"),
            (t, _) => t,
        };
        Purl::new("docker", namespace, name, tag)
            .qualifier("digest", digest.unwrap_or(""))
            .qualifier("platform", platform.unwrap_or(""))
    }
}

/// Percent-encodes one purl component.
pub fn encode(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || matches!(b, b'.' | b'-' | b'_' | b'~' | b':') {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

impl fmt::Display for Purl {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "pkg:{}/", self.kind)?;
        if let Some(ns) = &self.namespace {
            for segment in ns.split('/').filter(|s| !s.is_empty()) {
                write!(f, "{}/", encode(segment))?;
            }
        }
        f.write_str(&encode(&self.name))?;
        if let Some(v) = &self.version {
            write!(f, "@{}", encode(v))?;
        }
        let mut sep = '?';
        for (k, v) in &self.qualifiers {
            write!(f, "{sep}{k}={}", encode(v))?;
            sep = '&';
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn purls_are_encoded_as_the_spec_says() {
        let deb = Purl::new("deb", Some("debian"), "libc6", Some("2.36-9+deb12u4"))
            .qualifier("distro", "debian-12")
            .qualifier("arch", "amd64");
        assert_eq!(
            deb.to_string(),
            "pkg:deb/debian/libc6@2.36-9%2Bdeb12u4?arch=amd64&distro=debian-12"
        );
        let epoch = Purl::new("deb", Some("debian"), "busybox", Some("1:1.35.0-4"));
        assert_eq!(epoch.to_string(), "pkg:deb/debian/busybox@1:1.35.0-4");
        let npm = Purl::new("npm", Some("@types"), "node", Some("20.1.0"));
        assert_eq!(npm.to_string(), "pkg:npm/%40types/node@20.1.0");
        let go = Purl::new("golang", Some("github.com/pkg"), "errors", Some("v0.9.1"));
        assert_eq!(go.to_string(), "pkg:golang/github.com/pkg/errors@v0.9.1");
        assert_eq!(
            Purl::new("pypi", None, "requests", None)
                .qualifier("empty", "")
                .to_string(),
            "pkg:pypi/requests"
        );
    }

    #[test]
    fn image_purls_match_buildkit() {
        assert_eq!(
            Purl::docker("alpine", None, None, Some("linux/amd64")).to_string(),
            "pkg:docker/alpine@latest?platform=linux%2Famd64"
        );
        assert_eq!(
            Purl::docker("127.0.0.1:5000/team/app", Some("1.2"), None, None).to_string(),
            "pkg:docker/127.0.0.1:5000/team/app@1.2"
        );
        assert_eq!(
            Purl::docker("app", None, Some("sha256:abcd"), Some("linux/arm64")).to_string(),
            "pkg:docker/app?digest=sha256:abcd&platform=linux%2Farm64"
        );
    }
}
