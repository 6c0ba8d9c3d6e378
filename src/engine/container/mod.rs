//! Running one RUN: the user it runs as (`user`), its mounts (`mounts`,
//! `cache_mounts`), the [`Executor`] that runs the command (`executor`),
//! and one execution from a stage's rootfs to the layer of its changes.
//!
//! Secrets never reach a layer, the config, the history or a cache key:
//! they are written to a private temp file, bind-mounted read-only, and their
//! mount point is a stub that stays out of the layer.

mod cache_mounts;
pub mod executor;
mod mounts;
pub mod user;

use std::collections::VecDeque;
use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::sync::atomic::AtomicBool;

use crate::layer::{Layer, LayerOptions};
use crate::plan::{NetworkMode, RunStep, SecurityMode};
use crate::store::ContentStore;

use super::fsops::{ensure_dir, io};
use super::snapshot::{Lower, Snapshotter};
use super::EngineError;
use executor::{Executor, RunRequest};
use mounts::Prepared;
pub use mounts::{MountInputs, Secret};
use user::User;

/// How many output lines a failure shows.
const TAIL_LINES: usize = 20;

/// What one RUN needs from the build.
pub struct RunContext<'a> {
    pub executor: &'a dyn Executor,
    pub snapshotter: &'a Snapshotter,
    pub store: &'a ContentStore,
    pub layer: &'a LayerOptions,
    /// Set to stop the build: the running command is killed.
    pub cancel: &'a AtomicBool,
    pub network: NetworkMode,
    /// The stage's layers (unpacked on demand in the snapshotter's layer dirs).
    pub lower: Lower,
    pub user: User,
    pub mounts: MountInputs<'a>,
}

/// The command as shown in errors.
pub fn command_text(run: &RunStep) -> String {
    run.argv.join(" ")
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
        remove_stale(cx.snapshotter.scratch());
    }
    // Not the store's `tmp/`: the store empties that when it opens, and a
    // snapshot may hold a mount.
    let scratch = cx
        .snapshotter
        .scratch()
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
    } = mounts::prepare(&cx.mounts, run, &files)?;
    let snapshot = cx
        .snapshotter
        .writable(cx.store, &cx.lower, &scratch.join("snap"), &stubs)?;
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
        cancel: cx.cancel,
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
