//! Snapshots for RUN: a writable root filesystem on top of a stage's
//! layers, and the layer of what the command changed.
//!
//! Two snapshotters give the same layer for the same changes:
//! - `overlay`: an overlayfs mount of the stage's layer dirs (see
//!   `snapshots`: `lowerdir=layerN:...:layer1:STUBS`, a fresh upperdir); the
//!   layer is read straight from the upper dir (whiteout devices and opaque
//!   xattrs become `.wh.` entries), and the upper dir then becomes the new
//!   layer's dir by a rename. Nothing of the rootfs is copied: the cost is
//!   what the command changed.
//! - `copy`: a full copy of the stage's merged rootfs; after the run the copy
//!   is pruned in place to what differs from the rootfs, with whiteout
//!   devices for deletions, so it has exactly the shape of an overlay upper
//!   dir and goes through the same layer writer.
//!
//! Deep stacks mount too: see `lowerdirs` (short lowerdir names, and the
//! bottom flattened past a page of mount options). The copy snapshotter's
//! pruning is in `copydiff`.
//!
//! Mount points the runtime needs (`/proc`, `/etc/hosts`, mount targets)
//! are "stubs": with overlay they live in the lowest lowerdir, so they never
//! reach the upper dir; with copy they are created before the run and
//! removed after it. Either way they are left out of the layer, as
//! BuildKit's mount-stub cleaner does. (The stubs are the lowest layer, not
//! the top: as the top they would give `/etc` their own mode and mtime in
//! the merged view, and a copy-up under `/etc` would put those in the layer.)

use std::fs;
use std::path::{Path, PathBuf};

use rustix::fs::Timespec;

use crate::layer::{Layer, LayerOptions, LayerWriter, TreeOptions};
use crate::store::ContentStore;

use super::super::fsops::{copy_tree, io};
use super::copydiff::{mtime, prune, set_mtime};
use super::layer_dirs::{Lower, Snapshots};
use super::{EngineError, SnapshotterKind};

/// A mount point the container needs: a path relative to the root.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Stub {
    pub path: String,
    pub dir: bool,
}

enum Active {
    Overlay {
        merged: PathBuf,
        upper: PathBuf,
    },
    Copy {
        root: PathBuf,
        created: Vec<Created>,
    },
}

/// A stub the copy snapshotter created, with its parent's mtime before.
struct Created {
    path: PathBuf,
    parent: PathBuf,
    before: Timespec,
    after: Timespec,
}

/// A prepared root filesystem; unmounted and deleted on drop.
pub struct Snapshot {
    dir: PathBuf,
    snapshots: Snapshots,
    /// The stage's layers.
    lower: Lower,
    /// The merged rootfs the copy snapshotter copied.
    merged: Option<PathBuf>,
    active: Active,
    mounted: bool,
}

impl Snapshot {
    /// A writable view of the layers `lower` (their dirs in `snapshots`) in
    /// the fresh directory `dir` (removed on drop), with `stubs` present as
    /// mount points.
    pub fn prepare(
        kind: SnapshotterKind,
        snapshots: &Snapshots,
        store: &ContentStore,
        lower: &Lower,
        dir: &Path,
        stubs: &[Stub],
    ) -> Result<Snapshot, EngineError> {
        fs::create_dir_all(dir).map_err(io(dir))?;
        let mut snapshot = Snapshot {
            dir: dir.to_path_buf(),
            snapshots: snapshots.clone(),
            lower: lower.clone(),
            merged: None,
            active: Active::Copy {
                root: dir.join("root"),
                created: Vec::new(),
            },
            mounted: false,
        };
        if kind != SnapshotterKind::Copy {
            match snapshot.mount_overlay(store, stubs) {
                Ok(()) => return Ok(snapshot),
                Err(e) if kind == SnapshotterKind::Overlay => return Err(e),
                Err(_) => {}
            }
        }
        snapshot.copy(store, stubs)?;
        Ok(snapshot)
    }

    /// The root filesystem to run in.
    pub fn root(&self) -> &Path {
        match &self.active {
            Active::Overlay { merged, .. } => merged,
            Active::Copy { root, .. } => root,
        }
    }

    /// Which snapshotter is in use.
    pub fn kind(&self) -> SnapshotterKind {
        match self.active {
            Active::Overlay { .. } => SnapshotterKind::Overlay,
            Active::Copy { .. } => SnapshotterKind::Copy,
        }
    }

    fn mount_overlay(&mut self, store: &ContentStore, stubs: &[Stub]) -> Result<(), EngineError> {
        let stub_dir = self.dir.join("stubs");
        let upper = self.dir.join("upper");
        let work = self.dir.join("work");
        let merged = self.dir.join("merged");
        for d in [&stub_dir, &upper, &work, &merged] {
            fs::create_dir_all(d).map_err(io(d))?;
        }
        for stub in stubs {
            make_stub(&stub_dir, stub)?;
        }
        super::overlay::mount(
            &self.snapshots,
            store,
            &self.lower,
            &stub_dir,
            &upper,
            &work,
            &merged,
        )?;
        self.mounted = true;
        self.active = Active::Overlay { merged, upper };
        Ok(())
    }

