//! Rendering a [`BuildPlan`] for `imgb build --dry-run`: readable text,
//! JSON for tools, and Graphviz dot. Pure: returns strings.

use std::collections::BTreeSet;
use std::fmt::Write as _;

use crate::plan::{Base, BuildPlan, ConfigChange, CopyFrom, StagePlan, StepKind};

/// How a stage is called in output: `0 "build"` or `1`.
fn stage_title(stage: &StagePlan) -> String {
    match &stage.name {
        Some(n) => format!("{} {n:?}", stage.id),
        None => stage.id.to_string(),
    }
}

fn stage_ref(plan: &BuildPlan, id: usize) -> String {
    plan.stages
        .iter()
        .find(|s| s.id == id)
        .map(stage_title)
        .unwrap_or_else(|| id.to_string())
}

fn base_text(plan: &BuildPlan, stage: &StagePlan) -> String {
    match &stage.base {
        Base::Scratch => "scratch (empty filesystem)".to_string(),
        Base::Image { reference } => format!("image {reference}"),
        Base::Stage(id) => format!("stage {}", stage_ref(plan, *id)),
    }
}

fn from_text(plan: &BuildPlan, from: &CopyFrom) -> String {
    match from {
        CopyFrom::Context => "context".to_string(),
        CopyFrom::Stage(id) => format!("stage {}", stage_ref(plan, *id)),
        CopyFrom::Image(r) => format!("image {r}"),
    }
}

/// The plan as readable text: levels, then each stage with its steps.
pub fn render_text(plan: &BuildPlan) -> String {
    let mut out = String::new();
    let target = &plan.stages[plan.target.min(plan.stages.len().saturating_sub(1))];
    let _ = writeln!(
        out,
        "Build plan: {} stage(s), target stage {}",
        plan.stages.len(),
        stage_title(target)
    );
    if let Some(epoch) = plan.source_date_epoch {
        let _ = writeln!(out, "SOURCE_DATE_EPOCH: {epoch}");
    }
    if !plan.labels.is_empty() {
        let labels: Vec<String> = plan
            .labels
            .iter()
            .map(|(k, v)| format!("{k}={v}"))
            .collect();
        let _ = writeln!(out, "Labels for the target: {}", labels.join(", "));
    }
    if !plan.images.is_empty() {
        let _ = writeln!(out, "Images to pull:");
        for image in &plan.images {
            let _ = writeln!(out, "  {} [{}]", image.reference, image.platform);
        }
    }
    let _ = writeln!(
        out,
        "Execution levels (stages on one level can run in parallel):"
    );
    for (i, level) in plan.levels.iter().enumerate() {
        let names: Vec<String> = level
            .iter()
            .map(|&s| stage_title(&plan.stages[s]))
            .collect();
        let _ = writeln!(out, "  level {i}: {}", names.join(", "));
    }
    for stage in &plan.stages {
        let _ = writeln!(out);
        let _ = writeln!(
            out,
            "stage {} (line {}): FROM {} [{}]",
            stage_title(stage),
            stage.span.start_line,
            base_text(plan, stage),
            stage.platform
        );
        if !stage.deps.is_empty() {
            let deps: Vec<String> = stage.deps.iter().map(|d| stage_ref(plan, *d)).collect();
            let _ = writeln!(out, "  needs: {}", deps.join(", "));
        }
        if !stage.base_config_known {
            let _ = writeln!(
                out,
                "  note: base image config unknown at dry run (not pulled): its ENV, WORKDIR, USER, SHELL and ONBUILD triggers are not applied"
            );
        }
        if stage.base_config_known {
            if let Some(c) = &stage.config.config {
                let mut parts = Vec::new();
                if let Some(env) = &c.env {
                    parts.push(format!("env {env:?}"));
                }
                if let Some(w) = &c.working_dir {
                    parts.push(format!("workdir {w}"));
                }
                if let Some(u) = c.user.as_ref().filter(|u| !u.is_empty()) {
                    parts.push(format!("user {u}"));
                }
                if let Some(sh) = &c.shell {
                    parts.push(format!("shell {sh:?}"));
                }
                if !parts.is_empty() {
                    let _ = writeln!(out, "  starts with: {}", parts.join(", "));
                }
            }
        }
        if stage.steps.is_empty() {
            let _ = writeln!(out, "  (no steps)");
        }
        for step in &stage.steps {
            let _ = writeln!(out, "  {:>3}| {}", step.span.start_line, step.text);
            let detail = match &step.kind {
                StepKind::Run(r) => Some(format!(
                    "run {:?} in {} as {}{}",
                    r.argv,
                    r.workdir,
                    if r.user.is_empty() { "root" } else { &r.user },
                    if r.mounts.is_empty() {
                        String::new()
                    } else {
                        format!(", {} mount(s)", r.mounts.len())
                    }
                )),
                StepKind::Copy(c) => {
                    let mut srcs: Vec<String> = c.sources.clone();
                    srcs.extend(c.heredocs.iter().map(|h| format!("<<{}", h.name)));
                    Some(format!(
                        "{} {:?} from {} to {}",
                        if c.is_add { "add" } else { "copy" },
                        srcs,
                        from_text(plan, &c.from),
                        c.dest
                    ))
                }
                StepKind::Config(ConfigChange::Arg) => None,
                StepKind::Config(ConfigChange::Workdir(w)) => Some(format!("workdir {w}")),
                StepKind::Config(_) => None,
            };
            let _ = writeln!(out, "     = {}", step.created_by.replace('\n', "\\n"));
            if let Some(d) = detail {
                let _ = writeln!(out, "     > {d}");
            }
            if let StepKind::Copy(c) = &step.kind {
                for h in &c.heredocs {
                    let _ = writeln!(out, "     > file {} = {:?}", h.name, h.content);
                }
            }
            if let StepKind::Run(r) = &step.kind {
                for h in &r.heredocs {
                    let _ = writeln!(out, "     > script /dev/pipes/{} = {:?}", h.name, h.content);
                }
                let _ = writeln!(out, "     > env {:?}", r.env);
                if r.cache_env != r.env {
                    let _ = writeln!(out, "     > cache env {:?}", r.cache_env);
                }
                for m in &r.mounts {
                    let _ = writeln!(
                        out,
                        "     > mount {:?} at {} from {}",
                        m.mount.kind,
                        m.mount.target.as_deref().unwrap_or("?"),
                        m.source_from
                            .as_ref()
                            .map(|f| from_text(plan, f))
                            .unwrap_or_else(|| "nothing".to_string())
                    );
                }
            }
        }
    }
    if !plan.warnings.is_empty() {
        let _ = writeln!(out);
        for w in &plan.warnings {
            let _ = writeln!(out, "warning: {w}");
        }
    }
    out
}

