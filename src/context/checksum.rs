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
use std::io::{self, Read, Write};
use std::path::Path;
use std::sync::atomic::{AtomicUsize, Ordering};

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

/// The first bytes of an index file (its format version).
const INDEX_MAGIC: &[u8] = b"imgb-hash-index/2\n";

/// One record: dev, ino, size (u64 LE), mtime, ctime (i128 LE ns), digest.
const RECORD: usize = 8 * 3 + 16 * 2 + 32;

fn encode(stat: &FileStat, digest: &Sha256Digest, out: &mut Vec<u8>) {
    out.extend_from_slice(&stat.dev.to_le_bytes());
    out.extend_from_slice(&stat.ino.to_le_bytes());
    out.extend_from_slice(&stat.size.to_le_bytes());
    out.extend_from_slice(&stat.mtime_ns.to_le_bytes());
    out.extend_from_slice(&stat.ctime_ns.to_le_bytes());
    out.extend_from_slice(digest.as_bytes());
}

fn decode(record: &[u8]) -> (FileStat, Sha256Digest) {
    let u64_at = |at: usize| {
        let mut b = [0u8; 8];
        b.copy_from_slice(&record[at..at + 8]);
        u64::from_le_bytes(b)
    };
    let i128_at = |at: usize| {
        let mut b = [0u8; 16];
        b.copy_from_slice(&record[at..at + 16]);
        i128::from_le_bytes(b)
    };
    let mut digest = [0u8; 32];
    digest.copy_from_slice(&record[56..88]);
    let stat = FileStat {
        dev: u64_at(0),
        ino: u64_at(8),
        size: u64_at(16),
        mtime_ns: i128_at(24),
        ctime_ns: i128_at(40),
    };
    (stat, Sha256Digest::from_bytes(digest))
}

impl HashIndex {
    pub fn new() -> Self {
        Self::default()
    }

    /// Loads an index file; a missing or damaged file gives an empty index
    /// (it is only a cache).
    pub fn load(path: &Path) -> Self {
        let mut index = HashIndex::new();
        let Ok(bytes) = fs::read(path) else {
            return index;
        };
        let Some(records) = bytes.strip_prefix(INDEX_MAGIC) else {
            return index;
        };
        if records.len() % RECORD != 0 {
            return index;
        }
        index.known.reserve(records.len() / RECORD);
        for record in records.chunks_exact(RECORD) {
            let (stat, digest) = decode(record);
            index.known.insert(stat, digest);
        }
        index
    }

    /// Writes the index atomically (temp file + rename): entries used in
    /// this run first, then older ones up to a cap. Fixed-size binary
    /// records: an index of a large context loads in a few milliseconds.
    pub fn save(&self, path: &Path) -> io::Result<()> {
        if let Some(parent) = path.parent() {
            fs::create_dir_all(parent)?;
        }
        let tmp = path.with_extension(format!("tmp.{}", std::process::id()));
        let result = (|| {
            let older = self
                .known
                .iter()
                .filter(|(stat, _)| !self.used.contains_key(stat));
            let count = (self.used.len() + self.known.len()).min(INDEX_CAP);
            let mut bytes = Vec::with_capacity(INDEX_MAGIC.len() + count * RECORD);
            bytes.extend_from_slice(INDEX_MAGIC);
            for (stat, digest) in self.used.iter().chain(older).take(INDEX_CAP) {
                encode(stat, digest, &mut bytes);
            }
            let mut file = fs::File::create(&tmp)?;
            file.write_all(&bytes)?;
            file.sync_all()?;
            fs::rename(&tmp, path)
        })();
        if result.is_err() {
            let _ = fs::remove_file(&tmp);
        }
        result
    }

    /// The digest of a file whose identity is `stat`, when the index knows
    /// it (then it is kept in the next saved index).
    pub fn known(&mut self, stat: FileStat) -> Option<Sha256Digest> {
        let digest = *self.known.get(&stat).or_else(|| self.used.get(&stat))?;
        self.used.insert(stat, digest);
        Some(digest)
    }

