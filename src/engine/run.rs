//! RUN: what goes into its cache key, the user it runs as, its mounts
//! (cache, bind, tmpfs, secret, heredoc scripts), and one execution from a
//! stage's rootfs to the layer of its changes.
//!
//! Secrets never reach a layer, the config, the history or a cache key:
//! they are written to a private temp file, bind-mounted read-only, and their
//! mount point is a stub that stays out of the layer.

use std::collections::{BTreeMap, VecDeque};
use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};

use crate::digest::Sha256Digest;
use crate::layer::{Layer, LayerOptions};
use crate::plan::{NetworkMode, RunStep, SecurityMode};
use crate::store::ContentStore;

use super::executor::{Executor, RunRequest};
use super::mounts::{self, Prepared};
use super::snapshot::{ensure_dir, Snapshot, SnapshotterKind};
use super::snapshots::{Lookup, Lower, Snapshots};
use super::EngineError;

/// The default PATH when the image sets none (as Docker's).
/// How many output lines a failure shows.
const TAIL_LINES: usize = 20;

/// A secret's value; never printed.
#[derive(Clone, Default)]
pub struct Secret(pub Vec<u8>);

impl std::fmt::Debug for Secret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Secret(..)")
    }
}

/// The normalised RUN for its cache key: everything that changes what it
/// does, and no secret value (mounts are described by their options only).
pub fn cache_json(run: &RunStep, network: NetworkMode) -> serde_json::Value {
    let mounts: Vec<serde_json::Value> = run
        .mounts
        .iter()
        .map(|m| serde_json::to_value(m).unwrap_or_default())
        .collect();
    let heredocs: Vec<serde_json::Value> = run
        .heredocs
        .iter()
        .map(|h| serde_json::json!({"name": h.name, "content": h.content}))
        .collect();
    serde_json::json!({
        "run": {
            "argv": run.argv,
            "env": run.cache_env,
            "workdir": run.workdir,
            "user": run.user,
            "network": network,
            "security": run.security,
            "mounts": mounts,
            "heredocs": heredocs,
        }
    })
}

/// The RUN's network after `--network` on the command line.
pub fn effective_network(run: &RunStep, default: Option<NetworkMode>) -> NetworkMode {
    match (run.network, default) {
        (NetworkMode::Default, Some(d)) => d,
        (n, _) => n,
    }
}

/// A resolved USER.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct User {
    pub uid: u32,
    pub gid: u32,
    pub additional_gids: Vec<u32>,
}

/// Resolves USER (`name`, `uid`, `name:group`, `uid:gid`) through the
/// image's /etc/passwd and /etc/group, as Docker does: without a group, the
/// user's primary group from passwd (0 for an unknown numeric uid) plus the
/// groups listing the user as a member.
pub fn resolve_user(
    spec: &str,
    passwd: Option<&str>,
    group: Option<&str>,
) -> Result<User, EngineError> {
    if spec.is_empty() {
        return Ok(User {
            uid: 0,
            gid: 0,
            additional_gids: Vec::new(),
        });
    }
    let (user, grp) = match spec.split_once(':') {
        Some((u, g)) => (u, Some(g)),
        None => (spec, None),
    };
    let entry = passwd.and_then(|p| {
        p.lines().find_map(|line| {
            let f: Vec<&str> = line.split(':').collect();
            let matches = f.first() == Some(&user) || f.get(2) == Some(&user);
            if f.len() >= 4 && matches {
                Some((
                    f[0].to_string(),
                    f[2].parse::<u32>().ok()?,
                    f[3].parse::<u32>().ok()?,
                ))
            } else {
                None
            }
        })
    });
    let (name, uid, primary) = match (user.parse::<u32>(), entry) {
        (_, Some((name, uid, gid))) => (Some(name), uid, gid),
        (Ok(uid), None) => (None, uid, 0),
        (Err(_), None) => {
            return Err(EngineError::UnknownUser {
                user: user.to_string(),
            })
        }
    };
    let group_id = |g: &str| -> Result<u32, EngineError> {
        if let Ok(gid) = g.parse::<u32>() {
            return Ok(gid);
        }
        group
            .and_then(|f| {
                f.lines().find_map(|line| {
                    let f: Vec<&str> = line.split(':').collect();
                    (f.first() == Some(&g)).then(|| f.get(2)?.parse().ok())?
                })
            })
            .ok_or_else(|| EngineError::UnknownGroup {
                group: g.to_string(),
            })
    };
    match grp {
        Some(g) => Ok(User {
            uid,
            gid: group_id(g)?,
            additional_gids: Vec::new(),
        }),
        None => {
            let mut additional = Vec::new();
            if let (Some(name), Some(group)) = (&name, group) {
                for line in group.lines() {
                    let f: Vec<&str> = line.split(':').collect();
                    let member = f
                        .get(3)
                        .is_some_and(|m| m.split(',').any(|m| m.trim() == name));
                    if let Some(gid) = f.get(2).and_then(|g| g.parse::<u32>().ok()) {
                        if member && gid != primary && !additional.contains(&gid) {
                            additional.push(gid);
                        }
                    }
                }
            }
            Ok(User {
                uid,
                gid: primary,
                additional_gids: additional,
            })
        }
    }
}

