//! The HTTP side of the registry client: one `reqwest` client per registry
//! host (system roots plus `certs.d/HOST:PORT/*.crt`), the scheme decision
//! (HTTPS, with plain HTTP only for loopback and `--insecure-registry`
//! hosts), authentication (basic, bearer tokens cached per scope) and
//! retries of transient failures.
//!
//! Credentials only ever travel in `Authorization` headers; no error built
//! here contains a header, a token or a password.

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use reqwest::header::{HeaderMap, AUTHORIZATION, RETRY_AFTER};
use reqwest::{Method, Response, StatusCode};
use tokio::sync::OnceCell;

use super::auth::AuthState;
use super::credentials::{Credentials, DockerConfig};
use super::limits::{read_error_text, seconds, BodyError, Limits};
use super::progress::{Event, Progress};
use super::reference::Reference;
use super::request::registry_message;
pub(super) use super::request::{scope, Request};
use super::retry::{jitter, parse_retry_after, Outcome, RetryPolicy};
use super::RegistryError;

/// How much of an error answer's body is read (the message shown is
/// shorter still).
pub(super) const MAX_ERROR_BODY: usize = 64 << 10;

/// How the client behaves; the CLI fills this from flags and environment.
#[derive(Debug, Clone)]
pub struct ClientOptions {
    /// Docker's per-registry CA directory (`/etc/docker/certs.d`).
    pub certs_dir: PathBuf,
    /// Hosts (`host[:port]`) that may be reached over plain HTTP.
    pub insecure_registries: Vec<String>,
    /// Where `config.json` lives (`$DOCKER_CONFIG`); `None`: no credentials.
    pub docker_config: Option<PathBuf>,
    pub retry: RetryPolicy,
    /// Deadlines and the minimum transfer speed.
    pub limits: Limits,
    /// Blobs transferred at the same time.
    pub concurrency: usize,
    /// Blobs up to this size go up in one request; larger ones in chunks of it.
    pub chunk_size: usize,
    /// Where blob locations learned from pulls and pushes are remembered,
    /// for cross-repository mounts in later runs.
    pub blob_locations: Option<PathBuf>,
    /// Receives transfer events (blob outcomes, retries).
    pub progress: Option<Progress>,
}

impl Default for ClientOptions {
    fn default() -> Self {
        ClientOptions {
            certs_dir: PathBuf::from("/etc/docker/certs.d"),
            insecure_registries: Vec::new(),
            docker_config: None,
            retry: RetryPolicy::default(),
            limits: Limits::default(),
            concurrency: 4,
            chunk_size: 8 << 20,
            blob_locations: None,
            progress: None,
        }
    }
}

/// A registry client; cheap to clone, shared between concurrent transfers.
#[derive(Clone)]
pub struct RegistryClient {
    pub(super) opts: Arc<ClientOptions>,
    hosts: Arc<Mutex<HashMap<String, Arc<Host>>>>,
}

impl RegistryClient {
    pub fn new(opts: ClientOptions) -> RegistryClient {
        RegistryClient {
            opts: Arc::new(opts),
            hosts: Arc::new(Mutex::new(HashMap::new())),
        }
    }

    pub fn options(&self) -> &ClientOptions {
        &self.opts
    }

    /// The connection to `reference`'s registry, created on first use with
    /// the credentials config.json holds for it.
    pub(super) fn host(&self, reference: &Reference) -> Result<Arc<Host>, RegistryError> {
        let key = reference.registry().to_string();
        if let Some(h) = self.lock_hosts().get(&key) {
            return Ok(h.clone());
        }
        let credentials = match &self.opts.docker_config {
            Some(dir) => DockerConfig::load(dir)?.credentials_for(reference.registry())?,
            None => None,
        };
        let host = Arc::new(Host::new(&self.opts, reference, credentials)?);
        self.lock_hosts().insert(key, host.clone());
        Ok(host)
    }

    /// A connection with explicit credentials (for `login`), not cached.
    pub(super) fn host_with(
        &self,
        reference: &Reference,
        credentials: Credentials,
    ) -> Result<Arc<Host>, RegistryError> {
        Ok(Arc::new(Host::new(
            &self.opts,
            reference,
            Some(credentials),
        )?))
    }

    fn lock_hosts(&self) -> std::sync::MutexGuard<'_, HashMap<String, Arc<Host>>> {
        // A poisoned map is still a valid cache.
        self.hosts.lock().unwrap_or_else(|p| p.into_inner())
    }
}

