//! `imgb pull`, `push`, `login` and `logout` against the real local
//! registries of the test world (plain, basic auth, TLS with a private CA,
//! bearer tokens), with skopeo as the oracle, and through a fault-injecting
//! loopback proxy (dropped connections, 500/429 answers, corrupted blobs).

use std::io::Write;
use std::path::PathBuf;
use std::process::Stdio;
use std::sync::atomic::{AtomicBool, Ordering};

use crate::harness::{Imgb, Run};
use crate::world::{self, Flavour, Registry};

mod fault_proxy;
mod hostile;

use fault_proxy::{Action, FaultProxy, Logged, TokenServer};

// ---------------------------------------------------------------- helpers

/// An imgb set up to reach `registry`: its CA (TLS) and its credentials
/// (basic auth, through `imgb login`).
pub(crate) fn imgb_for(registry: &Registry) -> Imgb {
    let imgb = Imgb::new();
    if let Some((user, password)) = registry.credentials() {
        login(&imgb, registry, user, password).success();
    }
    imgb
}

pub(crate) fn run(imgb: &Imgb, registry: &Registry, args: &[&str]) -> Run {
    let mut cmd = imgb.cmd();
    if let Some(certs) = registry.certs_d() {
        cmd.env("IMGB_CERTS_DIR", certs);
    }
    cmd.args(args);
    Run::of(cmd)
}

