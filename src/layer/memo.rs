//! Compressed gzip chunks of earlier layers, found again by content.
//!
//! A chunk's deflate output (pgzip.rs) is a function of the encoder, the
//! level, whether it ends the stream, the 32 KiB before it and its own
//! bytes, nothing else. So when a layer is written again with the same bytes
//! (`--no-cache`, or a rebuild where only a late file changed and everything
//! before it lines up), each chunk already compressed can be copied from the
//! earlier layer's blob instead of being deflated again: the bytes, and the
//! digest, are exactly those that compressing would give.
//!
//! `<store>/gzip-chunks` holds fixed-size records, appended after each gzip
//! layer of at least [`MIN_CHUNKS`] chunks is committed: the chunk's key
//! (sha256 over the encoder version, level, end flag, dictionary and data),
//! the blob, the output's offset and length in it, and the CRC-32 of the
//! output. A hit is used only when the blob still holds bytes with that
//! CRC (a check against damage, as gzip's own; the key is what must not
//! collide); anything else (a pruned blob, a damaged file) means compressing.
//! The file is loaded once per process, only when a layer grows past
//! [`MIN_CHUNKS`], and is cut to its newest half when it passes
//! [`MAX_RECORDS`].

use std::collections::HashMap;
use std::fs::{self, File, OpenOptions};
use std::io::{self, Write};
use std::os::unix::fs::FileExt;
use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, OnceLock, RwLock};

use crate::digest::{Hasher, Sha256Digest};
use crate::store::ContentStore;

/// Names the encoder whose output the records hold (zlib-rs as pinned in
/// Cargo.lock, pgzip's chunking): bump it when either changes, and every
/// old record misses.
const ENCODER: &[u8] = b"imgb-pgzip/3 zlib-rs-0.6.8";
/// Layers smaller than this many chunks (4 MiB) are neither looked up nor
/// recorded: compressing them costs little.
pub const MIN_CHUNKS: u64 = 32;
/// Records kept at most: 12.5 GiB of layer input, an 8 MB file, about
/// 10 MB of memory once loaded.
const MAX_RECORDS: usize = 100_000;
/// key, blob digest, offset (u64 LE), length (u32 LE), output CRC-32 (u32
/// LE).
const RECORD: usize = 32 + 32 + 8 + 4 + 4;

/// The CRC-32 of a chunk's output.
pub fn crc32(bytes: &[u8]) -> u32 {
    let mut crc = flate2::Crc::new();
    crc.update(bytes);
    crc.sum()
}

/// The key of a chunk.
pub fn chunk_key(level: u32, last: bool, dictionary: &[u8], data: &[u8]) -> [u8; 32] {
    let mut h = Hasher::new();
    h.update(ENCODER);
    h.update(&[level as u8, u8::from(last)]);
    h.update(&(dictionary.len() as u64).to_le_bytes());
    h.update(dictionary);
    h.update(data);
    *h.finish().as_bytes()
}

/// `N` bytes of `record` from `at`.
fn field<const N: usize>(record: &[u8], at: usize) -> [u8; N] {
    let mut f = [0u8; N];
    f.copy_from_slice(&record[at..at + N]);
    f
}

#[derive(Debug, Clone, Copy)]
struct Record {
    blob: Sha256Digest,
    offset: u64,
    len: u32,
    crc: u32,
}

/// The chunk records of one store.
#[derive(Debug)]
pub struct ChunkMemo {
    store: ContentStore,
    path: PathBuf,
    /// Loaded on the first lookup; records made later by this process are
    /// added.
    records: RwLock<Option<HashMap<[u8; 32], Record>>>,
    /// Chunks copied instead of compressed, in this process.
    hits: AtomicU64,
}

impl ChunkMemo {
    /// The memo of `store`, one per store and process (its records are
    /// loaded once).
    pub fn of_store(store: &ContentStore) -> Arc<ChunkMemo> {
        static MEMOS: OnceLock<Mutex<HashMap<PathBuf, Arc<ChunkMemo>>>> = OnceLock::new();
        let memos = MEMOS.get_or_init(|| Mutex::new(HashMap::new()));
        let mut memos = match memos.lock() {
            Ok(m) => m,
            Err(poisoned) => poisoned.into_inner(),
        };
        Arc::clone(
            memos
                .entry(store.root().to_path_buf())
                .or_insert_with(|| Arc::new(ChunkMemo::new(store))),
        )
    }

