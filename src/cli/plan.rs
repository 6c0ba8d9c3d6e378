//! `imgb build --dry-run`: parse the Dockerfile, plan the build without
//! pulling anything, and print the plan as text, JSON or Graphviz dot.

use std::collections::BTreeMap;
use std::io::Read;
use std::path::{Path, PathBuf};

use anyhow::{anyhow, Context as _};

use crate::cli::args::BuildArgs;
use crate::cli::Failure;
use crate::dockerfile;
use crate::plan::{self, PlanError, PlanOptions, Platform};

/// The platform imgb runs on, as an OCI platform.
pub fn host_platform() -> Platform {
    let arch = match std::env::consts::ARCH {
        "x86_64" => "amd64",
        "aarch64" => "arm64",
        "x86" => "386",
        "powerpc64" if cfg!(target_endian = "little") => "ppc64le",
        "riscv64" => "riscv64",
        "s390x" => "s390x",
        "arm" => "arm",
        other => other,
    };
    format!("linux/{arch}")
        .parse()
        .unwrap_or_else(|_| Platform::linux_amd64())
}

/// `--build-arg NAME=VALUE` or `NAME` (taken from the environment, skipped
/// when unset, as Docker does).
pub fn parse_build_args(raw: &[String]) -> Result<BTreeMap<String, String>, Failure> {
    let mut out = BTreeMap::new();
    for a in raw {
        match a.split_once('=') {
            Some(("", _)) => {
                return Err(Failure::Usage(anyhow!(
                    "invalid --build-arg {a:?}: empty name"
                )))
            }
            Some((k, v)) => {
                out.insert(k.to_string(), v.to_string());
            }
            None => {
                if let Ok(v) = std::env::var(a) {
                    out.insert(a.clone(), v);
                }
            }
        }
    }
    // buildx passes SOURCE_DATE_EPOCH from the environment as a build arg.
    if let Ok(epoch) = std::env::var("SOURCE_DATE_EPOCH") {
        if !epoch.is_empty() {
            out.entry("SOURCE_DATE_EPOCH".to_string()).or_insert(epoch);
        }
    }
    Ok(out)
}

/// `--label KEY=VALUE`s.
pub fn parse_labels(raw: &[String]) -> Result<BTreeMap<String, String>, Failure> {
    let mut out = BTreeMap::new();
    for l in raw {
        let (k, v) = l.split_once('=').unwrap_or((l.as_str(), ""));
        if k.is_empty() {
            return Err(Failure::Usage(anyhow!("invalid --label {l:?}: empty key")));
        }
        out.insert(k.to_string(), v.to_string());
    }
    Ok(out)
}

/// Plan options from the build flags.
pub fn plan_options(args: &BuildArgs) -> Result<PlanOptions, Failure> {
    let build_platform = host_platform();
    let platform = match &args.platform {
        Some(p) => p
            .parse::<Platform>()
            .map_err(|e| Failure::Usage(anyhow!("--platform: {e}")))?,
        None => build_platform.clone(),
    };
    Ok(PlanOptions {
        target: args.target.clone(),
        build_args: parse_build_args(&args.build_args)?,
        platform,
        build_platform,
        labels: parse_labels(&args.labels)?,
    })
}

/// Reads the Dockerfile named by `-f` (or CONTEXT/Dockerfile; `-` is stdin).
pub fn read_dockerfile(args: &BuildArgs) -> Result<(String, String), Failure> {
    let path: PathBuf = match &args.file {
        Some(f) if f == "-" => {
            let mut text = String::new();
            std::io::stdin()
                .read_to_string(&mut text)
                .context("reading the Dockerfile from stdin")
                .map_err(Failure::User)?;
            return Ok(("<stdin>".to_string(), text));
        }
        Some(f) => PathBuf::from(f),
        None if args.context == "-" => {
            return Err(Failure::Usage(anyhow!(
                "with a context on stdin, name the Dockerfile with -f"
            )))
        }
        None => Path::new(&args.context).join("Dockerfile"),
    };
    let text = std::fs::read_to_string(&path)
        .with_context(|| format!("cannot read the Dockerfile {}", path.display()))
        .map_err(Failure::User)?;
    Ok((path.display().to_string(), text))
}

/// A plan error with the file, line and the line's text.
pub fn plan_failure(file: &str, text: &str, err: PlanError) -> Failure {
    match err.line() {
        Some(line) => {
            let shown = text
                .lines()
                .nth(line.saturating_sub(1))
                .unwrap_or("")
                .trim_end();
            Failure::User(anyhow!("{file}: {err}\n  {line:>4} | {shown}"))
        }
        None => Failure::User(anyhow!("{file}: {err}")),
    }
}

/// `imgb build --dry-run`.
pub fn dry_run(args: &BuildArgs) -> Result<(), Failure> {
    let format = args.format.as_str();
    if !matches!(format, "text" | "json" | "dot") {
        return Err(Failure::Usage(anyhow!(
            "unknown --format {format:?}: use text, json or dot"
        )));
    }
    let opts = plan_options(args)?;
    let (file, text) = read_dockerfile(args)?;
    let df = dockerfile::parse(&text).map_err(|e| Failure::User(anyhow!("{file}: {e}")))?;
    let graph = plan::outline(&df, &opts).map_err(|e| plan_failure(&file, &text, e))?;
    // Dry run: nothing is pulled, so image bases are planned with an empty
    // config (the text output says so per stage).
    let plan = plan::lower(&df, &graph, &BTreeMap::new(), &opts)
        .map_err(|e| plan_failure(&file, &text, e))?;
    let out = match format {
        "json" => plan::render_json(&plan),
        "dot" => plan::render_dot(&plan),
        _ => plan::render_text(&plan),
    };
    if format != "text" {
        for w in &plan.warnings {
            eprintln!("warning: {w}");
        }
    }
    print!("{out}");
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn build_args_and_labels_parse() {
        let args = parse_build_args(&["A=1".into(), "B=x=y".into(), "C=".into()])
            .unwrap_or_else(|_| panic!("valid build args"));
        assert_eq!(args.get("B").map(String::as_str), Some("x=y"));
        assert_eq!(args.get("C").map(String::as_str), Some(""));
        assert!(parse_build_args(&["=1".into()]).is_err());
        let labels =
            parse_labels(&["k=v".into(), "flag".into()]).unwrap_or_else(|_| panic!("valid labels"));
        assert_eq!(labels.get("flag").map(String::as_str), Some(""));
        assert!(parse_labels(&["=v".into()]).is_err());
    }

    #[test]
    fn plan_errors_show_the_line() {
        let text = "FROM busybox AS a\nCOPY --from=9 /x /x\n";
        let df = dockerfile::parse(text).expect("parses");
        let opts = PlanOptions::new(Platform::linux_amd64());
        let err = plan::outline(&df, &opts).expect_err("bad index");
        let Failure::User(e) = plan_failure("Dockerfile", text, err) else {
            panic!("a user error")
        };
        let msg = e.to_string();
        assert!(
            msg.contains("Dockerfile: line 2: invalid stage index 9"),
            "{msg}"
        );
        assert!(msg.contains("   2 | COPY --from=9 /x /x"), "{msg}");
    }
}
