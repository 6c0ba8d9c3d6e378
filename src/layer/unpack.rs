//! Safe unpacking of layers onto a directory, in order, applying whiteouts.
//!
//! Nothing in a layer may write outside the target: entries with `..` or
//! absolute paths are rejected, parent directories that are symlinks are
//! resolved inside the root (a link that climbs out of it is rejected), hard
//! links must point inside, and the final component is never followed.
//! Ownership, permission bits (setuid/setgid/sticky included), xattrs and
//! device nodes are preserved; whiteouts (`.wh.NAME`) delete what lower
//! layers put there and opaque markers (`.wh..wh..opq`) empty a directory of
//! lower content.
//!
//! [`unpack_layer_overlay`] unpacks one layer on its own into an empty
//! directory in overlayfs's format instead, for use as an overlay lowerdir:
//! whiteouts become 0/0 character devices and opaque markers the
//! `trusted.overlay.opaque=y` xattr. Docker's overlay2 and containerd apply
//! layers the same way (into the layer's own directory), so a parent that
//! is a symlink in a lower layer is not followed there: the entry makes a
//! real directory that hides the lower symlink.

use std::collections::HashSet;
use std::fs;
use std::io::{self, BufRead, BufReader, Read};
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt, PermissionsExt};
use std::path::{Component, Path, PathBuf};

use super::{LayerError, OPAQUE_MARKER, WHITEOUT_PREFIX};

/// Why unpacking refused an entry.
fn unsafe_entry(path: &Path, reason: &'static str) -> LayerError {
    LayerError::InvalidPath {
        path: path.to_path_buf(),
        reason,
    }
}

/// Opens a (possibly compressed) layer stream: gzip and zstd are detected
/// by their magic bytes, anything else is read as a plain tar.
pub fn decompressed<'a, R: Read + 'a>(reader: R) -> io::Result<Box<dyn Read + 'a>> {
    let mut reader = BufReader::with_capacity(256 * 1024, reader);
    let head = reader.fill_buf()?;
    if head.starts_with(&[0x1f, 0x8b]) {
        Ok(Box::new(flate2::bufread::MultiGzDecoder::new(reader)))
    } else if head.starts_with(&[0x28, 0xb5, 0x2f, 0xfd]) {
        Ok(Box::new(zstd::stream::read::Decoder::with_buffer(reader)?))
    } else {
        Ok(Box::new(reader))
    }
}

/// Cleans a tar entry path into normal components, refusing `..` and
/// absolute paths.
fn clean_entry_path(raw: &Path) -> Result<PathBuf, LayerError> {
    let mut out = PathBuf::new();
    for component in raw.components() {
        match component {
            Component::Normal(c) => out.push(c),
            Component::CurDir => {}
            Component::ParentDir => return Err(unsafe_entry(raw, "contains `..`")),
            Component::RootDir | Component::Prefix(_) => {
                return Err(unsafe_entry(raw, "is absolute"))
            }
        }
    }
    Ok(out)
}

/// Resolves `rel` (normal components) against `root`, following symlinks in
/// every component but the last, never leaving `root`.
fn resolve_parent(root: &Path, rel: &Path) -> Result<PathBuf, LayerError> {
    let mut resolved = PathBuf::new();
    let parts: Vec<_> = rel.components().collect();
    let Some((last, parents)) = parts.split_last() else {
        return Ok(root.to_path_buf());
    };
    let mut pending: Vec<std::ffi::OsString> = parents
        .iter()
        .rev()
        .map(|c| c.as_os_str().to_os_string())
        .collect();
    let mut hops = 0;
    while let Some(part) = pending.pop() {
        if part == ".." {
            if !resolved.pop() {
                return Err(unsafe_entry(
                    rel,
                    "goes through a symlink that leaves the root",
                ));
            }
            continue;
        }
        if part == "." || part.is_empty() {
            continue;
        }
        resolved.push(&part);
        let here = root.join(&resolved);
        match fs::symlink_metadata(&here) {
            Ok(meta) if meta.file_type().is_symlink() => {
                hops += 1;
                if hops > 40 {
                    return Err(unsafe_entry(rel, "has too many levels of symbolic links"));
                }
                let target = fs::read_link(&here).map_err(LayerError::io("read link", &here))?;
                resolved.pop();
                if target.is_absolute() {
                    resolved = PathBuf::new(); // absolute links are relative to the root
                }
                for c in target.components().rev() {
                    match c {
                        Component::Normal(n) => pending.push(n.to_os_string()),
                        Component::ParentDir => pending.push("..".into()),
                        _ => {}
                    }
                }
            }
            _ => {}
        }
    }
    resolved.push(last.as_os_str());
    Ok(root.join(resolved))
}

