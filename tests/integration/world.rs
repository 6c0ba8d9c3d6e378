//! The test world: Debian's `docker-registry` on free loopback ports in four
//! flavours, the deterministic busybox base image, and the external tools
//! tests use as oracles.
//!
//! Everything is started lazily, once per test process, by the fixtures'
//! own scripts (`fixtures/registry/start.sh`, `fixtures/images/*/build.sh`).
//! Registries watch this process and stop (deleting their storage) when it
//! exits, so nothing outlives a test run and no fixed port is used.

#![allow(dead_code)]

use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::OnceLock;
use std::time::{Duration, Instant};

/// The repository root.
pub fn repo_root() -> &'static Path {
    Path::new(env!("CARGO_MANIFEST_DIR"))
}

/// A per-process scratch directory under cargo's target tmp dir. Directories
/// left by earlier processes that are gone are removed on first use.
pub fn world_dir() -> &'static Path {
    static DIR: OnceLock<PathBuf> = OnceLock::new();
    DIR.get_or_init(|| {
        let base = PathBuf::from(env!("CARGO_TARGET_TMPDIR"));
        if let Ok(entries) = std::fs::read_dir(&base) {
            for entry in entries.flatten() {
                let name = entry.file_name().to_string_lossy().to_string();
                if let Some(pid) = name.strip_prefix("world-") {
                    if !Path::new(&format!("/proc/{pid}")).exists() {
                        let _ = std::fs::remove_dir_all(entry.path());
                    }
                }
            }
        }
        let dir = base.join(format!("world-{}", std::process::id()));
        std::fs::create_dir_all(&dir).expect("create world dir");
        dir
    })
}

/// Returns the path of an external tool a test needs. A missing tool fails
/// the test (it never skips): the README's test command installs them all.
pub fn require_tool(name: &str) -> PathBuf {
    let path = std::env::var_os("PATH").unwrap_or_default();
    for dir in
        std::env::split_paths(&path).chain([PathBuf::from("/usr/sbin"), PathBuf::from("/sbin")])
    {
        let candidate = dir.join(name);
        if candidate.is_file() {
            return candidate;
        }
    }
    let package = match name {
        "docker-registry" => "docker-registry",
        "htpasswd" => "apache2-utils",
        "busybox" => "busybox-static",
        other => other,
    };
    panic!(
        "required tool `{name}` is not installed; run the README's test command \
         (`bash fixtures/test.sh`) or `apt-get install -y {package}`"
    );
}

