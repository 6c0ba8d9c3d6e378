//! From text to logical lines: the UTF-8 BOM, parser directives at the top,
//! comments, line continuations (with comment and empty lines inside them)
//! and heredoc bodies. Follows BuildKit's `parser.Parse` line by line.

use crate::dockerfile::error::{ParseError, ParseErrorKind, Warning, WarningKind};
use crate::dockerfile::heredoc::{self, Heredoc};
use crate::dockerfile::instruction::Keyword;
use crate::dockerfile::words::{self, Json};
use crate::dockerfile::Directives;

/// One instruction's text, joined from its physical lines.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Logical {
    pub start_line: usize,
    pub end_line: usize,
    /// The joined line: continuations removed, comment lines dropped.
    pub text: String,
    pub heredocs: Vec<Heredoc>,
    /// Heredoc bodies as written (before tab stripping), for ONBUILD's
    /// recorded trigger.
    pub raw_heredocs: Vec<String>,
}

/// The result of the line phase.
pub(crate) struct Lines {
    pub directives: Directives,
    pub instructions: Vec<Logical>,
    pub warnings: Vec<Warning>,
}

/// Parser-directive scanning state.
struct DirectiveScan {
    done: bool,
    seen: Vec<String>,
}

/// `# key = value` (BuildKit's `^#\s*([a-zA-Z][a-zA-Z0-9]*)\s*=\s*(.+?)\s*$`).
fn directive(line: &str) -> Option<(String, String)> {
    let body = line.strip_prefix('#')?.trim_start();
    let key_len = body
        .char_indices()
        .find(|&(i, c)| !(c.is_ascii_alphabetic() || (i > 0 && c.is_ascii_digit())))
        .map_or(body.len(), |(i, _)| i);
    if key_len == 0 {
        return None;
    }
    let (key, rest) = body.split_at(key_len);
    let value = rest.trim_start().strip_prefix('=')?.trim();
    if value.is_empty() {
        return None;
    }
    Some((key.to_ascii_lowercase(), value.to_string()))
}

const DIRECTIVES: [&str; 3] = ["syntax", "escape", "check"];

impl DirectiveScan {
    /// Looks at a line (left-trimmed) while directives may still appear.
    fn see(&mut self, line: &str, n: usize, d: &mut Directives) -> Result<(), ParseError> {
        if self.done {
            return Ok(());
        }
        let Some((key, value)) = directive(line) else {
            self.done = true;
            return Ok(());
        };
        if !DIRECTIVES.contains(&key.as_str()) {
            self.done = true;
            return Ok(());
        }
        if self.seen.contains(&key) {
            return Err(
                ParseError::new(n, n, ParseErrorKind::DuplicateDirective { name: key })
                    .with_hint("parser directives may appear only once, at the top of the file"),
            );
        }
        match key.as_str() {
            "escape" => match value.as_str() {
                "\\" => d.escape = '\\',
                "`" => d.escape = '`',
                _ => {
                    return Err(ParseError::new(n, n, ParseErrorKind::BadEscape { value })
                        .with_hint("use `# escape=\\` (the default) or `# escape=``"))
                }
            },
            "syntax" => d.syntax = Some(value),
            _ => d.check = Some(value),
        }
        self.seen.push(key);
        Ok(())
    }
}

/// The line without its trailing `\r`/`\n` characters.
fn trim_newline(line: &str) -> &str {
    line.trim_end_matches(['\r', '\n'])
}

fn is_comment(line: &str) -> bool {
    trim_newline(line).trim_start().starts_with('#')
}

/// Removes a trailing escape character (and blanks after it), unless it is
/// itself escaped. Returns the line and whether it ends the instruction.
fn trim_continuation(line: &str, escape: char) -> (&str, bool) {
    let trimmed = line.trim_end_matches([' ', '\t']);
    let Some(before) = trimmed.strip_suffix(escape) else {
        return (line, true);
    };
    // Docker quirk: `foo \\` (an escaped escape) still does not continue,
    // but BuildKit's regex also treats `\\` preceded by anything else the
    // same way; only one escape character before the end continues.
    if before.ends_with(escape) {
        return (line, true);
    }
    (before, false)
}

/// Whether the heredoc phase applies: RUN, COPY, ADD (or ONBUILD of one of
/// them) in shell form.
fn can_have_heredoc(text: &str) -> bool {
    // Cheap test first: most lines have no `<<` at all.
    if !text.contains("<<") {
        return false;
    }
    // A loop, not recursion: `ONBUILD ONBUILD ...` (an error later) must
    // not exhaust the stack here.
    let mut line = text;
    loop {
        let (cmd, rest) = words::split_first(line.trim());
        match Keyword::parse(cmd) {
            Some(Keyword::Run | Keyword::Copy | Keyword::Add) => {
                let (_, _, args) = words::split_command(line);
                return matches!(words::parse_json(&args), Json::No);
            }
            Some(Keyword::Onbuild) => line = rest,
            _ => return false,
        }
    }
}

