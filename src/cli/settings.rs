//! Settings read from the environment and the command line: the state
//! directory (`IMGB_HOME`).

use std::path::{Path, PathBuf};

/// Where imgb keeps its state: `--root`, else `IMGB_HOME`, else
/// `$XDG_DATA_HOME/imgb`, else `~/.local/share/imgb`.
pub fn state_dir(root: Option<&Path>, get_env: impl Fn(&str) -> Option<String>) -> Option<PathBuf> {
    let non_empty = |name: &str| get_env(name).filter(|v| !v.is_empty());
    if let Some(root) = root {
        return Some(root.to_path_buf());
    }
    if let Some(home) = non_empty("IMGB_HOME") {
        return Some(PathBuf::from(home));
    }
    if let Some(xdg) = non_empty("XDG_DATA_HOME") {
        return Some(PathBuf::from(xdg).join("imgb"));
    }
    non_empty("HOME").map(|home| PathBuf::from(home).join(".local/share/imgb"))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn env(pairs: &'static [(&'static str, &'static str)]) -> impl Fn(&str) -> Option<String> {
        move |k| {
            pairs
                .iter()
                .find(|(n, _)| *n == k)
                .map(|(_, v)| v.to_string())
        }
    }

    #[test]
    fn root_flag_wins_over_everything() {
        let got = state_dir(Some(Path::new("/r")), env(&[("IMGB_HOME", "/h")]));
        assert_eq!(got, Some(PathBuf::from("/r")));
    }

    #[test]
    fn imgb_home_then_xdg_then_home() {
        let all = &[("IMGB_HOME", "/h"), ("XDG_DATA_HOME", "/x"), ("HOME", "/u")];
        assert_eq!(state_dir(None, env(all)), Some(PathBuf::from("/h")));
        let no_imgb = &[("IMGB_HOME", ""), ("XDG_DATA_HOME", "/x"), ("HOME", "/u")];
        assert_eq!(
            state_dir(None, env(no_imgb)),
            Some(PathBuf::from("/x/imgb"))
        );
        let only_home = &[("HOME", "/u")];
        assert_eq!(
            state_dir(None, env(only_home)),
            Some(PathBuf::from("/u/.local/share/imgb"))
        );
        assert_eq!(state_dir(None, env(&[])), None);
    }
}
