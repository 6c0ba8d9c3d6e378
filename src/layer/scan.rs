//! Reading an image's final files straight from its layer blobs, without
//! unpacking or mounting anything: the SBOM's view of an image.
//!
//! Layers are read bottom to top. Each regular file (or hard link to one)
//! is offered to the caller's `wants`; a wanted file's content is streamed
//! to `extract`, which keeps what it likes (a few bytes or the whole
//! file). A later layer's whiteout, opaque directory or replacing entry
//! drops what lower layers kept at that path, exactly as unpacking would,
//! so the result describes the merged filesystem.

use std::collections::BTreeMap;
use std::io::{self, Read};
use std::path::{Component, Path};

use super::{decompressed, LayerError, OPAQUE_MARKER, WHITEOUT_PREFIX};
use crate::digest::Sha256Digest;
use crate::store::ContentStore;

/// What a file's tar header says, for `wants`.
#[derive(Debug, Clone, Copy)]
pub struct FileInfo {
    /// Permission bits.
    pub mode: u32,
    pub size: u64,
}

/// Reads a wanted file's content (its path, a reader of its bytes) and
/// returns what to keep of it, if anything.
pub type Extract = dyn Fn(&str, &mut dyn Read) -> io::Result<Option<Vec<u8>>>;

/// A path as a key: normal components joined by `/`, no leading `/`.
fn key(raw: &Path) -> Option<String> {
    let mut parts = Vec::new();
    for c in raw.components() {
        match c {
            Component::Normal(n) => parts.push(n.to_str()?.to_string()),
            Component::CurDir | Component::RootDir => {}
            Component::ParentDir | Component::Prefix(_) => return None,
        }
    }
    Some(parts.join("/"))
}

/// Drops `path` and everything below it.
fn remove_tree(kept: &mut BTreeMap<String, Vec<u8>>, path: &str) {
    kept.remove(path);
    remove_below(kept, path);
}

/// Drops everything below `dir` (not `dir` itself).
fn remove_below(kept: &mut BTreeMap<String, Vec<u8>>, dir: &str) {
    let prefix = if dir.is_empty() {
        String::new()
    } else {
        format!("{dir}/")
    };
    let doomed: Vec<String> = kept
        .range(prefix.clone()..)
        .take_while(|(k, _)| k.starts_with(&prefix))
        .map(|(k, _)| k.clone())
        .collect();
    for k in doomed {
        kept.remove(&k);
    }
}

/// Reads the layers `layers` (blob digests in the store, bottom first) and
/// returns what `extract` kept of the wanted files of the merged
/// filesystem, keyed by path (no leading `/`).
pub fn scan_files(
    store: &ContentStore,
    layers: &[Sha256Digest],
    wants: &dyn Fn(&str, FileInfo) -> bool,
    extract: &Extract,
) -> Result<BTreeMap<String, Vec<u8>>, LayerError> {
    let mut kept: BTreeMap<String, Vec<u8>> = BTreeMap::new();
    for digest in layers {
        let file = store.open_blob(digest)?;
        scan_layer(file, &mut kept, wants, extract)?;
    }
    Ok(kept)
}

