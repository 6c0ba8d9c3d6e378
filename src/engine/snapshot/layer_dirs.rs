//! The unpacked layers of images, kept per chain id under
//! `IMGB_HOME/snapshots` (derived data: `imgb prune` empties it):
//!
//! - `layers/<chain>`: one layer's own changes in overlayfs's format
//!   (whiteouts are 0/0 character devices, opaque directories carry
//!   `trusted.overlay.opaque=y`), ready to be an overlay lowerdir. Unpacked
//!   once from the layer's blob, or, after a RUN, the run's upper dir renamed
//!   into place (it already has that format): a RUN on top of a RUN unpacks
//!   nothing.
//! - `merged/<chain>`: the whole filesystem of the chain (every layer applied
//!   in order), for what needs one tree: the copy snapshotter, `COPY --from`,
//!   `RUN --mount=type=bind,from=`, and the bottom of overlay stacks too long
//!   for one mount. Built once, from the longest merged prefix already there.
//!
//! Safe with concurrent builders (threads of this process and other
//! processes): every directory is built under a name unique to the process
//! and call (pid + counter) and renamed into place without replacing
//! anything; a builder that loses the race removes its copy and uses the
//! winner's.

use std::fs;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};

use crate::digest::Sha256Digest;
use crate::image::{ChainId, Descriptor};
use crate::layer::{is_overlay_opaque, is_overlay_whiteout, unpack_layer, unpack_layer_overlay};
use crate::store::ContentStore;

use super::super::fsops::{copy_tree, io};
use super::EngineError;

/// A stack of layers: diff ids and blob digests, bottom first.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Lower {
    diff_ids: Vec<Sha256Digest>,
    blobs: Vec<Sha256Digest>,
}

impl Lower {
    /// The stack of an image config's `diff_ids` and its layer descriptors.
    pub fn new(diff_ids: &[Sha256Digest], layers: &[Descriptor]) -> Lower {
        let n = diff_ids.len().min(layers.len());
        Lower {
            diff_ids: diff_ids[..n].to_vec(),
            blobs: layers[..n].iter().map(|d| d.digest).collect(),
        }
    }

    pub fn len(&self) -> usize {
        self.diff_ids.len()
    }

    pub fn is_empty(&self) -> bool {
        self.diff_ids.is_empty()
    }

    /// The bottom `n` layers.
    pub fn prefix(&self, n: usize) -> Lower {
        let n = n.min(self.len());
        Lower {
            diff_ids: self.diff_ids[..n].to_vec(),
            blobs: self.blobs[..n].to_vec(),
        }
    }

    pub fn diff_ids(&self) -> &[Sha256Digest] {
        &self.diff_ids
    }

    /// The chain id of the stack with `diff_id` on top.
    pub fn chain_with(&self, diff_id: &Sha256Digest) -> ChainId {
        ChainId::next(ChainId::of(&self.diff_ids).as_ref(), diff_id)
    }
}

/// A file looked up in the layer dirs of a stack.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Lookup {
    Content(Vec<u8>),
    /// Missing or not a regular file.
    Missing,
    /// The path involves a symlink: the caller resolves it another way.
    Symlink,
}

/// The snapshot directories of one `IMGB_HOME`.
#[derive(Debug, Clone)]
pub struct Snapshots {
    dir: PathBuf,
}

/// A temp name in `dir` unique to this process and call: concurrent
/// builders (threads included) never share one.
fn temp_name(dir: &Path, name: &str) -> PathBuf {
    static NEXT: AtomicU64 = AtomicU64::new(0);
    let n = NEXT.fetch_add(1, Ordering::Relaxed);
    dir.join(format!(".tmp-{name}-{}-{n}", std::process::id()))
}

/// Renames the built directory `tmp` to `dest` unless `dest` exists; when it
/// does, another builder won the race: `tmp` is removed and `dest` used.
fn place(tmp: &Path, dest: &Path) -> Result<(), EngineError> {
    use rustix::io::Errno;
    let lost = |e: Errno| e == Errno::EXIST || e == Errno::NOTEMPTY;
    let renamed = rustix::fs::renameat_with(
        rustix::fs::CWD,
        tmp,
        rustix::fs::CWD,
        dest,
        rustix::fs::RenameFlags::NOREPLACE,
    );
    let result = match renamed {
        // File systems without RENAME_NOREPLACE: a plain rename refuses to
        // replace a non-empty directory, and an empty one is equal anyway.
        Err(Errno::INVAL) => rustix::fs::rename(tmp, dest),
        other => other,
    };
    match result {
        Ok(()) => Ok(()),
        Err(e) if lost(e) => {
            let _ = fs::remove_dir_all(tmp);
            Ok(())
        }
        Err(e) => {
            let _ = fs::remove_dir_all(tmp);
            Err(io(dest)(e.into()))
        }
    }
}