/// True for hosts that never leave the machine.
pub fn is_loopback(host_port: &str) -> bool {
    let host = match host_port.strip_prefix('[') {
        Some(v6) => v6.split(']').next().unwrap_or(""),
        None => host_port.split(':').next().unwrap_or(""),
    };
    host == "localhost"
        || host
            .parse::<std::net::IpAddr>()
            .is_ok_and(|ip| ip.is_loopback())
}

/// A connection to one registry.
pub(super) struct Host {
    pub registry: String,
    api_host: String,
    pub(super) http: reqwest::Client,
    plain_http_allowed: bool,
    base: OnceCell<String>,
    pub(super) credentials: Option<Credentials>,
    pub(super) auth: Mutex<AuthState>,
    pub retry: RetryPolicy,
    pub limits: Limits,
    pub progress: Option<Progress>,
}

impl Host {
    fn new(
        opts: &ClientOptions,
        reference: &Reference,
        credentials: Option<Credentials>,
    ) -> Result<Host, RegistryError> {
        let api_host = reference.api_host().to_string();
        let mut builder = reqwest::Client::builder()
            .user_agent(concat!("imgb/", env!("CARGO_PKG_VERSION")))
            // No read timeout: answers have deadlines and bodies a minimum
            // speed (limits.rs), which a byte every few seconds cannot reset.
            .connect_timeout(opts.limits.timeout.min(Duration::from_secs(30)));
        // Docker reads every *.crt in certs.d/HOST:PORT as an extra CA.
        let ca_dir = opts.certs_dir.join(&api_host);
        if let Ok(entries) = std::fs::read_dir(&ca_dir) {
            let mut paths: Vec<PathBuf> = entries
                .filter_map(|e| e.ok().map(|e| e.path()))
                .filter(|p| p.extension().is_some_and(|x| x == "crt"))
                .collect();
            paths.sort();
            for path in paths {
                let pem = std::fs::read(&path).map_err(|source| RegistryError::Io {
                    path: path.clone(),
                    source,
                })?;
                let certs = reqwest::Certificate::from_pem_bundle(&pem).map_err(|e| {
                    RegistryError::Certificate {
                        path: path.clone(),
                        reason: e.to_string(),
                    }
                })?;
                for cert in certs {
                    builder = builder.add_root_certificate(cert);
                }
            }
        }
        let listed_insecure = opts
            .insecure_registries
            .iter()
            .any(|h| h == &api_host || h == reference.registry());
        if listed_insecure {
            // Docker-compatibility quirk: `--insecure-registry` also means
            // "do not verify its certificate". Loopback hosts, insecure by
            // default for plain HTTP, still get their certificates checked.
            builder = builder.danger_accept_invalid_certs(true);
        }
        let http = builder.build().map_err(|e| RegistryError::Transport {
            registry: reference.registry().to_string(),
            reason: e.to_string(),
        })?;
        let plain_http_allowed = is_loopback(&api_host) || listed_insecure;
        Ok(Host {
            registry: reference.registry().to_string(),
            api_host,
            http,
            plain_http_allowed,
            base: OnceCell::new(),
            credentials,
            auth: Mutex::new(AuthState::default()),
            retry: opts.retry,
            limits: opts.limits,
            progress: opts.progress.clone(),
        })
    }

    /// `https://host` or, where allowed and HTTPS does not answer,
    /// `http://host`. Decided once by pinging `/v2/`, which also tells how
    /// the registry wants to be authenticated.
    pub async fn base(&self) -> Result<&str, RegistryError> {
        self.base
            .get_or_try_init(|| async {
                let https = format!("https://{}", self.api_host);
                let first = self.ping(&https, !self.plain_http_allowed).await;
                match first {
                    Ok(()) => Ok(https),
                    Err(e) if !self.plain_http_allowed => Err(e),
                    Err(https_err) => {
                        let http = format!("http://{}", self.api_host);
                        match self.ping(&http, true).await {
                            Ok(()) => Ok(http),
                            // Both failed: the HTTPS reason is the useful one
                            // (for instance an unknown certificate authority).
                            Err(_) => Err(https_err),
                        }
                    }
                }
            })
            .await
            .map(String::as_str)
    }

