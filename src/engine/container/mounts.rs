//! The mounts of one RUN: the runtime's own mount points (stubs), private
//! copies of `/etc/hosts` and `/etc/resolv.conf`, and `RUN --mount` (cache,
//! bind, tmpfs, secret) plus heredoc scripts at `/dev/pipes`.

use std::collections::BTreeMap;
use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};

use crate::digest::Sha256Digest;
use crate::plan::{MountType, RunStep};

use super::super::fsops::{copy_tree, io};
use super::super::snapshot::Stub;
use super::super::EngineError;
use super::cache_mounts::{self, CacheDir, Seed};
use super::executor::MountSpec;

/// The default PATH when the image sets none (as Docker's).
const DEFAULT_PATH: &str = "PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin";

/// A secret's value; never printed.
#[derive(Clone, Default)]
pub struct Secret(pub Vec<u8>);

impl std::fmt::Debug for Secret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Secret(..)")
    }
}

/// What the mounts of one RUN are made from.
pub struct MountInputs<'a> {
    /// `--secret`s by id.
    pub secrets: &'a BTreeMap<String, Secret>,
    /// Where cache mounts live (`IMGB_HOME/cache-mounts`).
    pub cache_root: &'a Path,
    /// For each mount of the step: the root its `source` is taken from
    /// (context, stage or image rootfs), where it has one.
    pub sources: Vec<Option<PathBuf>>,
    /// For each mount: the identity of that source's content (a stage's
    /// cache key, an image's manifest digest, the selected context files'
    /// checksum), where it has one.
    pub source_keys: Vec<Option<Sha256Digest>>,
}

/// What the container gets besides its rootfs.
pub struct Prepared {
    /// Mount points to keep out of the layer.
    pub stubs: Vec<Stub>,
    pub mounts: Vec<MountSpec>,
    /// The process environment (with secrets exposed as variables).
    pub env: Vec<String>,
    /// Cache directories in use: `locked` and `private` ones stay locked
    /// until this is dropped, after the run.
    pub caches: Vec<CacheDir>,
}

