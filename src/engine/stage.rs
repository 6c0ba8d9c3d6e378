//! Running the stages of a plan: the state each stage carries (config,
//! layers, cache key, filesystem view), the cache, and the steps.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Instant;

use crate::cache::{CacheIndex, CacheKey, CacheRecord, CachedLayer};
use crate::context::{checksum, BuildContext, HashIndex};
use crate::digest::Sha256Digest;
use crate::image::{ChainId, Descriptor, History, ImageConfig};
use crate::layer::{Layer, LayerOptions};
use crate::plan::{
    apply, Base, BuildPlan, ConfigChange, CopyFrom, CopyStep, NetworkMode, RunStep, StagePlan,
    Step, StepKind,
};
use crate::store::ContentStore;

use super::add::{self, AddSources};
use super::copy::{self, CopySpec};
use super::lowerfs::{normalise, LowerFs};
use super::owner::{resolve_chown, Chmod, Owner};
use super::run::{self, Secret};
use super::schedule;
use super::snapshot::SnapshotterKind;
use super::snapshots::Snapshots;
use super::time::{now, rfc3339};
use super::view::RootView;
use super::{EngineError, StepFailure};

/// The history comment BuildKit writes on Dockerfile steps.
const HISTORY_COMMENT: &str = "buildkit.dockerfile.v0";

/// A base image already in the content store.
#[derive(Debug, Clone)]
pub struct ResolvedImage {
    /// The reference as the plan names it.
    pub reference: String,
    pub manifest_digest: Sha256Digest,
    pub config: ImageConfig,
    /// Layer descriptors, bottom first.
    pub layers: Vec<Descriptor>,
}

/// How the engine runs.
#[derive(Debug, Clone, Default)]
pub struct EngineOptions {
    /// The state directory (cache index, context index, snapshots).
    pub home: PathBuf,
    /// `--no-cache`.
    pub no_cache: bool,
    /// `--no-cache-filter`: stage names (or ids) built without the cache.
    pub no_cache_stages: Vec<String>,
    pub layer: LayerOptions,
    /// The OCI runtime binary for RUN (`None`: not found; RUN then fails
    /// with an install hint).
    pub runtime: Option<PathBuf>,
    /// The runtime as the user named it (for that error).
    pub runtime_name: String,
    pub snapshotter: SnapshotterKind,
    /// `--secret`s by id.
    pub secrets: BTreeMap<String, Secret>,
    /// `--network`: the network of RUN steps without `--network`.
    pub network: Option<NetworkMode>,
    /// Set (by the cli's Ctrl-C handler) to stop the build: the running
    /// RUN's container is killed, and no further step starts; temp mounts
    /// and dirs are cleaned up on the way out.
    pub cancel: Arc<AtomicBool>,
    /// `--jobs`: how many stages may build at once (0: one per CPU).
    pub jobs: usize,
}

/// The state of a step, for progress output.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum StepStatus {
    Running,
    Cached,
    Done { seconds: f64 },
}

/// Something worth telling the user while building.
#[derive(Debug, Clone, Copy)]
pub enum Event<'a> {
    Step {
        stage: &'a str,
        index: usize,
        total: usize,
        text: &'a str,
        status: StepStatus,
    },
    Message(&'a str),
    /// A line of output of a running step (stages run side by side, so the
    /// line names its step as [`Event::Step`] does).
    Output {
        stage: &'a str,
        index: usize,
        line: &'a str,
    },
}

