//! Running one RUN command: the [`Executor`] trait (the seam the engine's
//! cache tests fake) and [`Runc`], which runs the command in an OCI runtime
//! (runc) on a generated bundle: `config.json` + an absolute `root.path`;
//! [`NoRuntime`] stands in when no runtime was found.
//!
//! The container gets pid, ipc, uts and mount namespaces, plus a network
//! namespace (loopback only) for `--network=none`. Docker compatibility:
//! `--network=default` uses the host network here (BuildKit's default is a
//! bridge/CNI network; imgb has none). No rlimits are set: the process
//! inherits imgb's, because raising one above the hard limit needs
//! CAP_SYS_RESOURCE, which builders in containers often lack.

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};

use super::super::EngineError;

/// An extra mount of the container.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MountSpec {
    pub destination: String,
    /// `bind`, `tmpfs`, ...
    pub kind: String,
    pub source: PathBuf,
    pub options: Vec<String>,
}

impl MountSpec {
    /// A bind mount of `source` at `destination`.
    pub fn bind(source: &Path, destination: &str, readonly: bool) -> MountSpec {
        let mut options = vec!["rbind".to_string(), "nosuid".to_string()];
        options.push(if readonly { "ro" } else { "rw" }.to_string());
        MountSpec {
            destination: destination.to_string(),
            kind: "bind".into(),
            source: source.to_path_buf(),
            options,
        }
    }
}

/// Everything the runtime needs for one command.
#[derive(Debug, Clone)]
pub struct RunRequest<'a> {
    /// The prepared root filesystem (absolute).
    pub rootfs: &'a Path,
    /// An empty scratch directory for the bundle.
    pub bundle: &'a Path,
    pub argv: &'a [String],
    /// `KEY=VALUE`.
    pub env: &'a [String],
    pub cwd: &'a str,
    pub uid: u32,
    pub gid: u32,
    pub additional_gids: Vec<u32>,
    pub mounts: Vec<MountSpec>,
    /// A private network namespace (`--network=none`).
    pub isolated_network: bool,
    /// `--security=insecure`: every capability.
    pub insecure: bool,
    /// Set to stop the build: the running command is killed and the run
    /// reports [`EngineError::Interrupted`].
    pub cancel: &'a AtomicBool,
}

/// How the command ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RunOutcome {
    /// The exit code (128 + signal when killed).
    pub exit_code: i32,
}

/// Runs a command in a container; `output` receives its stdout and stderr
/// lines (merged) as they come.
pub trait Executor: Sync {
    /// Whether commands can run at all; checked before a RUN prepares its
    /// rootfs.
    fn check(&self) -> Result<(), EngineError> {
        Ok(())
    }

    fn run(
        &self,
        request: &RunRequest<'_>,
        output: &mut dyn FnMut(&str),
    ) -> Result<RunOutcome, EngineError>;
}

/// An OCI runtime with runc's command line (`runc --root DIR run --bundle
/// DIR ID`).
#[derive(Debug, Clone)]
pub struct Runc {
    pub binary: PathBuf,
    /// The runtime's state directory.
    pub state: PathBuf,
}

/// The executor when no OCI runtime was found: a RUN fails with an install
/// hint (a build without RUN, or with every RUN cached, needs none).
#[derive(Debug, Clone)]
pub struct NoRuntime {
    /// The runtime as the user named it.
    pub name: String,
}

impl Executor for NoRuntime {
    fn check(&self) -> Result<(), EngineError> {
        Err(EngineError::RuntimeMissing {
            name: self.name.clone(),
        })
    }

    fn run(
        &self,
        _request: &RunRequest<'_>,
        _output: &mut dyn FnMut(&str),
    ) -> Result<RunOutcome, EngineError> {
        self.check().map(|()| RunOutcome { exit_code: 127 })
    }
}

/// Docker's default capability set.
const DEFAULT_CAPS: &[&str] = &[
    "CAP_CHOWN",
    "CAP_DAC_OVERRIDE",
    "CAP_FSETID",
    "CAP_FOWNER",
    "CAP_MKNOD",
    "CAP_NET_RAW",
    "CAP_SETGID",
    "CAP_SETUID",
    "CAP_SETFCAP",
    "CAP_SETPCAP",
    "CAP_NET_BIND_SERVICE",
    "CAP_SYS_CHROOT",
    "CAP_KILL",
    "CAP_AUDIT_WRITE",
];

