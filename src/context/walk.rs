//! The build context on disk: opening it with its ignore file, selecting the
//! files a COPY/ADD source names (wildcards, directories, symlinks), and
//! listing them in a stable order with what a checksum needs.

use std::fs;
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::{Component, Path, PathBuf};

use super::ignore::{clean, DockerIgnore, IgnoreError};
use super::pattern::{go_match, has_meta};

/// What went wrong reading the context.
#[derive(Debug, thiserror::Error)]
pub enum ContextError {
    #[error("build context {path}: {source}")]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("{path}: {source}")]
    Ignore { path: PathBuf, source: IgnoreError },
    #[error("{name:?}: {reason}")]
    BadSource { name: String, reason: String },
    #[error("{name:?} is excluded by {ignore_file}:{line} (pattern {pattern:?})")]
    Excluded {
        name: String,
        ignore_file: String,
        line: usize,
        pattern: String,
    },
    #[error("{name:?} not found in the build context{}", suggestion(.near))]
    NotFound { name: String, near: Vec<String> },
    #[error("{name:?} resolves to {target:?}, outside the build context")]
    OutsideContext { name: String, target: String },
}

fn suggestion(near: &[String]) -> String {
    match near {
        [] => String::new(),
        names => format!(
            " (did you mean {}?)",
            names
                .iter()
                .map(|n| format!("{n:?}"))
                .collect::<Vec<_>>()
                .join(" or ")
        ),
    }
}

fn io(path: &Path) -> impl FnOnce(std::io::Error) -> ContextError + '_ {
    move |source| ContextError::Io {
        path: path.to_path_buf(),
        source,
    }
}

/// The kind of a context entry.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum EntryKind {
    File,
    Dir,
    Symlink { target: String },
}

/// One file, directory or symlink selected from the context.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Entry {
    /// Path relative to the selection's base (`/`-separated); empty for the
    /// base itself.
    pub rel: String,
    /// Path relative to the context root.
    pub context_path: String,
    pub kind: EntryKind,
    /// Permission bits (including setuid/setgid/sticky).
    pub mode: u32,
    pub size: u64,
    /// Owner on disk: used when copying from a stage or image (a context's
    /// files are always copied as 0:0).
    pub uid: u32,
    pub gid: u32,
    /// File identity, for the content-hash index only (never in a key).
    pub stat: FileStat,
}

/// What the content-hash index compares to decide a file is unchanged.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct FileStat {
    pub dev: u64,
    pub ino: u64,
    pub size: u64,
    pub mtime_ns: i128,
    pub ctime_ns: i128,
}

impl FileStat {
    fn of(meta: &fs::Metadata) -> Self {
        FileStat {
            dev: meta.dev(),
            ino: meta.ino(),
            size: meta.size(),
            mtime_ns: meta.mtime() as i128 * 1_000_000_000 + meta.mtime_nsec() as i128,
            ctime_ns: meta.ctime() as i128 * 1_000_000_000 + meta.ctime_nsec() as i128,
        }
    }
}

/// One source of a COPY/ADD after wildcard expansion: the entries below it.
#[derive(Debug, Clone)]
pub struct Selection {
    /// The matched path relative to the context root.
    pub path: String,
    /// Whether the match is a directory (its contents are copied).
    pub is_dir: bool,
    /// The entries, sorted by `rel`; for a directory the first is the
    /// directory itself (`rel` empty).
    pub entries: Vec<Entry>,
}

/// A build context directory and its ignore rules.
#[derive(Debug, Clone)]
pub struct BuildContext {
    root: PathBuf,
    ignore: DockerIgnore,
    ignore_file: Option<PathBuf>,
}

impl BuildContext {
    /// Opens `root`. The ignore file is `<dockerfile>.dockerignore` next to
    /// the Dockerfile when that exists (Docker's precedence), else
    /// `root/.dockerignore`.
    pub fn open(root: &Path, dockerfile: Option<&Path>) -> Result<Self, ContextError> {
        let root = fs::canonicalize(root).map_err(io(root))?;
        if !root.is_dir() {
            return Err(ContextError::Io {
                path: root.clone(),
                source: std::io::Error::new(std::io::ErrorKind::NotADirectory, "not a directory"),
            });
        }
        let mut candidates = Vec::new();
        if let Some(dockerfile) = dockerfile {
            if let Some(name) = dockerfile.file_name() {
                let mut specific = name.to_os_string();
                specific.push(".dockerignore");
                candidates.push(dockerfile.with_file_name(specific));
            }
        }
        candidates.push(root.join(".dockerignore"));
        for candidate in candidates {
            match fs::read(&candidate) {
                Ok(bytes) => {
                    let text = String::from_utf8_lossy(&bytes);
                    let ignore =
                        DockerIgnore::parse(&text).map_err(|source| ContextError::Ignore {
                            path: candidate.clone(),
                            source,
                        })?;
                    return Ok(BuildContext {
                        root,
                        ignore,
                        ignore_file: Some(candidate),
                    });
                }
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => continue,
                Err(e) => return Err(io(&candidate)(e)),
            }
        }
        Ok(BuildContext {
            root,
            ignore: DockerIgnore::empty(),
            ignore_file: None,
        })
    }

