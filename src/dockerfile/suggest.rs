//! "Did you mean" suggestions for unknown instructions and flags.

/// The closest of `candidates` to `word` (case-insensitive edit distance
/// of at most 2, or a prefix), for "did you mean" hints.
pub(crate) fn suggest<'a>(word: &str, candidates: &[&'a str]) -> Option<&'a str> {
    // No keyword or flag is this long: nothing to suggest, and no
    // quadratic work on a huge garbage word.
    if word.len() > 64 {
        return None;
    }
    let word = word.to_ascii_lowercase();
    let mut best: Option<(usize, &str)> = None;
    for &c in candidates {
        let d = distance(&word, &c.to_ascii_lowercase());
        if d <= 2.max(word.len() / 4) && best.is_none_or(|(bd, _)| d < bd) {
            best = Some((d, c));
        }
    }
    best.map(|(_, c)| c)
}

fn distance(a: &str, b: &str) -> usize {
    let b: Vec<char> = b.chars().collect();
    let mut prev: Vec<usize> = (0..=b.len()).collect();
    for (i, ca) in a.chars().enumerate() {
        let mut cur = vec![i + 1; b.len() + 1];
        for (j, cb) in b.iter().enumerate() {
            let cost = usize::from(ca != *cb);
            cur[j + 1] = (prev[j] + cost).min(prev[j + 1] + 1).min(cur[j] + 1);
        }
        prev = cur;
    }
    prev[b.len()]
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::dockerfile::instruction::Keyword;

    #[test]
    fn suggestions() {
        let names: Vec<&str> = Keyword::ALL.iter().map(|k| k.as_str()).collect();
        assert_eq!(suggest("RUNN", &names), Some("RUN"));
        assert_eq!(suggest("workdri", &names), Some("WORKDIR"));
        assert_eq!(suggest("xyzzy", &names), None);
    }
}
