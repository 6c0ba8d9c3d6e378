//! The typed instructions: one struct per Dockerfile keyword, gathered in the
//! [`Instruction`] enum.
//!
//! Values that Docker expands (`$VAR`) are kept exactly as written (quotes
//! included) so that the planner can expand them once ARG and ENV values are
//! known: call [`Instruction::expand`] to get the final words. Instructions
//! that Docker does not expand (RUN, CMD, ENTRYPOINT, SHELL, HEALTHCHECK,
//! MAINTAINER, ARG) hold their final values already.

use std::time::Duration;

use serde::Serialize;

use crate::dockerfile::heredoc::Heredoc;
use crate::dockerfile::mount::Mount;

/// Lines of the Dockerfile an instruction spans, 1-based and inclusive
/// (heredoc bodies included).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct Span {
    pub start_line: usize,
    pub end_line: usize,
}

/// The Dockerfile keywords, in the order of Docker's reference.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Keyword {
    From,
    Run,
    Cmd,
    Label,
    Maintainer,
    Expose,
    Env,
    Add,
    Copy,
    Entrypoint,
    Volume,
    User,
    Workdir,
    Arg,
    Onbuild,
    StopSignal,
    Healthcheck,
    Shell,
}

impl Keyword {
    /// Every keyword.
    pub const ALL: [Keyword; 18] = [
        Keyword::From,
        Keyword::Run,
        Keyword::Cmd,
        Keyword::Label,
        Keyword::Maintainer,
        Keyword::Expose,
        Keyword::Env,
        Keyword::Add,
        Keyword::Copy,
        Keyword::Entrypoint,
        Keyword::Volume,
        Keyword::User,
        Keyword::Workdir,
        Keyword::Arg,
        Keyword::Onbuild,
        Keyword::StopSignal,
        Keyword::Healthcheck,
        Keyword::Shell,
    ];

    /// The keyword in upper case, as Docker's documentation writes it.
    pub fn as_str(self) -> &'static str {
        match self {
            Keyword::From => "FROM",
            Keyword::Run => "RUN",
            Keyword::Cmd => "CMD",
            Keyword::Label => "LABEL",
            Keyword::Maintainer => "MAINTAINER",
            Keyword::Expose => "EXPOSE",
            Keyword::Env => "ENV",
            Keyword::Add => "ADD",
            Keyword::Copy => "COPY",
            Keyword::Entrypoint => "ENTRYPOINT",
            Keyword::Volume => "VOLUME",
            Keyword::User => "USER",
            Keyword::Workdir => "WORKDIR",
            Keyword::Arg => "ARG",
            Keyword::Onbuild => "ONBUILD",
            Keyword::StopSignal => "STOPSIGNAL",
            Keyword::Healthcheck => "HEALTHCHECK",
            Keyword::Shell => "SHELL",
        }
    }

    /// Looks a keyword up, ignoring case.
    pub fn parse(word: &str) -> Option<Keyword> {
        Keyword::ALL
            .into_iter()
            .find(|k| k.as_str().eq_ignore_ascii_case(word))
    }

    /// Whether Docker expands `$VAR` in this instruction's arguments
    /// (BuildKit's list: ADD COPY ENV EXPOSE FROM LABEL STOPSIGNAL USER VOLUME
    /// WORKDIR ONBUILD).
    pub fn expands(self) -> bool {
        matches!(
            self,
            Keyword::Add
                | Keyword::Copy
                | Keyword::Env
                | Keyword::Expose
                | Keyword::From
                | Keyword::Label
                | Keyword::StopSignal
                | Keyword::User
                | Keyword::Volume
                | Keyword::Workdir
                | Keyword::Onbuild
        )
    }
}