    /// The content digest of the file at `abs` whose identity is `stat`.
    pub fn content_digest(&mut self, abs: &Path, stat: FileStat) -> io::Result<Sha256Digest> {
        if let Some(digest) = self.known.get(&stat).or_else(|| self.used.get(&stat)) {
            let digest = *digest;
            self.used.insert(stat, digest);
            return Ok(digest);
        }
        let digest = hash_file(abs)?;
        self.hashed_files += 1;
        self.used.insert(stat, digest);
        Ok(digest)
    }

    /// Hashes the files among `entries` that the index does not know, on
    /// every core (reading and hashing a large context is most of a cold
    /// COPY's checksum). A file that cannot be read is left for the serial
    /// pass, which reports it.
    fn hash_unknown(&mut self, context: &BuildContext, entries: &[Entry]) {
        let unknown: Vec<&Entry> = entries
            .iter()
            .filter(|e| {
                matches!(e.kind, EntryKind::File)
                    && !self.known.contains_key(&e.stat)
                    && !self.used.contains_key(&e.stat)
            })
            .collect();
        let threads = std::thread::available_parallelism()
            .map_or(1, |n| n.get())
            .min(8)
            .min(unknown.len());
        if threads < 2 {
            return;
        }
        let next = AtomicUsize::new(0);
        let results: Vec<Vec<(FileStat, Sha256Digest)>> = std::thread::scope(|scope| {
            let handles: Vec<_> = (0..threads)
                .map(|_| {
                    let (next, unknown) = (&next, &unknown);
                    scope.spawn(move || {
                        let mut done = Vec::new();
                        loop {
                            let i = next.fetch_add(1, Ordering::Relaxed);
                            let Some(entry) = unknown.get(i) else {
                                return done;
                            };
                            if let Ok(digest) = hash_file(&context.abs(&entry.context_path)) {
                                done.push((entry.stat, digest));
                            }
                        }
                    })
                })
                .collect();
            handles.into_iter().filter_map(|h| h.join().ok()).collect()
        });
        for (stat, digest) in results.into_iter().flatten() {
            self.hashed_files += 1;
            self.used.insert(stat, digest);
        }
    }
}

/// The sha256 of a file's content.
fn hash_file(abs: &Path) -> io::Result<Sha256Digest> {
    let mut reader = HashingReader::new(fs::File::open(abs)?);
    let mut buf = vec![0u8; 256 * 1024];
    while reader.read(&mut buf)? > 0 {}
    let (_, digest, _) = reader.finish();
    Ok(digest)
}

/// The checksum of `entries` (from one selection of `context`).
pub fn checksum(
    context: &BuildContext,
    entries: &[Entry],
    index: &mut HashIndex,
) -> io::Result<Sha256Digest> {
    use std::fmt::Write as _;
    index.hash_unknown(context, entries);
    let mut hasher = Hasher::new();
    hasher.update(b"imgb-context-checksum/v1\n");
    // One reused buffer: a large context has tens of thousands of entries.
    let mut line = String::with_capacity(256);
    for entry in entries {
        line.clear();
        // One line per entry; the path is length-prefixed so no name can
        // forge another entry's line.
        let _ = match &entry.kind {
            EntryKind::Dir => writeln!(
                line,
                "dir {:o} {}:{}",
                entry.mode,
                entry.rel.len(),
                entry.rel
            ),
            EntryKind::Symlink { target } => writeln!(
                line,
                "symlink {}:{} {}:{}",
                entry.rel.len(),
                entry.rel,
                target.len(),
                target
            ),
            EntryKind::File => {
                let digest = match index.known(entry.stat) {
                    Some(digest) => digest,
                    None => index.content_digest(&context.abs(&entry.context_path), entry.stat)?,
                };
                let mut hex = [0u8; 64];
                let _ = hex::encode_to_slice(digest.as_bytes(), &mut hex);
                writeln!(
                    line,
                    "file {:o} {} {} {}:{}",
                    entry.mode,
                    entry.size,
                    std::str::from_utf8(&hex).unwrap_or_default(),
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
