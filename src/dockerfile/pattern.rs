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

/// Every end position `e` such that `pat` matches `text[start..e]`, in
/// increasing order, found by simulating the pattern as an NFA: linear in
/// the text for a given pattern, so a hostile value cannot blow up.
fn match_ends(pat: &[Tok], text: &[char], start: usize) -> Vec<usize> {
    let m = pat.len();
    // `states[i]`: the first `i` tokens have matched.
    let mut states = vec![false; m + 1];
    let close = |states: &mut Vec<bool>| {
        for i in 0..m {
            if states[i] && pat[i] == Tok::Star {
                states[i + 1] = true;
            }
        }
    };
    states[0] = true;
    close(&mut states);
    let mut ends = Vec::new();
    if states[m] {
        ends.push(start);
    }
    let mut next = vec![false; m + 1];
    for (offset, &c) in text[start..].iter().enumerate() {
        next.iter_mut().for_each(|s| *s = false);
        for i in 0..m {
            if !states[i] {
                continue;
            }
            match pat[i] {
                Tok::Star => next[i] = true,
                Tok::Any => next[i + 1] = true,
                Tok::Lit(l) if l == c => next[i + 1] = true,
                Tok::Lit(_) => {}
            }
        }
        close(&mut next);
        if !next.iter().any(|s| *s) {
            break;
        }
        if next[m] {
            ends.push(start + offset + 1);
        }
        std::mem::swap(&mut states, &mut next);
    }
    ends
}

/// `${v#p}` (shortest) and `${v##p}` (greedy): remove a matching prefix.
pub(crate) fn trim_prefix(pat: &[Tok], value: &[char], greedy: bool) -> String {
    let ends = match_ends(pat, value, 0);
    let end = if greedy { ends.last() } else { ends.first() };
    match end {
        Some(&e) => value[e..].iter().collect(),
        None => value.iter().collect(),
    }
}

/// `${v%p}` (shortest) and `${v%%p}` (greedy): remove a matching suffix,
/// by matching the reversed pattern against the reversed value (as
/// BuildKit does).
pub(crate) fn trim_suffix(pat: &[Tok], value: &[char], greedy: bool) -> String {
    let rpat: Vec<Tok> = pat.iter().rev().copied().collect();
    let rvalue: Vec<char> = value.iter().rev().copied().collect();
    let ends = match_ends(&rpat, &rvalue, 0);
    let end = if greedy { ends.last() } else { ends.first() };
    match end {
        Some(&e) => value[..value.len() - e].iter().collect(),
        None => value.iter().collect(),
    }
}

/// The leftmost, then longest, match at or after `from`.
fn find(pat: &[Tok], value: &[char], from: usize) -> Option<(usize, usize)> {
    (from..=value.len()).find_map(|start| {
        match_ends(pat, value, start)
            .last()
            .map(|&end| (start, end))
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

    #[test]
    fn hostile_values_stay_fast() {
        // Quadratic at worst (one linear scan per start position).
        let v: Vec<char> = "ab".repeat(400).chars().collect();
        let out = replace(&toks("*c"), &v, "x", true);
        assert_eq!(out.len(), v.len());
        assert_eq!(trim_suffix(&toks("*a*b"), &v, false), "ab".repeat(399));
    }

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
