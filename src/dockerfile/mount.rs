//! `RUN --mount=...`: the typed [`Mount`] with every BuildKit mount option,
//! and its parser (`type=cache,target=/root/.cache,sharing=locked`).

use serde::Serialize;

/// `type=` of a RUN mount.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum MountType {
    Bind,
    Cache,
    Tmpfs,
    Secret,
    Ssh,
}

/// `sharing=` of a cache mount.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Sharing {
    Shared,
    Private,
    Locked,
}

/// One `--mount` of a RUN instruction.
///
/// Docker expands `$VAR` in mount options. In the parsed form the string
/// fields are raw and the numeric fields are set only when written
/// literally; [`crate::dockerfile::Instruction::expand`] re-parses the
/// expanded text (kept in `raw`) into final values.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Mount {
    /// The option text as written after `--mount=`.
    pub raw: String,
    pub kind: MountType,
    /// Where the mount appears in the container (`target`, `dst`,
    /// `destination`). Secret mounts default to `/run/secrets/<id>`.
    pub target: Option<String>,
    /// Path in `from` (or the context) to mount (`source`, `src`).
    pub source: Option<String>,
    /// A stage name or image to take the source from.
    pub from: Option<String>,
    /// `readonly`/`ro` or `rw`/`readwrite`; bind mounts default to
    /// read-only, the others to read-write.
    pub readonly: bool,
    /// Cache, secret or ssh id.
    pub id: Option<String>,
    pub sharing: Sharing,
    /// File mode (octal) for cache, secret and ssh mounts.
    pub mode: Option<u32>,
    pub uid: Option<u32>,
    pub gid: Option<u32>,
    /// Secret/ssh: fail when the secret is not provided.
    pub required: bool,
    /// Tmpfs size in bytes.
    pub size: Option<u64>,
    /// Secret: expose it as this environment variable.
    pub env: Option<String>,
}

/// The hint shown with mount errors.
pub(crate) const HINT: &str =
    "write --mount=type=bind|cache|tmpfs|secret|ssh,target=PATH[,option=value...]";

/// Expands one option value (`$VAR` in mount options); `None` at parse
/// time, when values are kept raw.
pub(crate) type Expander<'a> = Option<&'a dyn Fn(&str) -> Result<String, String>>;

/// Splits a CSV record (Go's `encoding/csv`, as BuildKit reads mounts):
/// fields separated by `,`, a field in double quotes may contain `,` and
/// `""` for a quote.
fn csv_fields(text: &str) -> Vec<String> {
    let mut fields = Vec::new();
    let mut field = String::new();
    let mut chars = text.chars().peekable();
    let mut at_start = true;
    let mut quoted = false;
    while let Some(c) = chars.next() {
        if quoted {
            if c == '"' {
                if chars.peek() == Some(&'"') {
                    chars.next();
                    field.push('"');
                } else {
                    quoted = false;
                }
            } else {
                field.push(c);
            }
            continue;
        }
        match c {
            '"' if at_start => {
                quoted = true;
                at_start = false;
            }
            ',' => {
                fields.push(std::mem::take(&mut field));
                at_start = true;
            }
            _ => {
                field.push(c);
                at_start = false;
            }
        }
    }
    fields.push(field);
    fields
}

fn parse_bool(key: &str, value: &str) -> Result<bool, String> {
    match value.to_ascii_lowercase().as_str() {
        "1" | "t" | "true" => Ok(true),
        "0" | "f" | "false" => Ok(false),
        _ => Err(format!(
            "invalid value for {key}: {value:?} (expected true or false)"
        )),
    }
}

