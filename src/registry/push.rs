//! Pushing an image manifest or an index (with every manifest it lists)
//! from the store or an OCI layout: blobs first, concurrently (skipped when
//! present, mounted when known elsewhere on the registry), then manifests
//! by digest, then the root under the destination's tag.

use futures_util::stream::{self, StreamExt, TryStreamExt};
use reqwest::header::CONTENT_TYPE;
use reqwest::Method;

use crate::digest::Sha256Digest;

use super::client::{scope, Host, Request};
use super::locations::BlobLocations;
use super::manifest::{classify, MediaKind};
use super::progress::Event;
use super::reference::Reference;
use super::upload::{ensure_blob, BlobOutcome, BlobSource};
use super::{RegistryClient, RegistryError};

/// What a push did.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct PushStats {
    pub uploaded: usize,
    pub mounted: usize,
    /// Blobs the registry already had.
    pub present: usize,
    pub manifests: usize,
    /// The digest the destination now points to.
    pub digest: Option<Sha256Digest>,
}

/// Pushes the manifest or index `root` (its bytes and everything it refers
/// to must be in `source`) to `dest` — under `dest`'s tag, or by digest when
/// `dest` has none. Returns what was transferred; the pushed digest equals
/// `root` (manifests are sent byte for byte).
pub async fn push(
    client: &RegistryClient,
    source: &BlobSource,
    root: &Sha256Digest,
    dest: &Reference,
) -> Result<PushStats, RegistryError> {
    let what = format!("{dest}");
    let target = match dest.digest() {
        Some(d) if d != root => {
            return Err(RegistryError::InvalidReference {
                reference: what,
                reason: format!("the image's digest is {root}, not the one in the destination"),
            })
        }
        _ => dest.tag().map_or_else(|| root.to_string(), str::to_string),
    };
    let host = client.host(dest)?;
    let mut locations = BlobLocations::load(client.opts.blob_locations.as_deref());
    let mut stats = PushStats::default();
    let bytes = source.read(root)?;
    let kind = classify(&what, None, &bytes)?;
    if let MediaKind::Index { index, .. } = &kind {
        for child in &index.manifests {
            let digest = child.digest;
            let child_bytes = source.read(&digest)?;
            let child_kind = classify(&what, Some(&child.media_type), &child_bytes)?;
            let MediaKind::Manifest {
                manifest,
                media_type,
            } = child_kind
            else {
                return Err(RegistryError::InvalidManifest {
                    reference: what,
                    reason: format!("nested index {digest} is not supported"),
                });
            };
            push_blobs(
                client,
                &host,
                source,
                dest,
                &manifest,
                &mut locations,
                &mut stats,
            )
            .await?;
            put_manifest(&host, dest, &digest.to_string(), &media_type, child_bytes).await?;
            stats.manifests += 1;
        }
    }
    if let MediaKind::Manifest { manifest, .. } = &kind {
        push_blobs(
            client,
            &host,
            source,
            dest,
            manifest,
            &mut locations,
            &mut stats,
        )
        .await?;
    }
    put_manifest(&host, dest, &target, kind.media_type(), bytes).await?;
    stats.manifests += 1;
    stats.digest = Some(*root);
    locations.save();
    Ok(stats)
}

async fn push_blobs(
    client: &RegistryClient,
    host: &Host,
    source: &BlobSource,
    dest: &Reference,
    manifest: &crate::image::Manifest,
    locations: &mut BlobLocations,
    stats: &mut PushStats,
) -> Result<(), RegistryError> {
    let mut blobs: Vec<(Sha256Digest, u64)> = Vec::new();
    for d in manifest
        .layers
        .iter()
        .chain(std::iter::once(&manifest.config))
    {
        if !blobs.iter().any(|(b, _)| *b == d.digest) {
            blobs.push((d.digest, d.size));
        }
    }
    let jobs: Vec<_> = blobs
        .iter()
        .map(|(digest, size)| {
            let from = locations.mount_source(digest, dest.registry(), dest.repository());
            (*digest, *size, from)
        })
        .collect();
    let chunk = client.opts.chunk_size.max(1);
    let outcomes: Vec<(Sha256Digest, BlobOutcome)> =
        stream::iter(jobs.into_iter().map(|(digest, size, from)| async move {
            ensure_blob(host, source, dest, &digest, size, from.as_deref(), chunk)
                .await
                .map(|o| (digest, o))
        }))
        .buffer_unordered(client.opts.concurrency.max(1))
        .try_collect()
        .await?;
    for (digest, outcome) in outcomes {
        match outcome {
            BlobOutcome::AlreadyThere => stats.present += 1,
            BlobOutcome::Mounted => stats.mounted += 1,
            BlobOutcome::Uploaded => stats.uploaded += 1,
        }
        locations.record(&digest, dest.registry(), dest.repository());
    }
    Ok(())
}

async fn put_manifest(
    host: &Host,
    dest: &Reference,
    tag_or_digest: &str,
    media_type: &str,
    bytes: Vec<u8>,
) -> Result<(), RegistryError> {
    let repo = dest.repository();
    let req = Request::new(
        Method::PUT,
        format!("/v2/{repo}/manifests/{tag_or_digest}"),
        vec![scope(repo, "pull,push")],
    )
    .header(CONTENT_TYPE, media_type)
    .body(bytes.into());
    let resp = host.send(&req).await?;
    host.expect(
        resp,
        &[200, 201],
        &format!("put manifest {}:{tag_or_digest}", dest.name()),
    )
    .await?;
    host.emit(&Event::ManifestPut {
        target: format!("{}:{tag_or_digest}", dest.name()),
    });
    Ok(())
}

/// Checks that `credentials` are accepted by `registry` (`host[:port]`):
/// pings it and, for token auth, obtains a token with them.
pub async fn login(
    client: &RegistryClient,
    registry: &str,
    credentials: super::Credentials,
) -> Result<(), RegistryError> {
    let probe = Reference::parse(&format!("{registry}/imgb-login-probe"))?;
    let host = client.host_with(&probe, credentials)?;
    host.check_login().await
}
