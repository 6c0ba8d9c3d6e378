//! Walking a directory tree on disk into a layer, in [`super::entry_order`]:
//! names sorted by bytes within each directory, a directory before its
//! contents, symlinks not followed, hard links detected by (device, inode),
//! xattrs read without following links.

use std::collections::{BTreeMap, HashMap};
use std::fs::{self, File};
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::{FileTypeExt, MetadataExt};
use std::path::{Path, PathBuf};

use super::{Entry, EntryKind, LayerError, LayerWriter};

/// How a tree on disk becomes layer entries.
#[derive(Debug, Clone, Default)]
pub struct TreeOptions {
    /// Where the tree goes inside the layer (`app` puts it under `/app`,
    /// with an entry for `app/` itself). `None`: at the root, and the root
    /// directory itself gets no entry.
    pub prefix: Option<PathBuf>,
    /// Give every entry this uid/gid instead of the one on disk.
    pub owner: Option<(u32, u32)>,
    /// The tree is an overlayfs upper dir: 0/0 character devices are
    /// whiteouts and directories with the `overlay.opaque` xattr are opaque.
    pub overlay_upper: bool,
}

struct Walk<'a> {
    writer: &'a mut LayerWriter,
    opts: &'a TreeOptions,
    /// First layer path seen for each multiply-linked inode.
    links: HashMap<(u64, u64), PathBuf>,
}

pub(super) fn append_tree(
    writer: &mut LayerWriter,
    src: &Path,
    opts: &TreeOptions,
) -> Result<(), LayerError> {
    let mut walk = Walk {
        writer,
        opts,
        links: HashMap::new(),
    };
    match &opts.prefix {
        Some(prefix) => walk.visit(src, prefix.clone()),
        None => walk.children(src, None),
    }
}

impl Walk<'_> {
    /// Appends the entries of directory `dir` (on disk), whose layer path is
    /// `at` (`None` for the layer root).
    fn children(&mut self, dir: &Path, at: Option<&Path>) -> Result<(), LayerError> {
        let names: Vec<_> = fs::read_dir(dir)
            .map_err(LayerError::io("list", dir))?
            .map(|e| e.map(|e| e.file_name()))
            .collect::<Result<_, _>>()
            .map_err(LayerError::io("list", dir))?;
        // Sort by the name each child will have in the layer: in an upper
        // dir a whiteout device `x` becomes `.wh.x`.
        let mut keyed: Vec<(Vec<u8>, std::ffi::OsString)> = names
            .into_iter()
            .map(|name| {
                let mut key = name.as_bytes().to_vec();
                if self.opts.overlay_upper && is_whiteout_device(&dir.join(&name)) {
                    key.splice(0..0, super::WHITEOUT_PREFIX.bytes());
                }
                (key, name)
            })
            .collect();
        keyed.sort();
        for (_, name) in keyed {
            let layer_path = match at {
                Some(at) => at.join(&name),
                None => PathBuf::from(&name),
            };
            self.visit(&dir.join(&name), layer_path)?;
        }
        Ok(())
    }

    fn visit(&mut self, path: &Path, layer_path: PathBuf) -> Result<(), LayerError> {
        let meta = fs::symlink_metadata(path).map_err(LayerError::io("stat", path))?;
        let ft = meta.file_type();
        if self.opts.overlay_upper && ft.is_char_device() && meta.rdev() == 0 {
            // overlayfs marks a deleted lower entry with a 0/0 char device.
            return self.writer.append_whiteout(&layer_path);
        }
        let kind = if ft.is_dir() {
            EntryKind::Dir
        } else if ft.is_symlink() {
            let target = fs::read_link(path).map_err(LayerError::io("read link", path))?;
            EntryKind::Symlink { target }
        } else if ft.is_file() {
            EntryKind::File { size: meta.len() }
        } else if ft.is_char_device() {
            EntryKind::CharDevice {
                major: rustix::fs::major(meta.rdev()),
                minor: rustix::fs::minor(meta.rdev()),
            }
        } else if ft.is_block_device() {
            EntryKind::BlockDevice {
                major: rustix::fs::major(meta.rdev()),
                minor: rustix::fs::minor(meta.rdev()),
            }
        } else if ft.is_fifo() {
            EntryKind::Fifo
        } else {
            // Docker compatibility: sockets are skipped, as Go's archive/tar
            // cannot represent them and Docker leaves them out of layers.
            return Ok(());
        };
        let kind = match kind {
            EntryKind::Dir => EntryKind::Dir,
            other if meta.nlink() > 1 => {
                let key = (meta.dev(), meta.ino());
                match self.links.get(&key) {
                    Some(first) => EntryKind::Hardlink {
                        target: first.clone(),
                    },
                    None => {
                        self.links.insert(key, layer_path.clone());
                        other
                    }
                }
            }
            other => other,
        };
        let (uid, gid) = self.opts.owner.unwrap_or((meta.uid(), meta.gid()));
        let mut xattrs = read_xattrs(path)?;
        let opaque = self.opts.overlay_upper
            && ["trusted.overlay.opaque", "user.overlay.opaque"]
                .iter()
                .any(|k| xattrs.get(*k).is_some_and(|v| v.as_slice() == b"y"));
        if self.opts.overlay_upper {
            xattrs.retain(|k, _| {
                !k.starts_with("trusted.overlay.") && !k.starts_with("user.overlay.")
            });
        }
        let entry = Entry {
            path: layer_path,
            kind,
            mode: meta.mode() & 0o7777,
            uid,
            gid,
            mtime: u64::try_from(meta.mtime()).unwrap_or(0),
            xattrs,
        };
        match &entry.kind {
            EntryKind::File { .. } => {
                let mut file = File::open(path).map_err(LayerError::io("open", path))?;
                self.writer.append(&entry, Some(&mut file))
            }
            EntryKind::Dir => {
                self.writer.append(&entry, None)?;
                if opaque {
                    self.writer.append_opaque(&entry.path)?;
                }
                self.children(path, Some(&entry.path))
            }
            _ => self.writer.append(&entry, None),
        }
    }
}

