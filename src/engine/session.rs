//! What the stages of one build share while they run on several threads:
//! the services and options, the inputs (context, base images), the stages
//! built so far, the context's hash index, counters and the stop flag.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicBool, AtomicUsize};
use std::sync::{Arc, Mutex, MutexGuard};

use crate::cache::{CacheKey, CacheRecord};
use crate::context::{BuildContext, HashIndex};
use crate::image::ResolvedImage;

use crate::layer::Layer;
use crate::store::ContentStore;

use super::clock::Clock;
use super::files::{self, Planned};
use super::services::{EngineOptions, Services};
use super::snapshot::Snapshots;
use super::state::StageState;
use super::EngineError;

/// One build in progress.
pub struct Session<'a> {
    pub context: &'a BuildContext,
    pub bases: &'a BTreeMap<String, ResolvedImage>,
    pub services: Services<'a>,
    pub opts: &'a EngineOptions,
    pub clock: Clock,
    hashes: Mutex<HashIndex>,
    /// Built stages by stage id.
    built: Mutex<BTreeMap<usize, Arc<StageState>>>,
    pub cached_steps: AtomicUsize,
    pub executed_steps: AtomicUsize,
    /// Set on Ctrl-C or when a stage fails: running containers are killed
    /// and no further step starts.
    pub stop: AtomicBool,
}

impl<'a> Session<'a> {
    pub fn new(
        context: &'a BuildContext,
        bases: &'a BTreeMap<String, ResolvedImage>,
        services: Services<'a>,
        opts: &'a EngineOptions,
        clock: Clock,
        hashes: HashIndex,
    ) -> Session<'a> {
        Session {
            context,
            bases,
            services,
            opts,
            clock,
            hashes: Mutex::new(hashes),
            built: Mutex::new(BTreeMap::new()),
            cached_steps: AtomicUsize::new(0),
            executed_steps: AtomicUsize::new(0),
            stop: AtomicBool::new(opts.cancel.load(std::sync::atomic::Ordering::SeqCst)),
        }
    }

    pub fn built_mut(&self) -> MutexGuard<'_, BTreeMap<usize, Arc<StageState>>> {
        self.built.lock().unwrap_or_else(|e| e.into_inner())
    }

    pub fn hashes(&self) -> MutexGuard<'_, HashIndex> {
        self.hashes.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// A stage built earlier in this build (plans order stages so that it is).
    pub fn built_stage(&self, id: usize) -> Result<Arc<StageState>, EngineError> {
        self.built_mut()
            .get(&id)
            .cloned()
            .ok_or_else(|| EngineError::Step {
                message: format!("stage {id} is not built"),
            })
    }

    /// A base image resolved before the build.
    pub fn base(&self, reference: &str) -> Result<&'a ResolvedImage, EngineError> {
        self.bases
            .get(reference)
            .ok_or_else(|| EngineError::MissingBase {
                reference: reference.to_string(),
            })
    }

    /// The content store and the unpacked layer dirs, which a stage's view
    /// reads.
    pub fn layer_sources(&self) -> (&'a ContentStore, &'a Snapshots) {
        (self.services.store, self.services.snapshotter.layer_dirs())
    }

    /// Writes `planned` as a new layer, in the build's format and mtime.
    pub fn write_layer(&self, planned: &[Planned]) -> Result<Layer, EngineError> {
        files::write(
            self.services.store,
            &self.opts.layer,
            planned,
            self.clock.mtime(),
        )
    }

    /// The cache record of `key`, when its blob is still in the store.
    pub fn lookup(&self, key: &CacheKey) -> Option<CacheRecord> {
        let store = self.services.store;
        self.services
            .cache
            .get(key)
            .filter(|r| r.layer.as_ref().is_none_or(|l| store.has(&l.digest)))
    }
}
