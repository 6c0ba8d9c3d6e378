//! Pulling: resolve a reference to one platform's manifest, then fetch its
//! config and layers into the content store, concurrently, verifying every
//! digest and size. Blobs already in the store are not fetched again.

use std::io::Write;

use bytes::Bytes;
use futures_util::stream::{self, StreamExt, TryStreamExt};
use reqwest::header::{HeaderMap, ACCEPT, CONTENT_TYPE};
use reqwest::Method;

use crate::digest::Sha256Digest;
use crate::image::{ImageConfig, Manifest};
use crate::store::{Blob, ContentStore};

use super::client::{scope, Host, Request};
use super::limits::{read_small, Meter};
use super::locations::BlobLocations;
use super::manifest::{classify, MediaKind, MANIFEST_ACCEPT};
use super::platform::{select_manifest, Platform};
use super::progress::Event;
use super::reference::Reference;
use super::retry::Outcome;
use super::{RegistryClient, RegistryError};

/// Manifests are small; a bigger answer is refused as it streams.
const MAX_MANIFEST_BYTES: u64 = 8 << 20;
/// Image configs are read into memory whole: one declared bigger than this
/// is refused before it is fetched.
const MAX_CONFIG_BYTES: u64 = 32 << 20;

/// A base image resolved to one platform and present in the store.
#[derive(Debug, Clone)]
pub struct ResolvedImage {
    /// The reference as asked for, normalised.
    pub reference: Reference,
    /// The digest the reference resolved to (an index for multi-platform
    /// images; equal to `manifest_digest` otherwise). This is what the name
    /// is recorded under in the store's refs.
    pub root_digest: Sha256Digest,
    /// The chosen platform's image manifest.
    pub manifest_digest: Sha256Digest,
    pub manifest_media_type: String,
    pub manifest: Manifest,
    pub config_digest: Sha256Digest,
    /// The parsed config (its bytes are in the store under `config_digest`).
    pub config: ImageConfig,
}

/// What a pull transferred.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct PullStats {
    /// Blobs downloaded (config and layers).
    pub fetched: usize,
    /// Blobs that were already in the store.
    pub present: usize,
    pub bytes_fetched: u64,
}

/// Pulls `reference` for `platform` into `store` and records it under its
/// full name (`registry/repo:tag`) in the store's refs.
pub async fn pull(
    client: &RegistryClient,
    store: &ContentStore,
    reference: &Reference,
    platform: &Platform,
) -> Result<(ResolvedImage, PullStats), RegistryError> {
    // A digest names content for good: when it is all here, skip the network.
    if let Some(pinned) = reference.digest() {
        if let Some(image) = resolve_in_store(store, reference, pinned, platform)? {
            let stats = PullStats {
                present: image.manifest.layers.len() + 1,
                ..PullStats::default()
            };
            return Ok((image, stats));
        }
    }
    let host = client.host(reference)?;
    let pull_scope = vec![scope(reference.repository(), "pull")];
    let (root_digest, root_media, root_bytes) =
        fetch_manifest(&host, reference, &reference.manifest_ref(), &pull_scope).await?;
    let what = reference.to_string();
    let (manifest_digest, media_type, manifest, manifest_bytes) =
        match classify(&what, Some(&root_media), &root_bytes)? {
            MediaKind::Manifest {
                media_type,
                manifest,
            } => (root_digest, media_type, *manifest, None),
            MediaKind::Index { index, .. } => {
                let chosen = select_manifest(&index, platform, &what)?;
                let digest = chosen.digest;
                let (d, media, bytes) =
                    fetch_manifest(&host, reference, &digest.to_string(), &pull_scope).await?;
                if bytes.len() as u64 != chosen.size {
                    return Err(RegistryError::SizeMismatch {
                        what: format!("{what} manifest {d}"),
                        expected: chosen.size,
                        found: bytes.len() as u64,
                    });
                }
                match classify(&what, Some(&media), &bytes)? {
                    MediaKind::Manifest {
                        media_type,
                        manifest,
                    } => (d, media_type, *manifest, Some(bytes)),
                    MediaKind::Index { .. } => {
                        return Err(RegistryError::InvalidManifest {
                            reference: what,
                            reason: format!("index entry {d} is itself an index"),
                        })
                    }
                }
            }
        };

    let config_digest = manifest.config.digest;
    if manifest.config.size > MAX_CONFIG_BYTES {
        return Err(RegistryError::InvalidManifest {
            reference: what,
            reason: format!(
                "its config is {} bytes (at most {MAX_CONFIG_BYTES} are accepted)",
                manifest.config.size
            ),
        });
    }
    let mut wanted: Vec<(Sha256Digest, u64)> = vec![(config_digest, manifest.config.size)];
    for layer in &manifest.layers {
        if !wanted.iter().any(|(w, _)| *w == layer.digest) {
            wanted.push((layer.digest, layer.size));
        }
    }
    let mut stats = PullStats::default();
    let missing: Vec<(Sha256Digest, u64)> = wanted
        .iter()
        .copied()
        .filter(|(d, _)| !store.has(d))
        .collect();
    stats.present = wanted.len() - missing.len();
    for (digest, _) in wanted
        .iter()
        .filter(|(d, _)| !missing.iter().any(|(m, _)| m == d))
    {
        host.emit(&Event::AlreadyPresent { digest: *digest });
    }
    let results: Vec<u64> = stream::iter(missing.into_iter().map(|(digest, size)| {
        let host = host.clone();
        let scopes = pull_scope.clone();
        async move { fetch_blob(&host, store, reference, &digest, size, &scopes).await }
    }))
    .buffer_unordered(client.opts.concurrency.max(1))
    .try_collect()
    .await?;
    stats.fetched = results.len();
    stats.bytes_fetched = results.iter().sum();

    // Manifests go in last: a manifest in the store means its blobs are too.
    if let Some(bytes) = &manifest_bytes {
        put_verified(store, bytes, &manifest_digest, &what)?;
    }
    put_verified(store, &root_bytes, &root_digest, &what)?;
    let config = read_config(store, &config_digest, &what)?;

    let mut locations = BlobLocations::load(client.opts.blob_locations.as_deref());
    for (d, _) in &wanted {
        locations.record(d, reference.registry(), reference.repository());
    }
    locations.save();
    // The name points at the platform's manifest, which is what is usable
    // locally (like `docker pull`); the index is kept in the store too.
    store
        .set_ref(&reference.to_string(), &manifest_digest)
        .map_err(|e| store_error(&what, e))?;
    Ok((
        ResolvedImage {
            reference: reference.clone(),
            root_digest,
            manifest_digest,
            manifest_media_type: media_type,
            manifest,
            config_digest,
            config,
        },
        stats,
    ))
}

