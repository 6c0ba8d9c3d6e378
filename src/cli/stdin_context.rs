//! `imgb build -`: the build context read from stdin, as `docker build -`
//! does. Stdin is either a tar archive (plain, gzip or zstd; the context)
//! or, when it is not a tar, a Dockerfile with an empty context.
//!
//! The tar is unpacked with the layer unpacker (no `..`, no absolute paths,
//! no symlink escapes) into a private directory under
//! `IMGB_HOME/context-tmp/`, deleted when the build ends. Not under
//! `IMGB_HOME/tmp/`: the store clears that directory of *files* when it is
//! opened alone, and a directory there would make that fail.

use std::io::{Cursor, Read};
use std::path::{Path, PathBuf};
use std::time::{SystemTime, UNIX_EPOCH};

use anyhow::anyhow;

use super::Failure;

/// A context directory that is removed when dropped.
#[derive(Debug)]
pub struct TempContext {
    dir: PathBuf,
}

impl TempContext {
    pub fn dir(&self) -> &Path {
        &self.dir
    }
}

impl Drop for TempContext {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// What stdin held.
#[derive(Debug)]
pub struct StdinContext {
    pub context: TempContext,
    /// The Dockerfile's text when stdin was a Dockerfile, not a tar.
    pub dockerfile: Option<String>,
}

/// Removes contexts left by imgb processes that died before their `Drop`
/// ran (Ctrl-C): a directory is `<pid>-<nanos>`, stale once `/proc/<pid>`
/// is gone.
fn remove_stale(parent: &Path) {
    let Ok(entries) = std::fs::read_dir(parent) else {
        return;
    };
    for entry in entries.flatten() {
        let name = entry.file_name().to_string_lossy().into_owned();
        let pid = name.split('-').next().and_then(|p| p.parse::<u32>().ok());
        if let Some(pid) = pid {
            if !Path::new("/proc").join(pid.to_string()).exists() {
                let _ = std::fs::remove_dir_all(entry.path());
            }
        }
    }
}

/// The POSIX tar magic (`ustar`) sits at offset 257 of the first header.
fn is_tar(head: &[u8]) -> bool {
    head.len() >= 262 && &head[257..262] == b"ustar"
}

/// Reads stdin into a fresh context directory under `state`.
pub fn read(state: &Path) -> Result<StdinContext, Failure> {
    from_reader(state, std::io::stdin().lock())
}

/// [`read`] for any reader (tests).
pub fn from_reader(state: &Path, reader: impl Read) -> Result<StdinContext, Failure> {
    let nanos = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.subsec_nanos())
        .unwrap_or(0);
    let parent = state.join("context-tmp");
    remove_stale(&parent);
    let dir = parent.join(format!("{}-{nanos}", std::process::id()));
    std::fs::create_dir_all(&dir).map_err(|e| {
        Failure::Usage(anyhow!(
            "cannot create a context directory {}: {e}",
            dir.display()
        ))
    })?;
    let context = TempContext { dir };
    let read_err =
        |e: std::io::Error| Failure::User(anyhow!("reading the context from stdin: {e}"));
    let mut stream = crate::layer::decompressed(reader).map_err(read_err)?;
    let mut head = Vec::with_capacity(512);
    (&mut stream)
        .take(512)
        .read_to_end(&mut head)
        .map_err(read_err)?;
    let whole = Cursor::new(head.clone()).chain(stream);
    if is_tar(&head) {
        crate::layer::unpack_layer(whole, context.dir()).map_err(|e| {
            Failure::User(anyhow!(
                "unable to prepare context: the tar on stdin was refused: {e}"
            ))
        })?;
        return Ok(StdinContext {
            context,
            dockerfile: None,
        });
    }
    let mut bytes = Vec::new();
    let mut whole = whole;
    whole.read_to_end(&mut bytes).map_err(read_err)?;
    let text = String::from_utf8(bytes).map_err(|_| {
        Failure::User(anyhow!(
            "stdin is neither a tar archive nor a UTF-8 Dockerfile\n\
             hint: `imgb build -` reads a context tar (`tar -c . | imgb build -`) or a Dockerfile (`imgb build - < Dockerfile`)"
        ))
    })?;
    Ok(StdinContext {
        context,
        dockerfile: Some(text),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tar_of(files: &[(&str, &[u8])]) -> Vec<u8> {
        let mut builder = tar::Builder::new(Vec::new());
        for (name, data) in files {
            let mut header = tar::Header::new_ustar();
            header.set_size(data.len() as u64);
            header.set_mode(0o644);
            header.set_uid(0);
            header.set_gid(0);
            header.set_mtime(0);
            header.set_entry_type(tar::EntryType::Regular);
            builder.append_data(&mut header, name, *data).unwrap();
        }
        builder.into_inner().unwrap()
    }

    #[test]
    fn a_tar_becomes_a_context_removed_on_drop() {
        let state = tempfile::tempdir().unwrap();
        let tar = tar_of(&[("Dockerfile", b"FROM scratch\n"), ("a/b.txt", b"hi")]);
        let got = from_reader(state.path(), Cursor::new(tar)).unwrap();
        assert!(got.dockerfile.is_none());
        let dir = got.context.dir().to_path_buf();
        assert!(dir.starts_with(state.path().join("context-tmp")));
        assert_eq!(std::fs::read(dir.join("a/b.txt")).unwrap(), b"hi");
        drop(got);
        assert!(!dir.exists());
    }

    #[test]
    fn contexts_of_dead_processes_are_removed() {
        let state = tempfile::tempdir().unwrap();
        // PIDs never exceed 2^22 on Linux.
        let stale = state.path().join("context-tmp/4194305-1");
        let alive = state
            .path()
            .join(format!("context-tmp/{}-1", std::process::id()));
        std::fs::create_dir_all(stale.join("sub")).unwrap();
        std::fs::create_dir_all(&alive).unwrap();
        let _ctx = from_reader(state.path(), Cursor::new(b"FROM scratch\n".to_vec())).unwrap();
        assert!(!stale.exists());
        assert!(alive.exists());
    }

    #[test]
    fn a_dockerfile_on_stdin_gives_an_empty_context() {
        let state = tempfile::tempdir().unwrap();
        let got = from_reader(state.path(), Cursor::new(b"FROM scratch\n".to_vec())).unwrap();
        assert_eq!(got.dockerfile.as_deref(), Some("FROM scratch\n"));
        assert_eq!(std::fs::read_dir(got.context.dir()).unwrap().count(), 0);
    }

    #[test]
    fn entries_escaping_the_context_are_refused() {
        let state = tempfile::tempdir().unwrap();
        let mut builder = tar::Builder::new(Vec::new());
        let mut header = tar::Header::new_ustar();
        header.set_size(2);
        header.set_mode(0o644);
        header.set_uid(0);
        header.set_gid(0);
        header.set_mtime(0);
        // `append_data` refuses `..`, so write the name into the header.
        header.as_old_mut().name[..9].copy_from_slice(b"../escape");
        header.set_cksum();
        builder.append(&header, &b"hi"[..]).unwrap();
        let tar = builder.into_inner().unwrap();
        assert!(from_reader(state.path(), Cursor::new(tar)).is_err());
        assert!(!state.path().join("context-tmp/escape").exists());
        assert!(!state.path().join("escape").exists());
    }
}
