//! The plan the engine executes: [`BuildPlan`] of [`StagePlan`]s, each a list
//! of fully expanded [`Step`]s. Nothing here needs the Dockerfile any more.

use std::collections::BTreeMap;

use serde::Serialize;

use crate::dockerfile::{Heredoc, Mount, NetworkMode, SecurityMode, Span};
use crate::image::{Healthcheck, ImageConfig};
use crate::plan::{ExternalImage, Platform};

/// Everything the engine needs to build the target.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct BuildPlan {
    /// Only the stages the target needs, in an order where every stage comes
    /// after the stages it depends on.
    pub stages: Vec<StagePlan>,
    /// The target: an index into `stages` (always the last one).
    pub target: usize,
    /// Stages that may run in parallel: level `n` holds indexes into
    /// `stages` whose dependencies are all in levels `< n`.
    pub levels: Vec<Vec<usize>>,
    /// The external images the plan uses (bases, `COPY --from` and mount
    /// images), as [`crate::plan::StageGraph::images`].
    pub images: Vec<ExternalImage>,
    /// Messages for the user (unused build args, FROM of a later stage name).
    pub warnings: Vec<String>,
    /// `SOURCE_DATE_EPOCH` (a build arg or a global ARG default), in
    /// seconds: clamps timestamps in layers and the image's `created`.
    pub source_date_epoch: Option<i64>,
    /// `--label`s: applied to the target's final config after its last step,
    /// with no history entry (as BuildKit does).
    pub labels: BTreeMap<String, String>,
}

/// One stage to build.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct StagePlan {
    /// The stage's index in the Dockerfile (`COPY --from=1` refers to it).
    pub id: usize,
    /// `AS name`, lower-cased.
    pub name: Option<String>,
    pub base: Base,
    pub platform: Platform,
    /// Stage ids this stage needs built first (its base stage, `COPY
    /// --from` and `RUN --mount=from=` stages), sorted, no duplicates.
    pub deps: Vec<usize>,
    pub steps: Vec<Step>,
    /// The FROM line.
    pub span: Span,
    /// The config the stage starts from: the base image's config (or the
    /// base stage's config as planned, or an empty one for scratch) with
    /// `OnBuild` cleared and `PATH` defaulted as BuildKit does. For a stage
    /// base, `rootfs` and `history` are empty here: the engine takes those
    /// from the built base stage.
    pub config: ImageConfig,
    /// False when the base image's config was not given to [`crate::plan::lower`]
    /// (dry run): ENV, WORKDIR, USER, SHELL and ONBUILD of the base are then
    /// unknown and the steps were planned as if they were empty.
    pub base_config_known: bool,
}

/// Where a stage starts.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(tag = "kind", content = "value", rename_all = "lowercase")]
pub enum Base {
    /// `FROM scratch`: an empty filesystem.
    Scratch,
    /// An image to pull, as written after expansion (`busybox:1.36`).
    Image { reference: String },
    /// Another stage of the Dockerfile, by id.
    Stage(usize),
}

/// One step of a stage.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Step {
    /// The instruction's lines; for ONBUILD triggers, the FROM line of the
    /// stage that runs them (as BuildKit reports them).
    pub span: Span,
    /// The instruction as written, on one line, for progress output
    /// (`ONBUILD ` prefixed for triggers).
    pub text: String,
    /// The image history text, exactly as BuildKit writes it
    /// (`RUN |1 V=1 /bin/sh -c make # buildkit`, `ENV A=b`, `CMD ["sh"]`).
    pub created_by: String,
    /// True when the step came from an ONBUILD trigger of the base.
    pub onbuild: bool,
    pub kind: StepKind,
}

impl Step {
    /// Whether the step adds a filesystem layer (history `empty_layer:
    /// false`): COPY, ADD, RUN, and WORKDIR other than `/` (BuildKit creates
    /// the directory, owned by the current USER).
    pub fn creates_layer(&self) -> bool {
        match &self.kind {
            StepKind::Copy(_) | StepKind::Run(_) => true,
            StepKind::Config(ConfigChange::Workdir(dir)) => dir != "/",
            StepKind::Config(_) => false,
        }
    }

    /// Whether the step gets an image history entry. Every step does except
    /// ONBUILD, which BuildKit records in the config only.
    pub fn records_history(&self) -> bool {
        !matches!(self.kind, StepKind::Config(ConfigChange::Onbuild(_)))
    }
}

