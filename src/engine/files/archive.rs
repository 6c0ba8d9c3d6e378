//! Tar archives that ADD extracts: recognising one by its content, and
//! turning its entries into layer entries under the destination without
//! ever letting one land outside it.
//!
//! Docker compatibility: an archive is recognised by content, never by name
//! (gzip, bzip2, xz, zstd or no compression, and a first block that is a
//! valid tar header); a file that is not one is copied as it is. Entries
//! keep their mode and owner (unless `--chown`), symlinks and hard links
//! stay links, and existing directories merge with the archive's. As moby's
//! unpacker does, an absolute entry name is taken relative to the
//! destination, while a name that climbs out with `..`, a relative symlink
//! target that leaves the destination, and an entry written through a
//! symlink are refused. So are whiteout names (`.wh.*`): in a layer they
//! would delete lower content instead of being files.
//!
//! File contents are streamed into a staging directory (one file per entry)
//! so the layer writer can read them like context files.

use std::collections::{BTreeMap, BTreeSet};
use std::fs::File;
use std::io::{self, BufRead, BufReader, Read};
use std::path::{Component, Path, PathBuf};

use crate::layer::{EntryKind as LayerKind, WHITEOUT_PREFIX};

use super::super::lowerfs::LowerFs;
use super::owner::{Chmod, Owner};
use super::staging::Staging;
use super::{Content, Planned};

/// Why an archive cannot be extracted.
#[derive(Debug, thiserror::Error)]
pub enum ArchiveError {
    #[error("reading archive {archive}: {source}")]
    Archive {
        archive: String,
        #[source]
        source: io::Error,
    },
    #[error("archive {archive}: entry {entry:?} {reason}; nothing was extracted")]
    UnsafeEntry {
        archive: String,
        entry: String,
        reason: &'static str,
    },
    #[error("{path}: {source}")]
    Io {
        path: PathBuf,
        #[source]
        source: io::Error,
    },
}

/// The size of a tar block (and of a header).
const BLOCK: usize = 512;

/// The compression of a stream, from its magic bytes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Compression {
    Gzip,
    Bzip2,
    Xz,
    Zstd,
    None,
}

impl Compression {
    /// Recognises the compression from the first bytes of a stream.
    pub fn sniff(head: &[u8]) -> Compression {
        if head.starts_with(&[0x1f, 0x8b]) {
            Compression::Gzip
        } else if head.starts_with(b"BZh") {
            Compression::Bzip2
        } else if head.starts_with(&[0xfd, b'7', b'z', b'X', b'Z', 0x00]) {
            Compression::Xz
        } else if head.starts_with(&[0x28, 0xb5, 0x2f, 0xfd]) {
            Compression::Zstd
        } else {
            Compression::None
        }
    }
}

/// The decompressed stream of `reader`.
fn decoder<'a, R: BufRead + 'a>(
    reader: R,
    compression: Compression,
) -> io::Result<Box<dyn Read + 'a>> {
    Ok(match compression {
        Compression::Gzip => Box::new(flate2::bufread::MultiGzDecoder::new(reader)),
        Compression::Bzip2 => Box::new(bzip2::bufread::MultiBzDecoder::new(reader)),
        Compression::Xz => Box::new(lzma_rust2::XzReader::new(reader, true)),
        Compression::Zstd => Box::new(zstd::stream::read::Decoder::with_buffer(reader)?),
        Compression::None => Box::new(reader),
    })
}

/// Whether `block` is a tar header: its checksum (the sum of its bytes with
/// the checksum field read as spaces) matches the stored one. An all-zero
/// block (an empty archive) is not: Docker copies such a file as it is.
fn is_tar_header(block: &[u8]) -> bool {
    if block.len() < BLOCK || block.iter().all(|b| *b == 0) {
        return false;
    }
    let stored = &block[148..156];
    let text: String = stored
        .iter()
        .map(|b| *b as char)
        .filter(|c| c.is_digit(8))
        .collect();
    let Ok(stored) = u32::from_str_radix(&text, 8) else {
        return false;
    };
    let sum: u32 = block[..BLOCK]
        .iter()
        .enumerate()
        .map(|(i, b)| {
            if (148..156).contains(&i) {
                32
            } else {
                u32::from(*b)
            }
        })
        .sum();
    sum == stored
}