/// Applies one layer stream (compressed or not) to `kept`.
pub fn scan_layer(
    reader: impl Read,
    kept: &mut BTreeMap<String, Vec<u8>>,
    wants: &dyn Fn(&str, FileInfo) -> bool,
    extract: &Extract,
) -> Result<(), LayerError> {
    let stream_err = |source| LayerError::Stream { source };
    let stream = decompressed(reader).map_err(stream_err)?;
    let mut archive = tar::Archive::new(stream);
    // This layer's own files: whiteouts and opaque markers apply to the
    // layers below only, whatever their place in the tar.
    let mut ours: BTreeMap<String, Option<Vec<u8>>> = BTreeMap::new();
    let mut removed: Vec<String> = Vec::new();
    let mut opaque: Vec<String> = Vec::new();
    for entry in archive.entries().map_err(stream_err)? {
        let mut entry = entry.map_err(stream_err)?;
        let raw = entry.path().map_err(stream_err)?.into_owned();
        let Some(path) = key(&raw) else {
            continue; // unsafe paths never make it into a filesystem
        };
        if path.is_empty() {
            continue;
        }
        let (dir, name) = match path.rsplit_once('/') {
            Some((d, n)) => (d.to_string(), n.to_string()),
            None => (String::new(), path.clone()),
        };
        if name == OPAQUE_MARKER {
            opaque.push(dir);
            continue;
        }
        if let Some(hidden) = name.strip_prefix(WHITEOUT_PREFIX) {
            removed.push(if dir.is_empty() {
                hidden.to_string()
            } else {
                format!("{dir}/{hidden}")
            });
            continue;
        }
        let header = entry.header();
        let kind = header.entry_type();
        if kind.is_hard_link() {
            let target = entry.link_name().map_err(stream_err)?.and_then(|l| key(&l));
            let value = target.and_then(|t| ours.get(&t).cloned().flatten());
            ours.insert(path, value);
            continue;
        }
        if !(kind.is_file() || kind == tar::EntryType::Continuous) {
            if !kind.is_dir() {
                // A link, device or fifo replaces the file and what a
                // lower directory at this path held.
                removed.push(path.clone());
            }
            ours.insert(path, None);
            continue;
        }
        let info = FileInfo {
            mode: header.mode().map_err(stream_err)? & 0o7777,
            size: header.size().map_err(stream_err)?,
        };
        let value = if wants(&path, info) {
            extract(&path, &mut entry).map_err(stream_err)?
        } else {
            None
        };
        // A file replaces a lower directory of the same name.
        removed.push(path.clone());
        ours.insert(path, value);
    }
    for dir in &opaque {
        remove_below(kept, dir);
    }
    for path in &removed {
        remove_tree(kept, path);
    }
    for (path, value) in ours {
        match value {
            Some(v) => {
                kept.insert(path, v);
            }
            None => {
                kept.remove(&path);
            }
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tar_of(entries: &[(&str, Option<&str>)]) -> Vec<u8> {
        let mut b = tar::Builder::new(Vec::new());
        for (path, content) in entries {
            let mut h = tar::Header::new_gnu();
            match content {
                Some(c) => {
                    h.set_entry_type(tar::EntryType::Regular);
                    h.set_size(c.len() as u64);
                    h.set_mode(0o644);
                    h.set_cksum();
                    b.append_data(&mut h, path, c.as_bytes()).unwrap();
                }
                None => {
                    h.set_entry_type(tar::EntryType::Directory);
                    h.set_size(0);
                    h.set_mode(0o755);
                    h.set_cksum();
                    b.append_data(&mut h, path, &[][..]).unwrap();
                }
            }
        }
        b.into_inner().unwrap()
    }

    fn scan(layers: &[Vec<u8>]) -> BTreeMap<String, String> {
        let mut kept = BTreeMap::new();
        let wants = |p: &str, _: FileInfo| p.ends_with(".txt");
        let extract = |_: &str, r: &mut dyn Read| {
            let mut s = Vec::new();
            r.read_to_end(&mut s)?;
            Ok(Some(s))
        };
        for l in layers {
            scan_layer(&l[..], &mut kept, &wants, &extract).unwrap();
        }
        kept.into_iter()
            .map(|(k, v)| (k, String::from_utf8(v).unwrap()))
            .collect()
    }

    #[test]
    fn whiteouts_opaque_dirs_and_replacements_apply_to_lower_layers() {
        let base = tar_of(&[
            ("./etc/", None),
            ("./etc/a.txt", Some("a")),
            ("./etc/b.txt", Some("b")),
            ("./opq/", None),
            ("./opq/old.txt", Some("old")),
            ("./gone/", None),
            ("./gone/x.txt", Some("x")),
            ("./keep.bin", Some("not wanted")),
            ("./replaced.txt", Some("v1")),
        ]);
        let upper = tar_of(&[
            ("etc/.wh.a.txt", Some("")),
            ("opq/", None),
            ("opq/new.txt", Some("new")),
            ("opq/.wh..wh..opq", Some("")),
            (".wh.gone", Some("")),
            ("replaced.txt", Some("v2")),
        ]);
        let files = scan(&[base, upper]);
        assert_eq!(
            files,
            BTreeMap::from([
                ("etc/b.txt".to_string(), "b".to_string()),
                ("opq/new.txt".to_string(), "new".to_string()),
                ("replaced.txt".to_string(), "v2".to_string()),
            ])
        );
    }

    #[test]
    fn a_file_or_link_replacing_a_directory_drops_its_contents() {
        let base = tar_of(&[("d/", None), ("d/in.txt", Some("in"))]);
        let mut b = tar::Builder::new(Vec::new());
        let mut h = tar::Header::new_gnu();
        h.set_entry_type(tar::EntryType::Symlink);
        h.set_size(0);
        h.set_mode(0o777);
        b.append_link(&mut h, "d", "elsewhere").unwrap();
        let upper = b.into_inner().unwrap();
        assert!(scan(&[base, upper]).is_empty());
    }

    #[test]
    fn hard_links_share_what_their_target_kept() {
        let mut b = tar::Builder::new(Vec::new());
        let mut h = tar::Header::new_gnu();
        h.set_entry_type(tar::EntryType::Regular);
        h.set_size(2);
        h.set_mode(0o644);
        b.append_data(&mut h, "a.txt", &b"hi"[..]).unwrap();
        let mut l = tar::Header::new_gnu();
        l.set_entry_type(tar::EntryType::Link);
        l.set_size(0);
        b.append_link(&mut l, "b.txt", "a.txt").unwrap();
        let files = scan(&[b.into_inner().unwrap()]);
        assert_eq!(files.get("b.txt").map(String::as_str), Some("hi"));
    }
}
