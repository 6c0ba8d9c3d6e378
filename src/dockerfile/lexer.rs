//! The shell-word lexer: quote removal, the escape character, `$VAR` and
//! `${VAR...}` expansion and word splitting, as BuildKit's `shell.Lex` does
//! it (a subset of POSIX sh word expansion, no command substitution).
//!
//! Supported forms: `$v`, `${v}`, `${v:-w}`, `${v-w}`, `${v:+w}`, `${v+w}`,
//! `${v:?msg}`, `${v?msg}`, `${v#p}`, `${v##p}`, `${v%p}`, `${v%%p}`,
//! `${v/p/r}`, `${v//p/r}` (patterns with `*` and `?`).

use std::collections::BTreeSet;

use crate::dockerfile::error::ExpandError;
use crate::dockerfile::pattern::{parse_pattern, replace, trim_prefix, trim_suffix, Tok};

/// How the lexer looks a variable up: `None` when it is not set.
pub type Lookup<'a> = &'a dyn Fn(&str) -> Option<String>;

/// The result of processing one piece of text.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Expansion {
    /// The text expanded as a single word (spaces kept).
    pub word: String,
    /// The text expanded and split into words (for instructions that take
    /// word lists).
    pub words: Vec<String>,
    /// Variables that were referenced and set.
    pub matched: BTreeSet<String>,
    /// Variables that were referenced but not set.
    pub unmatched: BTreeSet<String>,
}

/// The shell-word lexer, configured with the Dockerfile's escape character.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Lexer {
    escape: char,
    /// Keep quote characters in the output (used to detect quoted heredoc
    /// delimiters).
    raw_quotes: bool,
    /// Keep escape characters in the output.
    raw_escapes: bool,
    /// Leave references to unset variables as written.
    skip_unset: bool,
    /// Treat quotes as ordinary characters (heredoc bodies).
    skip_quotes: bool,
}

impl Lexer {
    /// A lexer using `escape` (`\` or `` ` ``) as the escape character.
    pub fn new(escape: char) -> Self {
        Lexer {
            escape,
            raw_quotes: false,
            raw_escapes: false,
            skip_unset: false,
            skip_quotes: false,
        }
    }

    /// The same lexer, treating quotes as ordinary characters: how Docker
    /// expands the body of a heredoc whose delimiter is unquoted.
    pub fn without_quotes(mut self) -> Self {
        self.skip_quotes = true;
        self
    }

    pub(crate) fn raw(mut self, quotes: bool, escapes: bool, skip_unset: bool) -> Self {
        self.raw_quotes = quotes;
        self.raw_escapes = escapes;
        self.skip_unset = skip_unset;
        self
    }

    /// Expands `text` as one word: quotes removed, variables substituted,
    /// spaces kept.
    pub fn expand_word(&self, text: &str, lookup: Lookup<'_>) -> Result<String, ExpandError> {
        Ok(self.process(text, lookup)?.word)
    }

    /// Expands `text` and splits it into words (splitting happens after
    /// substitution; quoted parts are never split).
    pub fn expand_words(&self, text: &str, lookup: Lookup<'_>) -> Result<Vec<String>, ExpandError> {
        Ok(self.process(text, lookup)?.words)
    }

    /// Expands `text`, returning the word, the words and which variables
    /// were used.
    pub fn process(&self, text: &str, lookup: Lookup<'_>) -> Result<Expansion, ExpandError> {
        let mut state = State {
            lexer: *self,
            source: text,
            chars: text.chars().collect(),
            pos: 0,
            lookup,
            raw_escapes: self.raw_escapes,
            depth: 0,
            matched: BTreeSet::new(),
            unmatched: BTreeSet::new(),
        };
        let (word, words) = state.process_until(None, self.raw_escapes)?;
        Ok(Expansion {
            word,
            words,
            matched: state.matched,
            unmatched: state.unmatched,
        })
    }
}

/// Word splitting as BuildKit does it: characters that came from a variable
/// or were unquoted split on whitespace; quoted and escaped ones never do.
#[derive(Default)]
struct Words {
    word: String,
    words: Vec<String>,
    in_word: bool,
}

impl Words {
    fn add_char(&mut self, ch: char) {
        if ch.is_whitespace() {
            if self.in_word && !self.word.is_empty() {
                self.words.push(std::mem::take(&mut self.word));
                self.in_word = false;
            }
        } else {
            self.add_raw_char(ch);
        }
    }

    fn add_raw_char(&mut self, ch: char) {
        self.word.push(ch);
        self.in_word = true;
    }

    fn add_string(&mut self, s: &str) {
        for ch in s.chars() {
            self.add_char(ch);
        }
    }

    fn add_raw_string(&mut self, s: &str) {
        self.word.push_str(s);
        self.in_word = true;
    }

    fn finish(mut self) -> Vec<String> {
        if !self.word.is_empty() {
            self.words.push(self.word);
        }
        self.words
    }
}

