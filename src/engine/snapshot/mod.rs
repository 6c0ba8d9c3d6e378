//! Root filesystems for the engine, as the snapshotter makes them: the
//! unpacked layer dirs per chain id (`layer_dirs`), a writable rootfs for
//! RUN and the layer of its changes (`writable`), read-only views of a
//! stage's or image's files for `COPY --from` and bind mounts (`view`), the
//! overlay mount of a stack of layer dirs (`overlay`) and the copy
//! snapshotter's diff (`copydiff`).
//!
//! [`Snapshotter`] is the service the engine is given: the choice of
//! snapshotter, made once from the environment, and where its dirs are.

mod copydiff;
pub mod layer_dirs;
mod overlay;
pub mod view;
pub mod writable;

use std::path::{Path, PathBuf};

use crate::store::ContentStore;

pub use layer_dirs::{Lookup, Lower, Snapshots};
pub use view::RootView;
pub use writable::{Snapshot, Stub};

use super::EngineError;

/// Which snapshotter to use.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum SnapshotterKind {
    /// Overlay, falling back to copy when overlay cannot be mounted.
    #[default]
    Auto,
    Overlay,
    Copy,
}

impl std::str::FromStr for SnapshotterKind {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "" | "auto" => Ok(SnapshotterKind::Auto),
            "overlay" | "overlayfs" => Ok(SnapshotterKind::Overlay),
            "copy" => Ok(SnapshotterKind::Copy),
            other => Err(format!(
                "unknown snapshotter {other:?}: use auto, overlay or copy"
            )),
        }
    }
}

/// The snapshotter of a build: which kind, the layer dirs under
/// `IMGB_HOME/snapshots`, and the scratch area for mounts and RUNs
/// (`IMGB_HOME/runs`: a dead process's dirs there are swept by the next RUN).
#[derive(Debug, Clone)]
pub struct Snapshotter {
    kind: SnapshotterKind,
    layers: Snapshots,
    scratch: PathBuf,
}

impl Snapshotter {
    /// The snapshotter `kind` keeping its dirs in the state directory `home`.
    pub fn new(home: &Path, kind: SnapshotterKind) -> Snapshotter {
        Snapshotter {
            kind,
            layers: Snapshots::new(home),
            scratch: home.join("runs"),
        }
    }

    pub fn kind(&self) -> SnapshotterKind {
        self.kind
    }

    /// The unpacked layer dirs.
    pub fn layer_dirs(&self) -> &Snapshots {
        &self.layers
    }

    /// Where scratch dirs of mounts and RUNs go.
    pub fn scratch(&self) -> &Path {
        &self.scratch
    }

    /// A writable rootfs on top of `lower` in the fresh dir `dir` (removed
    /// on drop), with `stubs` as mount points.
    pub fn writable(
        &self,
        store: &ContentStore,
        lower: &Lower,
        dir: &Path,
        stubs: &[Stub],
    ) -> Result<Snapshot, EngineError> {
        Snapshot::prepare(self.kind, &self.layers, store, lower, dir, stubs)
    }

    /// A read-only view of `lower`'s whole filesystem.
    pub fn view(&self, store: &ContentStore, lower: &Lower) -> Result<RootView, EngineError> {
        RootView::open(&self.layers, store, lower, &self.scratch, self.kind)
    }
}