/// The plan as pretty JSON (the [`BuildPlan`] serialized), for tools.
pub fn render_json(plan: &BuildPlan) -> String {
    // Serializing plain data with string keys cannot fail.
    let mut s = serde_json::to_string_pretty(plan)
        .unwrap_or_else(|e| format!("{{\"error\":{:?}}}", e.to_string()));
    s.push('\n');
    s
}

fn dot_escape(s: &str) -> String {
    s.replace('\\', "\\\\").replace('"', "\\\"")
}

/// The stage graph in Graphviz dot: stages as boxes (the target doubled),
/// images as ellipses, edges labelled FROM / COPY --from / RUN --mount.
pub fn render_dot(plan: &BuildPlan) -> String {
    let mut out = String::from(
        "digraph plan {\n  rankdir=LR;\n  node [shape=box, fontname=\"monospace\"];\n",
    );
    let mut images = BTreeSet::new();
    let mut edges = BTreeSet::new();
    for (i, stage) in plan.stages.iter().enumerate() {
        let node = format!("stage{}", stage.id);
        let label = format!(
            "{}\\n{} step(s)\\nlevel {}",
            dot_escape(&stage_title(stage)),
            stage.steps.len(),
            plan.levels.iter().position(|l| l.contains(&i)).unwrap_or(0)
        );
        let extra = if i == plan.target {
            ", peripheries=2, style=bold"
        } else {
            ""
        };
        let _ = writeln!(out, "  {node} [label=\"{label}\"{extra}];");
        match &stage.base {
            Base::Scratch => {}
            Base::Image { reference } => {
                images.insert(reference.clone());
                edges.insert((format!("image:{reference}"), node.clone(), "FROM"));
            }
            Base::Stage(id) => {
                edges.insert((format!("stage{id}"), node.clone(), "FROM"));
            }
        }
        for step in &stage.steps {
            let froms: Vec<(&CopyFrom, &'static str)> = match &step.kind {
                StepKind::Copy(c) => vec![(&c.from, "COPY --from")],
                StepKind::Run(r) => r
                    .mounts
                    .iter()
                    .filter_map(|m| m.source_from.as_ref().map(|f| (f, "RUN --mount")))
                    .collect(),
                StepKind::Config(_) => Vec::new(),
            };
            for (from, label) in froms {
                match from {
                    CopyFrom::Context => {}
                    CopyFrom::Stage(id) => {
                        edges.insert((format!("stage{id}"), node.clone(), label));
                    }
                    CopyFrom::Image(r) => {
                        images.insert(r.clone());
                        edges.insert((format!("image:{r}"), node.clone(), label));
                    }
                }
            }
        }
    }
    for image in &images {
        let _ = writeln!(
            out,
            "  \"image:{}\" [shape=ellipse, label=\"{}\"];",
            dot_escape(image),
            dot_escape(image)
        );
    }
    for (from, to, label) in &edges {
        let _ = writeln!(
            out,
            "  \"{}\" -> {to} [label=\"{label}\"];",
            dot_escape(from)
        );
    }
    out.push_str("}\n");
    out
}
