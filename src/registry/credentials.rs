//! Registry credentials in Docker's `config.json` (`$DOCKER_CONFIG`):
//! `auths` entries (`base64(user:password)`), `credsStore` and per-registry
//! `credHelpers` run as `docker-credential-NAME get|store|erase`.
//!
//! Unknown keys of config.json are kept as they are, so a file shared with
//! Docker survives `imgb login` unchanged apart from the entry written.

use std::fmt;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use base64::Engine as _;
use serde_json::{Map, Value};

use super::reference::{normalize_registry_host, DOCKER_HUB, DOCKER_HUB_AUTH_KEY};
use super::RegistryError;

/// A user name and password (or token). `Debug` never shows the secret.
#[derive(Clone, PartialEq, Eq)]
pub struct Credentials {
    pub username: String,
    password: String,
}

impl Credentials {
    pub fn new(username: impl Into<String>, password: impl Into<String>) -> Self {
        Credentials {
            username: username.into(),
            password: password.into(),
        }
    }

    pub fn password(&self) -> &str {
        &self.password
    }
}

impl fmt::Debug for Credentials {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Credentials")
            .field("username", &self.username)
            .field("password", &"<redacted>")
            .finish()
    }
}

/// Docker's client configuration file, as far as credentials go.
#[derive(Debug, Clone)]
pub struct DockerConfig {
    path: PathBuf,
    doc: Map<String, Value>,
}

impl DockerConfig {
    /// Reads `DIR/config.json`; a missing file is an empty configuration.
    pub fn load(dir: &Path) -> Result<DockerConfig, RegistryError> {
        let path = dir.join("config.json");
        let text = match std::fs::read_to_string(&path) {
            Ok(t) => t,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => String::new(),
            Err(source) => return Err(RegistryError::Io { path, source }),
        };
        DockerConfig::parse(path, &text)
    }

