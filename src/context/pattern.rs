//! Path patterns as Docker matches them.
//!
//! Two dialects share the character-class parser here:
//! - [`go_match`]: Go's `filepath.Match` (used for COPY/ADD source wildcards):
//!   `*` and `?` never match `/`; `[...]` classes with `^` negation and
//!   ranges; `\` escapes.
//! - [`IgnorePattern`]: moby/patternmatcher's dialect for `.dockerignore`,
//!   which adds `**` and keeps that library's shortcuts (exact, prefix and
//!   suffix matches), quirks included, so imgb selects the same files Docker
//!   does.

use std::fmt;

/// A malformed pattern (Go's `filepath.ErrBadPattern`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BadPattern(pub String);

impl fmt::Display for BadPattern {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "syntax error in pattern {:?}", self.0)
    }
}

/// One `[...]` class.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Class {
    negated: bool,
    ranges: Vec<(char, char)>,
}

impl Class {
    fn matches(&self, c: char) -> bool {
        self.ranges.iter().any(|(lo, hi)| *lo <= c && c <= *hi) != self.negated
    }
}

/// Parses a class starting after `[`; returns it and the chars consumed
/// (including the closing `]`). Follows Go's `filepath.Match`: the class is
/// non-empty, `-` and `]` must be escaped where a char is expected, and a
/// reversed range is allowed (it matches nothing).
fn parse_class(chars: &[char], pattern: &str) -> Result<(Class, usize), BadPattern> {
    let bad = || BadPattern(pattern.to_string());
    let mut i = 0;
    let negated = chars.first() == Some(&'^');
    if negated {
        i += 1;
    }
    let mut ranges = Vec::new();
    loop {
        if chars.get(i) == Some(&']') && !ranges.is_empty() {
            return Ok((Class { negated, ranges }, i + 1));
        }
        let lo = class_char(chars, &mut i).ok_or_else(bad)?;
        let hi = if chars.get(i) == Some(&'-') {
            i += 1;
            class_char(chars, &mut i).ok_or_else(bad)?
        } else {
            lo
        };
        ranges.push((lo, hi));
    }
}

/// One char of a class (Go's `getEsc`): not `-` or `]`, `\` escapes, and the
/// class must go on after it.
fn class_char(chars: &[char], i: &mut usize) -> Option<char> {
    let mut c = *chars.get(*i)?;
    if c == '-' || c == ']' {
        return None;
    }
    if c == '\\' {
        *i += 1;
        c = *chars.get(*i)?;
    }
    *i += 1;
    chars.get(*i)?;
    Some(c)
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum Token {
    Literal(char),
    /// `*`: any run of non-`/` chars.
    Star,
    /// `?`: one non-`/` char.
    Any,
    Class(Class),
    /// `**` followed by more pattern: `(.*/)?`.
    DoubleStar,
    /// `**` at the end: `.*`.
    Rest,
}

fn matches_tokens(tokens: &[Token], text: &[char]) -> bool {
    let Some((first, rest)) = tokens.split_first() else {
        return text.is_empty();
    };
    match first {
        Token::Literal(c) => text.first() == Some(c) && matches_tokens(rest, &text[1..]),
        Token::Any => text.first().is_some_and(|c| *c != '/') && matches_tokens(rest, &text[1..]),
        Token::Class(class) => {
            text.first().is_some_and(|c| class.matches(*c)) && matches_tokens(rest, &text[1..])
        }
        Token::Star => {
            let mut i = 0;
            loop {
                if matches_tokens(rest, &text[i..]) {
                    return true;
                }
                if i == text.len() || text[i] == '/' {
                    return false;
                }
                i += 1;
            }
        }
        Token::DoubleStar => {
            // Empty, or any prefix ending in '/'.
            if matches_tokens(rest, text) {
                return true;
            }
            (0..text.len()).any(|i| text[i] == '/' && matches_tokens(rest, &text[i + 1..]))
        }
        Token::Rest => true,
    }
}

/// Go's `filepath.Match(pattern, name)` on `/`-separated paths.
pub fn go_match(pattern: &str, name: &str) -> Result<bool, BadPattern> {
    let tokens = go_tokens(pattern)?;
    let text: Vec<char> = name.chars().collect();
    Ok(matches_tokens(&tokens, &text))
}

/// Whether `s` has any of Go's `filepath.Match` meta characters.
pub fn has_meta(s: &str) -> bool {
    s.contains(['*', '?', '[', '\\'])
}

fn go_tokens(pattern: &str) -> Result<Vec<Token>, BadPattern> {
    let chars: Vec<char> = pattern.chars().collect();
    let mut tokens = Vec::new();
    let mut i = 0;
    while i < chars.len() {
        match chars[i] {
            '*' => {
                if tokens.last() != Some(&Token::Star) {
                    tokens.push(Token::Star);
                }
                i += 1;
            }
            '?' => {
                tokens.push(Token::Any);
                i += 1;
            }
            '[' => {
                let (class, used) = parse_class(&chars[i + 1..], pattern)?;
                tokens.push(Token::Class(class));
                i += 1 + used;
            }
            '\\' => {
                let c = *chars
                    .get(i + 1)
                    .ok_or_else(|| BadPattern(pattern.to_string()))?;
                tokens.push(Token::Literal(c));
                i += 2;
            }
            c => {
                tokens.push(Token::Literal(c));
                i += 1;
            }
        }
    }
    Ok(tokens)
}

/// How moby/patternmatcher decided to match a pattern.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Kind {
    Exact,
    /// Literal text followed by a final `**`.
    Prefix,
    /// A leading `**` followed by literal text.
    Suffix,
    Tokens(Vec<Token>),
}

