//! What ADD does beyond COPY: extracting local tar archives, downloading
//! http(s) sources (with `--checksum`), and the cache inputs of those.
//!
//! Docker compatibility, marked where it happens: a local file source that
//! is a tar archive (by content) is extracted into the destination unless
//! `--unpack=false`; a URL is saved as a file (mode 0600 unless `--chmod`,
//! named after the last segment of the URL path when the destination ends
//! in `/`) and extracted only with `--unpack=true`; git sources are refused.
//!
//! This is the one place where the engine touches the network: ADD of a URL
//! cannot be resolved before the build (without `--checksum` its content is
//! only known by downloading it, as Docker does on every build).
//!
//! imgb difference (README): the downloaded file's mtime in the layer is
//! `SOURCE_DATE_EPOCH` (0 when unset), not the `Last-Modified` header, as
//! for every copied file: with `--checksum` a cache hit never downloads, so
//! the header cannot be part of the layer.

use std::collections::BTreeMap;
use std::fs::File;
use std::io;
use std::path::{Path, PathBuf};

use crate::digest::{HashingWriter, Sha256Digest};
use crate::layer::EntryKind as LayerKind;
use crate::plan::CopyStep;

use super::super::lowerfs::{normalise, LowerFs};
use super::archive::{self, ArchiveError, Target};
use super::owner::{Chmod, Owner};
use super::staging::Staging;
use super::{with_parents, Content, Planned};

/// Why an ADD cannot be done.
#[derive(Debug, thiserror::Error)]
pub enum AddError {
    #[error("ADD of git repository {source_arg:?} is not supported yet (hint: clone it in a RUN step, or ADD a release tarball by URL)")]
    Git { source_arg: String },
    #[error("--checksum is only supported for a single http(s) source, not {source_arg:?}")]
    ChecksumSource { source_arg: String },
    #[error("invalid --checksum {value:?}: expected sha256:<64 hex digits>")]
    BadChecksum { value: String },
    #[error("When using ADD with more than one source file, the destination must be a directory and end with a /")]
    ManySources,
    #[error("downloading {url}: {reason}")]
    Download { url: String, reason: String },
    #[error("downloading {url}: the server answered {status}")]
    Status { url: String, status: u16 },
    #[error("downloading {url}: {source}")]
    DownloadIo {
        url: String,
        #[source]
        source: io::Error,
    },
    #[error("checksum mismatch for {url}: expected {expected}, found {found}")]
    ChecksumMismatch {
        url: String,
        expected: Sha256Digest,
        found: Sha256Digest,
    },
    #[error(transparent)]
    Archive(#[from] ArchiveError),
    #[error("{path}: {source}")]
    Io {
        path: PathBuf,
        #[source]
        source: io::Error,
    },
}

/// Whether an ADD source is a URL (rather than a context path).
pub fn is_url(source: &str) -> bool {
    source.starts_with("http://") || source.starts_with("https://")
}

/// Whether an ADD source is a git repository (BuildKit's rules, simplified).
fn is_git(source: &str) -> bool {
    source.starts_with("git@")
        || source.starts_with("git://")
        || (is_url(source) && (source.ends_with(".git") || source.contains(".git#")))
}

/// A downloaded source.
struct Fetched {
    file: PathBuf,
    digest: Sha256Digest,
    size: u64,
}

/// One URL source of an ADD.
struct UrlSource {
    url: String,
    expected: Option<Sha256Digest>,
    fetched: Option<Fetched>,
}

/// The ADD-specific part of one ADD step.
pub struct AddSources {
    staging: Staging,
    urls: Vec<UrlSource>,
    unpack: Option<bool>,
}

impl AddSources {
    /// Checks the step's sources and flags (no I/O beyond the staging dir).
    pub fn new(c: &CopyStep, home: &Path) -> Result<AddSources, AddError> {
        if let Some(git) = c.sources.iter().find(|s| is_git(s)) {
            return Err(AddError::Git {
                source_arg: git.clone(),
            });
        }
        let arguments = c.sources.len();
        // Docker quirk: the rule counts source arguments, not matched files.
        if arguments > 1 && !(c.dest.ends_with('/') || c.dest.ends_with("/.")) {
            return Err(AddError::ManySources);
        }
        let expected = match &c.checksum {
            None => None,
            Some(value) => {
                if let Some(other) = c.sources.iter().find(|s| !is_url(s)).or(
                    // BuildKit takes one checksum for one downloaded source.
                    (arguments > 1).then(|| &c.sources[1]),
                ) {
                    return Err(AddError::ChecksumSource {
                        source_arg: other.clone(),
                    });
                }
                let bad = || AddError::BadChecksum {
                    value: value.clone(),
                };
                let hex = value.strip_prefix("sha256:").ok_or_else(bad)?;
                Some(Sha256Digest::from_hex(hex).map_err(|_| bad())?)
            }
        };
        let urls = c
            .sources
            .iter()
            .filter(|s| is_url(s))
            .map(|url| UrlSource {
                url: url.clone(),
                expected,
                fetched: None,
            })
            .collect();
        Ok(AddSources {
            staging: Staging::new(home).map_err(|source| AddError::Io {
                path: home.join("tmp"),
                source,
            })?,
            urls,
            unpack: c.unpack,
        })
    }

