//! RUN: the key (the normalised command, its environment, user, network,
//! mounts, and the identities of mount sources), then, on a miss, the
//! command run by the executor on a snapshot of the stage and the layer of
//! what it changed.

use std::collections::BTreeMap;

use crate::cache::CacheKey;
use crate::digest::Sha256Digest;
use crate::plan::{MountType, NetworkMode, RunStep};

use super::super::container::user::{account_files, resolve_user};
use super::super::container::{self, MountInputs, RunContext};
use super::super::report::{At, Event};
use super::super::session::Session;
use super::super::snapshot::RootView;
use super::super::sources::Source;
use super::super::state::StageState;
use super::super::EngineError;
use super::{layer_format, Keys, LayerStep, Outcome};

pub struct Run<'s> {
    step: &'s RunStep,
    network: NetworkMode,
    /// Each mount's source, where it has one.
    sources: Vec<Option<Source>>,
    /// The key inputs: per mount, the checksums of the selected context
    /// files (`mount/I/J`) or the identity of a stage or image (`mount/I`).
    inputs: BTreeMap<String, Sha256Digest>,
}

impl<'s> Run<'s> {
    pub fn new(session: &Session, step: &'s RunStep) -> Run<'s> {
        Run {
            step,
            network: effective_network(step, session.opts.network),
            sources: Vec::new(),
            inputs: BTreeMap::new(),
        }
    }

    /// Each mount source's identity: its key inputs, hashed (names the
    /// cache of a `from=` cache mount).
    fn source_keys(&self) -> Vec<Option<Sha256Digest>> {
        (0..self.step.mounts.len())
            .map(|i| {
                let prefix = format!("mount/{i}");
                let parts: Vec<String> = self
                    .inputs
                    .iter()
                    .filter(|(k, _)| **k == prefix || k.starts_with(&format!("{prefix}/")))
                    .map(|(k, v)| format!("{k}={v}\n"))
                    .collect();
                (!parts.is_empty()).then(|| Sha256Digest::of(parts.concat().as_bytes()))
            })
            .collect()
    }
}

/// The normalised RUN for its cache key: everything that changes what it
/// does, and no secret value (mounts are described by their options only).
pub fn cache_json(run: &RunStep, network: NetworkMode) -> serde_json::Value {
    let mounts: Vec<serde_json::Value> = run
        .mounts
        .iter()
        .map(|m| serde_json::to_value(m).unwrap_or_default())
        .collect();
    let heredocs: Vec<serde_json::Value> = run
        .heredocs
        .iter()
        .map(|h| serde_json::json!({"name": h.name, "content": h.content}))
        .collect();
    serde_json::json!({
        "run": {
            "argv": run.argv,
            "env": run.cache_env,
            "workdir": run.workdir,
            "user": run.user,
            "network": network,
            "security": run.security,
            "mounts": mounts,
            "heredocs": heredocs,
        }
    })
}

/// The RUN's network after `--network` on the command line.
pub fn effective_network(run: &RunStep, default: Option<NetworkMode>) -> NetworkMode {
    match (run.network, default) {
        (NetworkMode::Default, Some(d)) => d,
        (n, _) => n,
    }
}

/// The key of a RUN on top of `parent`.
pub fn key(
    parent: CacheKey,
    platform: &str,
    step: &RunStep,
    network: NetworkMode,
    inputs: &BTreeMap<String, Sha256Digest>,
    format: serde_json::Value,
) -> Keys {
    let mut json = cache_json(step, network);
    json["layer"] = format;
    let key = CacheKey::step(parent, platform, &json, inputs);
    Keys { key, chain: key }
}

impl LayerStep for Run<'_> {
    fn keys(&mut self, session: &Session, state: &mut StageState) -> Result<Keys, EngineError> {
        // Mount sources are inputs: the selected context files, or the
        // identity of the stage or image.
        self.inputs.clear();
        self.sources.clear();
        for (i, m) in self.step.mounts.iter().enumerate() {
            let source = match &m.source_from {
                Some(from) => Some(session.source(from)?),
                None => None,
            };
            match &source {
                Some(Source::Context) => {
                    let path = m.mount.source.clone().unwrap_or_else(|| "/".into());
                    for (j, selection) in session.context.select(&path)?.iter().enumerate() {
                        let sum = session.checksum(selection)?;
                        self.inputs.insert(format!("mount/{i}/{j}"), sum);
                    }
                }
                Some(Source::Layers { identity, .. }) => {
                    self.inputs.insert(format!("mount/{i}"), *identity);
                }
                None => {}
            }
            self.sources.push(source);
        }
        Ok(key(
            state.key,
            &state.platform,
            self.step,
            self.network,
            &self.inputs,
            layer_format(session),
        ))
    }

    fn execute(
        &mut self,
        session: &Session,
        state: &mut StageState,
        at: At<'_>,
    ) -> Result<Outcome, EngineError> {
        let services = session.services;
        services.executor.check()?;
        // Views of stages and images stay mounted until the run is over.
        let mut views: Vec<RootView> = Vec::new();
        let mut roots = Vec::new();
        for (m, source) in self.step.mounts.iter().zip(&self.sources) {
            roots.push(match source {
                Some(Source::Context)
                    if matches!(m.mount.kind, MountType::Bind | MountType::Cache) =>
                {
                    Some(session.context.root().to_path_buf())
                }
                Some(source @ Source::Layers { .. }) => match session.view(source)? {
                    Some(view) => {
                        let path = view.path().to_path_buf();
                        views.push(view);
                        Some(path)
                    }
                    None => None,
                },
                _ => None,
            });
        }
        let lower = state.stack();
        let layer_dirs = services.snapshotter.layer_dirs();
        // Root needs no account files; others come from the layer dirs RUN
        // mounts anyway (reading the layers' tars costs seconds on big bases).
        let (passwd, group) = match self.step.user.is_empty() {
            true => (None, None),
            false => match account_files(layer_dirs, services.store, &lower) {
                Some(files) => files,
                None => state.account_files(services.store, layer_dirs)?,
            },
        };
        let user = resolve_user(&self.step.user, passwd.as_deref(), group.as_deref())?;
        let cache_root = session.opts.home.join("cache-mounts");
        let cx = RunContext {
            executor: services.executor,
            snapshotter: services.snapshotter,
            store: services.store,
            layer: &session.opts.layer,
            cancel: &session.stop,
            network: self.network,
            lower,
            user,
            mounts: MountInputs {
                secrets: &session.opts.secrets,
                cache_root: &cache_root,
                sources: roots,
                source_keys: self.source_keys(),
            },
        };
        let reporter = services.reporter;
        let layer = container::execute(&cx, self.step, &mut |line| {
            reporter.report(Event::Output {
                stage: at.stage,
                index: at.index,
                line,
            })
        })?;
        drop(views);
        Ok(Outcome::Layer(layer))
    }
}