fn read_config(
    store: &ContentStore,
    digest: &Sha256Digest,
    what: &str,
) -> Result<ImageConfig, RegistryError> {
    let bytes = store.read_blob(digest).map_err(|e| store_error(what, e))?;
    serde_json::from_slice(&bytes).map_err(|e| RegistryError::InvalidManifest {
        reference: what.to_string(),
        reason: format!("config {digest}: {e}"),
    })
}

/// The image `pinned` names for `platform`, when it and everything it
/// needs are already in the store.
fn resolve_in_store(
    store: &ContentStore,
    reference: &Reference,
    pinned: &Sha256Digest,
    platform: &Platform,
) -> Result<Option<ResolvedImage>, RegistryError> {
    let what = reference.to_string();
    let read = |d: &Sha256Digest| -> Result<Option<Vec<u8>>, RegistryError> {
        if !store.has(d) {
            return Ok(None);
        }
        store
            .read_blob(d)
            .map(Some)
            .map_err(|e| store_error(&what, e))
    };
    let Some(root) = read(pinned)? else {
        return Ok(None);
    };
    let (manifest_digest, kind) = match classify(&what, None, &root)? {
        MediaKind::Index { index, .. } => {
            let chosen = select_manifest(&index, platform, &what)?.digest;
            let Some(bytes) = read(&chosen)? else {
                return Ok(None);
            };
            (chosen, classify(&what, None, &bytes)?)
        }
        manifest => (*pinned, manifest),
    };
    let MediaKind::Manifest {
        media_type,
        manifest,
    } = kind
    else {
        return Ok(None);
    };
    let all_here =
        store.has(&manifest.config.digest) && manifest.layers.iter().all(|l| store.has(&l.digest));
    if !all_here {
        return Ok(None);
    }
    let config_digest = manifest.config.digest;
    let config = read_config(store, &config_digest, &what)?;
    store
        .set_ref(&what, &manifest_digest)
        .map_err(|e| store_error(&what, e))?;
    Ok(Some(ResolvedImage {
        reference: reference.clone(),
        root_digest: *pinned,
        manifest_digest,
        manifest_media_type: media_type,
        manifest: *manifest,
        config_digest,
        config,
    }))
}

/// Resolves and pulls a base image for a build: [`pull`] without the stats.
pub async fn resolve(
    client: &RegistryClient,
    store: &ContentStore,
    reference: &str,
    platform: &Platform,
) -> Result<ResolvedImage, RegistryError> {
    let reference = Reference::parse(reference)?;
    pull(client, store, &reference, platform)
        .await
        .map(|(image, _)| image)
}

pub(super) fn store_error(what: &str, e: crate::store::StoreError) -> RegistryError {
    match e {
        crate::store::StoreError::DigestMismatch { expected, found } => {
            RegistryError::DigestMismatch {
                what: what.to_string(),
                expected,
                found,
            }
        }
        crate::store::StoreError::SizeMismatch {
            digest,
            expected,
            found,
        } => RegistryError::SizeMismatch {
            what: format!("{what} blob {digest}"),
            expected,
            found,
        },
        other => RegistryError::Store {
            what: what.to_string(),
            reason: other.to_string(),
        },
    }
}

fn put_verified(
    store: &ContentStore,
    bytes: &[u8],
    digest: &Sha256Digest,
    what: &str,
) -> Result<(), RegistryError> {
    let mut w = store.writer().map_err(|e| store_error(what, e))?;
    w.write_all(bytes).map_err(|e| RegistryError::Store {
        what: what.to_string(),
        reason: e.to_string(),
    })?;
    w.commit(Some(&Blob {
        digest: *digest,
        size: bytes.len() as u64,
    }))
    .map_err(|e| store_error(what, e))?;
    Ok(())
}

