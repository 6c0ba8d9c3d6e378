//! A whole build: the stages of a plan on the scheduler's worker pool, each
//! through the stage loop, and the target's image config and layers.

use std::collections::BTreeMap;
use std::sync::atomic::Ordering;
use std::sync::Arc;

use crate::context::{BuildContext, HashIndex};
use crate::image::{Descriptor, ImageConfig, ResolvedImage};
use crate::plan::{apply, BuildPlan, ConfigChange, StagePlan, StepKind};

use super::clock::Clock;
use super::schedule;
use super::services::{EngineOptions, Services};
use super::session::Session;
use super::stage::build_stage;
use super::{EngineError, StepFailure};

/// The built target.
#[derive(Debug, Clone)]
pub struct BuildOutput {
    pub config: ImageConfig,
    /// Layer descriptors, bottom first.
    pub layers: Vec<Descriptor>,
    /// `created` of the image (RFC 3339).
    pub created: String,
    pub cached_steps: usize,
    pub executed_steps: usize,
}

/// The estimated cost of a stage, for longest-path-first scheduling: RUN
/// steps dominate build times, COPY and ADD come next.
fn stage_weight(stage: &StagePlan) -> u64 {
    1 + stage
        .steps
        .iter()
        .map(|s| match s.kind {
            StepKind::Run(_) => 10,
            StepKind::Copy(_) => 2,
            StepKind::Config(_) => 0,
        })
        .sum::<u64>()
}

/// The number of stages built at once: `--jobs`, or four per CPU (at least
/// four). BuildKit starts every ready stage at once; more stages than CPUs
/// share them, which ends three equal CPU-bound stages on two CPUs in 1.5x
/// one stage's time instead of 2x. The bound keeps a wide graph from
/// starting hundreds of containers.
fn jobs(opts: &EngineOptions) -> usize {
    if opts.jobs > 0 {
        return opts.jobs;
    }
    4 * std::thread::available_parallelism().map_or(1, |n| n.get())
}

/// Builds `plan`'s target from `context` and the resolved `bases`, with
/// the given services.
pub fn build(
    plan: &BuildPlan,
    context: &BuildContext,
    bases: &BTreeMap<String, ResolvedImage>,
    services: Services<'_>,
    opts: &EngineOptions,
) -> Result<BuildOutput, StepFailure> {
    let hash_index_path = opts.home.join("context-index");
    let session = Session::new(
        context,
        bases,
        services,
        opts,
        Clock::new(plan.source_date_epoch),
        HashIndex::load(&hash_index_path),
    );
    for message in &plan.warnings {
        services.reporter.report(super::Event::Message(message));
    }
    // Stage ids to positions in the plan (which lists every stage after
    // the stages it needs).
    let position: BTreeMap<usize, usize> = plan
        .stages
        .iter()
        .enumerate()
        .map(|(i, s)| (s.id, i))
        .collect();
    let graph = schedule::Graph {
        deps: plan
            .stages
            .iter()
            .map(|s| {
                s.deps
                    .iter()
                    .filter_map(|d| position.get(d).copied())
                    .collect()
            })
            .collect(),
        weight: plan.stages.iter().map(stage_weight).collect(),
    };
    schedule::run(
        &graph,
        jobs(opts),
        &session.stop,
        &opts.cancel,
        |index| {
            let stage = &plan.stages[index];
            build_stage(&session, stage)
                .map(|state| (stage.id, state))
                .map_err(|(step, error)| StepFailure {
                    stage: index,
                    step,
                    error,
                })
        },
        |_, (id, state)| {
            session.built_mut().insert(id, Arc::new(state));
        },
    )?;
    // The index is only a cache: failing to save it costs time, not results.
    // Nothing was read this time: the file on disk already knows every
    // digest used, so the (large) index is not rewritten on no-op builds.
    if session.hashes().hashed_files > 0 {
        let _ = session.hashes().save(&hash_index_path);
    }
    let target = &plan.stages[plan.target];
    let built = session.built_mut().remove(&target.id);
    let mut state = match built {
        Some(state) => Arc::unwrap_or_clone(state),
        None => {
            return Err(StepFailure {
                stage: plan.target,
                step: 0,
                error: if opts.cancel.load(Ordering::SeqCst) {
                    EngineError::Interrupted
                } else {
                    EngineError::Step {
                        message: "target stage was not built".into(),
                    }
                },
            })
        }
    };
    if !plan.labels.is_empty() {
        let labels: Vec<(String, String)> = plan
            .labels
            .iter()
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect();
        apply(&mut state.config, &ConfigChange::Label(labels));
    }
    let created = match (session.clock.pinned(), &state.last_created) {
        (false, Some(last)) => last.clone(),
        _ => session.clock.created(),
    };
    state.config.created = Some(created.clone());
    Ok(BuildOutput {
        config: state.config,
        layers: state.layers,
        created,
        cached_steps: session.cached_steps.load(Ordering::SeqCst),
        executed_steps: session.executed_steps.load(Ordering::SeqCst),
    })
}
