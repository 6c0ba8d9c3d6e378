//! `--annotation` values, parsed as buildx does: `KEY=VALUE` (the image
//! manifest), or `TYPES:KEY=VALUE` where TYPES is a comma-separated list
//! of `manifest`, `manifest-descriptor`, `index`, `index-descriptor`, each
//! optionally limited to one platform in brackets (`manifest[linux/arm64]`).
//!
//! - `manifest`: the image manifest's `annotations`;
//! - `manifest-descriptor`: the descriptor that points at the manifest (in
//!   the image index, or in an OCI layout's `index.json`);
//! - `index`: the image index's `annotations`;
//! - `index-descriptor`: the descriptor that points at the index (in an OCI
//!   layout's `index.json`).

use std::collections::BTreeMap;

use super::ImageError;

/// Where an annotation goes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AnnotationTarget {
    Manifest,
    ManifestDescriptor,
    Index,
    IndexDescriptor,
}

impl AnnotationTarget {
    fn parse(s: &str) -> Option<AnnotationTarget> {
        match s {
            "manifest" => Some(AnnotationTarget::Manifest),
            "manifest-descriptor" => Some(AnnotationTarget::ManifestDescriptor),
            "index" => Some(AnnotationTarget::Index),
            "index-descriptor" => Some(AnnotationTarget::IndexDescriptor),
            _ => None,
        }
    }
}

/// One parsed annotation.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Annotation {
    pub target: AnnotationTarget,
    /// Only for this platform (`os/arch[/variant]` as written).
    pub platform: Option<String>,
    pub key: String,
    pub value: String,
}

/// The `--annotation` values of a build.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Annotations {
    pub list: Vec<Annotation>,
}

fn invalid(input: &str, reason: String) -> ImageError {
    ImageError::Invalid {
        what: "annotation",
        reason: format!("{input:?}: {reason}"),
    }
}