/// GETs a manifest by tag or digest; returns its digest (verified against a
/// requested digest and the registry's `Docker-Content-Digest`), its media
/// type and its bytes.
pub(super) async fn fetch_manifest(
    host: &Host,
    reference: &Reference,
    tag_or_digest: &str,
    scopes: &[String],
) -> Result<(Sha256Digest, String, Bytes), RegistryError> {
    let what = format!("{}:{tag_or_digest}", reference.name());
    let req = Request::new(
        Method::GET,
        format!("/v2/{}/manifests/{tag_or_digest}", reference.repository()),
        scopes.to_vec(),
    )
    .header(ACCEPT, MANIFEST_ACCEPT);
    let resp = host.send(&req).await?;
    let resp = host
        .expect(resp, &[200], &format!("fetch manifest {what}"))
        .await?;
    let media = resp
        .headers()
        .get(CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("")
        .to_string();
    let announced = resp
        .headers()
        .get("docker-content-digest")
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<Sha256Digest>().ok());
    let bytes = read_small(resp, host.limits, MAX_MANIFEST_BYTES)
        .await
        .map_err(|e| host.body_error(&format!("fetch manifest {what}"), e).0)?;
    let digest = Sha256Digest::of(&bytes);
    let expected = tag_or_digest.parse::<Sha256Digest>().ok().or(announced);
    if let Some(expected) = expected {
        if expected != digest {
            return Err(RegistryError::DigestMismatch {
                what: format!("manifest {what}"),
                expected,
                found: digest,
            });
        }
    }
    Ok((digest, media, bytes))
}

/// Downloads one blob into the store, retrying transient failures from the
/// start; a digest or size mismatch fails at once and leaves nothing stored.
async fn fetch_blob(
    host: &Host,
    store: &ContentStore,
    reference: &Reference,
    digest: &Sha256Digest,
    size: u64,
    scopes: &[String],
) -> Result<u64, RegistryError> {
    let what = format!("{} blob {digest}", reference.name());
    let mut attempt = 0;
    loop {
        match fetch_blob_once(host, store, reference, digest, size, scopes, &what).await {
            Ok(n) => {
                host.emit(&Event::Fetched {
                    digest: *digest,
                    size: n,
                });
                return Ok(n);
            }
            Err(Transfer::Fatal(e)) => return Err(e),
            Err(Transfer::Interrupted(e, outcome)) => {
                match host.backoff(attempt, outcome, &HeaderMap::new(), &what) {
                    Some(d) => {
                        tokio::time::sleep(d).await;
                        attempt += 1;
                    }
                    None => return Err(e),
                }
            }
        }
    }
}

enum Transfer {
    /// Worth starting over (the connection broke or stalled mid-body).
    Interrupted(RegistryError, Outcome),
    Fatal(RegistryError),
}

async fn fetch_blob_once(
    host: &Host,
    store: &ContentStore,
    reference: &Reference,
    digest: &Sha256Digest,
    size: u64,
    scopes: &[String],
    what: &str,
) -> Result<u64, Transfer> {
    let req = Request::new(
        Method::GET,
        format!("/v2/{}/blobs/{digest}", reference.repository()),
        scopes.to_vec(),
    );
    let resp = host.send(&req).await.map_err(Transfer::Fatal)?;
    let mut resp = host
        .expect(resp, &[200], &format!("fetch {what}"))
        .await
        .map_err(Transfer::Fatal)?;
    let mut writer = store
        .writer()
        .map_err(|e| Transfer::Fatal(store_error(what, e)))?;
    let mut received: u64 = 0;
    let mut meter = Meter::new(host.limits);
    loop {
        match meter.next_chunk(&mut resp).await {
            Ok(Some(chunk)) => {
                received += chunk.len() as u64;
                if received > size {
                    // Dropping the writer removes its temp file.
                    return Err(Transfer::Fatal(RegistryError::SizeMismatch {
                        what: what.to_string(),
                        expected: size,
                        found: received,
                    }));
                }
                writer.write_all(&chunk).map_err(|e| {
                    Transfer::Fatal(RegistryError::Store {
                        what: what.to_string(),
                        reason: e.to_string(),
                    })
                })?;
            }
            Ok(None) => break,
            Err(e) => {
                let (e, outcome) = host.body_error(&format!("fetch {what}"), e);
                return Err(Transfer::Interrupted(e, outcome));
            }
        }
    }
    if received < size {
        // A short body is a broken transfer (the connection ended early).
        return Err(Transfer::Interrupted(
            RegistryError::SizeMismatch {
                what: what.to_string(),
                expected: size,
                found: received,
            },
            Outcome::ConnectionError,
        ));
    }
    writer
        .commit(Some(&Blob {
            digest: *digest,
            size,
        }))
        .map_err(|e| Transfer::Fatal(store_error(what, e)))?;
    Ok(received)
}