/// Added for `--security=insecure`.
const INSECURE_CAPS: &[&str] = &[
    "CAP_SYS_ADMIN",
    "CAP_NET_ADMIN",
    "CAP_SYS_PTRACE",
    "CAP_DAC_READ_SEARCH",
    "CAP_LINUX_IMMUTABLE",
    "CAP_IPC_LOCK",
    "CAP_SYS_MODULE",
    "CAP_SYS_RAWIO",
    "CAP_SYS_NICE",
    "CAP_SYS_TIME",
    "CAP_SYS_TTY_CONFIG",
    "CAP_LEASE",
    "CAP_AUDIT_CONTROL",
];

static NEXT_ID: AtomicUsize = AtomicUsize::new(0);

/// A container id unique to this process and call.
fn container_id() -> String {
    format!(
        "imgb-{}-{}",
        std::process::id(),
        NEXT_ID.fetch_add(1, Ordering::Relaxed)
    )
}

/// The runtime spec (`config.json`) for `request`.
pub fn bundle_config(request: &RunRequest<'_>) -> serde_json::Value {
    let mut caps: Vec<&str> = DEFAULT_CAPS.to_vec();
    if request.insecure {
        caps.extend_from_slice(INSECURE_CAPS);
    }
    let mut mounts = vec![
        serde_json::json!({"destination": "/proc", "type": "proc", "source": "proc",
            "options": ["nosuid", "noexec", "nodev"]}),
        serde_json::json!({"destination": "/dev", "type": "tmpfs", "source": "tmpfs",
            "options": ["nosuid", "strictatime", "mode=755", "size=65536k"]}),
        serde_json::json!({"destination": "/dev/pts", "type": "devpts", "source": "devpts",
            "options": ["nosuid", "noexec", "newinstance", "ptmxmode=0666", "mode=0620"]}),
        serde_json::json!({"destination": "/dev/shm", "type": "tmpfs", "source": "shm",
            "options": ["nosuid", "noexec", "nodev", "mode=1777", "size=65536k"]}),
        serde_json::json!({"destination": "/sys", "type": "bind", "source": "/sys",
            "options": ["rbind", "nosuid", "noexec", "nodev", "ro"]}),
    ];
    for m in &request.mounts {
        mounts.push(serde_json::json!({
            "destination": m.destination,
            "type": m.kind,
            "source": m.source,
            "options": m.options,
        }));
    }
    let mut namespaces = vec![
        serde_json::json!({"type": "pid"}),
        serde_json::json!({"type": "ipc"}),
        serde_json::json!({"type": "uts"}),
        serde_json::json!({"type": "mount"}),
    ];
    if request.isolated_network {
        namespaces.push(serde_json::json!({"type": "network"}));
    }
    serde_json::json!({
        "ociVersion": "1.0.2",
        "process": {
            "terminal": false,
            "user": {
                "uid": request.uid,
                "gid": request.gid,
                "additionalGids": request.additional_gids,
            },
            "args": request.argv,
            "env": request.env,
            "cwd": request.cwd,
            "capabilities": {
                "bounding": caps,
                "effective": caps,
                "permitted": caps,
            },
            "noNewPrivileges": false,
        },
        "root": { "path": request.rootfs, "readonly": false },
        "hostname": "imgb",
        "mounts": mounts,
        "linux": {
            "namespaces": namespaces,
            "maskedPaths": [
                "/proc/kcore", "/proc/keys", "/proc/timer_list", "/proc/sched_debug",
                "/sys/firmware", "/proc/scsi"
            ],
            "readonlyPaths": [
                "/proc/bus", "/proc/fs", "/proc/irq", "/proc/sys", "/proc/sysrq-trigger"
            ],
        },
    })
}