/// Runs a command and returns its stdout, panicking with everything it
/// printed when it fails.
pub fn run_ok(cmd: &mut Command) -> String {
    let out = cmd
        .output()
        .unwrap_or_else(|e| panic!("cannot run {cmd:?}: {e}"));
    assert!(
        out.status.success(),
        "{cmd:?} failed ({}):\nstdout:\n{}\nstderr:\n{}",
        out.status,
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// A port on 127.0.0.1 that was free a moment ago.
pub fn free_port() -> u16 {
    let listener = TcpListener::bind("127.0.0.1:0").expect("bind an ephemeral port");
    listener.local_addr().expect("local addr").port()
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Flavour {
    /// Plain HTTP, no auth.
    Plain,
    /// HTTP with basic auth (bcrypt htpasswd): user `imgb`, password `s3cret`.
    Basic,
    /// HTTPS with a throw-away CA; see [`Registry::certs_d`].
    Tls,
    /// HTTP with the bearer-token challenge flow.
    Token,
}

impl Flavour {
    pub const ALL: [Flavour; 4] = [Flavour::Plain, Flavour::Basic, Flavour::Tls, Flavour::Token];

    pub fn name(self) -> &'static str {
        match self {
            Flavour::Plain => "plain",
            Flavour::Basic => "basic",
            Flavour::Tls => "tls",
            Flavour::Token => "token",
        }
    }
}

/// A running registry.
#[derive(Debug)]
pub struct Registry {
    pub flavour: Flavour,
    /// `127.0.0.1:PORT`
    pub addr: String,
    /// The registry's own directory (config, storage, certs, logs).
    pub dir: PathBuf,
}

pub const BASIC_USER: &str = "imgb";
pub const BASIC_PASSWORD: &str = "s3cret";

impl Registry {
    /// Credentials the registry demands, if any.
    pub fn credentials(&self) -> Option<(&'static str, &'static str)> {
        (self.flavour == Flavour::Basic).then_some((BASIC_USER, BASIC_PASSWORD))
    }

    /// A directory laid out like `/etc/docker/certs.d` (`HOST:PORT/ca.crt`)
    /// for the TLS flavour.
    pub fn certs_d(&self) -> Option<PathBuf> {
        (self.flavour == Flavour::Tls).then(|| self.dir.join("certs.d"))
    }

    /// The CA certificate that signed the TLS flavour's server certificate.
    pub fn ca_cert(&self) -> Option<PathBuf> {
        (self.flavour == Flavour::Tls).then(|| self.dir.join("ca.crt"))
    }

    /// `docker://ADDR/REPO` for skopeo.
    pub fn docker_ref(&self, repo_and_tag: &str) -> String {
        format!("docker://{}/{repo_and_tag}", self.addr)
    }

    /// skopeo flags that let it talk to this registry, for a source
    /// (`prefix` = "src-"), a destination ("dest-") or `inspect` ("").
    pub fn skopeo_flags(&self, prefix: &str) -> Vec<String> {
        let mut flags = Vec::new();
        match self.certs_d() {
            Some(certs) => {
                flags.push(format!("--{prefix}cert-dir"));
                flags.push(certs.join(&self.addr).display().to_string());
            }
            None => flags.push(format!("--{prefix}tls-verify=false")),
        }
        if let Some((user, password)) = self.credentials() {
            flags.push(format!("--{prefix}creds"));
            flags.push(format!("{user}:{password}"));
        }
        flags
    }

    /// The manifest digest skopeo reads for `repo_and_tag`.
    pub fn skopeo_digest(&self, repo_and_tag: &str) -> String {
        let raw = self.skopeo_raw_manifest(repo_and_tag);
        format!("sha256:{}", sha256_hex(&raw))
    }

    /// The raw manifest (or index) bytes skopeo reads for `repo_and_tag`.
    pub fn skopeo_raw_manifest(&self, repo_and_tag: &str) -> Vec<u8> {
        let out = Command::new(require_tool("skopeo"))
            .arg("inspect")
            .arg("--raw")
            .args(self.skopeo_flags(""))
            .arg(self.docker_ref(repo_and_tag))
            .output()
            .expect("run skopeo inspect");
        assert!(
            out.status.success(),
            "skopeo inspect {repo_and_tag} on {:?}: {}",
            self.flavour,
            String::from_utf8_lossy(&out.stderr)
        );
        out.stdout
    }

    /// Copies `src` (any skopeo transport) to `repo_and_tag` here.
    pub fn skopeo_copy_to(&self, src: &str, repo_and_tag: &str, extra: &[&str]) {
        run_ok(
            Command::new(require_tool("skopeo"))
                .args(["copy", "--insecure-policy", "--quiet"])
                .args(extra)
                .args(self.skopeo_flags("dest-"))
                .arg(src)
                .arg(self.docker_ref(repo_and_tag)),
        );
    }
}

/// The registry of `flavour`, started on first use.
pub fn registry(flavour: Flavour) -> &'static Registry {
    static REGISTRIES: [OnceLock<Registry>; 4] = [
        OnceLock::new(),
        OnceLock::new(),
        OnceLock::new(),
        OnceLock::new(),
    ];
    let slot = &REGISTRIES[Flavour::ALL.iter().position(|f| *f == flavour).unwrap_or(0)];
    slot.get_or_init(|| start_registry(flavour))
}

fn start_registry(flavour: Flavour) -> Registry {
    require_tool("docker-registry");
    let script = repo_root().join("fixtures/registry/start.sh");
    let mut last_error = String::new();
    // A free port can be taken by someone else before the registry binds it:
    // try a few times.
    for attempt in 0..4 {
        let port = free_port();
        let token_port = free_port();
        let dir = world_dir().join(format!("registry-{}-{attempt}", flavour.name()));
        let log = std::fs::File::create(
            world_dir().join(format!("registry-{}-{attempt}.out", flavour.name())),
        )
        .expect("create registry log");
        let mut child = Command::new("bash")
            .arg(&script)
            .arg(flavour.name())
            .arg(&dir)
            .arg(port.to_string())
            .arg(token_port.to_string())
            .arg("--watch-pid")
            .arg(std::process::id().to_string())
            .stdin(Stdio::null())
            .stdout(log.try_clone().expect("dup log"))
            .stderr(log)
            .spawn()
            .expect("spawn fixtures/registry/start.sh");
        let addr = format!("127.0.0.1:{port}");
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            if let Ok(Some(status)) = child.try_wait() {
                last_error = format!(
                    "start.sh exited ({status}): {}",
                    std::fs::read_to_string(
                        world_dir().join(format!("registry-{}-{attempt}.out", flavour.name()))
                    )
                    .unwrap_or_default()
                );
                break;
            }
            let up = TcpStream::connect(&addr).is_ok()
                && (flavour != Flavour::Token
                    || TcpStream::connect(("127.0.0.1", token_port)).is_ok());
            if up {
                // The child is not waited for: it stops itself when this
                // process exits (--watch-pid).
                std::mem::forget(child);
                return Registry { flavour, addr, dir };
            }
            if Instant::now() > deadline {
                let _ = child.kill();
                last_error = "registry did not listen within 30 s".to_string();
                break;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }
    panic!("cannot start the {} registry: {last_error}", flavour.name());
}

/// The busybox base image fixture (see `fixtures/images/busybox/build.sh`).
#[derive(Debug)]
pub struct Busybox {
    /// An OCI image layout with tags `latest` (single image) and `multi`
    /// (index: host arch plus a stand-in for linux/arm64/v8).
    pub layout: PathBuf,
    /// Manifest digest of `latest`.
    pub latest: String,
    /// Index digest of `multi`.
    pub multi: String,
}

impl Busybox {
    /// `oci:LAYOUT:TAG` for skopeo.
    pub fn oci_ref(&self, tag: &str) -> String {
        format!("oci:{}:{tag}", self.layout.display())
    }
}

/// The busybox fixture, built on first use.
pub fn busybox() -> &'static Busybox {
    static BUSYBOX: OnceLock<Busybox> = OnceLock::new();
    BUSYBOX.get_or_init(|| {
        require_tool("busybox");
        let layout = world_dir().join("busybox");
        let out = run_ok(
            Command::new("bash")
                .arg(repo_root().join("fixtures/images/busybox/build.sh"))
                .arg(&layout),
        );
        let digest_of = |tag: &str| {
            out.lines()
                .find_map(|l| l.strip_prefix(&format!("{tag} ")))
                .unwrap_or_else(|| panic!("build.sh printed no digest for {tag}: {out}"))
                .to_string()
        };
        Busybox {
            latest: digest_of("latest"),
            multi: digest_of("multi"),
            layout,
        }
    })
}

/// Pushes the busybox fixture to `registry` under `repo` with skopeo:
/// `REPO:latest`, `REPO:multi` (the whole index) and `REPO:v2s2` (Docker
/// media types). Once per registry and repo.
pub fn push_busybox(registry: &Registry, repo: &str) {
    static PUSHED: std::sync::Mutex<Vec<String>> = std::sync::Mutex::new(Vec::new());
    let key = format!("{}/{repo}", registry.addr);
    let mut pushed = PUSHED.lock().unwrap_or_else(|e| e.into_inner());
    if pushed.contains(&key) {
        return;
    }
    let bb = busybox();
    registry.skopeo_copy_to(&bb.oci_ref("latest"), &format!("{repo}:latest"), &[]);
    registry.skopeo_copy_to(&bb.oci_ref("multi"), &format!("{repo}:multi"), &["--all"]);
    registry.skopeo_copy_to(
        &bb.oci_ref("latest"),
        &format!("{repo}:v2s2"),
        &["--format", "v2s2"],
    );
    pushed.push(key);
}

/// Lowercase hex sha256 of `bytes`, computed by `sha256sum` (independent of
/// imgb's own code).
pub fn sha256_hex(bytes: &[u8]) -> String {
    use std::io::Write;
    let mut child = Command::new("sha256sum")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .expect("run sha256sum");
    child
        .stdin
        .take()
        .expect("stdin")
        .write_all(bytes)
        .expect("write to sha256sum");
    let out = child.wait_with_output().expect("sha256sum output");
    String::from_utf8_lossy(&out.stdout)
        .split_whitespace()
        .next()
        .unwrap_or("")
        .to_string()
}

/// The Debian bookworm minbase + python3 fixture (see
/// `fixtures/images/debian/build.sh`): slow the first time on a machine
/// (debootstrap from the Debian mirror), then built from the cached rootfs.
#[derive(Debug)]
pub struct Debian {
    /// An OCI image layout with the tag `latest`.
    pub layout: PathBuf,
    /// Manifest digest of `latest`.
    pub latest: String,
}

/// The Debian fixture, built on first use.
pub fn debian() -> &'static Debian {
    static DEBIAN: OnceLock<Debian> = OnceLock::new();
    DEBIAN.get_or_init(|| {
        require_tool("debootstrap");
        let layout = world_dir().join("debian");
        let out = run_ok(
            Command::new("bash")
                .arg(repo_root().join("fixtures/images/debian/build.sh"))
                .arg(&layout),
        );
        let latest = out
            .lines()
            .find_map(|l| l.strip_prefix("latest "))
            .unwrap_or_else(|| panic!("debian build.sh printed no digest: {out}"))
            .to_string();
        Debian { layout, latest }
    })
}
