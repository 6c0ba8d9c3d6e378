//! One registry request as the client sends it (re-sendable, with the token
//! scopes it needs), token scopes, and the registry's error text as shown to
//! users.

use bytes::Bytes;
use reqwest::header::{HeaderName, HeaderValue};
use reqwest::Method;

/// One request, re-sendable: the body is `Bytes` so retries clone it cheaply.
#[derive(Debug, Clone)]
pub(super) struct Request {
    pub method: Method,
    /// A path below the registry (`/v2/...`) or an absolute URL (`Location`).
    pub target: String,
    pub headers: Vec<(HeaderName, HeaderValue)>,
    pub body: Option<Bytes>,
    /// Token scopes this request needs (`repository:NAME:pull,push`).
    pub scopes: Vec<String>,
}

impl Request {
    pub fn new(method: Method, target: impl Into<String>, scopes: Vec<String>) -> Request {
        Request {
            method,
            target: target.into(),
            headers: Vec::new(),
            body: None,
            scopes,
        }
    }

    pub fn header(mut self, name: HeaderName, value: &str) -> Request {
        if let Ok(v) = HeaderValue::from_str(value) {
            self.headers.push((name, v));
        }
        self
    }

    pub fn body(mut self, body: Bytes) -> Request {
        self.body = Some(body);
        self
    }
}

/// The registry's error text, verbatim: `CODE: message` for each entry of a
/// distribution error body, else the body itself (shortened).
pub fn registry_message(body: &str) -> String {
    if let Ok(v) = serde_json::from_str::<serde_json::Value>(body) {
        if let Some(errors) = v.get("errors").and_then(|e| e.as_array()) {
            let parts: Vec<String> = errors
                .iter()
                .map(|e| {
                    let code = e.get("code").and_then(|c| c.as_str()).unwrap_or("");
                    let msg = e.get("message").and_then(|c| c.as_str()).unwrap_or("");
                    match (code.is_empty(), msg.is_empty()) {
                        (false, false) => format!("{code}: {msg}"),
                        (false, true) => code.to_string(),
                        _ => msg.to_string(),
                    }
                })
                .collect();
            if !parts.is_empty() {
                return parts.join("; ");
            }
        }
    }
    let trimmed = body.trim();
    if trimmed.is_empty() {
        return "(no message)".to_string();
    }
    let mut out: String = trimmed.chars().take(300).collect();
    if trimmed.chars().count() > 300 {
        out.push('…');
    }
    out
}

/// `repository:NAME:ACTIONS`
pub fn scope(repository: &str, actions: &str) -> String {
    format!("repository:{repository}:{actions}")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn registry_messages_are_verbatim() {
        let body = r#"{"errors":[{"code":"BLOB_UNKNOWN","message":"blob unknown to registry","detail":"sha256:x"}]}"#;
        assert_eq!(
            registry_message(body),
            "BLOB_UNKNOWN: blob unknown to registry"
        );
        assert_eq!(registry_message("  upstream down \n"), "upstream down");
        assert_eq!(registry_message(""), "(no message)");
    }
}