fn is_whiteout_device(path: &Path) -> bool {
    fs::symlink_metadata(path).is_ok_and(|m| m.file_type().is_char_device() && m.rdev() == 0)
}

/// Extended attributes of `path` (not following symlinks), except
/// `security.selinux`: a host's labels do not belong in an image.
fn read_xattrs(path: &Path) -> Result<BTreeMap<String, Vec<u8>>, LayerError> {
    let mut out = BTreeMap::new();
    let len = match rustix::fs::llistxattr_query(path) {
        Ok(n) => n,
        // File systems without xattr support have none to copy.
        Err(rustix::io::Errno::NOTSUP) => return Ok(out),
        Err(e) => return Err(LayerError::io("list xattrs of", path)(e.into())),
    };
    if len == 0 {
        return Ok(out);
    }
    let mut names = vec![0u8; len];
    let n = rustix::fs::llistxattr(path, &mut names[..])
        .map_err(|e| LayerError::io("list xattrs of", path)(e.into()))?;
    for raw in names[..n].split(|&b| b == 0).filter(|s| !s.is_empty()) {
        let name = std::str::from_utf8(raw).map_err(|_| LayerError::XattrName {
            path: path.to_path_buf(),
            name: String::from_utf8_lossy(raw).into_owned(),
        })?;
        if name == "security.selinux" {
            continue;
        }
        let size = match rustix::fs::lgetxattr_query(path, name) {
            Ok(size) => size,
            // Removed between list and get.
            Err(rustix::io::Errno::NODATA) => continue,
            Err(e) => return Err(LayerError::io("read xattr of", path)(e.into())),
        };
        let mut value = vec![0u8; size];
        let got = rustix::fs::lgetxattr(path, name, &mut value[..])
            .map_err(|e| LayerError::io("read xattr of", path)(e.into()))?;
        value.truncate(got);
        out.insert(name.to_string(), value);
    }
    Ok(out)
}