/// Opens `path` as a tar archive: the decompressed tar stream when the file
/// is one, `None` when it is not (or does not decompress).
pub fn open(path: &Path) -> io::Result<Option<Box<dyn Read>>> {
    let mut reader = BufReader::with_capacity(256 * 1024, File::open(path)?);
    let compression = Compression::sniff(reader.fill_buf()?);
    let Ok(mut stream) = decoder(reader, compression) else {
        return Ok(None);
    };
    let mut head = Vec::with_capacity(BLOCK);
    // A stream that fails to decompress is "not an archive", as in moby.
    if (&mut stream)
        .take(BLOCK as u64)
        .read_to_end(&mut head)
        .is_err()
        || !is_tar_header(&head)
    {
        return Ok(None);
    }
    Ok(Some(Box::new(io::Cursor::new(head).chain(stream))))
}

/// Where and how an archive is extracted.
#[derive(Clone, Copy)]
pub struct Target<'a> {
    /// The archive, for messages (a context path or a URL).
    pub name: &'a str,
    /// The destination directory in the layer (no leading `/`; empty for
    /// the root), already resolved through the lower filesystem.
    pub dest: &'a str,
    pub lower: &'a LowerFs,
    pub owner: Option<Owner>,
    pub chmod: Option<&'a Chmod>,
}

/// The archive's entries as planned layer entries under `target.dest`,
/// file contents staged in `staging`. Hard links come out as files sharing
/// one staged file; `relink` (add.rs) turns them back into links once
/// the layer order is known.
pub fn extract(
    stream: Box<dyn Read>,
    target: &Target<'_>,
    staging: &mut Staging,
) -> Result<Vec<Planned>, ArchiveError> {
    let stream_err = |source: io::Error| ArchiveError::Archive {
        archive: target.name.to_string(),
        source,
    };
    let unsafe_entry = |entry: &str, reason: &'static str| ArchiveError::UnsafeEntry {
        archive: target.name.to_string(),
        entry: entry.to_string(),
        reason,
    };
    let mut archive = tar::Archive::new(stream);
    let mut planned = Vec::new();
    // Paths (relative to dest) the archive made directories, symlinks and
    // files (with their staged content).
    let mut dirs: BTreeSet<String> = BTreeSet::new();
    let mut links: BTreeSet<String> = BTreeSet::new();
    let mut files: BTreeMap<String, (PathBuf, u64)> = BTreeMap::new();
    for entry in archive.entries().map_err(stream_err)? {
        let mut entry = entry.map_err(stream_err)?;
        let raw = entry
            .path()
            .map_err(stream_err)?
            .to_string_lossy()
            .into_owned();
        let Some(rel) = clean(&raw).map_err(|reason| unsafe_entry(&raw, reason))? else {
            continue; // the archive's root: the destination keeps its own metadata
        };
        // A `.wh.` name in a layer means "delete": it cannot stand for a file.
        if rel.split('/').any(|part| part.starts_with(WHITEOUT_PREFIX)) {
            return Err(unsafe_entry(
                &raw,
                "has a whiteout name (`.wh.`), which a layer cannot hold as a file",
            ));
        }
        check_parents(&rel, target, &dirs, &links).map_err(|reason| unsafe_entry(&raw, reason))?;
        let header = entry.header();
        let entry_type = header.entry_type();
        let mode = header.mode().map_err(stream_err)? & 0o7777;
        let (uid, gid) = match target.owner {
            Some(o) => (o.uid, o.gid),
            None => (
                header.uid().map_err(stream_err)? as u32,
                header.gid().map_err(stream_err)? as u32,
            ),
        };
        let major = header.device_major().ok().flatten().unwrap_or(0);
        let minor = header.device_minor().ok().flatten().unwrap_or(0);
        let link = entry
            .link_name()
            .map_err(stream_err)?
            .map(|l| l.to_string_lossy().into_owned())
            .unwrap_or_default();
        let content = if entry_type.is_dir() {
            Content::Dir
        } else if entry_type.is_symlink() {
            if !link.starts_with('/') && clean(&join(parent(&rel), &link)).is_err() {
                return Err(unsafe_entry(
                    &raw,
                    "is a symlink that points outside the destination",
                ));
            }
            Content::Symlink(link)
        } else if entry_type.is_hard_link() {
            let to = clean(&link).ok().flatten().ok_or_else(|| {
                unsafe_entry(&raw, "is a hard link that points outside the destination")
            })?;
            let (abs, size) = files.get(&to).cloned().ok_or_else(|| {
                unsafe_entry(&raw, "is a hard link to a file not earlier in the archive")
            })?;
            files.insert(rel.clone(), (abs.clone(), size));
            Content::File { abs, size }
        } else if entry_type.is_file() || entry_type == tar::EntryType::Continuous {
            let abs = staging.next_path();
            let mut out = File::create(&abs).map_err(|source| ArchiveError::Io {
                path: abs.clone(),
                source,
            })?;
            let size = io::copy(&mut entry, &mut out).map_err(stream_err)?;
            files.insert(rel.clone(), (abs.clone(), size));
            Content::File { abs, size }
        } else if entry_type.is_character_special() || entry_type.is_block_special() {
            Content::Special(if entry_type.is_character_special() {
                LayerKind::CharDevice { major, minor }
            } else {
                LayerKind::BlockDevice { major, minor }
            })
        } else if entry_type.is_fifo() {
            Content::Special(LayerKind::Fifo)
        } else {
            continue; // PAX global headers and the like carry no file
        };
        match &content {
            Content::Dir => {
                dirs.insert(rel.clone());
                links.remove(&rel);
            }
            Content::Symlink(_) => {
                links.insert(rel.clone());
                dirs.remove(&rel);
            }
            _ => {
                links.remove(&rel);
                dirs.remove(&rel);
            }
        }
        if !matches!(content, Content::File { .. }) {
            files.remove(&rel);
        }
        let mode = match (&content, target.chmod) {
            (Content::Symlink(_), _) => 0o777,
            (_, Some(chmod)) => chmod.apply(mode, content == Content::Dir),
            (_, None) => mode,
        };
        planned.push(Planned {
            path: join(target.dest, &rel),
            content,
            mode,
            uid,
            gid,
        });
    }
    Ok(planned)
}

