//! Running the real `imgb` binary: a temp `IMGB_HOME` and `DOCKER_CONFIG`
//! per test, temp build contexts, and output filtered for snapshots (digests
//! and temp paths replaced by placeholders).

#![allow(dead_code)]

use std::path::{Path, PathBuf};
use std::process::Command;

use tempfile::TempDir;

/// The built `imgb` binary.
pub fn imgb_bin() -> &'static str {
    env!("CARGO_BIN_EXE_imgb")
}

/// One isolated imgb: its own state dir and Docker config dir.
pub struct Imgb {
    pub home: TempDir,
    pub docker_config: TempDir,
}

impl Default for Imgb {
    fn default() -> Self {
        Self::new()
    }
}

impl Imgb {
    pub fn new() -> Self {
        Imgb {
            home: tempfile::tempdir().expect("temp IMGB_HOME"),
            docker_config: tempfile::tempdir().expect("temp DOCKER_CONFIG"),
        }
    }

    /// A command for the real binary with a clean, deterministic environment.
    pub fn cmd(&self) -> Command {
        let mut cmd = Command::new(imgb_bin());
        cmd.env("IMGB_HOME", self.home.path())
            .env("DOCKER_CONFIG", self.docker_config.path())
            .env("NO_COLOR", "1")
            .env_remove("IMGB_PROGRESS")
            .env_remove("BUILDKIT_PROGRESS")
            .env_remove("SOURCE_DATE_EPOCH");
        cmd
    }

    /// Runs imgb with `args` and captures what it printed.
    pub fn run<I, S>(&self, args: I) -> Run
    where
        I: IntoIterator<Item = S>,
        S: AsRef<std::ffi::OsStr>,
    {
        let mut cmd = self.cmd();
        cmd.args(args);
        Run::of(cmd)
    }
}

/// What one run printed and how it ended.
#[derive(Debug)]
pub struct Run {
    pub command: String,
    pub code: Option<i32>,
    pub stdout: String,
    pub stderr: String,
}

impl Run {
    pub fn of(mut cmd: Command) -> Run {
        let command = format!("{cmd:?}");
        let out = cmd
            .output()
            .unwrap_or_else(|e| panic!("cannot run {command}: {e}"));
        Run {
            command,
            code: out.status.code(),
            stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
            stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
        }
    }

    /// Runs `cmd`, killing it (and failing the test) if it has not ended
    /// within `limit`; also returns how long it took.
    #[track_caller]
    pub fn within(mut cmd: Command, limit: std::time::Duration) -> (Run, std::time::Duration) {
        use std::io::Read;
        use std::process::Stdio;
        let command = format!("{cmd:?}");
        let started = std::time::Instant::now();
        let mut child = cmd
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap_or_else(|e| panic!("cannot run {command}: {e}"));
        let drain = |mut r: Box<dyn Read + Send>| {
            std::thread::spawn(move || {
                let mut buf = Vec::new();
                let _ = r.read_to_end(&mut buf);
                String::from_utf8_lossy(&buf).into_owned()
            })
        };
        let out = drain(Box::new(child.stdout.take().expect("stdout")));
        let err = drain(Box::new(child.stderr.take().expect("stderr")));
        let status = loop {
            if let Some(status) = child.try_wait().expect("wait") {
                break status;
            }
            if started.elapsed() > limit {
                let _ = child.kill();
                let _ = child.wait();
                panic!(
                    "{command} still ran after {limit:?}; stderr so far:\n{}",
                    err.join().unwrap_or_default()
                );
            }
            std::thread::sleep(std::time::Duration::from_millis(20));
        };
        let took = started.elapsed();
        let run = Run {
            command,
            code: status.code(),
            stdout: out.join().unwrap_or_default(),
            stderr: err.join().unwrap_or_default(),
        };
        (run, took)
    }

    fn describe(&self) -> String {
        format!(
            "{}\nexit: {:?}\n--- stdout\n{}\n--- stderr\n{}",
            self.command, self.code, self.stdout, self.stderr
        )
    }

    /// Asserts exit code 0.
    #[track_caller]
    pub fn success(&self) -> &Self {
        assert_eq!(self.code, Some(0), "expected success:\n{}", self.describe());
        self
    }

    /// Asserts the given exit code.
    #[track_caller]
    pub fn exit_code(&self, code: i32) -> &Self {
        assert_eq!(
            self.code,
            Some(code),
            "expected exit {code}:\n{}",
            self.describe()
        );
        self
    }

    /// Asserts stderr contains `needle`.
    #[track_caller]
    pub fn stderr_has(&self, needle: &str) -> &Self {
        assert!(
            self.stderr.contains(needle),
            "stderr lacks {needle:?}:\n{}",
            self.describe()
        );
        self
    }

    /// Asserts stdout contains `needle`.
    #[track_caller]
    pub fn stdout_has(&self, needle: &str) -> &Self {
        assert!(
            self.stdout.contains(needle),
            "stdout lacks {needle:?}:\n{}",
            self.describe()
        );
        self
    }
}