/// Splits `text` into logical instruction lines.
pub(crate) fn split(text: &str) -> Result<Lines, ParseError> {
    let text = text.strip_prefix('\u{feff}').unwrap_or(text);
    let mut directives = Directives::default();
    let mut scan = DirectiveScan {
        done: false,
        seen: Vec::new(),
    };
    let mut warnings = Vec::new();
    let mut instructions = Vec::new();
    let mut lines = text.split_inclusive('\n');
    let mut current = 0usize;

    while let Some(raw) = lines.next() {
        current += 1;
        let first = trim_newline(raw).trim_start();
        scan.see(first, current, &mut directives)?;
        if scan.done && first.starts_with('#') {
            if let Some((key, _)) = directive(first) {
                if DIRECTIVES.contains(&key.as_str()) && current > 1 {
                    warnings.push(Warning {
                        line: current,
                        kind: WarningKind::MisplacedDirective,
                        message: format!(
                            "the `{key}` parser directive is only recognised at the top of the \
                             file, before any instruction, comment or empty line; here it is a comment"
                        ),
                    });
                }
            }
        }
        let processed = if first.starts_with('#') { "" } else { first };
        let start = current;
        let (line, mut end) = trim_continuation(processed, directives.escape);
        if end && line.is_empty() {
            continue;
        }
        let mut joined = line.to_string();
        let mut empty_continuation = false;
        while !end {
            let Some(raw) = lines.next() else { break };
            current += 1;
            if is_comment(raw) {
                continue;
            }
            let piece = trim_newline(raw);
            if piece.trim_start().is_empty() {
                empty_continuation = true;
                continue;
            }
            let (piece, e) = trim_continuation(piece, directives.escape);
            end = e;
            joined.push_str(piece);
        }
        if empty_continuation {
            warnings.push(Warning {
                line: start,
                kind: WarningKind::EmptyContinuationLine,
                message: "empty continuation line found; empty continuation lines will become \
                          errors in a future release"
                    .to_string(),
            });
        }
        if joined.trim().is_empty() {
            continue;
        }
        let mut heredocs = Vec::new();
        let mut raw_heredocs = Vec::new();
        if can_have_heredoc(&joined) {
            for word in heredoc::words_in_line(&joined) {
                let mut content = String::new();
                let mut terminated = false;
                for raw in lines.by_ref() {
                    current += 1;
                    let mut candidate = trim_newline(raw);
                    if word.strip_tabs {
                        candidate = candidate.trim_start_matches('\t');
                    }
                    if candidate == word.name {
                        terminated = true;
                        break;
                    }
                    content.push_str(raw);
                }
                if !terminated {
                    return Err(ParseError::new(
                        start,
                        current,
                        ParseErrorKind::UnterminatedHeredoc {
                            name: word.name.clone(),
                        },
                    )
                    .with_hint(format!(
                        "end the heredoc with a line containing only `{}`",
                        word.name
                    )));
                }
                let body = if word.strip_tabs {
                    heredoc::strip_leading_tabs(&content)
                } else {
                    content.clone()
                };
                raw_heredocs.push(content);
                heredocs.push(Heredoc {
                    name: word.name,
                    content: body,
                    expand: word.expand,
                    strip_tabs: word.strip_tabs,
                    fd: word.fd,
                });
            }
        }
        instructions.push(Logical {
            start_line: start,
            end_line: current,
            text: joined,
            heredocs,
            raw_heredocs,
        });
    }
    if instructions.is_empty() {
        return Err(
            ParseError::new(current.max(1), current.max(1), ParseErrorKind::Empty)
                .with_hint("a Dockerfile needs at least a FROM instruction"),
        );
    }
    Ok(Lines {
        directives,
        instructions,
        warnings,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn directive_syntax() {
        assert_eq!(
            directive("# escape = `"),
            Some(("escape".into(), "`".into()))
        );
        assert_eq!(
            directive("#syntax=docker/dockerfile:1"),
            Some(("syntax".into(), "docker/dockerfile:1".into()))
        );
        assert_eq!(directive("# just a comment"), None);
        assert_eq!(directive("#=x"), None);
    }

    #[test]
    fn continuation_rules() {
        assert_eq!(trim_continuation("echo a \\", '\\'), ("echo a ", false));
        assert_eq!(trim_continuation("echo a \\  \t", '\\'), ("echo a ", false));
        assert_eq!(
            trim_continuation("echo a \\\\", '\\'),
            ("echo a \\\\", true)
        );
        assert_eq!(trim_continuation("\\", '\\'), ("", false));
        assert_eq!(trim_continuation("echo a `", '`'), ("echo a ", false));
        assert_eq!(trim_continuation("echo a \\", '`'), ("echo a \\", true));
    }

    #[test]
    fn empty_continuation_lines_warn_once_per_instruction() {
        let text = "\nFROM alpine\n\nRUN first \\\n\n    part \\\n\n    end\n\n\
                    RUN second \\\n\n    part\nRUN third \\\n# comment\n   part\n";
        let lines = split(text).expect("parses");
        let texts: Vec<&str> = lines.instructions.iter().map(|l| l.text.as_str()).collect();
        assert_eq!(
            texts,
            vec![
                "FROM alpine",
                "RUN first     part     end",
                "RUN second     part",
                "RUN third    part"
            ]
        );
        let warned: Vec<usize> = lines.warnings.iter().map(|w| w.line).collect();
        assert_eq!(warned, vec![4, 10]);
        let spans: Vec<(usize, usize)> = lines
            .instructions
            .iter()
            .map(|l| (l.start_line, l.end_line))
            .collect();
        assert_eq!(spans, vec![(2, 2), (4, 8), (10, 12), (13, 15)]);
    }
}
