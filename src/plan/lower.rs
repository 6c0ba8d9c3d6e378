//! Lowering: walks each needed stage with its ARG/ENV scope and the base's
//! config, expands every instruction and turns it into a [`Step`]. ONBUILD
//! triggers of the base run first, as BuildKit does.

use std::collections::{BTreeMap, BTreeSet};

use crate::dockerfile::{self, Dockerfile, Instruction, Lexer, Stage};
use crate::image::ImageConfig;
use crate::plan::args::{self, Vars};
use crate::plan::config::{add_env, apply, DEFAULT_PATH};
use crate::plan::graph::{resolve_from, stage_label, FromKind, StageGraph};
use crate::plan::step::*;
use crate::plan::{PlanError, PlanOptions};

mod docker;
mod instr;

/// What a stage leaves to the stages based on it.
#[derive(Debug, Clone)]
struct StageEnd {
    config: ImageConfig,
    vars: Vars,
    declared: Vec<(String, Option<String>)>,
}

/// The running state of one stage while it is lowered.
pub(super) struct Scope<'a> {
    pub config: ImageConfig,
    /// Variables visible to expansion and RUN: image ENV plus ARGs.
    pub vars: Vars,
    /// ARGs declared in the stage (and its base stage), for RUN's history.
    pub declared: Vec<(String, Option<String>)>,
    pub cmd_set: bool,
    pub global: &'a Vars,
    pub opts: &'a PlanOptions,
    pub stages: &'a [Stage<'a>],
    pub escape: char,
    pub consumed: &'a mut BTreeSet<String>,
    pub done: &'a BTreeSet<usize>,
    pub stage_label: String,
    pub images: &'a BTreeSet<String>,
}

impl Scope<'_> {
    pub fn lexer(&self) -> Lexer {
        Lexer::new(self.escape)
    }

    /// The shell for shell-form commands: SHELL, or `/bin/sh -c`.
    pub fn shell(&self) -> Vec<String> {
        self.config
            .config
            .as_ref()
            .and_then(|c| c.shell.clone())
            .filter(|s| !s.is_empty())
            .unwrap_or_else(|| vec!["/bin/sh".to_string(), "-c".to_string()])
    }

    pub fn workdir(&self) -> String {
        self.config
            .config
            .as_ref()
            .and_then(|c| c.working_dir.clone())
            .filter(|w| !w.is_empty())
            .unwrap_or_else(|| "/".to_string())
    }

    pub fn user(&self) -> String {
        self.config
            .config
            .as_ref()
            .and_then(|c| c.user.clone())
            .unwrap_or_default()
    }

    /// Resolves `--from`, checking a stage is built before this one.
    pub fn from(&self, raw: &str, line: usize, kind: FromKind) -> Result<CopyFrom, PlanError> {
        let from = resolve_from(raw, line, self.stages, self.escape, kind)?;
        if let CopyFrom::Stage(id) = from {
            if !self.done.contains(&id) {
                return Err(PlanError::LaterStage {
                    line,
                    from: stage_label(&self.stages[id]),
                    stage: self.stage_label.clone(),
                });
            }
        }
        if let CopyFrom::Image(r) = &from {
            if !self.images.contains(r) {
                return Err(PlanError::Onbuild {
                    line,
                    trigger: raw.to_string(),
                    reason: format!("image {r} is not among the images the build pulls"),
                });
            }
        }
        Ok(from)
    }
}

/// Parses one ONBUILD trigger of a base image with the Dockerfile parser.
fn parse_trigger(trigger: &str, line: usize) -> Result<Instruction, PlanError> {
    let bad = |reason: String| PlanError::Onbuild {
        line,
        trigger: trigger.to_string(),
        reason,
    };
    // The parser wants a FROM first; the trigger is the second instruction.
    let df =
        dockerfile::parse(&format!("FROM scratch\n{trigger}\n")).map_err(|e| bad(e.to_string()))?;
    if df.instructions.len() != 2 {
        return Err(bad("onbuild trigger should be a single expression".into()));
    }
    match &df.instructions[1] {
        Instruction::From(_) | Instruction::Onbuild(_) | Instruction::Maintainer(_) => {
            Err(bad(format!(
                "{} isn't allowed as an ONBUILD trigger",
                df.instructions[1].keyword().as_str()
            )))
        }
        inst => Ok(inst.clone()),
    }
}