    /// Adds the URL sources' identities to the cache key inputs: the
    /// `--checksum` when given (nothing is downloaded), otherwise the digest
    /// of the content, downloaded now.
    pub fn key_inputs(
        &mut self,
        inputs: &mut BTreeMap<String, Sha256Digest>,
    ) -> Result<(), AddError> {
        for i in 0..self.urls.len() {
            let digest = match self.urls[i].expected {
                Some(expected) => expected,
                None => self.fetch_one(i)?,
            };
            inputs.insert(format!("url/{i}/{}", self.urls[i].url), digest);
        }
        Ok(())
    }

    /// Downloads what is not downloaded yet (on a cache miss).
    pub fn fetch(&mut self) -> Result<(), AddError> {
        for i in 0..self.urls.len() {
            if self.urls[i].fetched.is_none() {
                self.fetch_one(i)?;
            }
        }
        Ok(())
    }

    fn fetch_one(&mut self, i: usize) -> Result<Sha256Digest, AddError> {
        let path = self.staging.next_path();
        let source = &mut self.urls[i];
        let fetched = download(&source.url, &path)?;
        if let Some(expected) = source.expected {
            if expected != fetched.digest {
                return Err(AddError::ChecksumMismatch {
                    url: source.url.clone(),
                    expected,
                    found: fetched.digest,
                });
            }
        }
        let digest = fetched.digest;
        source.fetched = Some(fetched);
        Ok(digest)
    }