    /// A directory with no ignore rules: a stage's or image's unpacked
    /// filesystem that COPY --from selects from.
    pub fn without_ignore(root: &Path) -> Result<Self, ContextError> {
        let root = fs::canonicalize(root).map_err(io(root))?;
        Ok(BuildContext {
            root,
            ignore: DockerIgnore::empty(),
            ignore_file: None,
        })
    }

    pub fn root(&self) -> &Path {
        &self.root
    }

    pub fn ignore(&self) -> &DockerIgnore {
        &self.ignore
    }

    /// The ignore file in use, if any.
    pub fn ignore_file(&self) -> Option<&Path> {
        self.ignore_file.as_deref()
    }

    /// Expands one COPY/ADD source (relative to the context root; `..` and a
    /// leading `/` cannot leave the root, as in BuildKit) into selections.
    /// Wildcards follow Go's `filepath.Match` per path component; excluded
    /// files are invisible. A source that matches nothing is an error that
    /// names near names, or the ignore rule that excludes it.
    pub fn select(&self, source: &str) -> Result<Vec<Selection>, ContextError> {
        let cleaned = clean(&format!("/{source}"));
        let rel = cleaned.trim_start_matches('/').to_string();
        let matches = if has_meta(&rel) {
            self.glob(&rel)?
        } else {
            vec![rel.clone()]
        };
        let mut selections = Vec::new();
        for path in &matches {
            if let Some(selection) = self.select_one(path, source)? {
                selections.push(selection);
            }
        }
        if selections.is_empty() {
            if !has_meta(&rel) {
                if let Some((line, pattern)) = self.ignore.excluding_line(&rel) {
                    return Err(ContextError::Excluded {
                        name: source.to_string(),
                        ignore_file: self.ignore_file_name(),
                        line,
                        pattern: pattern.to_string(),
                    });
                }
            }
            return Err(ContextError::NotFound {
                name: source.to_string(),
                near: self.near_names(&rel),
            });
        }
        Ok(selections)
    }

    fn ignore_file_name(&self) -> String {
        self.ignore_file
            .as_ref()
            .and_then(|p| p.file_name())
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_else(|| ".dockerignore".to_string())
    }

    /// Paths (relative to the root) that match a wildcard source.
    fn glob(&self, pattern: &str) -> Result<Vec<String>, ContextError> {
        let parts: Vec<&str> = if pattern.is_empty() {
            Vec::new()
        } else {
            pattern.split('/').collect()
        };
        let mut current = vec![String::new()];
        for part in parts {
            let mut next = Vec::new();
            for base in &current {
                let dir = if base.is_empty() {
                    self.root.clone()
                } else {
                    self.root.join(base)
                };
                if !has_meta(part) {
                    let candidate = join(base, part);
                    if fs::symlink_metadata(self.root.join(&candidate)).is_ok() {
                        next.push(candidate);
                    }
                    continue;
                }
                let Ok(read) = fs::read_dir(&dir) else {
                    continue;
                };
                let mut names: Vec<String> = read
                    .flatten()
                    .map(|e| e.file_name().to_string_lossy().into_owned())
                    .collect();
                names.sort();
                for name in names {
                    let matched = go_match(part, &name).map_err(|e| ContextError::BadSource {
                        name: pattern.to_string(),
                        reason: e.to_string(),
                    })?;
                    if matched {
                        next.push(join(base, &name));
                    }
                }
            }
            current = next;
        }
        Ok(current
            .into_iter()
            .filter(|p| !self.ignore.is_excluded(p))
            .collect())
    }

