//! SLSA provenance v1 (<https://slsa.dev/spec/v1.0/provenance>), the
//! predicate of an in-toto statement of type `https://slsa.dev/provenance/v1`.
//!
//! The fields follow BuildKit's definitions for Dockerfile builds (its
//! `docs/attestations/slsa-definitions.md`, named by `buildType`), so tools
//! that read buildx provenance read imgb's:
//!
//! - `externalParameters.configSource`: the Dockerfile's path relative to
//!   the context and its sha256 digest;
//! - `externalParameters.request`: frontend `dockerfile.v0`, the `context`
//!   and `dockerfile` locals; in `max` mode also `args` (`build-arg:NAME`,
//!   `label:NAME`, `target`) and the ids of the secrets (never values);
//! - `resolvedDependencies`: base images as docker purls with the digest
//!   the name resolved to, and the git checkout of the context;
//! - `runDetails.builder`: the builder id and imgb's version;
//! - `runDetails.metadata`: start and finish times (`SOURCE_DATE_EPOCH` for
//!   both when it is set, so the same inputs give the same bytes) and, for a
//!   git context, `buildkit_metadata.vcs` with the repository and commit.
//!
//! `min` mode leaves out everything a build argument or label could leak.

use std::collections::BTreeMap;

use serde_json::{json, Value};

use crate::digest::Sha256Digest;

/// BuildKit's build type for Dockerfile builds, whose field definitions
/// imgb's provenance follows.
pub const BUILD_TYPE: &str =
    "https://github.com/moby/buildkit/blob/master/docs/attestations/slsa-definitions.md";

/// How much the provenance records.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum ProvenanceMode {
    /// No build arguments, labels, target or secret ids.
    #[default]
    Min,
    /// Everything, including the Dockerfile's text.
    Max,
}

/// A resolved dependency: a base image or other input, by digest.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Material {
    pub uri: String,
    pub digest: BTreeMap<String, String>,
}

impl Material {
    pub fn sha256(uri: &str, digest: &Sha256Digest) -> Material {
        Material {
            uri: uri.to_string(),
            digest: BTreeMap::from([("sha256".to_string(), digest.hex().to_string())]),
        }
    }
}

/// The git checkout the context lives in.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GitSource {
    /// The `origin` remote's URL (credentials are removed here).
    pub url: Option<String>,
    /// The full commit id (sha1, or sha256 for sha256 repositories).
    pub commit: String,
}

/// Everything the provenance says.
#[derive(Debug, Clone)]
pub struct ProvenanceInput<'a> {
    pub mode: ProvenanceMode,
    pub builder_id: &'a str,
    pub builder_version: &'a str,
    /// `linux/amd64`: where the build ran.
    pub builder_platform: &'a str,
    /// The Dockerfile's path relative to the context (`Dockerfile`).
    pub dockerfile_path: &'a str,
    pub dockerfile_digest: Sha256Digest,
    /// The Dockerfile's text (recorded in `max` mode only).
    pub dockerfile: &'a str,
    pub build_args: &'a BTreeMap<String, String>,
    pub labels: &'a BTreeMap<String, String>,
    pub target: Option<&'a str>,
    /// Ids of the secrets given to the build (their values never appear).
    pub secret_ids: &'a [String],
    pub materials: &'a [Material],
    pub git: Option<&'a GitSource>,
    /// RFC 3339 UTC times.
    pub started_on: &'a str,
    pub finished_on: &'a str,
}

/// `https://user:token@host/x` -> `https://host/x`.
pub fn redact_credentials(url: &str) -> String {
    if let Some((scheme, rest)) = url.split_once("://") {
        let (authority, path) = match rest.find('/') {
            Some(i) => rest.split_at(i),
            None => (rest, ""),
        };
        if let Some((_, host)) = authority.rsplit_once('@') {
            return format!("{scheme}://{host}{path}");
        }
    }
    url.to_string()
}

fn git_digest(commit: &str) -> BTreeMap<String, String> {
    let algo = if commit.len() == 64 { "sha256" } else { "sha1" };
    BTreeMap::from([(algo.to_string(), commit.to_string())])
}

