//! Platforms (`linux/arm64/v8`): parsing with containerd's normalisation and
//! the values of the predefined platform ARGs (`TARGETOS`, `BUILDARCH`, ...).

use std::fmt;
use std::str::FromStr;

use serde::Serialize;

use crate::plan::PlanError;

/// An OS/architecture/variant triple, normalised (`x86_64` is `amd64`,
/// `aarch64` is `arm64` with variant `v8`, `armhf` is `arm` with `v7`).
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize)]
pub struct Platform {
    pub os: String,
    pub architecture: String,
    pub variant: Option<String>,
}

impl Platform {
    /// `linux/amd64`, the usual default.
    pub fn linux_amd64() -> Platform {
        Platform {
            os: "linux".to_string(),
            architecture: "amd64".to_string(),
            variant: None,
        }
    }

    /// The variant as Docker's predefined ARGs show it.
    ///
    /// Docker quirk: containerd's `platforms.Normalize` drops arm64's default
    /// `v8`, so `TARGETPLATFORM` is `linux/arm64` and `TARGETVARIANT` is empty
    /// even though the platform itself (and registry indexes) say `v8`.
    pub fn arg_variant(&self) -> &str {
        match (self.architecture.as_str(), self.variant.as_deref()) {
            ("arm64", Some("v8")) => "",
            (_, Some(v)) => v,
            (_, None) => "",
        }
    }

    /// The platform as the `TARGETPLATFORM`/`BUILDPLATFORM` ARGs show it.
    pub fn arg_string(&self) -> String {
        let variant = self.arg_variant();
        if variant.is_empty() {
            format!("{}/{}", self.os, self.architecture)
        } else {
            format!("{}/{}/{}", self.os, self.architecture, variant)
        }
    }
}

impl fmt::Display for Platform {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.os, self.architecture)?;
        if let Some(v) = &self.variant {
            write!(f, "/{v}")?;
        }
        Ok(())
    }
}

/// Normalises an architecture and its variant as containerd does.
fn normalize_arch(arch: &str, variant: Option<&str>) -> (String, Option<String>) {
    let arch = arch.to_ascii_lowercase();
    let variant = variant.map(|v| v.to_ascii_lowercase());
    match arch.as_str() {
        "i386" | "386" => ("386".to_string(), None),
        "x86_64" | "x86-64" | "amd64" => match variant.as_deref() {
            None | Some("v1") => ("amd64".to_string(), None),
            Some(_) => ("amd64".to_string(), variant),
        },
        "aarch64" | "arm64" => match variant.as_deref() {
            None | Some("8") | Some("v8") | Some("v8.0") => {
                ("arm64".to_string(), Some("v8".to_string()))
            }
            Some(_) => ("arm64".to_string(), variant),
        },
        "armhf" => ("arm".to_string(), Some("v7".to_string())),
        "armel" => ("arm".to_string(), Some("v6".to_string())),
        "arm" => match variant.as_deref() {
            None | Some("7") | Some("v7") => ("arm".to_string(), Some("v7".to_string())),
            Some("5") | Some("v5") => ("arm".to_string(), Some("v5".to_string())),
            Some("6") | Some("v6") => ("arm".to_string(), Some("v6".to_string())),
            Some("8") | Some("v8") => ("arm".to_string(), Some("v8".to_string())),
            Some(_) => ("arm".to_string(), variant),
        },
        _ => (arch, variant),
    }
}

impl FromStr for Platform {
    type Err = PlanError;

    /// Parses `os/arch[/variant]` (or just `os` or `arch`, as containerd
    /// accepts: `linux` means `linux/amd64`, `arm64` means `linux/arm64/v8`).
    fn from_str(s: &str) -> Result<Platform, PlanError> {
        let bad = |reason: &str| PlanError::BadPlatform {
            platform: s.to_string(),
            reason: reason.to_string(),
        };
        let parts: Vec<&str> = s.trim().split('/').collect();
        if parts.iter().any(|p| p.is_empty()) || parts.len() > 3 {
            return Err(bad("expected os/arch[/variant]"));
        }
        let known_os = |p: &str| {
            matches!(
                p.to_ascii_lowercase().as_str(),
                "linux" | "windows" | "darwin" | "freebsd" | "netbsd" | "openbsd" | "solaris"
            )
        };
        let (os, arch, variant) = match parts.as_slice() {
            [one] if known_os(one) => (one.to_ascii_lowercase(), "amd64", None),
            [one] => ("linux".to_string(), *one, None),
            [os, arch] => (os.to_ascii_lowercase(), *arch, None),
            [os, arch, variant] => (os.to_ascii_lowercase(), *arch, Some(*variant)),
            _ => return Err(bad("expected os/arch[/variant]")),
        };
        if os == "macos" {
            return Ok(Platform {
                os: "darwin".to_string(),
                architecture: normalize_arch(arch, variant).0,
                variant: normalize_arch(arch, variant).1,
            });
        }
        let valid = |t: &str| {
            t.chars()
                .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-' || c == '.')
        };
        if !valid(&os) || !valid(arch) || !variant.is_none_or(valid) {
            return Err(bad("invalid characters"));
        }
        let (architecture, variant) = normalize_arch(arch, variant);
        Ok(Platform {
            os,
            architecture,
            variant,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::Platform;

    fn p(s: &str) -> String {
        s.parse::<Platform>().expect("parses").to_string()
    }

    #[test]
    fn normalises_like_containerd() {
        assert_eq!(p("linux/x86_64"), "linux/amd64");
        assert_eq!(p("linux/aarch64"), "linux/arm64/v8");
        assert_eq!(p("linux/arm64"), "linux/arm64/v8");
        assert_eq!(p("linux/arm"), "linux/arm/v7");
        assert_eq!(p("linux/armhf"), "linux/arm/v7");
        assert_eq!(p("Linux/AMD64"), "linux/amd64");
        assert_eq!(p("arm64"), "linux/arm64/v8");
        assert_eq!(p("linux"), "linux/amd64");
        assert_eq!(p("linux/riscv64"), "linux/riscv64");
    }

    #[test]
    fn arg_strings_drop_arm64_v8() {
        let arm: Platform = "linux/arm64".parse().expect("parses");
        assert_eq!(arm.arg_string(), "linux/arm64");
        assert_eq!(arm.arg_variant(), "");
        let arm7: Platform = "linux/arm/v7".parse().expect("parses");
        assert_eq!(arm7.arg_string(), "linux/arm/v7");
    }

    #[test]
    fn rejects_garbage() {
        assert!("linux//amd64".parse::<Platform>().is_err());
        assert!("a/b/c/d".parse::<Platform>().is_err());
        assert!("linux/am d64".parse::<Platform>().is_err());
    }
}
