//! Argument shapes: splitting an instruction line into keyword, flags and
//! the rest, and BuildKit's line parsers for the rest (JSON arrays,
//! whitespace-separated words, quoted words, `k=v` pairs).

/// Whitespace as BuildKit's line parsers see it (`[\t\v\f\r ]`).
fn is_blank(c: char) -> bool {
    matches!(c, '\t' | '\u{b}' | '\u{c}' | '\r' | ' ')
}

/// Splits `rest` on runs of blanks (BuildKit's `reWhitespace.Split`).
pub(crate) fn split_blanks(rest: &str) -> Vec<String> {
    if rest.is_empty() {
        return Vec::new();
    }
    rest.split(is_blank)
        .filter(|s| !s.is_empty())
        .map(str::to_string)
        .collect()
}

/// Splits off the first blank-separated word: `(first, rest)`.
pub(crate) fn split_first(text: &str) -> (&str, &str) {
    match text.find(is_blank) {
        Some(i) => (&text[..i], text[i..].trim_start_matches(is_blank)),
        None => (text, ""),
    }
}

/// The keyword as written, the raw flags (`--name=value`, quotes removed)
/// and the rest of the line (trimmed).
pub(crate) fn split_command(line: &str) -> (String, Vec<String>, String) {
    let (cmd, rest) = split_first(line.trim());
    let (flags, rest) = extract_flags(rest);
    (cmd.to_string(), flags, rest.trim().to_string())
}

/// Takes the leading `--flag` words off `line`. A word is a flag while it
/// starts with `--`; a bare `--` ends the flags. Quotes and `\` are processed
/// inside flags (BuildKit's `extractBuilderFlags`).
fn extract_flags(line: &str) -> (Vec<String>, &str) {
    #[derive(PartialEq)]
    enum Phase {
        Spaces,
        Word,
        Quote(char),
    }
    let mut words = Vec::new();
    let mut word = String::new();
    let mut blank_ok = false;
    let mut phase = Phase::Spaces;
    let mut iter = line.char_indices().peekable();
    while let Some((pos, ch)) = iter.next() {
        match phase {
            Phase::Spaces => {
                if ch.is_whitespace() {
                    continue;
                }
                if !line[pos..].starts_with("--") {
                    return (words, &line[pos..]);
                }
                phase = Phase::Word;
                word.push(ch);
            }
            Phase::Word => {
                if ch.is_whitespace() {
                    if word == "--" {
                        return (words, &line[pos..]);
                    }
                    if blank_ok || !word.is_empty() {
                        words.push(std::mem::take(&mut word));
                    }
                    blank_ok = false;
                    phase = Phase::Spaces;
                } else if ch == '\'' || ch == '"' {
                    blank_ok = true;
                    phase = Phase::Quote(ch);
                } else if ch == '\\' {
                    if let Some((_, next)) = iter.next() {
                        word.push(next);
                    }
                } else {
                    word.push(ch);
                }
            }
            Phase::Quote(q) => {
                if ch == q {
                    phase = Phase::Word;
                } else if ch == '\\' {
                    match iter.next() {
                        Some((_, next)) => word.push(next),
                        None => phase = Phase::Word,
                    }
                } else {
                    word.push(ch);
                }
            }
        }
    }
    if phase != Phase::Spaces && word != "--" && (blank_ok || !word.is_empty()) {
        words.push(word);
    }
    (words, "")
}

/// Words separated by whitespace, quotes kept (they are removed when the
/// word is expanded). BuildKit's `parseWords`.
pub(crate) fn parse_words(rest: &str, escape: char) -> Vec<String> {
    let mut words = Vec::new();
    let mut word = String::new();
    let mut blank_ok = false;
    let mut in_word = false;
    let mut quote: Option<char> = None;
    let mut iter = rest.chars().peekable();
    while let Some(ch) = iter.next() {
        if !in_word {
            if ch.is_whitespace() {
                continue;
            }
            in_word = true;
        }
        match quote {
            None => {
                if ch.is_whitespace() {
                    if blank_ok || !word.is_empty() {
                        words.push(std::mem::take(&mut word));
                    }
                    blank_ok = false;
                    in_word = false;
                    continue;
                }
                if ch == '\'' || ch == '"' {
                    quote = Some(ch);
                    blank_ok = true;
                }
                if ch == escape {
                    // An escape keeps itself and the next character (even a
                    // quote); at the end of the line it is dropped.
                    if let Some(next) = iter.next() {
                        word.push(ch);
                        word.push(next);
                    }
                    continue;
                }
                word.push(ch);
            }
            Some(q) => {
                if ch == q {
                    quote = None;
                }
                if ch == escape && q != '\'' {
                    match iter.next() {
                        Some(next) => {
                            word.push(ch);
                            word.push(next);
                        }
                        None => quote = None,
                    }
                    continue;
                }
                word.push(ch);
            }
        }
    }
    if in_word && (blank_ok || !word.is_empty()) {
        words.push(word);
    }
    words
}

