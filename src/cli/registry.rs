//! `imgb pull`, `imgb push`, `imgb login`, `imgb logout`: the registry
//! client's options from flags and the environment (`DOCKER_CONFIG`,
//! `IMGB_CERTS_DIR`), the tokio runtime, and what gets printed.
//!
//! stdout carries only the resulting digest; messages go to stderr.
//! Nothing printed here contains a password or a token.

use std::io::Read;
use std::path::{Path, PathBuf};

use anyhow::{anyhow, bail, Context as _};

use crate::digest::Sha256Digest;
use crate::registry::{
    self, BlobSource, ClientOptions, Credentials, DockerConfig, Event, Limits, Platform, Progress,
    Reference, RegistryClient,
};
use crate::store::ContentStore;

use super::args::{LoginArgs, LogoutArgs, PullArgs, PushArgs, RegistryFlags};
use super::Failure;

/// `$DOCKER_CONFIG`, else `~/.docker`.
pub fn docker_config_dir(get_env: impl Fn(&str) -> Option<String>) -> Option<PathBuf> {
    let non_empty = |k: &str| get_env(k).filter(|v| !v.is_empty());
    non_empty("DOCKER_CONFIG")
        .map(PathBuf::from)
        .or_else(|| non_empty("HOME").map(|h| PathBuf::from(h).join(".docker")))
}

/// `$IMGB_CERTS_DIR` (for tests and unprivileged users), else Docker's
/// `/etc/docker/certs.d`.
pub fn certs_dir(get_env: impl Fn(&str) -> Option<String>) -> PathBuf {
    get_env("IMGB_CERTS_DIR")
        .filter(|v| !v.is_empty())
        .map_or_else(|| PathBuf::from("/etc/docker/certs.d"), PathBuf::from)
}

/// `$IMGB_REGISTRY_CHUNK_SIZE` (bytes): blobs up to it are uploaded in one
/// request, larger ones in chunks of it. Default 8 MiB; tests lower it to
/// exercise chunked and resumed uploads with small images.
pub fn chunk_size(get_env: impl Fn(&str) -> Option<String>) -> usize {
    get_env("IMGB_REGISTRY_CHUNK_SIZE")
        .and_then(|v| v.trim().parse::<usize>().ok())
        .filter(|n| *n >= 1024)
        .unwrap_or(ClientOptions::default().chunk_size)
}

/// `$IMGB_REGISTRY_TIMEOUT` (seconds an answer may take to start, and a
/// manifest, token or error body to arrive), `$IMGB_REGISTRY_SPEED_LIMIT`
/// (bytes per second) and `$IMGB_REGISTRY_SPEED_TIME` (seconds): a transfer
/// slower than the limit for that long is abandoned, as curl's
/// `--speed-limit`/`--speed-time`. Values that do not parse are ignored.
pub fn limits(get_env: impl Fn(&str) -> Option<String>) -> Limits {
    let default = Limits::default();
    let secs = |k: &str| {
        get_env(k)
            .and_then(|v| v.trim().parse::<f64>().ok())
            .filter(|s| s.is_finite() && *s > 0.0 && *s < 1e7)
            .map(std::time::Duration::from_secs_f64)
    };
    Limits {
        timeout: secs("IMGB_REGISTRY_TIMEOUT").unwrap_or(default.timeout),
        speed_limit: get_env("IMGB_REGISTRY_SPEED_LIMIT")
            .and_then(|v| v.trim().parse::<u64>().ok())
            .unwrap_or(default.speed_limit),
        speed_time: secs("IMGB_REGISTRY_SPEED_TIME").unwrap_or(default.speed_time),
    }
}

/// The client options for a state directory and the command's flags.
pub fn client_options(state: &Path, flags: &RegistryFlags) -> ClientOptions {
    let env = |k: &str| std::env::var(k).ok();
    ClientOptions {
        certs_dir: certs_dir(env),
        insecure_registries: flags.insecure_registries.clone(),
        docker_config: docker_config_dir(env),
        blob_locations: Some(state.join("registry/blob-locations.json")),
        chunk_size: chunk_size(env),
        limits: limits(env),
        progress: Some(Progress::new(show_event)),
        ..ClientOptions::default()
    }
}

