//! The files COPY and ADD put in a layer: selecting sources, mapping them
//! onto the destination as Docker does, and writing the new layer; ADD's
//! archives and downloads (`add`, `archive`), `--chown`/`--chmod` (`owner`).
//!
//! Docker compatibility, marked where it happens: a directory source copies
//! its contents; several source arguments need a destination ending in `/`;
//! a file copied onto an existing directory goes inside it; missing parents
//! are created (0755, root); later sources win over earlier ones.
//!
//! imgb difference (README): copied files get the mtime `SOURCE_DATE_EPOCH`
//! (0 when unset) instead of their mtime in the context, because mtimes are
//! not part of the cache key and everything left out of a key is normalised
//! out of the layer.

use std::collections::BTreeMap;
use std::fs::File;
use std::path::{Path, PathBuf};

use crate::context::{BuildContext, DockerIgnore, EntryKind, Selection};
use crate::layer::{entry_order, Entry, EntryKind as LayerKind, Layer, LayerOptions, LayerWriter};
use crate::store::ContentStore;

pub mod add;
pub mod archive;
pub mod owner;
mod staging;

use super::lowerfs::{normalise, LowerFs};
use super::EngineError;
use owner::{Chmod, Owner};

/// Where the bytes of a planned entry come from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Content {
    Dir,
    File {
        abs: PathBuf,
        size: u64,
    },
    Symlink(String),
    Inline(Vec<u8>),
    /// A hard link, device or fifo (from an archive ADD extracts).
    Special(LayerKind),
}

/// One entry of the layer to write.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Planned {
    /// Path in the layer (no leading `/`).
    pub path: String,
    pub content: Content,
    pub mode: u32,
    pub uid: u32,
    pub gid: u32,
}

/// How sources map onto the destination.
pub struct CopySpec<'a> {
    /// Source arguments (already expanded), relative to `root`.
    pub sources: &'a [String],
    /// Inline sources (heredocs): name and content.
    pub inline: &'a [(String, Vec<u8>)],
    /// Absolute destination; a trailing `/` means "into this directory".
    pub dest: &'a str,
    /// `--parents`: keep each source's parent directories under `dest`.
    pub parents: bool,
    /// `--exclude` patterns.
    pub excludes: &'a [String],
    /// Whether sources come from the build context (owner 0:0) rather than
    /// a stage or image (owner preserved).
    pub from_context: bool,
}

/// Selects the sources of `spec` in `root`.
pub fn select(root: &BuildContext, spec: &CopySpec<'_>) -> Result<Vec<Selection>, EngineError> {
    let excludes = if spec.excludes.is_empty() {
        None
    } else {
        Some(
            DockerIgnore::parse(&spec.excludes.join("\n")).map_err(|e| EngineError::Step {
                message: format!("invalid --exclude: {e}"),
            })?,
        )
    };
    let mut out = Vec::new();
    for source in spec.sources {
        for mut selection in root.select(source)? {
            if let Some(excludes) = &excludes {
                selection.entries.retain(|e| {
                    e.rel.is_empty()
                        || !excludes.is_excluded(&e.rel) && !excludes.is_excluded(&e.context_path)
                });
            }
            out.push(selection);
        }
    }
    Ok(out)
}

