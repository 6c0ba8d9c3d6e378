//! The loop of one stage: for each step, its key, a lookup under the cache
//! policy, then reuse of the cached layer or execution, and the commit of
//! what it made.

use std::sync::atomic::Ordering;
use std::time::Instant;

use crate::cache::{CacheRecord, CachedLayer};
use crate::image::{Descriptor, History};
use crate::layer::Layer;
use crate::plan::{StagePlan, Step};

use super::report::{At, Event, StepStatus};
use super::services::StageCache;
use super::session::Session;
use super::state::StageState;
use super::steps::{self, Action, Keys, Outcome};
use super::EngineError;

/// How a step ended.
enum Ran {
    /// Its result came from the cache.
    Cached,
    /// It was done now.
    Done,
}

/// The name of a stage in progress output.
pub fn stage_name(stage: &StagePlan) -> String {
    stage
        .name
        .clone()
        .unwrap_or_else(|| format!("stage-{}", stage.id))
}

/// Builds one stage; a failure names the index of its step.
pub fn build_stage(
    session: &Session,
    stage: &StagePlan,
) -> Result<StageState, (usize, EngineError)> {
    let mut state = session.start(stage).map_err(|e| (0, e))?;
    let name = stage_name(stage);
    let policy = session.opts.cache.for_stage(&name, stage.id);
    let total = stage.steps.len();
    for (index, step) in stage.steps.iter().enumerate() {
        if session.stop.load(Ordering::SeqCst) {
            return Err((index, EngineError::Interrupted));
        }
        let started = Instant::now();
        let report = |status| {
            session.services.reporter.report(Event::Step {
                stage: &name,
                index: index + 1,
                total,
                text: &step.text,
                status,
            })
        };
        report(StepStatus::Running);
        let at = At {
            stage: &name,
            index: index + 1,
        };
        match run_step(session, step, &mut state, policy, at).map_err(|e| (index, e))? {
            Ran::Cached => {
                session.cached_steps.fetch_add(1, Ordering::SeqCst);
                report(StepStatus::Cached);
            }
            Ran::Done => {
                if step.creates_layer() {
                    session.executed_steps.fetch_add(1, Ordering::SeqCst);
                }
                report(StepStatus::Done {
                    seconds: started.elapsed().as_secs_f64(),
                });
            }
        }
    }
    Ok(state)
}

/// One step: key, lookup (when the stage's policy reuses the cache),
/// then reuse or execute and commit.
fn run_step(
    session: &Session,
    step: &Step,
    state: &mut StageState,
    policy: StageCache,
    at: At<'_>,
) -> Result<Ran, EngineError> {
    let mut work = match steps::prepare(session, step, state)? {
        Action::Done => return Ok(Ran::Done),
        Action::Layer(work) => work,
    };
    let keys = work.keys(session, state)?;
    let cached = match policy {
        StageCache::Reuse => session.lookup(&keys.key),
        StageCache::Rebuild => None,
    };
    if let Some(record) = cached {
        return Ok(match record.layer {
            Some(layer) => {
                let created = (!session.clock.pinned()).then(|| record.created.clone());
                push(session, step, state, &layer, created);
                state.key = keys.chain;
                Ran::Cached
            }
            // The step changed nothing on disk: history only.
            None => {
                steps::push_history(session, step, state);
                Ran::Done
            }
        });
    }
    match work.execute(session, state, at)? {
        Outcome::Layer(layer) => commit(session, step, state, keys, layer)?,
        Outcome::Unchanged => {
            // Only a cache: failing to store the answer costs time later.
            let _ = session.services.cache.put(&CacheRecord {
                key: keys.key,
                layer: None,
                created: session.clock.created(),
            });
            steps::push_history(session, step, state);
        }
    }
    Ok(Ran::Done)
}

/// Records a new layer in the cache and adds it to the stage.
fn commit(
    session: &Session,
    step: &Step,
    state: &mut StageState,
    keys: Keys,
    layer: Layer,
) -> Result<(), EngineError> {
    let created = session.clock.created();
    // Cached layers survive `imgb prune` until the cache itself is pruned.
    session.services.store.add_root("cache", &layer.digest)?;
    let cached = CachedLayer {
        digest: layer.digest,
        size: layer.size,
        diff_id: layer.diff_id,
        media_type: layer.media_type,
    };
    session.services.cache.put(&CacheRecord {
        key: keys.key,
        layer: Some(cached.clone()),
        created: created.clone(),
    })?;
    push(session, step, state, &cached, Some(created));
    state.key = keys.chain;
    Ok(())
}

/// Adds a layer to the stage, with its history entry.
fn push(
    session: &Session,
    step: &Step,
    state: &mut StageState,
    layer: &CachedLayer,
    created: Option<String>,
) {
    let history: History = session.clock.history(step, created);
    state.push_layer(
        Descriptor::new(&layer.media_type, layer.digest, layer.size),
        layer.diff_id,
        history,
    );
}