/// Removes the temp dirs of builders that died mid-unpack (their pid is
/// gone), once per process and directory.
fn remove_stale_temps(dir: &Path) {
    let Ok(entries) = fs::read_dir(dir) else {
        return;
    };
    for entry in entries.flatten() {
        let name = entry.file_name().to_string_lossy().into_owned();
        let Some(rest) = name.strip_prefix(".tmp-") else {
            continue;
        };
        let mut parts = rest.rsplit('-');
        let (_, Some(pid)) = (parts.next(), parts.next()) else {
            continue;
        };
        let Ok(pid) = pid.parse::<u32>() else {
            continue;
        };
        if pid != std::process::id() && !Path::new(&format!("/proc/{pid}")).exists() {
            let _ = fs::remove_dir_all(entry.path());
        }
    }
}

impl Snapshots {
    /// The snapshots of the state directory `home`.
    pub fn new(home: &Path) -> Snapshots {
        Snapshots {
            dir: home.join("snapshots"),
        }
    }

    fn area(&self, name: &str) -> Result<PathBuf, EngineError> {
        static CLEANED: AtomicU64 = AtomicU64::new(0);
        let dir = self.dir.join(name);
        fs::create_dir_all(&dir).map_err(io(&dir))?;
        // One sweep per process (bit 0: layers, bit 1: merged).
        let bit = if name == "layers" { 1 } else { 2 };
        if CLEANED.fetch_or(bit, Ordering::Relaxed) & bit == 0 {
            remove_stale_temps(&dir);
        }
        Ok(dir)
    }

    /// The layer dir of `chain` if it is unpacked already.
    pub fn existing_layer(&self, chain: &ChainId) -> Option<PathBuf> {
        let path = self.layer_path(chain);
        path.is_dir().then_some(path)
    }

    /// Where the saved listing of `chain`'s layer dir goes (see
    /// `LowerFs::apply_layer_dir`).
    pub fn listing_path(&self, chain: &ChainId) -> PathBuf {
        self.dir.join("lists").join(chain.digest().hex())
    }

    /// Where the layer dir of `chain` is (whether or not it exists yet).
    fn layer_path(&self, chain: &ChainId) -> PathBuf {
        self.dir.join("layers").join(chain.digest().hex())
    }

    /// The layer directories of `lower`, bottom first, unpacking the layers
    /// that have none yet (each on its own, in overlayfs's format).
    pub fn layers(&self, store: &ContentStore, lower: &Lower) -> Result<Vec<PathBuf>, EngineError> {
        let chains = ChainId::all(&lower.diff_ids);
        let mut out = Vec::with_capacity(chains.len());
        for (chain, blob) in chains.iter().zip(&lower.blobs) {
            let path = self.layer_path(chain);
            if !path.is_dir() {
                let dir = self.area("layers")?;
                let tmp = temp_name(&dir, &chain.digest().hex());
                fs::create_dir(&tmp).map_err(io(&tmp))?;
                let unpacked = store
                    .open_blob(blob)
                    .map_err(EngineError::from)
                    .and_then(|file| Ok(unpack_layer_overlay(file, &tmp)?));
                if let Err(e) = unpacked {
                    let _ = fs::remove_dir_all(&tmp);
                    return Err(e);
                }
                place(&tmp, &path)?;
            }
            out.push(path);
        }
        Ok(out)
    }

    /// Reads the small file `rel` (no leading `/`) of `lower`'s merged view
    /// from its layer dirs, top first, by overlayfs's rules: a whiteout
    /// hides what is below, an opaque directory ends the search under it, a
    /// non-directory hides a lower directory. Cheap once the layers are
    /// unpacked (RUN needs them anyway), unlike reading every layer's tar.
    pub fn read_file(
        &self,
        store: &ContentStore,
        lower: &Lower,
        rel: &str,
    ) -> Result<Lookup, EngineError> {
        let parts: Vec<&str> = rel.split('/').filter(|p| !p.is_empty()).collect();
        let dirs = self.layers(store, lower)?;
        for dir in dirs.iter().rev() {
            let mut at = dir.clone();
            // An opaque directory on the path: nothing below shows through.
            let mut opaque = false;
            for (i, part) in parts.iter().enumerate() {
                at.push(part);
                let Ok(meta) = fs::symlink_metadata(&at) else {
                    break; // not in this layer
                };
                let ft = meta.file_type();
                if ft.is_symlink() {
                    return Ok(Lookup::Symlink);
                }
                if is_overlay_whiteout(&meta) {
                    return Ok(Lookup::Missing);
                }
                if i + 1 == parts.len() {
                    if !ft.is_file() {
                        return Ok(Lookup::Missing);
                    }
                    return Ok(Lookup::Content(fs::read(&at).map_err(io(&at))?));
                }
                if !ft.is_dir() {
                    return Ok(Lookup::Missing);
                }
                opaque |= is_overlay_opaque(&at);
            }
            if opaque {
                return Ok(Lookup::Missing);
            }
        }
        Ok(Lookup::Missing)
    }