/// Removes whatever is at `path` (file, link or tree); missing is fine.
fn remove_any(path: &Path) -> Result<(), LayerError> {
    match fs::symlink_metadata(path) {
        Ok(meta) if meta.is_dir() => {
            fs::remove_dir_all(path).map_err(LayerError::io("remove", path))
        }
        Ok(_) => fs::remove_file(path).map_err(LayerError::io("remove", path)),
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(()),
        Err(e) => Err(LayerError::io("inspect", path)(e)),
    }
}

/// How whiteouts are applied.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Format {
    /// Onto the merged tree: whiteouts delete, opaque markers empty.
    Merged,
    /// Into the layer's own overlay directory: whiteouts and opaque markers
    /// are recorded the way overlayfs reads them.
    Overlay,
}

/// The xattr overlayfs reads to make a directory opaque.
pub const OVERLAY_OPAQUE_XATTR: &str = "trusted.overlay.opaque";

/// Whether `meta` (from `symlink_metadata`) is an overlayfs whiteout: a 0/0
/// character device.
pub fn is_overlay_whiteout(meta: &fs::Metadata) -> bool {
    use std::os::unix::fs::{FileTypeExt, MetadataExt};
    meta.file_type().is_char_device() && meta.rdev() == 0
}

/// Whether the directory at `path` carries overlayfs's opaque xattr.
pub fn is_overlay_opaque(path: &Path) -> bool {
    let mut v = [0u8; 1];
    rustix::fs::lgetxattr(path, OVERLAY_OPAQUE_XATTR, &mut v).is_ok_and(|n| v[..n] == *b"y")
}

/// Unpacks one layer stream (compressed or not) onto `root`.
pub fn unpack_layer(reader: impl Read, root: &Path) -> Result<(), LayerError> {
    unpack(reader, root, Format::Merged)
}

/// Unpacks one layer stream into the empty directory `root` in overlayfs's
/// format (see the module doc), with the same safety rules.
pub fn unpack_layer_overlay(reader: impl Read, root: &Path) -> Result<(), LayerError> {
    unpack(reader, root, Format::Overlay)
}

