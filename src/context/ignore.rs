//! `.dockerignore`: reading the file and deciding what is excluded, with the
//! semantics of Docker's own reader and moby/patternmatcher (`filepath.Clean`
//! on each pattern, `!` exceptions, last match wins, a pattern that matches a
//! parent directory excludes everything below it).

use super::pattern::{BadPattern, IgnorePattern};

/// Why a `.dockerignore` cannot be used.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum IgnoreError {
    #[error("line {line}: {reason}")]
    BadPattern { line: usize, reason: String },
    #[error("line {line}: illegal exclusion pattern: \"!\"")]
    EmptyExclusion { line: usize },
}

#[derive(Debug, Clone)]
struct Rule {
    pattern: IgnorePattern,
    exception: bool,
    line: usize,
}

/// The rules of one `.dockerignore` file.
#[derive(Debug, Clone, Default)]
pub struct DockerIgnore {
    rules: Vec<Rule>,
}

impl DockerIgnore {
    /// No rules: nothing is excluded.
    pub fn empty() -> Self {
        Self::default()
    }

    /// Parses the text of a `.dockerignore` file.
    pub fn parse(text: &str) -> Result<Self, IgnoreError> {
        let text = text.strip_prefix('\u{feff}').unwrap_or(text);
        let mut rules = Vec::new();
        for (index, raw) in text.lines().enumerate() {
            let line = index + 1;
            // Docker quirk: only a '#' in the first column starts a comment.
            if raw.starts_with('#') {
                continue;
            }
            let mut pattern = raw.trim();
            if pattern.is_empty() {
                continue;
            }
            let exception = pattern.starts_with('!');
            if exception {
                pattern = pattern[1..].trim();
                if pattern.is_empty() {
                    return Err(IgnoreError::EmptyExclusion { line });
                }
            }
            let mut cleaned = clean(pattern);
            if cleaned.len() > 1 && cleaned.starts_with('/') {
                cleaned.remove(0);
            }
            let compiled =
                IgnorePattern::new(&cleaned).map_err(|BadPattern(p)| IgnoreError::BadPattern {
                    line,
                    reason: format!("syntax error in pattern {p:?}"),
                })?;
            rules.push(Rule {
                pattern: compiled,
                exception,
                line,
            });
        }
        Ok(DockerIgnore { rules })
    }

    /// Whether there are no rules.
    pub fn is_empty(&self) -> bool {
        self.rules.is_empty()
    }

    /// Whether any rule is a `!` exception (a walker may then need to look
    /// inside excluded directories).
    pub fn has_exceptions(&self) -> bool {
        self.rules.iter().any(|r| r.exception)
    }

    /// Whether `path` (relative to the context, `/`-separated, no leading
    /// `./`) is excluded: the last rule that matches it or one of its parent
    /// directories decides.
    pub fn is_excluded(&self, path: &str) -> bool {
        self.deciding_rule(path).is_some_and(|r| !r.exception)
    }

    /// The line of the rule that excludes `path`, for error messages.
    pub fn excluding_line(&self, path: &str) -> Option<(usize, &str)> {
        self.deciding_rule(path)
            .filter(|r| !r.exception)
            .map(|r| (r.line, r.pattern.as_str()))
    }

    fn deciding_rule(&self, path: &str) -> Option<&Rule> {
        let path = clean(path);
        if path == "." {
            return None; // Docker never excludes the context root itself
        }
        let parents: Vec<&str> = match path.rfind('/') {
            Some(end) => {
                let parent = &path[..end];
                (0..parent.len())
                    .filter(|i| parent.as_bytes()[*i] == b'/')
                    .map(|i| &parent[..i])
                    .chain([parent])
                    .collect()
            }
            None => Vec::new(),
        };
        let mut decided: Option<&Rule> = None;
        for rule in &self.rules {
            let excluded_now = decided.is_some_and(|r| !r.exception);
            // As moby does: an exclusion rule only matters while the path is
            // not yet excluded, an exception only while it is.
            if rule.exception != excluded_now {
                continue;
            }
            let hit =
                rule.pattern.matches(&path) || parents.iter().any(|p| rule.pattern.matches(p));
            if hit {
                decided = Some(rule);
            }
        }
        decided
    }
}