/// A build context in a temp dir.
pub struct Context {
    pub dir: TempDir,
}

impl Default for Context {
    fn default() -> Self {
        Self::new()
    }
}

impl Context {
    pub fn new() -> Self {
        Context {
            dir: tempfile::tempdir().expect("temp context"),
        }
    }

    pub fn path(&self) -> &Path {
        self.dir.path()
    }

    /// Writes `contents` at `rel` (parents created).
    pub fn file(self, rel: &str, contents: impl AsRef<[u8]>) -> Self {
        let path = self.dir.path().join(rel);
        if let Some(parent) = path.parent() {
            std::fs::create_dir_all(parent).expect("create parent");
        }
        std::fs::write(&path, contents).expect("write context file");
        self
    }

    /// Creates a symlink at `rel` pointing to `target`.
    pub fn symlink(self, rel: &str, target: &str) -> Self {
        let path = self.dir.path().join(rel);
        if let Some(parent) = path.parent() {
            std::fs::create_dir_all(parent).expect("create parent");
        }
        std::os::unix::fs::symlink(target, &path).expect("create symlink");
        self
    }

    /// Creates an empty directory at `rel`.
    pub fn dir(self, rel: &str) -> Self {
        std::fs::create_dir_all(self.dir.path().join(rel)).expect("create dir");
        self
    }

    pub fn join(&self, rel: &str) -> PathBuf {
        self.dir.path().join(rel)
    }
}

/// Replaces what changes from run to run with placeholders: `sha256:<hex>`
/// becomes `sha256:<digest>`, the given paths become `[NAME]`, and
/// durations like `0.42s` become `<dur>`.
pub fn filter(text: &str, paths: &[(&Path, &str)]) -> String {
    let mut out = text.to_string();
    for (path, name) in paths {
        out = out.replace(&path.display().to_string(), &format!("[{name}]"));
    }
    let mut result = String::with_capacity(out.len());
    let bytes = out.as_bytes();
    let mut i = 0;
    while i < bytes.len() {
        if out[i..].starts_with("sha256:") {
            let hex_len = bytes[i + 7..]
                .iter()
                .take_while(|b| b.is_ascii_hexdigit())
                .count();
            if hex_len >= 12 {
                result.push_str("sha256:<digest>");
                i += 7 + hex_len;
                continue;
            }
        }
        let c = out[i..].chars().next().unwrap_or(' ');
        result.push(c);
        i += c.len_utf8();
    }
    filter_durations(&result)
}

fn filter_durations(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    let chars: Vec<char> = text.chars().collect();
    let mut i = 0;
    while i < chars.len() {
        let starts_number =
            chars[i].is_ascii_digit() && (i == 0 || !chars[i - 1].is_alphanumeric());
        if starts_number {
            let mut j = i;
            while j < chars.len() && (chars[j].is_ascii_digit() || chars[j] == '.') {
                j += 1;
            }
            let unit_len = if chars[j..].starts_with(&['m', 's']) {
                2
            } else if chars.get(j) == Some(&'s') {
                1
            } else {
                0
            };
            let after = chars.get(j + unit_len);
            if unit_len > 0
                && after.is_none_or(|c| !c.is_alphanumeric())
                && chars[i..j].contains(&'.')
            {
                out.push_str("<dur>");
                i = j + unit_len;
                continue;
            }
            out.extend(&chars[i..j]);
            i = j;
            continue;
        }
        out.push(chars[i]);
        i += 1;
    }
    out
}

/// Compares `actual` with `tests/integration/snapshots/NAME.txt`. With
/// `IMGB_UPDATE_SNAPSHOTS=1` the snapshot is (re)written instead.
#[track_caller]
pub fn assert_snapshot(name: &str, actual: &str) {
    let path = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/integration/snapshots")
        .join(format!("{name}.txt"));
    if std::env::var_os("IMGB_UPDATE_SNAPSHOTS").is_some() {
        std::fs::write(&path, actual).expect("write snapshot");
        return;
    }
    let expected = std::fs::read_to_string(&path).unwrap_or_else(|_| {
        panic!(
            "snapshot {} is missing; run with IMGB_UPDATE_SNAPSHOTS=1 to create it. Actual:\n{actual}",
            path.display()
        )
    });
    assert_eq!(
        expected, actual,
        "snapshot {name} differs (IMGB_UPDATE_SNAPSHOTS=1 rewrites it)"
    );
}

#[test]
fn filter_replaces_digests_paths_and_durations() {
    let hex = "a".repeat(64);
    let text = format!("wrote sha256:{hex} to /tmp/x/out in 0.42s (step 1 of 3, 1.5ms)");
    let got = filter(&text, &[(Path::new("/tmp/x"), "TMP")]);
    assert_eq!(
        got,
        "wrote sha256:<digest> to [TMP]/out in <dur> (step 1 of 3, <dur>)"
    );
}
