//! Shell patterns in `${v#p}`, `${v%p}` and `${v/p/r}`: `*`, `?` and
//! escaped literals (no bracket expressions, as in BuildKit), matched
//! shortest or longest as the operator asks.

/// One element of a shell pattern.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Tok {
    Star,
    Any,
    Lit(char),
}

/// Parses a `${v#pattern}` pattern: `*`, `?`, and `\` escaping `*`, `?`,
/// `\` (an escaped `}` or `/` loses its backslash). Bracket expressions are
/// not supported, as in BuildKit.
pub(crate) fn parse_pattern(pattern: &str) -> Option<Vec<Tok>> {
    let chars: Vec<char> = pattern.chars().collect();
    let mut out = Vec::with_capacity(chars.len());
    let mut i = 0;
    while i < chars.len() {
        match chars[i] {
            '*' => out.push(Tok::Star),
            '?' => out.push(Tok::Any),
            '\\' => match chars.get(i + 1) {
                Some('}' | '/') => {}
                Some(&c @ ('*' | '?' | '\\')) => {
                    out.push(Tok::Lit(c));
                    i += 1;
                }
                _ => return None,
            },
            c => out.push(Tok::Lit(c)),
        }
        i += 1;
    }
    Some(out)
}

/// Whether `pat` matches all of `text`.
fn glob_match(pat: &[Tok], text: &[char]) -> bool {
    // Iterative matcher with single-star backtracking: linear for the
    // patterns Dockerfiles use, and no recursion on hostile input.
    let (mut p, mut t) = (0, 0);
    let mut star: Option<(usize, usize)> = None;
    while t < text.len() {
        match pat.get(p) {
            Some(Tok::Star) => {
                star = Some((p, t));
                p += 1;
            }
            Some(Tok::Any) => {
                p += 1;
                t += 1;
            }
            Some(Tok::Lit(c)) if *c == text[t] => {
                p += 1;
                t += 1;
            }
            _ => match star {
                Some((sp, st)) => {
                    p = sp + 1;
                    t = st + 1;
                    star = Some((sp, st + 1));
                }
                None => return false,
            },
        }
    }
    pat[p.min(pat.len())..].iter().all(|t| *t == Tok::Star)
}

pub(crate) fn trim_prefix(pat: &[Tok], value: &[char], greedy: bool) -> String {
    let ends: Box<dyn Iterator<Item = usize>> = if greedy {
        Box::new((0..=value.len()).rev())
    } else {
        Box::new(0..=value.len())
    };
    for end in ends {
        if glob_match(pat, &value[..end]) {
            return value[end..].iter().collect();
        }
    }
    value.iter().collect()
}

pub(crate) fn trim_suffix(pat: &[Tok], value: &[char], greedy: bool) -> String {
    let starts: Box<dyn Iterator<Item = usize>> = if greedy {
        Box::new(0..=value.len())
    } else {
        Box::new((0..=value.len()).rev())
    };
    for start in starts {
        if glob_match(pat, &value[start..]) {
            return value[..start].iter().collect();
        }
    }
    value.iter().collect()
}

/// The leftmost, then longest, match at or after `from`.
fn find(pat: &[Tok], value: &[char], from: usize) -> Option<(usize, usize)> {
    (from..=value.len()).find_map(|start| {
        (start..=value.len())
            .rev()
            .find(|&end| glob_match(pat, &value[start..end]))
            .map(|end| (start, end))
    })
}

pub(crate) fn replace(pat: &[Tok], value: &[char], replacement: &str, all: bool) -> String {
    let mut out = String::new();
    let mut pos = 0;
    let mut last_end: Option<usize> = None;
    while pos <= value.len() {
        let Some((start, end)) = find(pat, value, pos) else {
            break;
        };
        // An empty match right after a previous match is ignored (Go's
        // ReplaceAll rule).
        if start == end && last_end == Some(start) {
            if start < value.len() {
                out.push(value[start]);
            }
            pos = start + 1;
            continue;
        }
        out.extend(&value[pos..start]);
        out.push_str(replacement);
        last_end = Some(end);
        if !all {
            pos = end;
            break;
        }
        if start == end {
            if start < value.len() {
                out.push(value[start]);
            }
            pos = start + 1;
        } else {
            pos = end;
        }
    }
    if pos <= value.len() {
        out.extend(&value[pos..]);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn toks(p: &str) -> Vec<Tok> {
        parse_pattern(p).expect("valid pattern")
    }

    #[test]
    fn matching() {
        let v: Vec<char> = "a.b.c".chars().collect();
        assert_eq!(trim_prefix(&toks("*."), &v, false), "b.c");
        assert_eq!(trim_prefix(&toks("*."), &v, true), "c");
        assert_eq!(trim_suffix(&toks(".*"), &v, false), "a.b");
        assert_eq!(trim_suffix(&toks(".*"), &v, true), "a");
        assert_eq!(replace(&toks("."), &v, "-", true), "a-b-c");
        assert_eq!(replace(&toks("."), &v, "-", false), "a-b.c");
        assert_eq!(
            parse_pattern(r"a\*"),
            Some(vec![Tok::Lit('a'), Tok::Lit('*')])
        );
        assert_eq!(parse_pattern(r"\}"), Some(vec![Tok::Lit('}')]));
        assert_eq!(parse_pattern(r"\x"), None);
        assert_eq!(parse_pattern("\\"), None);
    }
}
