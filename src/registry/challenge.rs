//! `WWW-Authenticate` challenges (RFC 7235) as registries send them:
//! `Bearer realm="...",service="...",scope="..."` or `Basic realm="..."`.

use std::collections::BTreeMap;

/// One authentication challenge.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Challenge {
    /// The scheme, lowercased (`bearer`, `basic`).
    pub scheme: String,
    /// Parameters with lowercased names.
    pub params: BTreeMap<String, String>,
}

impl Challenge {
    pub fn param(&self, name: &str) -> Option<&str> {
        self.params.get(name).map(String::as_str)
    }

    pub fn is_bearer(&self) -> bool {
        self.scheme == "bearer"
    }

    pub fn is_basic(&self) -> bool {
        self.scheme == "basic"
    }
}

/// Parses every challenge in one header value. Unparseable trailing parts
/// are ignored rather than failing: a registry that sends a half-valid
/// header still gets the challenges that can be understood.
pub fn parse_challenges(header: &str) -> Vec<Challenge> {
    let mut out: Vec<Challenge> = Vec::new();
    let mut p = Parser {
        s: header.as_bytes(),
        i: 0,
    };
    loop {
        p.skip_separators();
        let Some(token) = p.token() else { break };
        p.skip_ws();
        // `token=` right after a scheme's parameters means another parameter
        // of the current challenge; a token without `=` starts a new one.
        if p.peek() == Some(b'=') && !out.is_empty() && !p.is_token68_end() {
            p.i += 1;
            p.skip_ws();
            let value = p.value();
            if let Some(last) = out.last_mut() {
                last.params.insert(token.to_ascii_lowercase(), value);
            }
            continue;
        }
        out.push(Challenge {
            scheme: token.to_ascii_lowercase(),
            params: BTreeMap::new(),
        });
    }
    out
}

struct Parser<'a> {
    s: &'a [u8],
    i: usize,
}

impl Parser<'_> {
    fn peek(&self) -> Option<u8> {
        self.s.get(self.i).copied()
    }

    fn skip_ws(&mut self) {
        while matches!(self.peek(), Some(b' ' | b'\t')) {
            self.i += 1;
        }
    }

    fn skip_separators(&mut self) {
        while matches!(self.peek(), Some(b' ' | b'\t' | b',')) {
            self.i += 1;
        }
    }

    /// A `token68`-style value (`abc==`) is `=` padding, not a parameter.
    fn is_token68_end(&self) -> bool {
        let mut j = self.i;
        while self.s.get(j) == Some(&b'=') {
            j += 1;
        }
        j - self.i > 1 || matches!(self.s.get(j), None | Some(b','))
    }

    fn token(&mut self) -> Option<String> {
        let start = self.i;
        while let Some(c) = self.peek() {
            if c.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~/".contains(&c) {
                self.i += 1;
            } else {
                break;
            }
        }
        if self.i == start {
            // Skip a byte we cannot read so the loop always advances.
            if self.i < self.s.len() {
                self.i += 1;
                return self.token();
            }
            return None;
        }
        Some(String::from_utf8_lossy(&self.s[start..self.i]).into_owned())
    }

    fn value(&mut self) -> String {
        if self.peek() != Some(b'"') {
            // Lenient: unquoted values such as URLs run to the next
            // separator even though `:` and `/` are not token characters.
            let start = self.i;
            while !matches!(self.peek(), None | Some(b',' | b' ' | b'\t')) {
                self.i += 1;
            }
            return String::from_utf8_lossy(&self.s[start..self.i]).into_owned();
        }
        self.i += 1;
        let mut out = Vec::new();
        while let Some(c) = self.peek() {
            self.i += 1;
            match c {
                b'\\' => {
                    if let Some(n) = self.peek() {
                        out.push(n);
                        self.i += 1;
                    }
                }
                b'"' => break,
                other => out.push(other),
            }
        }
        String::from_utf8_lossy(&out).into_owned()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn distribution_bearer_challenge() {
        let h = r#"Bearer realm="http://127.0.0.1:5001/token",service="imgb-test",scope="repository:busybox:pull,push""#;
        let c = parse_challenges(h);
        assert_eq!(c.len(), 1);
        assert!(c[0].is_bearer());
        assert_eq!(c[0].param("realm"), Some("http://127.0.0.1:5001/token"));
        assert_eq!(c[0].param("service"), Some("imgb-test"));
        assert_eq!(c[0].param("scope"), Some("repository:busybox:pull,push"));
    }

    #[test]
    fn basic_challenge_and_case_insensitive_names() {
        let c = parse_challenges(r#"Basic REALM="Registry Realm""#);
        assert_eq!(c.len(), 1);
        assert!(c[0].is_basic());
        assert_eq!(c[0].param("realm"), Some("Registry Realm"));
    }

    #[test]
    fn several_challenges_unquoted_values_and_escapes() {
        let h = r#"Basic realm="a, b", Bearer realm=https://auth.example.com/token, service="x\"y", error="invalid_token""#;
        let c = parse_challenges(h);
        assert_eq!(c.len(), 2, "{c:?}");
        assert_eq!(c[0].param("realm"), Some("a, b"));
        assert!(c[1].is_bearer());
        assert_eq!(c[1].param("realm"), Some("https://auth.example.com/token"));
        assert_eq!(c[1].param("service"), Some("x\"y"));
        assert_eq!(c[1].param("error"), Some("invalid_token"));
    }

    #[test]
    fn garbage_does_not_panic() {
        for h in [
            "",
            ",,,",
            "=",
            "Bearer =",
            "Bearer realm=\"unterminated",
            "Negotiate abc==",
            "\u{7f}\u{0}",
        ] {
            let _ = parse_challenges(h);
        }
        let c = parse_challenges("Negotiate abc==, Basic realm=x");
        let basic = c.iter().find(|c| c.is_basic()).unwrap();
        assert_eq!(basic.param("realm"), Some("x"));
        assert_eq!(c[0].scheme, "negotiate");
    }
}