    fn select_one(&self, path: &str, source: &str) -> Result<Option<Selection>, ContextError> {
        if !path.is_empty() && self.ignore.is_excluded(path) && !self.ignore.has_exceptions() {
            return Ok(None);
        }
        // A top-level symlink is followed (Docker copies what it points to),
        // but never out of the context.
        let resolved = self.resolve(path, source)?;
        let abs = if resolved.is_empty() {
            self.root.clone()
        } else {
            self.root.join(&resolved)
        };
        let meta = match fs::metadata(&abs) {
            Ok(meta) => meta,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
            Err(e) => return Err(io(&abs)(e)),
        };
        if meta.is_dir() {
            let mut entries = Vec::new();
            entries.push(Entry {
                rel: String::new(),
                context_path: resolved.clone(),
                kind: EntryKind::Dir,
                mode: meta.permissions().mode() & 0o7777,
                size: 0,
                uid: meta.uid(),
                gid: meta.gid(),
                stat: FileStat::of(&meta),
            });
            self.walk(&abs, &resolved, "", &mut entries)?;
            if entries.len() == 1 && !resolved.is_empty() && self.ignore.is_excluded(&resolved) {
                return Ok(None);
            }
            entries.sort_by(|a, b| a.rel.cmp(&b.rel));
            Ok(Some(Selection {
                path: resolved,
                is_dir: true,
                entries,
            }))
        } else {
            if self.ignore.is_excluded(&resolved) {
                return Ok(None);
            }
            let entry = Entry {
                rel: base_name(path).to_string(),
                context_path: resolved.clone(),
                kind: EntryKind::File,
                mode: meta.permissions().mode() & 0o7777,
                size: meta.size(),
                uid: meta.uid(),
                gid: meta.gid(),
                stat: FileStat::of(&meta),
            };
            Ok(Some(Selection {
                path: resolved,
                is_dir: false,
                entries: vec![entry],
            }))
        }
    }

    /// Follows symlinks in `path` component by component, inside the root.
    fn resolve(&self, path: &str, source: &str) -> Result<String, ContextError> {
        let mut resolved: Vec<String> = Vec::new();
        let mut pending: Vec<String> = path
            .split('/')
            .filter(|p| !p.is_empty())
            .rev()
            .map(String::from)
            .collect();
        let mut hops = 0;
        while let Some(part) = pending.pop() {
            match part.as_str() {
                "." => continue,
                ".." => {
                    if resolved.pop().is_none() {
                        return Err(ContextError::OutsideContext {
                            name: source.to_string(),
                            target: path.to_string(),
                        });
                    }
                    continue;
                }
                _ => {}
            }
            resolved.push(part);
            let abs = self.root.join(resolved.join("/"));
            let Ok(meta) = fs::symlink_metadata(&abs) else {
                continue;
            };
            if !meta.file_type().is_symlink() {
                continue;
            }
            hops += 1;
            if hops > 40 {
                return Err(ContextError::BadSource {
                    name: source.to_string(),
                    reason: "too many levels of symbolic links".into(),
                });
            }
            let target = fs::read_link(&abs).map_err(io(&abs))?;
            resolved.pop();
            let target_str = target.to_string_lossy().into_owned();
            if target.is_absolute() {
                // An absolute target points outside the context by definition.
                return Err(ContextError::OutsideContext {
                    name: source.to_string(),
                    target: target_str,
                });
            }
            for component in target.components().rev() {
                match component {
                    Component::Normal(c) => pending.push(c.to_string_lossy().into_owned()),
                    Component::ParentDir => pending.push("..".into()),
                    _ => {}
                }
            }
        }
        Ok(resolved.join("/"))
    }

    fn walk(
        &self,
        dir: &Path,
        context_dir: &str,
        rel_dir: &str,
        out: &mut Vec<Entry>,
    ) -> Result<(), ContextError> {
        let read = fs::read_dir(dir).map_err(io(dir))?;
        let mut children: Vec<_> = read.collect::<Result<_, _>>().map_err(io(dir))?;
        children.sort_by_key(|e| e.file_name());
        for child in children {
            let name = child.file_name().to_string_lossy().into_owned();
            let context_path = join(context_dir, &name);
            let rel = join(rel_dir, &name);
            let excluded = self.ignore.is_excluded(&context_path);
            let abs = child.path();
            // lstat relative to the open directory (fstatat): no walk of
            // the whole path per file, which counts in large contexts.
            let meta = child.metadata().map_err(io(&abs))?;
            let file_type = meta.file_type();
            if file_type.is_dir() {
                if excluded && !self.ignore.has_exceptions() {
                    continue; // nothing below can come back
                }
                let before = out.len();
                if !excluded {
                    out.push(self.entry(&rel, &context_path, EntryKind::Dir, &meta));
                }
                self.walk(&abs, &context_path, &rel, out)?;
                // An excluded dir with re-included children is still created.
                if excluded && out.len() > before {
                    out.insert(
                        before,
                        self.entry(&rel, &context_path, EntryKind::Dir, &meta),
                    );
                }
                continue;
            }
            if excluded {
                continue;
            }
            let kind = if file_type.is_symlink() {
                let target = fs::read_link(&abs).map_err(io(&abs))?;
                EntryKind::Symlink {
                    target: target.to_string_lossy().into_owned(),
                }
            } else if file_type.is_file() {
                EntryKind::File
            } else {
                continue; // sockets, fifos and devices are not part of a context
            };
            out.push(self.entry(&rel, &context_path, kind, &meta));
        }
        Ok(())
    }

