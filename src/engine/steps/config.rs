//! Steps that change the image config only (ENV, LABEL, USER, CMD, ...):
//! applied, with a history entry at the time of the stage's latest layer.

use crate::plan::{apply as apply_change, ConfigChange, Step};

use super::super::session::Session;
use super::super::state::StageState;

/// Applies `change` and records its history entry (none for ONBUILD, as
/// BuildKit does).
pub fn apply(session: &Session, step: &Step, state: &mut StageState, change: &ConfigChange) {
    apply_change(&mut state.config, change);
    if step.records_history() {
        push_history(session, step, state);
    }
}

/// The history entry of a step that added no layer.
pub fn push_history(session: &Session, step: &Step, state: &mut StageState) {
    let clock = session.clock;
    let created = clock.metadata_time(state.last_created.as_deref());
    state.config.push_empty_layer(clock.history(step, created));
}
