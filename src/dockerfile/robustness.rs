//! Property test: arbitrary and mutated Dockerfiles never panic the
//! frontend, and what parses keeps its invariants (spans inside the file,
//! one stage per FROM, dump and JSON and expansion all work).
//!
//! A small deterministic PRNG keeps runs reproducible; the cargo-fuzz
//! target under `fuzz/` explores further with coverage guidance.

use crate::dockerfile::{dump, parse, to_json, Instruction, Lexer};

/// xorshift64*: tiny, deterministic, good enough to pick test inputs.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }

    fn below(&mut self, n: usize) -> usize {
        (self.next() % n.max(1) as u64) as usize
    }

    fn pick<'a>(&mut self, items: &[&'a str]) -> &'a str {
        items[self.below(items.len())]
    }
}

const FRAGMENTS: &[&str] = &[
    "FROM alpine",
    "FROM a AS b",
    "FROM --platform=$P x",
    "RUN ",
    "RUN echo hi",
    "CMD ",
    "COPY ",
    "ADD ",
    "ENV ",
    "ARG ",
    "LABEL ",
    "ONBUILD ",
    "HEALTHCHECK ",
    "SHELL ",
    "EXPOSE ",
    "VOLUME ",
    "USER ",
    "WORKDIR ",
    "STOPSIGNAL ",
    "MAINTAINER ",
    "ENTRYPOINT ",
    "\n",
    "\n",
    "\n",
    "\r\n",
    " ",
    "\t",
    "\\\n",
    "`\n",
    "\\",
    "`",
    "#",
    "# escape=`\n",
    "# syntax=x\n",
    "# check=y\n",
    "<<EOF",
    "<<-EOF",
    "<<'EOF'",
    "EOF\n",
    "\tEOF\n",
    "3<<X",
    "[",
    "]",
    "[\"a\", \"b\"]",
    "[1]",
    "\"",
    "'",
    "$",
    "${",
    "}",
    "${a:-",
    "${a/",
    "${a#*.}",
    "${a//x/y}",
    ":",
    "=",
    "a=b",
    "k v",
    "--mount=type=cache,target=/c",
    "--mount=",
    "--from=x",
    "--link",
    "--chown=1:1",
    "--network=none",
    "--interval=5s",
    "--retries=x",
    "CMD true",
    "NONE",
    "é",
    "\u{feff}",
    "\u{0}",
    "--",
    "-",
    "/",
    "*",
    "?",
    "\\$",
    "x",
];

const SEEDS: &[&str] = &[
    include_str!("../../testdata/parse/corpus/go-multistage/Dockerfile"),
    include_str!("../../testdata/parse/corpus/node-buildkit-features/Dockerfile"),
    include_str!("../../testdata/parse/corpus/official-debian-style/Dockerfile"),
    include_str!("../../testdata/parse/corpus/python-slim/Dockerfile"),
    include_str!("../../testdata/parse/corpus/windows-backtick/Dockerfile"),
];

fn lookup(name: &str) -> Option<String> {
    match name.len() % 3 {
        0 => None,
        1 => Some(String::new()),
        _ => Some(format!("{name} v*al.ue")),
    }
}

/// Everything the frontend offers, run on one input; panics are the bug.
fn exercise(text: &str) {
    let lines = text.split_inclusive('\n').count().max(1);
    let lexer = Lexer::new('\\');
    let _ = lexer.process(text, &lookup);
    let _ = lexer.without_quotes().process(text, &lookup);
    let Ok(df) = parse(text) else { return };
    assert!(!df.instructions.is_empty());
    for inst in &df.instructions {
        let span = inst.span();
        assert!(
            1 <= span.start_line && span.start_line <= span.end_line && span.end_line <= lines,
            "span {span:?} outside 1..={lines} for {text:?}"
        );
        let _ = inst.expand(&lookup, df.escape());
        for h in inst.heredocs() {
            let _ = h.expanded(&lookup, df.escape());
        }
    }
    let froms = df
        .instructions
        .iter()
        .filter(|i| matches!(i, Instruction::From(_)))
        .count();
    assert_eq!(df.stages().stages.len(), froms);
    assert_eq!(dump(&df).lines().count(), df.instructions.len());
    let _ = to_json(&df);
}

fn mutate(rng: &mut Rng, seed: &str) -> String {
    let mut chars: Vec<char> = seed.chars().collect();
    for _ in 0..1 + rng.below(6) {
        let at = rng.below(chars.len() + 1);
        match rng.below(5) {
            0 if !chars.is_empty() => {
                let end = (at + rng.below(20)).min(chars.len());
                chars.drain(at.min(end)..end);
            }
            1 => {
                let frag: Vec<char> = rng.pick(FRAGMENTS).chars().collect();
                chars.splice(at..at, frag);
            }
            2 if !chars.is_empty() => {
                let start = rng.below(chars.len());
                let end = (start + rng.below(40)).min(chars.len());
                let copy: Vec<char> = chars[start..end].to_vec();
                chars.splice(at..at, copy);
            }
            3 => chars.truncate(at),
            _ => {
                if let Some(c) = chars.get_mut(at) {
                    *c = rng.pick(FRAGMENTS).chars().next().unwrap_or('x');
                }
            }
        }
    }
    chars.into_iter().collect()
}

#[test]
fn random_fragment_soup_never_panics() {
    let mut rng = Rng(0x9e37_79b9_7f4a_7c15);
    for _ in 0..3000 {
        let mut text = String::from(if rng.below(2) == 0 { "FROM x\n" } else { "" });
        for _ in 0..rng.below(30) {
            text.push_str(rng.pick(FRAGMENTS));
        }
        exercise(&text);
    }
}

#[test]
fn mutated_real_dockerfiles_never_panic() {
    let mut rng = Rng(0x0123_4567_89ab_cdef);
    for i in 0..2000 {
        let text = mutate(&mut rng, SEEDS[i % SEEDS.len()]);
        exercise(&text);
    }
}

#[test]
fn random_bytes_never_panic() {
    let mut rng = Rng(42);
    for _ in 0..2000 {
        let len = rng.below(200);
        let bytes: Vec<u8> = (0..len).map(|_| (rng.next() >> 56) as u8).collect();
        exercise(&String::from_utf8_lossy(&bytes));
    }
}

#[test]
fn deep_nesting_is_an_error_not_a_stack_overflow() {
    let deep = format!("{}x{}", "${a:-".repeat(100_000), "}".repeat(100_000));
    let err = Lexer::new('\\').expand_word(&deep, &lookup);
    assert!(matches!(
        err,
        Err(crate::dockerfile::ExpandError::TooDeep { .. })
    ));
    let quoted = format!("{}x{}", "\"${a:-".repeat(50_000), "}\"".repeat(50_000));
    assert!(Lexer::new('\\').expand_word(&quoted, &lookup).is_err());
    let heredoc_line = format!("FROM x\nRUN <<EOF {deep}\nEOF\n");
    exercise(&heredoc_line);
}

#[test]
fn deep_onbuild_chains_are_errors() {
    let text = format!("FROM x\n{}RUN <<EOF\nEOF\n", "ONBUILD ".repeat(100_000));
    assert!(parse(&text).is_err());
}
