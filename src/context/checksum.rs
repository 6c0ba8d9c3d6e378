//! Content checksums of selected context files, for cache keys.
//!
//! A checksum covers exactly the selected entries: path (relative to the
//! selection), type, permission bits, size, and the content digest or link
//! target. Never mtime, inode, owner or where the context lives, so touching
//! files or moving the context leaves it unchanged.
//!
//! [`HashIndex`] remembers the content digest of files by identity (device,
//! inode, size, mtime, ctime), so an unchanged context is not re-read.

use std::collections::HashMap;
use std::fs;
use std::io::{self, BufRead, Write};
use std::path::Path;

use crate::digest::{Hasher, HashingReader, Sha256Digest};

use super::walk::{BuildContext, Entry, EntryKind, FileStat};

/// Content digests of files by identity.
#[derive(Debug, Default)]
pub struct HashIndex {
    known: HashMap<FileStat, Sha256Digest>,
    used: HashMap<FileStat, Sha256Digest>,
    /// Files read (not found in the index) since this index was loaded.
    pub hashed_files: u64,
}

/// Entries kept in the index file at most.
const INDEX_CAP: usize = 500_000;

impl HashIndex {
    pub fn new() -> Self {
        Self::default()
    }

    /// Loads an index file; a missing or damaged file gives an empty index
    /// (it is only a cache).
    pub fn load(path: &Path) -> Self {
        let mut index = HashIndex::new();
        let Ok(file) = fs::File::open(path) else {
            return index;
        };
        for line in io::BufReader::new(file).lines() {
            let Ok(line) = line else { break };
            let fields: Vec<&str> = line.split(' ').collect();
            let [dev, ino, size, mtime, ctime, digest] = fields[..] else {
                continue;
            };
            let parsed = (|| {
                let stat = FileStat {
                    dev: dev.parse().ok()?,
                    ino: ino.parse().ok()?,
                    size: size.parse().ok()?,
                    mtime_ns: mtime.parse().ok()?,
                    ctime_ns: ctime.parse().ok()?,
                };
                Some((stat, Sha256Digest::from_hex(digest).ok()?))
            })();
            if let Some((stat, digest)) = parsed {
                index.known.insert(stat, digest);
            }
        }
        index
    }

    /// Writes the index atomically (temp file + rename): entries used in
    /// this run first, then older ones up to a cap.
    pub fn save(&self, path: &Path) -> io::Result<()> {
        if let Some(parent) = path.parent() {
            fs::create_dir_all(parent)?;
        }
        let tmp = path.with_extension(format!("tmp.{}", std::process::id()));
        let result = (|| {
            let mut out = io::BufWriter::new(fs::File::create(&tmp)?);
            let older = self
                .known
                .iter()
                .filter(|(stat, _)| !self.used.contains_key(stat));
            for (stat, digest) in self.used.iter().chain(older).take(INDEX_CAP) {
                writeln!(
                    out,
                    "{} {} {} {} {} {}",
                    stat.dev,
                    stat.ino,
                    stat.size,
                    stat.mtime_ns,
                    stat.ctime_ns,
                    digest.hex()
                )?;
            }
            out.into_inner().map_err(|e| e.into_error())?.sync_all()?;
            fs::rename(&tmp, path)
        })();
        if result.is_err() {
            let _ = fs::remove_file(&tmp);
        }
        result
    }

    /// The content digest of the file at `abs` whose identity is `stat`.
    pub fn content_digest(&mut self, abs: &Path, stat: FileStat) -> io::Result<Sha256Digest> {
        if let Some(digest) = self.known.get(&stat).or_else(|| self.used.get(&stat)) {
            let digest = *digest;
            self.used.insert(stat, digest);
            return Ok(digest);
        }
        let mut reader = HashingReader::new(fs::File::open(abs)?);
        io::copy(&mut reader, &mut io::sink())?;
        let (_, digest, _) = reader.finish();
        self.hashed_files += 1;
        self.used.insert(stat, digest);
        Ok(digest)
    }
}

