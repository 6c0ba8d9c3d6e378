//! The stage graph: which stage each FROM, `COPY --from` and `RUN
//! --mount=from=` names, cycle detection, target pruning, the levels of the
//! DAG and the external images the build needs.

use std::collections::BTreeSet;

use serde::Serialize;

use crate::dockerfile::{Dockerfile, Instruction, Lexer, MountType, Span, Stage};
use crate::plan::args::{self, Vars};
use crate::plan::{Base, CopyFrom, PlanError, PlanOptions, Platform};

/// The stages a build needs and what must be pulled for them.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct StageGraph {
    /// Only the stages the target needs, in execution order (by id: a stage
    /// can only depend on earlier stages).
    pub stages: Vec<StageNode>,
    /// The target's stage id.
    pub target: usize,
    /// Images to pull before building: bases (with each stage's platform)
    /// and `COPY --from`/mount images (target platform). No duplicates.
    pub images: Vec<ExternalImage>,
    /// Stage ids that may run in parallel, level by level.
    pub levels: Vec<Vec<usize>>,
    pub warnings: Vec<String>,
}

impl StageGraph {
    /// The node of stage `id`, if the build needs it.
    pub fn node(&self, id: usize) -> Option<&StageNode> {
        self.stages.iter().find(|n| n.id == id)
    }
}

/// One needed stage.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct StageNode {
    pub id: usize,
    pub name: Option<String>,
    pub base: Base,
    pub platform: Platform,
    /// Stage ids needed first, sorted.
    pub deps: Vec<usize>,
    pub span: Span,
    /// Position in [`StageGraph::levels`].
    pub level: usize,
}

/// An image to pull: the reference as written after expansion, and the
/// platform to pick from its index.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Serialize)]
pub struct ExternalImage {
    pub reference: String,
    pub platform: Platform,
}

/// A stage's name for messages: its alias or `stage-N`, as BuildKit says.
pub(crate) fn stage_label(stage: &Stage<'_>) -> String {
    stage
        .name()
        .map(str::to_string)
        .unwrap_or_else(|| format!("stage-{}", stage.index))
}

