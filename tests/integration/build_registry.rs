//! `imgb build` with base images from the local registries (plain, basic
//! auth, TLS, bearer token): FROM, `COPY --from` an image, `--chown` names
//! from the base's /etc/passwd, and `--push` read back by skopeo.

use std::process::Command;

use crate::harness::Context;
use crate::registry::{imgb_for, run};
use crate::world::{self, require_tool, run_ok, Flavour};

fn build_from_registry(flavour: Flavour) {
    let registry = world::registry(flavour);
    world::push_busybox(registry, "bases/busybox");
    let imgb = imgb_for(registry);
    let base = format!("{}/bases/busybox", registry.addr);
    let ctx = Context::new()
        .file(
            "Dockerfile",
            format!(
                "FROM {base}\nCOPY --chown=app f /home/app/f\nCOPY --from={base}:multi /etc/group /copied-group\nUSER app\nWORKDIR /home/app/work\nCMD [\"sh\"]\n"
            ),
        )
        .file("f", "hello");
    let out = tempfile::tempdir().expect("tmp");
    let meta = out.path().join("meta.json");
    let pushed = format!("{}/built/app:{}", registry.addr, flavour.name());
    run(
        &imgb,
        registry,
        &[
            "build",
            "--push",
            "-t",
            &pushed,
            "--metadata-file",
            &meta.display().to_string(),
            &ctx.path().display().to_string(),
        ],
    )
    .success();
    let meta: serde_json::Value =
        serde_json::from_slice(&std::fs::read(&meta).expect("metadata")).expect("json");
    let repo_tag = pushed
        .strip_prefix(&format!("{}/", registry.addr))
        .expect("prefix");
    assert_eq!(
        registry.skopeo_digest(repo_tag),
        meta["containerimage.digest"].as_str().unwrap_or_default(),
        "{flavour:?}"
    );

    // The pushed image, unpacked by umoci: the base's files, ours with the
    // owner named in the base's /etc/passwd, and the WORKDIR made for USER.
    let layout = out.path().join("layout");
    run_ok(
        Command::new(require_tool("skopeo"))
            .args(["copy", "--insecure-policy", "--quiet"])
            .args(registry.skopeo_flags("src-"))
            .arg(registry.docker_ref(repo_tag))
            .arg(format!("oci:{}:x", layout.display())),
    );
    let bundle = out.path().join("bundle");
    run_ok(
        Command::new(require_tool("umoci"))
            .args(["unpack", "--image"])
            .arg(format!("{}:x", layout.display()))
            .arg(&bundle),
    );
    use std::os::unix::fs::MetadataExt;
    let rootfs = bundle.join("rootfs");
    assert!(rootfs.join("bin/busybox").is_file(), "base layer present");
    let f = std::fs::metadata(rootfs.join("home/app/f")).expect("f");
    assert_eq!(
        (f.uid(), f.gid()),
        (1000, 1000),
        "--chown=app: uid from passwd, gid = uid as Docker does"
    );
    let work = std::fs::metadata(rootfs.join("home/app/work")).expect("workdir");
    assert_eq!(work.uid(), 1000, "WORKDIR is created for USER");
    assert!(std::fs::read_to_string(rootfs.join("copied-group"))
        .expect("group")
        .contains("app:x:1000:"));
    let config: serde_json::Value = serde_json::from_str(&run_ok(
        Command::new(require_tool("skopeo"))
            .args(["inspect", "--config"])
            .arg(format!("oci:{}:x", layout.display())),
    ))
    .expect("config");
    assert_eq!(config["config"]["User"], "app");
    assert_eq!(config["config"]["WorkingDir"], "/home/app/work");
    assert_eq!(config["config"]["Cmd"], serde_json::json!(["sh"]));
    let history = config["history"].as_array().expect("history");
    assert!(
        history[0]["created_by"]
            .as_str()
            .unwrap_or_default()
            .contains("busybox-static"),
        "base history kept"
    );
}

#[test]
fn build_from_plain_registry_and_push() {
    build_from_registry(Flavour::Plain);
}

#[test]
fn build_from_basic_auth_registry_and_push() {
    build_from_registry(Flavour::Basic);
}

#[test]
fn build_from_tls_registry_and_push() {
    build_from_registry(Flavour::Tls);
}

#[test]
fn build_from_token_registry_and_push() {
    build_from_registry(Flavour::Token);
}

#[test]
fn a_missing_base_image_fails_with_the_registry_reason() {
    let registry = world::registry(Flavour::Plain);
    let imgb = imgb_for(registry);
    let ctx = Context::new().file(
        "Dockerfile",
        format!("FROM {}/nope/missing:1\n", registry.addr),
    );
    run(
        &imgb,
        registry,
        &["build", &ctx.path().display().to_string()],
    )
    .exit_code(1)
    .stderr_has("nope/missing");
}
