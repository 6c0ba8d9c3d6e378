//! Getting one blob into a repository: skip it when the registry has it
//! (HEAD), mount it from another repository of the same registry when it is
//! known to be there, else upload it: in one PUT when small, in PATCHed
//! chunks when large, resuming a broken chunked upload at the offset the
//! registry reports.

use std::fs::File;
use std::io::{Read, Seek, SeekFrom};
use std::path::PathBuf;

use bytes::Bytes;
use reqwest::header::{HeaderMap, CONTENT_LENGTH, CONTENT_RANGE, CONTENT_TYPE, LOCATION, RANGE};
use reqwest::{Method, Response};

use crate::digest::Sha256Digest;
use crate::store::ContentStore;

use super::client::{scope, Host, Request};
use super::progress::Event;
use super::reference::Reference;
use super::retry::Outcome;
use super::RegistryError;

/// Where the bytes of a push come from.
#[derive(Debug, Clone)]
pub enum BlobSource {
    /// The content store.
    Store(ContentStore),
    /// An OCI image layout directory (`blobs/sha256/<hex>`).
    Layout(PathBuf),
}

impl BlobSource {
    pub(super) fn open(&self, digest: &Sha256Digest) -> Result<File, RegistryError> {
        match self {
            BlobSource::Store(store) => store.open_blob(digest).map_err(|e| RegistryError::Store {
                what: format!("blob {digest}"),
                reason: e.to_string(),
            }),
            BlobSource::Layout(dir) => {
                let path = dir.join("blobs/sha256").join(digest.hex());
                File::open(&path).map_err(|source| RegistryError::Io { path, source })
            }
        }
    }

    pub(super) fn read(&self, digest: &Sha256Digest) -> Result<Vec<u8>, RegistryError> {
        let mut bytes = Vec::new();
        self.open(digest)?
            .read_to_end(&mut bytes)
            .map_err(|source| RegistryError::Io {
                path: PathBuf::from(digest.to_string()),
                source,
            })?;
        let found = Sha256Digest::of(&bytes);
        if found != *digest {
            return Err(RegistryError::DigestMismatch {
                what: "local blob".to_string(),
                expected: *digest,
                found,
            });
        }
        Ok(bytes)
    }
}

/// How a blob got into the repository.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BlobOutcome {
    AlreadyThere,
    Mounted,
    Uploaded,
}

/// Makes sure `digest` (of `size` bytes) is in `dest`'s repository.
pub(super) async fn ensure_blob(
    host: &Host,
    source: &BlobSource,
    dest: &Reference,
    digest: &Sha256Digest,
    size: u64,
    mount_from: Option<&str>,
    chunk_size: usize,
) -> Result<BlobOutcome, RegistryError> {
    let repo = dest.repository();
    let push_scope = vec![scope(repo, "pull,push")];
    let what = format!("{} blob {digest}", dest.name());
    let head = Request::new(
        Method::HEAD,
        format!("/v2/{repo}/blobs/{digest}"),
        push_scope.clone(),
    );
    let resp = host.send(&head).await?;
    if resp.status().as_u16() == 200 {
        host.emit(&Event::AlreadyPresent { digest: *digest });
        return Ok(BlobOutcome::AlreadyThere);
    }
    host.expect(resp, &[404], &format!("check {what}")).await?;

    let mut session = None;
    if let Some(from) = mount_from {
        let mut scopes = push_scope.clone();
        scopes.push(scope(from, "pull"));
        let req = Request::new(
            Method::POST,
            format!("/v2/{repo}/blobs/uploads/?mount={digest}&from={from}"),
            scopes,
        );
        let resp = host.send(&req).await?;
        match resp.status().as_u16() {
            201 => {
                host.emit(&Event::Mounted {
                    digest: *digest,
                    from: from.to_string(),
                });
                return Ok(BlobOutcome::Mounted);
            }
            // The registry could not mount and opened an upload instead.
            202 => session = Some(location(host, &resp, &what)?),
            _ => {
                host.expect(resp, &[201, 202], &format!("mount {what} from {from}"))
                    .await?;
            }
        }
    }
    // A failed upload session (lost by a registry restart, or consumed by a
    // PUT whose answer never arrived) is started over.
    let mut attempt = 0;
    loop {
        let result = upload(
            host,
            source,
            dest,
            digest,
            size,
            chunk_size,
            session.take(),
            &what,
        )
        .await;
        match result {
            Ok(()) => {
                host.emit(&Event::Uploaded {
                    digest: *digest,
                    size,
                });
                return Ok(BlobOutcome::Uploaded);
            }
            Err(e) if is_transient(&e) => {
                match host.backoff(attempt, Outcome::ConnectionError, &HeaderMap::new(), &what) {
                    Some(d) => {
                        tokio::time::sleep(d).await;
                        attempt += 1;
                    }
                    None => return Err(e),
                }
                // The failed attempt may have completed the upload (its
                // final answer lost): then there is nothing left to send.
                let resp = host.send(&head).await?;
                if resp.status().as_u16() == 200 {
                    host.emit(&Event::Uploaded {
                        digest: *digest,
                        size,
                    });
                    return Ok(BlobOutcome::Uploaded);
                }
            }
            Err(e) => return Err(e),
        }
    }
}

fn is_transient(e: &RegistryError) -> bool {
    match e {
        RegistryError::Transport { .. } => true,
        // A lost or invalidated upload session is worth starting over; a
        // missing repository is not.
        RegistryError::Status {
            status, message, ..
        } => {
            super::RetryPolicy::is_transient(Outcome::Status(*status))
                || (*status == 404 && message.contains("BLOB_UPLOAD"))
        }
        _ => false,
    }
}