/// One `.dockerignore` pattern (already cleaned, without its `!`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IgnorePattern {
    pattern: String,
    /// Number of `/`-separated parts: how deep a parent dir must be checked.
    dirs: usize,
    kind: Kind,
}

impl IgnorePattern {
    /// Compiles `pattern` the way moby/patternmatcher does; malformed
    /// patterns are rejected as Go's `filepath.Match` would.
    pub fn new(pattern: &str) -> Result<Self, BadPattern> {
        go_tokens(pattern)?; // syntax check, as moby does with filepath.Match
                             // `detected` follows moby's matchType decisions step by step.
        #[derive(PartialEq)]
        enum Detected {
            Exact,
            Prefix,
            Suffix,
            Regexp,
        }
        let chars: Vec<char> = pattern.chars().collect();
        let mut tokens = Vec::new();
        let mut detected = Detected::Exact;
        let mut i = 0;
        let mut step = 0;
        while i < chars.len() {
            let c = chars[i];
            i += 1;
            match c {
                '*' if chars.get(i) == Some(&'*') => {
                    i += 1;
                    if chars.get(i) == Some(&'/') {
                        i += 1;
                    }
                    if i >= chars.len() {
                        detected = if detected == Detected::Exact {
                            Detected::Prefix
                        } else {
                            Detected::Regexp
                        };
                        tokens.push(Token::Rest);
                    } else {
                        detected = Detected::Regexp;
                        tokens.push(Token::DoubleStar);
                    }
                    if step == 0 {
                        detected = Detected::Suffix;
                    }
                }
                '*' => {
                    detected = Detected::Regexp;
                    tokens.push(Token::Star);
                }
                '?' => {
                    detected = Detected::Regexp;
                    tokens.push(Token::Any);
                }
                '\\' => match chars.get(i) {
                    Some(next) => {
                        detected = Detected::Regexp;
                        tokens.push(Token::Literal(*next));
                        i += 1;
                    }
                    None => tokens.push(Token::Literal('\\')),
                },
                '[' => {
                    detected = Detected::Regexp;
                    let (class, used) = parse_class(&chars[i..], pattern)?;
                    tokens.push(Token::Class(class));
                    i += used;
                }
                other => tokens.push(Token::Literal(other)),
            }
            step += 1;
        }
        let kind = match detected {
            Detected::Exact => Kind::Exact,
            Detected::Prefix => Kind::Prefix,
            Detected::Suffix => Kind::Suffix,
            Detected::Regexp => Kind::Tokens(tokens),
        };
        Ok(IgnorePattern {
            pattern: pattern.to_string(),
            dirs: pattern.split('/').count(),
            kind,
        })
    }

    /// Whether the pattern matches `path` itself (no parent check).
    pub fn matches(&self, path: &str) -> bool {
        match &self.kind {
            Kind::Exact => path == self.pattern,
            Kind::Prefix => path.starts_with(&self.pattern[..self.pattern.len() - 2]),
            Kind::Suffix => {
                // Docker quirk: `**foo` is "ends with foo"; `**/foo` also
                // matches `foo` itself.
                let suffix = &self.pattern[2..];
                path.ends_with(suffix) || (suffix.starts_with('/') && path == &suffix[1..])
            }
            Kind::Tokens(tokens) => {
                let text: Vec<char> = path.chars().collect();
                matches_tokens(tokens, &text)
            }
        }
    }