/// Cleans an entry name lexically: `./` and a leading `/` dropped, `a/../b`
/// folded. `None` for the archive root; an error when it climbs out.
fn clean(raw: &str) -> Result<Option<String>, &'static str> {
    let mut parts: Vec<&str> = Vec::new();
    for c in Path::new(raw).components() {
        match c {
            Component::Normal(p) => parts.push(p.to_str().unwrap_or_default()),
            Component::ParentDir => {
                if parts.pop().is_none() {
                    return Err("climbs out of the destination with `..`");
                }
            }
            // moby: an absolute name is relative to the destination.
            Component::RootDir | Component::CurDir | Component::Prefix(_) => {}
        }
    }
    if parts.iter().any(|p| p.is_empty()) {
        return Err("is not valid UTF-8");
    }
    Ok((!parts.is_empty()).then(|| parts.join("/")))
}

/// Refuses an entry whose parent is a symlink: the archive's own, or one
/// in the lower filesystem that leads out of the destination.
fn check_parents(
    rel: &str,
    target: &Target<'_>,
    dirs: &BTreeSet<String>,
    links: &BTreeSet<String>,
) -> Result<(), &'static str> {
    let mut ancestor = parent(rel);
    while !ancestor.is_empty() {
        if dirs.contains(ancestor) {
            return Ok(()); // made a directory by the archive, checked then
        }
        if links.contains(ancestor) {
            return Err("is written through a symlink of the archive");
        }
        let layer_path = join(target.dest, ancestor);
        let (resolved, _) = target.lower.resolve(&layer_path);
        if resolved != layer_path && !inside(&resolved, target.dest) {
            return Err("is written through a symlink that leaves the destination");
        }
        ancestor = parent(ancestor);
    }
    Ok(())
}

fn inside(path: &str, dir: &str) -> bool {
    dir.is_empty() || path == dir || path.starts_with(&format!("{dir}/"))
}

fn parent(path: &str) -> &str {
    path.rsplit_once('/').map_or("", |(p, _)| p)
}

