//! Instruction flags (`--from=build`, `--link`, `--mount=...`): which flags
//! each instruction takes, and their validation (BuildKit's `BFlags`).

use crate::dockerfile::error::{ParseError, ParseErrorKind};
use crate::dockerfile::instruction::Keyword;
use crate::dockerfile::suggest::suggest;

/// How a flag takes its value.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum FlagKind {
    /// `--link` or `--link=true|false`.
    Bool,
    /// `--from=x`, once.
    String,
    /// `--mount=...`, repeatable.
    Strings,
}

/// The flags an instruction accepts.
pub(crate) fn accepted(keyword: Keyword) -> &'static [(&'static str, FlagKind)] {
    use FlagKind::*;
    match keyword {
        Keyword::From => &[("platform", String)],
        Keyword::Run => &[
            ("mount", Strings),
            ("network", String),
            ("security", String),
        ],
        Keyword::Copy => &[
            ("from", String),
            ("chown", String),
            ("chmod", String),
            ("link", Bool),
            ("parents", Bool),
            ("exclude", Strings),
        ],
        Keyword::Add => &[
            ("chown", String),
            ("chmod", String),
            ("link", Bool),
            ("exclude", Strings),
            ("checksum", String),
            ("keep-git-dir", Bool),
            ("unpack", Bool),
        ],
        Keyword::Healthcheck => &[
            ("interval", String),
            ("timeout", String),
            ("start-period", String),
            ("start-interval", String),
            ("retries", String),
        ],
        _ => &[],
    }
}

/// Flag values after validation.
#[derive(Debug, Default)]
pub(crate) struct Flags {
    values: Vec<(&'static str, String)>,
}

impl Flags {
    /// The value of a single-valued flag.
    pub(crate) fn string(&self, name: &str) -> Option<String> {
        self.values
            .iter()
            .find(|(n, _)| *n == name)
            .map(|(_, v)| v.clone())
    }

    /// Every value of a repeatable flag, in order.
    pub(crate) fn strings(&self, name: &str) -> Vec<String> {
        self.values
            .iter()
            .filter(|(n, _)| *n == name)
            .map(|(_, v)| v.clone())
            .collect()
    }

    /// A boolean flag: `None` when absent.
    pub(crate) fn bool(&self, name: &str) -> Option<bool> {
        self.string(name).map(|v| v == "true")
    }
}

/// Validates the raw flags of an instruction starting on `line`.
pub(crate) fn parse(
    keyword: Keyword,
    raw: &[String],
    line: usize,
    end_line: usize,
) -> Result<Flags, ParseError> {
    let specs = accepted(keyword);
    let err = |kind| ParseError::new(line, end_line, kind);
    let mut flags = Flags::default();
    for arg in raw {
        let Some(body) = arg.strip_prefix("--") else {
            return Err(err(ParseErrorKind::BadFlag {
                flag: arg.clone(),
                reason: "a flag must start with --".to_string(),
            }));
        };
        let (name, value) = match body.split_once('=') {
            Some((n, v)) => (n, Some(v)),
            None => (body, None),
        };
        let Some(&(spec_name, kind)) = specs.iter().find(|(n, _)| *n == name) else {
            let mut e = err(ParseErrorKind::UnknownFlag {
                keyword: keyword.as_str(),
                flag: name.to_string(),
            });
            let names: Vec<&str> = specs.iter().map(|(n, _)| *n).collect();
            e.hint = Some(match suggest(name, &names) {
                Some(s) => format!("did you mean --{s}?"),
                None if names.is_empty() => format!("{} takes no flags", keyword.as_str()),
                None => format!(
                    "{} accepts: {}",
                    keyword.as_str(),
                    names
                        .iter()
                        .map(|n| format!("--{n}"))
                        .collect::<Vec<_>>()
                        .join(", ")
                ),
            });
            return Err(e);
        };
        if kind != FlagKind::Strings && flags.values.iter().any(|(n, _)| *n == spec_name) {
            return Err(err(ParseErrorKind::DuplicateFlag {
                flag: name.to_string(),
            }));
        }
        let value = match (kind, value) {
            (FlagKind::Bool, None) => "true".to_string(),
            (FlagKind::Bool, Some(v)) => match v.to_ascii_lowercase().as_str() {
                b @ ("true" | "false") => b.to_string(),
                _ => {
                    return Err(err(ParseErrorKind::BadFlag {
                        flag: name.to_string(),
                        reason: format!("expecting a boolean value (true or false), not {v:?}"),
                    }))
                }
            },
            (_, None) => {
                return Err(err(ParseErrorKind::BadFlag {
                    flag: name.to_string(),
                    reason: "missing a value".to_string(),
                })
                .with_hint(format!("write --{name}=VALUE")))
            }
            (_, Some(v)) => v.to_string(),
        };
        flags.values.push((spec_name, value));
    }
    Ok(flags)
}
