//! Image references (`name[:tag][@digest]`) and Docker's normalisation of
//! them: `busybox` means `docker.io/library/busybox:latest`.
//!
//! The grammar follows distribution's `reference` package: a name is an
//! optional domain followed by `/`-separated lowercase path components; a tag
//! is `[\w][\w.-]{0,127}`; a digest is `sha256:<hex>`.

use std::fmt;

use crate::digest::Sha256Digest;

use super::RegistryError;

/// Docker Hub's name in references.
pub const DOCKER_HUB: &str = "docker.io";
/// The host that actually serves Docker Hub's registry API.
// Docker-compatibility quirk: `docker.io` is a name, the API lives elsewhere.
const DOCKER_HUB_API: &str = "registry-1.docker.io";
/// The key Docker writes Hub credentials under in config.json.
pub const DOCKER_HUB_AUTH_KEY: &str = "https://index.docker.io/v1/";

/// A fully normalised image reference.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Reference {
    registry: String,
    repository: String,
    tag: Option<String>,
    digest: Option<Sha256Digest>,
}

impl Reference {
    /// Parses and normalises `input` the way `docker pull` does. A reference
    /// with neither tag nor digest gets the tag `latest`.
    pub fn parse(input: &str) -> Result<Reference, RegistryError> {
        let invalid = |reason: &str| RegistryError::InvalidReference {
            reference: input.to_string(),
            reason: reason.to_string(),
        };
        if input.is_empty() {
            return Err(invalid("empty reference"));
        }
        let (name_and_tag, digest) = match input.split_once('@') {
            Some((rest, digest)) => {
                let digest = digest
                    .parse::<Sha256Digest>()
                    .map_err(|e| invalid(&e.to_string()))?;
                (rest, Some(digest))
            }
            None => (input, None),
        };
        // The tag is after the last ':' that comes after the last '/', so a
        // registry port (`host:5000/x`) is not mistaken for one.
        let last_slash = name_and_tag.rfind('/').map_or(0, |i| i + 1);
        let (name, tag) = match name_and_tag[last_slash..].rfind(':') {
            Some(i) => {
                let split = last_slash + i;
                (&name_and_tag[..split], Some(&name_and_tag[split + 1..]))
            }
            None => (name_and_tag, None),
        };
        if let Some(tag) = tag {
            if !valid_tag(tag) {
                return Err(invalid(&format!("invalid tag {tag:?}")));
            }
        }
        let (registry, remainder) = split_domain(name);
        if !valid_domain(&registry) {
            return Err(invalid(&format!("invalid registry host {registry:?}")));
        }
        if remainder.chars().any(|c| c.is_ascii_uppercase()) {
            return Err(invalid("repository name must be lowercase"));
        }
        if !remainder.split('/').all(valid_path_component) {
            return Err(invalid(
                "repository name components must be lowercase letters, digits and separators (`.`, `_`, `__`, `-`)",
            ));
        }
        // Docker-compatibility quirk: a bare 64-hex name looks like an image id.
        if registry == DOCKER_HUB
            && remainder.len() == 64
            && remainder.bytes().all(|b| b.is_ascii_hexdigit())
        {
            return Err(invalid(
                "a 64-character hex string is an image id, not a name",
            ));
        }
        let repository = if registry == DOCKER_HUB && !remainder.contains('/') {
            format!("library/{remainder}")
        } else {
            remainder.to_string()
        };
        if registry.len() + 1 + repository.len() > 255 {
            return Err(invalid("name longer than 255 characters"));
        }
        let tag = match (tag, digest) {
            (Some(tag), _) => Some(tag.to_string()),
            (None, Some(_)) => None,
            (None, None) => Some("latest".to_string()),
        };
        Ok(Reference {
            registry,
            repository,
            tag,
            digest,
        })
    }

    /// The same repository at another digest (tag dropped).
    pub fn with_digest(&self, digest: Sha256Digest) -> Reference {
        Reference {
            registry: self.registry.clone(),
            repository: self.repository.clone(),
            tag: None,
            digest: Some(digest),
        }
    }

    /// The registry as written in references (`docker.io`, `host:5000`).
    pub fn registry(&self) -> &str {
        &self.registry
    }

    /// The host and port the registry API is served from.
    pub fn api_host(&self) -> &str {
        if self.registry == DOCKER_HUB {
            DOCKER_HUB_API
        } else {
            &self.registry
        }
    }

