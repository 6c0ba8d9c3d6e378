//! [`ExportTarget`] and the parser for `--output` specs, following buildx:
//! `type=oci,dest=FILE.tar`, `type=oci,dest=DIR,tar=false`,
//! `type=docker,dest=FILE.tar`, `type=registry` (and `type=image,push=true`),
//! with `name=` for the image names. Values may be double-quoted (buildx
//! parses the spec as one CSV record), so `name="a:1,b:2"` gives two names.
//!
//! buildx's shorthands `-o DIR` (= `type=local,dest=DIR`) and `-o -`
//! (= `type=tar,dest=-`) export the final stage's *files*, not an image;
//! imgb has no filesystem exporter yet, so they are refused with a hint
//! rather than silently reinterpreted as an image export.

use std::path::PathBuf;

use super::ExportError;

/// Where a built image goes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ExportTarget {
    /// An OCI image layout in a tar file (`type=oci,dest=FILE`).
    OciArchive { dest: PathBuf, names: Vec<String> },
    /// An OCI image layout directory (`type=oci,dest=DIR,tar=false`); other
    /// builds may add their tags to the same layout.
    OciLayout { dest: PathBuf, names: Vec<String> },
    /// A `docker load` archive (`type=docker,dest=FILE`).
    DockerArchive { dest: PathBuf, names: Vec<String> },
    /// Pushed to a registry (`type=registry`): not written here but
    /// delegated to the registry push.
    Registry { names: Vec<String> },
}

impl ExportTarget {
    /// Names given with `name=` (empty: use the build's `-t` tags).
    pub fn names(&self) -> &[String] {
        match self {
            ExportTarget::OciArchive { names, .. }
            | ExportTarget::OciLayout { names, .. }
            | ExportTarget::DockerArchive { names, .. }
            | ExportTarget::Registry { names } => names,
        }
    }

    /// Parses one `--output` value.
    pub fn parse(spec: &str) -> Result<ExportTarget, ExportError> {
        let err = |reason: String| ExportError::Spec {
            spec: spec.to_string(),
            reason,
        };
        let fields = split_csv(spec).map_err(err)?;
        if fields.len() == 1 && !fields[0].contains('=') {
            // buildx shorthand.
            let what = if fields[0] == "-" {
                "`-o -` is buildx's shorthand for type=tar (the final stage's files)"
            } else {
                "`-o PATH` is buildx's shorthand for type=local (the final stage's files)"
            };
            return Err(err(format!(
                "{what}, which imgb does not support yet\n\
                 hint: for an image use type=oci,dest=PATH,tar=false or type=oci,dest=FILE.tar"
            )));
        }
        let mut kind = None;
        let mut dest = None;
        let mut tar = None;
        let mut push = None;
        let mut names = Vec::new();
        for field in &fields {
            let Some((key, value)) = field.split_once('=') else {
                return Err(err(format!("{field:?} is not KEY=VALUE")));
            };
            match key.trim() {
                "type" => kind = Some(value.to_string()),
                "dest" => dest = Some(PathBuf::from(value)),
                "tar" => tar = Some(parse_bool(key, value).map_err(err)?),
                "push" => push = Some(parse_bool(key, value).map_err(err)?),
                "name" => names.extend(
                    value
                        .split(',')
                        .map(str::trim)
                        .filter(|n| !n.is_empty())
                        .map(str::to_string),
                ),
                other => {
                    return Err(err(format!(
                        "unknown key {other:?} (imgb understands type, dest, tar, name, push)"
                    )))
                }
            }
        }
        let Some(kind) = kind else {
            return Err(err("missing type= (oci, docker or registry)".into()));
        };
        let need_dest = |dest: Option<PathBuf>| {
            dest.filter(|d| !d.as_os_str().is_empty())
                .ok_or_else(|| err(format!("type={kind} needs dest=PATH")))
        };
        let only_oci_tar = |tar: Option<bool>| match tar {
            Some(_) => Err(err(format!(
                "tar= applies to type=oci only, not type={kind}"
            ))),
            None => Ok(()),
        };
        match kind.as_str() {
            "oci" => {
                let dest = need_dest(dest)?;
                if tar.unwrap_or(true) {
                    Ok(ExportTarget::OciArchive { dest, names })
                } else {
                    Ok(ExportTarget::OciLayout { dest, names })
                }
            }
            "docker" => {
                only_oci_tar(tar)?;
                let dest = dest.filter(|d| !d.as_os_str().is_empty()).ok_or_else(|| {
                    err("type=docker needs dest=FILE.tar: imgb has no daemon to load the image into\n\
                         hint: then run `docker load -i FILE.tar`"
                        .into())
                })?;
                Ok(ExportTarget::DockerArchive { dest, names })
            }
            "registry" => {
                only_oci_tar(tar)?;
                Ok(ExportTarget::Registry { names })
            }
            "image" if push == Some(true) => {
                only_oci_tar(tar)?;
                Ok(ExportTarget::Registry { names })
            }
            "image" => Err(err(
                "type=image without push=true would only keep the image in a daemon's store\n\
                 hint: built images are always kept in imgb's store; use type=registry to push"
                    .into(),
            )),
            "local" | "tar" => Err(err(format!(
                "type={kind} (the final stage's files) is not supported yet\n\
                 hint: for an image use type=oci or type=docker"
            ))),
            other => Err(err(format!(
                "unknown type {other:?} (expected oci, docker or registry)"
            ))),
        }
    }
}