/// Go's `filepath.Clean` for `/`-separated paths.
pub fn clean(path: &str) -> String {
    if path.is_empty() {
        return ".".to_string();
    }
    let rooted = path.starts_with('/');
    let mut parts: Vec<&str> = Vec::new();
    for part in path.split('/') {
        match part {
            "" | "." => {}
            ".." => {
                if parts.last().is_some_and(|p| *p != "..") {
                    parts.pop();
                } else if !rooted {
                    parts.push("..");
                }
            }
            other => parts.push(other),
        }
    }
    let joined = parts.join("/");
    match (rooted, joined.is_empty()) {
        (true, _) => format!("/{joined}"),
        (false, true) => ".".to_string(),
        (false, false) => joined,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn excluded(ignore: &str, path: &str) -> bool {
        DockerIgnore::parse(ignore).unwrap().is_excluded(path)
    }

    #[test]
    fn clean_matches_go() {
        for (input, want) in [
            ("", "."),
            ("a/b/../c", "a/c"),
            ("./a", "a"),
            ("/../a", "/a"),
            ("../a", "../a"),
            ("a//b/", "a/b"),
            ("/", "/"),
            ("a/..", "."),
            ("a/../..", ".."),
        ] {
            assert_eq!(clean(input), want, "{input}");
        }
    }

    #[test]
    fn docker_semantics() {
        // Parent directory matches exclude what is inside.
        assert!(excluded("node_modules", "node_modules/a/b.js"));
        assert!(!excluded("node_modules", "src/node_modules/a.js"));
        assert!(excluded("**/node_modules", "src/node_modules/a.js"));
        // Leading slash and ./ are cleaned away.
        assert!(excluded("/build", "build/out"));
        assert!(excluded("./build", "build/out"));
        // Last match wins; exceptions re-include.
        assert!(!excluded("*.md\n!README.md", "README.md"));
        assert!(excluded("*.md\n!README.md", "CHANGES.md"));
        assert!(excluded("*.md\n!README.md\nREADME.md", "README.md"));
        // An exception can re-include a file inside an excluded dir.
        assert!(!excluded("docs\n!docs/keep.txt", "docs/keep.txt"));
        assert!(excluded("docs\n!docs/keep.txt", "docs/drop.txt"));
        // Comments only in column one; whitespace trimmed.
        assert!(!excluded("# a.txt", "a.txt"));
        assert!(excluded("  a.txt  ", "a.txt"));
        assert!(excluded(" # a.txt", "# a.txt"));
        // BOM on the first line.
        assert!(excluded("\u{feff}a.txt", "a.txt"));
        // `*` does not cross directories; `**` does.
        assert!(!excluded("*.go", "pkg/a.go"));
        assert!(excluded("**/*.go", "pkg/a.go"));
        assert!(excluded("*/*.go", "pkg/a.go"));
        // A pattern for a dir's contents leaves the dir itself.
        assert!(excluded("dir/*", "dir/a"));
        assert!(!excluded("dir/*", "dir"));
        // The context root is never excluded.
        assert!(!excluded("*", "."));
        assert!(excluded("*", "anything"));
        // Exclude everything but one tree.
        assert!(!excluded("*\n!src", "src/main.rs"));
        assert!(excluded("*\n!src", "target/debug/x"));
    }

    #[test]
    fn errors_name_the_line() {
        assert_eq!(
            DockerIgnore::parse("a\n!\n").unwrap_err(),
            IgnoreError::EmptyExclusion { line: 2 }
        );
        assert!(matches!(
            DockerIgnore::parse("ok\n\n[z-\n").unwrap_err(),
            IgnoreError::BadPattern { line: 3, .. }
        ));
    }

    #[test]
    fn excluding_line_points_at_the_rule() {
        let ignore = DockerIgnore::parse("# c\n*.log\nsecret/\n").unwrap();
        assert_eq!(ignore.excluding_line("a.log"), Some((2, "*.log")));
        assert_eq!(ignore.excluding_line("secret/key"), Some((3, "secret")));
        assert_eq!(ignore.excluding_line("main.rs"), None);
    }
}