/// The content of `/etc/passwd` and `/etc/group`, where they exist.
pub type AccountFiles = (Option<String>, Option<String>);

/// The stage's `/etc/passwd` and `/etc/group` for USER, read from its layer
/// dirs (see `Snapshots::read_file`); `None` when a symlink is involved or
/// the layers cannot be unpacked in overlay's format (a hard link to a lower
/// layer's file): the caller then reads them from the layers' tars.
pub fn account_files(home: &Path, store: &ContentStore, lower: &Lower) -> Option<AccountFiles> {
    let snapshots = Snapshots::new(home);
    let mut out = Vec::new();
    for path in ["etc/passwd", "etc/group"] {
        out.push(match snapshots.read_file(store, lower, path).ok()? {
            Lookup::Content(b) => Some(String::from_utf8_lossy(&b).into_owned()),
            Lookup::Missing => None,
            Lookup::Symlink => return None,
        });
    }
    let group = out.pop().flatten();
    let passwd = out.pop().flatten();
    Some((passwd, group))
}

/// What one RUN needs from the build.
pub struct RunContext<'a> {
    pub executor: &'a dyn Executor,
    pub snapshotter: SnapshotterKind,
    pub home: &'a Path,
    pub store: &'a ContentStore,
    pub layer: &'a LayerOptions,
    pub secrets: &'a BTreeMap<String, Secret>,
    pub network: NetworkMode,
    /// The stage's layers (unpacked on demand under `home`'s snapshots).
    pub lower: Lower,
    pub user: User,
    /// For each mount of the step: the root its `source` is taken from
    /// (context, stage or image rootfs), where it has one.
    pub sources: Vec<Option<PathBuf>>,
    /// For each mount: the identity of that source's content (a stage's
    /// cache key, an image's manifest digest, the selected context files'
    /// checksum), where it has one.
    pub source_keys: Vec<Option<Sha256Digest>>,
}

/// The command as shown in errors.
pub fn command_text(run: &RunStep) -> String {
    run.argv.join(" ")
}

fn io(path: &Path) -> impl FnOnce(std::io::Error) -> EngineError {
    let path = path.to_path_buf();
    move |source| EngineError::Io { path, source }
}

/// Removes the scratch dirs of imgb processes that died mid-RUN (killed
/// before their snapshot was dropped), unmounting their overlays first. A
/// directory that is still mounted is left alone.
fn remove_stale(runs: &Path) {
    let Ok(entries) = fs::read_dir(runs) else {
        return;
    };
    for entry in entries.flatten() {
        let name = entry.file_name().to_string_lossy().into_owned();
        let Some(pid) = name.split('-').next().and_then(|p| p.parse::<u32>().ok()) else {
            continue;
        };
        if pid == std::process::id() || Path::new(&format!("/proc/{pid}")).exists() {
            continue;
        }
        let merged = entry.path().join("snap/merged");
        let _ = rustix::mount::unmount(&merged, rustix::mount::UnmountFlags::empty());
        let mounts = fs::read_to_string("/proc/self/mountinfo").unwrap_or_default();
        if !mounts.contains(&entry.path().display().to_string()) {
            let _ = fs::remove_dir_all(entry.path());
        }
    }
}

/// Runs `run` on a snapshot of `cx.lower`; returns the layer of its changes.
/// `output` receives each output line.
pub fn execute(
    cx: &RunContext<'_>,
    run: &RunStep,
    output: &mut dyn FnMut(&str),
) -> Result<Layer, EngineError> {
    static NEXT: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);
    let n = NEXT.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    if n == 0 {
        remove_stale(&cx.home.join("runs"));
    }
    // Not the store's `tmp/`: the store empties that when it opens, and a
    // snapshot may hold a mount.
    let scratch = cx
        .home
        .join("runs")
        .join(format!("{}-{n}", std::process::id()));
    let result = execute_in(cx, run, &scratch, output);
    let _ = fs::remove_dir_all(&scratch);
    result
}