    fn entry(&self, rel: &str, context_path: &str, kind: EntryKind, meta: &fs::Metadata) -> Entry {
        let size = if kind == EntryKind::File {
            meta.size()
        } else {
            0
        };
        Entry {
            rel: rel.to_string(),
            context_path: context_path.to_string(),
            kind,
            mode: meta.permissions().mode() & 0o7777,
            size,
            uid: meta.uid(),
            gid: meta.gid(),
            stat: FileStat::of(meta),
        }
    }

    /// Names in the context close to `wanted`, for "did you mean".
    fn near_names(&self, wanted: &str) -> Vec<String> {
        let (dir, name) = match wanted.rfind('/') {
            Some(i) => (&wanted[..i], &wanted[i + 1..]),
            None => ("", wanted),
        };
        let Ok(read) = fs::read_dir(if dir.is_empty() {
            self.root.clone()
        } else {
            self.root.join(dir)
        }) else {
            return Vec::new();
        };
        let mut scored: Vec<(usize, String)> = read
            .flatten()
            .map(|e| e.file_name().to_string_lossy().into_owned())
            .filter(|candidate| !self.ignore.is_excluded(&join(dir, candidate)))
            .map(|candidate| {
                (
                    edit_distance(&candidate.to_lowercase(), &name.to_lowercase()),
                    candidate,
                )
            })
            .filter(|(d, c)| *d <= (c.len().max(name.len()) / 3).max(1))
            .collect();
        scored.sort();
        scored
            .into_iter()
            .take(2)
            .map(|(_, c)| join(dir, &c))
            .collect()
    }

    /// The absolute path of a context-relative path.
    pub fn abs(&self, context_path: &str) -> PathBuf {
        if context_path.is_empty() {
            self.root.clone()
        } else {
            self.root.join(context_path)
        }
    }
}

fn join(base: &str, name: &str) -> String {
    if base.is_empty() {
        name.to_string()
    } else {
        format!("{base}/{name}")
    }
}

fn base_name(path: &str) -> &str {
    path.rsplit('/').next().unwrap_or(path)
}

/// Levenshtein distance, for suggestions.
pub fn edit_distance(a: &str, b: &str) -> usize {
    let b: Vec<char> = b.chars().collect();
    let mut row: Vec<usize> = (0..=b.len()).collect();
    for (i, ca) in a.chars().enumerate() {
        let mut prev = row[0];
        row[0] = i + 1;
        for (j, cb) in b.iter().enumerate() {
            let cur = row[j + 1];
            row[j + 1] = if ca == *cb {
                prev
            } else {
                1 + prev.min(row[j]).min(row[j + 1])
            };
            prev = cur;
        }
    }
    row[b.len()]
}

#[cfg(test)]
mod tests {
    use super::*;

    fn context(files: &[(&str, &str)], ignore: &str) -> (tempfile::TempDir, BuildContext) {
        let dir = tempfile::tempdir().unwrap();
        for (path, contents) in files {
            let p = dir.path().join(path);
            fs::create_dir_all(p.parent().unwrap()).unwrap();
            fs::write(p, contents).unwrap();
        }
        if !ignore.is_empty() {
            fs::write(dir.path().join(".dockerignore"), ignore).unwrap();
        }
        let ctx = BuildContext::open(dir.path(), None).unwrap();
        (dir, ctx)
    }

    fn rels(selection: &Selection) -> Vec<&str> {
        selection.entries.iter().map(|e| e.rel.as_str()).collect()
    }

    #[test]
    fn directory_sources_list_their_contents_sorted_without_ignored_files() {
        let (_d, ctx) = context(
            &[
                ("src/b.rs", "b"),
                ("src/a.rs", "a"),
                ("src/x.log", "x"),
                ("src/sub/c.rs", "c"),
            ],
            "**/*.log\n",
        );
        let sel = ctx.select("src").unwrap();
        assert_eq!(sel.len(), 1);
        assert!(sel[0].is_dir);
        assert_eq!(rels(&sel[0]), vec!["", "a.rs", "b.rs", "sub", "sub/c.rs"]);
    }

