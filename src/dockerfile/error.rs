//! Errors and warnings of the Dockerfile frontend: [`ParseError`] (with its
//! [`ParseErrorKind`]), [`ExpandError`] and [`Warning`].

use serde::Serialize;

/// Why a Dockerfile does not parse.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ParseErrorKind {
    #[error("the Dockerfile has no instructions")]
    Empty,
    #[error("unknown instruction: {word}")]
    UnknownInstruction { word: String },
    #[error("{keyword} requires {expected}")]
    MissingArguments {
        keyword: &'static str,
        expected: &'static str,
    },
    #[error("{keyword} takes {expected}, got {found} arguments")]
    ExtraArguments {
        keyword: &'static str,
        expected: &'static str,
        found: usize,
    },
    #[error("unknown flag: --{flag} (for {keyword})")]
    UnknownFlag { keyword: &'static str, flag: String },
    #[error("invalid flag --{flag}: {reason}")]
    BadFlag { flag: String, reason: String },
    #[error("duplicate flag specified: --{flag}")]
    DuplicateFlag { flag: String },
    #[error("invalid --mount option {option:?}: {reason}")]
    BadMount { option: String, reason: String },
    #[error("{keyword}: when using JSON array syntax, arrays must be comprised of strings only")]
    JsonNotStrings { keyword: &'static str },
    #[error("{keyword} requires the arguments to be in JSON form")]
    JsonRequired { keyword: &'static str },
    #[error("{keyword}: {reason}")]
    BadArgument {
        keyword: &'static str,
        reason: String,
    },
    #[error("unterminated heredoc {name:?}")]
    UnterminatedHeredoc { name: String },
    #[error("only one {name} parser directive can be used")]
    DuplicateDirective { name: String },
    #[error("invalid escape token {value:?} does not match ` or \\")]
    BadEscape { value: String },
    #[error("{keyword} is not allowed as an ONBUILD trigger")]
    BadOnbuild { keyword: &'static str },
    #[error("{keyword} is not allowed before the first FROM (only ARG is)")]
    BeforeFrom { keyword: &'static str },
    #[error("the Dockerfile has no FROM instruction")]
    NoFrom,
    #[error("invalid shell word: {0}")]
    Word(#[from] ExpandError),
}

/// A parse error: what went wrong, on which line, and a hint when one helps.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("line {line}: {kind}")]
pub struct ParseError {
    /// 1-based line where the offending instruction starts.
    pub line: usize,
    /// 1-based line where it ends (same as `line` for one-line instructions).
    pub end_line: usize,
    pub kind: ParseErrorKind,
    pub hint: Option<String>,
}

impl ParseError {
    /// The message without the line number (what went wrong).
    pub fn message(&self) -> String {
        self.kind.to_string()
    }

    pub(crate) fn new(line: usize, end_line: usize, kind: ParseErrorKind) -> Self {
        ParseError {
            line,
            end_line,
            kind,
            hint: None,
        }
    }

    pub(crate) fn with_hint(mut self, hint: impl Into<String>) -> Self {
        self.hint = Some(hint.into());
        self
    }
}

/// Why a shell word cannot be expanded.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ExpandError {
    #[error(
        "failed to process {word:?}: unexpected end of statement while looking for matching {what}"
    )]
    Unterminated { word: String, what: &'static str },
    #[error("failed to process {word:?}: syntax error: missing '}}'")]
    MissingBrace { word: String },
    #[error("failed to process {word:?}: syntax error: missing '/' in ${{}}")]
    MissingSlash { word: String },
    #[error("failed to process {word:?}: substitutions nested too deeply")]
    TooDeep { word: String },
    #[error("failed to process {word:?}: syntax error: bad substitution")]
    BadSubstitution { word: String },
    #[error("failed to process {word:?}: unsupported modifier ({modifier}) in substitution")]
    UnsupportedModifier { word: String, modifier: String },
    #[error("failed to process {word:?}: invalid pattern ({pattern}) in substitution")]
    BadPattern { word: String, pattern: String },
    #[error("failed to process {word:?}: {name}: {message}")]
    Required {
        word: String,
        name: String,
        message: String,
    },
    #[error("{keyword}: {reason}")]
    BadValue {
        keyword: &'static str,
        reason: String,
    },
}

/// What kind of warning.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum WarningKind {
    /// An empty line inside a line continuation (BuildKit warns; a future
    /// release may make it an error).
    EmptyContinuationLine,
    /// A parser directive after the top of the file: it is only a comment.
    MisplacedDirective,
    /// JSON arguments followed by extra text (ignored, as Docker does).
    TrailingJson,
    /// `MAINTAINER` is deprecated in favour of `LABEL maintainer=...`.
    MaintainerDeprecated,
    /// Legacy `ENV k v` / `LABEL k v` form.
    LegacyKeyValue,
    /// Shell-form CMD/ENTRYPOINT (BuildKit check `JSONArgsRecommended`).
    JsonArgsRecommended,
    /// `FROM x as y` with different casing (`FromAsCasing`).
    FromAsCasing,
    /// A stage name with upper-case letters (`StageNameCasing`).
    StageNameCasing,
    /// Several CMD/ENTRYPOINT/HEALTHCHECK in one stage
    /// (`MultipleInstructionsDisallowed`).
    MultipleInstructionsDisallowed,
    /// Keywords not all in the same case (`ConsistentInstructionCasing`).
    ConsistentInstructionCasing,
}

impl WarningKind {
    /// The rule name `# check=skip=NAME` refers to (BuildKit's names where
    /// BuildKit has the check).
    pub fn rule(self) -> &'static str {
        match self {
            WarningKind::EmptyContinuationLine => "NoEmptyContinuation",
            WarningKind::MisplacedDirective => "MisplacedDirective",
            WarningKind::TrailingJson => "TrailingJSON",
            WarningKind::MaintainerDeprecated => "MaintainerDeprecated",
            WarningKind::LegacyKeyValue => "LegacyKeyValueFormat",
            WarningKind::JsonArgsRecommended => "JSONArgsRecommended",
            WarningKind::FromAsCasing => "FromAsCasing",
            WarningKind::StageNameCasing => "StageNameCasing",
            WarningKind::MultipleInstructionsDisallowed => "MultipleInstructionsDisallowed",
            WarningKind::ConsistentInstructionCasing => "ConsistentInstructionCasing",
        }
    }
}

/// A warning about a Dockerfile that still parses.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Warning {
    pub line: usize,
    pub kind: WarningKind,
    pub message: String,
}