fn execute_in(
    cx: &RunContext<'_>,
    run: &RunStep,
    scratch: &Path,
    output: &mut dyn FnMut(&str),
) -> Result<Layer, EngineError> {
    let bundle = scratch.join("bundle");
    let files = scratch.join("files");
    for d in [&bundle, &files] {
        fs::create_dir_all(d).map_err(io(d))?;
    }
    fs::set_permissions(&files, fs::Permissions::from_mode(0o700)).map_err(io(&files))?;
    // `_caches` holds cache-mount locks until the run is over.
    let Prepared {
        stubs,
        mounts,
        env,
        caches: _caches,
    } = mounts::prepare(cx, run, &files)?;
    let snapshot = Snapshot::prepare(
        cx.snapshotter,
        &Snapshots::new(cx.home),
        cx.store,
        &cx.lower,
        &scratch.join("snap"),
        &stubs,
    )?;
    // Docker compatibility: a missing working directory is created.
    // Only through real directories: a symlink in the path is resolved by
    // the runtime inside the container, never here on the host.
    let mut cwd = snapshot.root().to_path_buf();
    for part in run
        .workdir
        .split('/')
        .filter(|p| !p.is_empty() && *p != ".")
    {
        if part == ".." {
            break;
        }
        cwd.push(part);
        match fs::symlink_metadata(&cwd) {
            Ok(m) if m.is_dir() => {}
            Ok(_) => break,
            Err(_) => {
                ensure_dir(&cwd)?;
            }
        }
    }
    let request = RunRequest {
        rootfs: snapshot.root(),
        bundle: &bundle,
        argv: &run.argv,
        env: &env,
        cwd: if run.workdir.is_empty() {
            "/"
        } else {
            &run.workdir
        },
        uid: cx.user.uid,
        gid: cx.user.gid,
        additional_gids: cx.user.additional_gids.clone(),
        mounts,
        isolated_network: cx.network == NetworkMode::None,
        insecure: run.security == SecurityMode::Insecure,
    };
    let mut tail: VecDeque<String> = VecDeque::new();
    let outcome = cx.executor.run(&request, &mut |line: &str| {
        if tail.len() == TAIL_LINES {
            tail.pop_front();
        }
        tail.push_back(line.to_string());
        output(line);
    })?;
    if outcome.exit_code != 0 {
        return Err(EngineError::RunFailed {
            command: command_text(run),
            exit_code: outcome.exit_code,
            output: tail.into_iter().collect(),
        });
    }
    snapshot.commit(cx.store, cx.layer)
}

#[cfg(test)]
mod tests {
    use super::*;

    const PASSWD: &str = "root:x:0:0:root:/root:/bin/sh\napp:x:1000:1001:app:/home/app:/bin/sh\n";
    const GROUP: &str = "root:x:0:\nstaff:x:50:app,other\napp:x:1001:\nwheel:x:10:root\n";

    fn u(uid: u32, gid: u32, extra: &[u32]) -> User {
        User {
            uid,
            gid,
            additional_gids: extra.to_vec(),
        }
    }

    #[test]
    fn users_resolve_through_passwd_and_group() {
        let r = |s| resolve_user(s, Some(PASSWD), Some(GROUP)).unwrap();
        assert_eq!(r(""), u(0, 0, &[]));
        assert_eq!(r("root"), u(0, 0, &[10]));
        assert_eq!(r("app"), u(1000, 1001, &[50]));
        assert_eq!(
            r("1000"),
            u(1000, 1001, &[50]),
            "a known uid gets its groups"
        );
        assert_eq!(r("4242"), u(4242, 0, &[]), "unknown uid: gid 0");
        assert_eq!(r("app:staff"), u(1000, 50, &[]));
        assert_eq!(r("app:7"), u(1000, 7, &[]));
        assert_eq!(r("5:6"), u(5, 6, &[]));
        assert!(matches!(
            resolve_user("ghost", Some(PASSWD), Some(GROUP)),
            Err(EngineError::UnknownUser { .. })
        ));
        assert!(matches!(
            resolve_user("app:ghosts", Some(PASSWD), Some(GROUP)),
            Err(EngineError::UnknownGroup { .. })
        ));
    }
}
