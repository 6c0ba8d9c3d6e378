//! HEALTHCHECK: `NONE` or `[flags] CMD command`, its flags, and Go-style
//! durations (`30s`, `1m30s`, `500ms`).

use std::time::Duration;

use crate::dockerfile::error::{ParseError, ParseErrorKind};
use crate::dockerfile::flags::Flags;
use crate::dockerfile::instruction::{CommandLine, HealthCheck, Healthcheck, Instruction, Source};
use crate::dockerfile::typed::At;

pub(crate) fn build_healthcheck(
    source: Source,
    flags: &Flags,
    at: At,
) -> Result<Instruction, ParseError> {
    let kw = "HEALTHCHECK";
    let Some(typ) = source.args.first() else {
        return Err(at
            .err(ParseErrorKind::MissingArguments {
                keyword: kw,
                expected: "at least one argument",
            })
            .with_hint("write HEALTHCHECK [flags] CMD command, or HEALTHCHECK NONE"));
    };
    let bad = |reason: String| {
        at.err(ParseErrorKind::BadArgument {
            keyword: kw,
            reason,
        })
    };
    match typ.to_ascii_uppercase().as_str() {
        "NONE" => {
            if source.args.len() > 1 || !source.flags.is_empty() {
                return Err(bad("HEALTHCHECK NONE takes no arguments".to_string()));
            }
            Ok(Instruction::Healthcheck(Healthcheck {
                source,
                check: HealthCheck::None,
            }))
        }
        "CMD" => {
            let rest = &source.args[1..];
            let command = if source.json {
                CommandLine::Exec(rest.to_vec())
            } else {
                match rest.first() {
                    Some(s) if !s.is_empty() => CommandLine::Shell(s.clone()),
                    _ => None.ok_or_else(|| bad("Missing command after HEALTHCHECK CMD".into()))?,
                }
            };
            if matches!(&command, CommandLine::Exec(v) if v.is_empty()) {
                return Err(bad("Missing command after HEALTHCHECK CMD".to_string()));
            }
            let duration = |name: &str| -> Result<Option<Duration>, ParseError> {
                match flags.string(name) {
                    None => Ok(None),
                    Some(v) => {
                        let d = parse_go_duration(&v).ok_or_else(|| {
                            at.err(ParseErrorKind::BadFlag {
                                flag: name.to_string(),
                                reason: format!("invalid duration {v:?}"),
                            })
                            .with_hint("durations look like 30s, 1m30s, 500ms")
                        })?;
                        // Docker's minimum; 0 means "use the default".
                        if !d.is_zero() && d < Duration::from_millis(1) {
                            return Err(at.err(ParseErrorKind::BadFlag {
                                flag: name.to_string(),
                                reason: format!("{v:?} cannot be less than 1ms"),
                            }));
                        }
                        Ok(Some(d))
                    }
                }
            };
            let retries = match flags.string("retries") {
                None => None,
                Some(v) => Some(v.parse::<u32>().map_err(|_| {
                    at.err(ParseErrorKind::BadFlag {
                        flag: "retries".to_string(),
                        reason: format!("{v:?} is not a non-negative integer"),
                    })
                })?),
            };
            let check = HealthCheck::Cmd {
                command,
                interval: duration("interval")?,
                timeout: duration("timeout")?,
                start_period: duration("start-period")?,
                start_interval: duration("start-interval")?,
                retries,
            };
            Ok(Instruction::Healthcheck(Healthcheck { source, check }))
        }
        other => Err(
            bad(format!("Unknown type {other:?} in HEALTHCHECK (try CMD)"))
                .with_hint("write HEALTHCHECK [flags] CMD command, or HEALTHCHECK NONE"),
        ),
    }
}

/// Go's `time.ParseDuration` for non-negative values: `1h2m3.5s`, `300ms`,
/// `0`. Units: ns, us, µs, ms, s, m, h.
pub(crate) fn parse_go_duration(s: &str) -> Option<Duration> {
    let s = s.strip_prefix('+').unwrap_or(s);
    if s == "0" {
        return Some(Duration::ZERO);
    }
    if s.is_empty() {
        return None;
    }
    let mut total: f64 = 0.0;
    let mut rest = s;
    while !rest.is_empty() {
        let num_len = rest
            .find(|c: char| !(c.is_ascii_digit() || c == '.'))
            .unwrap_or(rest.len());
        let (num, after) = rest.split_at(num_len);
        if num.is_empty() || num == "." {
            return None;
        }
        let value: f64 = num.parse().ok()?;
        let unit_len = after
            .find(|c: char| c.is_ascii_digit() || c == '.')
            .unwrap_or(after.len());
        let (unit, next) = after.split_at(unit_len);
        let scale = match unit {
            "ns" => 1e-9,
            "us" | "µs" | "μs" => 1e-6,
            "ms" => 1e-3,
            "s" => 1.0,
            "m" => 60.0,
            "h" => 3600.0,
            _ => return None,
        };
        total += value * scale;
        rest = next;
    }
    if !total.is_finite() || total > 1e12 {
        return None;
    }
    Some(Duration::from_secs_f64(total))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn go_durations() {
        assert_eq!(parse_go_duration("30s"), Some(Duration::from_secs(30)));
        assert_eq!(parse_go_duration("1m30s"), Some(Duration::from_secs(90)));
        assert_eq!(parse_go_duration("500ms"), Some(Duration::from_millis(500)));
        assert_eq!(parse_go_duration("0"), Some(Duration::ZERO));
        assert_eq!(parse_go_duration("5"), None);
        assert_eq!(parse_go_duration("-1s"), None);
        assert_eq!(parse_go_duration("1x"), None);
    }
}
