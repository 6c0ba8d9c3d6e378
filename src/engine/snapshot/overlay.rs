//! The overlay mount of a stack of layer dirs within the kernel's limit on
//! mount options (a page, 4096 bytes with the NUL).
//!
//! Lowerdirs are named by `/proc/self/fd/N` paths of directories opened
//! (`O_PATH`) for the mount and closed after it: about 20 bytes a layer
//! wherever `IMGB_HOME` is, and no change of the working directory (which
//! would race with other threads). A stack still too long has its bottom
//! layers flattened into one merged dir (per chain id, built once), in steps
//! of [`FLATTEN_STEP`] layers so that the steps above reuse it.

use std::ffi::CString;
use std::fs;
use std::os::fd::{AsRawFd, OwnedFd};
use std::path::{Path, PathBuf};

use crate::store::ContentStore;

use super::super::fsops::io;
use super::layer_dirs::{Lower, Snapshots};
use super::EngineError;

/// The most bytes of mount options the kernel reads (a page, with its NUL).
pub const MOUNT_OPTIONS_MAX: usize = 4095;
/// Flattened stack bottoms grow in steps of this many layers.
pub const FLATTEN_STEP: usize = 32;
/// Overlay features that would make the upper dir something other than a
/// plain diff (redirects, metadata-only copy-ups, an inode index); off
/// whatever the kernel's defaults.
const OVERLAY_FEATURES: &str = "index=off,redirect_dir=off,metacopy=off";

/// Mounts at `merged` the overlay of `lower`'s layer dirs (top first), then
/// the `stubs` dir, with `upper` and `work` (absolute paths without `,` or
/// `:`).
pub fn mount(
    snapshots: &Snapshots,
    store: &ContentStore,
    lower: &Lower,
    stubs: &Path,
    upper: &Path,
    work: &Path,
    merged: &Path,
) -> Result<(), EngineError> {
    for p in [upper, work] {
        let s = p.to_string_lossy();
        if s.contains([',', ':']) {
            return Err(EngineError::Snapshot {
                reason: format!("overlay cannot use the path {s:?} (it has ',' or ':')"),
            });
        }
    }
    let layers = snapshots.layers(store, lower)?;
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
        stack.push(snapshots.merged(store, &lower.prefix(k))?);
    }
    stack.push(stubs.to_path_buf());
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
        merged,
        "overlay",
        rustix::mount::MountFlags::empty(),
        data.as_c_str(),
    )
    .map_err(|e| EngineError::Snapshot {
        reason: format!("mounting overlay at {}: {e}", merged.display()),
    })?;
    // The mount holds the directories; the names were only for it.
    drop(fds);
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

#[cfg(test)]
mod tests {
    use super::super::{Snapshot, SnapshotterKind};
    use super::*;
    use crate::layer::LayerOptions;

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
