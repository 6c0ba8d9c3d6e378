//! Planning: the stage graph (stages, their dependencies, target pruning,
//! bases to pull), ARG/ENV scoping, build args, predefined platform ARGs,
//! ONBUILD triggers, and lowering a Dockerfile into a `BuildPlan` of `Step`s.
//!
//! Pure: no I/O. Uses `dockerfile`, `image` and `digest`.
//!
//! ```text
//! Dockerfile ──outline──▶ StageGraph (needed stages, deps, images to pull)
//!            ──lower(base configs)──▶ BuildPlan (stages of expanded Steps)
//! ```
//!
//! Behaviour follows BuildKit's `dockerfile2llb`: a FROM names a stage only
//! if that stage is defined earlier; `COPY --from` and `RUN
//! --mount=from=` name any stage (a later one is an error), a stage index,
//! or else an image; ONBUILD triggers run first in the child stage.

mod args;
mod config;
mod graph;
mod lower;
mod platform;
mod render;
mod step;

#[cfg(test)]
mod tests;

use std::collections::BTreeMap;

pub use config::apply;
pub use graph::{outline, ExternalImage, StageGraph, StageNode};
pub use lower::lower;
pub use platform::Platform;
pub use render::{render_dot, render_json, render_text};
pub use step::{
    Base, BuildPlan, ConfigChange, CopyFrom, CopyStep, RunMount, RunStep, StagePlan, Step, StepKind,
};

use crate::dockerfile::ExpandError;

// The engine may not name `dockerfile`: the RUN step's option types reach it
// through the plan.
pub use crate::dockerfile::{Heredoc, Mount, MountType, NetworkMode, SecurityMode, Sharing, Span};

/// What the user asked for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PlanOptions {
    /// `--target`: a stage name; `None` builds the last stage.
    pub target: Option<String>,
    /// `--build-arg NAME=VALUE`s.
    pub build_args: BTreeMap<String, String>,
    /// The platform to build for (`--platform`, default: the build platform).
    pub platform: Platform,
    /// The platform imgb runs on.
    pub build_platform: Platform,
    /// `--label`s for the final image.
    pub labels: BTreeMap<String, String>,
}

impl PlanOptions {
    /// Options building the last stage for `platform` on `platform`.
    pub fn new(platform: Platform) -> PlanOptions {
        PlanOptions {
            target: None,
            build_args: BTreeMap::new(),
            build_platform: platform.clone(),
            platform,
            labels: BTreeMap::new(),
        }
    }
}

/// Why a Dockerfile cannot be planned. Variants with a `line` point at the
/// Dockerfile line to show.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PlanError {
    #[error("target stage {target:?} could not be found (stages: {})", if available.is_empty() { "none named".to_string() } else { available.join(", ") })]
    UnknownTarget {
        target: String,
        available: Vec<String>,
    },
    #[error("line {line}: invalid stage index {index} (the Dockerfile has {count} stages)")]
    BadStageIndex {
        line: usize,
        index: usize,
        count: usize,
    },
    #[error("line {line}: cannot copy from stage {from:?}, it needs to be defined before current stage {stage:?}")]
    LaterStage {
        line: usize,
        from: String,
        stage: String,
    },
    #[error("line {line}: circular dependency detected on stage: {}", stages.join(" -> "))]
    Cycle { line: usize, stages: Vec<String> },
    #[error("line {line}: variable expansion is not supported for --from, define a new stage with FROM using ARG from global scope as a workaround")]
    FromVariable { line: usize },
    #[error("line {line}: base name ({base}) should not be blank")]
    BlankBase { line: usize, base: String },
    #[error("line {line}: {source}")]
    Expand {
        line: usize,
        #[source]
        source: ExpandError,
    },
    #[error("invalid platform {platform:?}: {reason}")]
    BadPlatform { platform: String, reason: String },
    #[error("line {line}: failed to parse platform {platform:?}: {reason}")]
    FromPlatform {
        line: usize,
        platform: String,
        reason: String,
    },
    #[error("line {line}: ONBUILD trigger {trigger:?} of the base image: {reason}")]
    Onbuild {
        line: usize,
        trigger: String,
        reason: String,
    },
    #[error("line {line}: {keyword}: {reason}")]
    BadValue {
        line: usize,
        keyword: &'static str,
        reason: String,
    },
    #[error("invalid SOURCE_DATE_EPOCH {value:?}: expected seconds since 1970 (an integer)")]
    SourceDateEpoch { value: String },
}

impl PlanError {
    /// The Dockerfile line the error is about, if any.
    pub fn line(&self) -> Option<usize> {
        match self {
            PlanError::BadStageIndex { line, .. }
            | PlanError::LaterStage { line, .. }
            | PlanError::Cycle { line, .. }
            | PlanError::FromVariable { line }
            | PlanError::BlankBase { line, .. }
            | PlanError::Expand { line, .. }
            | PlanError::FromPlatform { line, .. }
            | PlanError::Onbuild { line, .. }
            | PlanError::BadValue { line, .. } => Some(*line),
            PlanError::UnknownTarget { .. }
            | PlanError::BadPlatform { .. }
            | PlanError::SourceDateEpoch { .. } => None,
        }
    }
}