fn join(base: &str, name: &str) -> String {
    match (base.is_empty(), name.is_empty()) {
        (true, _) => name.to_string(),
        (_, true) => base.to_string(),
        _ => format!("{base}/{name}"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A tar of (name, type, link, body) entries.
    fn tar_of(entries: &[(&str, tar::EntryType, &str, &[u8])]) -> Vec<u8> {
        let mut builder = tar::Builder::new(Vec::new());
        for (name, kind, link, body) in entries {
            let mut header = tar::Header::new_gnu();
            header.set_entry_type(*kind);
            header.set_mode(0o640);
            header.set_uid(5);
            header.set_gid(6);
            header.set_size(body.len() as u64);
            if !link.is_empty() {
                header.set_link_name(link).unwrap();
            }
            builder.append_data(&mut header, name, *body).unwrap();
        }
        builder.into_inner().unwrap()
    }

    fn extract_all(bytes: Vec<u8>, dest: &str) -> Result<Vec<Planned>, ArchiveError> {
        let home = tempfile::tempdir().unwrap();
        let mut staging = Staging::new(home.path()).unwrap();
        let lower = LowerFs::empty();
        let target = Target {
            name: "t.tar",
            dest,
            lower: &lower,
            owner: None,
            chmod: None,
        };
        extract(Box::new(io::Cursor::new(bytes)), &target, &mut staging)
    }

    #[test]
    fn entries_land_under_the_destination_with_their_metadata() {
        use tar::EntryType::*;
        let planned = extract_all(
            tar_of(&[
                ("./", Directory, "", b""),
                ("z/file", Regular, "", b"data"),
                ("a/link", Link, "z/file", b""),
                ("sym", Symlink, "z/file", b""),
                ("fifo", Fifo, "", b""),
            ]),
            "opt/app",
        )
        .unwrap();
        let paths: Vec<&str> = planned.iter().map(|p| p.path.as_str()).collect();
        assert_eq!(
            paths,
            [
                "opt/app/z/file",
                "opt/app/a/link",
                "opt/app/sym",
                "opt/app/fifo"
            ]
        );
        let file = &planned[0];
        assert!(matches!(file.content, Content::File { size: 4, .. }));
        assert_eq!((file.mode, file.uid, file.gid), (0o640, 5, 6));
        // The hard link shares the staged content until `relink`.
        assert_eq!(planned[1].content, file.content);
        assert_eq!(planned[2].content, Content::Symlink("z/file".into()));
        assert_eq!(planned[2].mode, 0o777);
        assert_eq!(planned[3].content, Content::Special(LayerKind::Fifo));
    }

    #[test]
    fn unsafe_entries_are_refused() {
        use tar::EntryType::*;
        let refused = |entries: &[(&str, tar::EntryType, &str, &[u8])]| {
            matches!(
                extract_all(tar_of(entries), "dest"),
                Err(ArchiveError::UnsafeEntry { .. })
            )
        };
        assert!(refused(&[("l", Link, "missing", b"")]));
        assert!(refused(&[("l", Link, "../../etc/passwd", b"")]));
        assert!(refused(&[("s", Symlink, "../..", b"")]));
        assert!(refused(&[
            ("s", Symlink, "/", b""),
            ("s/x", Regular, "", b"x")
        ]));
        // A symlink replaced by a directory is safe to write through.
        assert!(!refused(&[
            ("s", Symlink, "/", b""),
            ("s", Directory, "", b""),
            ("s/x", Regular, "", b"x")
        ]));
        assert!(!refused(&[
            ("s", Symlink, "/etc", b""),
            ("in", Symlink, "a/../b", b"")
        ]));
    }

    #[test]
    fn names_are_cleaned_or_refused() {
        assert_eq!(clean("./a/b"), Ok(Some("a/b".into())));
        assert_eq!(clean("/etc/passwd"), Ok(Some("etc/passwd".into())));
        assert_eq!(clean("a/../b/"), Ok(Some("b".into())));
        assert_eq!(clean("./"), Ok(None));
        assert!(clean("../x").is_err());
        assert!(clean("a/../../x").is_err());
    }

    #[test]
    fn compression_is_sniffed_by_content() {
        assert_eq!(Compression::sniff(&[0x1f, 0x8b, 8]), Compression::Gzip);
        assert_eq!(Compression::sniff(b"BZh91AY"), Compression::Bzip2);
        assert_eq!(
            Compression::sniff(&[0xfd, b'7', b'z', b'X', b'Z', 0, 0]),
            Compression::Xz
        );
        assert_eq!(
            Compression::sniff(&[0x28, 0xb5, 0x2f, 0xfd, 0]),
            Compression::Zstd
        );
        assert_eq!(Compression::sniff(b"hello"), Compression::None);
    }

    #[test]
    fn tar_headers_are_recognised_by_checksum() {
        let mut header = tar::Header::new_ustar();
        header.set_path("a.txt").unwrap();
        header.set_size(0);
        header.set_cksum();
        assert!(is_tar_header(header.as_bytes()));
        let mut broken = header.as_bytes().to_vec();
        broken[0] ^= 1;
        assert!(!is_tar_header(&broken));
        assert!(!is_tar_header(&[0; 512]));
        assert!(!is_tar_header(b"just text"));
    }
}