/// Resolves a `--from` / `from=` value as BuildKit does: a number is a stage
/// index, a stage name (any stage, case-insensitive) is that stage, anything
/// else is an image. Variables are not allowed.
pub(crate) fn resolve_from(
    raw: &str,
    line: usize,
    stages: &[Stage<'_>],
    escape: char,
    kind: FromKind,
) -> Result<CopyFrom, PlanError> {
    if kind == FromKind::Mount {
        // BuildKit's detectRunMount: a stage name, else an image; no
        // indexes, and the value may use variables (expanded by the caller).
        return Ok(find_stage(stages, raw)
            .map(CopyFrom::Stage)
            .unwrap_or_else(|| CopyFrom::Image(raw.to_string())));
    }
    let unset = |_: &str| None;
    let plain = Lexer::new(escape)
        .expand_word(raw, &unset)
        .map_err(|source| PlanError::Expand { line, source })?;
    // Docker quirk: `--from` is compared with its expansion in an empty
    // environment; any `$` or quote makes them differ and is refused.
    if plain != raw {
        return Err(PlanError::FromVariable { line });
    }
    if let Ok(index) = raw.parse::<usize>() {
        if index >= stages.len() {
            return Err(PlanError::BadStageIndex {
                line,
                index,
                count: stages.len(),
            });
        }
        return Ok(CopyFrom::Stage(index));
    }
    Ok(find_stage(stages, raw)
        .map(CopyFrom::Stage)
        .unwrap_or_else(|| CopyFrom::Image(raw.to_string())))
}

/// The stage called `name` (any position, case-insensitive).
fn find_stage(stages: &[Stage<'_>], name: &str) -> Option<usize> {
    stages
        .iter()
        .find(|s| s.name().is_some_and(|n| n.eq_ignore_ascii_case(name)))
        .map(|s| s.index)
}

/// Which flag names the source: `COPY --from` or `RUN --mount=from=`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum FromKind {
    Copy,
    Mount,
}

/// The `--from` values an instruction names. Mount sources that use
/// variables are resolved only when lowering (their values depend on the
/// stage's ARGs), and tmpfs mounts have no source.
pub(crate) fn from_refs(inst: &Instruction) -> Vec<(&str, FromKind)> {
    match inst {
        Instruction::Copy(c) => c
            .from
            .as_deref()
            .map(|f| (f, FromKind::Copy))
            .into_iter()
            .collect(),
        Instruction::Run(r) => r
            .mounts
            .iter()
            .filter(|m| m.kind != MountType::Tmpfs)
            .filter_map(|m| m.from.as_deref())
            .filter(|f| !f.contains('$'))
            .map(|f| (f, FromKind::Mount))
            .collect(),
        _ => Vec::new(),
    }
}

/// What FROM says, resolved.
pub(crate) struct FromInfo {
    pub base: Base,
    pub platform: Platform,
}

/// Expands and resolves every FROM line with the global ARGs.
pub(crate) fn resolve_froms(
    df: &Dockerfile,
    stages: &[Stage<'_>],
    global: &Vars,
    opts: &PlanOptions,
    warnings: &mut Vec<String>,
) -> Result<Vec<FromInfo>, PlanError> {
    let lexer = Lexer::new(df.escape());
    let lookup = |k: &str| global.get(k);
    let mut out: Vec<FromInfo> = Vec::with_capacity(stages.len());
    for stage in stages {
        let line = stage.from.source.span.start_line;
        let image = lexer
            .expand_word(&stage.from.image, &lookup)
            .map_err(|source| PlanError::Expand { line, source })?;
        if image.is_empty() {
            return Err(PlanError::BlankBase {
                line,
                base: stage.from.image.clone(),
            });
        }
        // Docker quirk: FROM names a stage only when it is defined earlier;
        // a later stage's name is taken as an image reference.
        let earlier = stages[..stage.index]
            .iter()
            .rev()
            .find(|s| s.name().is_some_and(|n| n.eq_ignore_ascii_case(&image)));
        let base = if image == "scratch" {
            Base::Scratch
        } else if let Some(s) = earlier {
            Base::Stage(s.index)
        } else {
            if let Some(later) = stages[stage.index..]
                .iter()
                .find(|s| s.name().is_some_and(|n| n.eq_ignore_ascii_case(&image)))
            {
                warnings.push(format!(
                    "line {line}: FROM {image} names stage {:?} defined later (line {}); \
                     as in Docker it is pulled as an image",
                    stage_label(later),
                    later.from.source.span.start_line
                ));
            }
            Base::Image { reference: image }
        };
        let platform = match &stage.from.platform {
            Some(raw) => {
                let text = lexer
                    .expand_word(raw, &lookup)
                    .map_err(|source| PlanError::Expand { line, source })?;
                text.parse::<Platform>()
                    .map_err(|e| PlanError::FromPlatform {
                        line,
                        platform: text.clone(),
                        reason: match e {
                            PlanError::BadPlatform { reason, .. } => reason,
                            other => other.to_string(),
                        },
                    })?
            }
            None => match &base {
                Base::Stage(parent) => out[*parent].platform.clone(),
                _ => opts.platform.clone(),
            },
        };
        // BuildKit: a stage based on another stage runs on its platform.
        let platform = match &base {
            Base::Stage(parent) => out[*parent].platform.clone(),
            _ => platform,
        };
        out.push(FromInfo { base, platform });
    }
    Ok(out)
}

/// The instructions a stage runs: ONBUILD triggers of its base stage first
/// (with the stage's FROM line), then its own.
pub(crate) fn stage_instructions<'a>(
    stage: &Stage<'a>,
    froms: &[FromInfo],
    stages: &[Stage<'a>],
) -> Vec<(&'a Instruction, bool)> {
    let mut out = Vec::new();
    if let Base::Stage(parent) = froms[stage.index].base {
        for inst in stages[parent].instructions {
            if let Instruction::Onbuild(ob) = inst {
                out.push((ob.inner.as_ref(), true));
            }
        }
    }
    out.extend(stage.instructions.iter().map(|i| (i, false)));
    out
}

/// Builds the stage graph: resolves every FROM and `--from`, rejects cycles
/// and undefined stage indexes, prunes to what the target needs.
pub fn outline(df: &Dockerfile, opts: &PlanOptions) -> Result<StageGraph, PlanError> {
    let all = df.stages();
    let stages = &all.stages;
    let global = args::global_args(df, opts)?;
    let mut warnings = Vec::new();
    let froms = resolve_froms(df, stages, &global, opts, &mut warnings)?;

    // BuildKit resolves the target before it checks the graph.
    let target = match &opts.target {
        None => stages.len().saturating_sub(1),
        Some(name) => stages
            .iter()
            .find(|s| s.name().is_some_and(|n| n.eq_ignore_ascii_case(name)))
            .map(|s| s.index)
            .ok_or_else(|| PlanError::UnknownTarget {
                target: name.clone(),
                available: stages
                    .iter()
                    .filter_map(|s| s.name().map(str::to_string))
                    .collect(),
            })?,
    };

    // Edges of every stage (BuildKit checks cycles over all stages, needed
    // or not): (dependency, line, is a --from edge).
    let mut edges: Vec<Vec<(usize, usize, bool)>> = vec![Vec::new(); stages.len()];
    let mut images: Vec<Vec<String>> = vec![Vec::new(); stages.len()];
    for stage in stages {
        let from_line = stage.from.source.span.start_line;
        if let Base::Stage(parent) = froms[stage.index].base {
            edges[stage.index].push((parent, from_line, false));
        }
        for (inst, onbuild) in stage_instructions(stage, &froms, stages) {
            let line = if onbuild {
                from_line
            } else {
                inst.span().start_line
            };
            for (raw, kind) in from_refs(inst) {
                match resolve_from(raw, line, stages, df.escape(), kind)? {
                    CopyFrom::Stage(dep) => edges[stage.index].push((dep, line, true)),
                    CopyFrom::Image(r) => images[stage.index].push(r),
                    CopyFrom::Context => {}
                }
            }
        }
    }
    check_cycles(stages, &edges)?;

    let mut needed = BTreeSet::new();
    let mut todo = vec![target];
    while let Some(id) = todo.pop() {
        if needed.insert(id) {
            todo.extend(edges[id].iter().map(|e| e.0));
        }
    }

    let mut nodes: Vec<StageNode> = Vec::new();
    let mut levels: Vec<Vec<usize>> = Vec::new();
    let mut level_of = vec![0usize; stages.len()];
    let mut pulls: BTreeSet<ExternalImage> = BTreeSet::new();
    for &id in &needed {
        let stage = &stages[id];
        for &(dep, line, is_from) in &edges[id] {
            if is_from && dep >= id {
                return Err(PlanError::LaterStage {
                    line,
                    from: stage_label(&stages[dep]),
                    stage: stage_label(stage),
                });
            }
        }
        let deps: Vec<usize> = edges[id]
            .iter()
            .map(|e| e.0)
            .collect::<BTreeSet<_>>()
            .into_iter()
            .collect();
        let level = deps.iter().map(|d| level_of[*d] + 1).max().unwrap_or(0);
        level_of[id] = level;
        if levels.len() <= level {
            levels.resize(level + 1, Vec::new());
        }
        levels[level].push(id);
        let info = &froms[id];
        if let Base::Image { reference } = &info.base {
            pulls.insert(ExternalImage {
                reference: reference.clone(),
                platform: info.platform.clone(),
            });
        }
        for r in &images[id] {
            pulls.insert(ExternalImage {
                reference: r.clone(),
                platform: opts.platform.clone(),
            });
        }
        nodes.push(StageNode {
            id,
            name: stage.name().map(str::to_string),
            base: info.base.clone(),
            platform: info.platform.clone(),
            deps,
            span: stage.from.source.span,
            level,
        });
    }
    Ok(StageGraph {
        stages: nodes,
        target,
        images: pulls.into_iter().collect(),
        levels,
        warnings,
    })
}

/// Depth-first search for a cycle; the error names the stages on it and the
/// line of the edge that closes it.
fn check_cycles(
    stages: &[Stage<'_>],
    edges: &[Vec<(usize, usize, bool)>],
) -> Result<(), PlanError> {
    #[derive(Clone, Copy, PartialEq)]
    enum Mark {
        New,
        Active,
        Done,
    }
    fn visit(
        id: usize,
        edges: &[Vec<(usize, usize, bool)>],
        marks: &mut [Mark],
        path: &mut Vec<usize>,
    ) -> Option<(Vec<usize>, usize)> {
        marks[id] = Mark::Active;
        path.push(id);
        for &(dep, line, _) in &edges[id] {
            match marks[dep] {
                Mark::Active => {
                    let start = path.iter().position(|p| *p == dep).unwrap_or(0);
                    let mut cycle = path[start..].to_vec();
                    cycle.push(dep);
                    return Some((cycle, line));
                }
                Mark::New => {
                    if let Some(found) = visit(dep, edges, marks, path) {
                        return Some(found);
                    }
                }
                Mark::Done => {}
            }
        }
        path.pop();
        marks[id] = Mark::Done;
        None
    }
    let mut marks = vec![Mark::New; stages.len()];
    for id in 0..stages.len() {
        if marks[id] == Mark::New {
            let mut path = Vec::new();
            if let Some((cycle, line)) = visit(id, edges, &mut marks, &mut path) {
                return Err(PlanError::Cycle {
                    line,
                    stages: cycle.iter().map(|i| stage_label(&stages[*i])).collect(),
                });
            }
        }
    }
    Ok(())
}