    /// The repository path (`library/busybox`).
    pub fn repository(&self) -> &str {
        &self.repository
    }

    pub fn tag(&self) -> Option<&str> {
        self.tag.as_deref()
    }

    pub fn digest(&self) -> Option<&Sha256Digest> {
        self.digest.as_ref()
    }

    /// What to ask the registry for: the digest when pinned, else the tag.
    pub fn manifest_ref(&self) -> String {
        match (&self.digest, &self.tag) {
            (Some(d), _) => d.to_string(),
            (None, Some(t)) => t.clone(),
            (None, None) => "latest".to_string(),
        }
    }

    /// `registry/repository` without tag or digest.
    pub fn name(&self) -> String {
        format!("{}/{}", self.registry, self.repository)
    }
}

impl fmt::Display for Reference {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.registry, self.repository)?;
        if let Some(tag) = &self.tag {
            write!(f, ":{tag}")?;
        }
        if let Some(digest) = &self.digest {
            write!(f, "@{digest}")?;
        }
        Ok(())
    }
}

/// Normalises a registry name as given to `login`/`logout` or found in
/// config.json keys: drops a scheme and a path, maps Docker Hub's aliases.
pub fn normalize_registry_host(input: &str) -> String {
    let without_scheme = input
        .strip_prefix("https://")
        .or_else(|| input.strip_prefix("http://"))
        .unwrap_or(input);
    let host = without_scheme.split('/').next().unwrap_or("");
    match host {
        "index.docker.io" | "registry-1.docker.io" | "docker.io" | "" => DOCKER_HUB.to_string(),
        other => other.to_string(),
    }
}

/// Docker's `splitDockerDomain`: the first component is a registry only if it
/// looks like a host (has `.` or `:`, or is `localhost`).
fn split_domain(name: &str) -> (String, &str) {
    match name.split_once('/') {
        Some((first, rest))
            if first.contains('.')
                || first.contains(':')
                || first == "localhost"
                || first.chars().any(|c| c.is_ascii_uppercase()) =>
        {
            let domain = if first == "index.docker.io" {
                DOCKER_HUB.to_string()
            } else {
                first.to_string()
            };
            (domain, rest)
        }
        _ => (DOCKER_HUB.to_string(), name),
    }
}

fn valid_domain(domain: &str) -> bool {
    let valid_port = |p: &str| !p.is_empty() && p.bytes().all(|b| b.is_ascii_digit());
    if let Some(v6) = domain.strip_prefix('[') {
        let Some((addr, rest)) = v6.split_once(']') else {
            return false;
        };
        let port_ok = rest.is_empty() || rest.strip_prefix(':').is_some_and(valid_port);
        return port_ok && addr.parse::<std::net::Ipv6Addr>().is_ok();
    }
    let host = match domain.split_once(':') {
        Some((host, port)) if valid_port(port) => host,
        Some(_) => return false,
        None => domain,
    };
    !host.is_empty()
        && host.split('.').all(|label| {
            !label.is_empty()
                && label
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
                && !label.starts_with('-')
                && !label.ends_with('-')
        })
}

/// `[a-z0-9]+(?:(?:[._]|__|[-]+)[a-z0-9]+)*`
fn valid_path_component(component: &str) -> bool {
    let bytes = component.as_bytes();
    let alnum = |b: u8| b.is_ascii_lowercase() || b.is_ascii_digit();
    if bytes.is_empty() || !alnum(bytes[0]) || !alnum(bytes[bytes.len() - 1]) {
        return false;
    }
    let mut i = 0;
    while i < bytes.len() {
        if alnum(bytes[i]) {
            i += 1;
            continue;
        }
        let start = i;
        while i < bytes.len() && !alnum(bytes[i]) {
            i += 1;
        }
        let sep = &component[start..i];
        let ok = matches!(sep, "." | "_" | "__") || sep.bytes().all(|b| b == b'-');
        if !ok {
            return false;
        }
    }
    true
}