/// The checksum of `entries` (from one selection of `context`).
pub fn checksum(
    context: &BuildContext,
    entries: &[Entry],
    index: &mut HashIndex,
) -> io::Result<Sha256Digest> {
    let mut hasher = Hasher::new();
    hasher.update(b"imgb-context-checksum/v1\n");
    for entry in entries {
        // One line per entry; the path is length-prefixed so no name can
        // forge another entry's line.
        let line = match &entry.kind {
            EntryKind::Dir => format!("dir {:o} {}:{}\n", entry.mode, entry.rel.len(), entry.rel),
            EntryKind::Symlink { target } => format!(
                "symlink {}:{} {}:{}\n",
                entry.rel.len(),
                entry.rel,
                target.len(),
                target
            ),
            EntryKind::File => {
                let digest = index.content_digest(&context.abs(&entry.context_path), entry.stat)?;
                format!(
                    "file {:o} {} {} {}:{}\n",
                    entry.mode,
                    entry.size,
                    digest.hex(),
                    entry.rel.len(),
                    entry.rel
                )
            }
        };
        hasher.update(line.as_bytes());
    }
    Ok(hasher.finish())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn make(files: &[(&str, &str)]) -> tempfile::TempDir {
        let dir = tempfile::tempdir().unwrap();
        for (path, contents) in files {
            let p = dir.path().join(path);
            fs::create_dir_all(p.parent().unwrap()).unwrap();
            fs::write(p, contents).unwrap();
        }
        dir
    }

    fn sum(dir: &Path, source: &str, index: &mut HashIndex) -> Sha256Digest {
        let ctx = BuildContext::open(dir, None).unwrap();
        let selections = ctx.select(source).unwrap();
        checksum(&ctx, &selections[0].entries, index).unwrap()
    }

    #[test]
    fn checksum_ignores_mtime_and_location_but_not_content_or_mode() {
        let a = make(&[("src/a.txt", "one"), ("src/b/c.txt", "two")]);
        let b = make(&[("src/a.txt", "one"), ("src/b/c.txt", "two")]);
        let mut index = HashIndex::new();
        let base = sum(a.path(), "src", &mut index);
        assert_eq!(
            base,
            sum(b.path(), "src", &mut index),
            "another path, same content"
        );

        let f = fs::File::options()
            .write(true)
            .open(a.path().join("src/a.txt"))
            .unwrap();
        f.set_modified(std::time::SystemTime::UNIX_EPOCH).unwrap();
        assert_eq!(base, sum(a.path(), "src", &mut index), "mtime changed");

        fs::write(b.path().join("src/a.txt"), "ONE").unwrap();
        assert_ne!(base, sum(b.path(), "src", &mut index), "content changed");

        use std::os::unix::fs::PermissionsExt;
        fs::set_permissions(
            a.path().join("src/a.txt"),
            fs::Permissions::from_mode(0o600),
        )
        .unwrap();
        assert_ne!(base, sum(a.path(), "src", &mut index), "mode changed");
    }

    #[test]
    fn index_avoids_rehashing_and_survives_a_round_trip() {
        let a = make(&[("x", "1"), ("y", "2")]);
        let mut index = HashIndex::new();
        let first = sum(a.path(), ".", &mut index);
        assert_eq!(index.hashed_files, 2);
        let store = tempfile::tempdir().unwrap();
        let path = store.path().join("index");
        index.save(&path).unwrap();

        let mut loaded = HashIndex::load(&path);
        assert_eq!(sum(a.path(), ".", &mut loaded), first);
        assert_eq!(
            loaded.hashed_files, 0,
            "unchanged files were not read again"
        );

        fs::write(a.path().join("y"), "22").unwrap();
        let changed = sum(a.path(), ".", &mut loaded);
        assert_ne!(changed, first);
        assert_eq!(loaded.hashed_files, 1, "only the changed file was read");
    }

    #[test]
    fn damaged_index_is_ignored() {
        let store = tempfile::tempdir().unwrap();
        let path = store.path().join("index");
        fs::write(&path, "garbage\n1 2 3\n").unwrap();
        let index = HashIndex::load(&path);
        assert!(index.known.is_empty());
    }
}
