//! The Dockerfile frontend: syntax (lines, parser directives, continuations,
//! heredocs, argument shapes), the shell-word lexer with `$VAR` expansion,
//! typed instructions with their source spans, parse errors and warnings.
//!
//! Pure: it takes `&str` and does no I/O, and it imports nothing else from the
//! crate. Behaviour follows BuildKit's Dockerfile frontend.
//!
//! ```text
//! text ──lines──▶ logical lines (directives, continuations, heredoc bodies)
//!      ──words/flags──▶ Source (keyword, flags, argument nodes)
//!      ──typed──▶ Instruction (one struct per keyword)
//! ```
//!
//! Values that Docker expands are kept raw; the planner calls
//! [`Instruction::expand`] (or [`Lexer`] directly) once ARG/ENV values are
//! known.

mod checks;
mod dump;
mod error;
mod expand;
mod flags;
#[cfg(test)]
mod golden;
mod healthcheck;
mod heredoc;
mod instruction;
mod lexer;
mod lines;
mod mount;
mod pattern;
#[cfg(test)]
mod robustness;
mod suggest;
mod typed;
mod words;

pub use dump::{dump, dump_instruction, go_quote, to_json};
pub use error::{ExpandError, ParseError, ParseErrorKind, Warning, WarningKind};
pub use heredoc::Heredoc;
pub use instruction::{
    Add, Arg, Cmd, CommandLine, Copy, CopySource, Entrypoint, Env, Expose, From, HealthCheck,
    Healthcheck, Instruction, Keyword, Label, Maintainer, NetworkMode, Onbuild, Run, SecurityMode,
    Shell, Source, Span, StopSignal, User, Volume, Workdir,
};
pub use lexer::{Expansion, Lexer, Lookup};
pub use mount::{Mount, MountType, Sharing};

use serde::Serialize;

/// The parser directives found at the top of the file.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Directives {
    /// `# syntax=docker/dockerfile:1` (recorded, not acted on).
    pub syntax: Option<String>,
    /// `# escape=` value: `\` (default) or `` ` ``.
    pub escape: char,
    /// `# check=skip=...;error=true` (recorded as written).
    pub check: Option<String>,
}

impl Default for Directives {
    fn default() -> Self {
        Directives {
            syntax: None,
            escape: '\\',
            check: None,
        }
    }
}

/// A parsed Dockerfile.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Dockerfile {
    pub directives: Directives,
    pub instructions: Vec<Instruction>,
    pub warnings: Vec<Warning>,
}

/// One build stage: its FROM and the instructions up to the next FROM.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Stage<'a> {
    /// 0-based position among the stages (`COPY --from=0` refers to it).
    pub index: usize,
    pub from: &'a From,
    /// The instructions after FROM, up to the next FROM.
    pub instructions: &'a [Instruction],
}

impl<'a> Stage<'a> {
    /// The stage name (`FROM image AS name`), lower-cased.
    pub fn name(&self) -> Option<&'a str> {
        self.from.alias.as_deref()
    }
}

/// The stages of a Dockerfile and the global ARGs before the first FROM.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Stages<'a> {
    /// ARG instructions before the first FROM (usable in FROM lines).
    pub global_args: Vec<&'a Arg>,
    pub stages: Vec<Stage<'a>>,
}

impl Dockerfile {
    /// The escape character in force (`# escape=`).
    pub fn escape(&self) -> char {
        self.directives.escape
    }

    /// Groups the instructions into global ARGs and stages. [`parse`] has
    /// already checked that only ARGs precede the first FROM and that there
    /// is a FROM.
    pub fn stages(&self) -> Stages<'_> {
        let mut global_args = Vec::new();
        let mut stages = Vec::new();
        let mut current: Option<(usize, &From)> = None;
        for (i, inst) in self.instructions.iter().enumerate() {
            match inst {
                Instruction::From(from) => {
                    if let Some((start, prev)) = current.take() {
                        stages.push(Stage {
                            index: stages.len(),
                            from: prev,
                            instructions: &self.instructions[start + 1..i],
                        });
                    }
                    current = Some((i, from));
                }
                Instruction::Arg(arg) if current.is_none() => global_args.push(arg),
                _ => {}
            }
        }
        if let Some((start, prev)) = current {
            stages.push(Stage {
                index: stages.len(),
                from: prev,
                instructions: &self.instructions[start + 1..],
            });
        }
        Stages {
            global_args,
            stages,
        }
    }
}

/// Parses a Dockerfile. Values stay unexpanded; warnings are returned in
/// [`Dockerfile::warnings`].
pub fn parse(text: &str) -> Result<Dockerfile, ParseError> {
    let lines = lines::split(text)?;
    let mut instructions = Vec::with_capacity(lines.instructions.len());
    let mut warnings = lines.warnings;
    for logical in &lines.instructions {
        let inst = typed::build(logical, lines.directives.escape, &mut warnings)?;
        instructions.push(inst);
    }
    typed::check_order(&instructions)?;
    checks::run(&instructions, &mut warnings);
    warnings.sort_by_key(|w| w.line);
    checks::apply_skip(lines.directives.check.as_deref(), &mut warnings);
    Ok(Dockerfile {
        directives: lines.directives,
        instructions,
        warnings,
    })
}