/// Parses a size as Docker's `RAMInBytes` does: `1024`, `64m`, `1.5g`,
/// `512KiB` (binary multiples).
fn parse_size(value: &str) -> Option<u64> {
    let lower = value.trim().to_ascii_lowercase();
    let num_len = lower
        .find(|c: char| !(c.is_ascii_digit() || c == '.'))
        .unwrap_or(lower.len());
    let (num, unit) = lower.split_at(num_len);
    let n: f64 = num.parse().ok()?;
    let unit = unit.trim();
    let unit = unit
        .strip_suffix("ib")
        .or_else(|| unit.strip_suffix('b'))
        .unwrap_or(unit);
    let scale: f64 = match unit {
        "" => 1.0,
        "k" => 1024.0,
        "m" => 1024.0 * 1024.0,
        "g" => 1024.0 * 1024.0 * 1024.0,
        "t" => 1024.0_f64.powi(4),
        "p" => 1024.0_f64.powi(5),
        _ => return None,
    };
    let bytes = n * scale;
    (bytes.is_finite() && bytes < 1.8e19).then_some(bytes as u64)
}

/// Parses `--mount` option text. With `expand`, values are expanded first
/// and every field is typed; without it, values holding `$` stay raw and
/// their numeric fields are left unset until expansion.
///
/// Errors are `(option, reason)`.
pub(crate) fn parse(raw: &str, expand: Expander<'_>) -> Result<Mount, (String, String)> {
    let mut m = Mount {
        raw: raw.to_string(),
        kind: MountType::Bind,
        target: None,
        source: None,
        from: None,
        readonly: false,
        id: None,
        sharing: Sharing::Shared,
        mode: None,
        uid: None,
        gid: None,
        required: false,
        size: None,
        env: None,
    };
    let mut readonly: Option<bool> = None;
    let mut sharing_set = false;
    for field in csv_fields(raw) {
        let field_err = |reason: String| (field.clone(), reason);
        let Some((key, value)) = field.split_once('=') else {
            match field.to_ascii_lowercase().as_str() {
                "readonly" | "ro" => readonly = Some(true),
                "readwrite" | "rw" => readonly = Some(false),
                "required" => m.required = true,
                "" => {}
                _ => {
                    return Err(field_err(
                        "must be a key=value pair (or readonly, rw, required)".to_string(),
                    ))
                }
            }
            continue;
        };
        let key = key.trim().to_ascii_lowercase();
        let value = if key == "type" {
            value.to_string()
        } else {
            match expand {
                Some(f) => f(value).map_err(field_err)?,
                None => value.to_string(),
            }
        };
        // Before expansion, values that reference variables cannot be
        // checked or typed yet.
        let deferred = expand.is_none() && value.contains('$');
        match key.as_str() {
            "type" => {
                m.kind = match value.to_ascii_lowercase().as_str() {
                    "bind" => MountType::Bind,
                    "cache" => MountType::Cache,
                    "tmpfs" => MountType::Tmpfs,
                    "secret" => MountType::Secret,
                    "ssh" => MountType::Ssh,
                    _ => return Err(field_err(format!("unsupported mount type {value:?}"))),
                }
            }
            "target" | "dst" | "destination" => m.target = Some(value),
            "source" | "src" => m.source = Some(value),
            "from" => m.from = Some(value),
            "id" => m.id = Some(value),
            "env" => m.env = Some(value),
            "readonly" | "ro" if !deferred => {
                readonly = Some(parse_bool(&key, &value).map_err(field_err)?)
            }
            "readwrite" | "rw" if !deferred => {
                readonly = Some(!parse_bool(&key, &value).map_err(field_err)?)
            }
            "required" if !deferred => m.required = parse_bool(&key, &value).map_err(field_err)?,
            "sharing" if !deferred => {
                sharing_set = true;
                m.sharing = match value.to_ascii_lowercase().as_str() {
                    "shared" => Sharing::Shared,
                    "private" => Sharing::Private,
                    "locked" => Sharing::Locked,
                    _ => {
                        return Err(field_err(format!(
                            "unsupported sharing value {value:?} (shared, private or locked)"
                        )))
                    }
                };
            }
            "mode" if !deferred => {
                m.mode = Some(
                    u32::from_str_radix(&value, 8)
                        .map_err(|_| field_err(format!("invalid octal mode {value:?}")))?,
                )
            }
            "uid" | "gid" if !deferred => {
                let n = value
                    .parse::<u32>()
                    .map_err(|_| field_err(format!("invalid {key} {value:?}")))?;
                if key == "uid" {
                    m.uid = Some(n);
                } else {
                    m.gid = Some(n);
                }
            }
            "size" if !deferred => {
                m.size = Some(
                    parse_size(&value)
                        .ok_or_else(|| field_err(format!("invalid size {value:?}")))?,
                )
            }
            "readonly" | "ro" | "readwrite" | "rw" | "required" | "sharing" | "mode" | "uid"
            | "gid" | "size" => {}
            _ => return Err(field_err(format!("unexpected key {key:?}"))),
        }
    }
    m.readonly = readonly.unwrap_or(m.kind == MountType::Bind);
    let err = |reason: &str| Err((raw.to_string(), reason.to_string()));
    match m.kind {
        MountType::Bind | MountType::Cache | MountType::Tmpfs if m.target.is_none() => {
            return err("this mount type requires a target (target=PATH)")
        }
        MountType::Secret if m.target.is_none() && m.id.is_none() && m.env.is_none() => {
            return err("a secret mount needs an id, a target or an env")
        }
        _ => {}
    }
    if sharing_set && m.kind != MountType::Cache {
        return err("sharing is only valid for cache mounts");
    }
    if m.size.is_some() && m.kind != MountType::Tmpfs {
        return err("size is only valid for tmpfs mounts");
    }
    if m.env.is_some() && m.kind != MountType::Secret {
        return err("env is only valid for secret mounts");
    }
    if m.from.is_some()
        && matches!(
            m.kind,
            MountType::Tmpfs | MountType::Secret | MountType::Ssh
        )
    {
        return err("from is only valid for bind and cache mounts");
    }
    if m.target.as_deref() == Some("") {
        return err("the target can not be empty");
    }
    if m.kind == MountType::Secret && m.target.is_none() && m.env.is_none() {
        m.target = m.id.as_ref().map(|id| format!("/run/secrets/{id}"));
    }
    Ok(m)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cache_mount() {
        let m = parse(
            "type=cache,target=/root/.cache,sharing=locked,mode=0755,uid=1000",
            None,
        )
        .expect("parses");
        assert_eq!(m.kind, MountType::Cache);
        assert_eq!(m.target.as_deref(), Some("/root/.cache"));
        assert_eq!(m.sharing, Sharing::Locked);
        assert_eq!(m.mode, Some(0o755));
        assert_eq!(m.uid, Some(1000));
        assert!(!m.readonly);
    }

    #[test]
    fn bind_defaults_to_readonly_and_quoted_csv() {
        let m = parse(r#"type=bind,"source=a,b",target=/x"#, None).expect("parses");
        assert!(m.readonly);
        assert_eq!(m.source.as_deref(), Some("a,b"));
        let rw = parse("target=/x,rw", None).expect("parses");
        assert!(!rw.readonly);
    }

    #[test]
    fn secret_target_defaults_from_id() {
        let m = parse("type=secret,id=npmrc,required", None).expect("parses");
        assert_eq!(m.target.as_deref(), Some("/run/secrets/npmrc"));
        assert!(m.required);
    }

    #[test]
    fn errors() {
        assert!(parse("type=nfs,target=/x", None).is_err());
        assert!(parse("type=cache", None).is_err());
        assert!(parse("type=cache,target=/x,mode=9z", None).is_err());
        assert!(parse("type=bind,target=/x,sharing=locked", None).is_err());
        assert!(parse("type=cache,target=/x,bogus=1", None).is_err());
        assert_eq!(parse_size("64m"), Some(64 << 20));
    }

    #[test]
    fn deferred_until_expanded() {
        let m = parse("type=cache,target=/x,uid=$UID", None).expect("parses");
        assert_eq!(m.uid, None);
        let exp = |v: &str| Ok(v.replace("$UID", "1000"));
        let m = parse(&m.raw, Some(&exp)).expect("parses");
        assert_eq!(m.uid, Some(1000));
    }
}