/// One stderr line per transfer event.
fn show_event(event: &Event) {
    match event {
        Event::Fetched { digest, size } => eprintln!("{digest}: fetched ({size} bytes)"),
        Event::AlreadyPresent { digest } => eprintln!("{digest}: already present"),
        Event::Uploaded { digest, size } => eprintln!("{digest}: uploaded ({size} bytes)"),
        Event::Mounted { digest, from } => eprintln!("{digest}: mounted from {from}"),
        Event::ManifestPut { target } => eprintln!("{target}: manifest pushed"),
        Event::Retrying {
            registry,
            what,
            attempt,
            reason,
            delay,
        } => eprintln!(
            "{registry}: {what}: {reason}; retrying in {:.1}s (attempt {})",
            delay.as_secs_f64(),
            attempt + 1
        ),
    }
}

fn runtime() -> Result<tokio::runtime::Runtime, Failure> {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .map_err(|e| Failure::Usage(anyhow!("cannot start the async runtime: {e}")))
}

fn user(e: impl Into<anyhow::Error>) -> Failure {
    Failure::User(e.into())
}

fn open_store(state: &Path) -> Result<ContentStore, Failure> {
    ContentStore::open(state)
        .with_context(|| format!("cannot open the content store in {}", state.display()))
        .map_err(Failure::User)
}

pub fn pull(state: &Path, args: PullArgs) -> Result<(), Failure> {
    let reference = Reference::parse(&args.reference).map_err(user)?;
    let platform = match &args.platform {
        Some(p) => Platform::parse(p).map_err(|e| Failure::Usage(e.into()))?,
        None => Platform::host(),
    };
    let store = open_store(state)?;
    let client = RegistryClient::new(client_options(state, &args.registry));
    let (image, stats) = runtime()?
        .block_on(registry::pull(&client, &store, &reference, &platform))
        .map_err(user)?;
    eprintln!(
        "pulled {} ({platform}): {} blob(s) fetched ({} bytes), {} already present",
        image.reference, stats.fetched, stats.bytes_fetched, stats.present
    );
    // Like `docker pull`, make the image ready to run: its layers are
    // unpacked once into the snapshot area, where RUN and the engine's
    // filesystem view find them (derived data: `imgb prune` removes it).
    if !args.no_unpack {
        use crate::engine::snapshots::{Lower, Snapshots};
        let lower = Lower::new(&image.config.rootfs.diff_ids, &image.manifest.layers);
        Snapshots::new(state)
            .layers(&store, &lower)
            .map_err(|e| Failure::User(anyhow::anyhow!("unpacking {}: {e}", image.reference)))?;
    }
    if image.root_digest != image.manifest_digest {
        eprintln!("index digest: {}", image.root_digest);
    }
    println!("{}", image.manifest_digest);
    Ok(())
}

/// What `imgb push` was asked to push.
enum PushSource {
    Store(Reference),
    Layout { dir: PathBuf, tag: Option<String> },
    Archive { file: PathBuf, tag: Option<String> },
}

/// `oci:DIR[:TAG]`, `oci-archive:FILE[:TAG]`, else an image in the store.
fn parse_source(source: &str) -> Result<PushSource, Failure> {
    let split_tag = |rest: &str| -> (PathBuf, Option<String>) {
        match rest.rsplit_once(':') {
            Some((path, tag)) if !tag.contains('/') && !path.is_empty() => {
                (PathBuf::from(path), Some(tag.to_string()))
            }
            _ => (PathBuf::from(rest), None),
        }
    };
    if let Some(rest) = source.strip_prefix("oci:") {
        let (dir, tag) = split_tag(rest);
        return Ok(PushSource::Layout { dir, tag });
    }
    if let Some(rest) = source.strip_prefix("oci-archive:") {
        let (file, tag) = split_tag(rest);
        return Ok(PushSource::Archive { file, tag });
    }
    Reference::parse(source)
        .map(PushSource::Store)
        .map_err(user)
}

