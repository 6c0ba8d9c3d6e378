//! Heredocs (`RUN <<EOF`, `COPY <<-"EOF" /dest`): recognising the `<<NAME`
//! words of an instruction line and the typed [`Heredoc`] with its body.

use serde::Serialize;

use crate::dockerfile::lexer::Lexer;

/// One heredoc attached to an instruction.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Heredoc {
    /// The delimiter word, quotes removed (`EOF` for `<<"EOF"`).
    pub name: String,
    /// The body: every line up to the terminator, each with its newline;
    /// leading tabs already removed when `strip_tabs`.
    pub content: String,
    /// False when any part of the delimiter was quoted: the body is then
    /// taken literally, with no `$VAR` expansion.
    pub expand: bool,
    /// `<<-NAME`: leading tabs are stripped from the body and terminator.
    pub strip_tabs: bool,
    /// The file descriptor written before `<<` (`3<<EOF`), if any.
    pub fd: Option<u32>,
}

/// What a `<<NAME` word says, before the body is read.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct HeredocWord {
    pub name: String,
    pub expand: bool,
    pub strip_tabs: bool,
    pub fd: Option<u32>,
}

/// Recognises one word as a heredoc introducer: `[fd]<<[-]NAME`, where NAME
/// is one shell word (possibly quoted) without `<` (BuildKit's
/// `^(\d*)<<(-?)([^<]*)$`).
pub(crate) fn parse_word(word: &str) -> Option<HeredocWord> {
    let digits = word.len() - word.trim_start_matches(|c: char| c.is_ascii_digit()).len();
    let rest = word[digits..].strip_prefix("<<")?;
    let (strip_tabs, rest) = match rest.strip_prefix('-') {
        Some(r) => (true, r),
        None => (false, rest),
    };
    if rest.is_empty() || rest.contains('<') {
        return None;
    }
    let fd = if digits > 0 {
        Some(word[..digits].parse().ok()?)
    } else {
        None
    };
    let unset = |_: &str| None;
    let plain = Lexer::new('\\').raw(false, false, true);
    let words = plain.expand_words(rest, &unset).ok()?;
    if words.len() != 1 {
        return None;
    }
    let raw = Lexer::new('\\').raw(true, false, true);
    let raw_words = raw.expand_words(rest, &unset).ok()?;
    let quotes = |s: &str| s.chars().filter(|c| *c == '\'' || *c == '"').count();
    // Any quoted part of the delimiter disables expansion of the body: the
    // word has the same number of quote characters with and without quote
    // removal only when nothing was quoted.
    let expand = raw_words.len() == 1 && quotes(&words[0]) == quotes(&raw_words[0]);
    Some(HeredocWord {
        name: words[0].clone(),
        expand,
        strip_tabs,
        fd,
    })
}

/// The heredoc introducers on an instruction line, in order.
pub(crate) fn words_in_line(line: &str) -> Vec<HeredocWord> {
    let unset = |_: &str| None;
    let lexer = Lexer::new('\\').raw(true, true, true);
    // A line the lexer cannot split (an unbalanced quote) has no heredocs,
    // as in BuildKit.
    let words = lexer.expand_words(line, &unset).unwrap_or_default();
    words.iter().filter_map(|w| parse_word(w)).collect()
}

/// Removes leading tabs from every line (`<<-`).
pub(crate) fn strip_leading_tabs(content: &str) -> String {
    content
        .split_inclusive('\n')
        .map(|l| l.trim_start_matches('\t'))
        .collect()
}
