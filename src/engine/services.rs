//! What the engine is given rather than builds: the services of a build
//! (content store, cache index, executor, snapshotter, reporter), the cache
//! policy, and the options of a run.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::atomic::AtomicBool;
use std::sync::Arc;

use crate::cache::CacheIndex;
use crate::layer::LayerOptions;
use crate::plan::NetworkMode;
use crate::store::ContentStore;

use super::container::executor::Executor;
use super::container::Secret;
use super::report::Reporter;
use super::snapshot::Snapshotter;

/// The services a build uses: chosen once (from the environment, by the
/// caller) and injected, so that tests can fake the executor.
#[derive(Clone, Copy)]
pub struct Services<'a> {
    /// Blobs: base layers in, new layers out.
    pub store: &'a ContentStore,
    /// Cache records by key.
    pub cache: &'a CacheIndex,
    /// Runs RUN commands.
    pub executor: &'a dyn Executor,
    /// Makes root filesystems for RUN and views for `COPY --from`.
    pub snapshotter: &'a Snapshotter,
    /// Hears about progress.
    pub reporter: &'a dyn Reporter,
}

/// Whether steps may reuse cached results. Results are recorded either way,
/// so that the next build can reuse them.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub enum CachePolicy {
    /// Reuse every cached step (the default).
    #[default]
    Reuse,
    /// `--no-cache`: run every step.
    Rebuild,
    /// `--no-cache-filter`: run the steps of these stages (names, matched
    /// without case, or ids); reuse the others'.
    RebuildStages(Vec<String>),
}

/// The cache policy for one stage.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StageCache {
    /// Look steps up in the cache.
    Reuse,
    /// Run every step.
    Rebuild,
}

impl CachePolicy {
    /// The policy of the stage `name` (id `id`).
    pub fn for_stage(&self, name: &str, id: usize) -> StageCache {
        let rebuild = match self {
            CachePolicy::Reuse => false,
            CachePolicy::Rebuild => true,
            CachePolicy::RebuildStages(stages) => stages
                .iter()
                .any(|s| s.eq_ignore_ascii_case(name) || *s == id.to_string()),
        };
        match rebuild {
            true => StageCache::Rebuild,
            false => StageCache::Reuse,
        }
    }
}

/// How the engine runs.
#[derive(Debug, Clone, Default)]
pub struct EngineOptions {
    /// The state directory: the context's hash index, cache mounts and
    /// ADD's scratch files live there.
    pub home: PathBuf,
    pub cache: CachePolicy,
    pub layer: LayerOptions,
    /// `--secret`s by id.
    pub secrets: BTreeMap<String, Secret>,
    /// `--network`: the network of RUN steps without `--network`.
    pub network: Option<NetworkMode>,
    /// Set (by the cli's Ctrl-C handler) to stop the build: the running
    /// RUN's container is killed, and no further step starts; temp mounts
    /// and dirs are cleaned up on the way out.
    pub cancel: Arc<AtomicBool>,
    /// `--jobs`: how many stages may build at once (0: four per CPU).
    pub jobs: usize,
}
