//! Platforms (`os/arch[/variant]`): parsing, normalisation and picking one
//! manifest out of an index, the way containerd's default matcher does.

use std::fmt;

use crate::image::{Descriptor, Index};

use super::RegistryError;

/// A normalised platform.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Platform {
    pub os: String,
    pub architecture: String,
    pub variant: Option<String>,
}

impl Platform {
    /// Parses `os/arch[/variant]` (or `arch` alone, meaning linux).
    pub fn parse(input: &str) -> Result<Platform, RegistryError> {
        let invalid = || RegistryError::InvalidPlatform {
            platform: input.to_string(),
        };
        let parts: Vec<&str> = input.split('/').collect();
        if parts.iter().any(|p| p.is_empty()) {
            return Err(invalid());
        }
        let platform = match parts.as_slice() {
            [arch] => Platform::new("linux", arch, None),
            [os, arch] => Platform::new(os, arch, None),
            [os, arch, variant] => Platform::new(os, arch, Some(variant)),
            _ => return Err(invalid()),
        };
        Ok(platform)
    }

    /// Builds a normalised platform (aliases such as `x86_64` and `aarch64`
    /// mapped to Go's names; default variants made explicit).
    pub fn new(os: &str, architecture: &str, variant: Option<&str>) -> Platform {
        let os = os.to_ascii_lowercase();
        let arch = architecture.to_ascii_lowercase();
        let variant = variant
            .map(str::to_ascii_lowercase)
            .filter(|v| !v.is_empty());
        // Docker-compatibility quirk: containerd's `platforms.Normalize`.
        let (architecture, variant) = match (arch.as_str(), variant.as_deref()) {
            ("i386", _) => ("386".to_string(), None),
            ("x86_64" | "x86-64" | "amd64", v) => (
                "amd64".to_string(),
                v.filter(|v| *v != "v1").map(str::to_string),
            ),
            ("aarch64" | "arm64", v) => (
                "arm64".to_string(),
                Some(v.unwrap_or("v8").to_string()).filter(|v| v != "8" && v != "v8"),
            ),
            ("armhf", _) => ("arm".to_string(), Some("v7".to_string())),
            ("armel", _) => ("arm".to_string(), Some("v6".to_string())),
            ("arm", v) => (
                "arm".to_string(),
                Some(match v {
                    None | Some("7") | Some("v7") => "v7".to_string(),
                    Some("5") => "v5".to_string(),
                    Some("6") => "v6".to_string(),
                    Some("8") => "v8".to_string(),
                    Some(other) => other.to_string(),
                }),
            ),
            (other, v) => (other.to_string(), v.map(str::to_string)),
        };
        // arm64's default variant is kept implicit (`None` == `v8`) so that
        // `linux/arm64` and `linux/arm64/v8` compare equal.
        Platform {
            os,
            architecture,
            variant,
        }
    }

    /// The platform this process runs on.
    pub fn host() -> Platform {
        let arch = match std::env::consts::ARCH {
            "x86_64" => "amd64",
            "aarch64" => "arm64",
            "x86" => "386",
            "arm" => "arm",
            "powerpc64" => "ppc64le",
            "s390x" => "s390x",
            "riscv64" => "riscv64",
            other => other,
        };
        Platform::new("linux", arch, None)
    }

    /// The platform an index entry declares, if any.
    pub fn of_descriptor(descriptor: &Descriptor) -> Option<Platform> {
        let p = descriptor.platform.as_ref()?;
        Some(Platform::new(
            &p.os().to_string(),
            &p.architecture().to_string(),
            p.variant().as_deref(),
        ))
    }

    /// True when an image for `self` runs where `wanted` is asked for.
    pub fn matches(&self, wanted: &Platform) -> bool {
        self == wanted
    }
}

impl fmt::Display for Platform {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.os, self.architecture)?;
        match (&self.variant, self.architecture.as_str()) {
            (Some(v), _) => write!(f, "/{v}"),
            (None, "arm64") => write!(f, "/v8"),
            (None, _) => Ok(()),
        }
    }
}

/// True for BuildKit's attestation manifests (`unknown/unknown` platform,
/// `vnd.docker.reference.type: attestation-manifest`), which are never images.
fn is_attestation(descriptor: &Descriptor) -> bool {
    let annotated =
        descriptor.annotation("vnd.docker.reference.type") == Some("attestation-manifest");
    let unknown = Platform::of_descriptor(descriptor)
        .is_some_and(|p| p.os == "unknown" && p.architecture == "unknown");
    annotated || unknown
}

