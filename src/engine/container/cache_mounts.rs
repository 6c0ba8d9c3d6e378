//! `RUN --mount=type=cache` directories under `IMGB_HOME/cache-mounts`:
//! created on first use (empty, or seeded from a stage, image or the
//! context with `from=`/`source=`), and shared between RUN steps, stages
//! and builds as `sharing=` says:
//!
//! - `shared` (the default): every user mounts the same directory at once;
//! - `locked`: one user at a time; the others wait (an exclusive flock on
//!   the directory's `.lock` file, so other imgb processes wait too);
//! - `private`: a user that finds the directory busy gets another instance
//!   (`NAME.1`, `NAME.2`, ...), created the same way, as BuildKit does.

use std::fs::{self, File};
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicUsize, Ordering};

use rustix::fs::{flock, FlockOperation};

use crate::plan::Sharing;

use super::super::fsops::{copy_tree, io};
use super::super::EngineError;

/// How a cache directory starts out.
#[derive(Debug, Clone, Copy)]
pub struct Seed<'a> {
    /// Copied in when the directory is created (`from=` + `source=`).
    pub from: Option<&'a Path>,
    /// Mode, uid and gid of the directory when it starts empty.
    pub mode: u32,
    pub uid: u32,
    pub gid: u32,
}

/// A cache directory in use; the lock (if any) is held until drop.
#[derive(Debug)]
pub struct CacheDir {
    pub path: PathBuf,
    _lock: Option<File>,
}

/// The cache directory `name` under `root` for one RUN, as `sharing` says.
pub fn acquire(
    root: &Path,
    name: &str,
    sharing: Sharing,
    seed: Seed<'_>,
) -> Result<CacheDir, EngineError> {
    fs::create_dir_all(root).map_err(io(root))?;
    match sharing {
        Sharing::Shared => {
            let path = root.join(name);
            create(&path, seed)?;
            Ok(CacheDir { path, _lock: None })
        }
        Sharing::Locked => {
            let lock = lock_file(root, name)?;
            flock(&lock, FlockOperation::LockExclusive)
                .map_err(|e| io(&root.join(name))(e.into()))?;
            let path = root.join(name);
            create(&path, seed)?;
            Ok(CacheDir {
                path,
                _lock: Some(lock),
            })
        }
        Sharing::Private => {
            for n in 0usize.. {
                let instance = if n == 0 {
                    name.to_string()
                } else {
                    format!("{name}.{n}")
                };
                let lock = lock_file(root, &instance)?;
                match flock(&lock, FlockOperation::NonBlockingLockExclusive) {
                    Ok(()) => {
                        let path = root.join(&instance);
                        create(&path, seed)?;
                        return Ok(CacheDir {
                            path,
                            _lock: Some(lock),
                        });
                    }
                    Err(rustix::io::Errno::WOULDBLOCK) => continue,
                    Err(e) => return Err(io(&root.join(&instance))(e.into())),
                }
            }
            unreachable!("the instance loop only ends by returning")
        }
    }
}

fn lock_file(root: &Path, name: &str) -> Result<File, EngineError> {
    let path = root.join(format!("{name}.lock"));
    File::options()
        .create(true)
        .truncate(false)
        .write(true)
        .open(&path)
        .map_err(io(&path))
}

