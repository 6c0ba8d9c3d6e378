//! Build checks that BuildKit reports as warnings (its `docker build
//! --check` rules that need no build state), and `# check=skip=...`.

use crate::dockerfile::error::{Warning, WarningKind};
use crate::dockerfile::instruction::{CommandLine, Instruction, Keyword};
use crate::dockerfile::words;

/// The keyword as written at the start of the instruction's line.
fn written_keyword(inst: &Instruction) -> &str {
    words::split_first(inst.source().original.trim()).0
}

fn warn(out: &mut Vec<Warning>, inst: &Instruction, kind: WarningKind, message: String) {
    out.push(Warning {
        line: inst.span().start_line,
        kind,
        message,
    });
}

/// Adds the check warnings for `instructions` to `warnings`.
pub(crate) fn run(instructions: &[Instruction], warnings: &mut Vec<Warning>) {
    let mut found = Vec::new();
    casing(instructions, &mut found);
    // Per stage: shell-form CMD/ENTRYPOINT and repeated CMD/ENTRYPOINT/
    // HEALTHCHECK (only the last one counts).
    let mut seen: Vec<Keyword> = Vec::new();
    let mut custom_shell = false;
    for inst in instructions {
        match inst {
            Instruction::From(from) => {
                seen.clear();
                custom_shell = false;
                let args = &from.source.args;
                if let [_, as_word, name] = args.as_slice() {
                    let from_upper = written_keyword(inst).chars().any(|c| c.is_uppercase());
                    let as_upper = as_word.chars().any(|c| c.is_uppercase());
                    if from_upper != as_upper {
                        warn(
                            &mut found,
                            inst,
                            WarningKind::FromAsCasing,
                            format!(
                                "'{as_word}' and '{}' keywords' casing do not match",
                                written_keyword(inst)
                            ),
                        );
                    }
                    if name.chars().any(|c| c.is_uppercase()) {
                        warn(
                            &mut found,
                            inst,
                            WarningKind::StageNameCasing,
                            format!("Stage name '{name}' should be lowercase"),
                        );
                    }
                }
            }
            Instruction::Shell(_) => custom_shell = true,
            Instruction::Cmd(_) | Instruction::Entrypoint(_) | Instruction::Healthcheck(_) => {
                let keyword = inst.keyword();
                if seen.contains(&keyword) {
                    warn(
                        &mut found,
                        inst,
                        WarningKind::MultipleInstructionsDisallowed,
                        format!(
                            "Multiple {} instructions should not be used in the same stage \
                             because only the last one will be used",
                            keyword.as_str()
                        ),
                    );
                }
                seen.push(keyword);
                let shell_form = match inst {
                    Instruction::Cmd(c) => matches!(c.command, CommandLine::Shell(_)),
                    Instruction::Entrypoint(e) => matches!(e.command, CommandLine::Shell(_)),
                    _ => false,
                };
                if shell_form && !custom_shell {
                    warn(
                        &mut found,
                        inst,
                        WarningKind::JsonArgsRecommended,
                        format!(
                            "JSON arguments recommended for {} to prevent unintended behavior \
                             related to OS signals",
                            keyword.as_str()
                        ),
                    );
                }
            }
            _ => {}
        }
    }
    warnings.extend(found);
}

/// Keywords should all be upper case or all lower case, like the majority.
fn casing(instructions: &[Instruction], out: &mut Vec<Warning>) {
    let upper = instructions
        .iter()
        .filter(|i| written_keyword(i).chars().all(|c| !c.is_lowercase()))
        .count();
    let majority_upper = upper * 2 >= instructions.len();
    for inst in instructions {
        let written = written_keyword(inst);
        let ok = if majority_upper {
            written.chars().all(|c| !c.is_lowercase())
        } else {
            written.chars().all(|c| !c.is_uppercase())
        };
        if !ok {
            warn(
                out,
                inst,
                WarningKind::ConsistentInstructionCasing,
                format!(
                    "Command '{written}' should match the case of the command majority ({})",
                    if majority_upper {
                        "uppercase"
                    } else {
                        "lowercase"
                    }
                ),
            );
        }
    }
}

/// Drops the warnings that `# check=skip=A,B` (or `skip=all`) turns off.
/// The directive's other settings (`error=true`) are left to the caller.
pub(crate) fn apply_skip(check: Option<&str>, warnings: &mut Vec<Warning>) {
    let Some(check) = check else { return };
    let skipped: Vec<String> = check
        .split(';')
        .filter_map(|part| part.trim().strip_prefix("skip="))
        .flat_map(|list| list.split(','))
        .map(|s| s.trim().to_ascii_lowercase())
        .collect();
    if skipped.iter().any(|s| s == "all") {
        warnings.clear();
        return;
    }
    warnings.retain(|w| !skipped.contains(&w.kind.rule().to_ascii_lowercase()));
}