    /// Parses the text of a config.json found at `path`.
    pub fn parse(path: PathBuf, text: &str) -> Result<DockerConfig, RegistryError> {
        if text.trim().is_empty() {
            return Ok(DockerConfig {
                path,
                doc: Map::new(),
            });
        }
        let doc: Map<String, Value> =
            serde_json::from_str(text).map_err(|e| RegistryError::Config {
                path: path.clone(),
                reason: e.to_string(),
            })?;
        Ok(DockerConfig { path, doc })
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// The credential helper responsible for `registry`, if any:
    /// `credHelpers[registry]`, else `credsStore`.
    pub fn helper_for(&self, registry: &str) -> Option<String> {
        let registry = normalize_registry_host(registry);
        let per_registry = self
            .doc
            .get("credHelpers")
            .and_then(Value::as_object)
            .and_then(|helpers| {
                helpers
                    .iter()
                    .find(|(k, _)| normalize_registry_host(k) == registry)
                    .and_then(|(_, v)| v.as_str())
            });
        per_registry
            .or_else(|| self.doc.get("credsStore").and_then(Value::as_str))
            .filter(|h| !h.is_empty())
            .map(str::to_string)
    }

    /// The credentials stored for `registry` (`host[:port]`, `docker.io`).
    pub fn credentials_for(&self, registry: &str) -> Result<Option<Credentials>, RegistryError> {
        let registry = normalize_registry_host(registry);
        if let Some(helper) = self.helper_for(&registry) {
            return helper_get(&helper, &auth_key(&registry));
        }
        let Some(auths) = self.doc.get("auths").and_then(Value::as_object) else {
            return Ok(None);
        };
        let Some((_, entry)) = auths
            .iter()
            .find(|(k, _)| normalize_registry_host(k) == registry)
        else {
            return Ok(None);
        };
        self.decode_entry(&registry, entry)
    }

    fn decode_entry(
        &self,
        registry: &str,
        entry: &Value,
    ) -> Result<Option<Credentials>, RegistryError> {
        let bad = |reason: &str| RegistryError::Config {
            path: self.path.clone(),
            reason: format!("auths entry for {registry}: {reason}"),
        };
        if let Some(auth) = entry.get("auth").and_then(Value::as_str) {
            if auth.is_empty() {
                return Ok(None);
            }
            let decoded = base64::engine::general_purpose::STANDARD
                .decode(auth.trim())
                .map_err(|_| bad("`auth` is not base64"))?;
            let decoded = String::from_utf8(decoded).map_err(|_| bad("`auth` is not UTF-8"))?;
            let (user, pass) = decoded
                .split_once(':')
                .ok_or_else(|| bad("`auth` is not `user:password`"))?;
            return Ok(Some(Credentials::new(user, pass)));
        }
        // Older files keep the two fields apart.
        match (
            entry.get("username").and_then(Value::as_str),
            entry.get("password").and_then(Value::as_str),
        ) {
            (Some(u), Some(p)) => Ok(Some(Credentials::new(u, p))),
            _ => Ok(None),
        }
    }

    /// Records `credentials` for `registry`: through its helper when one is
    /// configured (leaving an empty `auths` marker, as Docker does), else as
    /// `auths[registry].auth`. Call [`DockerConfig::save`] afterwards.
    pub fn store(
        &mut self,
        registry: &str,
        credentials: &Credentials,
    ) -> Result<(), RegistryError> {
        let registry = normalize_registry_host(registry);
        let key = auth_key(&registry);
        let entry = match self.helper_for(&registry) {
            Some(helper) => {
                helper_store(&helper, &key, credentials)?;
                Value::Object(Map::new())
            }
            None => {
                let raw = format!("{}:{}", credentials.username, credentials.password);
                let mut m = Map::new();
                m.insert(
                    "auth".to_string(),
                    Value::String(base64::engine::general_purpose::STANDARD.encode(raw)),
                );
                Value::Object(m)
            }
        };
        self.remove_auth_entries(&registry);
        let auths = self
            .doc
            .entry("auths")
            .or_insert_with(|| Value::Object(Map::new()));
        if !auths.is_object() {
            *auths = Value::Object(Map::new());
        }
        if let Value::Object(auths) = auths {
            auths.insert(key, entry);
        }
        Ok(())
    }

    /// Forgets `registry`'s credentials (and asks its helper to erase them).
    /// Returns whether anything was stored.
    pub fn erase(&mut self, registry: &str) -> Result<bool, RegistryError> {
        let registry = normalize_registry_host(registry);
        let mut found = false;
        if let Some(helper) = self.helper_for(&registry) {
            found |= helper_erase(&helper, &auth_key(&registry))?;
        }
        found |= self.remove_auth_entries(&registry);
        Ok(found)
    }

    fn remove_auth_entries(&mut self, registry: &str) -> bool {
        let Some(Value::Object(auths)) = self.doc.get_mut("auths") else {
            return false;
        };
        let before = auths.len();
        auths.retain(|k, _| normalize_registry_host(k) != registry);
        auths.len() != before
    }

    /// The file's JSON as it would be saved.
    pub fn to_json(&self) -> String {
        // A Map always serializes.
        let mut text = serde_json::to_string_pretty(&self.doc).unwrap_or_else(|_| "{}".into());
        text.push('\n');
        text
    }

    /// Writes the file atomically with mode 0600 (it holds secrets).
    pub fn save(&self) -> Result<(), RegistryError> {
        let io = |source| RegistryError::Io {
            path: self.path.clone(),
            source,
        };
        let dir = self.path.parent().unwrap_or(Path::new("."));
        std::fs::create_dir_all(dir).map_err(io)?;
        let tmp = dir.join(format!(".config.json.{}.tmp", std::process::id()));
        let result = (|| {
            let mut opts = std::fs::OpenOptions::new();
            opts.write(true).create(true).truncate(true);
            #[cfg(unix)]
            {
                use std::os::unix::fs::OpenOptionsExt;
                opts.mode(0o600);
            }
            let mut f = opts.open(&tmp)?;
            f.write_all(self.to_json().as_bytes())?;
            f.sync_all()?;
            std::fs::rename(&tmp, &self.path)
        })();
        if result.is_err() {
            let _ = std::fs::remove_file(&tmp);
        }
        result.map_err(io)
    }
}

/// The key Docker uses in `auths` and with helpers for a registry.
// Docker-compatibility quirk: Hub's credentials live under its v1 URL.
fn auth_key(registry: &str) -> String {
    if registry == DOCKER_HUB {
        DOCKER_HUB_AUTH_KEY.to_string()
    } else {
        registry.to_string()
    }
}

fn run_helper(helper: &str, action: &str, input: &str) -> Result<(bool, String), RegistryError> {
    let program = format!("docker-credential-{helper}");
    let fail = |message: String| RegistryError::CredentialHelper {
        helper: program.clone(),
        message,
    };
    let mut child = Command::new(&program)
        .arg(action)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .map_err(|e| fail(format!("cannot run it: {e}")))?;
    if let Some(mut stdin) = child.stdin.take() {
        stdin
            .write_all(input.as_bytes())
            .map_err(|e| fail(format!("cannot write to it: {e}")))?;
    }
    let out = child
        .wait_with_output()
        .map_err(|e| fail(format!("cannot wait for it: {e}")))?;
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    Ok((out.status.success(), stdout))
}

/// The helpers' protocol says "credentials not found" on stdout for a miss.
fn is_not_found(output: &str) -> bool {
    output
        .to_ascii_lowercase()
        .contains("credentials not found")
}

fn helper_get(helper: &str, key: &str) -> Result<Option<Credentials>, RegistryError> {
    let (ok, stdout) = run_helper(helper, "get", key)?;
    if !ok {
        if is_not_found(&stdout) {
            return Ok(None);
        }
        return Err(RegistryError::CredentialHelper {
            helper: format!("docker-credential-{helper}"),
            // The helper's output on failure is its error message, not a secret.
            message: format!("`get` failed: {}", stdout.trim()),
        });
    }
    let v: Value = serde_json::from_str(&stdout).map_err(|e| RegistryError::CredentialHelper {
        helper: format!("docker-credential-{helper}"),
        message: format!("`get` printed something that is not JSON ({e})"),
    })?;
    let user = v.get("Username").and_then(Value::as_str).unwrap_or("");
    let secret = v.get("Secret").and_then(Value::as_str).unwrap_or("");
    if secret.is_empty() {
        return Ok(None);
    }
    Ok(Some(Credentials::new(user, secret)))
}

fn helper_store(helper: &str, key: &str, c: &Credentials) -> Result<(), RegistryError> {
    let input = serde_json::json!({"ServerURL": key, "Username": c.username, "Secret": c.password})
        .to_string();
    let (ok, stdout) = run_helper(helper, "store", &input)?;
    if ok {
        Ok(())
    } else {
        Err(RegistryError::CredentialHelper {
            helper: format!("docker-credential-{helper}"),
            message: format!("`store` failed: {}", stdout.trim()),
        })
    }
}

fn helper_erase(helper: &str, key: &str) -> Result<bool, RegistryError> {
    let (ok, stdout) = run_helper(helper, "erase", key)?;
    match (ok, is_not_found(&stdout)) {
        (true, _) => Ok(true),
        (false, true) => Ok(false),
        (false, false) => Err(RegistryError::CredentialHelper {
            helper: format!("docker-credential-{helper}"),
            message: format!("`erase` failed: {}", stdout.trim()),
        }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cfg(text: &str) -> DockerConfig {
        DockerConfig::parse(PathBuf::from("/nonexistent/config.json"), text).unwrap()
    }

    #[test]
    fn reads_auths_with_any_key_spelling() {
        // "dXNlcjpwYXNz" = base64("user:pass"); "aHViOnNlY3JldDpjb2xvbg==" = "hub:secret:colon"
        let c = cfg(r#"{
            "auths": {
                "http://127.0.0.1:5000": {"auth": "dXNlcjpwYXNz"},
                "https://index.docker.io/v1/": {"auth": "aHViOnNlY3JldDpjb2xvbg=="},
                "old.example.com": {"username": "u", "password": "p"},
                "empty.example.com": {}
            },
            "psFormat": "table"
        }"#);
        assert_eq!(
            c.credentials_for("127.0.0.1:5000").unwrap(),
            Some(Credentials::new("user", "pass"))
        );
        assert_eq!(
            c.credentials_for("docker.io").unwrap(),
            Some(Credentials::new("hub", "secret:colon")),
            "the password may contain ':'"
        );
        assert_eq!(
            c.credentials_for("old.example.com").unwrap(),
            Some(Credentials::new("u", "p"))
        );
        assert_eq!(c.credentials_for("empty.example.com").unwrap(), None);
        assert_eq!(c.credentials_for("other:1").unwrap(), None);
    }

    #[test]
    fn writing_keeps_other_keys_and_uses_dockers_format() {
        let mut c = cfg(r#"{"auths":{"a.example":{"auth":"eDp5"}},"detachKeys":"ctrl-e"}"#);
        c.store("127.0.0.1:5000", &Credentials::new("ci", "s3cret"))
            .unwrap();
        c.store("docker.io", &Credentials::new("me", "pw")).unwrap();
        let v: Value = serde_json::from_str(&c.to_json()).unwrap();
        assert_eq!(v["detachKeys"], "ctrl-e");
        assert_eq!(v["auths"]["a.example"]["auth"], "eDp5");
        assert_eq!(v["auths"]["127.0.0.1:5000"]["auth"], "Y2k6czNjcmV0");
        assert_eq!(
            v["auths"]["https://index.docker.io/v1/"]["auth"],
            "bWU6cHc="
        );
        assert!(c.erase("127.0.0.1:5000").unwrap());
        assert!(!c.erase("127.0.0.1:5000").unwrap());
        let v: Value = serde_json::from_str(&c.to_json()).unwrap();
        assert!(v["auths"].get("127.0.0.1:5000").is_none());
    }

    #[test]
    fn helpers_are_chosen_per_registry_then_store() {
        let c = cfg(r#"{"credsStore":"desktop","credHelpers":{"gcr.io":"gcloud"}}"#);
        assert_eq!(c.helper_for("gcr.io").as_deref(), Some("gcloud"));
        assert_eq!(c.helper_for("127.0.0.1:5000").as_deref(), Some("desktop"));
        assert_eq!(cfg("{}").helper_for("x"), None);
    }

    #[test]
    fn bad_files_name_the_file_and_secrets_stay_hidden() {
        let err = DockerConfig::parse(PathBuf::from("/d/config.json"), "{nope").unwrap_err();
        assert!(err.to_string().contains("/d/config.json"), "{err}");
        let c = cfg(r#"{"auths":{"x":{"auth":"%%%"}}}"#);
        assert!(c.credentials_for("x").is_err());
        let shown = format!("{:?}", Credentials::new("bob", "hunter2"));
        assert!(!shown.contains("hunter2"), "{shown}");
    }

    #[test]
    fn save_writes_atomically_with_private_mode() {
        let dir = tempfile::tempdir().unwrap();
        let mut c = DockerConfig::load(dir.path()).unwrap();
        c.store("r.example", &Credentials::new("a", "b")).unwrap();
        c.save().unwrap();
        let again = DockerConfig::load(dir.path()).unwrap();
        assert_eq!(
            again.credentials_for("r.example").unwrap(),
            Some(Credentials::new("a", "b"))
        );
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            let mode = std::fs::metadata(dir.path().join("config.json"))
                .unwrap()
                .permissions()
                .mode();
            assert_eq!(mode & 0o777, 0o600);
        }
        let leftovers: Vec<_> = std::fs::read_dir(dir.path()).unwrap().collect();
        assert_eq!(leftovers.len(), 1);
    }
}
