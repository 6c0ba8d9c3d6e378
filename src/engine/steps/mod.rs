//! One file per kind of step. A step that may add a layer (COPY/ADD, RUN,
//! WORKDIR) is a [`LayerStep`]: its cache key first, from its definition
//! and the identities of its inputs (no work done), then, on a miss, its
//! execution. Metadata-only steps change the config (see `config`).

mod config;
mod copy;
mod run;
mod workdir;

use crate::cache::CacheKey;
use crate::layer::Layer;
use crate::plan::{ConfigChange, Step, StepKind};

use super::report::At;
use super::session::Session;
use super::state::StageState;
use super::EngineError;
pub use config::push_history;

/// The keys of a step.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Keys {
    /// What the step's result is recorded under.
    pub key: CacheKey,
    /// What the stage's next step builds on: the key, except for `COPY
    /// --link`, whose own key ignores what is below it.
    pub chain: CacheKey,
}

/// What an executed step made.
pub enum Outcome {
    /// A new layer.
    Layer(Layer),
    /// Nothing on disk changed (WORKDIR of an existing directory): the
    /// step is recorded without a layer.
    Unchanged,
}

/// A step that may add a layer.
pub trait LayerStep {
    /// The step's keys: its inputs' identities (file checksums, the key of
    /// a stage, the digest of an image) are resolved here, and the key is a
    /// pure function of them; nothing is written.
    fn keys(&mut self, session: &Session, state: &mut StageState) -> Result<Keys, EngineError>;

    /// Does the step's work on a cache miss.
    fn execute(
        &mut self,
        session: &Session,
        state: &mut StageState,
        at: At<'_>,
    ) -> Result<Outcome, EngineError>;
}

/// What the loop does with a step.
pub enum Action<'s> {
    /// The step changed the config only; it is done.
    Done,
    /// The step may add a layer: key, look up, execute on a miss.
    Layer(Box<dyn LayerStep + 's>),
}

/// Applies a metadata step, or readies a step that may add a layer.
pub fn prepare<'s>(
    session: &Session,
    step: &'s Step,
    state: &mut StageState,
) -> Result<Action<'s>, EngineError> {
    Ok(match &step.kind {
        StepKind::Config(ConfigChange::Workdir(dir)) => {
            match workdir::Workdir::start(session, step, state, dir) {
                Some(workdir) => Action::Layer(Box::new(workdir)),
                None => Action::Done,
            }
        }
        StepKind::Config(change) => {
            config::apply(session, step, state, change);
            Action::Done
        }
        StepKind::Copy(copy) => Action::Layer(Box::new(copy::Copy::new(session, copy)?)),
        StepKind::Run(run) => Action::Layer(Box::new(run::Run::new(session, run))),
    })
}

/// The layer format's part of every key: the same inputs written in
/// another format are another layer.
fn layer_format(session: &Session) -> serde_json::Value {
    // `encoding` names the encoder's output format: when it changes
    // (gzip became chunked in v2; v3 stores incompressible chunks and
    // gives every chunk a new compressor), cached layers of the old format miss,
    // so every machine makes the same bytes for the same inputs.
    serde_json::json!({
        "compression": session.opts.layer.compression.name(),
        "encoding": 3,
        "level": session.opts.layer.level,
        "mtime": session.clock.mtime(),
    })
}