fn login(imgb: &Imgb, registry: &Registry, user: &str, password: &str) -> Run {
    let mut cmd = imgb.cmd();
    if let Some(certs) = registry.certs_d() {
        cmd.env("IMGB_CERTS_DIR", certs);
    }
    cmd.args(["login", &registry.addr, "-u", user, "--password-stdin"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    let mut child = cmd.spawn().expect("spawn imgb login");
    child
        .stdin
        .take()
        .expect("stdin")
        .write_all(format!("{password}\n").as_bytes())
        .expect("write password");
    let out = child.wait_with_output().expect("imgb login");
    Run {
        command: format!("imgb login {} -u {user}", registry.addr),
        code: out.status.code(),
        stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
    }
}

fn json(bytes: &[u8]) -> serde_json::Value {
    serde_json::from_slice(bytes).expect("valid JSON")
}

/// A blob of the busybox fixture layout, parsed.
fn layout_blob(digest: &str) -> serde_json::Value {
    let hex = digest.trim_start_matches("sha256:");
    json(&std::fs::read(world::busybox().layout.join("blobs/sha256").join(hex)).expect("blob"))
}

/// The digest of the arm64/v8 entry of the fixture's `multi` index.
fn arm64_manifest_digest() -> String {
    let index = layout_blob(&world::busybox().multi);
    index["manifests"]
        .as_array()
        .expect("manifests")
        .iter()
        .find(|m| m["platform"]["architecture"] == "arm64")
        .and_then(|m| m["digest"].as_str())
        .expect("an arm64 entry")
        .to_string()
}

fn store_has(imgb: &Imgb, digest: &str) -> bool {
    imgb.home
        .path()
        .join("blobs/sha256")
        .join(digest.trim_start_matches("sha256:"))
        .is_file()
}

// ---------------------------------------------------------------- pull and push per flavour

fn pull_and_push_round_trip(flavour: Flavour) {
    let registry = world::registry(flavour);
    world::push_busybox(registry, "it/busybox");
    let bb = world::busybox();
    let imgb = imgb_for(registry);
    let addr = &registry.addr;

    // The single image.
    let pulled = run(
        &imgb,
        registry,
        &["pull", &format!("{addr}/it/busybox:latest")],
    );
    pulled.success();
    assert_eq!(pulled.stdout.trim(), bb.latest, "{pulled:?}");
    let manifest = layout_blob(&bb.latest);
    for d in std::iter::once(&manifest["config"]).chain(manifest["layers"].as_array().unwrap()) {
        let digest = d["digest"].as_str().unwrap();
        assert!(store_has(&imgb, digest), "{digest} not in the store");
    }
    // A second pull fetches nothing.
    run(
        &imgb,
        registry,
        &["pull", &format!("{addr}/it/busybox:latest")],
    )
    .success()
    .stderr_has("0 blob(s) fetched");

    // The multi-platform index, arm64/v8 picked.
    let arm = run(
        &imgb,
        registry,
        &[
            "pull",
            &format!("{addr}/it/busybox:multi"),
            "--platform",
            "linux/arm64/v8",
        ],
    );
    arm.success().stderr_has(&bb.multi);
    assert_eq!(arm.stdout.trim(), arm64_manifest_digest());

    // Docker v2s2.
    let v2s2 = run(
        &imgb,
        registry,
        &["pull", &format!("{addr}/it/busybox:v2s2")],
    );
    v2s2.success();
    assert_eq!(
        v2s2.stdout.trim(),
        registry.skopeo_digest("it/busybox:v2s2")
    );

    // Push the pulled image to a new repository; skopeo reads the same digest.
    let dest = format!("{addr}/it/pushed-{}:copy", flavour.name());
    let pushed = run(
        &imgb,
        registry,
        &["push", &format!("{addr}/it/busybox:latest"), &dest],
    );
    pushed.success();
    assert_eq!(pushed.stdout.trim(), bb.latest);
    assert_eq!(
        registry.skopeo_digest(&format!("it/pushed-{}:copy", flavour.name())),
        bb.latest
    );

    // The Docker v2s2 image goes back up with its Docker media type intact.
    let dest = format!("{addr}/it/pushed-{}:v2s2", flavour.name());
    run(
        &imgb,
        registry,
        &["push", &format!("{addr}/it/busybox:v2s2"), &dest],
    )
    .success();
    let raw = registry.skopeo_raw_manifest(&format!("it/pushed-{}:v2s2", flavour.name()));
    assert_eq!(
        json(&raw)["mediaType"],
        "application/vnd.docker.distribution.manifest.v2+json"
    );
    assert_eq!(
        format!("sha256:{}", world::sha256_hex(&raw)),
        v2s2.stdout.trim()
    );

    // Push the OCI layout's index (every platform) and read it back.
    let layout = format!("oci:{}:multi", bb.layout.display());
    let dest = format!("{addr}/it/layout-{}:multi", flavour.name());
    run(&imgb, registry, &["push", &layout, &dest]).success();
    assert_eq!(
        registry.skopeo_digest(&format!("it/layout-{}:multi", flavour.name())),
        bb.multi
    );
}

#[test]
fn plain_registry_pull_and_push() {
    pull_and_push_round_trip(Flavour::Plain);
}

#[test]
fn basic_auth_registry_pull_and_push() {
    pull_and_push_round_trip(Flavour::Basic);
}

#[test]
fn tls_registry_pull_and_push() {
    pull_and_push_round_trip(Flavour::Tls);
}

#[test]
fn token_registry_pull_and_push() {
    pull_and_push_round_trip(Flavour::Token);
}

#[test]
fn tls_registry_is_refused_without_its_ca() {
    let registry = world::registry(Flavour::Tls);
    world::push_busybox(registry, "it/busybox");
    let imgb = Imgb::new();
    let empty = tempfile::tempdir().expect("tempdir");
    let mut cmd = imgb.cmd();
    cmd.env("IMGB_CERTS_DIR", empty.path())
        .args(["pull", &format!("{}/it/busybox:latest", registry.addr)]);
    Run::of(cmd).exit_code(1).stderr_has("certificate");

    // Listed as insecure, its certificate is not checked (as with Docker).
    let mut cmd = imgb.cmd();
    cmd.env("IMGB_CERTS_DIR", empty.path()).args([
        "pull",
        &format!("{}/it/busybox:latest", registry.addr),
        "--insecure-registry",
        &registry.addr,
    ]);
    let run = Run::of(cmd);
    run.success();
    assert_eq!(run.stdout.trim(), world::busybox().latest);
}

#[test]
fn basic_auth_needs_login_and_never_shows_the_password() {
    let registry = world::registry(Flavour::Basic);
    world::push_busybox(registry, "it/busybox");
    let imgb = Imgb::new();
    let reference = format!("{}/it/busybox:latest", registry.addr);
    run(&imgb, registry, &["pull", &reference])
        .exit_code(1)
        .stderr_has("authentication failed")
        .stderr_has("imgb login");

    let wrong = login(&imgb, registry, world::BASIC_USER, "not-the-password-x9");
    wrong.exit_code(1).stderr_has("authentication failed");
    assert!(!wrong.stderr.contains("not-the-password-x9"), "{wrong:?}");
    assert!(
        !imgb.docker_config.path().join("config.json").exists(),
        "failed login wrote config"
    );

    login(&imgb, registry, world::BASIC_USER, world::BASIC_PASSWORD).success();
    let config = json(&std::fs::read(imgb.docker_config.path().join("config.json")).unwrap());
    let auth = config["auths"][&registry.addr]["auth"]
        .as_str()
        .expect("auth entry");
    // base64("imgb:s3cret"), as `docker login` writes it.
    assert_eq!(auth, "aW1nYjpzM2NyZXQ=");
    let ok = run(&imgb, registry, &["pull", &reference]);
    ok.success();
    assert!(!ok.stderr.contains(world::BASIC_PASSWORD));

    run(&imgb, registry, &["logout", &registry.addr])
        .success()
        .stderr_has("Removed");
    let config = json(&std::fs::read(imgb.docker_config.path().join("config.json")).unwrap());
    assert!(config["auths"].get(&registry.addr).is_none(), "{config}");
    run(&imgb, registry, &["logout", &registry.addr])
        .success()
        .stderr_has("Not logged in");
}

#[test]
fn credentials_come_from_a_credential_helper() {
    let registry = world::registry(Flavour::Basic);
    world::push_busybox(registry, "it/busybox");
    let imgb = Imgb::new();
    // A real helper program speaking Docker's protocol, storing in a file.
    let bin = tempfile::tempdir().expect("tempdir");
    let stored = bin.path().join("stored.json");
    let helper = bin.path().join("docker-credential-imgbtest");
    std::fs::write(
        &helper,
        format!(
            "#!/bin/sh\ncase \"$1\" in\n  get) read k; [ -f {s} ] && cat {s} || {{ echo 'credentials not found in native keychain'; exit 1; }};;\n  store) cat > {s};;\n  erase) read k; rm {s} 2>/dev/null || {{ echo 'credentials not found'; exit 1; }};;\nesac\n",
            s = stored.display()
        ),
    )
    .unwrap();
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(&helper, std::fs::Permissions::from_mode(0o755)).unwrap();
    std::fs::write(
        imgb.docker_config.path().join("config.json"),
        r#"{"credsStore":"imgbtest","detachKeys":"ctrl-e"}"#,
    )
    .unwrap();
    let path = format!(
        "{}:{}",
        bin.path().display(),
        std::env::var("PATH").unwrap_or_default()
    );
    let with_path = |args: &[&str]| {
        let mut cmd = imgb.cmd();
        cmd.env("PATH", &path).args(args);
        cmd
    };
    let reference = format!("{}/it/busybox:latest", registry.addr);
    Run::of(with_path(&["pull", &reference]))
        .exit_code(1)
        .stderr_has("authentication failed");

    let mut cmd = with_path(&["login", &registry.addr, "-u", "imgb", "--password-stdin"]);
    cmd.stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    let mut child = cmd.spawn().unwrap();
    child.stdin.take().unwrap().write_all(b"s3cret").unwrap();
    assert!(child.wait_with_output().unwrap().status.success());
    let helper_saw = json(&std::fs::read(&stored).expect("helper stored the secret"));
    assert_eq!(helper_saw["ServerURL"], registry.addr.as_str());
    assert_eq!(helper_saw["Username"], "imgb");
    let config = json(&std::fs::read(imgb.docker_config.path().join("config.json")).unwrap());
    assert_eq!(config["detachKeys"], "ctrl-e", "other keys survive");
    assert_eq!(
        config["auths"][&registry.addr],
        serde_json::json!({}),
        "no secret in the file"
    );

    Run::of(with_path(&["pull", &reference])).success();
}

#[test]
fn unknown_platforms_missing_images_and_bad_names_are_refused_clearly() {
    let registry = world::registry(Flavour::Plain);
    world::push_busybox(registry, "it/busybox");
    let imgb = Imgb::new();
    run(
        &imgb,
        registry,
        &[
            "pull",
            &format!("{}/it/busybox:multi", registry.addr),
            "--platform",
            "linux/s390x",
        ],
    )
    .exit_code(1)
    .stderr_has("no image for platform linux/s390x")
    .stderr_has("linux/arm64/v8");
    run(
        &imgb,
        registry,
        &["pull", &format!("{}/it/nothing-here:latest", registry.addr)],
    )
    .exit_code(1)
    .stderr_has("MANIFEST_UNKNOWN");
    run(&imgb, registry, &["pull", "Bad/Name"])
        .exit_code(1)
        .stderr_has("lowercase");
}

pub(crate) fn is_blob(path: &str) -> bool {
    path.contains("/blobs/sha256:")
}

#[test]
fn pull_and_push_survive_dropped_connections_500_and_429() {
    let registry = world::registry(Flavour::Plain);
    world::push_busybox(registry, "it/busybox");
    let bb = world::busybox();
    // The first try of every manifest and blob request, and of starting an
    // upload, fails in one of three ways. Every third PATCH of a chunked
    // upload gets a 502 without reaching the registry (the upload resumes
    // at the registry's offset); one PATCH reaches the registry but its
    // answer is lost, which distribution cannot resume (its upload state
    // token is stale then), so that upload starts over. The answer to one
    // finishing PUT is lost too; a HEAD then shows the blob arrived.
    let lost_one = AtomicBool::new(false);
    let lost_put = AtomicBool::new(false);
    let proxy = FaultProxy::start(
        &registry.addr,
        Box::new(move |method, path, n| match (method, n) {
            ("GET", 0) if is_blob(path) => Action::Drop,
            ("GET", 0) if path.contains("/manifests/") => Action::Status(500),
            ("HEAD", 0) => Action::Status(503),
            ("POST", 0) => Action::Status(429),
            ("PUT", 0) if path.contains("/manifests/") => Action::Drop,
            ("PATCH", 3) if !lost_one.swap(true, Ordering::SeqCst) => Action::ForwardThenDrop,
            // The answer to one finishing PUT is lost: the blob is there.
            ("PUT", _)
                if path.contains("/blobs/uploads/") && !lost_put.swap(true, Ordering::SeqCst) =>
            {
                Action::ForwardThenDrop
            }
            ("PATCH", _) if n % 3 == 1 => Action::Status(502),
            _ => Action::Forward,
        }),
    );
    let imgb = Imgb::new();
    let pulled = imgb.run(["pull", &format!("{}/it/busybox:latest", proxy.addr)]);
    pulled.success();
    assert_eq!(pulled.stdout.trim(), bb.latest);
    let log = proxy.log();
    assert!(
        log.iter()
            .any(|l| l.action == Action::Drop && is_blob(&l.path)),
        "no blob fault injected"
    );
    assert!(
        log.iter().any(|l| l.action == Action::Status(500)),
        "no 500 injected"
    );
    pulled.stderr_has("HTTP 500; retrying in");
    pulled.stderr_has("connection error; retrying in");

    // Small chunks: the busybox layer goes up in many PATCHes, some of whose
    // answers are lost, so the upload must resume from the registry's offset.
    let mut cmd = imgb.cmd();
    cmd.env("IMGB_REGISTRY_CHUNK_SIZE", "65536").args([
        "push",
        &format!("{}/it/busybox:latest", proxy.addr),
        &format!("{}/it/faulty:latest", proxy.addr),
    ]);
    // The mount hint from the pull is withheld, so blobs are really uploaded.
    let _ = std::fs::remove_file(imgb.home.path().join("registry/blob-locations.json"));
    let pushed = Run::of(cmd);
    pushed.success();
    assert_eq!(pushed.stdout.trim(), bb.latest);
    assert_eq!(registry.skopeo_digest("it/faulty:latest"), bb.latest);
    let log = proxy.log();
    assert!(
        log.iter().any(|l| l.action == Action::ForwardThenDrop),
        "no PATCH answer lost"
    );
    assert!(
        log.iter().any(|l| l.action == Action::Status(429)),
        "no 429 injected"
    );
    assert!(
        log.iter()
            .any(|l| l.method == "GET" && l.path.contains("/blobs/uploads/")),
        "the upload was never resumed from the registry's offset"
    );
}

#[test]
fn a_corrupted_blob_fails_the_pull_and_stores_nothing() {
    let registry = world::registry(Flavour::Plain);
    world::push_busybox(registry, "it/busybox");
    let bb = world::busybox();
    let manifest = layout_blob(&bb.latest);
    let layer = manifest["layers"][0]["digest"]
        .as_str()
        .unwrap()
        .to_string();
    let target = layer.clone();
    let proxy = FaultProxy::start(
        &registry.addr,
        Box::new(move |method, path, _| {
            if method == "GET" && path.ends_with(&target) {
                Action::Corrupt
            } else {
                Action::Forward
            }
        }),
    );
    let imgb = Imgb::new();
    let run = imgb.run(["pull", &format!("{}/it/busybox:latest", proxy.addr)]);
    run.exit_code(1)
        .stderr_has("digest mismatch")
        .stderr_has(&layer);
    assert!(
        !store_has(&imgb, &layer),
        "corrupt layer stored under its digest"
    );
    let tmp = imgb.home.path().join("tmp");
    let leftovers: Vec<PathBuf> = std::fs::read_dir(&tmp)
        .map(|d| d.filter_map(|e| e.ok().map(|e| e.path())).collect())
        .unwrap_or_default();
    assert!(leftovers.is_empty(), "temp files left: {leftovers:?}");
    assert!(
        !store_has(&imgb, &bb.latest),
        "manifest stored although its layer failed"
    );
}

#[test]
fn pushing_again_sends_no_blob_bodies_and_known_blobs_are_mounted() {
    let registry = world::registry(Flavour::Token);
    world::push_busybox(registry, "it/busybox");
    let bb = world::busybox();
    let proxy = FaultProxy::start(&registry.addr, Box::new(|_, _, _| Action::Forward));
    let imgb = Imgb::new();
    imgb.run(["pull", &format!("{}/it/busybox:latest", proxy.addr)])
        .success();

    // First push to a new repository: the pull taught imgb where the blobs
    // are, so they are mounted, not uploaded.
    proxy.clear();
    let dest = format!("{}/it/mounted:latest", proxy.addr);
    imgb.run(["push", &format!("{}/it/busybox:latest", proxy.addr), &dest])
        .success()
        .stderr_has("0 blob(s) uploaded");
    let log = proxy.log();
    assert!(
        log.iter()
            .any(|l| l.method == "POST" && l.path.contains("mount=")),
        "{log:?}"
    );
    assert!(!log
        .iter()
        .any(|l| l.method == "PATCH" || (l.method == "PUT" && l.path.contains("/blobs/"))));

    // Second push: every blob is already there; only HEADs and the manifest.
    proxy.clear();
    imgb.run(["push", &format!("{}/it/busybox:latest", proxy.addr), &dest])
        .success()
        .stderr_has("0 mounted");
    let log = proxy.log();
    let bodies: Vec<&Logged> = log
        .iter()
        .filter(|l| l.path.contains("/blobs/") && (l.method != "HEAD" || l.body_len > 0))
        .collect();
    assert!(bodies.is_empty(), "blob requests on a re-push: {bodies:?}");
    assert!(log.iter().filter(|l| l.method == "HEAD").count() >= 2);
    assert_eq!(registry.skopeo_digest("it/mounted:latest"), bb.latest);
}

#[test]
fn schema1_manifests_are_refused_with_a_clear_message() {
    let registry = world::registry(Flavour::Plain);
    world::push_busybox(registry, "it/busybox");
    let proxy = FaultProxy::start(
        &registry.addr,
        Box::new(|method, path, _| {
            if method == "GET" && path.contains("/manifests/") {
                Action::Canned(
                    "application/vnd.docker.distribution.manifest.v1+prettyjws",
                    r#"{"schemaVersion":1,"name":"it/busybox","tag":"latest","architecture":"amd64","fsLayers":[],"history":[]}"#,
                )
            } else {
                Action::Forward
            }
        }),
    );
    let imgb = Imgb::new();
    imgb.run(["pull", &format!("{}/it/busybox:latest", proxy.addr)])
        .exit_code(1)
        .stderr_has("schema 1 manifests are not supported");
}

#[test]
fn the_registrys_own_message_is_shown_when_retries_run_out() {
    let registry = world::registry(Flavour::Plain);
    world::push_busybox(registry, "it/busybox");
    let proxy = FaultProxy::start(
        &registry.addr,
        Box::new(|method, path, _| {
            if method == "GET" && path.contains("/manifests/") {
                Action::Status(500)
            } else {
                Action::Forward
            }
        }),
    );
    let imgb = Imgb::new();
    imgb.run(["pull", &format!("{}/it/busybox:latest", proxy.addr)])
        .exit_code(1)
        .stderr_has("HTTP 500: INJECTED: fault proxy says 500");
    let tries = proxy
        .log()
        .iter()
        .filter(|l| l.path.contains("/manifests/"))
        .count();
    assert_eq!(tries, 6, "the default policy makes 6 attempts");
}

#[test]
fn a_pinned_image_already_in_the_store_resolves_without_the_network() {
    let registry = world::registry(Flavour::Plain);
    world::push_busybox(registry, "it/busybox");
    let bb = world::busybox();
    let proxy = FaultProxy::start(&registry.addr, Box::new(|_, _, _| Action::Forward));
    let imgb = Imgb::new();
    let pinned = format!("{}/it/busybox@{}", proxy.addr, bb.multi);
    let first = imgb.run(["pull", &pinned, "--platform", "linux/arm64/v8"]);
    first.success();
    assert_eq!(first.stdout.trim(), arm64_manifest_digest());
    proxy.clear();
    let again = imgb.run(["pull", &pinned, "--platform", "linux/arm64/v8"]);
    again.success();
    assert_eq!(again.stdout.trim(), arm64_manifest_digest());
    assert!(
        proxy.log().is_empty(),
        "went to the registry: {:?}",
        proxy.log()
    );
}

#[test]
fn push_from_an_oci_archive_and_by_digest() {
    let registry = world::registry(Flavour::Plain);
    let bb = world::busybox();
    let dir = tempfile::tempdir().expect("tempdir");
    let archive = dir.path().join("busybox.tar");
    world::run_ok(
        std::process::Command::new(world::require_tool("skopeo"))
            .args(["copy", "--insecure-policy", "--quiet"])
            .arg(bb.oci_ref("latest"))
            .arg(format!("oci-archive:{}:latest", archive.display())),
    );
    let imgb = Imgb::new();
    let source = format!("oci-archive:{}:latest", archive.display());
    let pushed = imgb.run(["push", &source, &format!("{}/it/archive:v1", registry.addr)]);
    pushed.success();
    assert_eq!(pushed.stdout.trim(), bb.latest);
    assert_eq!(registry.skopeo_digest("it/archive:v1"), bb.latest);
    let leftovers: Vec<String> = std::fs::read_dir(imgb.home.path().join("registry"))
        .map(|d| {
            d.flatten()
                .map(|e| e.file_name().to_string_lossy().into_owned())
                .collect()
        })
        .unwrap_or_default();
    assert!(
        leftovers.iter().all(|n| !n.starts_with("tmp-")),
        "the unpacked archive was left behind: {leftovers:?}"
    );

    // By digest: no tag is created, the manifest is addressable by digest.
    let layout = format!("oci:{}:latest", bb.layout.display());
    let by_digest = format!("{}/it/bydigest@{}", registry.addr, bb.latest);
    imgb.run(["push", &layout, &by_digest]).success();
    assert_eq!(
        registry.skopeo_digest(&format!("it/bydigest@{}", bb.latest)),
        bb.latest
    );
    // A digest that is not the image's is refused before anything is sent.
    let wrong = format!("{}/it/bydigest@{}", registry.addr, bb.multi);
    imgb.run(["push", &layout, &wrong])
        .exit_code(1)
        .stderr_has("digest");
}

/// The realm the token registry's challenge names.
fn token_realm(registry: &Registry) -> String {
    use std::io::Read;
    let mut conn = std::net::TcpStream::connect(&registry.addr).expect("connect");
    write!(
        conn,
        "GET /v2/ HTTP/1.1\r\nHost: {}\r\nConnection: close\r\n\r\n",
        registry.addr
    )
    .expect("write");
    let mut answer = String::new();
    conn.read_to_string(&mut answer).expect("read");
    let start = answer.find("realm=\"").expect("a bearer challenge") + "realm=\"".len();
    let end = answer[start..].find('"').expect("closing quote") + start;
    answer[start..end].to_string()
}

#[test]
fn authenticated_bearer_tokens_use_the_stored_credentials() {
    let registry = world::registry(Flavour::Token);
    world::push_busybox(registry, "it/busybox");
    let bb = world::busybox();
    let tokens = TokenServer::start("robot", "t0ken-pass");
    // The registry's challenge is pointed at a token endpoint that checks
    // credentials (distribution's `silly` auth accepts any token).
    let proxy = FaultProxy::start_rewriting(
        &registry.addr,
        Box::new(|_, _, _| Action::Forward),
        Some((
            token_realm(registry),
            format!("http://{}/token", tokens.addr),
        )),
    );
    let imgb = Imgb::new();
    let target = Registry {
        flavour: Flavour::Token,
        addr: proxy.addr.clone(),
        dir: registry.dir.clone(),
    };
    let wrong = login(&imgb, &target, "robot", "wrong-pass-77");
    wrong
        .exit_code(1)
        .stderr_has("token endpoint answered HTTP 401");
    assert!(!wrong.stderr.contains("wrong-pass-77"));
    login(&imgb, &target, "robot", "t0ken-pass").success();

    let pulled = imgb.run(["pull", &format!("{}/it/busybox:latest", proxy.addr)]);
    pulled.success();
    assert_eq!(pulled.stdout.trim(), bb.latest);
    assert!(!pulled.stderr.contains("t0ken-pass"));
    let log = tokens.log();
    let pull_token = log
        .iter()
        .find(|(t, _)| t.contains("scope=repository%3Ait%2Fbusybox%3Apull"))
        .unwrap_or_else(|| panic!("no token asked for the pull scope: {log:?}"));
    assert!(
        pull_token.1,
        "token requested without the credentials: {log:?}"
    );
    assert!(pull_token.0.contains("service=imgb-test") && pull_token.0.contains("account=robot"));
}
