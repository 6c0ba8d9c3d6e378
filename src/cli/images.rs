//! `imgb images` and `imgb inspect`: what the store (or an OCI layout)
//! holds, as a table or as JSON shaped like `docker image inspect`.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::{SystemTime, UNIX_EPOCH};

use anyhow::{anyhow, bail, Context};
use serde_json::{json, Value};

use super::args::{ImagesArgs, InspectArgs};
use super::store::human_size;
use super::{template, Failure};
use crate::digest::Sha256Digest;
use crate::image::{Descriptor, ImageConfig, Manifest};
use crate::store::ContentStore;

/// `println!` that stops quietly when stdout is closed (`imgb images | head`)
/// instead of panicking on the broken pipe.
macro_rules! out {
    ($($arg:tt)*) => {{
        use std::io::Write as _;
        let _ = writeln!(std::io::stdout().lock(), $($arg)*);
    }};
}

/// One image, read from its manifest (an index is resolved to the
/// linux/amd64 manifest, else its first one present).
pub struct LoadedImage {
    pub descriptor: Descriptor,
    pub manifest: Manifest,
    pub manifest_json: Value,
    pub config: ImageConfig,
    pub config_json: Value,
}

impl LoadedImage {
    /// Layers plus config, compressed: what the image occupies in the store.
    pub fn size(&self) -> u64 {
        self.manifest.config.size + self.manifest.layers.iter().map(|l| l.size).sum::<u64>()
    }
}

/// Where blobs come from: the store or a layout's `blobs/sha256/`.
enum Blobs<'a> {
    Store(&'a ContentStore),
    Layout(&'a Path),
}

impl Blobs<'_> {
    fn read(&self, digest: &Sha256Digest) -> anyhow::Result<Vec<u8>> {
        match self {
            Blobs::Store(store) => store
                .read_blob(digest)
                .with_context(|| format!("blob {digest} is missing from the store")),
            Blobs::Layout(dir) => {
                let path = dir.join("blobs/sha256").join(digest.hex());
                let bytes =
                    std::fs::read(&path).with_context(|| format!("reading {}", path.display()))?;
                // Verify: a layout is input we did not write.
                if Sha256Digest::of(&bytes) != *digest {
                    bail!("{} does not match its digest", path.display());
                }
                Ok(bytes)
            }
        }
    }
}

fn load(blobs: &Blobs<'_>, digest: &Sha256Digest) -> anyhow::Result<LoadedImage> {
    let bytes = blobs.read(digest)?;
    let value: Value = serde_json::from_slice(&bytes).context("the manifest is not JSON")?;
    if let Some(manifests) = value.get("manifests") {
        let list: Vec<Descriptor> =
            serde_json::from_value(manifests.clone()).context("invalid image index")?;
        let pick = |d: &&Descriptor| {
            d.platform.as_ref().is_some_and(|p| {
                p.architecture().to_string() == "amd64" && p.os().to_string() == "linux"
            })
        };
        let chosen = list
            .iter()
            .find(pick)
            .or_else(|| list.first())
            .ok_or_else(|| anyhow!("image index {digest} lists no manifest"))?;
        return load(blobs, &chosen.digest);
    }
    let manifest: Manifest = serde_json::from_value(value.clone()).context("invalid manifest")?;
    let config_bytes = blobs.read(&manifest.config.digest)?;
    let config_json: Value = serde_json::from_slice(&config_bytes).context("invalid config")?;
    let config: ImageConfig =
        serde_json::from_value(config_json.clone()).context("invalid config")?;
    let media_type = manifest.media_type.clone().unwrap_or_else(|| {
        crate::image::ImageFormat::Oci
            .manifest_media_type()
            .to_string()
    });
    Ok(LoadedImage {
        descriptor: Descriptor::new(&media_type, *digest, bytes.len() as u64),
        manifest,
        manifest_json: value,
        config,
        config_json,
    })
}

/// When the image `digest` names was created (seconds since the epoch).
pub fn created_of(store: &ContentStore, digest: &Sha256Digest) -> Option<i64> {
    let image = load(&Blobs::Store(store), digest).ok()?;
    parse_rfc3339(image.config.created.as_deref()?)
}

/// Docker shows Docker Hub's official images by their short name.
fn familiar(name: &str) -> (String, String) {
    let (repo, tag) = match name.rsplit_once(':') {
        Some((r, t)) if !t.contains('/') => (r, t),
        _ => (name, "<none>"),
    };
    let repo = repo
        .strip_prefix("docker.io/library/")
        .or_else(|| repo.strip_prefix("docker.io/"))
        .unwrap_or(repo);
    (repo.to_string(), tag.to_string())
}