    /// Makes the directory `upper` (an overlay upper dir, or the copy
    /// snapshotter's diff in the same format) the layer dir of `chain`, by a
    /// rename. Returns whether it was taken: when the chain has a dir
    /// already, or the rename is impossible (another file system), `upper`
    /// stays where it is and the layer unpacks from its blob when needed.
    pub fn adopt(&self, chain: &ChainId, upper: &Path) -> bool {
        let dest = self.layer_path(chain);
        if dest.is_dir() || self.area("layers").is_err() {
            return false;
        }
        rustix::fs::renameat_with(
            rustix::fs::CWD,
            upper,
            rustix::fs::CWD,
            &dest,
            rustix::fs::RenameFlags::NOREPLACE,
        )
        .is_ok()
    }

    /// The merged filesystem of `lower`, built once per chain id: a copy of
    /// the longest merged prefix already there, with the remaining layers
    /// unpacked on top.
    pub fn merged(&self, store: &ContentStore, lower: &Lower) -> Result<PathBuf, EngineError> {
        let name = |l: &[Sha256Digest]| {
            ChainId::of(l)
                .map(|c| c.digest().hex())
                .unwrap_or_else(|| "empty".to_string())
        };
        let path = self.dir.join("merged").join(name(&lower.diff_ids));
        if path.is_dir() {
            return Ok(path);
        }
        let dir = self.area("merged")?;
        let tmp = temp_name(&dir, &name(&lower.diff_ids));
        let base = (1..lower.len()).rev().find_map(|k| {
            let p = dir.join(name(&lower.diff_ids[..k]));
            p.is_dir().then_some((k, p))
        });
        let start = match &base {
            Some((k, parent)) => {
                copy_tree(parent, &tmp)?;
                *k
            }
            None => {
                fs::create_dir(&tmp).map_err(io(&tmp))?;
                0
            }
        };
        let result = (|| {
            for blob in &lower.blobs[start..] {
                unpack_layer(store.open_blob(blob)?, &tmp)?;
            }
            Ok(())
        })();
        if let Err(e) = result {
            let _ = fs::remove_dir_all(&tmp);
            return Err(e);
        }
        place(&tmp, &path)?;
        Ok(path)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::{FileTypeExt, MetadataExt};

    fn layer(store: &ContentStore, entries: &[(&str, tar::EntryType, &[u8])]) -> Sha256Digest {
        let mut builder = tar::Builder::new(Vec::new());
        for (path, kind, data) in entries {
            let mut header = tar::Header::new_ustar();
            header.set_entry_type(*kind);
            header.set_mode(if kind.is_dir() { 0o755 } else { 0o644 });
            header.set_size(data.len() as u64);
            header.set_uid(0);
            header.set_gid(0);
            header.set_mtime(0);
            header.set_path(path).unwrap();
            if kind.is_symlink() {
                header.set_link_name("etc").unwrap();
            }
            header.set_cksum();
            builder.append(&header, *data).unwrap();
        }
        store
            .put_bytes(&builder.into_inner().unwrap())
            .unwrap()
            .digest
    }

    /// A stack whose diff ids are the (uncompressed) blob digests.
    pub(super) fn stack(blobs: &[Sha256Digest]) -> Lower {
        Lower {
            diff_ids: blobs.to_vec(),
            blobs: blobs.to_vec(),
        }
    }

    #[test]
    fn layer_dirs_hold_each_layer_in_overlay_format_and_merged_applies_them() {
        use tar::EntryType as T;
        let dir = tempfile::tempdir().unwrap();
        let store = ContentStore::open(&dir.path().join("store")).unwrap();
        let l1 = layer(
            &store,
            &[
                ("a/", T::Directory, b""),
                ("a/f", T::Regular, b"1"),
                ("b/", T::Directory, b""),
                ("b/old", T::Regular, b"o"),
            ],
        );
        let l2 = layer(
            &store,
            &[
                ("a/", T::Directory, b""),
                ("a/.wh.f", T::Regular, b""),
                ("b/", T::Directory, b""),
                ("b/.wh..wh..opq", T::Regular, b""),
                ("b/new", T::Regular, b"n"),
            ],
        );
        let snaps = Snapshots::new(dir.path());
        let lower = stack(&[l1, l2]);
        let dirs = snaps.layers(&store, &lower).unwrap();
        assert_eq!(dirs.len(), 2);
        assert_eq!(fs::read(dirs[0].join("a/f")).unwrap(), b"1");
        let wh = fs::symlink_metadata(dirs[1].join("a/f")).unwrap();
        assert!(wh.file_type().is_char_device() && wh.rdev() == 0);
        let mut v = [0u8; 4];
        let n = rustix::fs::lgetxattr(dirs[1].join("b"), "trusted.overlay.opaque", &mut v).unwrap();
        assert_eq!(&v[..n], b"y");
        assert!(!dirs[1].join("b/old").exists());
        // Unpacked once: asking again gives the same dirs, nothing new.
        assert_eq!(snaps.layers(&store, &lower).unwrap(), dirs);

        let merged = snaps.merged(&store, &lower).unwrap();
        assert!(!merged.join("a/f").exists());
        assert!(!merged.join("b/old").exists());
        assert_eq!(fs::read(merged.join("b/new")).unwrap(), b"n");
        let names: Vec<_> = fs::read_dir(dir.path().join("snapshots/layers"))
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .collect();
        assert!(names.iter().all(|n| !n.starts_with(".tmp")), "{names:?}");
    }

    #[test]
    fn files_are_read_through_the_layer_dirs_by_overlay_rules() {
        use tar::EntryType as T;
        let dir = tempfile::tempdir().unwrap();
        let store = ContentStore::open(&dir.path().join("store")).unwrap();
        let l1 = layer(
            &store,
            &[
                ("etc/", T::Directory, b""),
                ("etc/passwd", T::Regular, b"old"),
                ("etc/group", T::Regular, b"g"),
                ("etc/shadow", T::Regular, b"s"),
                ("o/", T::Directory, b""),
                ("o/f", T::Regular, b"f"),
            ],
        );
        let l2 = layer(
            &store,
            &[
                ("etc/", T::Directory, b""),
                ("etc/passwd", T::Regular, b"new"),
                ("etc/.wh.shadow", T::Regular, b""),
                ("o/", T::Directory, b""),
                ("o/.wh..wh..opq", T::Regular, b""),
                ("link", T::Symlink, b""),
            ],
        );
        let snaps = Snapshots::new(dir.path());
        let lower = stack(&[l1, l2]);
        let read = |p| snaps.read_file(&store, &lower, p).unwrap();
        assert_eq!(read("etc/passwd"), Lookup::Content(b"new".to_vec()));
        assert_eq!(read("/etc/group"), Lookup::Content(b"g".to_vec()));
        assert_eq!(read("etc/shadow"), Lookup::Missing, "whited out");
        assert_eq!(read("o/f"), Lookup::Missing, "under an opaque dir");
        assert_eq!(read("etc/none"), Lookup::Missing);
        assert_eq!(read("etc"), Lookup::Missing, "a directory");
        assert_eq!(read("link/x"), Lookup::Symlink);
    }

    /// Two threads unpacking the same chain both succeed with one result.
    #[test]
    fn concurrent_builders_of_one_chain_share_the_winner() {
        use tar::EntryType as T;
        let dir = tempfile::tempdir().unwrap();
        let store = ContentStore::open(&dir.path().join("store")).unwrap();
        let l1 = layer(&store, &[("x", T::Regular, b"x")]);
        let l2 = layer(&store, &[("y", T::Regular, b"y")]);
        let lower = stack(&[l1, l2]);
        let snaps = Snapshots::new(dir.path());
        let results: Vec<_> = std::thread::scope(|s| {
            let handles: Vec<_> = (0..4)
                .map(|_| {
                    s.spawn(|| {
                        (
                            snaps.layers(&store, &lower).unwrap(),
                            snaps.merged(&store, &lower).unwrap(),
                        )
                    })
                })
                .collect();
            handles.into_iter().map(|h| h.join().unwrap()).collect()
        });
        assert!(results.windows(2).all(|w| w[0] == w[1]));
        assert_eq!(fs::read(results[0].1.join("y")).unwrap(), b"y");
        for area in ["layers", "merged"] {
            let left = fs::read_dir(dir.path().join("snapshots").join(area))
                .unwrap()
                .filter(|e| {
                    e.as_ref()
                        .unwrap()
                        .file_name()
                        .to_string_lossy()
                        .starts_with(".tmp")
                })
                .count();
            assert_eq!(left, 0, "temp dirs left in {area}");
        }
    }
}
