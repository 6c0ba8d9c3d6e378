//! Expanding an instruction's `$VAR` references once ARG/ENV values are
//! known: [`Instruction::expand`].
//!
//! Docker rule: every variable in one instruction sees the values from
//! before that instruction, so `ENV a=1 b=$a` gives `b` the old `a`. The
//! caller passes one lookup for the whole instruction, which makes the rule
//! hold by construction.

use crate::dockerfile::error::ExpandError;
use crate::dockerfile::heredoc::Heredoc;
use crate::dockerfile::instruction::*;
use crate::dockerfile::lexer::{Lexer, Lookup};
use crate::dockerfile::mount;

impl Heredoc {
    /// The body with `$VAR` expanded when the delimiter was unquoted
    /// (quotes in the body are kept), or the body as written otherwise.
    pub fn expanded(&self, lookup: Lookup<'_>, escape: char) -> Result<String, ExpandError> {
        if !self.expand {
            return Ok(self.content.clone());
        }
        Lexer::new(escape)
            .without_quotes()
            .expand_word(&self.content, lookup)
    }
}

struct Expander<'a> {
    lexer: Lexer,
    lookup: Lookup<'a>,
}

impl Expander<'_> {
    fn word(&self, s: &str) -> Result<String, ExpandError> {
        self.lexer.expand_word(s, self.lookup)
    }

    fn opt(&self, s: &Option<String>) -> Result<Option<String>, ExpandError> {
        s.as_deref().map(|v| self.word(v)).transpose()
    }

    fn all(&self, v: &[String]) -> Result<Vec<String>, ExpandError> {
        v.iter().map(|s| self.word(s)).collect()
    }

    fn pairs(&self, v: &[(String, String)]) -> Result<Vec<(String, String)>, ExpandError> {
        v.iter()
            .map(|(k, val)| Ok((self.word(k)?, self.word(val)?)))
            .collect()
    }

    fn sources(&self, v: &[CopySource]) -> Result<Vec<CopySource>, ExpandError> {
        v.iter()
            .map(|s| match s {
                CopySource::Path(p) => Ok(CopySource::Path(self.word(p)?)),
                CopySource::Heredoc(h) => Ok(CopySource::Heredoc(h.clone())),
            })
            .collect()
    }
}

impl Instruction {
    /// The instruction with every value Docker expands substituted from
    /// `lookup` and its quotes removed: FROM (image, platform), ADD/COPY
    /// (sources, destination and flags), ENV/LABEL (keys and values),
    /// EXPOSE (split into words), STOPSIGNAL, USER, VOLUME, WORKDIR, ARG
    /// defaults and RUN `--mount` options. RUN/CMD/ENTRYPOINT/SHELL/
    /// HEALTHCHECK/MAINTAINER are returned unchanged (the shell expands
    /// them), and so is ONBUILD, whose trigger is expanded when it runs in a
    /// child image. Heredoc bodies are expanded separately, with
    /// [`Heredoc::expanded`].
    ///
    /// `escape` is [`crate::dockerfile::Dockerfile::escape`].
    ///
    /// The returned instruction's [`Source`] shows the expanded values too
    /// (its `args`, and the flags of FROM, COPY and ADD), so that
    /// [`crate::dockerfile::dump_instruction`] prints what will be used.
    pub fn expand(&self, lookup: Lookup<'_>, escape: char) -> Result<Instruction, ExpandError> {
        let x = Expander {
            lexer: Lexer::new(escape),
            lookup,
        };
        let mut out = self.expand_fields(&x)?;
        refresh_source(&mut out, &x)?;
        Ok(out)
    }

