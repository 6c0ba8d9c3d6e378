//! The registry client, the only async module: Docker reference
//! normalisation, auth (bearer tokens, basic, `$DOCKER_CONFIG` credentials),
//! pull and push with retries and digest verification.
//!
//! Uses `store`, `image` and `digest`; talks to the network.
//!
//! Entry points: [`RegistryClient::new`] with [`ClientOptions`], then
//! [`pull`] / [`resolve`] (bases for builds), [`push`] (an image or index in
//! the store or an OCI layout), [`login`] (check credentials).

mod auth;
mod challenge;
mod client;
mod credentials;
mod limits;
mod locations;
mod manifest;
mod platform;
mod progress;
mod pull;
mod push;
mod reference;
mod request;
mod retry;
mod upload;

use std::path::PathBuf;

pub use challenge::{parse_challenges, Challenge};
pub use client::{is_loopback, ClientOptions, RegistryClient};
pub use credentials::{Credentials, DockerConfig};
pub use limits::Limits;
pub use manifest::{MediaKind, MANIFEST_ACCEPT};
pub use platform::{select_manifest, Platform};
pub use progress::{Event, Progress};
pub use pull::{pull, resolve, PullStats, ResolvedImage};
pub use push::{login, push, PushStats};
pub use reference::{normalize_registry_host, Reference, DOCKER_HUB};
pub use retry::{Outcome, RetryPolicy};
pub use upload::{BlobOutcome, BlobSource};

use crate::digest::Sha256Digest;

/// Everything that can go wrong talking to a registry.
#[derive(Debug, thiserror::Error)]
pub enum RegistryError {
    #[error("invalid reference {reference:?}: {reason}")]
    InvalidReference { reference: String, reason: String },
    #[error("invalid platform {platform:?}: expected os/arch[/variant], e.g. linux/arm64/v8")]
    InvalidPlatform { platform: String },
    #[error("{registry}: cannot connect: {reason}")]
    Transport { registry: String, reason: String },
    #[error("{registry}: {what}: {reason}")]
    Stalled {
        registry: String,
        what: String,
        reason: String,
    },
    #[error("{registry}: {what}: the answer is larger than {limit} bytes; stopped reading it")]
    TooLarge {
        registry: String,
        what: String,
        limit: u64,
    },
    #[error("{registry}: {action}: HTTP {status}: {message}")]
    Status {
        registry: String,
        action: String,
        status: u16,
        message: String,
    },
    #[error("{registry}: authentication failed: {message}")]
    Unauthorized { registry: String, message: String },
    #[error("{reference}: schema 1 manifests are not supported (the image is too old; push it again with a current client)")]
    Schema1 { reference: String },
    #[error("{reference}: unsupported manifest media type {media_type:?}")]
    UnsupportedMediaType {
        reference: String,
        media_type: String,
    },
    #[error("{reference}: invalid manifest: {reason}")]
    InvalidManifest { reference: String, reason: String },
    #[error("{reference}: no image for platform {wanted} (available: {})", available.join(", "))]
    NoMatchingPlatform {
        reference: String,
        wanted: String,
        available: Vec<String>,
    },
    #[error("{what}: digest mismatch: expected {expected}, got {found}")]
    DigestMismatch {
        what: String,
        expected: Sha256Digest,
        found: Sha256Digest,
    },
    #[error("{what}: size mismatch: expected {expected} bytes, got {found}")]
    SizeMismatch {
        what: String,
        expected: u64,
        found: u64,
    },
    #[error("{path}: {source}")]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("{path}: {reason}")]
    Config { path: PathBuf, reason: String },
    #[error("{path}: cannot use certificate: {reason}")]
    Certificate { path: PathBuf, reason: String },
    #[error("{what}: content store: {reason}")]
    Store { what: String, reason: String },
    #[error("credential helper {helper}: {message}")]
    CredentialHelper { helper: String, message: String },
}