fn unpack(reader: impl Read, root: &Path, format: Format) -> Result<(), LayerError> {
    let stream = decompressed(reader).map_err(|source| LayerError::Stream { source })?;
    let mut archive = tar::Archive::new(stream);
    let stream_err = |source| LayerError::Stream { source };
    let mut created: HashSet<PathBuf> = HashSet::new();
    let mut dir_modes: Vec<(PathBuf, u32)> = Vec::new();
    for entry in archive.entries().map_err(stream_err)? {
        let mut entry = entry.map_err(stream_err)?;
        let raw = entry.path().map_err(stream_err)?.into_owned();
        let rel = clean_entry_path(&raw)?;
        if rel.as_os_str().is_empty() {
            continue; // "./" itself
        }
        let name = rel
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default();
        let target = resolve_parent(root, &rel)?;
        if let Some(parent) = target.parent() {
            fs::DirBuilder::new()
                .recursive(true)
                .mode(0o755)
                .create(parent)
                .map_err(LayerError::io("create", parent))?;
        }
        if name == OPAQUE_MARKER && format == Format::Overlay {
            // Everything in this directory so far is this layer's own.
            let dir = target.parent().unwrap_or(root);
            rustix::fs::lsetxattr(
                dir,
                OVERLAY_OPAQUE_XATTR,
                b"y",
                rustix::fs::XattrFlags::empty(),
            )
            .map_err(|e| LayerError::io("set xattr on", dir)(e.into()))?;
            continue;
        }
        if name == OPAQUE_MARKER {
            let dir = target.parent().unwrap_or(root);
            if let Ok(children) = fs::read_dir(dir) {
                for child in children.flatten() {
                    let child_rel = rel
                        .parent()
                        .unwrap_or(Path::new(""))
                        .join(child.file_name());
                    if !created.contains(&child_rel) {
                        remove_any(&child.path())?;
                    }
                }
            }
            continue;
        }
        if let Some(hidden) = name.strip_prefix(WHITEOUT_PREFIX) {
            if hidden.is_empty() || hidden == "." || hidden == ".." || hidden.contains('/') {
                return Err(unsafe_entry(&raw, "is a malformed whiteout"));
            }
            let gone = target.with_file_name(hidden);
            remove_any(&gone)?;
            if format == Format::Overlay {
                rustix::fs::mknodat(
                    rustix::fs::CWD,
                    &gone,
                    rustix::fs::FileType::CharacterDevice,
                    rustix::fs::Mode::empty(),
                    0,
                )
                .map_err(|e| LayerError::io("mknod", &gone)(e.into()))?;
                created.insert(rel.with_file_name(hidden));
            }
            continue;
        }
        let header = entry.header().clone();
        let mode = header.mode().map_err(stream_err)? & 0o7777;
        let uid = header.uid().map_err(stream_err)? as u32;
        let gid = header.gid().map_err(stream_err)? as u32;
        let kind = header.entry_type();
        // Replace whatever is there, except a directory by a directory.
        let existing = fs::symlink_metadata(&target).ok();
        if let Some(meta) = &existing {
            if !(kind.is_dir() && meta.is_dir()) {
                remove_any(&target)?;
            }
        }
        if kind.is_dir() {
            fs::DirBuilder::new()
                .mode(0o755)
                .create(&target)
                .or_else(|e| {
                    if e.kind() == io::ErrorKind::AlreadyExists {
                        Ok(())
                    } else {
                        Err(e)
                    }
                })
                .map_err(LayerError::io("create", &target))?;
            dir_modes.push((target.clone(), mode));
        } else if kind.is_file() || kind == tar::EntryType::Continuous {
            let mut file = fs::OpenOptions::new()
                .write(true)
                .create_new(true)
                .mode(0o600)
                .custom_flags(rustix::fs::OFlags::NOFOLLOW.bits() as i32)
                .open(&target)
                .map_err(LayerError::io("create", &target))?;
            io::copy(&mut entry, &mut file).map_err(LayerError::io("write", &target))?;
        } else if kind.is_symlink() {
            let link = entry
                .link_name()
                .map_err(stream_err)?
                .unwrap_or_default()
                .into_owned();
            std::os::unix::fs::symlink(&link, &target)
                .map_err(LayerError::io("symlink", &target))?;
        } else if kind.is_hard_link() {
            let link = entry
                .link_name()
                .map_err(stream_err)?
                .unwrap_or_default()
                .into_owned();
            let link_rel = clean_entry_path(&link)?;
            let source = resolve_parent(root, &link_rel)?;
            let meta =
                fs::symlink_metadata(&source).map_err(LayerError::io("hard link to", &source))?;
            if meta.is_dir() {
                return Err(unsafe_entry(&raw, "is a hard link to a directory"));
            }
            fs::hard_link(&source, &target).map_err(LayerError::io("hard link", &target))?;
            created.insert(rel);
            continue; // a hard link shares its target's owner and mode
        } else if kind.is_character_special() || kind.is_block_special() || kind.is_fifo() {
            let file_type = if kind.is_fifo() {
                rustix::fs::FileType::Fifo
            } else if kind.is_character_special() {
                rustix::fs::FileType::CharacterDevice
            } else {
                rustix::fs::FileType::BlockDevice
            };
            let major = header.device_major().ok().flatten().unwrap_or(0);
            let minor = header.device_minor().ok().flatten().unwrap_or(0);
            rustix::fs::mknodat(
                rustix::fs::CWD,
                &target,
                file_type,
                rustix::fs::Mode::from_raw_mode(mode),
                rustix::fs::makedev(major, minor),
            )
            .map_err(|e| LayerError::io("mknod", &target)(e.into()))?;
        } else {
            // PAX/GNU metadata entries are consumed by the tar reader; other
            // types (e.g. sockets) have no place in a rootfs.
            continue;
        }
        rustix::fs::chownat(
            rustix::fs::CWD,
            &target,
            Some(rustix::fs::Uid::from_raw(uid)),
            Some(rustix::fs::Gid::from_raw(gid)),
            rustix::fs::AtFlags::SYMLINK_NOFOLLOW,
        )
        .or_else(|e| {
            if e == rustix::io::Errno::PERM {
                Ok(())
            } else {
                Err(e)
            }
        })
        .map_err(|e| LayerError::io("chown", &target)(e.into()))?;
        if let Some(pax) = entry.pax_extensions().map_err(stream_err)? {
            for ext in pax.flatten() {
                let Ok(key) = ext.key() else { continue };
                if let Some(xattr) = key.strip_prefix("SCHILY.xattr.") {
                    // Overlay's own attributes (opaque, redirect, metacopy)
                    // would change what a lowerdir means: a layer may not
                    // carry them.
                    if format == Format::Overlay
                        && (xattr.starts_with("trusted.overlay.")
                            || xattr.starts_with("user.overlay."))
                    {
                        continue;
                    }
                    rustix::fs::lsetxattr(
                        &target,
                        xattr,
                        ext.value_bytes(),
                        rustix::fs::XattrFlags::empty(),
                    )
                    .or_else(|e| {
                        if e == rustix::io::Errno::NOTSUP || e == rustix::io::Errno::PERM {
                            Ok(())
                        } else {
                            Err(e)
                        }
                    })
                    .map_err(|e| LayerError::io("set xattr on", &target)(e.into()))?;
                }
            }
        }
        // After chown (which clears setuid/setgid) and unaffected by the
        // umask; a directory's mode may forbid writing into it, so
        // directories get theirs at the end.
        if !kind.is_dir() && !kind.is_symlink() {
            fs::set_permissions(&target, fs::Permissions::from_mode(mode))
                .map_err(LayerError::io("chmod", &target))?;
        }
        created.insert(rel);
    }
    for (dir, mode) in dir_modes.into_iter().rev() {
        fs::set_permissions(&dir, fs::Permissions::from_mode(mode))
            .map_err(LayerError::io("chmod", &dir))?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tar_with(entries: &[(&str, tar::EntryType, &[u8], Option<&str>)]) -> Vec<u8> {
        let mut builder = tar::Builder::new(Vec::new());
        for (path, kind, data, link) in entries {
            let mut header = tar::Header::new_gnu();
            header.set_entry_type(*kind);
            header.set_mode(if kind.is_dir() { 0o755 } else { 0o644 });
            header.set_size(data.len() as u64);
            header.set_uid(0);
            header.set_gid(0);
            // set_path refuses `..`; write the raw name to test hostile input.
            let name = header.as_old_mut().name.as_mut();
            name[..path.len()].copy_from_slice(path.as_bytes());
            if let Some(link) = link {
                let l = header.as_old_mut().linkname.as_mut();
                l[..link.len()].copy_from_slice(link.as_bytes());
            }
            header.set_cksum();
            builder.append(&header, *data).unwrap();
        }
        builder.into_inner().unwrap()
    }

    use tar::EntryType as T;

    #[test]
    fn unpacks_and_applies_whiteouts_and_opaque_dirs() {
        let root = tempfile::tempdir().unwrap();
        let lower = tar_with(&[
            ("a/", T::Directory, b"", None),
            ("a/keep", T::Regular, b"k", None),
            ("a/gone", T::Regular, b"g", None),
            ("b/", T::Directory, b"", None),
            ("b/old", T::Regular, b"o", None),
            ("l", T::Symlink, b"", Some("a/keep")),
            ("h", T::Link, b"", Some("a/keep")),
        ]);
        unpack_layer(&lower[..], root.path()).unwrap();
        assert_eq!(fs::read(root.path().join("h")).unwrap(), b"k");
        assert_eq!(
            fs::read_link(root.path().join("l")).unwrap(),
            Path::new("a/keep")
        );
        let upper = tar_with(&[
            ("a/.wh.gone", T::Regular, b"", None),
            ("b/", T::Directory, b"", None),
            ("b/.wh..wh..opq", T::Regular, b"", None),
            ("b/new", T::Regular, b"n", None),
        ]);
        unpack_layer(&upper[..], root.path()).unwrap();
        assert!(root.path().join("a/keep").exists());
        assert!(!root.path().join("a/gone").exists());
        assert!(!root.path().join("b/old").exists());
        assert_eq!(fs::read(root.path().join("b/new")).unwrap(), b"n");
    }

    #[test]
    fn hostile_entries_are_rejected() {
        let outside = tempfile::tempdir().unwrap();
        let root = tempfile::tempdir().unwrap();
        for hostile in [
            tar_with(&[("../escape", T::Regular, b"x", None)]),
            tar_with(&[("a/../../escape", T::Regular, b"x", None)]),
            tar_with(&[("/abs", T::Regular, b"x", None)]),
            tar_with(&[("h", T::Link, b"", Some("../../etc/passwd"))]),
        ] {
            assert!(unpack_layer(&hostile[..], root.path()).is_err());
        }
        // A symlink that climbs out, then a file through it.
        let climb = "../".repeat(30);
        let through = tar_with(&[
            ("up", T::Symlink, b"", Some(&climb)),
            ("up/escape", T::Regular, b"x", None),
        ]);
        assert!(unpack_layer(&through[..], root.path()).is_err());
        // An absolute symlink is re-rooted: writing through it stays inside.
        let abs_link = outside.path().display().to_string();
        let rerooted = tar_with(&[
            ("out", T::Symlink, b"", Some(&abs_link)),
            ("out/f", T::Regular, b"x", None),
        ]);
        unpack_layer(&rerooted[..], root.path()).unwrap();
        assert_eq!(
            fs::read_dir(outside.path()).unwrap().count(),
            0,
            "nothing written outside"
        );
        assert!(root
            .path()
            .join(abs_link.trim_start_matches('/'))
            .join("f")
            .exists());
        // A final-component symlink is replaced, not followed.
        let victim = outside.path().join("victim");
        fs::write(&victim, "safe").unwrap();
        let replace = tar_with(&[
            ("v", T::Symlink, b"", Some(victim.to_str().unwrap())),
            ("v", T::Regular, b"pwned", None),
        ]);
        unpack_layer(&replace[..], root.path()).unwrap();
        assert_eq!(fs::read_to_string(&victim).unwrap(), "safe");
        assert_eq!(fs::read_to_string(root.path().join("v")).unwrap(), "pwned");
    }
}