/// What every instruction keeps of its source text, as BuildKit's AST node
/// has it: the span, the logical line, the raw flags and the argument nodes
/// (what [`crate::dockerfile::dump`] prints).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Source {
    pub keyword: Keyword,
    pub span: Span,
    /// The logical line after joining continuations (comments removed).
    pub original: String,
    /// Flags as written, e.g. `--from=build` (quotes removed).
    pub flags: Vec<String>,
    /// The argument nodes: JSON elements, whitespace-split words, `k`/`v`
    /// pairs flattened, or the whole rest of the line, depending on the
    /// keyword (BuildKit's line parsers).
    pub args: Vec<String>,
    /// Whether the arguments were written in JSON (exec) form.
    pub json: bool,
}

/// A command in shell form (run by the shell) or exec form (a JSON array).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(tag = "form", content = "value", rename_all = "lowercase")]
pub enum CommandLine {
    Shell(String),
    Exec(Vec<String>),
}

/// `FROM [--platform=P] image [AS name]`
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct From {
    pub source: Source,
    pub image: String,
    pub platform: Option<String>,
    /// The stage name (`AS name`), lower-cased as BuildKit does.
    pub alias: Option<String>,
}

/// RUN --network values.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum NetworkMode {
    Default,
    None,
    Host,
}

/// RUN --security values.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum SecurityMode {
    Sandbox,
    Insecure,
}

/// `RUN [--mount=...] [--network=...] [--security=...] command`
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Run {
    pub source: Source,
    pub command: CommandLine,
    pub mounts: Vec<Mount>,
    pub network: Option<NetworkMode>,
    pub security: Option<SecurityMode>,
    /// Heredocs named in the command line (`RUN <<EOF`), in order.
    pub heredocs: Vec<Heredoc>,
}

/// `CMD command`
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Cmd {
    pub source: Source,
    pub command: CommandLine,
}

/// `ENTRYPOINT command`
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Entrypoint {
    pub source: Source,
    pub command: CommandLine,
}

/// `SHELL ["exe", "arg"]` (JSON form only).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Shell {
    pub source: Source,
    pub shell: Vec<String>,
}

/// `LABEL k=v ...` (and the legacy `LABEL k v`). Raw words until expanded.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Label {
    pub source: Source,
    pub pairs: Vec<(String, String)>,
}

/// `ENV k=v ...` (and the legacy `ENV k v`). Raw words until expanded.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Env {
    pub source: Source,
    pub pairs: Vec<(String, String)>,
}

/// `MAINTAINER text` (deprecated; kept for the image's `author`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Maintainer {
    pub source: Source,
    pub name: String,
}

/// `EXPOSE 80/tcp ...` Raw words until expanded.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Expose {
    pub source: Source,
    pub ports: Vec<String>,
}

/// Where a COPY or ADD source comes from.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(tag = "kind", content = "value", rename_all = "lowercase")]
pub enum CopySource {
    /// A path (or URL, or git address for ADD), raw until expanded.
    Path(String),
    /// Inline content from a heredoc (`COPY <<EOF /dest`); its file name is
    /// the heredoc's name.
    Heredoc(Heredoc),
}

/// `COPY [flags] src... dest`
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Copy {
    pub source: Source,
    pub sources: Vec<CopySource>,
    pub dest: String,
    pub from: Option<String>,
    pub chown: Option<String>,
    pub chmod: Option<String>,
    pub link: bool,
    pub parents: bool,
    pub excludes: Vec<String>,
}

/// `ADD [flags] src... dest`
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Add {
    pub source: Source,
    pub sources: Vec<CopySource>,
    pub dest: String,
    pub chown: Option<String>,
    pub chmod: Option<String>,
    pub link: bool,
    pub excludes: Vec<String>,
    /// `--checksum=sha256:...` for URL sources (raw until expanded).
    pub checksum: Option<String>,
    /// `--keep-git-dir[=bool]` for git sources.
    pub keep_git_dir: Option<bool>,
    /// `--unpack[=bool]`: whether a local or remote archive is extracted.
    pub unpack: Option<bool>,
}

/// `VOLUME path...` (shell words or JSON). Raw words until expanded.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Volume {
    pub source: Source,
    pub paths: Vec<String>,
}

/// `USER user[:group]` Raw until expanded.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct User {
    pub source: Source,
    pub user: String,
}