/// The SLSA provenance v1 predicate.
pub fn predicate(input: &ProvenanceInput<'_>) -> Value {
    let max = input.mode == ProvenanceMode::Max;
    let mut request = json!({
        "frontend": "dockerfile.v0",
        "locals": [{"name": "context"}, {"name": "dockerfile"}],
    });
    let mut args: BTreeMap<String, String> = BTreeMap::new();
    for (k, v) in input.build_args {
        args.insert(format!("build-arg:{k}"), v.clone());
    }
    for (k, v) in input.labels {
        args.insert(format!("label:{k}"), v.clone());
    }
    if let Some(t) = input.target {
        args.insert("target".to_string(), t.to_string());
    }
    // BuildKit's completeness: min mode drops what could leak.
    let request_complete = max || args.is_empty();
    if max {
        if !args.is_empty() {
            request["args"] = json!(args);
        }
        if !input.secret_ids.is_empty() {
            let secrets: Vec<Value> = input
                .secret_ids
                .iter()
                .map(|id| json!({"id": id}))
                .collect();
            request["secrets"] = json!(secrets);
        }
    }
    let mut resolved: Vec<Value> = input
        .materials
        .iter()
        .map(|m| json!({"uri": m.uri, "digest": m.digest}))
        .collect();
    let mut buildkit_metadata = json!({});
    if let Some(git) = input.git {
        let url = git.url.as_deref().map(redact_credentials);
        let mut vcs = json!({"revision": git.commit});
        if let Some(url) = &url {
            vcs["source"] = json!(url);
            resolved.push(json!({"uri": url, "digest": git_digest(&git.commit)}));
        } else {
            resolved.push(json!({"digest": git_digest(&git.commit)}));
        }
        buildkit_metadata["vcs"] = vcs;
    }
    if max {
        use base64::Engine as _;
        buildkit_metadata["source"] = json!({"infos": [{
            "filename": input.dockerfile_path,
            "language": "Dockerfile",
            "data": base64::engine::general_purpose::STANDARD.encode(input.dockerfile),
        }]});
    }
    let mut build_definition = json!({
        "buildType": BUILD_TYPE,
        "externalParameters": {
            "configSource": {
                "path": input.dockerfile_path,
                "digest": {"sha256": input.dockerfile_digest.hex()},
            },
            "request": request,
        },
        "internalParameters": {"builderPlatform": input.builder_platform},
    });
    if !resolved.is_empty() {
        build_definition["resolvedDependencies"] = json!(resolved);
    }
    json!({
        "buildDefinition": build_definition,
        "runDetails": {
            "builder": {
                "id": input.builder_id,
                "version": {"imgb": input.builder_version},
            },
            "metadata": {
                "startedOn": input.started_on,
                "finishedOn": input.finished_on,
                "buildkit_completeness": {
                    "request": request_complete,
                    // The local context is an input no digest covers.
                    "resolvedDependencies": false,
                },
                "buildkit_metadata": buildkit_metadata,
            },
        },
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn input<'a>(
        mode: ProvenanceMode,
        args: &'a BTreeMap<String, String>,
        materials: &'a [Material],
        git: Option<&'a GitSource>,
        secrets: &'a [String],
    ) -> ProvenanceInput<'a> {
        ProvenanceInput {
            mode,
            builder_id: "https://ci.example/run/1",
            builder_version: "0.1.0",
            builder_platform: "linux/amd64",
            dockerfile_path: "Dockerfile",
            dockerfile_digest: Sha256Digest::of(b"FROM x\n"),
            dockerfile: "FROM x\n",
            build_args: args,
            labels: args,
            target: Some("app"),
            secret_ids: secrets,
            materials,
            git,
            started_on: "2024-01-01T00:00:00Z",
            finished_on: "2024-01-01T00:00:00Z",
        }
    }

    #[test]
    fn min_mode_leaves_out_arguments_and_secrets() {
        let args = BTreeMap::from([("TOKEN".to_string(), "hunter2".to_string())]);
        let base = Sha256Digest::of(b"base");
        let materials = [Material::sha256(
            "pkg:docker/alpine@3.19?platform=linux%2Famd64",
            &base,
        )];
        let secrets = ["npmrc".to_string()];
        let p = predicate(&input(
            ProvenanceMode::Min,
            &args,
            &materials,
            None,
            &secrets,
        ));
        let text = p.to_string();
        assert!(!text.contains("hunter2"), "{text}");
        assert!(!text.contains("TOKEN"));
        assert!(!text.contains("npmrc"));
        assert!(!text.contains("\"app\""), "target is max only");
        assert_eq!(p["buildDefinition"]["buildType"], BUILD_TYPE);
        assert_eq!(
            p["buildDefinition"]["externalParameters"]["configSource"]["digest"]["sha256"],
            Sha256Digest::of(b"FROM x\n").hex()
        );
        assert_eq!(
            p["buildDefinition"]["resolvedDependencies"][0]["digest"]["sha256"],
            base.hex()
        );
        assert_eq!(p["runDetails"]["builder"]["version"]["imgb"], "0.1.0");
        assert_eq!(
            p["runDetails"]["metadata"]["buildkit_completeness"]["request"],
            false
        );
        assert_eq!(
            p["runDetails"]["metadata"]["startedOn"],
            "2024-01-01T00:00:00Z"
        );
    }

    #[test]
    fn max_mode_records_arguments_and_secret_ids_not_values() {
        let args = BTreeMap::from([("VERSION".to_string(), "1.2".to_string())]);
        let git = GitSource {
            url: Some("https://user:tok@git.example/team/app.git".into()),
            commit: "0123456789abcdef0123456789abcdef01234567".into(),
        };
        let secrets = ["npmrc".to_string()];
        let p = predicate(&input(
            ProvenanceMode::Max,
            &args,
            &[],
            Some(&git),
            &secrets,
        ));
        let request = &p["buildDefinition"]["externalParameters"]["request"];
        assert_eq!(request["args"]["build-arg:VERSION"], "1.2");
        assert_eq!(request["args"]["label:VERSION"], "1.2");
        assert_eq!(request["args"]["target"], "app");
        assert_eq!(request["secrets"], json!([{"id": "npmrc"}]));
        let vcs = &p["runDetails"]["metadata"]["buildkit_metadata"]["vcs"];
        assert_eq!(vcs["source"], "https://git.example/team/app.git");
        assert_eq!(vcs["revision"], git.commit);
        assert_eq!(
            p["buildDefinition"]["resolvedDependencies"][0],
            json!({"uri": "https://git.example/team/app.git", "digest": {"sha1": git.commit}})
        );
        assert!(!p.to_string().contains("tok@"));
        assert_eq!(
            p["runDetails"]["metadata"]["buildkit_metadata"]["source"]["infos"][0]["data"],
            "RlJPTSB4Cg=="
        );
    }

    #[test]
    fn credentials_are_redacted() {
        assert_eq!(
            redact_credentials("https://u:p@h.example:8443/r.git"),
            "https://h.example:8443/r.git"
        );
        assert_eq!(
            redact_credentials("git@github.com:o/r.git"),
            "git@github.com:o/r.git"
        );
        assert_eq!(redact_credentials("ssh://git@h/r"), "ssh://h/r");
    }
}