    pub fn new(store: &ContentStore) -> ChunkMemo {
        ChunkMemo {
            store: store.clone(),
            path: store.root().join("gzip-chunks"),
            records: RwLock::new(None),
            hits: AtomicU64::new(0),
        }
    }

    /// Chunks copied from earlier layers so far.
    #[cfg(test)]
    pub fn hits(&self) -> u64 {
        self.hits.load(Ordering::Relaxed)
    }

    /// The record of `key`, loading the file first if need be.
    fn lookup(&self, key: &[u8; 32]) -> Option<Record> {
        if let Some(map) = self.records.read().ok()?.as_ref() {
            return map.get(key).copied();
        }
        let mut records = self.records.write().ok()?;
        records.get_or_insert_with(|| self.load()).get(key).copied()
    }

    fn load(&self) -> HashMap<[u8; 32], Record> {
        let mut map = HashMap::new();
        let Ok(bytes) = fs::read(&self.path) else {
            return map;
        };
        // A torn last record (a crash mid-append) is left out.
        for r in bytes.chunks_exact(RECORD) {
            let record = Record {
                blob: Sha256Digest::from_bytes(field(r, 32)),
                offset: u64::from_le_bytes(field(r, 64)),
                len: u32::from_le_bytes(field(r, 72)),
                crc: u32::from_le_bytes(field(r, 76)),
            };
            map.insert(field(r, 0), record);
        }
        map
    }

    /// The compressed output recorded for `key` and its CRC-32, if its blob
    /// still holds it intact.
    pub fn get(&self, key: &[u8; 32]) -> Option<(Vec<u8>, u32)> {
        let r = self.lookup(key)?;
        let file = File::open(self.store.blob_path(&r.blob)).ok()?;
        let mut out = vec![0u8; r.len as usize];
        file.read_exact_at(&mut out, r.offset).ok()?;
        if crc32(&out) != r.crc {
            return None;
        }
        self.hits.fetch_add(1, Ordering::Relaxed);
        Some((out, r.crc))
    }

    /// Records the chunks of the blob `blob`: each chunk's key, offset and
    /// output CRC. Best effort: without records, the next build compresses.
    pub fn record(&self, blob: &Sha256Digest, chunks: &[super::compress::RecordedChunk]) {
        // A layer made again from the same chunks (`--no-cache`) is on
        // record already.
        let loaded = |key: &[u8; 32]| {
            let records = self.records.read().ok()?;
            records.as_ref()?.get(key).copied()
        };
        if let Some((key, ..)) = chunks.first() {
            if loaded(key).is_some_and(|r| r.blob == *blob) {
                return;
            }
        }
        let mut bytes = Vec::with_capacity(chunks.len() * RECORD);
        for (key, offset, len, crc) in chunks {
            bytes.extend_from_slice(key);
            bytes.extend_from_slice(blob.as_bytes());
            bytes.extend_from_slice(&offset.to_le_bytes());
            bytes.extend_from_slice(&len.to_le_bytes());
            bytes.extend_from_slice(&crc.to_le_bytes());
        }
        if self.append(&bytes).is_err() {
            return;
        }
        if let Ok(mut records) = self.records.write() {
            if let Some(map) = records.as_mut() {
                for (key, offset, len, crc) in chunks {
                    let record = Record {
                        blob: *blob,
                        offset: *offset,
                        len: *len,
                        crc: *crc,
                    };
                    map.insert(*key, record);
                }
            }
        }
    }

