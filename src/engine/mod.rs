//! The build engine: executes a `BuildPlan` (stage by stage, cache lookups,
//! COPY/ADD, metadata) and commits layers.
//!
//! Uses `plan`, `cache`, `context`, `layer`, `store`, `image`; touches the file
//! system and runs processes. It touches the network only for `ADD <url>`
//! (see `add`): every base image is in the content store before execution
//! starts.

pub mod add;
pub mod archive;
mod cachemount;
pub mod copy;
pub mod copydiff;
pub mod executor;
pub mod lowerdirs;
pub mod lowerfs;
pub mod mounts;
pub mod owner;
pub mod run;
mod schedule;
pub mod snapshot;
pub mod snapshots;
pub mod time;
mod view;

mod stage;

pub use stage::{build, BuildOutput, EngineOptions, Event, Reporter, ResolvedImage, StepStatus};

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
    Owner(#[from] owner::OwnerError),
    #[error(transparent)]
    Add(#[from] add::AddError),
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