/// Prepares the mounts of `run`; private files go into `files` (0700).
pub fn prepare(cx: &MountInputs<'_>, run: &RunStep, files: &Path) -> Result<Prepared, EngineError> {
    let mut stubs = vec![
        Stub {
            path: "proc".into(),
            dir: true,
        },
        Stub {
            path: "dev".into(),
            dir: true,
        },
        Stub {
            path: "sys".into(),
            dir: true,
        },
        Stub {
            path: "etc/resolv.conf".into(),
            dir: false,
        },
        Stub {
            path: "etc/hosts".into(),
            dir: false,
        },
    ];
    let mut mounts = Vec::new();
    let mut caches = Vec::new();
    let mut env: Vec<String> = run.env.clone();
    if !env.iter().any(|e| e.starts_with("PATH=")) {
        env.push(DEFAULT_PATH.to_string());
    }
    // Private, writable copies of the host's name resolution files.
    for name in ["resolv.conf", "hosts"] {
        let dest = files.join(name);
        let host = Path::new("/etc").join(name);
        let bytes = fs::read(&host).unwrap_or_else(|_| match name {
            "hosts" => b"127.0.0.1\tlocalhost\n::1\tlocalhost\n".to_vec(),
            _ => Vec::new(),
        });
        fs::write(&dest, bytes).map_err(io(&dest))?;
        mounts.push(MountSpec::bind(&dest, &format!("/etc/{name}"), false));
    }
    for (i, m) in run.mounts.iter().enumerate() {
        let mount = &m.mount;
        let target = mount.target.clone().unwrap_or_default();
        let rel = target.trim_start_matches('/').to_string();
        match mount.kind {
            MountType::Cache => {
                let id = mount.id.clone().unwrap_or_else(|| target.clone());
                // A cache seeded `from=` a stage, image or the context is
                // its own cache per source (BuildKit keys it by the source
                // too): the same id with another source starts afresh.
                let from = match cx.sources.get(i).cloned().flatten() {
                    Some(root) => Some(inside(&root, mount.source.as_deref().unwrap_or("/"))?),
                    None => None,
                };
                let mut name = safe_name(&id);
                if let Some(Some(key)) = cx.source_keys.get(i) {
                    name = format!("{name}-from-{}", &key.hex()[..16]);
                }
                let seed = Seed {
                    from: from.as_deref(),
                    mode: mount.mode.unwrap_or(0o755),
                    uid: mount.uid.unwrap_or(0),
                    gid: mount.gid.unwrap_or(0),
                };
                let dir = cache_mounts::acquire(cx.cache_root, &name, mount.sharing, seed)?;
                stubs.push(Stub {
                    path: rel,
                    dir: true,
                });
                mounts.push(MountSpec::bind(&dir.path, &target, false));
                caches.push(dir);
            }
            MountType::Tmpfs => {
                let mut options = vec!["nosuid".to_string(), "nodev".to_string()];
                if let Some(size) = mount.size {
                    options.push(format!("size={size}"));
                }
                stubs.push(Stub {
                    path: rel,
                    dir: true,
                });
                mounts.push(MountSpec {
                    destination: target,
                    kind: "tmpfs".into(),
                    source: PathBuf::from("tmpfs"),
                    options,
                });
            }
            MountType::Bind => {
                let root =
                    cx.sources
                        .get(i)
                        .cloned()
                        .flatten()
                        .ok_or_else(|| EngineError::Mount {
                            target: target.clone(),
                            reason: "the bind mount has no source".into(),
                        })?;
                let src = inside(&root, mount.source.as_deref().unwrap_or("/"))?;
                let is_dir = src.is_dir();
                // Read-write bind mounts get a throw-away copy: changes are
                // discarded, as in BuildKit.
                let src = if mount.readonly {
                    src
                } else {
                    let copy = files.join(format!("bind-{i}"));
                    copy_tree(&src, &copy)?;
                    copy
                };
                stubs.push(Stub {
                    path: rel,
                    dir: is_dir,
                });
                mounts.push(MountSpec::bind(&src, &target, mount.readonly));
            }
            MountType::Secret => {
                let id = mount.id.clone().unwrap_or_else(|| {
                    Path::new(&target)
                        .file_name()
                        .map(|n| n.to_string_lossy().into_owned())
                        .unwrap_or_default()
                });
                let Some(secret) = cx.secrets.get(&id) else {
                    if mount.required {
                        return Err(EngineError::SecretMissing { id });
                    }
                    continue;
                };
                if let Some(var) = &mount.env {
                    env.push(format!("{var}={}", String::from_utf8_lossy(&secret.0)));
                    if mount.target.is_none() {
                        continue;
                    }
                }
                let target = if target.is_empty() {
                    format!("/run/secrets/{id}")
                } else {
                    target
                };
                let file = files.join(format!("secret-{i}"));
                fs::write(&file, &secret.0).map_err(io(&file))?;
                fs::set_permissions(
                    &file,
                    fs::Permissions::from_mode(mount.mode.unwrap_or(0o400)),
                )
                .map_err(io(&file))?;
                std::os::unix::fs::chown(&file, mount.uid.or(Some(0)), mount.gid.or(Some(0)))
                    .map_err(io(&file))?;
                stubs.push(Stub {
                    path: target.trim_start_matches('/').to_string(),
                    dir: false,
                });
                mounts.push(MountSpec::bind(&file, &target, true));
            }
            MountType::Ssh => {
                return Err(EngineError::Unsupported {
                    what: "RUN --mount=type=ssh".into(),
                    hint: "pass the key as a secret (--secret) instead".into(),
                })
            }
        }
    }
    if !run.heredocs.is_empty() {
        let pipes = files.join("pipes");
        fs::create_dir_all(&pipes).map_err(io(&pipes))?;
        for h in &run.heredocs {
            let file = pipes.join(safe_name(&h.name));
            fs::write(&file, h.content.as_bytes()).map_err(io(&file))?;
            fs::set_permissions(&file, fs::Permissions::from_mode(0o755)).map_err(io(&file))?;
        }
        // /dev is a tmpfs: the mount point needs no stub.
        mounts.push(MountSpec::bind(&pipes, "/dev/pipes", true));
    }

    Ok(Prepared {
        stubs,
        mounts,
        env,
        caches,
    })
}

/// A name safe as one path component: the id itself when it is plain,
/// else its sha256.
pub(super) fn safe_name(id: &str) -> String {
    let plain = !id.is_empty()
        && id.len() <= 100
        && id
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"._-".contains(&b))
        && !id.starts_with('.');
    if plain {
        id.to_string()
    } else {
        Sha256Digest::of(id.as_bytes()).hex()
    }
}

/// `source` under `root`, without leaving it (symlinks resolved).
pub(super) fn inside(root: &Path, source: &str) -> Result<PathBuf, EngineError> {
    let root = root.canonicalize().map_err(io(root))?;
    let path = root.join(source.trim_start_matches('/'));
    let real = path.canonicalize().map_err(io(&path))?;
    if !real.starts_with(&root) {
        return Err(EngineError::Mount {
            target: source.to_string(),
            reason: "the source leaves its root".into(),
        });
    }
    Ok(real)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn safe_names_stay_one_component() {
        assert_eq!(safe_name("go-build"), "go-build");
        assert_eq!(safe_name("../x").len(), 64);
        assert_eq!(safe_name("/root/.cache").len(), 64);
        assert_eq!(safe_name(".hidden").len(), 64);
    }
}