struct State<'a> {
    lexer: Lexer,
    source: &'a str,
    chars: Vec<char>,
    pos: usize,
    lookup: Lookup<'a>,
    raw_escapes: bool,
    /// `${` nesting depth, bounded so hostile input cannot exhaust the stack.
    depth: usize,
    matched: BTreeSet<String>,
    unmatched: BTreeSet<String>,
}

/// How deeply `${a:-${b:-...}}` may nest.
const MAX_DEPTH: usize = 128;

impl State<'_> {
    fn peek(&self) -> Option<char> {
        self.chars.get(self.pos).copied()
    }

    fn next(&mut self) -> Option<char> {
        let ch = self.peek();
        if ch.is_some() {
            self.pos += 1;
        }
        ch
    }

    fn word(&self) -> String {
        self.source.to_string()
    }

    fn get(&mut self, name: &str) -> Option<String> {
        let value = (self.lookup)(name);
        if value.is_some() {
            self.matched.insert(name.to_string());
        } else {
            self.unmatched.insert(name.to_string());
        }
        value
    }

    /// Processes up to `stop` (consumed) or the end of the text.
    fn process_until(
        &mut self,
        stop: Option<char>,
        raw_escapes: bool,
    ) -> Result<(String, Vec<String>), ExpandError> {
        let saved = self.raw_escapes;
        self.raw_escapes = raw_escapes;
        let out = self.process_until_inner(stop);
        self.raw_escapes = saved;
        out
    }

    fn process_until_inner(
        &mut self,
        stop: Option<char>,
    ) -> Result<(String, Vec<String>), ExpandError> {
        let mut result = String::new();
        let mut words = Words::default();
        while let Some(ch) = self.peek() {
            if Some(ch) == stop {
                self.pos += 1;
                return Ok((result, words.finish()));
            }
            match ch {
                '$' => {
                    let value = self.dollar()?;
                    result.push_str(&value);
                    words.add_string(&value);
                }
                '\'' if !self.lexer.skip_quotes => {
                    let value = self.single_quote()?;
                    result.push_str(&value);
                    words.add_raw_string(&value);
                }
                '"' if !self.lexer.skip_quotes => {
                    let value = self.double_quote()?;
                    result.push_str(&value);
                    words.add_raw_string(&value);
                }
                _ => {
                    self.pos += 1;
                    if ch == self.lexer.escape {
                        if self.raw_escapes {
                            words.add_raw_char(ch);
                            result.push(ch);
                        }
                        // The escape character escapes the next one; at the
                        // end of the text it is dropped.
                        let Some(escaped) = self.next() else { break };
                        words.add_raw_char(escaped);
                        result.push(escaped);
                    } else {
                        words.add_char(ch);
                        result.push(ch);
                    }
                }
            }
        }
        match stop {
            Some('}') => Err(ExpandError::MissingBrace { word: self.word() }),
            Some('/') => Err(ExpandError::MissingSlash { word: self.word() }),
            Some(_) => Err(ExpandError::Unterminated {
                word: self.word(),
                what: "character",
            }),
            None => Ok((result, words.finish())),
        }
    }

    /// Everything between single quotes is literal; a single quote cannot be
    /// escaped inside them.
    fn single_quote(&mut self) -> Result<String, ExpandError> {
        let mut result = String::new();
        let open = self.next();
        if self.lexer.raw_quotes {
            result.extend(open);
        }
        loop {
            match self.next() {
                None => {
                    return Err(ExpandError::Unterminated {
                        word: self.word(),
                        what: "single-quote",
                    })
                }
                Some('\'') => {
                    if self.lexer.raw_quotes {
                        result.push('\'');
                    }
                    return Ok(result);
                }
                Some(c) => result.push(c),
            }
        }
    }

    /// Inside double quotes `$` still expands, and the escape character only
    /// escapes `"`, `$` and itself (otherwise it stays literal).
    fn double_quote(&mut self) -> Result<String, ExpandError> {
        let mut result = String::new();
        let open = self.next();
        if self.lexer.raw_quotes {
            result.extend(open);
        }
        loop {
            match self.peek() {
                None => {
                    return Err(ExpandError::Unterminated {
                        word: self.word(),
                        what: "double-quote",
                    })
                }
                Some('"') => {
                    self.pos += 1;
                    if self.lexer.raw_quotes {
                        result.push('"');
                    }
                    return Ok(result);
                }
                Some('$') => {
                    let value = self.dollar()?;
                    result.push_str(&value);
                }
                Some(ch) => {
                    self.pos += 1;
                    let mut out = ch;
                    if ch == self.lexer.escape {
                        if self.raw_escapes {
                            result.push(ch);
                        }
                        match self.peek() {
                            None => continue,
                            Some(n) if n == '"' || n == '$' || n == self.lexer.escape => {
                                self.pos += 1;
                                out = n;
                            }
                            Some(_) => {}
                        }
                    }
                    result.push(out);
                }
            }
        }
    }

    fn name(&mut self) -> String {
        let mut name = String::new();
        while let Some(ch) = self.peek() {
            if name.is_empty() && ch.is_ascii_digit() {
                while let Some(d) = self.peek().filter(char::is_ascii_digit) {
                    self.pos += 1;
                    name.push(d);
                }
                return name;
            }
            if name.is_empty() && matches!(ch, '@' | '*' | '#' | '?' | '-' | '$' | '!' | '0') {
                self.pos += 1;
                return ch.to_string();
            }
            if !ch.is_alphanumeric() && ch != '_' {
                break;
            }
            self.pos += 1;
            name.push(ch);
        }
        name
    }

    fn dollar(&mut self) -> Result<String, ExpandError> {
        if self.depth >= MAX_DEPTH {
            return Err(ExpandError::TooDeep { word: self.word() });
        }
        self.depth += 1;
        let out = self.dollar_inner();
        self.depth -= 1;
        out
    }

    fn dollar_inner(&mut self) -> Result<String, ExpandError> {
        self.pos += 1; // the '$'
        if self.peek() != Some('{') {
            let name = self.name();
            if name.is_empty() {
                return Ok("$".to_string());
            }
            return Ok(match self.get(&name) {
                Some(v) => v,
                None if self.lexer.skip_unset => format!("${name}"),
                None => String::new(),
            });
        }
        self.pos += 1; // the '{'
        match self.peek() {
            None => return Err(ExpandError::MissingBrace { word: self.word() }),
            Some('{' | '}' | ':') => {
                return Err(ExpandError::BadSubstitution { word: self.word() })
            }
            Some(_) => {}
        }
        let name = self.name();
        let Some(mut ch) = self.next() else {
            return Err(ExpandError::MissingBrace { word: self.word() });
        };
        let mut modifier = ch.to_string();
        match ch {
            '}' => Ok(match self.get(&name) {
                Some(v) => v,
                None if self.lexer.skip_unset => format!("${{{name}}}"),
                None => String::new(),
            }),
            ':' | '+' | '-' | '?' | '#' | '%' => {
                let null_is_unset = ch == ':';
                if null_is_unset {
                    let Some(next) = self.next() else {
                        return Err(ExpandError::MissingBrace { word: self.word() });
                    };
                    ch = next;
                    modifier.push(ch);
                }
                let raw = ch == '#' || ch == '%';
                let (mut word, _) = self.process_until(Some('}'), raw)?;
                let value = self.get(&name);
                if self.lexer.skip_unset && value.is_none() {
                    return Ok(format!("${{{name}{modifier}{word}}}"));
                }
                let empty = value
                    .as_deref()
                    .is_none_or(|v| null_is_unset && v.is_empty());
                match ch {
                    '-' => Ok(if empty {
                        word
                    } else {
                        value.unwrap_or_default()
                    }),
                    '+' => Ok(if empty { String::new() } else { word }),
                    '?' => match value {
                        None => Err(self.required(&name, word, "is not allowed to be unset")),
                        Some(v) if null_is_unset && v.is_empty() => {
                            Err(self.required(&name, word, "is not allowed to be empty"))
                        }
                        Some(v) => Ok(v),
                    },
                    '#' | '%' => {
                        let greedy = word.starts_with(ch);
                        if greedy {
                            word.remove(0);
                        }
                        let pattern = self.pattern(&word)?;
                        let value: Vec<char> = value.unwrap_or_default().chars().collect();
                        Ok(if ch == '#' {
                            trim_prefix(&pattern, &value, greedy)
                        } else {
                            trim_suffix(&pattern, &value, greedy)
                        })
                    }
                    _ => Err(ExpandError::UnsupportedModifier {
                        word: self.word(),
                        modifier,
                    }),
                }
            }
            '/' => {
                let all = self.peek() == Some('/');
                if all {
                    self.pos += 1;
                }
                let (pattern, _) = self.process_until(Some('/'), true)?;
                let (replacement, _) = self.process_until(Some('}'), true)?;
                let value = self.get(&name);
                let Some(value) = value else {
                    if self.lexer.skip_unset {
                        return Ok(format!("${{{name}/{pattern}/{replacement}}}"));
                    }
                    return Ok(String::new());
                };
                let tokens = self.pattern(&pattern)?;
                let chars: Vec<char> = value.chars().collect();
                Ok(replace(&tokens, &chars, &replacement, all))
            }
            _ => Err(ExpandError::UnsupportedModifier {
                word: self.word(),
                modifier,
            }),
        }
    }

    fn required(&self, name: &str, word: String, default: &str) -> ExpandError {
        ExpandError::Required {
            word: self.word(),
            name: name.to_string(),
            message: if word.is_empty() {
                default.to_string()
            } else {
                word
            },
        }
    }

    fn pattern(&self, pattern: &str) -> Result<Vec<Tok>, ExpandError> {
        parse_pattern(pattern).ok_or_else(|| ExpandError::BadPattern {
            word: self.word(),
            pattern: pattern.to_string(),
        })
    }
}