fn location(host: &Host, resp: &Response, what: &str) -> Result<String, RegistryError> {
    resp.headers()
        .get(LOCATION)
        .and_then(|v| v.to_str().ok())
        .map(str::to_string)
        .ok_or_else(|| RegistryError::Status {
            registry: host.registry.clone(),
            action: format!("upload {what}"),
            status: resp.status().as_u16(),
            message: "no Location header in the answer".to_string(),
        })
}

fn with_query(location: &str, query: &str) -> String {
    if location.contains('?') {
        format!("{location}&{query}")
    } else {
        format!("{location}?{query}")
    }
}

#[allow(clippy::too_many_arguments)]
async fn upload(
    host: &Host,
    source: &BlobSource,
    dest: &Reference,
    digest: &Sha256Digest,
    size: u64,
    chunk_size: usize,
    session: Option<String>,
    what: &str,
) -> Result<(), RegistryError> {
    let repo = dest.repository();
    let scopes = vec![scope(repo, "pull,push")];
    let mut loc = match session {
        Some(l) => l,
        None => {
            let req = Request::new(
                Method::POST,
                format!("/v2/{repo}/blobs/uploads/"),
                scopes.clone(),
            );
            let resp = host.send(&req).await?;
            let resp = host
                .expect(resp, &[202], &format!("start upload of {what}"))
                .await?;
            location(host, &resp, what)?
        }
    };
    let mut file = source.open(digest)?;
    let io_err = |source| RegistryError::Io {
        path: PathBuf::from(what),
        source,
    };
    if size <= chunk_size as u64 {
        let mut bytes = Vec::with_capacity(size as usize);
        (&mut file)
            .take(size + 1)
            .read_to_end(&mut bytes)
            .map_err(io_err)?;
        check_local(&bytes, digest, size, what)?;
        let req = Request::new(
            Method::PUT,
            with_query(&loc, &format!("digest={digest}")),
            scopes,
        )
        .header(CONTENT_TYPE, "application/octet-stream")
        .body(Bytes::from(bytes));
        let resp = host.send_once(&req).await?;
        host.expect(resp, &[201], &format!("upload {what}")).await?;
        return Ok(());
    }

    let mut offset: u64 = 0;
    let mut attempt = 0;
    let mut buf = vec![0u8; chunk_size];
    while offset < size {
        let len = (size - offset).min(chunk_size as u64) as usize;
        file.seek(SeekFrom::Start(offset)).map_err(io_err)?;
        file.read_exact(&mut buf[..len]).map_err(io_err)?;
        let req = Request::new(Method::PATCH, loc.clone(), scopes.clone())
            .header(CONTENT_TYPE, "application/octet-stream")
            .header(
                CONTENT_RANGE,
                &format!("{offset}-{}", offset + len as u64 - 1),
            )
            .header(CONTENT_LENGTH, &len.to_string())
            .body(Bytes::copy_from_slice(&buf[..len]));
        let failure = match host.send_once(&req).await {
            Ok(resp) if resp.status().as_u16() == 202 => {
                loc = location(host, &resp, what)?;
                offset += len as u64;
                attempt = 0;
                continue;
            }
            Ok(resp) => {
                let status = resp.status().as_u16();
                let transient = super::RetryPolicy::is_transient(Outcome::Status(status));
                let err = host.expect(resp, &[202], &format!("upload {what}")).await;
                match err {
                    Err(e) if transient || status == 416 => e,
                    Err(e) => return Err(e),
                    Ok(_) => continue,
                }
            }
            Err(e) => e,
        };
        // Resume: ask the registry how much of the upload it holds.
        let delay = host
            .backoff(attempt, Outcome::ConnectionError, &HeaderMap::new(), what)
            .ok_or(failure)?;
        tokio::time::sleep(delay).await;
        attempt += 1;
        let status_req = Request::new(Method::GET, loc.clone(), scopes.clone());
        let resp = host.send(&status_req).await?;
        let resp = host
            .expect(resp, &[204], &format!("resume upload of {what}"))
            .await?;
        offset = resp
            .headers()
            .get(RANGE)
            .and_then(|v| v.to_str().ok())
            .and_then(|r| r.rsplit('-').next())
            .and_then(|end| end.parse::<u64>().ok())
            // Docker-compatibility quirk: distribution reports an empty
            // upload as `0-0`, the same as one byte; starting over from 0
            // is right for the first and harmless for the second.
            .map_or(0, |end| if end == 0 { 0 } else { end + 1 });
        if let Ok(l) = location(host, &resp, what) {
            loc = l;
        }
    }
    let req = Request::new(
        Method::PUT,
        with_query(&loc, &format!("digest={digest}")),
        scopes,
    );
    let resp = host.send_once(&req).await?;
    host.expect(resp, &[201], &format!("finish upload of {what}"))
        .await?;
    Ok(())
}

fn check_local(
    bytes: &[u8],
    digest: &Sha256Digest,
    size: u64,
    what: &str,
) -> Result<(), RegistryError> {
    if bytes.len() as u64 != size {
        return Err(RegistryError::SizeMismatch {
            what: format!("local copy of {what}"),
            expected: size,
            found: bytes.len() as u64,
        });
    }
    let found = Sha256Digest::of(bytes);
    if found != *digest {
        return Err(RegistryError::DigestMismatch {
            what: format!("local copy of {what}"),
            expected: *digest,
            found,
        });
    }
    Ok(())
}
