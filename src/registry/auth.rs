//! Authentication against a registry: the challenge it answered with
//! (`WWW-Authenticate`), basic credentials, and bearer tokens fetched from
//! the challenge's realm with the scopes a request needs, cached per scope
//! set. Credentials travel only in `Authorization` headers.

use std::collections::HashMap;

use reqwest::header::{HeaderMap, AUTHORIZATION, WWW_AUTHENTICATE};
use reqwest::Method;

use super::challenge::{parse_challenges, Challenge};
use super::client::{Host, Request, MAX_ERROR_BODY};
use super::credentials::Credentials;
use super::limits::{read_error_text, read_small};
use super::request::registry_message;
use super::retry::Outcome;
use super::RegistryError;

/// A token answer is a few KiB of JSON; anything past this is refused.
const MAX_TOKEN_BYTES: u64 = 1 << 20;

/// What a host has told us about authenticating, and the tokens we hold.
#[derive(Default)]
pub(super) struct AuthState {
    challenge: Option<Challenge>,
    tokens: HashMap<String, String>,
}

impl Host {
    /// Verifies this host's credentials: `/v2/` must answer 200 with them
    /// (basic) or the token endpoint must issue a token for them (bearer).
    pub async fn check_login(&self) -> Result<(), RegistryError> {
        let base = self.base().await?;
        let challenge = self.lock_auth().challenge.clone();
        match challenge {
            Some(c) if c.is_bearer() => self.fetch_token(&c, &[]).await.map(|_| ()),
            _ => {
                let req = Request::new(Method::GET, format!("{base}/v2/"), Vec::new());
                let resp = self.send(&req).await?;
                self.expect(resp, &[200], "log in").await.map(|_| ())
            }
        }
    }

    pub(super) fn remember_challenge(&self, headers: &HeaderMap) -> Option<Challenge> {
        let challenge = headers
            .get_all(WWW_AUTHENTICATE)
            .iter()
            .filter_map(|v| v.to_str().ok())
            .flat_map(parse_challenges)
            .find(|c| c.is_bearer() || c.is_basic())?;
        self.lock_auth().challenge = Some(challenge.clone());
        Some(challenge)
    }

    fn lock_auth(&self) -> std::sync::MutexGuard<'_, AuthState> {
        self.auth.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// The `Authorization` value for a request needing `scopes`, once the
    /// registry has said how it authenticates.
    pub(super) async fn authorization(
        &self,
        scopes: &[String],
    ) -> Result<Option<String>, RegistryError> {
        let (challenge, cached) = {
            let state = self.lock_auth();
            let cached = state.tokens.get(&scope_key(scopes)).cloned();
            (state.challenge.clone(), cached)
        };
        let Some(challenge) = challenge else {
            return Ok(None);
        };
        if challenge.is_basic() {
            return Ok(self.credentials.as_ref().map(basic_value));
        }
        if let Some(token) = cached {
            return Ok(Some(format!("Bearer {token}")));
        }
        let token = self.fetch_token(&challenge, scopes).await?;
        Ok(Some(format!("Bearer {token}")))
    }

    /// Gets a bearer token for `scopes` (plus the challenge's own scope) from
    /// the challenge's realm, with credentials when there are any, and caches it.
    pub(super) async fn fetch_token(
        &self,
        challenge: &Challenge,
        scopes: &[String],
    ) -> Result<String, RegistryError> {
        let denied = |message: String| RegistryError::Unauthorized {
            registry: self.registry.clone(),
            message,
        };
        let realm = challenge
            .param("realm")
            .ok_or_else(|| denied("bearer challenge without a realm".to_string()))?;
        let mut all: Vec<String> = scopes.to_vec();
        if let Some(s) = challenge.param("scope") {
            for scope in s.split(' ') {
                if !scope.is_empty() && !all.iter().any(|x| x == scope) {
                    all.push(scope.to_string());
                }
            }
        }
        let mut query: Vec<(&str, &str)> = Vec::new();
        if let Some(service) = challenge.param("service") {
            query.push(("service", service));
        }
        for s in &all {
            query.push(("scope", s));
        }
        if let Some(c) = &self.credentials {
            query.push(("account", &c.username));
        }
        let mut attempt = 0;
        let resp = loop {
            let mut rb = self.http.get(realm).query(&query);
            if let Some(c) = &self.credentials {
                rb = rb.header(AUTHORIZATION, basic_value(c));
            }
            let answer = match tokio::time::timeout(self.limits.timeout, rb.send()).await {
                Ok(answer) => answer,
                Err(_) => {
                    match self.backoff(
                        attempt,
                        Outcome::Stalled,
                        &HeaderMap::new(),
                        "token request",
                    ) {
                        Some(d) => {
                            tokio::time::sleep(d).await;
                            attempt += 1;
                            continue;
                        }
                        None => return Err(self.no_answer("token request", 0)),
                    }
                }
            };
            match answer {
                Ok(resp) => {
                    let status = resp.status().as_u16();
                    if let Some(d) = self.backoff(
                        attempt,
                        Outcome::Status(status),
                        resp.headers(),
                        "token request",
                    ) {
                        tokio::time::sleep(d).await;
                        attempt += 1;
                        continue;
                    }
                    break resp;
                }
                Err(e) => {
                    match self.backoff(
                        attempt,
                        Outcome::ConnectionError,
                        &HeaderMap::new(),
                        "token request",
                    ) {
                        Some(d) => {
                            tokio::time::sleep(d).await;
                            attempt += 1;
                        }
                        None => return Err(self.transport_error(&e)),
                    }
                }
            }
        };
        if !resp.status().is_success() {
            let status = resp.status().as_u16();
            let text = read_error_text(resp, self.limits, MAX_ERROR_BODY).await;
            return Err(denied(format!(
                "token endpoint answered HTTP {status}: {}",
                registry_message(&text)
            )));
        }
        let bytes = read_small(resp, self.limits, MAX_TOKEN_BYTES)
            .await
            .map_err(|e| self.body_error("token request", e).0)?;
        let body: serde_json::Value = serde_json::from_slice(&bytes)
            .map_err(|e| denied(format!("token endpoint sent no JSON: {e}")))?;
        let token = body
            .get("token")
            .or_else(|| body.get("access_token"))
            .and_then(|t| t.as_str())
            .filter(|t| !t.is_empty())
            .ok_or_else(|| denied("token endpoint sent no token".to_string()))?
            .to_string();
        self.lock_auth()
            .tokens
            .insert(scope_key(scopes), token.clone());
        Ok(token)
    }
}

fn basic_value(c: &Credentials) -> String {
    use base64::Engine as _;
    let raw = format!("{}:{}", c.username, c.password());
    format!(
        "Basic {}",
        base64::engine::general_purpose::STANDARD.encode(raw)
    )
}

fn scope_key(scopes: &[String]) -> String {
    let mut s = scopes.to_vec();
    s.sort();
    s.join(" ")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn token_cache_keys_ignore_scope_order() {
        let a = vec![
            "repository:a:pull".to_string(),
            "repository:b:pull,push".to_string(),
        ];
        let b = vec![
            "repository:b:pull,push".to_string(),
            "repository:a:pull".to_string(),
        ];
        assert_eq!(scope_key(&a), scope_key(&b));
    }
}