/// `WORKDIR path` Raw until expanded.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Workdir {
    pub source: Source,
    pub path: String,
}

/// `ARG name[=default] ...` The default is raw: the planner expands it with
/// the values known at that point.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Arg {
    pub source: Source,
    pub args: Vec<(String, Option<String>)>,
}

/// `ONBUILD instruction`: recorded in the image, run by its children.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Onbuild {
    pub source: Source,
    pub inner: Box<Instruction>,
    /// The trigger as written after `ONBUILD` (what goes in the image config).
    pub raw: String,
}

/// `STOPSIGNAL signal` Raw until expanded.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct StopSignal {
    pub source: Source,
    pub signal: String,
}

/// The check of a HEALTHCHECK instruction.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(tag = "kind", rename_all = "lowercase")]
pub enum HealthCheck {
    /// `HEALTHCHECK NONE`: disable the base image's check.
    None,
    /// `HEALTHCHECK [flags] CMD command`
    Cmd {
        command: CommandLine,
        interval: Option<Duration>,
        timeout: Option<Duration>,
        start_period: Option<Duration>,
        start_interval: Option<Duration>,
        retries: Option<u32>,
    },
}

/// `HEALTHCHECK ...`
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Healthcheck {
    pub source: Source,
    pub check: HealthCheck,
}

/// One Dockerfile instruction, typed.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(tag = "instruction", rename_all = "lowercase")]
pub enum Instruction {
    From(From),
    Run(Run),
    Cmd(Cmd),
    Label(Label),
    Maintainer(Maintainer),
    Expose(Expose),
    Env(Env),
    Add(Add),
    Copy(Copy),
    Entrypoint(Entrypoint),
    Volume(Volume),
    User(User),
    Workdir(Workdir),
    Arg(Arg),
    Onbuild(Onbuild),
    StopSignal(StopSignal),
    Healthcheck(Healthcheck),
    Shell(Shell),
}

impl Instruction {
    /// What the instruction keeps of its source text.
    pub fn source(&self) -> &Source {
        match self {
            Instruction::From(i) => &i.source,
            Instruction::Run(i) => &i.source,
            Instruction::Cmd(i) => &i.source,
            Instruction::Label(i) => &i.source,
            Instruction::Maintainer(i) => &i.source,
            Instruction::Expose(i) => &i.source,
            Instruction::Env(i) => &i.source,
            Instruction::Add(i) => &i.source,
            Instruction::Copy(i) => &i.source,
            Instruction::Entrypoint(i) => &i.source,
            Instruction::Volume(i) => &i.source,
            Instruction::User(i) => &i.source,
            Instruction::Workdir(i) => &i.source,
            Instruction::Arg(i) => &i.source,
            Instruction::Onbuild(i) => &i.source,
            Instruction::StopSignal(i) => &i.source,
            Instruction::Healthcheck(i) => &i.source,
            Instruction::Shell(i) => &i.source,
        }
    }

    /// The lines the instruction spans.
    pub fn span(&self) -> Span {
        self.source().span
    }

    /// The instruction's keyword.
    pub fn keyword(&self) -> Keyword {
        self.source().keyword
    }

    /// The flags as written (`--from=build`).
    pub fn flags(&self) -> &[String] {
        &self.source().flags
    }

    /// The heredocs attached to this instruction (RUN, COPY, ADD; for
    /// ONBUILD, those of its trigger).
    pub fn heredocs(&self) -> Vec<&Heredoc> {
        fn of_sources(sources: &[CopySource]) -> Vec<&Heredoc> {
            sources
                .iter()
                .filter_map(|s| match s {
                    CopySource::Heredoc(h) => Some(h),
                    CopySource::Path(_) => None,
                })
                .collect()
        }
        match self {
            Instruction::Run(r) => r.heredocs.iter().collect(),
            Instruction::Copy(c) => of_sources(&c.sources),
            Instruction::Add(a) => of_sources(&a.sources),
            Instruction::Onbuild(o) => o.inner.heredocs(),
            _ => Vec::new(),
        }
    }
}
