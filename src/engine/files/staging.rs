//! A scratch directory under `IMGB_HOME/tmp` for ADD's downloads and the
//! files it extracts from archives, removed when the step is done.

use std::fs;
use std::path::{Path, PathBuf};

/// A scratch directory for downloads and extracted files, removed on drop.
pub struct Staging {
    pub(super) dir: PathBuf,
    next: usize,
}

impl Staging {
    pub fn new(home: &Path) -> std::io::Result<Staging> {
        static NEXT: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);
        let n = NEXT.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let stamp = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_nanos())
            .unwrap_or(0);
        let dir = home
            .join("tmp")
            .join(format!("add-{}-{stamp}-{n}", std::process::id()));
        fs::create_dir_all(&dir)?;
        Ok(Staging { dir, next: 0 })
    }

    /// A fresh path in the staging directory.
    pub fn next_path(&mut self) -> PathBuf {
        self.next += 1;
        self.dir.join(self.next.to_string())
    }
}

impl Drop for Staging {
    fn drop(&mut self) {
        // Only scratch files: failing to remove them wastes space, nothing else.
        let _ = fs::remove_dir_all(&self.dir);
    }
}