impl Annotations {
    /// Parses `--annotation` values (later values win for the same key).
    pub fn parse<S: AsRef<str>>(inputs: &[S]) -> Result<Annotations, ImageError> {
        let mut list = Vec::new();
        for input in inputs {
            let input = input.as_ref();
            if input.is_empty() {
                continue;
            }
            let Some((k, value)) = input.split_once('=') else {
                return Err(invalid(input, "expected KEY=VALUE".into()));
            };
            let (types, key) = match k.split_once(':') {
                Some((types, key)) => (Some(types), key),
                None => (None, k),
            };
            if key.is_empty() {
                return Err(invalid(input, "the key is empty".into()));
            }
            let Some(types) = types else {
                list.push(Annotation {
                    target: AnnotationTarget::Manifest,
                    platform: None,
                    key: key.to_string(),
                    value: value.to_string(),
                });
                continue;
            };
            for typ in types.split(',') {
                let (name, platform) = match typ.split_once('[') {
                    Some((name, rest)) => {
                        let Some(p) = rest.strip_suffix(']') else {
                            return Err(invalid(
                                input,
                                format!("unterminated platform in {typ:?}"),
                            ));
                        };
                        let valid = !p.is_empty()
                            && p.chars()
                                .all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '/' | '-'));
                        if !valid {
                            return Err(invalid(input, format!("invalid platform {p:?}")));
                        }
                        (name, Some(p.to_string()))
                    }
                    None => (typ, None),
                };
                let target = AnnotationTarget::parse(name).ok_or_else(|| {
                    invalid(
                        input,
                        format!(
                            "unknown annotation type {name:?} (expected manifest, \
                             manifest-descriptor, index or index-descriptor)"
                        ),
                    )
                })?;
                list.push(Annotation {
                    target,
                    platform,
                    key: key.to_string(),
                    value: value.to_string(),
                });
            }
        }
        Ok(Annotations { list })
    }

    fn collect(
        &self,
        target: AnnotationTarget,
        platform: Option<&dyn Fn(&str) -> bool>,
    ) -> BTreeMap<String, String> {
        self.list
            .iter()
            .filter(|a| a.target == target)
            .filter(|a| match (&a.platform, platform) {
                (None, _) => true,
                (Some(p), Some(matches)) => matches(p),
                (Some(_), None) => false,
            })
            .map(|a| (a.key.clone(), a.value.clone()))
            .collect()
    }

    /// `manifest:` annotations for the image whose platform `matches`
    /// (unqualified ones apply to every platform).
    pub fn manifest(&self, matches: &dyn Fn(&str) -> bool) -> BTreeMap<String, String> {
        self.collect(AnnotationTarget::Manifest, Some(matches))
    }

    /// `manifest-descriptor:` annotations for the image whose platform `matches`.
    pub fn manifest_descriptor(&self, matches: &dyn Fn(&str) -> bool) -> BTreeMap<String, String> {
        self.collect(AnnotationTarget::ManifestDescriptor, Some(matches))
    }

    /// `index:` annotations.
    pub fn index(&self) -> BTreeMap<String, String> {
        self.collect(AnnotationTarget::Index, None)
    }

    /// `index-descriptor:` annotations.
    pub fn index_descriptor(&self) -> BTreeMap<String, String> {
        self.collect(AnnotationTarget::IndexDescriptor, None)
    }

    /// Whether any annotation needs an image index (BuildKit refuses index
    /// annotations on a single-platform export without one).
    pub fn need_index(&self) -> bool {
        self.list.iter().any(|a| {
            matches!(
                a.target,
                AnnotationTarget::Index | AnnotationTarget::IndexDescriptor
            )
        })
    }

    /// Platforms named in brackets, to check against the build's platforms.
    pub fn platforms(&self) -> impl Iterator<Item = &str> {
        self.list.iter().filter_map(|a| a.platform.as_deref())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn reason(input: &str) -> String {
        match Annotations::parse(&[input]) {
            Err(ImageError::Invalid { reason, .. }) => reason,
            other => panic!("{input}: {other:?}"),
        }
    }

    #[test]
    fn the_buildx_forms_parse() {
        let a = Annotations::parse(&[
            "org.opencontainers.image.title=app",
            "index:org.example.idx=1",
            "manifest,manifest-descriptor:both=yes",
            "manifest[linux/arm64]:arm=only",
            "index-descriptor:desc=d",
            "with.equals=a=b",
            "",
        ])
        .unwrap();
        let amd64 = |p: &str| p == "linux/amd64";
        let arm64 = |p: &str| p == "linux/arm64";
        let m = a.manifest(&amd64);
        assert_eq!(m.get("org.opencontainers.image.title").unwrap(), "app");
        assert_eq!(m.get("both").unwrap(), "yes");
        assert_eq!(m.get("with.equals").unwrap(), "a=b");
        assert!(!m.contains_key("arm"));
        assert_eq!(a.manifest(&arm64).get("arm").unwrap(), "only");
        assert_eq!(
            a.manifest_descriptor(&amd64),
            BTreeMap::from([("both".to_string(), "yes".to_string())])
        );
        assert_eq!(a.index().get("org.example.idx").unwrap(), "1");
        assert_eq!(a.index_descriptor().get("desc").unwrap(), "d");
        assert!(a.need_index());
        assert_eq!(a.platforms().collect::<Vec<_>>(), vec!["linux/arm64"]);
        assert!(!Annotations::parse(&["k=v"]).unwrap().need_index());
    }

    #[test]
    fn mistakes_get_reasons() {
        assert!(reason("novalue").contains("KEY=VALUE"));
        assert!(reason("layer:k=v").contains("unknown annotation type \"layer\""));
        assert!(reason("manifest[linux/amd64:k=v").contains("unterminated"));
        assert!(reason("manifest[lin ux]:k=v").contains("invalid platform"));
        assert!(reason("manifest:=v").contains("key is empty"));
    }
}