    fn expand_fields(&self, x: &Expander<'_>) -> Result<Instruction, ExpandError> {
        let lookup = x.lookup;
        Ok(match self {
            Instruction::From(i) => Instruction::From(From {
                image: x.word(&i.image)?,
                platform: x.opt(&i.platform)?,
                ..i.clone()
            }),
            Instruction::Env(i) => Instruction::Env(Env {
                pairs: x.pairs(&i.pairs)?,
                ..i.clone()
            }),
            Instruction::Label(i) => Instruction::Label(Label {
                pairs: x.pairs(&i.pairs)?,
                ..i.clone()
            }),
            Instruction::Expose(i) => {
                let mut ports = Vec::new();
                for p in &i.ports {
                    ports.extend(x.lexer.expand_words(p, lookup)?);
                }
                Instruction::Expose(Expose { ports, ..i.clone() })
            }
            Instruction::StopSignal(i) => Instruction::StopSignal(StopSignal {
                signal: x.word(&i.signal)?,
                ..i.clone()
            }),
            Instruction::User(i) => Instruction::User(User {
                user: x.word(&i.user)?,
                ..i.clone()
            }),
            Instruction::Workdir(i) => Instruction::Workdir(Workdir {
                path: x.word(&i.path)?,
                ..i.clone()
            }),
            Instruction::Volume(i) => Instruction::Volume(Volume {
                paths: x.all(&i.paths)?,
                ..i.clone()
            }),
            // Docker quirk: ARG is missing from the documented list, but
            // BuildKit expands ARG defaults (`ARG B=${A}-suffix`).
            Instruction::Arg(i) => Instruction::Arg(Arg {
                args: i
                    .args
                    .iter()
                    .map(|(k, v)| Ok((k.clone(), x.opt(v)?)))
                    .collect::<Result<_, ExpandError>>()?,
                ..i.clone()
            }),
            Instruction::Copy(i) => Instruction::Copy(Copy {
                sources: x.sources(&i.sources)?,
                dest: x.word(&i.dest)?,
                from: x.opt(&i.from)?,
                chown: x.opt(&i.chown)?,
                chmod: x.opt(&i.chmod)?,
                excludes: x.all(&i.excludes)?,
                ..i.clone()
            }),
            Instruction::Add(i) => Instruction::Add(Add {
                sources: x.sources(&i.sources)?,
                dest: x.word(&i.dest)?,
                chown: x.opt(&i.chown)?,
                chmod: x.opt(&i.chmod)?,
                excludes: x.all(&i.excludes)?,
                checksum: x.opt(&i.checksum)?,
                ..i.clone()
            }),
            Instruction::Run(i) => {
                let f = |v: &str| x.word(v).map_err(|e| e.to_string());
                let mounts = i
                    .mounts
                    .iter()
                    .map(|m| {
                        mount::parse(&m.raw, Some(&f)).map_err(|(option, reason)| {
                            ExpandError::BadValue {
                                keyword: "RUN",
                                reason: format!("invalid --mount option {option:?}: {reason}"),
                            }
                        })
                    })
                    .collect::<Result<_, _>>()?;
                Instruction::Run(Run {
                    mounts,
                    ..i.clone()
                })
            }
            other => other.clone(),
        })
    }
}