pub fn images(state: &Path, args: &ImagesArgs) -> Result<(), Failure> {
    let store = ContentStore::open(state)
        .with_context(|| format!("cannot open the store at {}", state.display()))
        .map_err(Failure::User)?;
    let refs = store
        .refs()
        .context("cannot read the store's names")
        .map_err(Failure::User)?;
    let json_out = match args.format.as_deref() {
        None | Some("table") => false,
        Some("json") => true,
        Some(other) => {
            return Err(Failure::Usage(anyhow!(
                "unknown --format {other:?}: use table or json"
            )))
        }
    };
    if !args.quiet && !json_out {
        let digest_col = if args.digests { "DIGEST  " } else { "" };
        out!(
            "{:<40} {:<16} {digest_col}{:<14} {:<16} {:>10}",
            "REPOSITORY",
            "TAG",
            "IMAGE ID",
            "CREATED",
            "SIZE"
        );
    }
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs() as i64)
        .unwrap_or(0);
    for (name, digest) in &refs {
        let image = match load(&Blobs::Store(&store), digest) {
            Ok(image) => image,
            Err(e) => {
                eprintln!("warning: {name}: {e:#}");
                continue;
            }
        };
        let id = image.manifest.config.digest;
        let (repo, tag) = familiar(name);
        let created = image.config.created.as_deref();
        let age = created
            .and_then(parse_rfc3339)
            .map(|t| human_age(now - t))
            .unwrap_or_else(|| "N/A".to_string());
        if args.quiet {
            out!("{}", &id.hex()[..12]);
        } else if json_out {
            out!(
                "{}",
                json!({
                    "Repository": repo, "Tag": tag, "ID": id.to_string(),
                    "Digest": digest.to_string(), "CreatedAt": created,
                    "Size": image.size(),
                })
            );
        } else {
            let digest_col = if args.digests {
                format!("{digest}  ")
            } else {
                String::new()
            };
            out!(
                "{repo:<40} {tag:<16} {digest_col}{:<14} {age:<16} {:>10}",
                &id.hex()[..12],
                human_size(image.size())
            );
        }
    }
    Ok(())
}

/// `oci:DIR[:TAG]` or a name (or image id) in the store.
fn resolve(state: &Path, reference: &str) -> anyhow::Result<(LoadedImage, Vec<String>)> {
    if let Some(rest) = reference.strip_prefix("oci:") {
        let (dir, tag) = match rest.rsplit_once(':') {
            Some((d, t)) if !t.contains('/') && !d.is_empty() => (PathBuf::from(d), Some(t)),
            _ => (PathBuf::from(rest), None),
        };
        let digest = super::registry::layout_manifest(&dir, tag)?;
        let image = load(&Blobs::Layout(&dir), &digest)?;
        return Ok((image, tag.map(|t| vec![t.to_string()]).unwrap_or_default()));
    }
    let store = ContentStore::open(state)
        .with_context(|| format!("cannot open the store at {}", state.display()))?;
    let refs: BTreeMap<String, Sha256Digest> = store.refs()?;
    let name = crate::registry::Reference::parse(reference)
        .map(|r| r.to_string())
        .ok();
    let digest = match name.as_ref().and_then(|n| refs.get(n)) {
        Some(d) => *d,
        None => {
            // Docker also accepts an image id (or a unique prefix of one).
            let hex = reference.strip_prefix("sha256:").unwrap_or(reference);
            let found: Vec<Sha256Digest> =
                if hex.len() >= 4 && hex.chars().all(|c| c.is_ascii_hexdigit()) {
                    let mut found: Vec<Sha256Digest> = refs
                        .values()
                        .filter(|d| {
                            load(&Blobs::Store(&store), d)
                                .map(|i| i.manifest.config.digest.hex().starts_with(hex))
                                .unwrap_or(false)
                        })
                        .copied()
                        .collect();
                    found.dedup();
                    found
                } else {
                    Vec::new()
                };
            match found.as_slice() {
                [one] => *one,
                [] => bail!(
                    "no such image: {reference}\nhint: `imgb images` lists the store; \
                     use oci:DIR[:TAG] for an OCI layout"
                ),
                _ => bail!("{reference} is ambiguous: several images have that id prefix"),
            }
        }
    };
    let image = load(&Blobs::Store(&store), &digest)?;
    let tags = refs
        .iter()
        .filter(|(_, d)| **d == digest)
        .map(|(n, _)| n.clone())
        .collect();
    Ok((image, tags))
}