    fn copy(&mut self, store: &ContentStore, stubs: &[Stub]) -> Result<(), EngineError> {
        let root = self.dir.join("root");
        let merged = self.snapshots.merged(store, &self.lower)?;
        copy_tree(&merged, &root)?;
        self.merged = Some(merged);
        let mut created = Vec::new();
        for stub in stubs {
            // The first missing component is what we create (and remove).
            let mut at = root.clone();
            let parts: Vec<&str> = stub.path.split('/').filter(|p| !p.is_empty()).collect();
            for (i, part) in parts.iter().enumerate() {
                let next = at.join(part);
                if fs::symlink_metadata(&next).is_err() {
                    let before = mtime(&at)?;
                    make_stub(
                        &at,
                        &Stub {
                            path: parts[i..].join("/"),
                            dir: stub.dir,
                        },
                    )?;
                    created.push(Created {
                        path: next,
                        parent: at.clone(),
                        before,
                        after: mtime(&at)?,
                    });
                    break;
                }
                at = next;
            }
        }
        self.active = Active::Copy { root, created };
        Ok(())
    }

    /// Writes the layer of what changed and removes the snapshot.
    pub fn commit(
        mut self,
        store: &ContentStore,
        opts: &LayerOptions,
    ) -> Result<Layer, EngineError> {
        let upper = match &self.active {
            Active::Overlay { merged, upper } => {
                rustix::mount::unmount(merged, rustix::mount::UnmountFlags::empty()).map_err(
                    |e| EngineError::Snapshot {
                        reason: format!("unmounting {}: {e}", merged.display()),
                    },
                )?;
                self.mounted = false;
                upper.clone()
            }
            Active::Copy { root, created } => {
                for c in created.iter().rev() {
                    // Undo our own change of the parent's mtime only.
                    let untouched = mtime(&c.parent)? == c.after;
                    let meta = fs::symlink_metadata(&c.path).map_err(io(&c.path))?;
                    if meta.is_dir() {
                        fs::remove_dir_all(&c.path).map_err(io(&c.path))?;
                    } else {
                        fs::remove_file(&c.path).map_err(io(&c.path))?;
                    }
                    if untouched {
                        set_mtime(&c.parent, c.before)?;
                    }
                }
                prune(self.merged.as_deref(), root)?;
                root.clone()
            }
        };
        let mut writer = LayerWriter::new(store, opts)?;
        writer.append_tree(
            &upper,
            &TreeOptions {
                overlay_upper: true,
                ..TreeOptions::default()
            },
        )?;
        let layer = writer.finish()?;
        // The upper dir is the new layer's dir: a later RUN mounts it as is.
        self.snapshots
            .adopt(&self.lower.chain_with(&layer.diff_id), &upper);
        Ok(layer)
    }
}

impl Drop for Snapshot {
    fn drop(&mut self) {
        if self.mounted {
            if let Active::Overlay { merged, .. } = &self.active {
                if rustix::mount::unmount(merged, rustix::mount::UnmountFlags::empty()).is_err() {
                    let _ = rustix::mount::unmount(merged, rustix::mount::UnmountFlags::DETACH);
                }
            }
        }
        let _ = fs::remove_dir_all(&self.dir);
    }
}

