//! From a logical line to a typed [`Instruction`]: the keyword, BuildKit's
//! argument shape for it, flag validation and each instruction's rules
//! (argument counts, JSON-only SHELL, HEALTHCHECK types, ONBUILD triggers).

use crate::dockerfile::error::{ParseError, ParseErrorKind, Warning, WarningKind};
use crate::dockerfile::flags::{self, Flags};
use crate::dockerfile::healthcheck::build_healthcheck;
use crate::dockerfile::heredoc::{self, Heredoc};
use crate::dockerfile::instruction::*;
use crate::dockerfile::lines::Logical;
use crate::dockerfile::mount;
use crate::dockerfile::suggest::suggest;
use crate::dockerfile::words::{self, Json};

/// Builds errors located at one instruction.
#[derive(Clone, Copy)]
pub(crate) struct At {
    pub(crate) line: usize,
    pub(crate) end: usize,
}

impl At {
    pub(crate) fn err(self, kind: ParseErrorKind) -> ParseError {
        ParseError::new(self.line, self.end, kind)
    }
}

/// Builds the typed instruction for one logical line.
pub(crate) fn build(
    logical: &Logical,
    escape: char,
    warnings: &mut Vec<Warning>,
) -> Result<Instruction, ParseError> {
    build_line(
        &logical.text,
        logical,
        escape,
        warnings,
        At {
            line: logical.start_line,
            end: logical.end_line,
        },
    )
}