/// Receives progress (the cli prints it).
pub trait Reporter: Sync {
    fn report(&self, event: Event<'_>);
}

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

/// A built stage.
#[derive(Debug, Clone)]
struct StageState {
    config: ImageConfig,
    layers: Vec<Descriptor>,
    key: CacheKey,
    /// Layer blob digests whose view is `lower` (built lazily).
    lower: Option<LowerFs>,
    /// When the latest layer was made (or the base image's `created`):
    /// metadata-only steps and the image take it, so a fully cached rebuild
    /// gives the same image id, as with BuildKit.
    last_created: Option<String>,
}

impl StageState {
    /// The view of the stage's layers. A view made for fewer layers (before
    /// the latest COPY or RUN) is extended with the new ones only: reading a
    /// big base image's layers again costs seconds.
    fn lower(
        &mut self,
        store: &ContentStore,
        snapshots: &Snapshots,
    ) -> Result<&LowerFs, EngineError> {
        let digests: Vec<Sha256Digest> = self.layers.iter().map(|d| d.digest).collect();
        let diff_ids = self.config.rootfs.diff_ids.clone();
        let reusable = self.lower.as_ref().is_some_and(|l| {
            l.layers().len() <= digests.len() && l.layers() == &digests[..l.layers().len()]
        });
        if !reusable {
            self.lower = None;
        }
        let lower = match self.lower.as_mut() {
            Some(lower) => lower,
            None => self.lower.insert(LowerFs::empty()),
        };
        let have = lower.layers().len();
        // One pass over the chain ids, and only when a layer is missing.
        let chains = match have < digests.len() && diff_ids.len() == digests.len() {
            true => ChainId::all(&diff_ids),
            false => Vec::new(),
        };
        for (k, digest) in digests.iter().enumerate().skip(have) {
            // A layer already unpacked (by `imgb pull` or an earlier RUN)
            // is read from its directory, not decompressed again.
            let dir = chains.get(k).and_then(|chain| {
                let dir = snapshots.existing_layer(chain)?;
                Some((dir, snapshots.listing_path(chain)))
            });
            let applied = match dir {
                Some((dir, listing)) => lower.apply_layer_dir(digest, &dir, Some(&listing)),
                None => lower.apply_layer(store, digest),
            };
            if let Err(e) = applied {
                // A half-applied view must not be reused.
                self.lower = None;
                return Err(e);
            }
        }
        self.lower.as_ref().ok_or_else(|| EngineError::Step {
            message: "filesystem view unavailable".into(),
        })
    }

    fn push_layer(&mut self, layer: Descriptor, diff_id: Sha256Digest, history: History) {
        self.last_created = history.created.clone();
        self.layers.push(layer);
        self.config.push_layer(diff_id, history);
    }
}

/// What the stages of one build share; stages run on several threads.
struct Build<'a> {
    context: &'a BuildContext,
    store: &'a ContentStore,
    bases: &'a BTreeMap<String, ResolvedImage>,
    opts: &'a EngineOptions,
    reporter: &'a dyn Reporter,
    cache: CacheIndex,
    snapshots: Snapshots,
    hashes: Mutex<HashIndex>,
    epoch: Option<i64>,
    /// Built stages by stage id.
    built: Mutex<BTreeMap<usize, Arc<StageState>>>,
    cached_steps: AtomicUsize,
    executed_steps: AtomicUsize,
    /// Set on Ctrl-C or when a stage fails: running containers are killed
    /// and no further step starts.
    stop: Arc<AtomicBool>,
}

/// Where a step is, for progress events.
#[derive(Clone, Copy)]
struct At<'a> {
    stage: &'a str,
    index: usize,
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

/// Builds `plan`'s target.
pub fn build(
    plan: &BuildPlan,
    context: &BuildContext,
    store: &ContentStore,
    bases: &BTreeMap<String, ResolvedImage>,
    opts: &EngineOptions,
    reporter: &dyn Reporter,
) -> Result<BuildOutput, StepFailure> {
    let hash_index_path = opts.home.join("context-index");
    let build = Build {
        context,
        store,
        bases,
        opts,
        reporter,
        cache: CacheIndex::new(&opts.home.join("cache")),
        snapshots: Snapshots::new(&opts.home),
        hashes: Mutex::new(HashIndex::load(&hash_index_path)),
        epoch: plan.source_date_epoch,
        built: Mutex::new(BTreeMap::new()),
        cached_steps: AtomicUsize::new(0),
        executed_steps: AtomicUsize::new(0),
        stop: Arc::new(AtomicBool::new(opts.cancel.load(Ordering::SeqCst))),
    };
    for message in &plan.warnings {
        reporter.report(Event::Message(message));
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
        &build.stop,
        &opts.cancel,
        |index| {
            let stage = &plan.stages[index];
            build
                .stage(stage)
                .map(|state| (stage.id, state))
                .map_err(|(step, error)| StepFailure {
                    stage: index,
                    step,
                    error,
                })
        },
        |_, (id, state)| {
            build.built_mut().insert(id, Arc::new(state));
        },
    )?;
    // The index is only a cache: failing to save it costs time, not results.
    // Nothing was read this time: the file on disk already knows every
    // digest used, so the (large) index is not rewritten on no-op builds.
    if build.hashes().hashed_files > 0 {
        let _ = build.hashes().save(&hash_index_path);
    }
    let target = &plan.stages[plan.target];
    let built = build.built_mut().remove(&target.id);
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
    let created = match (build.epoch, &state.last_created) {
        (None, Some(last)) => last.clone(),
        _ => build.created(),
    };
    state.config.created = Some(created.clone());
    Ok(BuildOutput {
        config: state.config,
        layers: state.layers,
        created,
        cached_steps: build.cached_steps.load(Ordering::SeqCst),
        executed_steps: build.executed_steps.load(Ordering::SeqCst),
    })
}

