//! Garbage collection (`imgb prune`), verification and disk usage (`imgb du`).
//!
//! Live blobs are those reachable from a named reference or a registered
//! root. Reachability follows descriptors in JSON blobs: `config`, `layers`,
//! `manifests`, `blobs` and `subject` (OCI and Docker manifests and indexes
//! share these names), so the store needs no knowledge of image types.

use std::collections::{BTreeMap, BTreeSet};
use std::fs;

use super::refs::Root;
use super::{clean_dir, Blob, ContentStore, StoreError};
use crate::digest::Sha256Digest;

/// JSON blobs larger than this are never parsed for children (layers are
/// big and binary; manifests are small).
const MAX_JSON: u64 = 4 * 1024 * 1024;

/// What `prune` should do.
#[derive(Debug, Clone, Default)]
pub struct PruneOptions {
    /// Also drop every named reference and root: empties the store.
    pub all: bool,
    /// After removing unreferenced blobs, drop cache roots (least recently
    /// used first) until the store holds at most this many bytes. Named
    /// references are never dropped for this.
    pub keep_storage: Option<u64>,
    /// Re-hash every blob first and remove those whose bytes do not match
    /// their name.
    pub verify: bool,
    /// Directories of derived data that can always be made again from the
    /// blobs (unpacked snapshots): emptied while no other process has the
    /// store open.
    pub derived: Vec<std::path::PathBuf>,
}

/// What `prune` did.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct PruneReport {
    /// Blobs removed because nothing referred to them.
    pub removed: Vec<Blob>,
    /// Blobs removed because their content did not match their digest
    /// (`found` is what the bytes hash to).
    pub corrupt: Vec<(Blob, Sha256Digest)>,
    /// Roots dropped to honour `keep_storage` (or all of them with `all`).
    pub dropped_roots: Vec<Root>,
    /// Names dropped (only with `all`).
    pub dropped_refs: Vec<String>,
    /// Bytes of leftover temp files removed.
    pub temp_bytes: u64,
    /// Bytes of derived data removed (see [`PruneOptions::derived`]).
    pub derived_bytes: u64,
}

impl PruneReport {
    /// Bytes freed in total.
    pub fn reclaimed(&self) -> u64 {
        self.removed.iter().map(|b| b.size).sum::<u64>()
            + self.corrupt.iter().map(|(b, _)| b.size).sum::<u64>()
            + self.temp_bytes
            + self.derived_bytes
    }
}

/// What takes space in the store.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct DiskUsage {
    /// Number of blobs.
    pub blob_count: u64,
    /// Bytes in all blobs.
    pub total: u64,
    /// Per named reference: bytes reachable from it (shared blobs count for each).
    pub images: BTreeMap<String, u64>,
    /// Bytes reachable from some named reference.
    pub referenced: u64,
    /// Bytes reachable only from registered roots, per namespace.
    pub roots_only: BTreeMap<String, u64>,
    /// Bytes reachable from nothing (what `prune` frees).
    pub unreferenced: u64,
    /// Number of unreferenced blobs.
    pub unreferenced_count: u64,
    /// Bytes in temp files (writes in progress or leftovers).
    pub temp: u64,
}

impl ContentStore {
    /// Removes what nothing refers to; see [`PruneOptions`]. Needs the store
    /// to itself: returns [`StoreError::Busy`] if another process has it open.
    pub fn prune(&self, opts: &PruneOptions) -> Result<PruneReport, StoreError> {
        self.with_exclusive(|| self.prune_locked(opts))
    }

    fn prune_locked(&self, opts: &PruneOptions) -> Result<PruneReport, StoreError> {
        let mut report = PruneReport {
            temp_bytes: clean_dir(&self.tmp_dir())?,
            ..PruneReport::default()
        };
        for dir in &opts.derived {
            report.derived_bytes += remove_tree_contents(dir)?;
        }
        if opts.verify {
            for digest in self.blobs()? {
                let found = self.rehash(&digest)?;
                if found != digest {
                    let blob = self.stat(&digest)?;
                    self.remove_blob(&digest)?;
                    report.corrupt.push((blob, found));
                }
            }
        }
        if opts.all {
            report.dropped_refs = self.update_refs(|refs| {
                let names = refs.keys().cloned().collect();
                refs.clear();
                names
            })?;
            for root in self.all_roots()? {
                self.remove_root(&root.namespace, &root.digest)?;
                report.dropped_roots.push(root);
            }
        }
        self.sweep(&mut report)?;
        if let Some(keep) = opts.keep_storage {
            let mut roots = self.all_roots()?;
            // Least recently used first; digest order breaks ties.
            roots.sort_by_key(|r| (r.used, r.digest));
            for root in roots {
                if self.total_size()? <= keep {
                    break;
                }
                self.remove_root(&root.namespace, &root.digest)?;
                report.dropped_roots.push(root);
                self.sweep(&mut report)?;
            }
        }
        Ok(report)
    }

    /// Removes every blob not reachable from refs or roots.
    fn sweep(&self, report: &mut PruneReport) -> Result<(), StoreError> {
        let live = self.live_set()?;
        for digest in self.blobs()? {
            if !live.contains(&digest) {
                let blob = self.stat(&digest)?;
                self.remove_blob(&digest)?;
                report.removed.push(blob);
            }
        }
        Ok(())
    }

    fn remove_blob(&self, digest: &Sha256Digest) -> Result<(), StoreError> {
        let path = self.blob_path(digest);
        fs::remove_file(&path).map_err(StoreError::io("remove", &path))
    }