/// The config a stage starts from and whether it is known.
fn start_config(
    base: &Base,
    node_platform: &crate::plan::Platform,
    base_configs: &BTreeMap<String, ImageConfig>,
    ends: &BTreeMap<usize, StageEnd>,
) -> (ImageConfig, bool) {
    let empty = || {
        let mut c = ImageConfig::new(&node_platform.os, &node_platform.architecture);
        c.variant = node_platform.variant.clone();
        c
    };
    match base {
        Base::Scratch => {
            // BuildKit's emptyImage: WORKDIR / and a default PATH.
            let mut c = empty();
            let cfg = c.config.get_or_insert_with(Default::default);
            cfg.working_dir = Some("/".to_string());
            cfg.env = Some(vec![format!("PATH={DEFAULT_PATH}")]);
            (c, true)
        }
        Base::Image { reference } => match base_configs.get(reference) {
            Some(c) => {
                let mut c = c.clone();
                c.created = None;
                (c, true)
            }
            None => (empty(), false),
        },
        Base::Stage(id) => match ends.get(id) {
            Some(end) => {
                let mut c = end.config.clone();
                c.rootfs = Default::default();
                c.history.clear();
                (c, true)
            }
            None => (empty(), false),
        },
    }
}

/// Lowers the stages of `graph` into steps, using the base images' configs
/// (keyed by the reference as written after expansion, as in
/// [`crate::plan::Base::Image`]). A base missing from `base_configs` is
/// planned with an empty config and marked `base_config_known: false`.
pub fn lower(
    df: &Dockerfile,
    graph: &StageGraph,
    base_configs: &BTreeMap<String, ImageConfig>,
    opts: &PlanOptions,
) -> Result<BuildPlan, PlanError> {
    let all = df.stages();
    let stages = &all.stages;
    let global = args::global_args(df, opts)?;
    let source_date_epoch = args::source_date_epoch(opts, &global)?;
    let mut warnings = graph.warnings.clone();
    let images: BTreeSet<String> = graph.images.iter().map(|i| i.reference.clone()).collect();

    let mut consumed: BTreeSet<String> = BTreeSet::new();
    for arg in &all.global_args {
        consumed.extend(arg.args.iter().map(|(k, _)| k.clone()));
    }
    let mut ends: BTreeMap<usize, StageEnd> = BTreeMap::new();
    let mut done: BTreeSet<usize> = BTreeSet::new();
    let mut plans = Vec::with_capacity(graph.stages.len());
    for node in &graph.stages {
        let stage = &stages[node.id];
        let from_span = stage.from.source.span;
        let (mut config, known) = start_config(&node.base, &node.platform, base_configs, &ends);
        // Triggers: the base image's OnBuild, or the base stage's ONBUILD
        // instructions; they never carry over to this stage's config.
        let mut triggers: Vec<(Instruction, String)> = Vec::new();
        let (mut vars, mut declared) = match &node.base {
            Base::Stage(parent) => {
                for inst in stages[*parent].instructions {
                    if let Instruction::Onbuild(ob) = inst {
                        triggers.push(((*ob.inner).clone(), ob.raw.clone()));
                    }
                }
                let end = ends.get(parent);
                (
                    end.map(|e| e.vars.clone()).unwrap_or_default(),
                    end.map(|e| e.declared.clone()).unwrap_or_default(),
                )
            }
            _ => {
                let on_build = config
                    .config
                    .as_ref()
                    .and_then(|c| c.on_build.clone())
                    .unwrap_or_default();
                for t in on_build {
                    triggers.push((parse_trigger(&t, from_span.start_line)?, t));
                }
                let env = config
                    .config
                    .as_ref()
                    .and_then(|c| c.env.clone())
                    .unwrap_or_default();
                (Vars::from_strings(&env), Vec::new())
            }
        };
        let cfg = config.config.get_or_insert_with(Default::default);
        cfg.on_build = None;
        // BuildKit: every stage gets a PATH if its base has none.
        if node.platform.os != "windows" && vars.get("PATH").is_none() {
            let env = cfg.env.get_or_insert_with(Vec::new);
            add_env(env, "PATH", DEFAULT_PATH);
            vars.set("PATH", DEFAULT_PATH);
        }
        let start = config.clone();

        let mut scope = Scope {
            config,
            vars: std::mem::take(&mut vars),
            declared: std::mem::take(&mut declared),
            cmd_set: false,
            global: &global,
            opts,
            stages,
            escape: df.escape(),
            consumed: &mut consumed,
            done: &done,
            stage_label: stage_label(stage),
            images: &images,
        };
        let mut steps = Vec::new();
        for (inst, raw) in &triggers {
            let mut step = instr::lower_instruction(&mut scope, inst, from_span)?;
            step.onbuild = true;
            step.text = format!("ONBUILD {raw}");
            steps.push(step);
        }
        for inst in stage.instructions {
            let step = instr::lower_instruction(&mut scope, inst, inst.span())?;
            steps.push(step);
        }
        let end = StageEnd {
            config: scope.config,
            vars: scope.vars,
            declared: scope.declared,
        };
        ends.insert(node.id, end);
        done.insert(node.id);
        plans.push(StagePlan {
            id: node.id,
            name: node.name.clone(),
            base: node.base.clone(),
            platform: node.platform.clone(),
            deps: node.deps.clone(),
            steps,
            span: from_span,
            config: start,
            base_config_known: known,
        });
    }

    let unused: Vec<&String> = opts
        .build_args
        .keys()
        .filter(|k| {
            !consumed.contains(*k)
                && !args::is_proxy(k)
                && !args::PLATFORM_ARGS.contains(&k.as_str())
                && k.as_str() != "SOURCE_DATE_EPOCH"
        })
        .collect();
    if !unused.is_empty() {
        let names: Vec<&str> = unused.iter().map(|s| s.as_str()).collect();
        // Docker's wording (classic builder), kept for familiarity.
        warnings.push(format!(
            "[Warning] One or more build-args [{}] were not consumed",
            names.join(" ")
        ));
    }

    let index_of: BTreeMap<usize, usize> =
        plans.iter().enumerate().map(|(i, p)| (p.id, i)).collect();
    let levels = graph
        .levels
        .iter()
        .map(|l| {
            l.iter()
                .filter_map(|id| index_of.get(id).copied())
                .collect()
        })
        .collect();
    let target = index_of.get(&graph.target).copied().unwrap_or(0);
    Ok(BuildPlan {
        stages: plans,
        target,
        levels,
        images: graph.images.clone(),
        warnings,
        source_date_epoch,
        labels: opts.labels.clone(),
    })
}