/// Maps selections onto the destination.
pub fn plan(
    root: &BuildContext,
    selections: &[Selection],
    spec: &CopySpec<'_>,
    lower: &LowerFs,
    owner: Option<Owner>,
    chmod: Option<&Chmod>,
) -> Result<Vec<Planned>, EngineError> {
    let dest_is_dir_hint = spec.dest.ends_with('/') || spec.dest.ends_with("/.");
    let dest_norm = normalise(spec.dest);
    let argument_count = spec.sources.len() + spec.inline.len();
    // Docker quirk: the rule counts source arguments, not matched files.
    if argument_count > 1 && !dest_is_dir_hint {
        return Err(EngineError::Step {
            message: "When using COPY with more than one source file, the destination must be a directory and end with a /"
                .to_string(),
        });
    }
    let many_matches = selections.len() + spec.inline.len() > 1;
    let into_dir = dest_is_dir_hint || many_matches || lower.is_dir(&dest_norm);
    // A destination that is an existing directory (maybe through symlinks)
    // is written at its resolved path.
    let dest_dir = if lower.is_dir(&dest_norm) {
        lower.resolve(&dest_norm).0
    } else {
        dest_norm.clone()
    };

    let mut planned: Vec<Planned> = Vec::new();
    let owner_of = |uid: u32, gid: u32| match owner {
        Some(o) => (o.uid, o.gid),
        None if spec.from_context => (0, 0),
        None => (uid, gid),
    };
    let mode_of = |mode: u32, is_dir: bool| chmod.map_or(mode, |c| c.apply(mode, is_dir));
    for selection in selections {
        let parent_prefix = if spec.parents {
            Path::new(&selection.path)
                .parent()
                .map(|p| p.to_string_lossy().into_owned())
                .unwrap_or_default()
        } else {
            String::new()
        };
        if selection.is_dir {
            let base = join(
                &join(&dest_dir, &parent_prefix),
                if spec.parents {
                    base_name(&selection.path)
                } else {
                    ""
                },
            );
            for entry in &selection.entries {
                let path = join(&base, &entry.rel);
                if path.is_empty() {
                    continue; // the root itself
                }
                let (uid, gid) = owner_of(entry.uid, entry.gid);
                let content = match &entry.kind {
                    EntryKind::Dir => {
                        if entry.rel.is_empty() {
                            if lower.is_dir(&path) {
                                continue; // keep the existing directory as it is
                            }
                            planned.push(Planned {
                                path,
                                content: Content::Dir,
                                mode: mode_of(0o755, true),
                                uid,
                                gid,
                            });
                            continue;
                        }
                        Content::Dir
                    }
                    EntryKind::File => Content::File {
                        abs: root.abs(&entry.context_path),
                        size: entry.size,
                    },
                    EntryKind::Symlink { target } => Content::Symlink(target.clone()),
                };
                let is_dir = content == Content::Dir;
                let mode = if matches!(content, Content::Symlink(_)) {
                    0o777
                } else {
                    mode_of(entry.mode, is_dir)
                };
                planned.push(Planned {
                    path,
                    content,
                    mode,
                    uid,
                    gid,
                });
            }
        } else {
            let Some(entry) = selection.entries.first() else {
                continue;
            };
            let name = if spec.parents {
                selection.path.clone()
            } else {
                entry.rel.clone()
            };
            let path = if into_dir || dest_dir.is_empty() {
                join(&dest_dir, &name)
            } else {
                dest_dir.clone()
            };
            let (uid, gid) = owner_of(entry.uid, entry.gid);
            planned.push(Planned {
                path,
                content: Content::File {
                    abs: root.abs(&entry.context_path),
                    size: entry.size,
                },
                mode: mode_of(entry.mode, false),
                uid,
                gid,
            });
        }
    }
    for (name, bytes) in spec.inline {
        let path = if into_dir || dest_dir.is_empty() {
            join(&dest_dir, name)
        } else {
            dest_dir.clone()
        };
        let (uid, gid) = owner.map_or((0, 0), |o| (o.uid, o.gid));
        planned.push(Planned {
            path,
            content: Content::Inline(bytes.clone()),
            mode: mode_of(0o644, false),
            uid,
            gid,
        });
    }
    if planned.is_empty()
        && !dest_dir.is_empty()
        && !lower.is_dir(&dest_dir)
        && selections.iter().any(|s| s.is_dir)
    {
        // An empty directory source still creates the destination.
        let (uid, gid) = owner.map_or((0, 0), |o| (o.uid, o.gid));
        planned.push(Planned {
            path: dest_dir.clone(),
            content: Content::Dir,
            mode: mode_of(0o755, true),
            uid,
            gid,
        });
    }
    Ok(with_parents(planned, lower))
}

/// Sorts in layer order, keeps the last of duplicate paths, and adds the
/// missing parent directories.
pub fn with_parents(planned: Vec<Planned>, lower: &LowerFs) -> Vec<Planned> {
    let mut by_path: BTreeMap<String, Planned> = BTreeMap::new();
    for p in planned {
        by_path.insert(p.path.clone(), p);
    }
    let paths: Vec<String> = by_path.keys().cloned().collect();
    for path in paths {
        let mut ancestor = Path::new(&path).parent();
        while let Some(dir) = ancestor {
            let dir_str = dir.to_string_lossy().into_owned();
            if dir_str.is_empty() {
                break;
            }
            if !by_path.contains_key(&dir_str) && !lower.is_dir(&dir_str) {
                by_path.insert(
                    dir_str.clone(),
                    Planned {
                        path: dir_str,
                        content: Content::Dir,
                        mode: 0o755,
                        uid: 0,
                        gid: 0,
                    },
                );
            }
            ancestor = dir.parent();
        }
    }
    let mut out: Vec<Planned> = by_path.into_values().collect();
    out.sort_by(|a, b| entry_order(Path::new(&a.path), Path::new(&b.path)));
    out
}

/// Writes `planned` as one layer.
pub fn write(
    store: &ContentStore,
    opts: &LayerOptions,
    planned: &[Planned],
    mtime: u64,
) -> Result<Layer, EngineError> {
    let mut writer = LayerWriter::new(store, opts)?;
    for p in planned {
        let kind = match &p.content {
            Content::Dir => LayerKind::Dir,
            Content::File { size, .. } => LayerKind::File { size: *size },
            Content::Symlink(target) => LayerKind::Symlink {
                target: PathBuf::from(target),
            },
            Content::Inline(bytes) => LayerKind::File {
                size: bytes.len() as u64,
            },
            Content::Special(kind) => kind.clone(),
        };
        let entry = Entry {
            path: PathBuf::from(&p.path),
            kind,
            mode: p.mode,
            uid: p.uid,
            gid: p.gid,
            mtime,
            xattrs: BTreeMap::new(),
        };
        match &p.content {
            Content::File { abs, .. } => {
                let mut file = File::open(abs).map_err(|source| EngineError::Io {
                    path: abs.clone(),
                    source,
                })?;
                writer.append(&entry, Some(&mut file))?;
            }
            Content::Inline(bytes) => writer.append(&entry, Some(&mut &bytes[..]))?,
            _ => writer.append(&entry, None)?,
        }
    }
    Ok(writer.finish()?)
}

fn join(base: &str, name: &str) -> String {
    match (base.is_empty(), name.is_empty()) {
        (true, _) => name.to_string(),
        (_, true) => base.to_string(),
        _ => format!("{base}/{name}"),
    }
}

fn base_name(path: &str) -> &str {
    path.rsplit('/').next().unwrap_or(path)
}
