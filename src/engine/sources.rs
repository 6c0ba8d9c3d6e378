//! Where a stage and the files of its steps come from, resolved once for
//! every user: a stage's start (scratch, a base image, another stage), and
//! the source of a `COPY --from` or a RUN mount with its identity (for cache
//! keys) and a lazy view of its files (for execution).

use crate::cache::CacheKey;
use crate::context::Selection;
use crate::digest::Sha256Digest;
use crate::plan::{Base, CopyFrom, StagePlan};

use super::lowerfs::LowerFs;
use super::session::Session;
use super::snapshot::{Lower, RootView};
use super::state::StageState;
use super::EngineError;

/// The source of files, resolved.
#[derive(Debug, Clone)]
pub enum Source {
    /// The build context: identified by checksums of the selected files.
    Context,
    /// A built stage or a base image: identified by the stage's cache key
    /// or the image's manifest digest; its files are its layers'.
    Layers {
        identity: Sha256Digest,
        lower: Lower,
    },
}

impl Source {
    /// The identity of a stage or image source (`None` for the context,
    /// whose identity is that of the files selected from it).
    pub fn identity(&self) -> Option<Sha256Digest> {
        match self {
            Source::Context => None,
            Source::Layers { identity, .. } => Some(*identity),
        }
    }
}

impl Session<'_> {
    /// Resolves where files come from.
    pub fn source(&self, from: &CopyFrom) -> Result<Source, EngineError> {
        Ok(match from {
            CopyFrom::Context => Source::Context,
            CopyFrom::Stage(id) => {
                let stage = self.built_stage(*id)?;
                Source::Layers {
                    identity: *stage.key.digest(),
                    lower: stage.stack(),
                }
            }
            CopyFrom::Image(reference) => {
                let base = self.base(reference)?;
                Source::Layers {
                    identity: base.manifest_digest,
                    lower: Lower::new(&base.config.rootfs.diff_ids, &base.layers),
                }
            }
        })
    }

    /// The files of a stage or image source, as a mounted (or merged)
    /// read-only tree; `None` for the context (read in place).
    pub fn view(&self, source: &Source) -> Result<Option<RootView>, EngineError> {
        match source {
            Source::Context => Ok(None),
            Source::Layers { lower, .. } => self
                .services
                .snapshotter
                .view(self.services.store, lower)
                .map(Some),
        }
    }

    /// The content checksum of files selected from the context.
    pub fn checksum(&self, selection: &Selection) -> Result<Sha256Digest, EngineError> {
        crate::context::checksum(self.context, &selection.entries, &mut self.hashes()).map_err(
            |source| EngineError::Io {
                path: self.context.abs(&selection.path),
                source,
            },
        )
    }

    /// The state a stage starts from: scratch, a base image's config and
    /// layers, or a built stage's.
    pub fn start(&self, stage: &StagePlan) -> Result<StageState, EngineError> {
        let mut config = stage.config.clone();
        let platform = stage.platform.to_string();
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
                    platform,
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
                    platform,
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
                    platform,
                    lower: parent.lower.clone(),
                    last_created: parent.last_created.clone(),
                }
            }
        };
        Ok(state)
    }
}