/// What a step does.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(tag = "kind", content = "value", rename_all = "lowercase")]
pub enum StepKind {
    /// COPY or ADD.
    Copy(CopyStep),
    Run(RunStep),
    /// A change to the image config only (WORKDIR also makes its directory:
    /// see [`Step::creates_layer`]).
    Config(ConfigChange),
}

/// COPY and ADD, expanded.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct CopyStep {
    pub is_add: bool,
    /// Source paths (or URLs / git addresses for ADD), expanded, as written
    /// otherwise (relative to the context or the `from` root).
    pub sources: Vec<String>,
    /// Destination, expanded and made absolute against WORKDIR; a trailing
    /// `/` (meaning "into this directory") is kept.
    pub dest: String,
    pub from: CopyFrom,
    pub chown: Option<String>,
    pub chmod: Option<String>,
    pub link: bool,
    pub parents: bool,
    pub excludes: Vec<String>,
    /// Inline files (`COPY <<EOF /dest`), bodies already expanded when the
    /// delimiter was unquoted (`expand` is then set to false).
    pub heredocs: Vec<Heredoc>,
    pub checksum: Option<String>,
    pub keep_git_dir: bool,
    pub unpack: Option<bool>,
}

/// Where files come from.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(tag = "kind", content = "value", rename_all = "lowercase")]
pub enum CopyFrom {
    /// The build context.
    Context,
    /// The result of another stage, by id.
    Stage(usize),
    /// An external image's filesystem (pulled like a base).
    Image(String),
}

/// A RUN mount with its `from=` resolved.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct RunMount {
    /// The mount, every option expanded.
    pub mount: Mount,
    /// What the mount's source is taken from: `Some(Context)` for a bind
    /// mount without `from=`, the stage or image for `from=`, `None` where
    /// the mount has no source (cache without `from`, tmpfs, secret, ssh).
    pub source_from: Option<CopyFrom>,
}

/// RUN, expanded.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct RunStep {
    /// The final argv: shell form wrapped with SHELL (default `/bin/sh -c`),
    /// heredoc scripts folded in as BuildKit does.
    pub argv: Vec<String>,
    /// `KEY=VALUE`: the image's ENV, then the ARGs in scope (an ARG and an
    /// ENV of the same name: the later one wins, as in BuildKit), then the
    /// proxy build args.
    pub env: Vec<String>,
    /// Absolute working directory (`/` by default).
    pub workdir: String,
    /// USER (empty: root).
    pub user: String,
    pub mounts: Vec<RunMount>,
    pub network: NetworkMode,
    pub security: SecurityMode,
    /// A heredoc script with a `#!` line (`RUN <<EOF` + `#!/usr/bin/env
    /// python3`): the engine writes it, mode 0755, into a read-only mount at
    /// `/dev/pipes/<name>`; `argv` is then `["/dev/pipes/<name>"]`. Empty
    /// otherwise (other heredocs are folded into `argv`).
    pub heredocs: Vec<Heredoc>,
    /// The env that goes into the cache key: `env` without the proxy build
    /// args (Docker keeps those out of history and cache keys).
    pub cache_env: Vec<String>,
}

/// A change to the image config, applied with [`crate::plan::apply`].
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(tag = "kind", content = "value", rename_all = "lowercase")]
pub enum ConfigChange {
    Env(Vec<(String, String)>),
    Label(Vec<(String, String)>),
    User(String),
    /// Absolute (relative paths already resolved against the previous
    /// WORKDIR).
    Workdir(String),
    /// Ports with their protocol: `80/tcp`.
    Expose(Vec<String>),
    Volume(Vec<String>),
    /// Final argv (shell form already wrapped with SHELL). `reset_cmd`:
    /// BuildKit clears the CMD when no CMD was set earlier in the stage.
    Entrypoint {
        argv: Vec<String>,
        reset_cmd: bool,
    },
    /// Final argv (shell form already wrapped with SHELL).
    Cmd(Vec<String>),
    Shell(Vec<String>),
    StopSignal(String),
    /// `HEALTHCHECK NONE` is `Test: ["NONE"]`.
    Healthcheck(Healthcheck),
    /// A trigger recorded for images built FROM this one (raw text).
    Onbuild(String),
    Maintainer(String),
    /// ARG: a history entry and nothing else.
    Arg,
}