/// Picks the manifest for `wanted` out of `index`, ignoring attestations.
/// Errors list the platforms the index offers.
pub fn select_manifest<'a>(
    index: &'a Index,
    wanted: &Platform,
    reference: &str,
) -> Result<&'a Descriptor, RegistryError> {
    let candidates: Vec<&Descriptor> = index
        .manifests
        .iter()
        .filter(|d| !is_attestation(d))
        .collect();
    if let Some(found) = candidates
        .iter()
        .find(|d| Platform::of_descriptor(d).is_some_and(|p| p.matches(wanted)))
    {
        return Ok(found);
    }
    Err(RegistryError::NoMatchingPlatform {
        reference: reference.to_string(),
        wanted: wanted.to_string(),
        available: candidates
            .iter()
            .filter_map(|d| Platform::of_descriptor(d).map(|p| p.to_string()))
            .collect(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn aliases_and_default_variants_normalise() {
        let same = [
            ("linux/arm64", "linux/arm64/v8"),
            ("linux/aarch64", "linux/arm64/v8"),
            ("linux/arm64/8", "linux/arm64"),
            ("linux/x86_64", "linux/amd64"),
            ("amd64", "linux/amd64"),
            ("linux/amd64/v1", "linux/amd64"),
            ("linux/arm", "linux/arm/v7"),
            ("linux/armhf", "linux/arm/v7"),
            ("Linux/AMD64", "linux/amd64"),
        ];
        for (a, b) in same {
            let (pa, pb) = (Platform::parse(a).unwrap(), Platform::parse(b).unwrap());
            assert!(pa.matches(&pb), "{a} should match {b}");
        }
        let different = [
            ("linux/arm/v6", "linux/arm/v7"),
            ("linux/arm64", "linux/amd64"),
            ("linux/amd64/v3", "linux/amd64"),
            ("windows/amd64", "linux/amd64"),
            ("linux/arm64/v9", "linux/arm64"),
        ];
        for (a, b) in different {
            let (pa, pb) = (Platform::parse(a).unwrap(), Platform::parse(b).unwrap());
            assert!(!pa.matches(&pb), "{a} should not match {b}");
        }
        assert_eq!(
            Platform::parse("linux/arm64").unwrap().to_string(),
            "linux/arm64/v8"
        );
        assert_eq!(
            Platform::parse("linux/amd64").unwrap().to_string(),
            "linux/amd64"
        );
    }

    #[test]
    fn malformed_platforms_are_rejected() {
        for bad in ["", "linux/", "/amd64", "a/b/c/d", "linux//v8"] {
            assert!(Platform::parse(bad).is_err(), "{bad:?}");
        }
    }

    fn index(json: &str) -> Index {
        serde_json::from_str(json).unwrap()
    }

    const D1: &str = "sha256:1111111111111111111111111111111111111111111111111111111111111111";
    const D2: &str = "sha256:2222222222222222222222222222222222222222222222222222222222222222";
    const D3: &str = "sha256:3333333333333333333333333333333333333333333333333333333333333333";

    fn entry(digest: &str, platform: &str, annotations: &str) -> String {
        format!(
            r#"{{"mediaType":"application/vnd.oci.image.manifest.v1+json","digest":"{digest}","size":1,"platform":{platform}{annotations}}}"#
        )
    }

    #[test]
    fn selection_picks_the_variant_and_skips_attestations() {
        let idx = index(&format!(
            r#"{{"schemaVersion":2,"mediaType":"application/vnd.oci.image.index.v1+json","manifests":[{},{},{}]}}"#,
            entry(
                D3,
                r#"{"os":"unknown","architecture":"unknown"}"#,
                r#","annotations":{"vnd.docker.reference.type":"attestation-manifest"}"#
            ),
            entry(D1, r#"{"os":"linux","architecture":"amd64"}"#, ""),
            entry(
                D2,
                r#"{"os":"linux","architecture":"arm64","variant":"v8"}"#,
                ""
            ),
        ));
        let pick = |p: &str| {
            select_manifest(&idx, &Platform::parse(p).unwrap(), "x").map(|d| d.digest.to_string())
        };
        assert_eq!(pick("linux/arm64/v8").unwrap(), D2);
        assert_eq!(pick("linux/arm64").unwrap(), D2);
        assert_eq!(pick("linux/amd64").unwrap(), D1);
        let err = pick("linux/s390x").unwrap_err().to_string();
        assert!(
            err.contains("linux/amd64") && err.contains("linux/arm64/v8"),
            "{err}"
        );
        assert!(
            !err.contains("unknown"),
            "attestations are not offered: {err}"
        );
    }
}
