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
//! The mount option string is limited to a page (4096 bytes). Lowerdirs are
//! named by short `/proc/self/fd/N` paths of directories opened for the
//! mount (no cwd change, so threads are safe), and when the stack is still
//! too long its bottom layers are flattened into one merged dir (per chain
//! id, built once, in steps of [`FLATTEN_STEP`] layers so that later steps
//! reuse it).
//!
//! Mount points the runtime needs (`/proc`, `/etc/hosts`, mount targets)
//! are "stubs": with overlay they live in the lowest lowerdir, so they never
//! reach the upper dir; with copy they are created before the run and
//! removed after it. Either way they are left out of the layer, as
//! BuildKit's mount-stub cleaner does. (The stubs are the lowest layer, not
//! the top: as the top they would give `/etc` their own mode and mtime in
//! the merged view, and a copy-up under `/etc` would put those in the layer.)

use std::ffi::CString;
use std::fs;
use std::os::fd::{AsRawFd, OwnedFd};
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::process::Command;

use rustix::fs::{FileType, Mode, Timespec, Timestamps, UTIME_OMIT};

use crate::layer::{Layer, LayerOptions, LayerWriter, TreeOptions};
use crate::store::ContentStore;

use super::snapshots::{Lower, Snapshots};
use super::EngineError;

/// The most bytes of mount options the kernel reads (a page, with its NUL).
pub const MOUNT_OPTIONS_MAX: usize = 4095;
/// Flattened stack bottoms grow in steps of this many layers.
pub const FLATTEN_STEP: usize = 32;
/// Overlay features that would make the upper dir something other than a
/// plain diff (redirects, metadata-only copy-ups, an inode index); off
/// whatever the kernel's defaults.
const OVERLAY_FEATURES: &str = "index=off,redirect_dir=off,metacopy=off";

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

