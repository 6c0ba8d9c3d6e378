//! ARG scoping: the global scope (ARGs before the first FROM, the predefined
//! platform ARGs, `--build-arg` overrides), the proxy ARGs, and an ordered
//! variable list used for `$VAR` expansion.

use crate::dockerfile::{Dockerfile, Lexer};
use crate::plan::{PlanError, PlanOptions};

/// ARGs Docker lets RUN see without a declaration when given with
/// `--build-arg`, and keeps out of history and cache keys.
pub(crate) const PROXY_ARGS: [&str; 10] = [
    "HTTP_PROXY",
    "http_proxy",
    "HTTPS_PROXY",
    "https_proxy",
    "FTP_PROXY",
    "ftp_proxy",
    "NO_PROXY",
    "no_proxy",
    "ALL_PROXY",
    "all_proxy",
];

/// Predefined platform ARGs: set in the global scope automatically, in a
/// stage only once declared with `ARG NAME`.
pub(crate) const PLATFORM_ARGS: [&str; 8] = [
    "TARGETPLATFORM",
    "TARGETOS",
    "TARGETARCH",
    "TARGETVARIANT",
    "BUILDPLATFORM",
    "BUILDOS",
    "BUILDARCH",
    "BUILDVARIANT",
];

pub(crate) fn is_proxy(name: &str) -> bool {
    PROXY_ARGS.contains(&name)
}

/// An ordered list of variables (insertion order kept, a set replaces in
/// place), as BuildKit's `EnvList`.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub(crate) struct Vars(pub Vec<(String, String)>);

impl Vars {
    pub fn get(&self, key: &str) -> Option<String> {
        self.0
            .iter()
            .find(|(k, _)| k == key)
            .map(|(_, v)| v.clone())
    }

    pub fn set(&mut self, key: &str, value: &str) {
        match self.0.iter_mut().find(|(k, _)| k == key) {
            Some(entry) => entry.1 = value.to_string(),
            None => self.0.push((key.to_string(), value.to_string())),
        }
    }

    /// `KEY=VALUE` strings.
    pub fn strings(&self) -> Vec<String> {
        self.0.iter().map(|(k, v)| format!("{k}={v}")).collect()
    }

    /// Parses `KEY=VALUE` strings (an image's `Env`).
    pub fn from_strings(env: &[String]) -> Vars {
        let mut vars = Vars::default();
        for e in env {
            let (k, v) = e.split_once('=').unwrap_or((e.as_str(), ""));
            vars.set(k, v);
        }
        vars
    }
}

/// The predefined platform ARGs' values.
fn platform_args(opts: &PlanOptions) -> Vars {
    let mut vars = Vars::default();
    let t = &opts.platform;
    let b = &opts.build_platform;
    vars.set("BUILDPLATFORM", &b.arg_string());
    vars.set("BUILDOS", &b.os);
    vars.set("BUILDARCH", &b.architecture);
    vars.set("BUILDVARIANT", b.arg_variant());
    vars.set("TARGETPLATFORM", &t.arg_string());
    vars.set("TARGETOS", &t.os);
    vars.set("TARGETARCH", &t.architecture);
    vars.set("TARGETVARIANT", t.arg_variant());
    vars
}

/// The global scope: platform ARGs, then the ARGs before the first FROM in
/// order, each default expanded with what precedes it and overridden by a
/// `--build-arg` of the same name.
pub(crate) fn global_args(df: &Dockerfile, opts: &PlanOptions) -> Result<Vars, PlanError> {
    let mut vars = platform_args(opts);
    let lexer = Lexer::new(df.escape());
    for arg in df.stages().global_args {
        for (name, default) in &arg.args {
            let value = match (opts.build_args.get(name), default) {
                (Some(v), _) => Some(v.clone()),
                (None, Some(d)) => {
                    let snapshot = vars.clone();
                    let lookup = move |k: &str| snapshot.get(k);
                    Some(
                        lexer
                            .expand_word(d, &lookup)
                            .map_err(|source| PlanError::Expand {
                                line: arg.source.span.start_line,
                                source,
                            })?,
                    )
                }
                (None, None) => None,
            };
            if let Some(v) = value {
                vars.set(name, &v);
            }
        }
    }
    Ok(vars)
}

/// `SOURCE_DATE_EPOCH` from the build args or a global ARG default, as
/// BuildKit reads it (an empty value means unset).
pub(crate) fn source_date_epoch(
    opts: &PlanOptions,
    global: &Vars,
) -> Result<Option<i64>, PlanError> {
    let value = opts
        .build_args
        .get("SOURCE_DATE_EPOCH")
        .cloned()
        .or_else(|| global.get("SOURCE_DATE_EPOCH"));
    match value {
        None => Ok(None),
        Some(v) if v.is_empty() => Ok(None),
        Some(v) => v
            .parse::<i64>()
            .map(Some)
            .map_err(|_| PlanError::SourceDateEpoch { value: v }),
    }
}