    /// Completes the plan of the local sources (`planned`, as COPY made it):
    /// extracts the archives among `candidates` (the local sources that are
    /// single files), and adds the downloaded files.
    pub fn finish(
        &mut self,
        planned: Vec<Planned>,
        candidates: &[PathBuf],
        dest: &str,
        lower: &LowerFs,
        owner: Option<Owner>,
        chmod: Option<&Chmod>,
    ) -> Result<Vec<Planned>, AddError> {
        let dest_norm = normalise(dest);
        let dest_dir = if lower.is_dir(&dest_norm) {
            lower.resolve(&dest_norm).0
        } else {
            dest_norm.clone()
        };
        let into_dir = dest.ends_with('/') || dest.ends_with("/.") || lower.is_dir(&dest_norm);
        let target = Target {
            name: "",
            dest: &dest_dir,
            lower,
            owner,
            chmod,
        };
        let mut out = planned;
        // An extracted archive makes its destination a directory, even when
        // the archive is empty.
        let dest_entry = Planned {
            path: dest_dir.clone(),
            content: Content::Dir,
            mode: 0o755,
            uid: owner.map_or(0, |o| o.uid),
            gid: owner.map_or(0, |o| o.gid),
        };
        let needs_dest = !dest_dir.is_empty() && !lower.is_dir(&dest_dir);
        if self.unpack != Some(false) {
            for abs in candidates {
                let opened = archive::open(abs).map_err(|source| AddError::Io {
                    path: abs.clone(),
                    source,
                })?;
                if let Some(stream) = opened {
                    // The archive replaces the plain copy COPY planned for it.
                    out.retain(|p| !matches!(&p.content, Content::File { abs: a, .. } if a == abs));
                    let name = abs.display().to_string();
                    let target = Target {
                        name: &name,
                        ..target
                    };
                    out.extend(archive::extract(stream, &target, &mut self.staging)?);
                    if needs_dest {
                        out.push(dest_entry.clone());
                    }
                }
            }
        }
        for i in 0..self.urls.len() {
            let Some(fetched) = &self.urls[i].fetched else {
                continue;
            };
            let url = self.urls[i].url.clone();
            let file = fetched.file.clone();
            let size = fetched.size;
            // Docker compatibility: a downloaded archive is extracted only
            // with --unpack=true.
            if self.unpack == Some(true) {
                let opened = archive::open(&file).map_err(|source| AddError::Io {
                    path: file.clone(),
                    source,
                })?;
                if let Some(stream) = opened {
                    let target = Target {
                        name: &url,
                        ..target
                    };
                    out.extend(archive::extract(stream, &target, &mut self.staging)?);
                    if needs_dest {
                        out.push(dest_entry.clone());
                    }
                    continue;
                }
            }
            let path = if into_dir || dest_dir.is_empty() {
                join(&dest_dir, &file_name(&url))
            } else {
                dest_dir.clone()
            };
            let (uid, gid) = owner.map_or((0, 0), |o| (o.uid, o.gid));
            out.push(Planned {
                path,
                content: Content::File { abs: file, size },
                // Docker compatibility: downloads are 0600.
                mode: chmod.map_or(0o600, |c| c.apply(0o600, false)),
                uid,
                gid,
            });
        }
        Ok(relink(with_parents(out, lower), &self.staging.dir))
    }
}

/// Downloads `url` into `path`, hashing on the way.
fn download(url: &str, path: &Path) -> Result<Fetched, AddError> {
    // reqwest's own message hides the cause ("error sending request"):
    // spell out the whole chain (connection refused, certificate, ...).
    let download_err = |e: reqwest::Error| {
        let mut reason = e.to_string();
        let mut source = std::error::Error::source(&e);
        while let Some(cause) = source {
            reason.push_str(&format!(": {cause}"));
            source = cause.source();
        }
        AddError::Download {
            url: url.to_string(),
            reason,
        }
    };
    let client = reqwest::blocking::Client::builder()
        .build()
        .map_err(download_err)?;
    let mut response = client.get(url).send().map_err(download_err)?;
    if !response.status().is_success() {
        return Err(AddError::Status {
            url: url.to_string(),
            status: response.status().as_u16(),
        });
    }
    let file = File::create(path).map_err(|source| AddError::Io {
        path: path.to_path_buf(),
        source,
    })?;
    let mut writer = HashingWriter::new(file);
    io::copy(&mut response, &mut writer).map_err(|source| AddError::DownloadIo {
        url: url.to_string(),
        source,
    })?;
    let (_, digest, size) = writer.finish();
    Ok(Fetched {
        file: path.to_path_buf(),
        digest,
        size,
    })
}

/// The file name of a download: the last segment of the URL path, as
/// BuildKit takes it (`download` when there is none).
fn file_name(url: &str) -> String {
    let without_query = url.split(['?', '#']).next().unwrap_or(url);
    let path = without_query
        .split_once("://")
        .map_or("", |(_, rest)| rest.split_once('/').map_or("", |(_, p)| p));
    match path.split('/').rev().find(|s| !s.is_empty()) {
        Some(name) if name != "." && name != ".." => name.to_string(),
        _ => "download".to_string(),
    }
}

/// Turns files that share a staged file (hard links of an archive) back
/// into hard links to the first of them in layer order.
fn relink(planned: Vec<Planned>, staging: &Path) -> Vec<Planned> {
    let mut first: BTreeMap<PathBuf, String> = BTreeMap::new();
    planned
        .into_iter()
        .map(|mut p| {
            if let Content::File { abs, .. } = &p.content {
                if abs.starts_with(staging) {
                    match first.get(abs) {
                        Some(target) => {
                            p.content = Content::Special(LayerKind::Hardlink {
                                target: PathBuf::from(target),
                            })
                        }
                        None => {
                            first.insert(abs.clone(), p.path.clone());
                        }
                    }
                }
            }
            p
        })
        .collect()
}

fn join(base: &str, name: &str) -> String {
    match (base.is_empty(), name.is_empty()) {
        (true, _) => name.to_string(),
        (_, true) => base.to_string(),
        _ => format!("{base}/{name}"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn file_names_come_from_the_url_path() {
        assert_eq!(file_name("https://h/a/b/tool.tar.gz"), "tool.tar.gz");
        assert_eq!(file_name("http://h:8080/dir/?x=1"), "dir");
        assert_eq!(file_name("http://h/f.txt#frag"), "f.txt");
        assert_eq!(file_name("http://h"), "download");
        assert_eq!(file_name("http://h/"), "download");
    }

    #[test]
    fn shared_staged_files_become_hard_links_to_the_first_in_layer_order() {
        let staged = PathBuf::from("/stage/1");
        let file = |path: &str, abs: &Path| Planned {
            path: path.into(),
            content: Content::File {
                abs: abs.to_path_buf(),
                size: 1,
            },
            mode: 0o644,
            uid: 0,
            gid: 0,
        };
        let out = relink(
            vec![
                file("a/link", &staged),
                file("z/file", &staged),
                file("ctx", Path::new("/context/ctx")),
                file("ctx2", Path::new("/context/ctx")),
            ],
            Path::new("/stage"),
        );
        assert!(matches!(out[0].content, Content::File { .. }));
        assert_eq!(
            out[1].content,
            Content::Special(LayerKind::Hardlink {
                target: "a/link".into()
            })
        );
        // Context files copied twice stay two files.
        assert!(matches!(out[3].content, Content::File { .. }));
    }

    #[test]
    fn sources_are_classified() {
        assert!(is_url("https://example.com/x"));
        assert!(!is_url("./x"));
        assert!(is_git("https://github.com/moby/moby.git"));
        assert!(is_git("git@github.com:moby/moby.git"));
        assert!(!is_git("https://example.com/x.tar"));
    }
}
