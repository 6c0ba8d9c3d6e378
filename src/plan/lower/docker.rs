//! Docker's formats that history texts and config values must match: Go's
//! `%q`/`%v` of string slices and `time.Duration`, port specs, signal names,
//! BuildKit's RUN history text and its heredoc detection.

use crate::dockerfile::go_quote;
use crate::plan::lower::Scope;

/// Go's `%q` of a `[]string`: `["a" "b"]`.
pub(super) fn go_q_list(items: &[String]) -> String {
    let quoted: Vec<String> = items.iter().map(|s| go_quote(s)).collect();
    format!("[{}]", quoted.join(" "))
}

/// Go's `%v` of a `[]string`: `[a b]`.
pub(super) fn go_v_list(items: &[String]) -> String {
    format!("[{}]", items.join(" "))
}

/// Go's `time.Duration.String()`.
pub(super) fn go_duration(nanos: i64) -> String {
    if nanos == 0 {
        return "0s".to_string();
    }
    let neg = nanos < 0;
    let n = nanos.unsigned_abs();
    let frac = |value: u64, unit: u64| -> String {
        let whole = value / unit;
        let rest = value % unit;
        if rest == 0 {
            return whole.to_string();
        }
        let width = unit.to_string().len() - 1;
        let digits = format!("{rest:0width$}");
        format!("{whole}.{}", digits.trim_end_matches('0'))
    };
    let body = if n < 1_000 {
        format!("{n}ns")
    } else if n < 1_000_000 {
        format!("{}µs", frac(n, 1_000))
    } else if n < 1_000_000_000 {
        format!("{}ms", frac(n, 1_000_000))
    } else {
        let secs_total = n / 1_000_000_000;
        let sub = n % 1_000_000_000;
        let h = secs_total / 3600;
        let m = (secs_total % 3600) / 60;
        let s = frac((secs_total % 60) * 1_000_000_000 + sub, 1_000_000_000);
        if h > 0 {
            format!("{h}h{m}m{s}s")
        } else if m > 0 {
            format!("{m}m{s}s")
        } else {
            format!("{s}s")
        }
    };
    if neg {
        format!("-{body}")
    } else {
        body
    }
}

/// Signal names Docker accepts for STOPSIGNAL (without `SIG`).
const SIGNALS: [&str; 33] = [
    "ABRT", "ALRM", "BUS", "CHLD", "CLD", "CONT", "FPE", "HUP", "ILL", "INT", "IO", "IOT", "KILL",
    "PIPE", "POLL", "PROF", "PWR", "QUIT", "SEGV", "STKFLT", "STOP", "SYS", "TERM", "TRAP", "TSTP",
    "TTIN", "TTOU", "URG", "USR1", "USR2", "VTALRM", "WINCH", "XCPU",
];

pub(super) fn valid_signal(sig: &str) -> bool {
    if let Ok(n) = sig.parse::<u32>() {
        return n > 0;
    }
    let upper = sig.to_ascii_uppercase();
    let name = upper.strip_prefix("SIG").unwrap_or(&upper);
    SIGNALS.contains(&name)
        || name == "XFSZ"
        || name.starts_with("RTMIN")
        || name.starts_with("RTMAX")
}

/// Docker's port specs (`80`, `8000-8002/udp`, `127.0.0.1:80:80`) to
/// `port/proto` entries.
pub(super) fn port_specs(raw: &str) -> Result<Vec<String>, String> {
    let container = raw.rsplit(':').next().unwrap_or(raw);
    let (port, proto) = container.split_once('/').unwrap_or((container, ""));
    if port.is_empty() {
        return Err(format!("no port specified: {raw}<empty>"));
    }
    let proto = match proto.to_ascii_lowercase().as_str() {
        "" => "tcp".to_string(),
        p @ ("tcp" | "udp" | "sctp") => p.to_string(),
        other => return Err(format!("invalid proto: {other}")),
    };
    let bad = || format!("invalid containerPort: {port}");
    let (start, end) = match port.split_once('-') {
        None => {
            let p: u16 = port.parse().map_err(|_| bad())?;
            (p, p)
        }
        Some((a, b)) => {
            let a: u16 = a.parse().map_err(|_| bad())?;
            let b: u16 = b.parse().map_err(|_| bad())?;
            if b < a {
                return Err(format!("invalid range specified for port: {port}"));
            }
            (a, b)
        }
    };
    Ok((start..=end).map(|p| format!("{p}/{proto}")).collect())
}

/// BuildKit's runCommandString: `|N K=V ... argv...` for the ARGs in scope.
pub(super) fn run_history(argv: &[String], scope: &Scope<'_>) -> String {
    let mut pairs: Vec<(String, String)> = Vec::new();
    for (k, v) in &scope.declared {
        let value = scope
            .vars
            .get(k)
            .unwrap_or_else(|| v.clone().unwrap_or_default());
        match pairs.iter_mut().find(|(pk, _)| pk == k) {
            Some(p) => p.1 = value,
            None => pairs.push((k.clone(), value)),
        }
    }
    let mut words: Vec<String> = Vec::new();
    if !pairs.is_empty() {
        words.push(format!("|{}", pairs.len()));
        words.extend(pairs.iter().map(|(k, v)| format!("{k}={v}")));
    }
    words.extend(argv.iter().cloned());
    words.join(" ")
}

/// Whether a shell-form RUN line is exactly one heredoc introducer
/// (BuildKit's MustParseHeredoc on the whole command).
pub(super) fn is_single_heredoc(cmd: &str) -> bool {
    let t = cmd.trim();
    let rest = t.trim_start_matches(|c: char| c.is_ascii_digit());
    match rest.strip_prefix("<<") {
        Some(r) => {
            let r = r.strip_prefix('-').unwrap_or(r);
            !r.is_empty() && !r.contains('<') && !r.contains(char::is_whitespace)
        }
        None => false,
    }
}

#[cfg(test)]
mod tests {
    use super::{go_duration, port_specs};

    #[test]
    fn durations_print_like_go() {
        assert_eq!(go_duration(0), "0s");
        assert_eq!(go_duration(30_000_000_000), "30s");
        assert_eq!(go_duration(90_000_000_000), "1m30s");
        assert_eq!(go_duration(3_600_000_000_000), "1h0m0s");
        assert_eq!(go_duration(1_500_000_000), "1.5s");
        assert_eq!(go_duration(500_000_000), "500ms");
    }

    #[test]
    fn ports_are_normalised() {
        assert_eq!(port_specs("80").expect("ok"), vec!["80/tcp"]);
        assert_eq!(
            port_specs("8000-8001/UDP").expect("ok"),
            vec!["8000/udp", "8001/udp"]
        );
        assert!(port_specs("80/xyz").is_err());
        assert!(port_specs("abc").is_err());
    }
}
