//! One instruction to one [`Step`]: expansion with the stage's variables,
//! Docker's history text, and the scope updates (ENV, ARG, WORKDIR, ...).

use crate::dockerfile::{
    CommandLine, CopySource, HealthCheck, Instruction, MountType, NetworkMode, SecurityMode, Span,
};
use crate::image::Healthcheck;
use crate::plan::args;
use crate::plan::graph::FromKind;
use crate::plan::lower::docker::{
    go_duration, go_q_list, go_v_list, is_single_heredoc, port_specs, run_history, valid_signal,
};
use crate::plan::lower::{clean_path, copy_dest, normalize_workdir, track, Scope};
use crate::plan::step::*;
use crate::plan::PlanError;

fn step(span: Span, text: &str, created_by: String, kind: StepKind) -> Step {
    Step {
        span,
        text: text.to_string(),
        created_by,
        onbuild: false,
        kind,
    }
}

/// Lowers one instruction in `scope`; `span` is where errors point (the
/// stage's FROM line for ONBUILD triggers).
pub(super) fn lower_instruction(
    scope: &mut Scope<'_>,
    inst: &Instruction,
    span: Span,
) -> Result<Step, PlanError> {
    let line = span.start_line;
    let text = inst.source().original.clone();
    let err = |source| PlanError::Expand { line, source };
    let bad = |keyword: &'static str, reason: String| PlanError::BadValue {
        line,
        keyword,
        reason,
    };
    let vars = scope.vars.clone();
    let lookup = move |k: &str| vars.get(k);
    let escape = scope.escape;
    let expanded = inst.expand(&lookup, escape).map_err(err)?;

    let config = |scope: &mut Scope<'_>, created_by: String, change: ConfigChange| {
        track(scope, &change);
        step(span, &text, created_by, StepKind::Config(change))
    };

    Ok(match (&expanded, inst) {
        (Instruction::Arg(_), Instruction::Arg(raw)) => {
            let mut shown = Vec::new();
            for (name, default) in &raw.args {
                scope.consumed.insert(name.clone());
                let value = if let Some(v) = scope.opts.build_args.get(name) {
                    Some(v.clone())
                } else if let Some(d) = default {
                    let vars = scope.vars.clone();
                    let lookup = move |k: &str| vars.get(k);
                    Some(scope.lexer().expand_word(d, &lookup).map_err(err)?)
                } else {
                    // `ARG NAME` inherits the global value (including the
                    // predefined platform ARGs).
                    scope.global.get(name)
                };
                // Docker quirk: BuildKit adds the ARG to the RUN environment
                // over an ENV of the same name set before it (not to the
                // image config); an ENV after the ARG wins in turn.
                if let Some(v) = &value {
                    scope.vars.set(name, v);
                }
                shown.push(match &value {
                    Some(v) => format!("{name}={v}"),
                    None => name.clone(),
                });
                scope.declared.push((name.clone(), value));
            }
            config(scope, format!("ARG {}", shown.join(" ")), ConfigChange::Arg)
        }
        (Instruction::Env(e), _) => {
            for (k, v) in &e.pairs {
                scope.vars.set(k, v);
            }
            let shown: Vec<String> = e.pairs.iter().map(|(k, v)| format!("{k}={v}")).collect();
            config(
                scope,
                format!("ENV {}", shown.join(" ")),
                ConfigChange::Env(e.pairs.clone()),
            )
        }
        (Instruction::Label(l), _) => {
            let shown: Vec<String> = l.pairs.iter().map(|(k, v)| format!("{k}={v}")).collect();
            config(
                scope,
                format!("LABEL {}", shown.join(" ")),
                ConfigChange::Label(l.pairs.clone()),
            )
        }
        (Instruction::Maintainer(m), _) => config(
            scope,
            format!("MAINTAINER {}", m.name),
            ConfigChange::Maintainer(m.name.clone()),
        ),
        (Instruction::User(u), _) => config(
            scope,
            format!("USER {}", u.user),
            ConfigChange::User(u.user.clone()),
        ),
        (Instruction::Workdir(w), _) => {
            let wd = normalize_workdir(&scope.workdir(), &w.path);
            config(scope, format!("WORKDIR {wd}"), ConfigChange::Workdir(wd))
        }
        (Instruction::Expose(e), _) => {
            let mut ports = Vec::new();
            for p in &e.ports {
                ports.extend(port_specs(p).map_err(|r| bad("EXPOSE", r))?);
            }
            config(
                scope,
                format!("EXPOSE {}", go_v_list(&ports)),
                ConfigChange::Expose(ports),
            )
        }
        (Instruction::Volume(v), _) => {
            if v.paths.iter().any(|p| p.is_empty()) {
                return Err(bad(
                    "VOLUME",
                    "VOLUME specified can not be an empty string".into(),
                ));
            }
            config(
                scope,
                format!("VOLUME {}", go_v_list(&v.paths)),
                ConfigChange::Volume(v.paths.clone()),
            )
        }
        (Instruction::StopSignal(s), _) => {
            if !valid_signal(&s.signal) {
                return Err(bad("STOPSIGNAL", format!("Invalid signal: {}", s.signal)));
            }
            config(
                scope,
                format!("STOPSIGNAL {}", s.signal),
                ConfigChange::StopSignal(s.signal.clone()),
            )
        }
        (Instruction::Shell(s), _) => config(
            scope,
            format!("SHELL {}", go_v_list(&s.shell)),
            ConfigChange::Shell(s.shell.clone()),
        ),
        (Instruction::Cmd(c), _) => {
            let argv = command_argv(scope, &c.command);
            scope.cmd_set = true;
            config(
                scope,
                format!("CMD {}", go_q_list(&argv)),
                ConfigChange::Cmd(argv),
            )
        }
        (Instruction::Entrypoint(e), _) => {
            let argv = command_argv(scope, &e.command);
            let reset_cmd = !scope.cmd_set;
            config(
                scope,
                format!("ENTRYPOINT {}", go_q_list(&argv)),
                ConfigChange::Entrypoint { argv, reset_cmd },
            )
        }
        (Instruction::Healthcheck(h), _) => {
            let hc = healthcheck(&h.check);
            let shown = format!(
                "HEALTHCHECK {{Test:{} Interval:{} Timeout:{} StartPeriod:{} StartInterval:{} Retries:{}}}",
                go_v_list(hc.test.as_deref().unwrap_or(&[])),
                go_duration(hc.interval.unwrap_or(0)),
                go_duration(hc.timeout.unwrap_or(0)),
                go_duration(hc.start_period.unwrap_or(0)),
                go_duration(hc.start_interval.unwrap_or(0)),
                hc.retries.unwrap_or(0)
            );
            config(scope, shown, ConfigChange::Healthcheck(hc))
        }
        (Instruction::Onbuild(o), _) => config(
            scope,
            format!("ONBUILD {}", o.raw),
            ConfigChange::Onbuild(o.raw.clone()),
        ),
        (Instruction::Copy(_) | Instruction::Add(_), _) => {
            let copy = lower_copy(scope, &expanded, inst, line)?;
            let mut shown = String::from(if copy.is_add { "ADD" } else { "COPY" });
            if copy.parents {
                shown.push_str(" --parents");
            }
            if let Some(c) = &copy.chown {
                shown.push_str(&format!(" --chown={c}"));
            }
            if let Some(c) = &copy.chmod {
                shown.push_str(&format!(" --chmod={c}"));
            }
            for s in &copy.sources {
                shown.push_str(&format!(" {s}"));
            }
            for h in &copy.heredocs {
                shown.push_str(&format!(" <<{}", h.name));
            }
            let written_dest = match &expanded {
                Instruction::Copy(c) => c.dest.clone(),
                Instruction::Add(a) => a.dest.clone(),
                _ => String::new(),
            };
            shown.push_str(&format!(" {written_dest} # buildkit"));
            step(span, &text, shown, StepKind::Copy(copy))
        }
        (Instruction::Run(r), Instruction::Run(raw)) => {
            let shell = scope.shell();
            let mut heredocs = Vec::new();
            let argv = match &r.command {
                CommandLine::Exec(argv) => argv.clone(),
                CommandLine::Shell(cmd) if r.heredocs.is_empty() => {
                    let mut a = shell.clone();
                    a.push(cmd.clone());
                    a
                }
                CommandLine::Shell(cmd) if is_single_heredoc(cmd) => {
                    // Docker quirk: a lone heredoc with `#!` becomes a script
                    // file; otherwise its body is run by the shell.
                    let h = &r.heredocs[0];
                    let mut a = shell.clone();
                    if h.content.starts_with("#!") {
                        a.push(format!("/dev/pipes/{}", h.name));
                        heredocs.push(h.clone());
                    } else {
                        a.push(h.content.clone());
                    }
                    a
                }
                CommandLine::Shell(cmd) => {
                    let mut full = cmd.clone();
                    for h in &r.heredocs {
                        full.push('\n');
                        full.push_str(&h.content);
                        full.push_str(&h.name);
                    }
                    let mut a = shell.clone();
                    a.push(full);
                    a
                }
            };
            let mut mounts = Vec::new();
            for (m, raw_m) in r.mounts.iter().zip(&raw.mounts) {
                // The expanded value when the source uses variables.
                let name = match (&raw_m.from, &m.from) {
                    (Some(r), Some(e)) if r.contains('$') => Some(e.as_str()),
                    (r, _) => r.as_deref(),
                };
                let source_from = match name {
                    _ if m.kind == MountType::Tmpfs => None,
                    Some(f) => Some(scope.from(f, line, FromKind::Mount)?),
                    None if m.kind == MountType::Bind => Some(CopyFrom::Context),
                    None => None,
                };
                let mut mount = m.clone();
                // BuildKit: a relative target is under the working directory.
                if let Some(t) = &mount.target {
                    if !t.starts_with('/') {
                        mount.target = Some(clean_path(&format!("{}/{t}", scope.workdir())));
                    }
                }
                mounts.push(RunMount { mount, source_from });
            }
            let cache_env = scope.vars.strings();
            let mut env = cache_env.clone();
            for p in args::PROXY_ARGS {
                if let Some(v) = scope.opts.build_args.get(p) {
                    if scope.vars.get(p).is_none() {
                        env.push(format!("{p}={v}"));
                    }
                }
            }
            let created_by = format!("RUN {} # buildkit", run_history(&argv, scope));
            let run = RunStep {
                argv,
                env,
                workdir: scope.workdir(),
                user: scope.user(),
                mounts,
                network: r.network.unwrap_or(NetworkMode::Default),
                security: r.security.unwrap_or(SecurityMode::Sandbox),
                heredocs,
                cache_env,
            };
            step(span, &text, created_by, StepKind::Run(run))
        }
        (Instruction::From(_), _) => {
            return Err(bad("FROM", "FROM is not allowed here".into()));
        }
        _ => return Err(bad("ARG", "internal: instruction changed kind".into())),
    })
}