/// Creates `stub` (and its parents) under `root`.
fn make_stub(root: &Path, stub: &Stub) -> Result<(), EngineError> {
    let path = root.join(stub.path.trim_start_matches('/'));
    if stub.dir {
        fs::create_dir_all(&path).map_err(io(&path))?;
    } else {
        if let Some(parent) = path.parent() {
            fs::create_dir_all(parent).map_err(io(parent))?;
        }
        fs::write(&path, b"").map_err(io(&path))?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The same changes through both snapshotters give the same layer, and
    /// stubs stay out of it.
    #[test]
    fn overlay_and_copy_give_the_same_layer() {
        let dir = tempfile::tempdir().unwrap();
        let store = ContentStore::open(&dir.path().join("store")).unwrap();
        let lower = dir.path().join("lower");
        for d in ["etc", "keep/deep", "gone/sub", "tmp"] {
            fs::create_dir_all(lower.join(d)).unwrap();
        }
        fs::write(lower.join("etc/passwd"), "root:x:0:0::/:/bin/sh\n").unwrap();
        fs::write(lower.join("keep/deep/same"), "same").unwrap();
        fs::write(lower.join("keep/edit"), "old").unwrap();
        fs::write(lower.join("gone/sub/f"), "f").unwrap();
        fs::write(lower.join("file-to-dir"), "f").unwrap();
        let stubs = [
            Stub {
                path: "proc".into(),
                dir: true,
            },
            Stub {
                path: "etc/hosts".into(),
                dir: false,
            },
            Stub {
                path: "run/secrets/s".into(),
                dir: false,
            },
        ];
        let opts = LayerOptions {
            source_date_epoch: Some(1_700_000_000),
            ..LayerOptions::default()
        };
        let mut writer = LayerWriter::new(&store, &opts).unwrap();
        writer.append_tree(&lower, &TreeOptions::default()).unwrap();
        let base = writer.finish().unwrap();
        let stack = Lower::new(
            &[base.diff_id],
            &[crate::image::Descriptor::new(
                &base.media_type,
                base.digest,
                base.size,
            )],
        );
        let layer = |kind, home: &Path| {
            let snaps = Snapshots::new(home);
            let snap = Snapshot::prepare(
                kind,
                &snaps,
                &store,
                &stack,
                &dir.path().join("snap"),
                &stubs,
            )
            .unwrap();
            assert_eq!(snap.kind(), kind);
            let root = snap.root().to_path_buf();
            assert!(root.join("proc").is_dir() && root.join("etc/hosts").is_file());
            fs::write(root.join("keep/edit"), "new").unwrap();
            fs::write(root.join("added"), "a").unwrap();
            fs::remove_dir_all(root.join("gone")).unwrap();
            fs::remove_file(root.join("file-to-dir")).unwrap();
            fs::create_dir(root.join("file-to-dir")).unwrap();
            fs::write(root.join("file-to-dir/inner"), "i").unwrap();
            fs::write(root.join("tmp/t"), "t").unwrap();
            fs::remove_file(root.join("tmp/t")).unwrap();
            let layer = snap.commit(&store, &opts).unwrap();
            assert!(!dir.path().join("snap").exists(), "the snapshot is removed");
            layer
        };
        let overlay = layer(SnapshotterKind::Overlay, &dir.path().join("home1"));
        let copy = layer(SnapshotterKind::Copy, &dir.path().join("home2"));
        assert_eq!(overlay.diff_id, copy.diff_id);
        // Both diffs became the new layer's dir, in the same format.
        for home in ["home1", "home2"] {
            let adopted = dir
                .path()
                .join(home)
                .join("snapshots/layers")
                .join(stack.chain_with(&copy.diff_id).digest().hex());
            assert_eq!(fs::read(adopted.join("added")).unwrap(), b"a", "{home}");
            assert!(!adopted.join("proc").exists(), "stubs stay out ({home})");
        }

        let blob = store.open_blob(&copy.digest).unwrap();
        let mut archive = tar::Archive::new(crate::layer::decompressed(blob).unwrap());
        let names: Vec<String> = archive
            .entries()
            .unwrap()
            .map(|e| e.unwrap().path().unwrap().display().to_string())
            .collect();
        assert_eq!(
            names,
            [
                ".wh.gone",
                "added",
                "file-to-dir/",
                "file-to-dir/.wh..wh..opq",
                "file-to-dir/inner",
                "keep/",
                "keep/edit",
                "tmp/",
            ]
        );
    }

    /// A layer overlay cannot hold on its own (a hard link to a file of a
    /// lower layer) makes `auto` use the copy snapshotter.
    #[test]
    fn auto_falls_back_to_copy_when_a_layer_dir_cannot_be_made() {
        let dir = tempfile::tempdir().unwrap();
        let store = ContentStore::open(&dir.path().join("store")).unwrap();
        let tar = |entries: &[(&str, tar::EntryType, &[u8])]| {
            let mut builder = tar::Builder::new(Vec::new());
            for (path, kind, data) in entries {
                let mut header = tar::Header::new_ustar();
                header.set_entry_type(*kind);
                header.set_mode(0o644);
                header.set_uid(0);
                header.set_gid(0);
                header.set_mtime(0);
                header.set_size(data.len() as u64);
                header.set_path(path).unwrap();
                if kind.is_hard_link() {
                    header.set_link_name("f").unwrap();
                }
                header.set_cksum();
                builder.append(&header, *data).unwrap();
            }
            store
                .put_bytes(&builder.into_inner().unwrap())
                .unwrap()
                .digest
        };
        let l1 = tar(&[("f", tar::EntryType::Regular, b"f")]);
        let l2 = tar(&[("h", tar::EntryType::Link, b"")]);
        let descriptors: Vec<_> = [l1, l2]
            .iter()
            .map(|d| crate::image::Descriptor::new("application/vnd.oci.image.layer.v1.tar", *d, 0))
            .collect();
        let stack = Lower::new(&[l1, l2], &descriptors);
        let snaps = Snapshots::new(dir.path());
        let prepare =
            |kind| Snapshot::prepare(kind, &snaps, &store, &stack, &dir.path().join("snap"), &[]);
        assert!(prepare(SnapshotterKind::Overlay).is_err());
        let snap = prepare(SnapshotterKind::Auto).unwrap();
        assert_eq!(snap.kind(), SnapshotterKind::Copy);
        assert_eq!(fs::read(snap.root().join("h")).unwrap(), b"f");
    }
}
