//! The build engine: executes a `BuildPlan` and commits layers.
//!
//! ```text
//! build ─▶ schedule (stages on a worker pool) ─▶ stage (the loop: per step,
//!   steps::prepare ─▶ key ─▶ cache lookup under the CachePolicy ─▶ reuse,
//!   or execute ─▶ commit)
//! ```
//!
//! - `build`: a whole build; `stage`: the loop of one stage; `steps/`: one
//!   file per kind of step, each a pure key and an effectful execution;
//!   `sources`: where a stage and the files of `COPY --from` and RUN mounts
//!   come from (identity for keys, lazy view for execution); `state`: what
//!   a stage carries; `session`: what the stages of a build share.
//! - Services are injected ([`Services`]: store, cache index, executor,
//!   snapshotter, reporter), chosen once by the caller.
//! - `files/`: the files COPY/ADD put in a layer; `container/`: how RUN
//!   runs (mounts, user, executor); `snapshot/`: root filesystems;
//!   `lowerfs`: a stage's file tree read from its layers without unpacking.
//!
//! Uses `plan`, `cache`, `context`, `layer`, `store`, `image`; touches the file
//! system and runs processes. It touches the network only for `ADD <url>`
//! (see `files::add`): every base image is in the content store before
//! execution starts.

mod build;
mod clock;
pub mod container;
pub mod files;
mod fsops;
pub mod lowerfs;
mod report;
mod schedule;
mod services;
mod session;
pub mod snapshot;
mod sources;
mod stage;
mod state;
mod steps;

#[cfg(test)]
mod tests;

pub use build::{build, BuildOutput};
pub use container::executor::{Executor, NoRuntime, RunOutcome, RunRequest, Runc};
pub use container::Secret;
pub use report::{Event, Reporter, StepStatus};
pub use services::{CachePolicy, EngineOptions, Services};
pub use snapshot::{Snapshotter, SnapshotterKind};

use std::path::PathBuf;

use crate::cache::CacheError;
use crate::context::ContextError;
use crate::digest::Sha256Digest;
use crate::layer::LayerError;
use crate::store::StoreError;

/// What can make a build fail.
#[derive(Debug, thiserror::Error)]
pub enum EngineError {
    #[error(transparent)]
    Context(#[from] ContextError),
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error(transparent)]
    Layer(#[from] LayerError),
    #[error(transparent)]
    Cache(#[from] CacheError),
    #[error(transparent)]
    Owner(#[from] files::owner::OwnerError),
    #[error(transparent)]
    Add(#[from] files::add::AddError),
    #[error("reading layer {digest}: {source}")]
    LayerRead {
        digest: Sha256Digest,
        source: std::io::Error,
    },
    #[error("{path}: {source}")]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("{message}")]
    Step { message: String },
    #[error("base image {reference:?} was not resolved before the build")]
    MissingBase { reference: String },
    #[error("the OCI runtime {name:?} was not found\nhint: install runc (`apt-get install runc`), or name one with --runtime or IMGB_RUNTIME")]
    RuntimeMissing { name: String },
    #[error("running the OCI runtime: {message}")]
    Runtime { message: String },
    #[error("interrupted")]
    Interrupted,
    #[error(
        "process \"{command}\" did not complete successfully: exit code: {exit_code}{}",
        tail(output)
    )]
    RunFailed {
        command: String,
        exit_code: i32,
        /// The last lines of its output.
        output: Vec<String>,
    },
    #[error("snapshot: {reason}")]
    Snapshot { reason: String },
    #[error("secret {id:?} is required but was not given (pass --secret id={id},src=FILE)")]
    SecretMissing { id: String },
    #[error("mount at {target:?}: {reason}")]
    Mount { target: String, reason: String },
    #[error("unable to find user {user:?} in the image's /etc/passwd")]
    UnknownUser { user: String },
    #[error("unable to find group {group:?} in the image's /etc/group")]
    UnknownGroup { group: String },
    #[error("{what} is not supported yet ({hint})")]
    Unsupported { what: String, hint: String },
}

fn tail(lines: &[String]) -> String {
    if lines.is_empty() {
        return String::new();
    }
    let mut out = String::from("\noutput (last lines):");
    for line in lines {
        out.push_str("\n  ");
        out.push_str(line);
    }
    out
}

impl EngineError {
    fn layer_read(digest: &Sha256Digest, source: std::io::Error) -> EngineError {
        EngineError::LayerRead {
            digest: *digest,
            source,
        }
    }
}

/// A failed step: the error with the step it happened in.
#[derive(Debug, thiserror::Error)]
#[error("{error}")]
pub struct StepFailure {
    /// Index of the stage in the plan.
    pub stage: usize,
    /// Index of the step in the stage.
    pub step: usize,
    pub error: EngineError,
}