fn build_line(
    text: &str,
    logical: &Logical,
    escape: char,
    warnings: &mut Vec<Warning>,
    at: At,
) -> Result<Instruction, ParseError> {
    let (cmd, raw_flags, rest) = words::split_command(text);
    let keyword = keyword_of(&cmd, at)?;
    let mut source = Source {
        keyword,
        span: Span {
            start_line: at.line,
            end_line: at.end,
        },
        original: text.to_string(),
        flags: raw_flags.clone(),
        args: Vec::new(),
        json: false,
    };
    let kw = keyword.as_str();

    // The argument shape of each keyword (BuildKit's dispatch table).
    match keyword {
        Keyword::Add | Keyword::Copy | Keyword::Volume => match json_or(&rest, kw, at, warnings)? {
            Some(items) => {
                source.args = items;
                source.json = true;
            }
            None => source.args = words::split_blanks(&rest),
        },
        Keyword::Run | Keyword::Cmd | Keyword::Entrypoint | Keyword::Shell => {
            if !rest.is_empty() {
                match json_or(&rest, kw, at, warnings)? {
                    Some(items) => {
                        source.args = items;
                        source.json = true;
                    }
                    None => source.args = vec![rest.clone()],
                }
            }
        }
        Keyword::Arg => source.args = words::parse_words(&rest, escape),
        Keyword::Env | Keyword::Label => {
            let (pairs, legacy) = words::parse_name_val(&rest, kw, escape).map_err(|reason| {
                at.err(ParseErrorKind::BadArgument {
                    keyword: kw,
                    reason,
                })
                .with_hint(format!("write {kw} name=value [name=value...]"))
            })?;
            if legacy {
                warnings.push(Warning {
                    line: at.line,
                    kind: WarningKind::LegacyKeyValue,
                    message: format!(
                        "\"{kw} key=value\" should be used instead of legacy \"{kw} key value\" format"
                    ),
                });
            }
            source.args = pairs.into_iter().flat_map(|(k, v)| [k, v]).collect();
        }
        Keyword::Expose | Keyword::From => source.args = words::split_blanks(&rest),
        Keyword::Maintainer | Keyword::StopSignal | Keyword::User | Keyword::Workdir => {
            if !rest.is_empty() {
                source.args = vec![rest.clone()];
            }
        }
        Keyword::Healthcheck => {
            let (typ, cmd_rest) = words::split_first(&rest);
            if !typ.is_empty() {
                source.args.push(typ.to_string());
                if !cmd_rest.is_empty() {
                    match json_or(cmd_rest, kw, at, warnings)? {
                        Some(items) => {
                            source.args.extend(items);
                            source.json = true;
                        }
                        None => source.args.push(cmd_rest.to_string()),
                    }
                }
            }
        }
        Keyword::Onbuild => {}
    }

    let flags = flags::parse(keyword, &raw_flags, at.line, at.end)?;
    let args = source.args.clone();
    let missing = |expected: &'static str| {
        at.err(ParseErrorKind::MissingArguments {
            keyword: kw,
            expected,
        })
    };
    let exactly_one = || -> Result<String, ParseError> {
        match args.len() {
            0 => Err(missing("exactly one argument")),
            1 => Ok(args[0].clone()),
            n => Err(at.err(ParseErrorKind::ExtraArguments {
                keyword: kw,
                expected: "exactly one argument",
                found: n,
            })),
        }
    };

    Ok(match keyword {
        Keyword::From => {
            let platform = flags.string("platform");
            let (image, alias) = match args.as_slice() {
                [image] => (image.clone(), None),
                [image, as_, name] if as_.eq_ignore_ascii_case("as") => {
                    let lower = name.to_ascii_lowercase();
                    if !valid_stage_name(&lower) {
                        return Err(at
                            .err(ParseErrorKind::BadArgument {
                                keyword: kw,
                                reason: format!(
                                    "invalid name for build stage: {name:?}, name can't start \
                                     with a number or contain symbols"
                                ),
                            })
                            .with_hint("stage names match [a-z][a-z0-9-_.]*"));
                    }
                    (image.clone(), Some(lower))
                }
                [] => return Err(missing("an image (FROM image [AS name])")),
                _ => {
                    return Err(at
                        .err(ParseErrorKind::BadArgument {
                            keyword: kw,
                            reason: "FROM requires either one or three arguments".to_string(),
                        })
                        .with_hint("write `FROM image` or `FROM image AS name`"))
                }
            };
            Instruction::From(From {
                source,
                image,
                platform,
                alias,
            })
        }
        Keyword::Run => {
            let command = command_line(&source, || missing("at least one argument"))?;
            let mounts = flags
                .strings("mount")
                .iter()
                .map(|m| {
                    mount::parse(m, None).map_err(|(option, reason)| {
                        at.err(ParseErrorKind::BadMount { option, reason })
                            .with_hint(mount::HINT)
                    })
                })
                .collect::<Result<Vec<_>, _>>()?;
            let network = match flags.string("network").as_deref() {
                None => None,
                Some("default") => Some(NetworkMode::Default),
                Some("none") => Some(NetworkMode::None),
                Some("host") => Some(NetworkMode::Host),
                Some(other) => return Err(bad_flag(at, "network", other, "default, none or host")),
            };
            let security = match flags.string("security").as_deref() {
                None => None,
                Some("sandbox") => Some(SecurityMode::Sandbox),
                Some("insecure") => Some(SecurityMode::Insecure),
                Some(other) => return Err(bad_flag(at, "security", other, "sandbox or insecure")),
            };
            Instruction::Run(Run {
                source,
                command,
                mounts,
                network,
                security,
                heredocs: logical.heredocs.clone(),
            })
        }
        Keyword::Cmd => Instruction::Cmd(Cmd {
            command: command_line(&source, || missing("at least one argument"))?,
            source,
        }),
        Keyword::Entrypoint => Instruction::Entrypoint(Entrypoint {
            command: command_line(&source, || missing("at least one argument"))?,
            source,
        }),
        Keyword::Shell => {
            if !source.json {
                let e = if args.is_empty() {
                    missing("at least one argument")
                } else {
                    at.err(ParseErrorKind::JsonRequired { keyword: kw })
                };
                return Err(e.with_hint(r#"write SHELL ["executable", "parameters"]"#));
            }
            if args.is_empty() {
                return Err(missing("at least one argument"));
            }
            Instruction::Shell(Shell {
                shell: args,
                source,
            })
        }
        Keyword::Env | Keyword::Label => {
            if args.is_empty() {
                return Err(missing("at least one argument")
                    .with_hint(format!("write {kw} name=value [name=value...]")));
            }
            let pairs: Vec<(String, String)> = args
                .chunks(2)
                .map(|p| (p[0].clone(), p.get(1).cloned().unwrap_or_default()))
                .collect();
            if pairs.iter().any(|(k, _)| k.is_empty()) {
                return Err(at.err(ParseErrorKind::BadArgument {
                    keyword: kw,
                    reason: format!("{kw} names can not be blank"),
                }));
            }
            if keyword == Keyword::Env {
                Instruction::Env(Env { source, pairs })
            } else {
                Instruction::Label(Label { source, pairs })
            }
        }
        Keyword::Maintainer => {
            warnings.push(Warning {
                line: at.line,
                kind: WarningKind::MaintainerDeprecated,
                message: "MAINTAINER is deprecated; use LABEL org.opencontainers.image.authors=..."
                    .to_string(),
            });
            Instruction::Maintainer(Maintainer {
                name: exactly_one()?,
                source,
            })
        }
        Keyword::Expose => {
            if args.is_empty() {
                return Err(missing("at least one argument").with_hint("write EXPOSE 80/tcp"));
            }
            Instruction::Expose(Expose {
                ports: args,
                source,
            })
        }
        Keyword::Add | Keyword::Copy => build_copy(keyword, source, &flags, logical, at)?,
        Keyword::Volume => {
            if args.is_empty() {
                return Err(missing("at least one argument"));
            }
            let paths: Vec<String> = args.iter().map(|v| v.trim().to_string()).collect();
            if paths.iter().any(String::is_empty) {
                return Err(at.err(ParseErrorKind::BadArgument {
                    keyword: kw,
                    reason: "VOLUME specified can not be an empty string".to_string(),
                }));
            }
            Instruction::Volume(Volume { paths, source })
        }
        Keyword::User => Instruction::User(User {
            user: exactly_one()?,
            source,
        }),
        Keyword::Workdir => Instruction::Workdir(Workdir {
            path: exactly_one()?,
            source,
        }),
        Keyword::StopSignal => Instruction::StopSignal(StopSignal {
            signal: exactly_one()?,
            source,
        }),
        Keyword::Arg => {
            if args.is_empty() {
                return Err(missing("at least one argument").with_hint("write ARG name[=default]"));
            }
            let mut decls = Vec::with_capacity(args.len());
            for word in &args {
                let decl = match word.split_once('=') {
                    Some((k, v)) => (k.to_string(), Some(v.to_string())),
                    None => (word.clone(), None),
                };
                if decl.0.is_empty() {
                    return Err(at.err(ParseErrorKind::BadArgument {
                        keyword: kw,
                        reason: "ARG names can not be blank".to_string(),
                    }));
                }
                decls.push(decl);
            }
            Instruction::Arg(Arg {
                args: decls,
                source,
            })
        }
        Keyword::Onbuild => {
            if rest.is_empty() {
                return Err(missing("an instruction").with_hint("write ONBUILD RUN ..."));
            }
            let (trigger, _) = words::split_first(&rest);
            if let Some(k @ (Keyword::Onbuild | Keyword::From | Keyword::Maintainer)) =
                Keyword::parse(trigger)
            {
                return Err(at.err(ParseErrorKind::BadOnbuild {
                    keyword: k.as_str(),
                }));
            }
            let inner = build_line(&rest, logical, escape, warnings, at)?;
            let mut raw = rest.clone();
            for (h, body) in logical.heredocs.iter().zip(&logical.raw_heredocs) {
                raw.push('\n');
                raw.push_str(body);
                raw.push_str(&h.name);
            }
            Instruction::Onbuild(Onbuild {
                source,
                inner: Box::new(inner),
                raw,
            })
        }
        Keyword::Healthcheck => build_healthcheck(source, &flags, at)?,
    })
}

/// The keyword, or an "unknown instruction" error with a suggestion.
fn keyword_of(cmd: &str, at: At) -> Result<Keyword, ParseError> {
    if let Some(k) = Keyword::parse(cmd) {
        return Ok(k);
    }
    let names: Vec<&str> = Keyword::ALL.iter().map(|k| k.as_str()).collect();
    let mut e = at.err(ParseErrorKind::UnknownInstruction {
        word: cmd.to_string(),
    });
    e.hint = Some(match suggest(cmd, &names) {
        Some(s) => format!("did you mean {s}?"),
        None if cmd.starts_with('-') || cmd.contains('=') || cmd.contains('/') => {
            "this looks like the continuation of the previous instruction: did a line \
             continuation (`\\` at the end of the line before) go missing?"
                .to_string()
        }
        None => format!("instructions are: {}", names.join(", ")),
    });
    Err(e)
}

fn valid_stage_name(name: &str) -> bool {
    let mut chars = name.chars();
    chars.next().is_some_and(|c| c.is_ascii_lowercase())
        && chars
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || matches!(c, '-' | '_' | '.'))
}