    #[test]
    fn wildcards_match_per_component() {
        let (_d, ctx) = context(
            &[("a.txt", ""), ("b.txt", ""), ("c.md", ""), ("d/e.txt", "")],
            "",
        );
        let paths: Vec<String> = ctx
            .select("*.txt")
            .unwrap()
            .into_iter()
            .map(|s| s.path)
            .collect();
        assert_eq!(paths, vec!["a.txt", "b.txt"]);
        let paths: Vec<String> = ctx
            .select("*/*.txt")
            .unwrap()
            .into_iter()
            .map(|s| s.path)
            .collect();
        assert_eq!(paths, vec!["d/e.txt"]);
    }

    #[test]
    fn sources_cannot_leave_the_context() {
        let (_d, ctx) = context(&[("a.txt", "in")], "");
        // BuildKit clamps `..` at the root.
        assert_eq!(ctx.select("../../a.txt").unwrap()[0].path, "a.txt");
        assert_eq!(ctx.select("/a.txt").unwrap()[0].path, "a.txt");
    }

    #[test]
    fn symlinks_escaping_the_context_are_errors() {
        let (d, ctx) = context(&[("a.txt", "in")], "");
        std::os::unix::fs::symlink("/etc/passwd", d.path().join("abs")).unwrap();
        std::os::unix::fs::symlink("../../outside", d.path().join("rel")).unwrap();
        std::os::unix::fs::symlink("a.txt", d.path().join("ok")).unwrap();
        assert!(matches!(
            ctx.select("abs"),
            Err(ContextError::OutsideContext { .. })
        ));
        assert!(matches!(
            ctx.select("rel"),
            Err(ContextError::OutsideContext { .. })
        ));
        let sel = ctx.select("ok").unwrap();
        assert_eq!(sel[0].path, "a.txt");
        assert_eq!(sel[0].entries[0].rel, "ok");
    }

    #[test]
    fn symlinks_inside_directories_stay_symlinks() {
        let (d, ctx) = context(&[("dir/a.txt", "in")], "");
        std::os::unix::fs::symlink("a.txt", d.path().join("dir/link")).unwrap();
        let sel = ctx.select("dir").unwrap();
        let link = sel[0].entries.iter().find(|e| e.rel == "link").unwrap();
        assert_eq!(
            link.kind,
            EntryKind::Symlink {
                target: "a.txt".into()
            }
        );
    }

    #[test]
    fn missing_sources_suggest_near_names_or_name_the_ignore_rule() {
        let (_d, ctx) = context(
            &[("requirements.txt", ""), ("secret.key", "")],
            "# keys\nsecret.key\n",
        );
        match ctx.select("requirement.txt") {
            Err(ContextError::NotFound { near, .. }) => assert_eq!(near, vec!["requirements.txt"]),
            other => panic!("{other:?}"),
        }
        let err = ctx.select("secret.key").unwrap_err();
        assert!(
            matches!(err, ContextError::Excluded { line: 2, .. }),
            "{err:?}"
        );
        assert!(err.to_string().contains(".dockerignore:2"), "{err}");
    }

    #[test]
    fn dockerfile_specific_ignore_file_wins() {
        let (d, _) = context(&[("a.txt", ""), ("b.txt", "")], "a.txt\n");
        fs::write(d.path().join("Dockerfile.prod"), "FROM scratch").unwrap();
        fs::write(d.path().join("Dockerfile.prod.dockerignore"), "b.txt\n").unwrap();
        let ctx = BuildContext::open(d.path(), Some(&d.path().join("Dockerfile.prod"))).unwrap();
        assert!(ctx.select("a.txt").is_ok());
        assert!(ctx.select("b.txt").is_err());
    }

    #[test]
    fn exceptions_reinclude_files_in_excluded_dirs() {
        let (_d, ctx) = context(
            &[("docs/keep.md", "k"), ("docs/drop.md", "d")],
            "docs\n!docs/keep.md\n",
        );
        let sel = ctx.select(".").unwrap();
        let names = rels(&sel[0]);
        assert!(names.contains(&"docs/keep.md"), "{names:?}");
        assert!(names.contains(&"docs"), "{names:?}");
        assert!(!names.contains(&"docs/drop.md"), "{names:?}");
    }
}
