//! The Dockerfile frontend: syntax (lines, parser directives, continuations,
//! heredocs, argument shapes), the shell-word lexer with `$VAR` expansion,
//! typed typed instructions with their source spans, parse errors and warnings.
//!
//! Pure: it takes `&str` and does no I/O, and it imports nothing else from the
//! crate. Behaviour follows BuildKit's Dockerfile frontend.