/// The manifest `tag` names in an OCI layout's index.json (the only one
/// when no tag is given).
pub(super) fn layout_manifest(dir: &Path, tag: Option<&str>) -> anyhow::Result<Sha256Digest> {
    let path = dir.join("index.json");
    let text = std::fs::read_to_string(&path)
        .with_context(|| format!("cannot read {}: not an OCI layout?", path.display()))?;
    let index: crate::image::Index = serde_json::from_str(&text)
        .with_context(|| format!("{}: invalid index", path.display()))?;
    let name = crate::image::ANNOTATION_REF_NAME;
    let found: Vec<&crate::image::Descriptor> = index
        .manifests
        .iter()
        .filter(|d| tag.is_none() || d.annotation(name) == tag)
        .collect();
    match (found.as_slice(), tag) {
        ([one], _) => Ok(one.digest),
        ([], Some(t)) => bail!("{}: no image tagged {t:?}", path.display()),
        ([], None) => bail!("{}: the layout holds no image", path.display()),
        (_, _) => bail!(
            "{}: the layout holds several images; name one with oci:DIR:TAG",
            path.display()
        ),
    }
}

/// Unpacks an OCI archive into `dir` (the tar crate refuses entries that
/// would land outside it).
fn unpack_archive(file: &Path, dir: &Path) -> anyhow::Result<()> {
    let f = std::fs::File::open(file).with_context(|| format!("cannot open {}", file.display()))?;
    let mut archive = tar::Archive::new(f);
    std::fs::create_dir_all(dir)?;
    for entry in archive
        .entries()
        .with_context(|| format!("{}: not a tar archive", file.display()))?
    {
        let mut entry = entry.with_context(|| format!("{}: corrupt archive", file.display()))?;
        entry
            .unpack_in(dir)
            .with_context(|| format!("{}: cannot unpack an entry", file.display()))?;
    }
    Ok(())
}

pub fn push(state: &Path, args: PushArgs) -> Result<(), Failure> {
    let source = parse_source(&args.source)?;
    let dest = match (&args.destination, &source) {
        (Some(d), _) => Reference::parse(d).map_err(user)?,
        (None, PushSource::Store(r)) => r.clone(),
        (None, _) => {
            return Err(Failure::Usage(anyhow!(
                "push from {} needs a destination: imgb push SOURCE REGISTRY/REPO:TAG",
                args.source
            )))
        }
    };
    let client = RegistryClient::new(client_options(state, &args.registry));
    let scratch = state.join(format!("registry/tmp-{}", std::process::id()));
    let result = (|| {
        let (blobs, root) = match &source {
            PushSource::Store(name) => {
                let store = open_store(state)?;
                let digest = store
                    .get_ref(&name.to_string())
                    .map_err(user)?
                    .ok_or_else(|| user(anyhow!("no image named {name} in the store")))?;
                (BlobSource::Store(store), digest)
            }
            PushSource::Layout { dir, tag } => {
                let digest = layout_manifest(dir, tag.as_deref()).map_err(Failure::User)?;
                (BlobSource::Layout(dir.clone()), digest)
            }
            PushSource::Archive { file, tag } => {
                unpack_archive(file, &scratch).map_err(Failure::User)?;
                let digest = layout_manifest(&scratch, tag.as_deref()).map_err(Failure::User)?;
                (BlobSource::Layout(scratch.clone()), digest)
            }
        };
        runtime()?
            .block_on(registry::push(&client, &blobs, &root, &dest))
            .map_err(user)
    })();
    if scratch.exists() {
        let _ = std::fs::remove_dir_all(&scratch);
    }
    let stats = result?;
    let digest = stats.digest.unwrap_or_else(|| Sha256Digest::of(b""));
    eprintln!(
        "pushed {dest}: {} blob(s) uploaded, {} mounted, {} already there, {} manifest(s)",
        stats.uploaded, stats.mounted, stats.present, stats.manifests
    );
    println!("{digest}");
    Ok(())
}