impl Build<'_> {
    fn built_mut(&self) -> MutexGuard<'_, BTreeMap<usize, Arc<StageState>>> {
        self.built.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn hashes(&self) -> MutexGuard<'_, HashIndex> {
        self.hashes.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn created(&self) -> String {
        rfc3339(self.epoch.unwrap_or_else(now))
    }

    fn platform(stage: &StagePlan) -> String {
        stage.platform.to_string()
    }

    fn stage_name(stage: &StagePlan) -> String {
        stage
            .name
            .clone()
            .unwrap_or_else(|| format!("stage-{}", stage.id))
    }

    fn start(&self, stage: &StagePlan) -> Result<StageState, EngineError> {
        let mut config = stage.config.clone();
        let platform = Self::platform(stage);
        let state = match &stage.base {
            Base::Scratch => {
                config.os = stage.platform.os.clone();
                config.architecture = stage.platform.architecture.clone();
                config.variant = stage.platform.variant.clone();
                config.rootfs = Default::default();
                config.history.clear();
                StageState {
                    config,
                    layers: Vec::new(),
                    key: CacheKey::base(None, &platform),
                    lower: Some(LowerFs::empty()),
                    last_created: None,
                }
            }
            Base::Image { reference } => {
                let base = self.base(reference)?;
                config.rootfs = base.config.rootfs.clone();
                config.history = base.config.history.clone();
                StageState {
                    config,
                    layers: base.layers.clone(),
                    key: CacheKey::base(Some(&base.manifest_digest), &platform),
                    lower: None,
                    last_created: base.config.created.clone(),
                }
            }
            Base::Stage(id) => {
                let parent = self.built_stage(*id)?;
                config.rootfs = parent.config.rootfs.clone();
                config.history = parent.config.history.clone();
                StageState {
                    config,
                    layers: parent.layers.clone(),
                    key: parent.key,
                    lower: parent.lower.clone(),
                    last_created: parent.last_created.clone(),
                }
            }
        };
        Ok(state)
    }

    fn stage(&self, stage: &StagePlan) -> Result<StageState, (usize, EngineError)> {
        let mut state = self.start(stage).map_err(|e| (0, e))?;
        let name = Self::stage_name(stage);
        let no_cache = self.opts.no_cache
            || self
                .opts
                .no_cache_stages
                .iter()
                .any(|s| s.eq_ignore_ascii_case(&name) || *s == stage.id.to_string());
        let total = stage.steps.len();
        for (index, step) in stage.steps.iter().enumerate() {
            if self.stop.load(Ordering::SeqCst) {
                return Err((index, EngineError::Interrupted));
            }
            let started = Instant::now();
            let report = |status| {
                self.reporter.report(Event::Step {
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
            let cached = self
                .step(stage, step, &mut state, no_cache, at)
                .map_err(|e| (index, e))?;
            if cached {
                self.cached_steps.fetch_add(1, Ordering::SeqCst);
                report(StepStatus::Cached);
            } else {
                if step.creates_layer() {
                    self.executed_steps.fetch_add(1, Ordering::SeqCst);
                }
                report(StepStatus::Done {
                    seconds: started.elapsed().as_secs_f64(),
                });
            }
        }
        Ok(state)
    }

    fn history(&self, step: &Step, created: Option<String>) -> History {
        History {
            created: Some(created.unwrap_or_else(|| self.created())),
            created_by: Some(step.created_by.clone()),
            comment: Some(HISTORY_COMMENT.to_string()),
            ..History::default()
        }
    }

    /// Runs one step; returns whether it came from the cache.
    fn step(
        &self,
        stage: &StagePlan,
        step: &Step,
        state: &mut StageState,
        no_cache: bool,
        at: At<'_>,
    ) -> Result<bool, EngineError> {
        match &step.kind {
            StepKind::Config(ConfigChange::Workdir(dir)) => {
                apply(&mut state.config, &ConfigChange::Workdir(dir.clone()));
                if normalise(dir).is_empty() {
                    state
                        .config
                        .push_empty_layer(self.history(step, self.metadata_time(state)));
                    return Ok(false);
                }
                self.workdir(stage, step, state, dir, no_cache)
            }
            StepKind::Config(change) => {
                apply(&mut state.config, change);
                // BuildKit records no history for ONBUILD.
                if step.records_history() {
                    state
                        .config
                        .push_empty_layer(self.history(step, self.metadata_time(state)));
                }
                Ok(false)
            }
            StepKind::Copy(copy) => self.copy(stage, step, state, copy, no_cache),
            StepKind::Run(r) => self.run(stage, step, state, r, no_cache, at),
        }
    }

    /// The time of a metadata-only step: that of the latest layer.
    fn metadata_time(&self, state: &StageState) -> Option<String> {
        if self.epoch.is_some() {
            return None;
        }
        state.last_created.clone()
    }

    fn layer_key_fields(&self) -> serde_json::Value {
        // `encoding` names the encoder's output format: when it changes
        // (gzip became chunked in v2; v3 stores incompressible chunks and
        // gives every chunk a new compressor), cached layers of the old format miss,
        // so every machine makes the same bytes for the same inputs.
        serde_json::json!({
            "compression": self.opts.layer.compression.name(),
            "encoding": 3,
            "level": self.opts.layer.level,
            "mtime": self.mtime(),
        })
    }

    fn mtime(&self) -> u64 {
        self.epoch.map(|e| e.max(0) as u64).unwrap_or(0)
    }

    /// A cache hit whose blob is still in the store.
    fn lookup(&self, key: &CacheKey, no_cache: bool) -> Option<CacheRecord> {
        if no_cache {
            return None;
        }
        self.cache
            .get(key)
            .filter(|r| r.layer.as_ref().is_none_or(|l| self.store.has(&l.digest)))
    }

    fn commit(
        &self,
        step: &Step,
        state: &mut StageState,
        key: CacheKey,
        layer: Layer,
    ) -> Result<(), EngineError> {
        let created = self.created();
        // Cached layers survive `imgb prune` until the cache itself is pruned.
        self.store.add_root("cache", &layer.digest)?;
        self.cache.put(&CacheRecord {
            key,
            layer: Some(CachedLayer {
                digest: layer.digest,
                size: layer.size,
                diff_id: layer.diff_id,
                media_type: layer.media_type.clone(),
            }),
            created: created.clone(),
        })?;
        let history = self.history(step, Some(created));
        state.push_layer(
            Descriptor::new(&layer.media_type, layer.digest, layer.size),
            layer.diff_id,
            history,
        );
        state.key = key;
        Ok(())
    }

    fn reuse(&self, step: &Step, state: &mut StageState, record: CacheRecord) {
        let created = if self.epoch.is_some() {
            None
        } else {
            Some(record.created.clone())
        };
        let history = self.history(step, created);
        match record.layer {
            Some(layer) => state.push_layer(
                Descriptor::new(&layer.media_type, layer.digest, layer.size),
                layer.diff_id,
                history,
            ),
            None => state.config.push_empty_layer(History {
                empty_layer: true,
                ..history
            }),
        }
        state.key = record.key;
    }

    fn workdir(
        &self,
        stage: &StagePlan,
        step: &Step,
        state: &mut StageState,
        dir: &str,
        no_cache: bool,
    ) -> Result<bool, EngineError> {
        let json = serde_json::json!({ "workdir": dir, "user": state.config.config.as_ref().and_then(|c| c.user.clone()), "layer": self.layer_key_fields() });
        let key = CacheKey::step(state.key, &Self::platform(stage), &json, &BTreeMap::new());
        // An existing directory needs no layer, only history. Whether it
        // exists is a function of the parent key, so the answer is cached
        // too (a record without a layer): a no-op rebuild then never
        // reads the stage's files.
        let metadata_only = |state: &mut StageState| {
            state
                .config
                .push_empty_layer(self.history(step, self.metadata_time(state)));
            Ok(false)
        };
        if let Some(record) = self.lookup(&key, no_cache) {
            if record.layer.is_none() {
                return metadata_only(state);
            }
            self.reuse(step, state, record);
            return Ok(true);
        }
        if state.lower(self.store, &self.snapshots)?.is_dir(dir) {
            // Only a cache: failing to store the answer costs time later.
            let _ = self.cache.put(&CacheRecord {
                key,
                layer: None,
                created: self.created(),
            });
            return metadata_only(state);
        }
        let owner = self.user_owner(state)?;
        let lower = state.lower(self.store, &self.snapshots)?;
        let dir_entry = copy::Planned {
            path: normalise(dir),
            content: copy::Content::Dir,
            mode: 0o755,
            uid: owner.map_or(0, |o| o.uid),
            gid: owner.map_or(0, |o| o.gid),
        };
        let planned = copy::with_parents(vec![dir_entry], lower);
        let layer = copy::write(self.store, &self.opts.layer, &planned, self.mtime())?;
        self.commit(step, state, key, layer)?;
        Ok(false)
    }

    /// The owner for the current USER (WORKDIR creates its directory owned
    /// by it, as BuildKit does); root when unset or unknown.
    fn user_owner(&self, state: &mut StageState) -> Result<Option<Owner>, EngineError> {
        let user = state
            .config
            .config
            .as_ref()
            .and_then(|c| c.user.clone())
            .unwrap_or_default();
        if user.is_empty() || user == "root" || user == "0" {
            return Ok(None);
        }
        let (passwd, group) = self.account_files(state)?;
        Ok(resolve_chown(&user, passwd.as_deref(), group.as_deref()).ok())
    }

    /// The stage's `/etc/passwd` and `/etc/group`, for names in `--chown`
    /// and USER.
    fn account_files(
        &self,
        state: &mut StageState,
    ) -> Result<(Option<String>, Option<String>), EngineError> {
        let lower = state.lower(self.store, &self.snapshots)?;
        let read = |path| -> Result<Option<String>, EngineError> {
            Ok(lower
                .read_file(self.store, path)?
                .map(|b| String::from_utf8_lossy(&b).into_owned()))
        };
        Ok((read("/etc/passwd")?, read("/etc/group")?))
    }

    fn copy(
        &self,
        stage: &StagePlan,
        step: &Step,
        state: &mut StageState,
        c: &CopyStep,
        no_cache: bool,
    ) -> Result<bool, EngineError> {
        // ADD's own part: archives, downloads (see add.rs).
        let mut add = if c.is_add {
            Some(AddSources::new(c, &self.opts.home)?)
        } else {
            None
        };
        let inline: Vec<(String, Vec<u8>)> = c
            .heredocs
            .iter()
            .map(|h| (h.name.clone(), h.content.clone().into_bytes()))
            .collect();
        let sources: Vec<String> = c
            .sources
            .iter()
            .filter(|s| !(c.is_add && add::is_url(s)))
            .filter(|s| {
                !c.heredocs.iter().any(|h| {
                    **s == h.name
                        || s.trim_start_matches("<<-")
                            .trim_start_matches("<<")
                            .trim_matches('"')
                            .trim_matches('\'')
                            == h.name
                })
            })
            .cloned()
            .collect();
        let mut inputs: BTreeMap<String, Sha256Digest> = BTreeMap::new();
        for (name, bytes) in &inline {
            inputs.insert(format!("inline/{name}"), Sha256Digest::of(bytes));
        }
        let spec = CopySpec {
            sources: &sources,
            inline: &inline,
            dest: &c.dest,
            parents: c.parents,
            excludes: &c.excludes,
            from_context: matches!(c.from, CopyFrom::Context),
        };
        // The key's inputs: the exact selected context files, or the identity
        // of the stage or image the files come from.
        let mut selections = Vec::new();
        match &c.from {
            CopyFrom::Context => {
                selections = copy::select(self.context, &spec)?;
                for (i, selection) in selections.iter().enumerate() {
                    let sum = checksum(self.context, &selection.entries, &mut self.hashes())
                        .map_err(|source| EngineError::Io {
                            path: self.context.abs(&selection.path),
                            source,
                        })?;
                    inputs.insert(format!("src/{i}/{}", selection.path), sum);
                }
            }
            CopyFrom::Stage(id) => {
                let parent = self.built_stage(*id)?;
                inputs.insert("from".into(), *parent.key.digest());
            }
            CopyFrom::Image(reference) => {
                let base = self.base(reference)?;
                inputs.insert("from".into(), base.manifest_digest);
            }
        }
        if let Some(add) = add.as_mut() {
            add.key_inputs(&mut inputs)?;
        }
        let mut json = serde_json::to_value(c).unwrap_or_default();
        json["layer"] = self.layer_key_fields();
        let platform = Self::platform(stage);
        // `--link`: the layer does not depend on what is below it, so its
        // key starts from nothing and it is written against an empty
        // filesystem (parents included); the stage's chain still moves on.
        let chain_parent = state.key;
        let key_parent = if c.link {
            CacheKey::base(None, &platform)
        } else {
            chain_parent
        };
        let key = CacheKey::step(key_parent, &platform, &json, &inputs);
        let relink = |state: &mut StageState| {
            if c.link {
                let link = serde_json::json!({ "link": key.to_string() });
                state.key = CacheKey::step(chain_parent, &platform, &link, &BTreeMap::new());
            }
        };
        if let Some(record) = self.lookup(&key, no_cache) {
            self.reuse(step, state, record);
            relink(state);
            return Ok(true);
        }
        if let Some(add) = add.as_mut() {
            add.fetch()?;
        }
        // A miss: materialise a stage's or image's filesystem if needed.
        let from_root = match &c.from {
            CopyFrom::Context => None,
            CopyFrom::Stage(id) => {
                let parent = self.built_stage(*id)?;
                Some(self.rootfs(&parent.config.rootfs.diff_ids, &parent.layers)?)
            }
            CopyFrom::Image(reference) => {
                let base = self.base(reference)?;
                Some(self.rootfs(&base.config.rootfs.diff_ids, &base.layers)?)
            }
        };
        let from_ctx = from_root
            .as_ref()
            .map(|view| BuildContext::without_ignore(view.path()))
            .transpose()?;
        let root = from_ctx.as_ref().unwrap_or(self.context);
        if from_ctx.is_some() {
            selections = copy::select(root, &spec)?;
        }
        let owner = match &c.chown {
            Some(spec) => {
                let (passwd, group) = self.account_files(state)?;
                Some(resolve_chown(spec, passwd.as_deref(), group.as_deref())?)
            }
            None => None,
        };
        let chmod = c.chmod.as_deref().map(Chmod::parse).transpose()?;
        let empty = LowerFs::empty();
        let lower = if c.link {
            &empty
        } else {
            state.lower(self.store, &self.snapshots)?
        };
        let mut planned = copy::plan(root, &selections, &spec, lower, owner, chmod.as_ref())?;
        if let Some(add) = add.as_mut() {
            let files: Vec<PathBuf> = selections
                .iter()
                .filter(|s| !s.is_dir)
                .filter_map(|s| s.entries.first())
                .map(|e| root.abs(&e.context_path))
                .collect();
            planned = add.finish(planned, &files, &c.dest, lower, owner, chmod.as_ref())?;
        }
        let layer = copy::write(self.store, &self.opts.layer, &planned, self.mtime())?;
        self.commit(step, state, key, layer)?;
        relink(state);
        Ok(false)
    }

    fn run(
        &self,
        stage: &StagePlan,
        step: &Step,
        state: &mut StageState,
        r: &RunStep,
        no_cache: bool,
        at: At<'_>,
    ) -> Result<bool, EngineError> {
        let network = run::effective_network(r, self.opts.network);
        let mut json = run::cache_json(r, network);
        json["layer"] = self.layer_key_fields();
        // Mount sources are inputs: the selected context files, or the
        // identity of the stage or image.
        let mut inputs: BTreeMap<String, Sha256Digest> = BTreeMap::new();
        for (i, m) in r.mounts.iter().enumerate() {
            match &m.source_from {
                Some(CopyFrom::Context) => {
                    let source = m.mount.source.clone().unwrap_or_else(|| "/".into());
                    for (j, selection) in self.context.select(&source)?.iter().enumerate() {
                        let sum = checksum(self.context, &selection.entries, &mut self.hashes())
                            .map_err(|source| EngineError::Io {
                                path: self.context.abs(&selection.path),
                                source,
                            })?;
                        inputs.insert(format!("mount/{i}/{j}"), sum);
                    }
                }
                Some(CopyFrom::Stage(id)) => {
                    let parent = self.built_stage(*id)?;
                    inputs.insert(format!("mount/{i}"), *parent.key.digest());
                }
                Some(CopyFrom::Image(reference)) => {
                    let base = self.base(reference)?;
                    inputs.insert(format!("mount/{i}"), base.manifest_digest);
                }
                None => {}
            }
        }
        let key = CacheKey::step(state.key, &Self::platform(stage), &json, &inputs);
        if let Some(record) = self.lookup(&key, no_cache) {
            self.reuse(step, state, record);
            return Ok(true);
        }
        let binary = self
            .opts
            .runtime
            .clone()
            .ok_or_else(|| EngineError::RuntimeMissing {
                name: self.opts.runtime_name.clone(),
            })?;
        let executor = super::executor::Runc {
            binary,
            state: self.opts.home.join("runc"),
            cancel: self.stop.clone(),
        };
        // Each mount source's identity: its key inputs, hashed.
        let source_keys: Vec<Option<Sha256Digest>> = (0..r.mounts.len())
            .map(|i| {
                let prefix = format!("mount/{i}");
                let parts: Vec<String> = inputs
                    .iter()
                    .filter(|(k, _)| **k == prefix || k.starts_with(&format!("{prefix}/")))
                    .map(|(k, v)| format!("{k}={v}\n"))
                    .collect();
                (!parts.is_empty()).then(|| Sha256Digest::of(parts.concat().as_bytes()))
            })
            .collect();
        let mut sources = Vec::new();
        // Views of stages and images stay mounted until the run is over.
        let mut views = Vec::new();
        let mut view = |v: RootView| {
            let path = v.path().to_path_buf();
            views.push(v);
            path
        };
        for m in &r.mounts {
            use crate::plan::MountType;
            sources.push(match &m.source_from {
                Some(CopyFrom::Context)
                    if matches!(m.mount.kind, MountType::Bind | MountType::Cache) =>
                {
                    Some(self.context.root().to_path_buf())
                }
                Some(CopyFrom::Stage(id)) => {
                    let parent = self.built_stage(*id)?;
                    Some(view(
                        self.rootfs(&parent.config.rootfs.diff_ids, &parent.layers)?,
                    ))
                }
                Some(CopyFrom::Image(reference)) => {
                    let base = self.base(reference)?;
                    Some(view(
                        self.rootfs(&base.config.rootfs.diff_ids, &base.layers)?,
                    ))
                }
                _ => None,
            });
        }
        let lower = super::snapshots::Lower::new(&state.config.rootfs.diff_ids, &state.layers);
        // Root needs no account files; others come from the layer dirs RUN
        // mounts anyway (reading the layers' tars costs seconds on big bases).
        let (passwd, group) = match r.user.is_empty() {
            true => (None, None),
            false => match run::account_files(&self.opts.home, self.store, &lower) {
                Some(files) => files,
                None => self.account_files(state)?,
            },
        };
        let user = run::resolve_user(&r.user, passwd.as_deref(), group.as_deref())?;
        let cx = run::RunContext {
            executor: &executor,
            snapshotter: self.opts.snapshotter,
            home: &self.opts.home,
            store: self.store,
            layer: &self.opts.layer,
            secrets: &self.opts.secrets,
            network,
            lower,
            user,
            sources,
            source_keys,
        };
        let reporter = self.reporter;
        let layer = run::execute(&cx, r, &mut |line| {
            reporter.report(Event::Output {
                stage: at.stage,
                index: at.index,
                line,
            })
        })?;
        self.commit(step, state, key, layer)?;
        Ok(false)
    }

    /// A stage built earlier in this build (plans order stages so that it is).
    fn built_stage(&self, id: usize) -> Result<Arc<StageState>, EngineError> {
        self.built_mut()
            .get(&id)
            .cloned()
            .ok_or_else(|| EngineError::Step {
                message: format!("stage {id} is not built"),
            })
    }

    fn base(&self, reference: &str) -> Result<&ResolvedImage, EngineError> {
        self.bases
            .get(reference)
            .ok_or_else(|| EngineError::MissingBase {
                reference: reference.to_string(),
            })
    }

    /// The merged filesystem of some layers, cached per chain id under
    /// `IMGB_HOME/snapshots/merged`.
    fn rootfs(
        &self,
        diff_ids: &[Sha256Digest],
        layers: &[Descriptor],
    ) -> Result<RootView, EngineError> {
        let lower = super::snapshots::Lower::new(diff_ids, layers);
        RootView::open(
            &self.snapshots,
            self.store,
            &lower,
            &self.opts.home,
            self.opts.snapshotter,
        )
    }
}