    fn total_size(&self) -> Result<u64, StoreError> {
        let mut total = 0;
        for d in self.blobs()? {
            total += self.size(&d)?;
        }
        Ok(total)
    }

    /// Everything reachable from refs and roots.
    fn live_set(&self) -> Result<BTreeSet<Sha256Digest>, StoreError> {
        let mut starts: Vec<Sha256Digest> = self.refs()?.into_values().collect();
        starts.extend(self.all_roots()?.into_iter().map(|r| r.digest));
        self.reachable(starts)
    }

    /// The closure of `starts` under "this JSON blob refers to that blob".
    /// Digests not in the store are included (they cost nothing).
    pub fn reachable(
        &self,
        starts: impl IntoIterator<Item = Sha256Digest>,
    ) -> Result<BTreeSet<Sha256Digest>, StoreError> {
        let mut seen = BTreeSet::new();
        let mut todo: Vec<Sha256Digest> = starts.into_iter().collect();
        while let Some(d) = todo.pop() {
            if !seen.insert(d) {
                continue;
            }
            todo.extend(self.children(&d)?);
        }
        Ok(seen)
    }

    /// The blobs a manifest or index refers to; empty for other blobs.
    fn children(&self, digest: &Sha256Digest) -> Result<Vec<Sha256Digest>, StoreError> {
        match self.size(digest) {
            Ok(size) if size <= MAX_JSON => {}
            Ok(_) | Err(StoreError::NotFound(_)) => return Ok(Vec::new()),
            Err(e) => return Err(e),
        }
        let bytes = self.read_blob(digest)?;
        if bytes.iter().find(|b| !b.is_ascii_whitespace()) != Some(&b'{') {
            return Ok(Vec::new());
        }
        let Ok(value) = serde_json::from_slice::<serde_json::Value>(&bytes) else {
            return Ok(Vec::new());
        };
        let mut out = Vec::new();
        let mut push = |desc: &serde_json::Value| {
            if let Some(d) = desc
                .get("digest")
                .and_then(|d| d.as_str())
                .and_then(|d| d.parse::<Sha256Digest>().ok())
            {
                out.push(d);
            }
        };
        for single in ["config", "subject"] {
            if let Some(desc) = value.get(single) {
                push(desc);
            }
        }
        for list in ["layers", "manifests", "blobs"] {
            if let Some(items) = value.get(list).and_then(|l| l.as_array()) {
                items.iter().for_each(&mut push);
            }
        }
        Ok(out)
    }

    /// What takes space; reads only, takes no exclusive lock.
    pub fn disk_usage(&self) -> Result<DiskUsage, StoreError> {
        let mut sizes = BTreeMap::new();
        for d in self.blobs()? {
            sizes.insert(d, self.size(&d)?);
        }
        let size_of =
            |set: &BTreeSet<Sha256Digest>| -> u64 { set.iter().filter_map(|d| sizes.get(d)).sum() };
        let mut usage = DiskUsage {
            blob_count: sizes.len() as u64,
            total: sizes.values().sum(),
            ..DiskUsage::default()
        };
        let refs = self.refs()?;
        for (name, d) in &refs {
            usage
                .images
                .insert(name.clone(), size_of(&self.reachable([*d])?));
        }
        let referenced = self.reachable(refs.values().copied())?;
        usage.referenced = size_of(&referenced);
        let mut live = referenced.clone();
        let mut by_ns: BTreeMap<String, Vec<Sha256Digest>> = BTreeMap::new();
        for root in self.all_roots()? {
            by_ns.entry(root.namespace).or_default().push(root.digest);
        }
        for (ns, digests) in by_ns {
            let reach = self.reachable(digests)?;
            let only: BTreeSet<_> = reach.difference(&referenced).copied().collect();
            usage.roots_only.insert(ns, size_of(&only));
            live.extend(reach);
        }
        for (d, size) in &sizes {
            if !live.contains(d) {
                usage.unreferenced += size;
                usage.unreferenced_count += 1;
            }
        }
        let tmp = self.tmp_dir();
        for entry in fs::read_dir(&tmp).map_err(StoreError::io("list", &tmp))? {
            let entry = entry.map_err(StoreError::io("list", &tmp))?;
            usage.temp += entry.metadata().map(|m| m.len()).unwrap_or(0);
        }
        Ok(usage)
    }
}

/// Removes everything inside `dir` (not following symlinks); returns the
/// bytes of regular files removed. A missing directory is empty.
fn remove_tree_contents(dir: &std::path::Path) -> Result<u64, StoreError> {
    let mut bytes = 0;
    for entry in walkdir::WalkDir::new(dir).min_depth(1).follow_links(false) {
        match entry {
            Ok(e) if e.file_type().is_file() => bytes += e.metadata().map(|m| m.len()).unwrap_or(0),
            Ok(_) => {}
            Err(_) => break, // missing dir, or a race: sizes are a report only
        }
    }
    let entries = match std::fs::read_dir(dir) {
        Ok(entries) => entries,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(0),
        Err(e) => return Err(StoreError::io("list", dir)(e)),
    };
    for entry in entries {
        let path = entry.map_err(StoreError::io("list", dir))?.path();
        let result = match std::fs::symlink_metadata(&path) {
            Ok(meta) if meta.is_dir() => std::fs::remove_dir_all(&path),
            Ok(_) => std::fs::remove_file(&path),
            Err(e) => Err(e),
        };
        match result {
            Err(e) if e.kind() != std::io::ErrorKind::NotFound => {
                return Err(StoreError::io("remove", &path)(e))
            }
            _ => {}
        }
    }
    Ok(bytes)
}