    async fn ping(&self, base: &str, retry: bool) -> Result<(), RegistryError> {
        let url = format!("{base}/v2/");
        let mut attempt = 0;
        loop {
            let answer = tokio::time::timeout(self.limits.timeout, self.http.get(&url).send());
            let answer = match answer.await {
                Ok(answer) => answer,
                Err(_) => {
                    if let Some(delay) =
                        self.backoff(attempt, Outcome::Stalled, &HeaderMap::new(), "/v2/")
                    {
                        tokio::time::sleep(delay).await;
                        attempt += 1;
                        continue;
                    }
                    return Err(self.no_answer("ping /v2/", 0));
                }
            };
            match answer {
                Ok(resp) => {
                    let status = resp.status().as_u16();
                    if let Some(delay) =
                        self.backoff(attempt, Outcome::Status(status), resp.headers(), "/v2/")
                    {
                        tokio::time::sleep(delay).await;
                        attempt += 1;
                        continue;
                    }
                    if status == 401 {
                        self.remember_challenge(resp.headers());
                    }
                    // Over plain HTTP only a registry's own answer counts: a
                    // TLS server says 400 to plain HTTP, which must not make
                    // imgb settle for HTTP.
                    let registry_like = status == 200 || status == 401 || status == 403;
                    if base.starts_with("http://") && !registry_like {
                        return Err(RegistryError::Status {
                            registry: self.registry.clone(),
                            action: "ping /v2/".to_string(),
                            status,
                            message: "not a registry over plain HTTP".to_string(),
                        });
                    }
                    return Ok(());
                }
                Err(e) => {
                    if retry {
                        if let Some(delay) = self.backoff(
                            attempt,
                            Outcome::ConnectionError,
                            &HeaderMap::new(),
                            "/v2/",
                        ) {
                            tokio::time::sleep(delay).await;
                            attempt += 1;
                            continue;
                        }
                    }
                    return Err(self.transport_error(&e));
                }
            }
        }
    }

    /// The wait before trying `what` again after attempt `attempt` ended in
    /// `outcome` (announced as a progress event), or `None` to give up.
    pub(super) fn backoff(
        &self,
        attempt: u32,
        outcome: Outcome,
        headers: &HeaderMap,
        what: &str,
    ) -> Option<Duration> {
        let hint = headers
            .get(RETRY_AFTER)
            .and_then(|v| v.to_str().ok())
            .and_then(parse_retry_after);
        let delay = self.retry.next_delay(attempt, outcome, hint, jitter())?;
        self.emit(&Event::Retrying {
            registry: self.registry.clone(),
            what: what.to_string(),
            attempt: attempt + 1,
            reason: match outcome {
                Outcome::ConnectionError => "connection error".to_string(),
                Outcome::Status(s) => format!("HTTP {s}"),
                Outcome::Stalled => "stalled".to_string(),
            },
            delay,
        });
        Some(delay)
    }

    pub(super) fn emit(&self, event: &Event) {
        if let Some(p) = &self.progress {
            p.emit(event);
        }
    }

    pub fn transport_error(&self, e: &reqwest::Error) -> RegistryError {
        // reqwest's Display hides the cause chain (where TLS errors live).
        let mut reason = e.to_string();
        let mut source = std::error::Error::source(e);
        while let Some(s) = source {
            reason.push_str(": ");
            reason.push_str(&s.to_string());
            source = s.source();
        }
        RegistryError::Transport {
            registry: self.registry.clone(),
            reason,
        }
    }

    /// No answer (status and headers) came within the deadline.
    pub fn no_answer(&self, what: &str, body_len: usize) -> RegistryError {
        RegistryError::Stalled {
            registry: self.registry.clone(),
            what: what.to_string(),
            reason: format!(
                "no answer within {}",
                seconds(self.limits.answer_deadline(body_len))
            ),
        }
    }

    /// The error for a body that stopped early, and whether the request is
    /// worth repeating.
    pub(super) fn body_error(&self, what: &str, e: BodyError) -> (RegistryError, Outcome) {
        match e {
            BodyError::Stalled(reason) => (
                RegistryError::Stalled {
                    registry: self.registry.clone(),
                    what: what.to_string(),
                    reason,
                },
                Outcome::Stalled,
            ),
            BodyError::TooLarge { limit } => (
                RegistryError::TooLarge {
                    registry: self.registry.clone(),
                    what: what.to_string(),
                    limit,
                },
                // Not transient: the same answer would come again.
                Outcome::Status(200),
            ),
            BodyError::Transport(e) => (self.transport_error(&e), Outcome::ConnectionError),
        }
    }

    pub fn url(&self, base: &str, target: &str) -> String {
        if target.starts_with("http://") || target.starts_with("https://") {
            target.to_string()
        } else {
            format!("{base}{target}")
        }
    }

    /// Sends `req`, answering an auth challenge once and retrying transient
    /// failures; returns whatever response came last.
    pub async fn send(&self, req: &Request) -> Result<Response, RegistryError> {
        self.send_with(req, true).await
    }