    fn append(&self, bytes: &[u8]) -> io::Result<()> {
        let size = fs::metadata(&self.path).map_or(0, |m| m.len());
        if size as usize + bytes.len() > MAX_RECORDS * RECORD {
            // Keep the newest half (whole records), replaced atomically.
            let old = fs::read(&self.path)?;
            let whole = old.len() - old.len() % RECORD;
            let keep = (whole / RECORD / 2) * RECORD;
            let _ = crate::store::write_atomic(&self.path, &old[whole - keep..whole]);
        } else if !(size as usize).is_multiple_of(RECORD) {
            // A torn record (crash mid-append) would misalign every later
            // one: cut it off first.
            let file = OpenOptions::new().write(true).open(&self.path)?;
            file.set_len(size - size % RECORD as u64)?;
        }
        // One write of whole records to an O_APPEND file: records of
        // processes appending at once do not interleave.
        let mut file = OpenOptions::new()
            .create(true)
            .append(true)
            .open(&self.path)?;
        file.write_all(bytes)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_encoder_name_follows_the_locked_zlib_rs() {
        // Records made by another zlib-rs may not be copied: a zlib-rs
        // update in Cargo.lock must come with a new ENCODER name.
        let lock = include_str!("../../Cargo.lock");
        let at = lock
            .find("name = \"zlib-rs\"\nversion = \"")
            .expect("zlib-rs locked");
        let version = lock[at..].lines().nth(1).expect("version line");
        let version = version
            .trim_start_matches("version = \"")
            .trim_end_matches('"');
        let name = std::str::from_utf8(ENCODER).expect("utf-8");
        assert!(
            name.ends_with(&format!(" zlib-rs-{version}")),
            "{name} vs {version}"
        );
    }

    #[test]
    fn records_are_found_only_while_their_bytes_are_intact() {
        let dir = tempfile::tempdir().unwrap();
        let store = ContentStore::open(dir.path()).unwrap();
        let blob = store.put_bytes(b"headerAAAAbbbbbbCC").unwrap();
        let key_a = chunk_key(2, false, b"", b"a");
        let key_b = chunk_key(2, false, b"a", b"b");
        let key_c = chunk_key(2, true, b"b", b"c");
        let memo = ChunkMemo::new(&store);
        memo.record(
            &blob.digest,
            &[
                (key_a, 6, 4, crc32(b"AAAA")),
                (key_b, 10, 6, crc32(b"bbbbbb")),
                // Recorded with a hash its bytes do not have.
                (key_c, 16, 2, crc32(b"XX")),
            ],
        );
        let memo = ChunkMemo::new(&store);
        assert_eq!(
            memo.get(&key_a).map(|(b, _)| b).as_deref(),
            Some(&b"AAAA"[..])
        );
        assert_eq!(
            memo.get(&key_b).map(|(b, _)| b).as_deref(),
            Some(&b"bbbbbb"[..])
        );
        assert_eq!(memo.get(&key_c), None, "output CRC differs");
        // The key covers level, end flag and dictionary.
        assert_ne!(key_a, chunk_key(6, false, b"", b"a"));
        assert_ne!(key_a, chunk_key(2, true, b"", b"a"));
        assert_ne!(key_b, chunk_key(2, false, b"x", b"b"));

        // A torn record is cut off before the next append.
        let path = dir.path().join("gzip-chunks");
        let mut f = OpenOptions::new().append(true).open(&path).unwrap();
        f.write_all(&[1, 2, 3]).unwrap();
        drop(f);
        let other = store.put_bytes(b"zz").unwrap();
        let key_d = chunk_key(2, false, b"", b"d");
        memo.record(&other.digest, &[(key_d, 0, 2, crc32(b"zz"))]);
        assert_eq!(fs::metadata(&path).unwrap().len() as usize % RECORD, 0);
        let memo = ChunkMemo::new(&store);
        assert_eq!(
            memo.get(&key_d).map(|(b, _)| b).as_deref(),
            Some(&b"zz"[..])
        );
        assert_eq!(
            memo.get(&key_a).map(|(b, _)| b).as_deref(),
            Some(&b"AAAA"[..])
        );

        // A pruned blob is a miss.
        fs::remove_file(store.blob_path(&other.digest)).unwrap();
        assert_eq!(ChunkMemo::new(&store).get(&key_d), None);
    }
}
