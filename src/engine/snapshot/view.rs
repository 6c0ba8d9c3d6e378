//! A read-only view of a stage's or image's whole filesystem, for `COPY
//! --from` and `RUN --mount=type=bind,from=`: an overlay mount of the
//! layer dirs (milliseconds, whatever the size of the image), or, where
//! overlay cannot be mounted or the copy snapshotter is chosen, the merged
//! rootfs of the chain (a full copy, built once per chain id).
//!
//! The mount lives in a scratch dir under `IMGB_HOME/runs/` (named like a
//! RUN's, so that the sweep of dead processes' dirs removes it too) and is
//! unmounted and removed when the view is dropped.

use std::fs;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicUsize, Ordering};

use crate::store::ContentStore;

use super::layer_dirs::{Lower, Snapshots};
use super::{EngineError, SnapshotterKind};

/// A filesystem to read from; unmounted on drop when it is a mount.
pub struct RootView {
    path: PathBuf,
    /// The scratch dir of an overlay mount (`merged/` inside it).
    scratch: Option<PathBuf>,
}

impl RootView {
    /// The view of `lower`.
    pub fn open(
        snapshots: &Snapshots,
        store: &ContentStore,
        lower: &Lower,
        scratch_dir: &Path,
        kind: SnapshotterKind,
    ) -> Result<RootView, EngineError> {
        if kind != SnapshotterKind::Copy && !lower.is_empty() {
            static NEXT: AtomicUsize = AtomicUsize::new(0);
            let n = NEXT.fetch_add(1, Ordering::Relaxed);
            let scratch = scratch_dir.join(format!("{}-view-{n}", std::process::id()));
            match mount(snapshots, store, lower, &scratch) {
                Ok(path) => {
                    return Ok(RootView {
                        path,
                        scratch: Some(scratch),
                    })
                }
                Err(e) if kind == SnapshotterKind::Overlay => {
                    let _ = fs::remove_dir_all(&scratch);
                    return Err(e);
                }
                Err(_) => {
                    let _ = fs::remove_dir_all(&scratch);
                }
            }
        }
        Ok(RootView {
            path: snapshots.merged(store, lower)?,
            scratch: None,
        })
    }

    pub fn path(&self) -> &Path {
        &self.path
    }
}

fn mount(
    snapshots: &Snapshots,
    store: &ContentStore,
    lower: &Lower,
    scratch: &Path,
) -> Result<PathBuf, EngineError> {
    let dirs = ["stubs", "upper", "work", "merged"].map(|d| scratch.join(d));
    for d in &dirs {
        fs::create_dir_all(d).map_err(|source| EngineError::Io {
            path: d.clone(),
            source,
        })?;
    }
    let [stubs, upper, work, merged] = dirs;
    // Nothing writes through the view; the upper dir only makes it a
    // normal overlay like RUN's.
    super::overlay::mount(snapshots, store, lower, &stubs, &upper, &work, &merged)?;
    Ok(merged)
}

impl Drop for RootView {
    fn drop(&mut self) {
        if let Some(scratch) = &self.scratch {
            use rustix::mount::{unmount, UnmountFlags};
            if unmount(&self.path, UnmountFlags::empty()).is_err() {
                let _ = unmount(&self.path, UnmountFlags::DETACH);
            }
            let _ = fs::remove_dir_all(scratch);
        }
    }
}