/// CMD/ENTRYPOINT argv: exec form as is, shell form wrapped with SHELL.
fn command_argv(scope: &Scope<'_>, command: &CommandLine) -> Vec<String> {
    match command {
        CommandLine::Exec(argv) => argv.clone(),
        CommandLine::Shell(cmd) => {
            let mut a = scope.shell();
            a.push(cmd.clone());
            a
        }
    }
}

fn nanos(d: Option<std::time::Duration>) -> Option<i64> {
    d.map(|d| i64::try_from(d.as_nanos()).unwrap_or(i64::MAX))
        .filter(|n| *n != 0)
}

fn healthcheck(check: &HealthCheck) -> Healthcheck {
    match check {
        HealthCheck::None => Healthcheck {
            test: Some(vec!["NONE".to_string()]),
            ..Healthcheck::default()
        },
        HealthCheck::Cmd {
            command,
            interval,
            timeout,
            start_period,
            start_interval,
            retries,
        } => {
            let test = match command {
                CommandLine::Exec(argv) => {
                    let mut t = vec!["CMD".to_string()];
                    t.extend(argv.iter().cloned());
                    t
                }
                CommandLine::Shell(cmd) => vec!["CMD-SHELL".to_string(), cmd.clone()],
            };
            Healthcheck {
                test: Some(test),
                interval: nanos(*interval),
                timeout: nanos(*timeout),
                start_period: nanos(*start_period),
                start_interval: nanos(*start_interval),
                retries: retries.map(i64::from).filter(|r| *r != 0),
                extra: Default::default(),
            }
        }
    }
}