/// Rewrites the source's argument nodes (and value flags) from the expanded
/// typed fields.
fn refresh_source(inst: &mut Instruction, x: &Expander<'_>) -> Result<(), ExpandError> {
    fn pairs(p: &[(String, String)]) -> Vec<String> {
        p.iter().flat_map(|(k, v)| [k.clone(), v.clone()]).collect()
    }
    fn copy_args(args: &[String], sources: &[CopySource], dest: &str) -> Vec<String> {
        let mut out: Vec<String> = sources
            .iter()
            .zip(args)
            .map(|(s, raw)| match s {
                CopySource::Path(p) => p.clone(),
                CopySource::Heredoc(_) => raw.clone(),
            })
            .collect();
        out.push(dest.to_string());
        out
    }
    let expand_flags = matches!(
        inst,
        Instruction::From(_) | Instruction::Copy(_) | Instruction::Add(_)
    );
    let new_args = match &*inst {
        Instruction::From(i) => {
            let mut a = i.source.args.clone();
            if let Some(first) = a.first_mut() {
                first.clone_from(&i.image);
            }
            Some(a)
        }
        Instruction::Env(i) => Some(pairs(&i.pairs)),
        Instruction::Label(i) => Some(pairs(&i.pairs)),
        Instruction::Expose(i) => Some(i.ports.clone()),
        Instruction::StopSignal(i) => Some(vec![i.signal.clone()]),
        Instruction::User(i) => Some(vec![i.user.clone()]),
        Instruction::Workdir(i) => Some(vec![i.path.clone()]),
        Instruction::Volume(i) => Some(i.paths.clone()),
        Instruction::Arg(i) => Some(
            i.args
                .iter()
                .map(|(k, v)| match v {
                    Some(v) => format!("{k}={v}"),
                    None => k.clone(),
                })
                .collect(),
        ),
        Instruction::Copy(i) => Some(copy_args(&i.source.args, &i.sources, &i.dest)),
        Instruction::Add(i) => Some(copy_args(&i.source.args, &i.sources, &i.dest)),
        _ => None,
    };
    let source = match inst {
        Instruction::From(i) => &mut i.source,
        Instruction::Env(i) => &mut i.source,
        Instruction::Label(i) => &mut i.source,
        Instruction::Expose(i) => &mut i.source,
        Instruction::StopSignal(i) => &mut i.source,
        Instruction::User(i) => &mut i.source,
        Instruction::Workdir(i) => &mut i.source,
        Instruction::Volume(i) => &mut i.source,
        Instruction::Arg(i) => &mut i.source,
        Instruction::Copy(i) => &mut i.source,
        Instruction::Add(i) => &mut i.source,
        _ => return Ok(()),
    };
    if let Some(args) = new_args {
        source.args = args;
    }
    if expand_flags {
        for flag in &mut source.flags {
            if let Some((name, value)) = flag.split_once('=') {
                *flag = format!("{name}={}", x.word(value)?);
            }
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use crate::dockerfile::{parse, Instruction};

    fn vars(name: &str) -> Option<String> {
        match name {
            "a" => Some("old".to_string()),
            "V" => Some("1.2".to_string()),
            _ => None,
        }
    }

    #[test]
    fn env_sees_values_from_before_the_instruction() {
        let df = parse("FROM x\nENV a=new b=$a\n").expect("parses");
        let expanded = df.instructions[1].expand(&vars, '\\').expect("expands");
        let Instruction::Env(env) = expanded else {
            panic!("not ENV")
        };
        assert_eq!(
            env.pairs,
            vec![("a".into(), "new".into()), ("b".into(), "old".into())]
        );
    }

    #[test]
    fn copy_and_from_expand_and_drop_quotes() {
        let df = parse("FROM img:${V}\nCOPY --chown=$a [\"a b\", \"/dst/$V/\"]\n").expect("parses");
        let Instruction::From(from) = df.instructions[0].expand(&vars, '\\').expect("ok") else {
            panic!("not FROM")
        };
        assert_eq!(from.image, "img:1.2");
        let Instruction::Copy(copy) = df.instructions[1].expand(&vars, '\\').expect("ok") else {
            panic!("not COPY")
        };
        assert_eq!(copy.chown.as_deref(), Some("old"));
        assert_eq!(copy.dest, "/dst/1.2/");
        assert_eq!(
            copy.sources,
            vec![crate::dockerfile::CopySource::Path("a b".into())]
        );
    }

    #[test]
    fn run_mounts_are_retyped_after_expansion() {
        let df = parse("FROM x\nRUN --mount=type=cache,target=/c,mode=$V echo\n").expect("parses");
        let err = df.instructions[1].expand(&vars, '\\');
        assert!(err.is_err(), "1.2 is not an octal mode");
    }
}