    /// The number of `/`-separated parts of the pattern.
    pub fn depth(&self) -> usize {
        self.dirs
    }

    pub fn as_str(&self) -> &str {
        &self.pattern
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn go_match_table() {
        // (pattern, name, matches) — Go's filepath.Match semantics.
        let table: &[(&str, &str, bool)] = &[
            ("abc", "abc", true),
            ("*", "abc", true),
            ("*c", "abc", true),
            ("a*", "a", true),
            ("a*", "abc", true),
            ("a*", "ab/c", false),
            ("a*/b", "abc/b", true),
            ("a*/b", "a/c/b", false),
            ("a*b*c*d*e*/f", "axbxcxdxe/f", true),
            ("a*b*c*d*e*/f", "axbxcxdxexxx/f", true),
            ("a*b*c*d*e*/f", "axbxcxdxe/xxx/f", false),
            ("a*b?c*x", "abxbbxdbxebxczzx", true),
            ("a*b?c*x", "abxbbxdbxebxczzy", false),
            ("ab[c]", "abc", true),
            ("ab[b-d]", "abc", true),
            ("ab[e-g]", "abc", false),
            ("ab[^c]", "abc", false),
            ("ab[^b-d]", "abc", false),
            ("ab[^e-g]", "abc", true),
            ("a\\*b", "a*b", true),
            ("a\\*b", "ab", false),
            ("a?b", "a☺b", true),
            ("a[^a]b", "a☺b", true),
            ("a???b", "a☺b", false),
            ("[a-ζ]*", "α", true),
            ("*[a-ζ]", "A", false),
            ("a?b", "a/b", false),
            ("a*b", "a/b", false),
            ("[\\]a]", "]", true),
            ("[\\-]", "-", true),
            ("[x\\-]", "x", true),
            ("[x\\-]", "-", true),
            ("[x\\-]", "z", false),
            ("[\\-x]", "x", true),
            ("*x", "xxx", true),
        ];
        for (pattern, name, want) in table {
            assert_eq!(go_match(pattern, name), Ok(*want), "{pattern} vs {name}");
        }
    }

    #[test]
    fn go_match_rejects_bad_patterns() {
        for bad in [
            "[", "[^", "[^bc", "a[", "[]a]", "[-]", "[x-]", "[-x]", "\\", "[a-b-c]", "a\\", "[a",
        ] {
            assert!(go_match(bad, "a").is_err(), "{bad} should be a bad pattern");
        }
    }

    #[test]
    fn ignore_pattern_kinds_follow_moby() {
        let m = |p: &str, path: &str| IgnorePattern::new(p).unwrap().matches(path);
        // exact
        assert!(m("foo", "foo"));
        assert!(!m("foo", "foobar"));
        // prefix: literal + trailing **
        assert!(m("foo/**", "foo/bar/baz"));
        assert!(m("foo**", "foobar"));
        assert!(!m("foo/**", "foo"));
        // suffix: leading ** + literal
        assert!(m("**/foo", "foo"));
        assert!(m("**/foo", "a/b/foo"));
        assert!(!m("**/foo", "a/b/xfoo"));
        assert!(m("**foo", "a/b/xfoo")); // Docker quirk
        assert!(m("**", "anything/at/all"));
        // regexp
        assert!(m("**/*.go", "a/b/c.go"));
        assert!(m("**/*.go", "c.go"));
        assert!(m("a/**/b", "a/b"));
        assert!(m("a/**/b", "a/x/y/b"));
        assert!(!m("a/**/b", "a/xb"));
        assert!(m("dir/**/*.txt", "dir/x.txt"));
        assert!(m("*.md", "README.md"));
        assert!(!m("*.md", "docs/README.md"));
        assert!(m("*/*.md", "docs/README.md"));
        assert!(m("a.b", "a.b"));
        assert!(!m("a.b", "axb"));
        assert!(m("a?c", "abc"));
        assert!(m("[a-c]x", "bx"));
        assert!(m("\\*x", "*x"));
        assert!(m(
            "**/node_modules/**",
            "web/node_modules/left-pad/index.js"
        ));
    }
}