/// What a JSON-looking argument turned out to be.
pub(crate) enum Json {
    /// A JSON array of strings; `trailing` when text followed the array
    /// (ignored, as Go's decoder does).
    Strings { items: Vec<String>, trailing: bool },
    /// A JSON array with a non-string element: an error, not a fallback.
    NotStrings,
    /// Not JSON: the caller falls back to the shell form.
    No,
}

/// Parses `rest` as a JSON array of strings.
pub(crate) fn parse_json(rest: &str) -> Json {
    let rest = rest.trim_start();
    if !rest.starts_with('[') {
        return Json::No;
    }
    let mut stream = serde_json::Deserializer::from_str(rest).into_iter::<Vec<serde_json::Value>>();
    match stream.next() {
        Some(Ok(values)) => {
            let trailing = !rest[stream.byte_offset()..].trim().is_empty();
            let mut items = Vec::with_capacity(values.len());
            for v in values {
                match v {
                    serde_json::Value::String(s) => items.push(s),
                    _ => return Json::NotStrings,
                }
            }
            Json::Strings { items, trailing }
        }
        _ => Json::No,
    }
}

/// `ENV`/`LABEL` arguments: `k=v ...` pairs, or the legacy `k v` form (the
/// first word has no `=`), whose value is the rest of the line as written.
/// Returns the pairs and whether the legacy form was used.
pub(crate) fn parse_name_val(
    rest: &str,
    keyword: &str,
    escape: char,
) -> Result<(Vec<(String, String)>, bool), String> {
    let words = parse_words(rest, escape);
    let Some(first) = words.first() else {
        return Ok((Vec::new(), false));
    };
    if !first.contains('=') {
        let (key, value) = split_first(rest);
        if value.is_empty() {
            return Err(format!("{keyword} must have two arguments"));
        }
        return Ok((vec![(key.to_string(), value.to_string())], true));
    }
    let mut pairs = Vec::with_capacity(words.len());
    for word in &words {
        let Some((k, v)) = word.split_once('=') else {
            return Err(format!(
                "Syntax error - can't find = in {word:?}. Must be of the form: name=value"
            ));
        };
        pairs.push((k.to_string(), v.to_string()));
    }
    Ok((pairs, false))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn flags_stop_at_the_first_word_without_dashes() {
        let (cmd, flags, rest) = split_command("COPY --from=build --chown=\"a b\" /x /y");
        assert_eq!(cmd, "COPY");
        assert_eq!(flags, vec!["--from=build", "--chown=a b"]);
        assert_eq!(rest, "/x /y");
    }

    #[test]
    fn double_dash_ends_flags() {
        let (_, flags, rest) = split_command("RUN --network=none -- --version");
        assert_eq!(flags, vec!["--network=none"]);
        assert_eq!(rest, "--version");
    }

    #[test]
    fn words_keep_quotes_and_escapes() {
        assert_eq!(
            parse_words(r#"a="b c" d\ e 'f g'"#, '\\'),
            vec![r#"a="b c""#, r"d\ e", "'f g'"]
        );
    }

    #[test]
    fn json_with_trailing_text_is_json() {
        match parse_json(r#"["a", "b"] tail"#) {
            Json::Strings { items, trailing } => {
                assert_eq!(items, vec!["a", "b"]);
                assert!(trailing);
            }
            _ => panic!("expected strings"),
        }
        assert!(matches!(parse_json("[1]"), Json::NotStrings));
        assert!(matches!(parse_json("[a]"), Json::No));
    }

    #[test]
    fn json_arrays_of_strings() {
        let strings = |text: &str| match parse_json(text) {
            Json::Strings { items, .. } => items,
            _ => panic!("{text:?} should be a JSON array of strings"),
        };
        assert!(strings("[]").is_empty());
        assert_eq!(strings(r#"[""]"#), vec![""]);
        assert_eq!(strings("[\t\"a\",\t\"b\"\t]\t"), vec!["a", "b"]);
        assert_eq!(
            strings(r#"["♥ ☃", "\" \\ \/ \b \f \n \r \t \u0000"]"#),
            vec!["♥ ☃", "\" \\ / \u{8} \u{c} \n \r \t \u{0}"]
        );
        for bad in [
            r#"["a",42,"b"]"#,
            r#"["a",1.5]"#,
            r#"["a",{}]"#,
            r#"["a",["c"]]"#,
            r#"[true]"#,
            r#"[null]"#,
        ] {
            assert!(matches!(parse_json(bad), Json::NotStrings), "{bad}");
        }
        for not_json in ["", "a", "[", "['a']", "[\"a\",]", "{\"a\": 1}"] {
            assert!(matches!(parse_json(not_json), Json::No), "{not_json}");
        }
    }
}