impl Executor for Runc {
    fn run(
        &self,
        request: &RunRequest<'_>,
        output: &mut dyn FnMut(&str),
    ) -> Result<RunOutcome, EngineError> {
        let io = |path: &Path| {
            let path = path.to_path_buf();
            move |source| EngineError::Io { path, source }
        };
        let config = bundle_config(request);
        let config_path = request.bundle.join("config.json");
        let bytes = serde_json::to_vec(&config).map_err(|e| EngineError::Runtime {
            message: format!("encoding config.json: {e}"),
        })?;
        std::fs::write(&config_path, bytes).map_err(io(&config_path))?;
        std::fs::create_dir_all(&self.state).map_err(io(&self.state))?;

        let (reader, writer) = std::io::pipe().map_err(io(request.bundle))?;
        let id = container_id();
        let mut cmd = Command::new(&self.binary);
        cmd.arg("--root")
            .arg(&self.state)
            .args(["run", "--bundle"])
            .arg(request.bundle)
            .arg(&id)
            .stdin(Stdio::null())
            .stdout(writer.try_clone().map_err(io(request.bundle))?)
            .stderr(writer);
        let mut child = cmd.spawn().map_err(|e| EngineError::Runtime {
            message: format!("starting {}: {e}", self.binary.display()),
        })?;
        // Our copies of the pipe's write end must go, or EOF never comes.
        drop(cmd);
        // A watcher kills the container when the build is cancelled (a
        // container's init ignores SIGINT, so Ctrl-C alone does not stop it).
        // The watcher waits on a channel, so that the end of the run wakes
        // it at once (a sleeping poll would delay every RUN).
        let (finished, done) = std::sync::mpsc::channel::<()>();
        let cancel = request.cancel;
        let (binary, state, watched) = (&self.binary, &self.state, id.as_str());
        let status = std::thread::scope(|scope| {
            let watcher = scope.spawn(move || {
                use std::sync::atomic::Ordering::SeqCst;
                use std::sync::mpsc::RecvTimeoutError;
                let mut wait = std::time::Duration::from_millis(50);
                while let Err(RecvTimeoutError::Timeout) = done.recv_timeout(wait) {
                    if cancel.load(SeqCst) {
                        let _ = Command::new(binary)
                            .arg("--root")
                            .arg(state)
                            .args(["kill", "--all", watched, "KILL"])
                            .stdout(Stdio::null())
                            .stderr(Stdio::null())
                            .status();
                        wait = std::time::Duration::from_millis(200);
                    }
                }
            });
            let mut lines = BufReader::new(reader);
            let mut line = Vec::new();
            loop {
                line.clear();
                match lines.read_until(b'\n', &mut line) {
                    Ok(0) => break,
                    Ok(_) => {
                        let text = String::from_utf8_lossy(&line);
                        output(text.trim_end_matches(['\n', '\r']));
                    }
                    Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
                    Err(_) => break,
                }
            }
            let status = child.wait().map_err(io(&self.binary));
            drop(finished);
            let _ = watcher.join();
            status
        })?;
        let exit_code = match status.code() {
            Some(code) => code,
            None => {
                use std::os::unix::process::ExitStatusExt;
                128 + status.signal().unwrap_or(0)
            }
        };
        if !status.success() {
            // runc deletes the container when `run` returns; a runc that
            // died itself may leave it behind.
            let _ = Command::new(&self.binary)
                .arg("--root")
                .arg(&self.state)
                .args(["delete", "--force", &id])
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .status();
        }
        if request.cancel.load(Ordering::SeqCst) {
            return Err(EngineError::Interrupted);
        }
        Ok(RunOutcome { exit_code })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn spec_has_namespaces_mounts_and_no_rlimits() {
        let argv = vec!["/bin/sh".to_string(), "-c".into(), "true".into()];
        let env = vec!["PATH=/bin".to_string()];
        let mut req = RunRequest {
            rootfs: Path::new("/r"),
            bundle: Path::new("/b"),
            argv: &argv,
            env: &env,
            cwd: "/app",
            uid: 1000,
            gid: 50,
            additional_gids: vec![7],
            mounts: vec![MountSpec::bind(Path::new("/s"), "/run/secrets/x", true)],
            isolated_network: false,
            insecure: false,
            cancel: &AtomicBool::new(false),
        };
        let spec = bundle_config(&req);
        assert_eq!(spec["process"]["terminal"], false);
        assert_eq!(spec["process"]["user"]["uid"], 1000);
        assert_eq!(spec["process"]["user"]["additionalGids"][0], 7);
        assert_eq!(spec["process"]["cwd"], "/app");
        assert_eq!(spec["root"]["path"], "/r");
        assert!(spec["process"].get("rlimits").is_none());
        let ns: Vec<&str> = spec["linux"]["namespaces"]
            .as_array()
            .unwrap()
            .iter()
            .map(|n| n["type"].as_str().unwrap())
            .collect();
        assert_eq!(ns, ["pid", "ipc", "uts", "mount"]);
        let dests: Vec<&str> = spec["mounts"]
            .as_array()
            .unwrap()
            .iter()
            .map(|m| m["destination"].as_str().unwrap())
            .collect();
        assert_eq!(
            dests,
            [
                "/proc",
                "/dev",
                "/dev/pts",
                "/dev/shm",
                "/sys",
                "/run/secrets/x"
            ]
        );
        req.isolated_network = true;
        let spec = bundle_config(&req);
        assert_eq!(spec["linux"]["namespaces"][4]["type"], "network");
    }

    #[test]
    fn container_ids_are_unique() {
        assert_ne!(container_id(), container_id());
    }
}
