//! `--format` templates: a small subset of Go's text/template, enough for
//! what Docker users type after `docker inspect --format`.
//!
//! Text is copied; `{{ ACTION }}` is replaced, where ACTION is one of
//! * `.` or `.Path.To.Field`: the value, printed as Go prints it (strings
//!   bare, lists `[a b]`, maps `map[k:v]`, a missing field `<no value>`);
//! * `json PATH`: the value as JSON;
//! * `index PATH "key"` (or a number for a list): one element;
//! * `join PATH "sep"`: a list's elements joined by `sep`;
//! * `upper PATH` / `lower PATH`.
//!
//! Anything else (pipelines, `range`, `if`) is refused with an error.

use serde_json::Value;

/// Why a template was refused.
#[derive(Debug, thiserror::Error, PartialEq)]
pub enum TemplateError {
    #[error("template: unclosed action at byte {at} (missing `}}}}`)")]
    Unclosed { at: usize },
    #[error("template: cannot understand {{{{{action}}}}}: {reason}")]
    Action {
        action: String,
        reason: &'static str,
    },
}

/// Renders `template` against `data`.
pub fn render(template: &str, data: &Value) -> Result<String, TemplateError> {
    let mut out = String::new();
    let mut rest = template;
    let mut offset = 0;
    while let Some(start) = rest.find("{{") {
        out.push_str(&rest[..start]);
        let after = &rest[start + 2..];
        let end = after
            .find("}}")
            .ok_or(TemplateError::Unclosed { at: offset + start })?;
        // `{{- x -}}` trims in Go; here the markers are accepted and the
        // whitespace around the action is kept, which is what people mean
        // in one-line formats.
        let action = after[..end]
            .trim()
            .trim_start_matches('-')
            .trim_end_matches('-')
            .trim();
        out.push_str(&action_value(action, data)?);
        offset += start + 2 + end + 2;
        rest = &after[end + 2..];
    }
    out.push_str(rest);
    Ok(out)
}

fn action_value(action: &str, data: &Value) -> Result<String, TemplateError> {
    let refuse = |reason| TemplateError::Action {
        action: action.to_string(),
        reason,
    };
    let words = split_words(action).ok_or_else(|| refuse("unterminated string"))?;
    match words.as_slice() {
        [path] if path.starts_with('.') => Ok(go_string(lookup(data, path).as_ref())),
        [f, path] if f == "json" => Ok(lookup(data, path)
            .map(|v| v.to_string())
            .unwrap_or_else(|| "null".to_string())),
        [f, path] if f == "upper" => Ok(go_string(lookup(data, path).as_ref()).to_uppercase()),
        [f, path] if f == "lower" => Ok(go_string(lookup(data, path).as_ref()).to_lowercase()),
        [f, path, key] if f == "index" => {
            let base = lookup(data, path);
            let item = match (&base, key.parse::<usize>()) {
                (Some(Value::Array(items)), Ok(i)) => items.get(i).cloned(),
                (Some(Value::Object(map)), _) => map.get(key.as_str()).cloned(),
                _ => None,
            };
            Ok(go_string(item.as_ref()))
        }
        [f, path, sep] if f == "join" => match lookup(data, path) {
            Some(Value::Array(items)) => Ok(items
                .iter()
                .map(|v| go_string(Some(v)))
                .collect::<Vec<_>>()
                .join(sep)),
            None | Some(Value::Null) => Ok(String::new()),
            Some(_) => Err(refuse("join needs a list")),
        },
        _ => Err(refuse(
            "use .Path, json .Path, index .Path \"key\", join .Path \"sep\", upper or lower",
        )),
    }
}

/// Splits an action into words; `"quoted strings"` lose their quotes.
fn split_words(action: &str) -> Option<Vec<String>> {
    let mut words = Vec::new();
    let mut chars = action.chars().peekable();
    while let Some(&c) = chars.peek() {
        if c.is_whitespace() {
            chars.next();
        } else if c == '"' {
            chars.next();
            let mut word = String::new();
            loop {
                match chars.next()? {
                    '"' => break,
                    '\\' => match chars.next()? {
                        'n' => word.push('\n'),
                        't' => word.push('\t'),
                        other => word.push(other),
                    },
                    other => word.push(other),
                }
            }
            words.push(word);
        } else {
            let mut word = String::new();
            while let Some(&c) = chars.peek() {
                if c.is_whitespace() {
                    break;
                }
                word.push(c);
                chars.next();
            }
            words.push(word);
        }
    }
    Some(words)
}

/// `.A.B` in `data`; `.` is `data` itself.
fn lookup(data: &Value, path: &str) -> Option<Value> {
    let mut current = data;
    for part in path.trim_start_matches('.').split('.') {
        if part.is_empty() {
            continue;
        }
        current = current.get(part)?;
    }
    Some(current.clone())
}

/// How Go's fmt prints a decoded JSON value.
fn go_string(value: Option<&Value>) -> String {
    match value {
        None => "<no value>".to_string(),
        Some(Value::Null) => "<nil>".to_string(),
        Some(Value::String(s)) => s.clone(),
        Some(Value::Array(items)) => {
            let inner: Vec<String> = items.iter().map(|v| go_string(Some(v))).collect();
            format!("[{}]", inner.join(" "))
        }
        Some(Value::Object(map)) => {
            let inner: Vec<String> = map
                .iter()
                .map(|(k, v)| format!("{k}:{}", go_string(Some(v))))
                .collect();
            format!("map[{}]", inner.join(" "))
        }
        Some(other) => other.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn data() -> Value {
        json!({
            "Id": "sha256:abc",
            "Config": {"Cmd": ["sh", "-c", "echo hi"], "Labels": {"a": "1", "b.c": "2"}, "User": ""},
            "Size": 42
        })
    }

    #[test]
    fn paths_print_as_go_does() {
        let d = data();
        assert_eq!(render("{{.Id}}", &d).unwrap(), "sha256:abc");
        assert_eq!(
            render("cmd={{ .Config.Cmd }}", &d).unwrap(),
            "cmd=[sh -c echo hi]"
        );
        assert_eq!(render("{{.Config.Labels}}", &d).unwrap(), "map[a:1 b.c:2]");
        assert_eq!(render("{{.Size}} bytes", &d).unwrap(), "42 bytes");
        assert_eq!(render("{{.Nope.Deeper}}", &d).unwrap(), "<no value>");
    }

    #[test]
    fn functions() {
        let d = data();
        assert_eq!(
            render("{{json .Config.Cmd}}", &d).unwrap(),
            r#"["sh","-c","echo hi"]"#
        );
        assert_eq!(
            render(r#"{{index .Config.Labels "b.c"}}"#, &d).unwrap(),
            "2"
        );
        assert_eq!(render("{{index .Config.Cmd 1}}", &d).unwrap(), "-c");
        assert_eq!(
            render(r#"{{join .Config.Cmd ","}}"#, &d).unwrap(),
            "sh,-c,echo hi"
        );
        assert_eq!(render("{{upper .Id}}", &d).unwrap(), "SHA256:ABC");
    }

    #[test]
    fn bad_templates_are_refused() {
        let d = data();
        assert_eq!(
            render("x {{.Id", &d),
            Err(TemplateError::Unclosed { at: 2 })
        );
        assert!(render("{{range .Config.Cmd}}", &d).is_err());
        assert!(render("{{.Id | upper}}", &d).is_err());
    }
}
