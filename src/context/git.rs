//! The git checkout a build context lives in, read from `.git` directly
//! (no `git` binary needed): the commit `HEAD` points to and the `origin`
//! remote's URL. buildx records the same (`vcs:source`, `vcs:revision`) for
//! provenance; imgb also sets the OCI `source`/`revision` annotations.
//!
//! Handles plain repositories, worktrees and submodules (`.git` files with
//! `gitdir:`), loose and packed refs, and a detached `HEAD`. Whether the
//! working tree has uncommitted changes is not checked.

use std::fs;
use std::path::{Path, PathBuf};

/// The checkout's state.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GitCheckout {
    /// The repository's top directory.
    pub root: PathBuf,
    /// The full commit id `HEAD` resolves to.
    pub commit: String,
    /// `remote.origin.url`, if there is one.
    pub origin: Option<String>,
}

fn is_commit_id(s: &str) -> bool {
    (s.len() == 40 || s.len() == 64) && s.bytes().all(|b| b.is_ascii_hexdigit())
}

/// Finds the `.git` of `dir` or its nearest ancestor: (top dir, git dir).
fn find_git_dir(dir: &Path) -> Option<(PathBuf, PathBuf)> {
    let mut here = fs::canonicalize(dir).ok()?;
    loop {
        let dot_git = here.join(".git");
        if dot_git.is_dir() {
            return Some((here, dot_git));
        }
        if dot_git.is_file() {
            let text = fs::read_to_string(&dot_git).ok()?;
            let target = text.trim().strip_prefix("gitdir:")?.trim();
            let git_dir = here.join(target); // absolute targets replace `here`
            return Some((here, git_dir));
        }
        if !here.pop() {
            return None;
        }
    }
}

/// The commit a ref names: loose in either dir, else in `packed-refs`.
fn resolve_ref(git_dir: &Path, common: &Path, name: &str) -> Option<String> {
    if name.split('/').any(|c| c.is_empty() || c == "..") {
        return None;
    }
    for dir in [git_dir, common] {
        if let Ok(text) = fs::read_to_string(dir.join(name)) {
            let id = text.trim();
            if let Some(next) = id.strip_prefix("ref:") {
                return resolve_ref(git_dir, common, next.trim());
            }
            if is_commit_id(id) {
                return Some(id.to_string());
            }
        }
    }
    let packed = fs::read_to_string(common.join("packed-refs")).ok()?;
    packed.lines().find_map(|line| {
        let (id, r) = line.split_once(' ')?;
        (r.trim() == name && is_commit_id(id)).then(|| id.to_string())
    })
}

/// `remote.origin.url` from a git config file.
fn origin_url(config: &str) -> Option<String> {
    let mut in_origin = false;
    for line in config.lines() {
        let line = line.trim();
        if line.starts_with('[') {
            let section: String = line
                .trim_matches(|c| c == '[' || c == ']')
                .chars()
                .filter(|c| !c.is_whitespace())
                .collect();
            in_origin = section == "remote\"origin\"";
        } else if in_origin {
            if let Some((k, v)) = line.split_once('=') {
                if k.trim().eq_ignore_ascii_case("url") {
                    let v = v.trim().trim_matches('"');
                    return (!v.is_empty()).then(|| v.to_string());
                }
            }
        }
    }
    None
}

/// The checkout `dir` is in, if any and if its `HEAD` resolves to a commit
/// (a repository without commits has none).
pub fn git_checkout(dir: &Path) -> Option<GitCheckout> {
    let (root, git_dir) = find_git_dir(dir)?;
    // Worktrees keep refs and config in the main repository's git dir.
    let common = match fs::read_to_string(git_dir.join("commondir")) {
        Ok(c) => git_dir.join(c.trim()),
        Err(_) => git_dir.clone(),
    };
    let head = fs::read_to_string(git_dir.join("HEAD")).ok()?;
    let head = head.trim();
    let commit = match head.strip_prefix("ref:") {
        Some(name) => resolve_ref(&git_dir, &common, name.trim())?,
        None if is_commit_id(head) => head.to_string(),
        None => return None,
    };
    let origin = fs::read_to_string(common.join("config"))
        .ok()
        .and_then(|c| origin_url(&c));
    Some(GitCheckout {
        root,
        commit,
        origin,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    const C1: &str = "0123456789abcdef0123456789abcdef01234567";
    const C2: &str = "89abcdef0123456789abcdef0123456789abcdef";

    fn repo() -> tempfile::TempDir {
        let t = tempfile::tempdir().unwrap();
        let git = t.path().join(".git");
        fs::create_dir_all(git.join("refs/heads")).unwrap();
        fs::write(git.join("HEAD"), "ref: refs/heads/main\n").unwrap();
        fs::write(git.join("refs/heads/main"), format!("{C1}\n")).unwrap();
        fs::write(
            git.join("config"),
            "[core]\n\tbare = false\n[remote \"upstream\"]\n\turl = https://other/x.git\n\
             [remote \"origin\"]\n\turl = https://git.example/team/app.git\n\tfetch = +refs/heads/*\n",
        )
        .unwrap();
        fs::create_dir_all(t.path().join("sub/dir")).unwrap();
        t
    }

    #[test]
    fn loose_refs_and_origin() {
        let t = repo();
        let c = git_checkout(&t.path().join("sub/dir")).unwrap();
        assert_eq!(c.commit, C1);
        assert_eq!(
            c.origin.as_deref(),
            Some("https://git.example/team/app.git")
        );
        assert_eq!(c.root, fs::canonicalize(t.path()).unwrap());
    }

    #[test]
    fn packed_refs_detached_heads_and_worktrees() {
        let t = repo();
        let git = t.path().join(".git");
        fs::remove_file(git.join("refs/heads/main")).unwrap();
        fs::write(
            git.join("packed-refs"),
            format!("# pack-refs with: peeled\n{C2} refs/heads/main\n"),
        )
        .unwrap();
        assert_eq!(git_checkout(t.path()).unwrap().commit, C2);
        fs::write(git.join("HEAD"), format!("{C1}\n")).unwrap();
        assert_eq!(git_checkout(t.path()).unwrap().commit, C1);

        // A worktree: `.git` file -> worktrees/NAME with its own HEAD.
        let wt_git = git.join("worktrees/wt");
        fs::create_dir_all(&wt_git).unwrap();
        fs::write(wt_git.join("HEAD"), "ref: refs/heads/main\n").unwrap();
        fs::write(wt_git.join("commondir"), "../..\n").unwrap();
        let wt = tempfile::tempdir().unwrap();
        fs::write(
            wt.path().join(".git"),
            format!("gitdir: {}\n", wt_git.display()),
        )
        .unwrap();
        let c = git_checkout(wt.path()).unwrap();
        assert_eq!(c.commit, C2);
        assert_eq!(
            c.origin.as_deref(),
            Some("https://git.example/team/app.git")
        );
    }

    #[test]
    fn no_repository_or_no_commit() {
        let t = tempfile::tempdir().unwrap();
        // A temp dir may itself sit inside a checkout; only assert on a
        // repository whose HEAD names a branch without commits.
        let git = t.path().join(".git");
        fs::create_dir_all(git.join("refs/heads")).unwrap();
        fs::write(git.join("HEAD"), "ref: refs/heads/main\n").unwrap();
        assert_eq!(git_checkout(t.path()), None);
        fs::write(git.join("HEAD"), "ref: refs/heads/../../x\n").unwrap();
        assert_eq!(git_checkout(t.path()), None);
    }
}