fn bad_flag(at: At, flag: &str, value: &str, allowed: &str) -> ParseError {
    at.err(ParseErrorKind::BadFlag {
        flag: flag.to_string(),
        reason: format!("{value:?} is not supported"),
    })
    .with_hint(format!("--{flag} takes {allowed}"))
}

/// JSON form if `rest` is a JSON array of strings; `None` for the shell
/// form. A JSON array with non-strings is an error.
fn json_or(
    rest: &str,
    keyword: &'static str,
    at: At,
    warnings: &mut Vec<Warning>,
) -> Result<Option<Vec<String>>, ParseError> {
    match words::parse_json(rest) {
        Json::Strings { items, trailing } => {
            if trailing {
                warnings.push(Warning {
                    line: at.line,
                    kind: WarningKind::TrailingJson,
                    message: format!("{keyword}: text after the JSON array is ignored"),
                });
            }
            Ok(Some(items))
        }
        Json::NotStrings => Err(at
            .err(ParseErrorKind::JsonNotStrings { keyword })
            .with_hint(r#"quote every element: ["executable", "arg"]"#)),
        Json::No => Ok(None),
    }
}

fn command_line(
    source: &Source,
    missing: impl Fn() -> ParseError,
) -> Result<CommandLine, ParseError> {
    if source.json {
        return Ok(CommandLine::Exec(source.args.clone()));
    }
    match source.args.first() {
        Some(s) if !s.is_empty() => Ok(CommandLine::Shell(s.clone())),
        _ => Err(missing()),
    }
}

fn build_copy(
    keyword: Keyword,
    source: Source,
    flags: &Flags,
    logical: &Logical,
    at: At,
) -> Result<Instruction, ParseError> {
    let kw = keyword.as_str();
    let args = &source.args;
    if args.len() < 2 {
        return Err(at
            .err(ParseErrorKind::MissingArguments {
                keyword: kw,
                expected: "at least two arguments (sources and a destination)",
            })
            .with_hint(format!("write {kw} <src>... <dest>")));
    }
    let (dest, srcs) = args.split_last().unwrap_or((&args[0], &[]));
    if heredoc::parse_word(dest).is_some() {
        return Err(at.err(ParseErrorKind::BadArgument {
            keyword: kw,
            reason: format!("{kw} cannot accept a heredoc as a destination"),
        }));
    }
    let find = |name: &str| -> Option<Heredoc> {
        logical.heredocs.iter().find(|h| h.name == name).cloned()
    };
    let sources = srcs
        .iter()
        .map(
            |s| match heredoc::parse_word(s).and_then(|w| find(&w.name)) {
                Some(h) => CopySource::Heredoc(h),
                None => CopySource::Path(s.clone()),
            },
        )
        .collect();
    let dest = dest.clone();
    Ok(if keyword == Keyword::Copy {
        Instruction::Copy(Copy {
            sources,
            dest,
            from: flags.string("from"),
            chown: flags.string("chown"),
            chmod: flags.string("chmod"),
            link: flags.bool("link").unwrap_or(false),
            parents: flags.bool("parents").unwrap_or(false),
            excludes: flags.strings("exclude"),
            source,
        })
    } else {
        Instruction::Add(Add {
            sources,
            dest,
            chown: flags.string("chown"),
            chmod: flags.string("chmod"),
            link: flags.bool("link").unwrap_or(false),
            excludes: flags.strings("exclude"),
            checksum: flags.string("checksum"),
            keep_git_dir: flags.bool("keep-git-dir"),
            unpack: flags.bool("unpack"),
            source,
        })
    })
}

/// Only ARG may come before the first FROM, and there must be a FROM.
pub(crate) fn check_order(instructions: &[Instruction]) -> Result<(), ParseError> {
    for inst in instructions {
        match inst {
            Instruction::From(_) => return Ok(()),
            Instruction::Arg(_) => {}
            other => {
                let span = other.span();
                return Err(ParseError::new(
                    span.start_line,
                    span.end_line,
                    ParseErrorKind::BeforeFrom {
                        keyword: other.keyword().as_str(),
                    },
                )
                .with_hint("start the stage with FROM image"));
            }
        }
    }
    let last = instructions.last().map(|i| i.span().end_line).unwrap_or(1);
    Err(ParseError::new(last, last, ParseErrorKind::NoFrom)
        .with_hint("add FROM image (or FROM scratch) before the first instruction"))
}