/// Applies a step's config change to the running config (used by the
/// lowering itself so later steps see WORKDIR, USER, SHELL, ENV).
pub(super) fn track(scope: &mut Scope<'_>, change: &ConfigChange) {
    apply(&mut scope.config, change);
}

/// Resolves a WORKDIR against the current one (BuildKit's NormalizeWorkdir).
pub(super) fn normalize_workdir(current: &str, requested: &str) -> String {
    let joined = if requested.starts_with('/') {
        requested.to_string()
    } else {
        format!("/{current}/{requested}")
    };
    clean_path(&joined)
}

/// Go's `path.Clean` for absolute paths.
pub(super) fn clean_path(p: &str) -> String {
    let mut parts: Vec<&str> = Vec::new();
    for part in p.split('/') {
        match part {
            "" | "." => {}
            ".." => {
                parts.pop();
            }
            other => parts.push(other),
        }
    }
    format!("/{}", parts.join("/"))
}

/// A COPY destination made absolute against WORKDIR, keeping a trailing
/// slash (BuildKit's pathRelativeToWorkingDir).
pub(super) fn copy_dest(workdir: &str, dest: &str) -> String {
    let dest = if dest.is_empty() || dest == "." {
        "./"
    } else {
        dest
    };
    let keep_slash = dest.ends_with('/') || dest.ends_with("/.");
    let joined = if dest.starts_with('/') {
        clean_path(dest)
    } else {
        clean_path(&format!("{workdir}/{dest}"))
    };
    if keep_slash && joined != "/" {
        format!("{joined}/")
    } else {
        joined
    }
}