/// The JSON `imgb inspect` prints: `docker image inspect`'s main keys, plus
/// the manifest, its descriptor and the whole config as stored.
fn inspect_json(image: &LoadedImage, tags: Vec<String>) -> Value {
    let config = &image.config_json;
    json!({
        "Id": image.manifest.config.digest.to_string(),
        "RepoTags": tags,
        "Created": config.get("created"),
        "Author": config.get("author"),
        "Architecture": config.get("architecture"),
        "Os": config.get("os"),
        "Variant": config.get("variant"),
        "Config": config.get("config").cloned().unwrap_or(json!({})),
        "RootFS": {
            "Type": "layers",
            "Layers": config.get("rootfs").and_then(|r| r.get("diff_ids")),
        },
        "History": config.get("history").cloned().unwrap_or(json!([])),
        "Size": image.size(),
        "Descriptor": serde_json::to_value(&image.descriptor).unwrap_or(Value::Null),
        "Manifest": image.manifest_json,
        "ImageConfig": config,
    })
}

pub fn inspect(state: &Path, args: &InspectArgs) -> Result<(), Failure> {
    let (image, tags) = resolve(state, &args.reference).map_err(Failure::User)?;
    let value = inspect_json(&image, tags);
    match args.format.as_deref() {
        None | Some("json") => {
            let text = serde_json::to_string_pretty(&json!([value]))
                .map_err(|e| Failure::Usage(anyhow!("{e}")))?;
            out!("{text}");
        }
        Some(format) => {
            let text = template::render(format, &value).map_err(|e| Failure::Usage(e.into()))?;
            out!("{text}");
        }
    }
    Ok(())
}

/// Seconds since the epoch of an RFC 3339 time (`2024-01-02T03:04:05.6Z`,
/// offsets allowed).
fn parse_rfc3339(s: &str) -> Option<i64> {
    let num = |r: std::ops::Range<usize>| s.get(r)?.parse::<i64>().ok();
    let (y, mo, d) = (num(0..4)?, num(5..7)?, num(8..10)?);
    let (h, mi, sec) = (num(11..13)?, num(14..16)?, num(17..19)?);
    let tail = s.get(19..)?;
    let tail = tail.trim_start_matches(|c: char| c == '.' || c.is_ascii_digit());
    let offset = match tail {
        "Z" | "z" | "" => 0,
        t if t.len() == 6 => {
            let sign = if t.starts_with('-') { -1 } else { 1 };
            sign * (t.get(1..3)?.parse::<i64>().ok()? * 3600
                + t.get(4..6)?.parse::<i64>().ok()? * 60)
        }
        _ => return None,
    };
    // Days from civil (Howard Hinnant's algorithm).
    let y = if mo <= 2 { y - 1 } else { y };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let doy = (153 * (mo + if mo > 2 { -3 } else { 9 }) + 2) / 5 + d - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    let days = era * 146_097 + doe - 719_468;
    Some(days * 86_400 + h * 3600 + mi * 60 + sec - offset)
}

/// Docker's `HumanDuration` + " ago".
fn human_age(seconds: i64) -> String {
    let s = seconds.max(0);
    let text = match s {
        0 => "Less than a second".to_string(),
        1 => "1 second".to_string(),
        2..=59 => format!("{s} seconds"),
        60..=119 => "About a minute".to_string(),
        120..=3599 => format!("{} minutes", s / 60),
        3600..=7199 => "About an hour".to_string(),
        7200..=172_799 => format!("{} hours", s / 3600),
        172_800..=1_209_599 => format!("{} days", s / 86_400),
        1_209_600..=5_183_999 => format!("{} weeks", s / 604_800),
        5_184_000..=63_071_999 => format!("{} months", s / 2_592_000),
        _ => format!("{} years", s / 31_536_000),
    };
    format!("{text} ago")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rfc3339_times() {
        assert_eq!(parse_rfc3339("1970-01-01T00:00:00Z"), Some(0));
        assert_eq!(
            parse_rfc3339("2024-02-29T12:00:00.123456789Z"),
            Some(1_709_208_000)
        );
        assert_eq!(
            parse_rfc3339("2024-02-29T14:00:00+02:00"),
            Some(1_709_208_000)
        );
        assert_eq!(parse_rfc3339("yesterday"), None);
    }

    #[test]
    fn ages_and_names_read_like_docker() {
        assert_eq!(human_age(5), "5 seconds ago");
        assert_eq!(human_age(3 * 3600), "3 hours ago");
        assert_eq!(human_age(3 * 86_400), "3 days ago");
        assert_eq!(
            familiar("docker.io/library/app:1"),
            ("app".to_string(), "1".to_string())
        );
        assert_eq!(
            familiar("127.0.0.1:5000/x/y:2"),
            ("127.0.0.1:5000/x/y".to_string(), "2".to_string())
        );
    }
}