fn valid_tag(tag: &str) -> bool {
    let word = |b: u8| b.is_ascii_alphanumeric() || b == b'_';
    let bytes = tag.as_bytes();
    !bytes.is_empty()
        && bytes.len() <= 128
        && word(bytes[0])
        && bytes.iter().all(|&b| word(b) || b == b'.' || b == b'-')
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Cases from distribution's `normalize_test.go` (`TestValidateReferenceName`
    /// and `TestParseRepositoryInfo`) plus tag and digest forms.
    #[test]
    fn docker_documented_normalisations() {
        let cases = [
            ("busybox", "docker.io/library/busybox:latest"),
            ("docker/docker", "docker.io/docker/docker:latest"),
            ("library/debian", "docker.io/library/debian:latest"),
            ("debian", "docker.io/library/debian:latest"),
            ("docker.io/docker/docker", "docker.io/docker/docker:latest"),
            ("docker.io/library/debian", "docker.io/library/debian:latest"),
            ("docker.io/debian", "docker.io/library/debian:latest"),
            ("index.docker.io/docker/docker", "docker.io/docker/docker:latest"),
            ("index.docker.io/debian", "docker.io/library/debian:latest"),
            ("127.0.0.1:5000/docker/docker", "127.0.0.1:5000/docker/docker:latest"),
            ("127.0.0.1:5000/debian", "127.0.0.1:5000/debian:latest"),
            ("192.168.0.1/debian", "192.168.0.1/debian:latest"),
            ("localhost/foo", "localhost/foo:latest"),
            ("localhost:5000/foo/bar:1.0", "localhost:5000/foo/bar:1.0"),
            ("ubuntu:20.04", "docker.io/library/ubuntu:20.04"),
            ("foo_bar.com:8080/a-b__c.d", "foo_bar.com:8080/a-b__c.d:latest"),
            ("[::1]:5000/x", "[::1]:5000/x:latest"),
            (
                "thisisthesongthatneverendsitgoesonandonandonthisisthesongthatnev",
                "docker.io/library/thisisthesongthatneverendsitgoesonandonandonthisisthesongthatnev:latest",
            ),
        ];
        for (input, want) in cases {
            let got = Reference::parse(input).map(|r| r.to_string());
            assert_eq!(got.as_deref().ok(), Some(want), "{input}: {got:?}");
        }
    }

    #[test]
    fn digests_pin_and_drop_the_default_tag() {
        let d = "sha256:e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855";
        let r = Reference::parse(&format!("busybox@{d}")).unwrap();
        assert_eq!(r.tag(), None);
        assert_eq!(r.manifest_ref(), d);
        let r = Reference::parse(&format!("localhost:5000/a:v1@{d}")).unwrap();
        assert_eq!(r.tag(), Some("v1"));
        assert_eq!(r.manifest_ref(), d, "the digest wins over the tag");
        assert_eq!(r.to_string(), format!("localhost:5000/a:v1@{d}"));
    }

    #[test]
    fn invalid_references_are_rejected() {
        for bad in [
            "",
            "docker/Docker",
            "-docker",
            "-docker/docker",
            "docker///docker",
            "docker.io/docker/Docker",
            "docker.io/docker///docker",
            "1a3f5e7d9c1b3a5f7e9d1c3b5a7f9e1d3c5b7a9f1e3d5d7c9b1a3f5e7d9c1b3a",
            "busybox:",
            "busybox:-tag",
            "busybox@sha256:abc",
            "busybox@md5:d41d8cd98f00b204e9800998ecf8427e",
            "host:port/x",
            "a..b",
            "a/b/",
        ] {
            assert!(Reference::parse(bad).is_err(), "{bad:?} should be invalid");
        }
    }

    #[test]
    fn hub_is_served_from_its_api_host() {
        let r = Reference::parse("busybox").unwrap();
        assert_eq!(r.api_host(), "registry-1.docker.io");
        assert_eq!(r.repository(), "library/busybox");
        let r = Reference::parse("127.0.0.1:5000/x").unwrap();
        assert_eq!(r.api_host(), "127.0.0.1:5000");
    }

    #[test]
    fn registry_hosts_for_login_are_normalised() {
        assert_eq!(
            normalize_registry_host("https://index.docker.io/v1/"),
            "docker.io"
        );
        assert_eq!(normalize_registry_host("docker.io"), "docker.io");
        assert_eq!(
            normalize_registry_host("http://127.0.0.1:5000"),
            "127.0.0.1:5000"
        );
        assert_eq!(
            normalize_registry_host("reg.example.com/v2/"),
            "reg.example.com"
        );
    }
}