    /// Sends `req` once (apart from authentication): for requests whose
    /// repetition the caller handles, such as chunk uploads.
    pub async fn send_once(&self, req: &Request) -> Result<Response, RegistryError> {
        self.send_with(req, false).await
    }

    async fn send_with(&self, req: &Request, retry: bool) -> Result<Response, RegistryError> {
        let base = self.base().await?;
        let url = self.url(base, &req.target);
        let mut attempt = 0;
        let mut answered_challenge = false;
        loop {
            let mut rb = self.http.request(req.method.clone(), &url);
            for (name, value) in &req.headers {
                rb = rb.header(name, value);
            }
            if let Some(body) = &req.body {
                rb = rb.body(body.clone());
            } else if req.method == Method::PUT
                || req.method == Method::POST
                || req.method == Method::PATCH
            {
                rb = rb.header(reqwest::header::CONTENT_LENGTH, "0");
            }
            if let Some(auth) = self.authorization(&req.scopes).await? {
                rb = rb.header(AUTHORIZATION, auth);
            }
            let body_len = req.body.as_ref().map_or(0, |b| b.len());
            let deadline = self.limits.answer_deadline(body_len);
            let answer = match tokio::time::timeout(deadline, rb.send()).await {
                Ok(answer) => answer,
                Err(_) => {
                    let what = format!("{} {}", req.method, req.target);
                    let delay = retry
                        .then(|| self.backoff(attempt, Outcome::Stalled, &HeaderMap::new(), &what))
                        .flatten();
                    match delay {
                        Some(d) => {
                            tokio::time::sleep(d).await;
                            attempt += 1;
                            continue;
                        }
                        None => return Err(self.no_answer(&what, body_len)),
                    }
                }
            };
            match answer {
                Err(e) => {
                    let what = format!("{} {}", req.method, req.target);
                    let delay = retry
                        .then(|| {
                            self.backoff(
                                attempt,
                                Outcome::ConnectionError,
                                &HeaderMap::new(),
                                &what,
                            )
                        })
                        .flatten();
                    match delay {
                        Some(d) => {
                            tokio::time::sleep(d).await;
                            attempt += 1;
                        }
                        _ => return Err(self.transport_error(&e)),
                    }
                }
                Ok(resp) => {
                    let status = resp.status();
                    if status == StatusCode::UNAUTHORIZED && !answered_challenge {
                        if let Some(challenge) = self.remember_challenge(resp.headers()) {
                            answered_challenge = true;
                            if challenge.is_bearer() {
                                self.fetch_token(&challenge, &req.scopes).await?;
                            }
                            continue;
                        }
                    }
                    let what = format!("{} {}", req.method, req.target);
                    let outcome = Outcome::Status(status.as_u16());
                    let delay = retry
                        .then(|| self.backoff(attempt, outcome, resp.headers(), &what))
                        .flatten();
                    match delay {
                        Some(d) => {
                            tokio::time::sleep(d).await;
                            attempt += 1;
                        }
                        _ => return Ok(resp),
                    }
                }
            }
        }
    }

    /// Turns a response that is not one of `expected` into an error carrying
    /// the registry's own message.
    pub async fn expect(
        &self,
        resp: Response,
        expected: &[u16],
        action: &str,
    ) -> Result<Response, RegistryError> {
        let status = resp.status().as_u16();
        if expected.contains(&status) {
            return Ok(resp);
        }
        let text = read_error_text(resp, self.limits, MAX_ERROR_BODY).await;
        let message = registry_message(&text);
        if status == 401 || status == 403 {
            let hint = if self.credentials.is_none() {
                " (no credentials stored for it; run `imgb login`)"
            } else {
                ""
            };
            return Err(RegistryError::Unauthorized {
                registry: self.registry.clone(),
                message: format!("{action}: HTTP {status}: {message}{hint}"),
            });
        }
        Err(RegistryError::Status {
            registry: self.registry.clone(),
            action: action.to_string(),
            status,
            message,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn loopback_hosts() {
        for h in [
            "localhost",
            "localhost:5000",
            "127.0.0.1:5000",
            "127.1.2.3",
            "[::1]:5000",
            "[::1]",
        ] {
            assert!(is_loopback(h), "{h}");
        }
        for h in [
            "example.com",
            "10.0.0.1:5000",
            "localhost.example.com",
            "[::2]:1",
        ] {
            assert!(!is_loopback(h), "{h}");
        }
    }
}