fn parse_bool(key: &str, value: &str) -> Result<bool, String> {
    match value {
        "true" | "1" => Ok(true),
        "false" | "0" => Ok(false),
        other => Err(format!("{key}= wants true or false, not {other:?}")),
    }
}

/// Splits one CSV record: fields separated by `,`, a field may be wrapped
/// in double quotes (with `""` for a quote) to contain commas. Like Go's
/// encoding/csv, quotes only open at the start of a field or after `key=`.
fn split_csv(spec: &str) -> Result<Vec<String>, String> {
    let mut fields = Vec::new();
    let mut cur = String::new();
    let mut chars = spec.chars().peekable();
    let mut in_quotes = false;
    while let Some(c) = chars.next() {
        match c {
            '"' if in_quotes => {
                if chars.peek() == Some(&'"') {
                    chars.next();
                    cur.push('"');
                } else {
                    in_quotes = false;
                }
            }
            '"' if cur.is_empty() || cur.ends_with('=') => in_quotes = true,
            ',' if !in_quotes => fields.push(std::mem::take(&mut cur)),
            c => cur.push(c),
        }
    }
    if in_quotes {
        return Err("unterminated double quote".into());
    }
    fields.push(cur);
    let fields: Vec<String> = fields.into_iter().filter(|f| !f.is_empty()).collect();
    if fields.is_empty() {
        return Err("empty output spec".into());
    }
    Ok(fields)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ok(spec: &str) -> ExportTarget {
        ExportTarget::parse(spec).unwrap()
    }

    fn reason(spec: &str) -> String {
        match ExportTarget::parse(spec) {
            Err(ExportError::Spec { reason, .. }) => reason,
            other => panic!("{spec}: unexpected {other:?}"),
        }
    }

    #[test]
    fn the_buildx_forms_parse() {
        assert_eq!(
            ok("type=oci,dest=out.tar"),
            ExportTarget::OciArchive {
                dest: "out.tar".into(),
                names: vec![]
            }
        );
        assert_eq!(
            ok("type=oci,dest=layout,tar=false,name=app:1"),
            ExportTarget::OciLayout {
                dest: "layout".into(),
                names: vec!["app:1".into()]
            }
        );
        assert_eq!(
            ok("type=docker,dest=img.tar,\"name=a:1,b:2\""),
            ExportTarget::DockerArchive {
                dest: "img.tar".into(),
                names: vec!["a:1".into(), "b:2".into()]
            }
        );
        assert_eq!(
            ok("type=docker,dest=img.tar,name=\"a:1,b:2\"").names(),
            ["a:1".to_string(), "b:2".to_string()]
        );
        assert_eq!(
            ok("type=registry,name=r.example/app:1"),
            ExportTarget::Registry {
                names: vec!["r.example/app:1".into()]
            }
        );
        assert_eq!(
            ok("type=image,push=true"),
            ExportTarget::Registry { names: vec![] }
        );
    }

    #[test]
    fn mistakes_get_reasons() {
        assert!(reason("./out").contains("type=local"));
        assert!(reason("-").contains("type=tar"));
        assert!(reason("type=oci").contains("needs dest"));
        assert!(reason("type=docker").contains("no daemon"));
        assert!(reason("type=oci,dest=x,bogus=1").contains("unknown key \"bogus\""));
        assert!(reason("type=zip,dest=x").contains("unknown type"));
        assert!(reason("type=oci,dest=x,tar=maybe").contains("true or false"));
        assert!(reason("type=docker,dest=x,tar=false").contains("type=oci only"));
        assert!(reason("type=local,dest=x").contains("not supported"));
        assert!(reason("dest=x").contains("missing type"));
        assert!(reason("type=oci,dest=\"x").contains("quote"));
        assert!(reason("").contains("empty"));
    }
}