pub fn login(state: &Path, args: LoginArgs) -> Result<(), Failure> {
    let username = args
        .username
        .clone()
        .ok_or_else(|| Failure::Usage(anyhow!("imgb login needs -u USER")))?;
    if !args.password_stdin {
        return Err(Failure::Usage(anyhow!(
            "imgb login reads the password from stdin only: use --password-stdin"
        )));
    }
    let mut password = String::new();
    std::io::stdin()
        .read_to_string(&mut password)
        .map_err(|e| Failure::Usage(anyhow!("cannot read the password from stdin: {e}")))?;
    // Like Docker: one trailing newline (from `echo`) is not part of it.
    let password = password
        .strip_suffix('\n')
        .map(|p| p.strip_suffix('\r').unwrap_or(p))
        .unwrap_or(&password)
        .to_string();
    if password.is_empty() {
        return Err(Failure::Usage(anyhow!("the password on stdin is empty")));
    }
    let registry_host = registry::normalize_registry_host(&args.registry);
    let credentials = Credentials::new(username, password);
    let client = RegistryClient::new(client_options(state, &args.flags));
    runtime()?
        .block_on(registry::login(
            &client,
            &registry_host,
            credentials.clone(),
        ))
        .map_err(user)?;
    let dir = docker_config_dir(|k| std::env::var(k).ok()).ok_or_else(|| {
        Failure::Usage(anyhow!(
            "cannot find the Docker config: set DOCKER_CONFIG or HOME"
        ))
    })?;
    let mut config = DockerConfig::load(&dir).map_err(user)?;
    config.store(&registry_host, &credentials).map_err(user)?;
    config.save().map_err(user)?;
    eprintln!(
        "Login Succeeded ({registry_host}; credentials in {})",
        config.path().display()
    );
    Ok(())
}

pub fn logout(args: LogoutArgs) -> Result<(), Failure> {
    let registry_host = registry::normalize_registry_host(&args.registry);
    let dir = docker_config_dir(|k| std::env::var(k).ok()).ok_or_else(|| {
        Failure::Usage(anyhow!(
            "cannot find the Docker config: set DOCKER_CONFIG or HOME"
        ))
    })?;
    let mut config = DockerConfig::load(&dir).map_err(user)?;
    if config.erase(&registry_host).map_err(user)? {
        config.save().map_err(user)?;
        eprintln!("Removed login credentials for {registry_host}");
    } else {
        eprintln!("Not logged in to {registry_host}");
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn environment_defaults() {
        let env = |pairs: &'static [(&'static str, &'static str)]| {
            move |k: &str| {
                pairs
                    .iter()
                    .find(|(n, _)| *n == k)
                    .map(|(_, v)| v.to_string())
            }
        };
        assert_eq!(
            docker_config_dir(env(&[("DOCKER_CONFIG", "/d"), ("HOME", "/h")])),
            Some(PathBuf::from("/d"))
        );
        assert_eq!(
            docker_config_dir(env(&[("HOME", "/h")])),
            Some(PathBuf::from("/h/.docker"))
        );
        assert_eq!(certs_dir(env(&[])), PathBuf::from("/etc/docker/certs.d"));
        assert_eq!(
            certs_dir(env(&[("IMGB_CERTS_DIR", "/c")])),
            PathBuf::from("/c")
        );
    }

    #[test]
    fn push_sources() {
        assert!(matches!(
            parse_source("oci:/tmp/lay:out:v1"),
            Ok(PushSource::Layout { dir, tag }) if dir == Path::new("/tmp/lay:out") && tag.as_deref() == Some("v1")
        ));
        assert!(matches!(
            parse_source("oci:./layout"),
            Ok(PushSource::Layout { dir, tag: None }) if dir == Path::new("./layout")
        ));
        assert!(matches!(
            parse_source("oci-archive:/x/a.tar:latest"),
            Ok(PushSource::Archive { tag: Some(t), .. }) if t == "latest"
        ));
        assert!(matches!(parse_source("busybox"), Ok(PushSource::Store(_))));
        assert!(parse_source("Not/Valid").is_err());
    }
}