fn io(path: &Path) -> impl FnOnce(std::io::Error) -> EngineError {
    let path = path.to_path_buf();
    move |source| EngineError::Io { path, source }
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
        for p in [&upper, &work] {
            let s = p.to_string_lossy();
            if s.contains([',', ':']) {
                return Err(EngineError::Snapshot {
                    reason: format!("overlay cannot use the path {s:?} (it has ',' or ':')"),
                });
            }
        }
        let layers = self.snapshots.layers(store, &self.lower)?;
        let fixed = format!(
            ",upperdir={},workdir={},{OVERLAY_FEATURES}",
            upper.display(),
            work.display()
        )
        .len()
            + "lowerdir=".len();
        // Every lowerdir is named `/proc/self/fd/N`; N stays below the
        // number of open files plus the ones opened here.
        let name_len = fd_name(open_dirs_bound(layers.len() + 2)).len();
        let k = flatten_count(layers.len(), name_len, fixed, MOUNT_OPTIONS_MAX);
        // Top first, the stubs last.
        let mut stack: Vec<PathBuf> = layers[k..].iter().rev().cloned().collect();
        if k > 0 {
            stack.push(self.snapshots.merged(store, &self.lower.prefix(k))?);
        }
        stack.push(stub_dir);
        let fds = stack
            .iter()
            .map(|p| open_dir(p))
            .collect::<Result<Vec<_>, _>>()?;
        let lowerdir: Vec<String> = fds.iter().map(|fd| fd_name(fd.as_raw_fd())).collect();
        let data = format!(
            "lowerdir={},upperdir={},workdir={},{OVERLAY_FEATURES}",
            lowerdir.join(":"),
            upper.display(),
            work.display()
        );
        if data.len() > MOUNT_OPTIONS_MAX {
            return Err(EngineError::Snapshot {
                reason: format!(
                    "the overlay options are {} bytes (at most a page)",
                    data.len()
                ),
            });
        }
        let data = CString::new(data).map_err(|e| EngineError::Snapshot {
            reason: e.to_string(),
        })?;
        rustix::mount::mount(
            "overlay",
            &merged,
            "overlay",
            rustix::mount::MountFlags::empty(),
            data.as_c_str(),
        )
        .map_err(|e| EngineError::Snapshot {
            reason: format!("mounting overlay at {}: {e}", merged.display()),
        })?;
        // The mount holds the directories; the names were only for it.
        drop(fds);
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

/// Copies the tree `src` to `dst` (which must not exist) with everything:
/// owners, modes, times, xattrs, hard links (`cp -a`).
pub fn copy_tree(src: &Path, dst: &Path) -> Result<(), EngineError> {
    let status = Command::new("cp")
        .arg("-a")
        .arg("--reflink=auto")
        .arg(src)
        .arg(dst)
        .status()
        .map_err(io(dst))?;
    if !status.success() {
        return Err(EngineError::Snapshot {
            reason: format!(
                "copying {} to {} failed ({status})",
                src.display(),
                dst.display()
            ),
        });
    }
    Ok(())
}

/// How many bottom layers of a stack of `layers` to flatten into one merged
/// dir so that the overlay options fit in `limit` bytes: every lowerdir
/// (the layers, a merged dir, the stubs) is named in `name_len` bytes, plus
/// a `:`; `fixed` is the length of everything else. 0 when all fit; else a
/// multiple of [`FLATTEN_STEP`] (or all of them).
pub fn flatten_count(layers: usize, name_len: usize, fixed: usize, limit: usize) -> usize {
    let size = |dirs: usize| fixed + dirs * (name_len + 1) - 1;
    // The layers and the stubs.
    if size(layers + 1) <= limit {
        return 0;
    }
    (1..)
        .map(|i| i * FLATTEN_STEP)
        .take_while(|k| *k < layers)
        // The remaining layers, the merged dir and the stubs.
        .find(|k| size(layers - k + 2) <= limit)
        .unwrap_or(layers)
}

/// The name of an open directory for a mount option.
fn fd_name(fd: i32) -> String {
    format!("/proc/self/fd/{fd}")
}

/// An upper bound of the descriptors numbers when `more` are opened now.
fn open_dirs_bound(more: usize) -> i32 {
    let open = fs::read_dir("/proc/self/fd")
        .map(|d| d.count())
        .unwrap_or(1024);
    // Other threads may open files meanwhile: leave room.
    i32::try_from(open + more + 1024).unwrap_or(i32::MAX)
}

/// Opens a directory for naming it only (`O_PATH`), closed on exec.
fn open_dir(path: &Path) -> Result<OwnedFd, EngineError> {
    use rustix::fs::OFlags;
    rustix::fs::open(
        path,
        OFlags::PATH | OFlags::DIRECTORY | OFlags::CLOEXEC,
        rustix::fs::Mode::empty(),
    )
    .map_err(|e| io(path)(e.into()))
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

fn mtime(path: &Path) -> Result<Timespec, EngineError> {
    let meta = fs::symlink_metadata(path).map_err(io(path))?;
    Ok(Timespec {
        tv_sec: meta.mtime(),
        tv_nsec: meta.mtime_nsec() as _,
    })
}

fn set_mtime(path: &Path, time: Timespec) -> Result<(), EngineError> {
    let times = Timestamps {
        last_access: Timespec {
            tv_sec: 0,
            tv_nsec: UTIME_OMIT,
        },
        last_modification: time,
    };
    rustix::fs::utimensat(
        rustix::fs::CWD,
        path,
        &times,
        rustix::fs::AtFlags::SYMLINK_NOFOLLOW,
    )
    .map_err(|e| io(path)(e.into()))
}

/// Whether a non-directory is unchanged: type, permissions, owner, size,
/// mtime (to the nanosecond), link target or device number.
fn same_entry(old: &Path, new: &Path, a: &fs::Metadata, b: &fs::Metadata) -> bool {
    if a.file_type() != b.file_type()
        || a.mode() != b.mode()
        || a.uid() != b.uid()
        || a.gid() != b.gid()
        || a.size() != b.size()
        || a.mtime() != b.mtime()
        || a.mtime_nsec() != b.mtime_nsec()
        || a.rdev() != b.rdev()
    {
        return false;
    }
    if a.file_type().is_symlink() {
        return fs::read_link(old).ok() == fs::read_link(new).ok();
    }
    true
}

/// Prunes directory `new` to what differs from `old` (`None`: all of it is
/// new), adding 0/0 character devices for deleted entries, as an overlay
/// upper dir has them. Returns whether anything is left in `new`.
fn prune(old: Option<&Path>, new: &Path) -> Result<bool, EngineError> {
    let dir_time = mtime(new)?;
    let mut kept = false;
    let mut names: Vec<_> = fs::read_dir(new)
        .map_err(io(new))?
        .map(|e| e.map(|e| e.file_name()))
        .collect::<Result<_, _>>()
        .map_err(io(new))?;
    names.sort();
    for name in &names {
        let n = new.join(name);
        let nm = fs::symlink_metadata(&n).map_err(io(&n))?;
        let o = old.map(|d| d.join(name));
        let om = o.as_ref().and_then(|o| fs::symlink_metadata(o).ok());
        match (&om, nm.is_dir()) {
            (Some(om), true) if om.is_dir() => {
                let changed = om.mode() != nm.mode()
                    || om.uid() != nm.uid()
                    || om.gid() != nm.gid()
                    || om.mtime() != nm.mtime()
                    || om.mtime_nsec() != nm.mtime_nsec();
                let inner = prune(o.as_deref(), &n)?;
                if changed || inner {
                    kept = true;
                } else {
                    fs::remove_dir(&n).map_err(io(&n))?;
                }
            }
            (Some(_), true) => {
                // A directory where a lower non-directory was: overlay
                // marks such a directory opaque.
                rustix::fs::lsetxattr(
                    &n,
                    "trusted.overlay.opaque",
                    b"y",
                    rustix::fs::XattrFlags::empty(),
                )
                .map_err(|e| io(&n)(e.into()))?;
                kept = true;
            }
            (None, _) => kept = true,
            (Some(om), false) => {
                if let Some(o) = &o {
                    if same_entry(o, &n, om, &nm) {
                        fs::remove_file(&n).map_err(io(&n))?;
                        continue;
                    }
                }
                kept = true;
            }
        }
    }
    if let Some(old) = old {
        let mut gone: Vec<_> = fs::read_dir(old)
            .map_err(io(old))?
            .map(|e| e.map(|e| e.file_name()))
            .collect::<Result<_, _>>()
            .map_err(io(old))?;
        gone.sort();
        for name in gone {
            let n = new.join(&name);
            if fs::symlink_metadata(&n).is_ok() || names.contains(&name) {
                continue;
            }
            rustix::fs::mknodat(
                rustix::fs::CWD,
                &n,
                FileType::CharacterDevice,
                Mode::from_raw_mode(0),
                0,
            )
            .map_err(|e| io(&n)(e.into()))?;
            kept = true;
        }
    }
    set_mtime(new, dir_time)?;
    Ok(kept)
}

/// Makes `path` and its parents, 0755.
pub fn ensure_dir(path: &Path) -> Result<(), EngineError> {
    if !path.is_dir() {
        fs::create_dir_all(path).map_err(io(path))?;
        fs::set_permissions(path, fs::Permissions::from_mode(0o755)).map_err(io(path))?;
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

    #[test]
    fn flatten_count_keeps_the_options_within_the_limit() {
        // 10 layers of 10-byte names plus the stubs: 11 * 11 - 1 + 20.
        assert_eq!(flatten_count(10, 10, 20, 140), 0);
        assert_eq!(flatten_count(10, 10, 20, 139), 10, "fewer than a step: all");
        // 100 layers, room for 60 names: flatten 64 (a step multiple), so
        // 36 layers + merged + stubs remain.
        let k = flatten_count(100, 10, 20, 20 + 60 * 11 - 1);
        assert_eq!(k, 64);
        assert!((100 - k + 2) * 11 <= 60 * 11);
        // The next layers on top reuse the same flattened bottom.
        assert_eq!(flatten_count(101, 10, 20, 20 + 60 * 11 - 1), 64);
    }

    /// A stack longer than one page of lowerdir names mounts, with its
    /// bottom flattened once, and whiteouts across the boundary work.
    #[test]
    fn deep_stacks_flatten_their_bottom_and_still_mount() {
        let dir = tempfile::tempdir().unwrap();
        let store = ContentStore::open(&dir.path().join("store")).unwrap();
        let n = 260;
        let mut diff_ids = Vec::new();
        let mut descriptors = Vec::new();
        for i in 0..n {
            let mut builder = tar::Builder::new(Vec::new());
            let mut add = |name: &str, data: &[u8]| {
                let mut header = tar::Header::new_ustar();
                header.set_mode(0o644);
                header.set_uid(0);
                header.set_gid(0);
                header.set_mtime(0);
                header.set_size(data.len() as u64);
                header.set_path(name).unwrap();
                header.set_cksum();
                builder.append(&header, data).unwrap();
            };
            add(&format!("f{i}"), format!("{i}").as_bytes());
            // Layer 2 deletes f0 (both in the flattened bottom); the top
            // layer deletes f1 (from the bottom, across the boundary).
            if i == 2 {
                add(".wh.f0", b"");
            }
            if i == n - 1 {
                add(".wh.f1", b"");
            }
            let blob = store.put_bytes(&builder.into_inner().unwrap()).unwrap();
            diff_ids.push(blob.digest);
            descriptors.push(crate::image::Descriptor::new(
                "application/vnd.oci.image.layer.v1.tar",
                blob.digest,
                blob.size,
            ));
        }
        let stack = Lower::new(&diff_ids, &descriptors);
        let snaps = Snapshots::new(dir.path());
        let snap = Snapshot::prepare(
            SnapshotterKind::Overlay,
            &snaps,
            &store,
            &stack,
            &dir.path().join("snap"),
            &[],
        )
        .unwrap();
        let root = snap.root().to_path_buf();
        assert!(!root.join("f0").exists() && !root.join("f1").exists());
        for i in 2..n {
            assert_eq!(
                fs::read_to_string(root.join(format!("f{i}"))).unwrap(),
                i.to_string()
            );
        }
        let merged: Vec<String> = fs::read_dir(dir.path().join("snapshots/merged"))
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .collect();
        assert_eq!(merged.len(), 1, "one flattened bottom: {merged:?}");
        let k = (0..n)
            .find(|k| {
                crate::image::ChainId::of(&diff_ids[..*k])
                    .is_some_and(|c| c.digest().hex() == merged[0])
            })
            .unwrap();
        assert_eq!(k % FLATTEN_STEP, 0);
        fs::write(root.join("new"), "x").unwrap();
        let layer = snap.commit(&store, &LayerOptions::default()).unwrap();
        assert_ne!(layer.size, 0);
    }
}
