//! WORKDIR: sets the working directory and creates it, owned by the
//! current USER, as BuildKit does. An existing directory needs no layer,
//! only history; whether it exists is a function of the parent key, so the
//! answer is cached too (a record without a layer): a no-op rebuild then
//! never reads the stage's files.

use std::collections::BTreeMap;

use crate::cache::CacheKey;
use crate::plan::{apply, ConfigChange, Step};

use super::super::files::{self, Content, Planned};
use super::super::lowerfs::normalise;
use super::super::report::At;
use super::super::session::Session;
use super::super::state::StageState;
use super::super::EngineError;
use super::{config, layer_format, Keys, LayerStep, Outcome};

pub struct Workdir<'s> {
    dir: &'s str,
}

impl<'s> Workdir<'s> {
    /// Applies the WORKDIR; returns the step that creates the directory,
    /// or `None` for `/` (nothing to create: history only).
    pub fn start(
        session: &Session,
        step: &Step,
        state: &mut StageState,
        dir: &'s str,
    ) -> Option<Workdir<'s>> {
        apply(&mut state.config, &ConfigChange::Workdir(dir.to_string()));
        if normalise(dir).is_empty() {
            config::push_history(session, step, state);
            return None;
        }
        Some(Workdir { dir })
    }
}

/// The key of a WORKDIR on top of `parent`: the directory, the USER that
/// would own it, and the layer format.
pub fn key(
    parent: CacheKey,
    platform: &str,
    dir: &str,
    user: Option<String>,
    format: serde_json::Value,
) -> Keys {
    let json = serde_json::json!({ "workdir": dir, "user": user, "layer": format });
    let key = CacheKey::step(parent, platform, &json, &BTreeMap::new());
    Keys { key, chain: key }
}

impl LayerStep for Workdir<'_> {
    fn keys(&mut self, session: &Session, state: &mut StageState) -> Result<Keys, EngineError> {
        Ok(key(
            state.key,
            &state.platform,
            self.dir,
            state.user(),
            layer_format(session),
        ))
    }

    fn execute(
        &mut self,
        session: &Session,
        state: &mut StageState,
        _at: At<'_>,
    ) -> Result<Outcome, EngineError> {
        let (store, snapshots) = session.layer_sources();
        if state.lower(store, snapshots)?.is_dir(self.dir) {
            return Ok(Outcome::Unchanged);
        }
        let owner = state.user_owner(store, snapshots)?;
        let lower = state.lower(store, snapshots)?;
        let dir_entry = Planned {
            path: normalise(self.dir),
            content: Content::Dir,
            mode: 0o755,
            uid: owner.map_or(0, |o| o.uid),
            gid: owner.map_or(0, |o| o.gid),
        };
        let planned = files::with_parents(vec![dir_entry], lower);
        let layer = session.write_layer(&planned)?;
        Ok(Outcome::Layer(layer))
    }
}