/// Creates the directory at `path` unless it exists: built aside and
/// renamed into place, so a reader never sees half a seed.
fn create(path: &Path, seed: Seed<'_>) -> Result<(), EngineError> {
    if path.is_dir() {
        return Ok(());
    }
    static NEXT: AtomicUsize = AtomicUsize::new(0);
    let n = NEXT.fetch_add(1, Ordering::Relaxed);
    let name = path
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    let tmp = path.with_file_name(format!(".tmp-{name}-{}-{n}", std::process::id()));
    let _ = fs::remove_dir_all(&tmp);
    let made = (|| {
        match seed.from {
            Some(from) if from.is_dir() => copy_tree(from, &tmp)?,
            Some(from) => {
                return Err(EngineError::Mount {
                    target: path.display().to_string(),
                    reason: format!("the cache source {} is not a directory", from.display()),
                })
            }
            None => {
                fs::create_dir(&tmp).map_err(io(&tmp))?;
                fs::set_permissions(&tmp, fs::Permissions::from_mode(seed.mode))
                    .map_err(io(&tmp))?;
                std::os::unix::fs::chown(&tmp, Some(seed.uid), Some(seed.gid)).map_err(io(&tmp))?;
            }
        }
        match fs::rename(&tmp, path) {
            // Another RUN created it first: theirs is as good.
            Err(_) if path.is_dir() => {
                let _ = fs::remove_dir_all(&tmp);
                Ok(())
            }
            other => other.map_err(io(path)),
        }
    })();
    if made.is_err() {
        let _ = fs::remove_dir_all(&tmp);
    }
    made
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    fn empty() -> Seed<'static> {
        Seed {
            from: None,
            mode: 0o755,
            uid: 0,
            gid: 0,
        }
    }

    #[test]
    fn shared_users_get_the_same_directory_at_once() {
        let root = tempfile::tempdir().unwrap();
        let a = acquire(root.path(), "c", Sharing::Shared, empty()).unwrap();
        let b = acquire(root.path(), "c", Sharing::Shared, empty()).unwrap();
        assert_eq!(a.path, b.path);
        assert!(a.path.is_dir());
    }

    #[test]
    fn a_busy_private_cache_gives_another_instance() {
        let root = tempfile::tempdir().unwrap();
        let a = acquire(root.path(), "c", Sharing::Private, empty()).unwrap();
        let b = acquire(root.path(), "c", Sharing::Private, empty()).unwrap();
        assert_ne!(a.path, b.path);
        assert_eq!(b.path, root.path().join("c.1"));
        drop(a);
        // Free again: the first instance is reused.
        let c = acquire(root.path(), "c", Sharing::Private, empty()).unwrap();
        assert_eq!(c.path, root.path().join("c"));
    }

    #[test]
    fn a_locked_cache_waits_for_its_user() {
        let root = tempfile::tempdir().unwrap();
        let first = acquire(root.path(), "c", Sharing::Locked, empty()).unwrap();
        let marker = root.path().join("c/marker");
        let (tx, rx) = std::sync::mpsc::channel();
        let dir = root.path().to_path_buf();
        let waiter = std::thread::spawn(move || {
            let second = acquire(&dir, "c", Sharing::Locked, empty()).unwrap();
            // By the time the lock is ours, the first user has finished.
            tx.send(second.path.join("marker").exists()).unwrap();
        });
        // The waiter cannot get in while the first user holds the lock.
        assert!(rx.recv_timeout(Duration::from_millis(300)).is_err());
        fs::write(&marker, "done").unwrap();
        drop(first);
        assert!(rx.recv_timeout(Duration::from_secs(10)).unwrap());
        waiter.join().unwrap();
    }

    #[test]
    fn a_seeded_cache_starts_as_a_copy_of_its_source() {
        let root = tempfile::tempdir().unwrap();
        let src = tempfile::tempdir().unwrap();
        fs::create_dir(src.path().join("sub")).unwrap();
        fs::write(src.path().join("sub/x"), "seed").unwrap();
        let seed = Seed {
            from: Some(src.path()),
            ..empty()
        };
        let a = acquire(root.path(), "c", Sharing::Shared, seed).unwrap();
        assert_eq!(fs::read_to_string(a.path.join("sub/x")).unwrap(), "seed");
        // Existing caches are not re-seeded: what RUN wrote stays.
        fs::write(a.path.join("sub/x"), "changed").unwrap();
        let b = acquire(root.path(), "c", Sharing::Shared, seed).unwrap();
        assert_eq!(fs::read_to_string(b.path.join("sub/x")).unwrap(), "changed");
    }
}