fn lower_copy(
    scope: &Scope<'_>,
    expanded: &Instruction,
    raw: &Instruction,
    line: usize,
) -> Result<CopyStep, PlanError> {
    let vars = scope.vars.clone();
    let lookup = move |k: &str| vars.get(k);
    let split = |sources: &[CopySource]| -> Result<(Vec<String>, Vec<_>), PlanError> {
        let mut paths = Vec::new();
        let mut docs = Vec::new();
        for s in sources {
            match s {
                CopySource::Path(p) => paths.push(p.clone()),
                CopySource::Heredoc(h) => {
                    let mut h = h.clone();
                    h.content = h
                        .expanded(&lookup, scope.escape)
                        .map_err(|source| PlanError::Expand { line, source })?;
                    h.expand = false;
                    docs.push(h);
                }
            }
        }
        Ok((paths, docs))
    };
    let workdir = scope.workdir();
    match (expanded, raw) {
        (Instruction::Copy(c), Instruction::Copy(raw)) => {
            let (sources, heredocs) = split(&c.sources)?;
            if let Some(url) = sources
                .iter()
                .find(|s| s.starts_with("http://") || s.starts_with("https://"))
            {
                return Err(PlanError::BadValue {
                    line,
                    keyword: "COPY",
                    reason: format!("source can't be a URL for COPY: {url}"),
                });
            }
            let from = match &raw.from {
                Some(f) => scope.from(f, line, FromKind::Copy)?,
                None => CopyFrom::Context,
            };
            Ok(CopyStep {
                is_add: false,
                sources,
                dest: copy_dest(&workdir, &c.dest),
                from,
                chown: c.chown.clone(),
                chmod: c.chmod.clone(),
                link: c.link,
                parents: c.parents,
                excludes: c.excludes.clone(),
                heredocs,
                checksum: None,
                keep_git_dir: false,
                unpack: None,
            })
        }
        (Instruction::Add(a), _) => {
            let (sources, heredocs) = split(&a.sources)?;
            Ok(CopyStep {
                is_add: true,
                sources,
                dest: copy_dest(&workdir, &a.dest),
                from: CopyFrom::Context,
                chown: a.chown.clone(),
                chmod: a.chmod.clone(),
                link: a.link,
                parents: false,
                excludes: a.excludes.clone(),
                heredocs,
                checksum: a.checksum.clone(),
                keep_git_dir: a.keep_git_dir.unwrap_or(false),
                unpack: a.unpack,
            })
        }
        _ => Err(PlanError::BadValue {
            line,
            keyword: "COPY",
            reason: "internal: instruction changed kind".into(),
        }),
    }
}
