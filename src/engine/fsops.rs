//! File-system operations the engine's parts share: the error of a failed
//! call on a path, whole-tree copies (`cp -a`), and directory creation.

use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::process::Command;

use super::EngineError;

/// Turns an I/O error on `path` into [`EngineError::Io`].
pub fn io(path: &Path) -> impl FnOnce(std::io::Error) -> EngineError {
    let path = path.to_path_buf();
    move |source| EngineError::Io { path, source }
}

/// Copies the tree `src` to `dst` (which must not exist) with everything:
/// owners, modes, times, xattrs, hard links (`cp -a`).
pub fn copy_tree(src: &Path, dst: &Path) -> Result<(), EngineError> {
    let status = Command::new("cp")
        .arg("-a")
        .arg("--reflink=auto")
        .arg(src)
        .arg(dst)
        .status()
        .map_err(io(dst))?;
    if !status.success() {
        return Err(EngineError::Snapshot {
            reason: format!(
                "copying {} to {} failed ({status})",
                src.display(),
                dst.display()
            ),
        });
    }
    Ok(())
}

/// Makes `path` and its parents, 0755.
pub fn ensure_dir(path: &Path) -> Result<(), EngineError> {
    if !path.is_dir() {
        fs::create_dir_all(path).map_err(io(path))?;
        fs::set_permissions(path, fs::Permissions::from_mode(0o755)).map_err(io(path))?;
    }
    Ok(())
}
